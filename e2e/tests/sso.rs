//! Single sign-on to the dashboard against a real Dex, in headless Chromium. No Kubernetes
//! cluster: one `flotilla-hub serve` whose configuration repository (a local Git
//! repository) declares the AppProjects `shop` and `billing` with an Application each
//! (`storefront` and `ledger`), two clusters registered through the admin API so the matrix
//! has rows, and a Dex (`e2e/cluster bin dex`, memory storage, its password database with
//! two static users carrying groups) as the hub's OpenID Connect provider. The hub maps
//! `shop-team` to `maintainer:shop` and `auditors` to `viewer` (every project).
//!
//! `browser/sso.spec.mjs` then logs in as alice (shop-team) through "Log in with SSO" and
//! Dex's login form, sees only the shop's column, may sync `storefront`, is refused
//! `ledger`, logs out; logs in as bob (auditors) and sees both columns without a button
//! that changes anything; and a wrong password at Dex opens no session. The hub's audit log
//! must then name both users.
//!
//! Needs what `dashboard` needs (Chromium, Node, `browser/node_modules`) and Dex, which
//! `e2e/cluster build` builds (CI builds every component first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use flotilla_e2e::eventually;
use serde_json::{Value, json};

use crate::browser::{browser_tools, run_script, workspace};
use crate::processes::{FLEET, Hub, Process, commit, free_port, git, spawn_logged};

/// The browser script's own watchdog stops it after 150 s; this is the test's.
const BROWSER_LIMIT: Duration = Duration::from_secs(200);
const LIMIT: Duration = Duration::from_secs(60);

const CLIENT_ID: &str = "flotilla";
/// Test-only credentials: they exist in this test's Dex and nowhere else.
const CLIENT_SECRET: &str = "flotilla-sso-e2e-client-secret";
const ALICE: &str = "alice@example.com";
const ALICE_PASSWORD: &str = "alice-sso-password";
const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob-sso-password";
/// bcrypt (cost 10, the least Dex accepts for a static password) of the passwords above.
const ALICE_HASH: &str = "$2a$10$110jQdll82hxrqcbc.TulOm1kXiW/2O0fNxVUSCOd2mw0kTcZW.FS";
const BOB_HASH: &str = "$2a$10$jmgquTxRFCLQK6gPFKkpo.IQsUCUi6Ol5OMjm/sFODYhZFtlFlbhy";

/// The configuration repository: two projects, an Application in each. `ledger`'s
/// namespace is a marker that must never reach a page of someone who may not see it.
const FLEET_YAML: &str = "apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: shop}
spec:
  sourceRepos: ['*']
  destinations: [{name: '*', namespace: '*'}]
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: billing}
spec:
  sourceRepos: ['*']
  destinations: [{name: '*', namespace: '*'}]
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: storefront}
spec:
  project: shop
  source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/storefront, targetRevision: main}
  destination: {name: sso-east, namespace: storefront}
  syncPolicy: {automated: {}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: ledger}
spec:
  project: billing
  source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/ledger, targetRevision: main}
  destination: {name: sso-west, namespace: ledger-vault-7f3a}
  syncPolicy: {automated: {}}
";

/// What only a page about `ledger` would show.
const LEDGER_MARKER: &str = "ledger-vault-7f3a";

