//! Push webhooks from GitHub, GitLab and Gitea/Forgejo: verifies a delivery against the
//! shared secret (GitHub's `X-Hub-Signature-256` and Gitea/Forgejo's `X-Gitea-Signature` /
//! `X-Forgejo-Signature` HMAC-SHA256 over the raw body, GitLab's `X-Gitlab-Token`), all
//! compared in constant time, then reads the push event for the repository URLs, the ref and
//! the new commit. Pure: bytes and headers in, a [`Delivery`] out; serving HTTP and starting
//! the fetch are the caller's job. The secret never appears in an error or a log line.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Default largest body accepted (GitHub caps its payloads at 25 MiB; pushes are far smaller).
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 << 20;

/// Which forge sent a delivery, told by its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    /// Gitea and Forgejo, which share the payload format.
    Gitea,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("webhook body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("webhook carries no signature or token header of GitHub, GitLab, Gitea or Forgejo")]
    UnknownProvider,
    #[error("verify {provider:?} webhook: signature or token does not match")]
    Verify { provider: Provider },
    #[error("verify {provider:?} webhook: malformed signature header")]
    MalformedSignature { provider: Provider },
    #[error("parse {provider:?} push event: {reason}")]
    Parse { provider: Provider, reason: String },
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A push: refetch the repositories it names.
    Push(PushEvent),
    /// Any other event (a ping, an issue comment): verified, nothing to do.
    Ignored { provider: Provider, event: String },
}

/// What a push says: where, which ref, which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub provider: Provider,
    /// Every URL the payload gives for the repository (clone, SSH, web).
    pub repository_urls: Vec<String>,
    /// The pushed ref, e.g. `refs/heads/main`.
    pub git_ref: Option<String>,
    /// The commit the ref points to after the push.
    pub after: Option<String>,
}

impl PushEvent {
    /// Whether `repo_url` (as written in an application, before rewrites) names the pushed
    /// repository: the same host and path, whatever the scheme, user, `.git` suffix or case.
    pub fn names(&self, repo_url: &str) -> bool {
        let Some(wanted) = repository_key(repo_url) else {
            return false;
        };
        self.repository_urls
            .iter()
            .filter_map(|url| repository_key(url))
            .any(|key| key == wanted)
    }

    /// The repositories among `repo_urls` this push names, to be refetched.
    pub fn targets<'a>(&self, repo_urls: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        repo_urls
            .into_iter()
            .filter(|url| self.names(url))
            .collect()
    }
}

/// `host/path` of a repository URL, lowercased, without scheme, user, port, `.git` or
/// slashes at the ends; `None` for a local path.
pub fn repository_key(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (host.split(':').next().unwrap_or(host), path)
    } else if let Some((left, path)) = url.split_once(':')
        && !left.contains('/')
    {
        (left.rsplit_once('@').map_or(left, |(_, h)| h), path)
    } else {
        return None;
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host, path).to_ascii_lowercase())
}

/// Verifies a delivery with `secret` and reads it. `body` must be the raw bytes received.
pub fn receive(
    headers: &HeaderMap,
    body: &[u8],
    secret: &SecretString,
    max_body_bytes: usize,
) -> Result<Delivery, WebhookError> {
    if body.len() > max_body_bytes {
        return Err(WebhookError::TooLarge {
            limit: max_body_bytes,
        });
    }
    let provider = verify(headers, body, secret)?;
    let event = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Gitea => {
            header(headers, "x-forgejo-event").or_else(|| header(headers, "x-gitea-event"))
        }
    }
    .unwrap_or_default()
    .to_owned();
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event == "push",
        Provider::GitLab => event == "Push Hook" || event == "Tag Push Hook",
    };
    if !is_push {
        return Ok(Delivery::Ignored { provider, event });
    }
    parse_push(provider, body).map(Delivery::Push)
}

/// Checks the signature or token of a delivery; returns the provider it came from.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &SecretString,
) -> Result<Provider, WebhookError> {
    let secret = secret.expose_secret().as_bytes();
    if let Some(signature) = header(headers, "x-hub-signature-256") {
        let provider = Provider::GitHub;
        let hex_mac = signature
            .strip_prefix("sha256=")
            .ok_or(WebhookError::MalformedSignature { provider })?;
        return check_hmac(provider, secret, body, hex_mac);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        let provider = Provider::GitLab;
        // Hash both sides first so the comparison takes the same time whatever the lengths.
        let given = <Sha256 as sha2::Digest>::digest(token.as_bytes());
        let expected = <Sha256 as sha2::Digest>::digest(secret);
        return if bool::from(given.ct_eq(&expected)) && !secret.is_empty() {
            Ok(provider)
        } else {
            Err(WebhookError::Verify { provider })
        };
    }
    if let Some(signature) =
        header(headers, "x-forgejo-signature").or_else(|| header(headers, "x-gitea-signature"))
    {
        return check_hmac(Provider::Gitea, secret, body, signature);
    }
    Err(WebhookError::UnknownProvider)
}

