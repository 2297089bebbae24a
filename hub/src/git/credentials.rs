//! Repository credentials as the fetcher needs them: an HTTPS token or user and password, an
//! SSH private key with the known_hosts lines to trust, or nothing (local paths, public
//! repositories). Pure: it holds values and strips userinfo from URLs; it reads no file and
//! talks to no network. The store encrypts these at rest; that is not this module's job.
//!
//! Invariant: no secret here has a `Debug` or `Display` that shows it. Secrets are
//! [`SecretString`]s, and every URL that reaches an error or a log line goes through
//! [`redact_url`] first.

use secrecy::SecretString;

/// How to authenticate to one repository.
#[derive(Debug, Clone, Default)]
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
