//! Single sign-on with OpenID Connect: the authorization code flow with PKCE (the
//! `openidconnect` crate), the IdP found by discovery when the first person signs in, and the
//! ID token's `groups` claim mapped to grants by configuration (`--oidc-group`). It owns the
//! logins in flight (state, PKCE verifier, nonce; ten minutes at most, in memory) and the
//! calls to the IdP; the dashboard owns the cookies and sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::{Grant, Kind, Principal};

/// How long a person has between leaving for the IdP and coming back.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Logins in flight at most (a flood of `/auth/sso` cannot grow memory without bound).
const MAX_PENDING: usize = 10_000;
/// How long one call to the IdP may take.
const IDP_TIMEOUT: Duration = Duration::from_secs(15);

/// How the hub talks to its IdP.
#[derive(Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// The hub's `/auth/callback` as browsers reach it; registered at the IdP.
    pub redirect_url: String,
    /// Group → grant, in the order given; a person gets every grant of every group they are in.
    pub groups: Vec<(String, Grant)>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// `GROUP=ROLE[:PROJECT]`, as `--oidc-group` takes it.
pub fn parse_group_mapping(text: &str) -> Result<(String, Grant), String> {
    let (group, grant) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected GROUP=ROLE or GROUP=ROLE:PROJECT"))?;
    let group = group.trim();
    if group.is_empty() {
        return Err(format!("{text:?}: the group is empty"));
    }
    Ok((group.to_owned(), Grant::parse(grant)?))
}

/// The grants of someone in `groups`, each once.
pub fn grants_for(mapping: &[(String, Grant)], groups: &[String]) -> Vec<Grant> {
    let mut grants: Vec<Grant> = mapping
        .iter()
        .filter(|(group, _)| groups.iter().any(|g| g == group))
        .map(|(_, grant)| grant.clone())
        .collect();
    grants.sort();
    grants.dedup();
    grants
}

/// Why a sign-in failed. Messages name the step, never a code, token or secret.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider at {issuer} could not be discovered: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("single sign-on is misconfigured: {0}")]
    Config(String),
    #[error("this sign-in is unknown or older than ten minutes; start again")]
    UnknownLogin,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's answer was refused: {0}")]
    BadToken(String),
    #[error("{who} signed in, but none of their groups ({groups}) is mapped to a role here")]
    NoGrants { who: String, groups: String },
}

struct Pending {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    started: Instant,
}

