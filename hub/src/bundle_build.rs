//! `flotilla-hub bundle build`: signs a bundle file from directories of plain manifests, for
//! people who render elsewhere (a CI pipeline, an air-gapped site). It owns the command's
//! options and assembling the state; manifests come from `manifest_files`, formats and
//! signing from `flotilla-shared`. It never prints or logs the private key.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use flotilla_shared::blob::BlobError;
use flotilla_shared::bundle::BundleError;
use flotilla_shared::keys::KeyError;
use flotilla_shared::state::{
    API_VERSION, App, BlobRef, ClusterState, STATE_KIND, Source, SyncPolicy, Tombstone,
};
use flotilla_shared::{AppBlob, Digest, Envelope, STATE_PAYLOAD_TYPE, SigningKey, write_bundle};
use jiff::{SignedDuration, Timestamp};

use crate::manifest_files::{ManifestError, read_manifest_dir};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Name of the cluster the state is for.
    #[arg(long, env = "FLOTILLA_HUB_BUNDLE_CLUSTER")]
    pub cluster: String,
    /// Generation of the state [default: the current Unix time in milliseconds].
    #[arg(long, env = "FLOTILLA_HUB_BUNDLE_GENERATION")]
    pub generation: Option<u64>,
    /// The hub's signing key (PKCS#8 PEM).
    #[arg(long, env = "FLOTILLA_HUB_SIGNING_KEY")]
    pub key: PathBuf,
    /// An app: NAME=DIR[,namespace=NS,prune=BOOL,selfHeal=BOOL,createNamespace=BOOL,
    /// automated=BOOL,pruneLimit=PERCENT]. The namespace defaults to NAME; prune, selfHeal
    /// and createNamespace to false; automated to true. Repeatable; in the environment,
    /// separate apps with `;`.
    #[arg(long = "app", env = "FLOTILLA_HUB_BUNDLE_APPS", value_delimiter = ';')]
    pub apps: Vec<AppSpec>,
    /// Remove an app from the cluster: NAME[,prune=BOOL] (prune defaults to true: its objects
    /// are deleted). Repeatable; in the environment, separate with `;`.
    #[arg(
        long = "remove",
        env = "FLOTILLA_HUB_BUNDLE_REMOVE",
        value_delimiter = ';'
    )]
    pub remove: Vec<RemoveSpec>,
    /// How long the state is valid, e.g. `24h`, `90m`.
    #[arg(long, env = "FLOTILLA_HUB_BUNDLE_EXPIRES", default_value = "24h")]
    pub expires: SignedDuration,
    /// Sign a state with no apps (agents refuse one otherwise).
    #[arg(long, env = "FLOTILLA_HUB_BUNDLE_ALLOW_EMPTY")]
    pub allow_empty: bool,
    /// The bundle file to write (replaced if it exists).
    #[arg(long, env = "FLOTILLA_HUB_BUNDLE_OUT")]
    pub out: PathBuf,
}

/// One `--app` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    pub dir: PathBuf,
    pub namespace: Option<String>,
    pub sync_policy: SyncPolicy,
}

/// One `--remove` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveSpec {
    pub name: String,
    pub prune: bool,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key} must be true or false, not {value:?}")),
    }
}

