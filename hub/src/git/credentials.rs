//! Repository credentials as the fetcher needs them: an HTTPS token or user and password, an
//! SSH private key with the known_hosts lines to trust, or nothing (local paths, public
//! repositories). Pure: it holds values and strips userinfo from URLs; it reads no file and
//! talks to no network. The store encrypts these at rest; that is not this module's job.
//!
//! Invariant: no secret here has a `Debug` or `Display` that shows it. Secrets are
//! [`SecretString`]s, and every URL that reaches an error or a log line goes through
//! [`redact_url`] first.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// How to authenticate to one repository.
///
/// Its JSON form is what the API accepts and what the store seals (see [`Credentials::to_json`]):
/// `{"type": "token", "token": …}`, `{"type": "basic", "username": …, "password": …}` or
/// `{"type": "ssh", "privateKey": …, "knownHosts": …}`. It is never written into an answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "CredentialsJson")]
pub enum Credentials {
    /// No authentication: a local path or a public repository.
    #[default]
    None,
    /// An HTTPS bearer token, sent as `Authorization: Bearer …`.
    HttpsToken { token: SecretString },
    /// HTTPS basic authentication. Forges that take a token as the password (GitHub:
    /// user `x-access-token`; GitLab: user `oauth2`) use this form.
    HttpsBasic {
        username: String,
        password: SecretString,
    },
    /// An SSH private key (OpenSSH or PEM text) and the `known_hosts` lines that name the
    /// server's host key. Host keys are always checked strictly.
    Ssh {
        private_key: SecretString,
        known_hosts: String,
    },
}

impl Credentials {
    /// A short name of the kind, safe to log.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::HttpsToken { .. } => "https-token",
            Credentials::HttpsBasic { .. } => "https-basic",
            Credentials::Ssh { .. } => "ssh-key",
        }
    }
}

/// The JSON form, as read; checked by `TryFrom` so a useless credential is refused up front.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum CredentialsJson {
    Token {
        token: SecretString,
    },
    Basic {
        username: String,
        password: SecretString,
    },
    #[serde(rename_all = "camelCase")]
    Ssh {
        private_key: SecretString,
        known_hosts: String,
    },
}

/// Why credentials were refused. Names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials: {0} must not be empty")]
    Empty(&'static str),
    #[error("credentials: privateKey is not a PEM or OpenSSH private key")]
    NotAKey,
    #[error("credentials: knownHosts has no host key line (host keys are always checked)")]
    NoHostKey,
    #[error("credentials: not valid JSON credentials: {0}")]
    Json(String),
}

impl TryFrom<CredentialsJson> for Credentials {
    type Error = CredentialsError;

    fn try_from(json: CredentialsJson) -> Result<Self, Self::Error> {
        let non_empty = |field, value: &str| {
            if value.trim().is_empty() {
                Err(CredentialsError::Empty(field))
            } else {
                Ok(())
            }
        };
        Ok(match json {
            CredentialsJson::Token { token } => {
                non_empty("token", token.expose_secret())?;
                Credentials::HttpsToken { token }
            }
            CredentialsJson::Basic { username, password } => {
                non_empty("username", &username)?;
                non_empty("password", password.expose_secret())?;
                Credentials::HttpsBasic { username, password }
            }
            CredentialsJson::Ssh {
                private_key,
                known_hosts,
            } => {
                if !private_key.expose_secret().contains("-----BEGIN ") {
                    return Err(CredentialsError::NotAKey);
                }
                let host_keys = known_hosts
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .count();
                if host_keys == 0 {
                    return Err(CredentialsError::NoHostKey);
                }
                Credentials::Ssh {
                    private_key,
                    known_hosts,
                }
            }
        })
    }
}

impl Credentials {
    /// The JSON form, for sealing in the store (the only place it may go).
    pub fn to_json(&self) -> Option<Vec<u8>> {
        let value = match self {
            Credentials::None => return None,
            Credentials::HttpsToken { token } => {
                serde_json::json!({"type": "token", "token": token.expose_secret()})
            }
            Credentials::HttpsBasic { username, password } => serde_json::json!({
                "type": "basic", "username": username, "password": password.expose_secret()
            }),
            Credentials::Ssh {
                private_key,
                known_hosts,
            } => serde_json::json!({
                "type": "ssh", "privateKey": private_key.expose_secret(), "knownHosts": known_hosts
            }),
        };
        Some(value.to_string().into_bytes())
    }

