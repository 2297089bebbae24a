//! Helm charts from a Helm repository: fetches the repository's `index.yaml` and the chart
//! archive over HTTP(S), within the size and time limits, and checks the archive against the
//! digest the index lists. It talks to the network; choosing the version and resolving the
//! archive URL are pure. URLs in errors and logs have their credentials and query removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::RenderFailure;
use super::limits::Limits;

/// A repository's `index.yaml`, the parts a render needs.
#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<ChartVersion>>,
}

/// One version of a chart in an index.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ChartVersion {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    /// Hex SHA-256 of the archive.
    #[serde(default)]
    pub digest: Option<String>,
}

/// `url` without user, password, query or fragment, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            // Setting these fails only for URLs without a host, which carry no credentials.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// Parses an `index.yaml`.
pub fn parse_index(bytes: &[u8]) -> Result<Index, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "index.yaml is not UTF-8".to_owned())?;
    serde_saphyr::from_str_with_options(text, serde_saphyr::Options::default())
        .map_err(|e| format!("invalid index.yaml: {e}"))
}

/// The entry of `chart` at exactly `version` (a leading `v` on either side is ignored).
pub fn find_version<'a>(
    index: &'a Index,
    chart: &str,
    version: &str,
) -> Result<&'a ChartVersion, String> {
    let versions = index
        .entries
        .get(chart)
        .ok_or_else(|| format!("chart {chart} is not in the repository index"))?;
    let wanted = version.strip_prefix('v').unwrap_or(version);
    versions
        .iter()
        .find(|v| v.version.strip_prefix('v').unwrap_or(&v.version) == wanted)
        .ok_or_else(|| {
            let known: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
            format!(
                "chart {chart} has no version {version} (the index lists {})",
                known.join(", ")
            )
        })
}

/// The archive URL of `entry`: its first URL, resolved against the repository URL when
/// relative.
pub fn archive_url(repo_url: &str, entry: &ChartVersion) -> Result<Url, String> {
    let first = entry
        .urls
        .first()
        .ok_or_else(|| format!("version {} lists no archive URL", entry.version))?;
    let base = Url::parse(&format!("{}/", repo_url.trim_end_matches('/')))
        .map_err(|e| format!("invalid repository URL: {e}"))?;
    base.join(first)
        .map_err(|e| format!("invalid archive URL {}: {e}", redact(first)))
}

fn failure(repo_url: &str, reason: String) -> RenderFailure {
    RenderFailure::HelmRepository {
        repo: redact(repo_url),
        reason,
    }
}

/// GETs `url`, at most `limits.max_total_bytes`, within `limits.timeout`.
async fn download(client: &reqwest::Client, url: Url, limits: &Limits) -> Result<Vec<u8>, String> {
    let shown = redact(url.as_str());
    let get = async {
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {shown}: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("GET {shown}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {shown}: {}", e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limits.max_total_bytes {
                return Err(format!(
                    "GET {shown}: more than {} bytes",
                    limits.max_total_bytes
                ));
            }
        }
        Ok(body)
    };
    tokio::time::timeout(limits.timeout, get)
        .await
        .map_err(|_| format!("GET {shown}: no answer within {:?}", limits.timeout))?
}

/// Downloads `chart` at `version` from the repository at `repo_url` into `dir` and returns
/// the archive's path, which `helm template` reads directly.
pub(super) async fn fetch_chart(
    client: &reqwest::Client,
    repo_url: &str,
    chart: &str,
    version: &str,
    limits: &Limits,
    dir: &Path,
) -> Result<PathBuf, RenderFailure> {
    let index_url = Url::parse(&format!("{}/index.yaml", repo_url.trim_end_matches('/')))
        .map_err(|e| failure(repo_url, format!("invalid repository URL: {e}")))?;
    let index = download(client, index_url, limits)
        .await
        .map_err(|reason| failure(repo_url, reason))?;
    let index = parse_index(&index).map_err(|reason| failure(repo_url, reason))?;
    let entry = find_version(&index, chart, version).map_err(|reason| failure(repo_url, reason))?;
    let url = archive_url(repo_url, entry).map_err(|reason| failure(repo_url, reason))?;
    tracing::debug!(url = %redact(url.as_str()), "fetch chart archive");
    let archive = download(client, url, limits)
        .await
        .map_err(|reason| failure(repo_url, reason))?;
    if let Some(expected) = entry.digest.as_deref().filter(|d| !d.is_empty()) {
        let actual = hex::encode(Sha256::digest(&archive));
        let expected = expected.strip_prefix("sha256:").unwrap_or(expected);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(failure(
                repo_url,
                format!(
                    "chart {chart} {version}: archive digest sha256:{actual} does not match the index's sha256:{expected}"
                ),
            ));
        }
    }
    let path = dir.join(format!("{chart}-{version}.tgz"));
    std::fs::write(&path, &archive).map_err(|source| RenderFailure::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"apiVersion: v1
entries:
  podinfo:
  - apiVersion: v2
    created: "2026-01-01T00:00:00Z"
    digest: abc123
    name: podinfo
    urls:
    - podinfo-6.14.1.tgz
    version: 6.14.1
  - name: podinfo
    urls:
    - https://charts.example.com/archive/podinfo-6.0.0.tgz
    version: 6.0.0
generated: "2026-01-01T00:00:00Z"
"#;

    #[test]
    fn finds_versions_and_resolves_archive_urls() {
        let index = parse_index(INDEX.as_bytes()).expect("parses");
        let entry = find_version(&index, "podinfo", "6.14.1").expect("found");
        assert_eq!(entry.digest.as_deref(), Some("abc123"));
        assert_eq!(
            archive_url("http://127.0.0.1:1/charts/", entry)
                .expect("url")
                .as_str(),
            "http://127.0.0.1:1/charts/podinfo-6.14.1.tgz"
        );
        let absolute = find_version(&index, "podinfo", "v6.0.0").expect("found");
        assert_eq!(
            archive_url("http://127.0.0.1:1/charts", absolute)
                .expect("url")
                .as_str(),
            "https://charts.example.com/archive/podinfo-6.0.0.tgz"
        );
        let missing = find_version(&index, "podinfo", "9.9.9").expect_err("absent");
        assert!(missing.contains("6.14.1, 6.0.0"), "{missing}");
        assert!(find_version(&index, "redis", "1.0.0").is_err());
    }

    #[test]
    fn redaction_removes_credentials() {
        assert_eq!(
            redact("https://user:s3cret@charts.example.com/x?token=t0k"),
            "https://charts.example.com/x"
        );
        assert!(!redact("not a url s3cret").contains("s3cret"));
    }
}
