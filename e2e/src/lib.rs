//! The Rust side of the end-to-end harness: starts, reuses and stops real Kubernetes
//! clusters (through the `e2e/cluster` script, which owns building and running the
//! control plane) and hands tests a `kube::Client` for them.
//!
//! Test binaries share clusters: [`shared`] hands every test of a binary the same cluster,
//! which `make test` starts before the tests and stops after them (it passes its
//! kubeconfig in `FLOTILLA_E2E_KUBECONFIG`). Run outside `make test`, the binary starts a
//! cluster named `e2e-dev` itself and leaves it running for the next run; stop it with
//! `e2e/cluster down e2e-dev`. [`Cluster::start`] gives a test a private cluster, stopped
//! when the value is dropped.
//!
//! Invariant: every loop here is bounded by a deadline, so a broken cluster fails a test
//! instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

/// The environment variable through which `make test` hands over a running cluster.
pub const KUBECONFIG_ENV: &str = "FLOTILLA_E2E_KUBECONFIG";

/// How many heavy tests (those that wait for workloads) run at once against the shared
/// cluster; more only makes each of them slower on a two-core machine.
const HEAVY_TESTS_AT_ONCE: usize = 3;

/// A running harness cluster.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    kubeconfig: PathBuf,
    /// Whether dropping this value stops the cluster.
    owned: bool,
}

impl Cluster {
    /// Starts a new cluster named `name` and stops it again when the value is dropped.
    pub fn start(name: &str) -> anyhow::Result<Cluster> {
        let kubeconfig = up(name)?;
        Ok(Cluster {
            name: name.to_owned(),
            kubeconfig,
            owned: true,
        })
    }

    /// A cluster someone else started and will stop.
    pub fn existing(name: &str, kubeconfig: PathBuf) -> Cluster {
        Cluster {
            name: name.to_owned(),
            kubeconfig,
            owned: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin kubeconfig of the cluster (a `system:masters` client certificate).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client with cluster-admin rights.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = self.config().await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin client configuration, for tests that build clients with other identities.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("read kubeconfig {}", self.kubeconfig.display()))?;
        let options = kube::config::KubeConfigOptions::default();
        Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?)
    }

    /// A client that authenticates as ServiceAccount `namespace/account` (which must exist)
    /// with a fresh ten-minute token from the TokenRequest API.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        account: &str,
    ) -> anyhow::Result<kube::Client> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: kube::Api<ServiceAccount> =
            kube::Api::namespaced(self.client().await?, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = accounts
            .create_token_request(account, &kube::api::PostParams::default(), &request)
            .await
            .with_context(|| format!("request a token for {namespace}/{account}"))?
            .status
            .context("token request has no status")?
            .token;
        let mut config = self.config().await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Ok(kube::Client::try_from(config)?)
    }

    /// Writes a kubeconfig for ServiceAccount `namespace/account` (which must exist) with a
    /// fresh token from the TokenRequest API, valid for `seconds`: what a process started by
    /// a test uses to act as that account.
    pub async fn write_service_account_kubeconfig(
        &self,
        namespace: &str,
        account: &str,
        seconds: i64,
        path: &Path,
    ) -> anyhow::Result<()> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: kube::Api<ServiceAccount> =
            kube::Api::namespaced(self.client().await?, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(seconds),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = accounts
            .create_token_request(account, &kube::api::PostParams::default(), &request)
            .await
            .with_context(|| format!("request a token for {namespace}/{account}"))?
            .status
            .context("token request has no status")?
            .token;
        let mut kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("read kubeconfig {}", self.kubeconfig.display()))?;
        for named in &mut kubeconfig.auth_infos {
            named.auth_info = Some(kube::config::AuthInfo {
                token: Some(token.clone().into()),
                ..Default::default()
            });
        }
        let yaml = serde_json::to_string(&kubeconfig).context("serialize kubeconfig")?;
        std::fs::write(path, yaml).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }

    /// The path of the apiserver's audit log, which records every mutating request.
    pub fn audit_log(&self) -> PathBuf {
        self.kubeconfig.with_file_name("audit.log")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(script()).args(["down", &self.name]).status();
        }
    }
}

/// The cluster every test of this binary shares.
pub async fn shared() -> &'static Cluster {
    static SHARED: OnceCell<Cluster> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let found = std::env::var_os(KUBECONFIG_ENV).map(PathBuf::from);
            match found {
                Some(kubeconfig) => Cluster::existing("shared", kubeconfig),
                None => {
                    let kubeconfig = tokio::task::spawn_blocking(|| up("e2e-dev"))
                        .await
                        .expect("cluster start does not panic")
                        .expect("start the shared e2e cluster");
                    Cluster::existing("e2e-dev", kubeconfig)
                }
            }
        })
        .await
}

/// Admission for tests that load the cluster; hold the permit for the test's duration.
pub async fn heavy_test() -> SemaphorePermit<'static> {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS
        .get_or_init(|| Semaphore::new(HEAVY_TESTS_AT_ONCE))
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// Creates a namespace of the test's own, named by the apiserver from `prefix`, so tests
/// never collide with each other or with an earlier run against the same cluster.
pub async fn test_namespace(client: &kube::Client, prefix: &str) -> anyhow::Result<String> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.generate_name = Some(format!("{prefix}-"));
    let created = api
        .create(&kube::api::PostParams::default(), &namespace)
        .await
        .with_context(|| format!("create a namespace for {prefix}"))?;
    created
        .metadata
        .name
        .context("the apiserver named no namespace")
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(error) => bail!("timed out after {limit:?} waiting for {what}: {error:#}"),
                None => bail!("timed out after {limit:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A binary of this workspace (`flotilla-hub`, `flotilla-agent`, `flotilla`), built once per
/// test run with `cargo build` (a no-op when it is fresh, and never a stale one left by an
/// earlier build). `FLOTILLA_HUB_BIN`, `FLOTILLA_AGENT_BIN` or `FLOTILLA_BIN` name a prebuilt
/// one instead.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    let variable = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&variable) {
        built.insert(name.to_owned(), PathBuf::from(&path));
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("e2e lies in the workspace")?;
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The whole workspace's binaries, as `make e2e` builds them: building one package alone
    // would unify features differently and rebuild shared dependencies.
    build
        .args(["build", "--workspace", "--bins"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace)
        .stderr(std::process::Stdio::inherit());
    // What cargo sets for this test process would count as a change to build scripts that
    // watch it (ring watches CARGO_MANIFEST_DIR), rebuilding them each time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_BIN_NAME",
            ]
            .contains(&key.as_ref())
        {
            build.env_remove(key.as_ref());
        }
    }
    let output = build
        .output()
        .context("run cargo build --workspace --bins")?;
    if !output.status.success() {
        bail!("cargo build --workspace --bins failed: {}", output.status);
    }
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build named no {name} executable"))?;
    built.insert(name.to_owned(), path.clone());
    Ok(path)
}

/// The harness script, `e2e/cluster`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

/// The path of a binary the harness builds (kubectl, helm, kustomize, crane, …).
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let output = Command::new(script())
        .args(["bin", name])
        .output()
        .context("run e2e/cluster bin")?;
    if !output.status.success() {
        bail!(
            "e2e/cluster bin {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

fn up(name: &str) -> anyhow::Result<PathBuf> {
    let output = Command::new(script())
        .args(["up", name])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run e2e/cluster up")?;
    if !output.status.success() {
        bail!("e2e/cluster up {name} failed with {}", output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout
        .lines()
        .last()
        .context("e2e/cluster up printed nothing")?;
    Ok(PathBuf::from(last.trim()))
}