/// The IdP client and the logins in flight.
pub struct Sso {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The claims read from the (verified) ID token beyond the standard ones.
#[derive(Debug, Default, Deserialize)]
struct Extra {
    #[serde(default)]
    groups: Vec<String>,
}

impl Sso {
    pub fn new(config: OidcConfig) -> Result<Self, SsoError> {
        IssuerUrl::new(config.issuer.clone())
            .map_err(|e| SsoError::Config(format!("--oidc-issuer: {e}")))?;
        RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| SsoError::Config(format!("--oidc-redirect-url: {e}")))?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let the IdP's answers send the hub elsewhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(IDP_TIMEOUT)
            .build()
            .map_err(|e| SsoError::Config(format!("HTTP client: {e}")))?;
        Ok(Sso {
            config,
            http,
            metadata: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The IdP's metadata: discovered once, again after a failure.
    async fn metadata(&self) -> Result<CoreProviderMetadata, SsoError> {
        if let Some(metadata) = self.metadata.read().await.as_ref() {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| SsoError::Config(format!("--oidc-issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SsoError::Discovery {
                issuer: self.config.issuer.clone(),
                reason: chain(&e),
            })?;
        *self.metadata.write().await = Some(metadata.clone());
        Ok(metadata)
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SsoError,
    > {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| SsoError::Config(format!("--oidc-redirect-url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            self.metadata().await?,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // Every write is one insert or remove: a panic leaves a consistent map.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a sign-in: the IdP's authorization URL to send the browser to, and the state
    /// the browser must bring back (the caller binds it to the browser with a cookie).
    pub async fn begin(&self) -> Result<(String, String), SsoError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("groups".into()))
            .set_pkce_challenge(challenge)
            .url();
        let now = Instant::now();
        let mut pending = self.pending();
        pending.retain(|_, p| now.duration_since(p.started) < LOGIN_TIMEOUT);
        if pending.len() >= MAX_PENDING {
            return Err(SsoError::Config(
                "too many sign-ins in flight; try again in a few minutes".into(),
            ));
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                verifier,
                nonce,
                started: now,
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes the sign-in `state` with the IdP's `code`: exchanges it (with the PKCE
    /// verifier), verifies the ID token (signature, issuer, audience, expiry, nonce) and maps
    /// its groups to grants. A state is used once.
    pub async fn finish(&self, state: &str, code: &str) -> Result<Principal, SsoError> {
        let pending = self
            .pending()
            .remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_TIMEOUT)
            .ok_or(SsoError::UnknownLogin)?;
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Config(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Refused(chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::BadToken("no ID token in the answer".into()))?;
        let verifier = client.id_token_verifier();
        let claims = match id_token.claims(&verifier, &pending.nonce) {
            Ok(claims) => claims,
            Err(error) => {
                // The IdP may have rotated its signing keys: the next sign-in discovers again.
                *self.metadata.write().await = None;
                return Err(SsoError::BadToken(chain(&error)));
            }
        };
        let who = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()))
            .unwrap_or_else(|| claims.subject().as_str().to_owned());
        let expires = jiff::Timestamp::from_second(claims.expiration().timestamp()).ok();
        // The token's signature is verified above; its payload is read again for `groups`,
        // which the standard claims do not carry.
        let extra = payload_claims(&id_token.to_string()).unwrap_or_default();
        let grants = grants_for(&self.config.groups, &extra.groups);
        if grants.is_empty() {
            return Err(SsoError::NoGrants {
                who,
                groups: if extra.groups.is_empty() {
                    "none".into()
                } else {
                    extra.groups.join(", ")
                },
            });
        }
        Ok(Principal {
            name: who,
            kind: Kind::Sso,
            grants,
            expires,
        })
    }
}

/// The claims of a compact JWT's payload (not verified here).
fn payload_claims(jwt: &str) -> Option<Extra> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error with its sources, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn group_mappings_parse() {
        let (group, grant) = parse_group_mapping("shop-team=maintainer:shop").expect("ok");
        assert_eq!(group, "shop-team");
        assert_eq!(grant, Grant::new(Role::Maintainer, "shop"));
        assert_eq!(
            parse_group_mapping("ops=admin").expect("ok").1,
            Grant::new(Role::Admin, "*")
        );
        assert!(
            parse_group_mapping("ops")
                .expect_err("no =")
                .contains("GROUP=ROLE")
        );
        assert!(
            parse_group_mapping("=viewer")
                .expect_err("empty")
                .contains("empty")
        );
        assert!(
            parse_group_mapping("ops=root")
                .expect_err("role")
                .contains("unknown role")
        );
    }

    #[test]
    fn groups_map_to_every_matching_grant_once() {
        let mapping = vec![
            parse_group_mapping("shop-team=maintainer:shop").expect("ok"),
            parse_group_mapping("auditors=viewer").expect("ok"),
            parse_group_mapping("shop-leads=maintainer:shop").expect("ok"),
        ];
        let grants = grants_for(
            &mapping,
            &["shop-team".into(), "shop-leads".into(), "other".into()],
        );
        assert_eq!(grants, vec![Grant::new(Role::Maintainer, "shop")]);
        assert!(grants_for(&mapping, &["other".into()]).is_empty());
        assert_eq!(
            grants_for(&mapping, &["auditors".into()])[0].role,
            Role::Viewer
        );
    }

    #[test]
    fn the_payload_yields_groups() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","groups":["a","b"]}"#);
        let extra = payload_claims(&format!("h.{payload}.s")).expect("claims");
        assert_eq!(extra.groups, vec!["a", "b"]);
        assert!(payload_claims("nodots").is_none());
    }

    #[tokio::test]
    async fn an_unknown_login_state_is_refused_without_calling_the_idp() {
        let sso = Sso::new(OidcConfig {
            issuer: "http://127.0.0.1:9/dex".into(),
            client_id: "flotilla".into(),
            client_secret: None,
            redirect_url: "http://127.0.0.1:8080/auth/callback".into(),
            groups: vec![],
        })
        .expect("config");
        assert!(matches!(
            sso.finish("forged", "code").await,
            Err(SsoError::UnknownLogin)
        ));
        let discovery = sso.begin().await.expect_err("nothing listens on port 9");
        assert!(
            discovery.to_string().contains("could not be discovered"),
            "{discovery}"
        );
    }
}
