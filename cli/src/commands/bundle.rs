//! `flotilla bundle export --cluster NAME --out FILE`: downloads the cluster's bundle file
//! (`GET /api/v1/clusters/{name}/bundle`) into a temporary file next to FILE, verifies it with
//! `flotilla_shared::read_bundle` against the hub's trusted keys (`GET /api/v1/agent-api`),
//! and only then renames it to FILE, so FILE is either the old file or a whole, verified one.

use std::io::{Read, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use flotilla_shared::bundle::BundleError;
use flotilla_shared::{Policy, PublicKey, TrustRoot, read_bundle};
use jiff::Timestamp;
use serde_json::json;

use super::cluster::AgentApi;
use super::{CommandError, Report};
use crate::args::ExportArgs;
use crate::client::Client;
use crate::output::Format;

/// What a verified bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    generation: u64,
    apps: usize,
}

fn summarize(
    input: impl Read,
    trust: &TrustRoot,
    cluster: &str,
    now: Timestamp,
) -> Result<Summary, BundleError> {
    let bundle = read_bundle(input, trust, cluster, None, now)?;
    Ok(Summary {
        generation: bundle.state.state.generation,
        apps: bundle.state.state.apps.len(),
    })
}

fn trust_root(agent: &AgentApi) -> Result<TrustRoot, CommandError> {
    let keys = agent
        .trusted_keys
        .iter()
        .map(|pem| PublicKey::from_spki_pem(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            CommandError::Answer(format!("a trusted key of the hub's agent-api answer: {e}"))
        })?;
    Ok(TrustRoot::new(keys))
}

pub fn export(
    client: &Client,
    format: Format,
    export: &ExportArgs,
) -> Result<Report, CommandError> {
    let trust = trust_root(&AgentApi::get(client)?)?;
    let out = &export.out;
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".flotilla-bundle.")
        .tempfile_in(dir)
        .map_err(CommandError::io(format!(
            "create a temporary file in {}",
            dir.display()
        )))?;
    let limit = Policy::default().max_bundle_bytes;
    let bytes = client.download(&["clusters", &export.cluster, "bundle"], &mut file, limit)?;
    let writing = format!("write {}", out.display());
    file.flush().map_err(CommandError::io(writing.clone()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(CommandError::io(format!("read back {}", out.display())))?;
    let summary =
        summarize(file.as_file(), &trust, &export.cluster, Timestamp::now()).map_err(|source| {
            CommandError::Bundle {
                cluster: export.cluster.clone(),
                source,
            }
        })?;
    file.as_file()
        .sync_all()
        .map_err(CommandError::io(writing.clone()))?;
    file.persist(out)
        .map_err(|e| CommandError::io(writing)(e.error))?;
    let shown = out.display();
    let value = json!({
        "file": shown.to_string(),
        "cluster": export.cluster,
        "generation": summary.generation,
        "apps": summary.apps,
        "bytes": bytes,
    });
    Ok(Report::answer(format, &value, || {
        format!(
            "wrote {shown} (generation {}, {} apps)\n",
            summary.generation, summary.apps
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::testing::{Bundle, TestApp, key, now, trust};

    #[test]
    fn bundles_are_summarized_only_when_they_verify() {
        let bundle = Bundle::test()
            .cluster("east")
            .generation(42)
            .with_app(TestApp::new("web"))
            .with_app(TestApp::new("api"))
            .signed_by(&key(1))
            .bundle_file();
        let trusted = trust(&[&key(1)]);
        assert_eq!(
            summarize(bundle.as_slice(), &trusted, "east", now()).expect("verifies"),
            Summary {
                generation: 42,
                apps: 2
            }
        );
        let other_key = summarize(bundle.as_slice(), &trust(&[&key(2)]), "east", now());
        assert!(other_key.is_err());
        let other_cluster = summarize(bundle.as_slice(), &trusted, "west", now());
        assert!(other_cluster.is_err());
        let truncated = summarize(&bundle[..bundle.len() / 2], &trusted, "east", now());
        assert!(truncated.is_err());
    }
}