impl FromStr for AppSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (name, dir) = head
            .split_once('=')
            .filter(|(name, dir)| !name.is_empty() && !dir.is_empty())
            .ok_or_else(|| format!("app {s:?} is not NAME=DIR[,key=value…]"))?;
        let mut spec = AppSpec {
            name: name.to_owned(),
            dir: PathBuf::from(dir),
            namespace: None,
            sync_policy: SyncPolicy {
                automated: true,
                prune: false,
                self_heal: false,
                create_namespace: false,
                ..SyncPolicy::default()
            },
        };
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("app option {option:?} is not key=value"))?;
            let policy = &mut spec.sync_policy;
            match key {
                "namespace" => spec.namespace = Some(value.to_owned()),
                "prune" => policy.prune = parse_bool(key, value)?,
                "selfHeal" => policy.self_heal = parse_bool(key, value)?,
                "createNamespace" => policy.create_namespace = parse_bool(key, value)?,
                "automated" => policy.automated = parse_bool(key, value)?,
                "pruneLimit" => {
                    policy.prune_limit = value
                        .parse()
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("pruneLimit must be 0 to 100, not {value:?}"))?;
                }
                _ => {
                    return Err(format!(
                        "unknown app option {key:?} (known: namespace, prune, selfHeal, createNamespace, automated, pruneLimit)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

impl FromStr for RemoveSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, rest) = s.split_once(',').unwrap_or((s, ""));
        if name.is_empty() {
            return Err("--remove needs an app name".to_owned());
        }
        let prune = match rest {
            "" => true,
            _ => match rest.split_once('=') {
                Some(("prune", value)) => parse_bool("prune", value)?,
                _ => return Err(format!("removal option {rest:?} is not prune=true|false")),
            },
        };
        Ok(Self {
            name: name.to_owned(),
            prune,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("read signing key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("app {app}: {source}")]
    Manifests {
        app: String,
        #[source]
        source: ManifestError,
    },
    #[error("app {app}: {source}")]
    Blob {
        app: String,
        #[source]
        source: BlobError,
    },
    #[error("state for cluster {cluster} is invalid: {reason}")]
    State { cluster: String, reason: String },
    #[error("write bundle file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write bundle file {path}: {source}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
}

/// What was written, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub out: PathBuf,
    pub cluster: String,
    pub generation: u64,
    pub expires_at: Timestamp,
    pub keyid: String,
    /// Per app: name, object count and blob digest.
    pub apps: Vec<(String, usize, Digest)>,
    pub removed: Vec<String>,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "wrote {}: cluster {} generation {} expires {} signed by {}",
            self.out.display(),
            self.cluster,
            self.generation,
            self.expires_at,
            self.keyid
        )?;
        for (app, count, digest) in &self.apps {
            writeln!(f, "  app {app}: {count} objects, blob {digest}")?;
        }
        for name in &self.removed {
            writeln!(f, "  removed {name}")?;
        }
        Ok(())
    }
}

fn invalid(cluster: &str, reason: impl Into<String>) -> BuildError {
    BuildError::State {
        cluster: cluster.to_owned(),
        reason: reason.into(),
    }
}

/// Builds, signs and writes the bundle file as of `now`.
pub fn build(args: &BuildArgs, now: Timestamp) -> Result<BuildReport, BuildError> {
    let pem = std::fs::read_to_string(&args.key).map_err(|source| BuildError::ReadKey {
        path: args.key.clone(),
        source,
    })?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|source| BuildError::Key {
        path: args.key.clone(),
        source,
    })?;
    drop(pem);

    if args.apps.is_empty() && !args.allow_empty {
        return Err(invalid(
            &args.cluster,
            "no --app given; agents refuse an empty state unless it is built with --allow-empty",
        ));
    }
    if args.expires <= SignedDuration::ZERO {
        return Err(invalid(&args.cluster, "--expires must be positive"));
    }
    let now_ms = u64::try_from(now.as_millisecond())
        .map_err(|_| invalid(&args.cluster, "the clock is before 1970"))?;
    let generation = args.generation.unwrap_or(now_ms);
    let lead_ms = 24 * 60 * 60 * 1000;
    if generation > now_ms.saturating_add(lead_ms) {
        return Err(invalid(
            &args.cluster,
            format!(
                "generation {generation} is more than 24h ahead of now ({now_ms} ms); agents would refuse it"
            ),
        ));
    }
    let expires_at = now
        .checked_add(args.expires)
        .map_err(|_| invalid(&args.cluster, "--expires is too far in the future"))?;

    let mut apps = Vec::new();
    let mut blobs = Vec::new();
    let mut report_apps = Vec::new();
    for spec in &args.apps {
        let objects = read_manifest_dir(&spec.dir).map_err(|source| BuildError::Manifests {
            app: spec.name.clone(),
            source,
        })?;
        let count = objects.len();
        let blob = AppBlob::new(objects).map_err(|source| BuildError::Blob {
            app: spec.name.clone(),
            source,
        })?;
        let bytes = blob.to_canonical_json();
        let blob_ref = BlobRef::of(&bytes);
        report_apps.push((spec.name.clone(), count, blob_ref.digest));
        apps.push(App {
            name: spec.name.clone(),
            namespace: spec.namespace.clone().unwrap_or_else(|| spec.name.clone()),
            source: source_of(&spec.dir),
            sync_policy: spec.sync_policy.clone(),
            limits: None,
            ignore_differences: Vec::new(),
            blob: blob_ref,
        });
        blobs.push((spec.name.clone(), bytes));
    }
    let state = ClusterState {
        api_version: API_VERSION.to_owned(),
        kind: STATE_KIND.to_owned(),
        cluster: args.cluster.clone(),
        generation,
        issued_at: now,
        expires_at,
        allow_empty: args.allow_empty,
        apps,
        removed: args
            .remove
            .iter()
            .map(|r| Tombstone {
                name: r.name.clone(),
                prune: r.prune,
            })
            .collect(),
    };
    state
        .check_structure()
        .map_err(|reason| invalid(&args.cluster, reason))?;

    let envelope = Envelope::sign(STATE_PAYLOAD_TYPE, &state.to_payload(), &key).to_json();
    let blob_refs: Vec<(&str, &[u8])> = blobs
        .iter()
        .map(|(app, bytes)| (app.as_str(), bytes.as_slice()))
        .collect();
    let file =
        write_bundle(Vec::new(), &envelope, &blob_refs).map_err(|source| BuildError::Bundle {
            path: args.out.clone(),
            source,
        })?;
    write_atomically(&args.out, &file)?;
    Ok(BuildReport {
        out: args.out.clone(),
        cluster: state.cluster,
        generation,
        expires_at,
        keyid: key.keyid().to_string(),
        apps: report_apps,
        removed: args.remove.iter().map(|r| r.name.clone()).collect(),
    })
}