fn check_hmac(
    provider: Provider,
    secret: &[u8],
    body: &[u8],
    hex_mac: &str,
) -> Result<Provider, WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::Verify { provider });
    }
    let given =
        hex::decode(hex_mac.trim()).map_err(|_| WebhookError::MalformedSignature { provider })?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::Verify { provider })?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map(|()| provider)
        .map_err(|_| WebhookError::Verify { provider })
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    /// GitHub, Gitea, Forgejo; GitLab also sends a reduced `repository`.
    repository: Option<RepositoryPayload>,
    /// GitLab.
    project: Option<ProjectPayload>,
}

#[derive(Deserialize)]
struct RepositoryPayload {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
}

#[derive(Deserialize)]
struct ProjectPayload {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
}

/// Reads a push event body of `provider`.
pub fn parse_push(provider: Provider, body: &[u8]) -> Result<PushEvent, WebhookError> {
    let payload: PushPayload = serde_json::from_slice(body).map_err(|e| WebhookError::Parse {
        provider,
        reason: e.to_string(),
    })?;
    let mut urls = Vec::new();
    if let Some(r) = payload.repository {
        urls.extend([
            r.clone_url,
            r.ssh_url,
            r.html_url,
            r.git_http_url,
            r.git_ssh_url,
        ]);
    }
    if let Some(p) = payload.project {
        urls.extend([p.git_http_url, p.git_ssh_url, p.web_url]);
    }
    let mut repository_urls: Vec<String> = Vec::new();
    for url in urls.into_iter().flatten() {
        if !url.is_empty() && !repository_urls.contains(&url) {
            repository_urls.push(url);
        }
    }
    if repository_urls.is_empty() {
        return Err(WebhookError::Parse {
            provider,
            reason: "no repository URL in the payload".into(),
        });
    }
    Ok(PushEvent {
        provider,
        repository_urls,
        git_ref: payload.git_ref,
        after: payload.after,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("ascii header"));
        }
        map
    }

    const GITHUB_PUSH: &str = r#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111",
        "repository":{"clone_url":"https://github.com/acme/apps.git","ssh_url":"git@github.com:acme/apps.git",
        "html_url":"https://github.com/acme/apps"}}"#;
    const GITLAB_PUSH: &str = r#"{"object_kind":"push","ref":"refs/heads/dev","after":"2222222222222222222222222222222222222222",
        "project":{"git_http_url":"https://gitlab.example/acme/apps.git","git_ssh_url":"git@gitlab.example:acme/apps.git",
        "web_url":"https://gitlab.example/acme/apps"},
        "repository":{"git_http_url":"https://gitlab.example/acme/apps.git"}}"#;
    const GITEA_PUSH: &str = r#"{"ref":"refs/tags/v1","after":"3333333333333333333333333333333333333333",
        "repository":{"clone_url":"https://gitea.example/acme/apps.git","ssh_url":"ssh://git@gitea.example:2222/acme/apps.git",
        "html_url":"https://gitea.example/acme/apps"}}"#;

    fn check(pairs: &[(&'static str, String)], body: &str, expected: Result<&str, WebhookError>) {
        let got = receive(
            &headers(pairs),
            body.as_bytes(),
            &SECRET.into(),
            DEFAULT_MAX_BODY_BYTES,
        );
        match (got, expected) {
            (Ok(Delivery::Push(push)), Ok(after)) => {
                assert_eq!(push.after.as_deref(), Some(after), "{pairs:?}")
            }
            (Ok(Delivery::Ignored { event, .. }), Ok(expected)) => {
                assert_eq!(format!("ignored {event}"), expected, "{pairs:?}")
            }
            (Err(error), Err(expected)) => {
                assert_eq!(error, expected, "{pairs:?}");
                assert!(!error.to_string().contains(SECRET));
            }
            (got, expected) => panic!("{pairs:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn signatures_and_tokens_are_verified() {
        let gh = sign(SECRET, GITHUB_PUSH.as_bytes());
        let gt = sign(SECRET, GITEA_PUSH.as_bytes());
        let wrong = sign("other secret", GITHUB_PUSH.as_bytes());
        let push = |s: &'static str| ("x-github-event", s.to_owned());
        check(
            &[
                push("push"),
                ("x-hub-signature-256", format!("sha256={gh}")),
            ],
            GITHUB_PUSH,
            Ok("1111111111111111111111111111111111111111"),
        );
        check(
            &[
                push("ping"),
                ("x-hub-signature-256", format!("sha256={gh}")),
            ],
            GITHUB_PUSH,
            Ok("ignored ping"),
        );
        check(
            &[
                push("push"),
                ("x-hub-signature-256", format!("sha256={wrong}")),
            ],
            GITHUB_PUSH,
            Err(WebhookError::Verify {
                provider: Provider::GitHub,
            }),
        );
        check(
            &[push("push"), ("x-hub-signature-256", gh.clone())],
            GITHUB_PUSH,
            Err(WebhookError::MalformedSignature {
                provider: Provider::GitHub,
            }),
        );
        check(
            &[push("push"), ("x-hub-signature-256", "sha256=zz".into())],
            GITHUB_PUSH,
            Err(WebhookError::MalformedSignature {
                provider: Provider::GitHub,
            }),
        );
        // A signature of another body does not verify this one.
        check(
            &[
                push("push"),
                ("x-hub-signature-256", format!("sha256={gh}")),
            ],
            GITEA_PUSH,
            Err(WebhookError::Verify {
                provider: Provider::GitHub,
            }),
        );
        check(
            &[
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-token", SECRET.into()),
            ],
            GITLAB_PUSH,
            Ok("2222222222222222222222222222222222222222"),
        );
        check(
            &[
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-token", "It's a Secret to Everybod".into()),
            ],
            GITLAB_PUSH,
            Err(WebhookError::Verify {
                provider: Provider::GitLab,
            }),
        );
        check(
            &[
                ("x-gitea-event", "push".into()),
                ("x-gitea-signature", gt.clone()),
            ],
            GITEA_PUSH,
            Ok("3333333333333333333333333333333333333333"),
        );
        check(
            &[
                ("x-forgejo-event", "push".into()),
                ("x-forgejo-signature", gt),
            ],
            GITEA_PUSH,
            Ok("3333333333333333333333333333333333333333"),
        );
        check(
            &[
                ("x-gitea-event", "push".into()),
                ("x-gitea-signature", wrong),
            ],
            GITEA_PUSH,
            Err(WebhookError::Verify {
                provider: Provider::Gitea,
            }),
        );
        check(
            &[push("push")],
            GITHUB_PUSH,
            Err(WebhookError::UnknownProvider),
        );
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let empty = SecretString::from("");
        let signature = format!("sha256={}", sign("", GITHUB_PUSH.as_bytes()));
        let h = headers(&[("x-hub-signature-256", signature)]);
        assert!(verify(&h, GITHUB_PUSH.as_bytes(), &empty).is_err());
        let h = headers(&[("x-gitlab-token", String::new())]);
        assert!(verify(&h, GITLAB_PUSH.as_bytes(), &empty).is_err());
    }

    #[test]
    fn oversized_bodies_are_refused_before_verification() {
        let body = vec![b' '; 65];
        let got = receive(&HeaderMap::new(), &body, &SECRET.into(), 64);
        assert_eq!(got, Err(WebhookError::TooLarge { limit: 64 }));
    }

    #[test]
    fn push_events_name_their_repository_by_every_url() {
        let github = parse_push(Provider::GitHub, GITHUB_PUSH.as_bytes()).expect("parses");
        assert_eq!(github.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(github.repository_urls.len(), 3);
        let gitlab = parse_push(Provider::GitLab, GITLAB_PUSH.as_bytes()).expect("parses");
        assert_eq!(
            gitlab.repository_urls.len(),
            3,
            "{:?}",
            gitlab.repository_urls
        );
        let gitea = parse_push(Provider::Gitea, GITEA_PUSH.as_bytes()).expect("parses");

        for (event, url, expected) in [
            (&github, "https://github.com/acme/apps", true),
            (&github, "https://github.com/acme/apps.git", true),
            (&github, "https://github.com/Acme/Apps/", true),
            (&github, "git@github.com:acme/apps.git", true),
            (&github, "ssh://git@github.com/acme/apps", true),
            (&github, "https://github.com/acme/apps-other", false),
            (&github, "https://gitlab.example/acme/apps", false),
            (&github, "/srv/git/apps", false),
            (&gitlab, "https://gitlab.example/acme/apps", true),
            (&gitlab, "ssh://git@gitlab.example/acme/apps.git", true),
            (&gitea, "git@gitea.example:acme/apps", true),
            (&gitea, "https://gitea.example:3000/acme/apps", true),
        ] {
            assert_eq!(event.names(url), expected, "{url}");
        }
        assert_eq!(
            github.targets([
                "https://github.com/acme/apps",
                "https://github.com/acme/other"
            ]),
            ["https://github.com/acme/apps"]
        );
        assert!(matches!(
            parse_push(Provider::GitHub, b"{}"),
            Err(WebhookError::Parse { .. })
        ));
        assert!(matches!(
            parse_push(Provider::GitHub, b"not json"),
            Err(WebhookError::Parse { .. })
        ));
    }
}