/// The pinned Dex of the harness (`e2e/cluster bin dex` builds it when missing).
fn dex_binary() -> anyhow::Result<PathBuf> {
    let out = Command::new("bash")
        .arg(workspace().join("e2e/cluster"))
        .args(["bin", "dex"])
        .stdin(Stdio::null())
        .output()
        .context("run e2e/cluster bin dex")?;
    ensure!(
        out.status.success(),
        "e2e/cluster bin dex: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("e2e/cluster bin dex printed nothing")?
        .trim()
        .to_owned();
    Ok(PathBuf::from(path))
}

/// A Dex serving `issuer` from memory, killed when dropped.
struct Dex {
    process: Process,
    issuer: String,
}

impl Dex {
    /// Writes `dir/dex.yaml` and starts Dex on `port`; returns once it serves its discovery
    /// document. `redirect` is the one redirect URI of the client `flotilla`.
    async fn start(dir: &Path, port: u16, redirect: &str) -> anyhow::Result<Dex> {
        // Dex listens on 127.0.0.1, but its issuer is `localhost`: another site than the
        // hub's 127.0.0.1, as an identity provider is in real life. The browser then treats
        // Dex's redirect to /auth/callback as cross-site, so a `SameSite=Strict` cookie of the
        // hub is not sent on that redirect chain, as it would not be in production.
        let issuer = format!("http://localhost:{port}/dex");
        // Static users carry `groups` since Dex v2.45.0; the `groups` claim is in the ID
        // token when the client asks for the `groups` scope.
        let config = json!({
            "issuer": issuer,
            "storage": {"type": "memory"},
            "web": {"http": format!("127.0.0.1:{port}")},
            "logger": {"level": "debug"},
            "oauth2": {"skipApprovalScreen": true},
            "enablePasswordDB": true,
            "staticClients": [{
                "id": CLIENT_ID,
                "name": "Flotilla",
                "secret": CLIENT_SECRET,
                "redirectURIs": [redirect],
            }],
            "staticPasswords": [
                {"email": ALICE, "hash": ALICE_HASH, "username": "alice",
                 "userID": "0a7c1e55-a11c-4e00-9000-000000000001", "groups": ["shop-team"]},
                {"email": BOB, "hash": BOB_HASH, "username": "bob",
                 "userID": "0a7c1e55-b0b0-4e00-9000-000000000002", "groups": ["auditors"]},
            ],
        });
        // JSON is YAML: Dex reads either.
        let file = dir.join("dex.yaml");
        std::fs::write(&file, serde_json::to_string_pretty(&config)?)?;
        let mut command = Command::new(dex_binary()?);
        command.arg("serve").arg(&file);
        let mut process = spawn_logged(command, dir.join("dex.log"))?;
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            ensure!(process.running(), "Dex exited; its log:\n{}", process.log());
            let answer = client
                .get(&discovery)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = answer
                && response.status().is_success()
            {
                let document: Value = serde_json::from_slice(&response.bytes().await?)?;
                ensure!(
                    document["issuer"] == issuer.as_str(),
                    "Dex names another issuer: {document}"
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Dex did not serve {discovery} within 30 s; its log:\n{}",
                    process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Dex { process, issuer })
    }
}

/// The repository, the hub and the clusters; then the browser; then the audit log.
async fn sign_in_through_dex(
    dir: &Path,
    hub: &mut Hub,
    dex: &Dex,
    hub_port: u16,
) -> anyhow::Result<()> {
    let secret_file = dir.join("oidc-client-secret");
    std::fs::write(&secret_file, CLIENT_SECRET)?;
    let redirect = format!("http://127.0.0.1:{hub_port}/auth/callback");
    hub.start_on(
        &format!("127.0.0.1:{hub_port}"),
        &[
            format!("--config-repo={FLEET}"),
            "--config-path=fleet".to_owned(),
            "--config-revision=main".to_owned(),
            format!("--oidc-issuer={}", dex.issuer),
            format!("--oidc-client-id={CLIENT_ID}"),
            format!("--oidc-client-secret-file={}", secret_file.display()),
            format!("--oidc-redirect-url={redirect}"),
            "--oidc-group=shop-team=maintainer:shop".to_owned(),
            "--oidc-group=auditors=viewer".to_owned(),
        ],
    )?;
    ensure!(
        hub.base == format!("http://127.0.0.1:{hub_port}"),
        "the hub listens on {}, not on port {hub_port}",
        hub.base
    );

    // Rows for the matrix.
    for (name, env) in [("sso-east", "prod"), ("sso-west", "staging")] {
        hub.api(
            "POST",
            "/api/v1/clusters",
            Some(json!({"name": name, "labels": {"env": env}}).to_string()),
        )
        .await?;
    }
    // The configuration repository has been read: both applications are declared.
    eventually("storefront and ledger declared", LIMIT, || async {
        let listed = hub.api("GET", "/api/v1/applications", None).await?;
        let names: Vec<&str> = listed["applications"]
            .as_array()
            .context("applications")?
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        Ok((names.contains(&"storefront") && names.contains(&"ledger")).then_some(()))
    })
    .await?;

    let shots = workspace().join("target/browser-artifacts");
    let started = Instant::now();
    let (passed, _output) = run_script(
        dir,
        "sso.spec.mjs",
        &[
            ("FLOTILLA_URL", hub.base.clone()),
            ("FLOTILLA_ISSUER", dex.issuer.clone()),
            ("FLOTILLA_SSO_MAINTAINER", ALICE.to_owned()),
            (
                "FLOTILLA_SSO_MAINTAINER_PASSWORD",
                ALICE_PASSWORD.to_owned(),
            ),
            ("FLOTILLA_SSO_VIEWER", BOB.to_owned()),
            ("FLOTILLA_SSO_VIEWER_PASSWORD", BOB_PASSWORD.to_owned()),
            ("FLOTILLA_SSO_VISIBLE", "storefront".to_owned()),
            ("FLOTILLA_SSO_HIDDEN", "ledger".to_owned()),
            ("FLOTILLA_SSO_HIDDEN_MARKER", LEDGER_MARKER.to_owned()),
            ("FLOTILLA_SCREENSHOTS", shots.display().to_string()),
        ],
        BROWSER_LIMIT,
    )?;
    ensure!(passed, "browser/sso.spec.mjs failed (its output is above)");
    println!(
        "browser script: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );

    // The audit log names both people who signed in (whatever the hub calls the action).
    let audit = hub.api("GET", "/api/v1/audit?limit=1000", None).await?;
    let entries = audit["entries"].as_array().context("audit entries")?;
    for user in [ALICE, BOB] {
        let theirs: Vec<&Value> = entries
            .iter()
            .filter(|e| e["who"].as_str().is_some_and(|w| w.contains(user)))
            .collect();
        ensure!(
            !theirs.is_empty(),
            "the audit log records no entry by {user}: {audit:#}"
        );
        println!(
            "audit: {user}: {}",
            theirs
                .iter()
                .map(|e| format!("{} {}", e["action"], e["subject"]))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_dex_and_see_what_their_groups_allow() -> anyhow::Result<()> {
    browser_tools("SSO")?;
    let work = tempfile::tempdir()?;
    let dir = work.path().to_owned();

    let repo = dir.join("fleet");
    std::fs::create_dir_all(repo.join("fleet"))?;
    git(&repo, &["init", "-q"])?;
    std::fs::write(repo.join("fleet/fleet.yaml"), FLEET_YAML)?;
    for (app, namespace) in [("storefront", "storefront"), ("ledger", LEDGER_MARKER)] {
        std::fs::create_dir_all(repo.join(format!("apps/{app}")))?;
        std::fs::write(
            repo.join(format!("apps/{app}/config.yaml")),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {app}, namespace: {namespace}}}\ndata: {{app: {app}}}\n"
            ),
        )?;
    }
    commit(&repo, "two projects, an application each")?;

    let hub_port = free_port()?;
    let dex = Dex::start(
        &dir,
        free_port()?,
        &format!("http://127.0.0.1:{hub_port}/auth/callback"),
    )
    .await?;
    let mut hub = Hub::init(&dir, &repo)?;
    let outcome = sign_in_through_dex(&dir, &mut hub, &dex, hub_port).await;
    if outcome.is_err() {
        eprintln!("--- hub\n{}", hub.log());
        eprintln!("--- dex\n{}", dex.process.log());
    }
    outcome
}