/// Where a plain directory's objects came from: its absolute path as a `file://` URL.
fn source_of(dir: &Path) -> Source {
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    Source {
        repo_url: format!("file://{}", absolute.display()),
        path: ".".to_owned(),
        revision: String::new(),
    }
}

/// Writes next to the target and renames, so a reader never sees half a bundle.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let error = |source| BuildError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> Result<AppSpec, String> {
        s.parse()
    }

    #[test]
    fn app_options() {
        let spec = app("shop=./deploy").expect("valid");
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.dir, PathBuf::from("./deploy"));
        assert_eq!(spec.namespace, None);
        assert!(spec.sync_policy.automated);
        assert!(!spec.sync_policy.prune);

        let spec = app("shop=d,namespace=web,prune=true,selfHeal=true,createNamespace=true,automated=false,pruneLimit=20")
            .expect("valid");
        assert_eq!(spec.namespace.as_deref(), Some("web"));
        let p = spec.sync_policy;
        assert!(p.prune && p.self_heal && p.create_namespace && !p.automated);
        assert_eq!(p.prune_limit, 20);

        assert!(app("shop").expect_err("no dir").contains("NAME=DIR"));
        assert!(app("=d").is_err());
        assert!(
            app("shop=d,prune=yes")
                .expect_err("bool")
                .contains("prune must be true or false")
        );
        assert!(
            app("shop=d,colour=red")
                .expect_err("unknown")
                .contains("unknown app option")
        );
        assert!(app("shop=d,pruneLimit=101").is_err());
    }

    #[test]
    fn removals() {
        let r: RemoveSpec = "old".parse().expect("valid");
        assert!(r.prune);
        let r: RemoveSpec = "old,prune=false".parse().expect("valid");
        assert!(!r.prune);
        assert!("old,keep".parse::<RemoveSpec>().is_err());
        assert!("".parse::<RemoveSpec>().is_err());
    }
}