    /// Credentials from their JSON form (as [`Credentials::to_json`] wrote it).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CredentialsError> {
        // serde_json's own message may quote input; only its position is kept.
        serde_json::from_slice(bytes).map_err(|e| {
            CredentialsError::Json(match e.classify() {
                serde_json::error::Category::Data => {
                    // Data errors name a field or a type, never a value of ours.
                    e.to_string()
                }
                _ => format!("malformed at line {} column {}", e.line(), e.column()),
            })
        })
    }
}

/// `url` without any userinfo (`user:password@`) after its scheme, so it can appear in an
/// error or a log line. Scp-like SSH addresses (`git@host:org/repo`) keep their user, which
/// names an account, not a secret.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}{tail}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

/// Whether `url` carries a password in its userinfo (`https://user:secret@host/…`).
pub fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .is_some_and(|at| authority[..at].contains(':'))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn check(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected, "redact {url}");
    }

    #[test]
    fn userinfo_is_stripped() {
        check("https://example.com/a.git", "https://example.com/a.git");
        check("https://tok@example.com/a.git", "https://example.com/a.git");
        check(
            "https://u:p@ss@example.com/a.git",
            "https://example.com/a.git",
        );
        check(
            "https://u:p@example.com:8443/a?x=1",
            "https://example.com:8443/a?x=1",
        );
        check(
            "ssh://git@example.com:2222/a.git",
            "ssh://example.com:2222/a.git",
        );
        check("git@example.com:org/a.git", "git@example.com:org/a.git");
        check("/srv/git/a", "/srv/git/a");
        check("file:///srv/git/a", "file:///srv/git/a");
        check("https://example.com/a@b", "https://example.com/a@b");
    }

    #[test]
    fn passwords_in_urls_are_detected() {
        assert!(has_password("https://u:p@example.com/a"));
        assert!(!has_password("https://u@example.com/a"));
        assert!(!has_password("ssh://git@example.com/a"));
        assert!(!has_password("https://example.com/a:b@c"));
        assert!(!has_password("git@example.com:org/a"));
    }

    #[test]
    fn json_form_round_trips_and_is_checked() {
        let all = [
            r#"{"type": "token", "token": "tok-1"}"#,
            r#"{"type": "basic", "username": "me", "password": "pw-1"}"#,
            r#"{"type": "ssh", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n", "knownHosts": "[127.0.0.1]:22 ssh-ed25519 AAAA"}"#,
        ];
        for text in all {
            let credentials = Credentials::from_json(text.as_bytes()).expect(text);
            let again =
                Credentials::from_json(&credentials.to_json().expect("json")).expect("again");
            assert_eq!(again.kind(), credentials.kind());
            assert_eq!(again.to_json(), credentials.to_json());
        }
        let refused = [
            (
                r#"{"type": "token", "token": " "}"#,
                "token must not be empty",
            ),
            (
                r#"{"type": "ssh", "privateKey": "hunter2", "knownHosts": "h k"}"#,
                "privateKey is not",
            ),
            (
                r##"{"type": "ssh", "privateKey": "-----BEGIN X", "knownHosts": "# none"}"##,
                "no host key",
            ),
            (
                r#"{"type": "token", "token": "t", "extra": 1}"#,
                "unknown field `extra`",
            ),
            (r#"{"type": "kerberos"}"#, "unknown variant `kerberos`"),
        ];
        for (text, expected) in refused {
            let error = Credentials::from_json(text.as_bytes())
                .expect_err(text)
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let all = [
            Credentials::HttpsToken {
                token: "tok-123456".into(),
            },
            Credentials::HttpsBasic {
                username: "me".into(),
                password: "pw-123456".into(),
            },
            Credentials::Ssh {
                private_key: "-----BEGIN OPENSSH PRIVATE KEY-----xyz".into(),
                known_hosts: "host ssh-ed25519 AAAA".into(),
            },
        ];
        for credentials in &all {
            let shown = format!("{credentials:?} {credentials:#?}");
            for secret in ["tok-123456", "pw-123456", "BEGIN OPENSSH"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        if let Credentials::HttpsToken { token } = &all[0] {
            assert_eq!(token.expose_secret(), "tok-123456");
        }
    }
}
