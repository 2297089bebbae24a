//! Dashboard sessions: who logged in (the principal of the token or the single sign-on they
//! used), until when — twelve hours at most, never past the credential's own expiry — and
//! the CSRF token each of their forms must carry. Held in memory only (a restart logs everyone out), keyed
//! by the SHA-256 of the cookie's value so the table never holds a usable secret.
//!
//! Pure but for the clock and the random bytes, which callers pass in or which come from the
//! OS; it does no HTTP.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::auth::Principal;

/// How long a session lasts after login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The session cookie's name.
pub const COOKIE: &str = "flotilla_session";

/// A message for the next page the session sees, after a form's redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub message: String,
    /// Whether it reports a refusal rather than a success.
    pub error: bool,
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// What every form of this session carries in its `csrf` field.
    pub csrf: String,
    /// Who logged in.
    pub principal: Principal,
    expires: Instant,
    /// The admin token hash of the hub that made it: a session of one hub is nothing to
    /// another in the same process.
    owner: [u8; 32],
    flash: Option<Flash>,
}

impl Session {
    /// Whether `given` is this session's CSRF token (in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// Every live session.
#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// The process's sessions. Invariant: each entry names the hub it belongs to (`owner`),
    /// so one table serves every hub of the process.
    pub fn global() -> &'static Sessions {
        static SESSIONS: OnceLock<Sessions> = OnceLock::new();
        SESSIONS.get_or_init(Sessions::default)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves a consistent map: every write is one insert
        // or remove.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session of `principal` on the hub whose admin token hashes to `owner`, for
    /// [`LIFETIME`] or until the credential ends (`left`), whichever comes first; the
    /// cookie's value. Expired sessions are dropped on the way.
    pub fn create(
        &self,
        owner: [u8; 32],
        principal: Principal,
        now: Instant,
        left: Option<Duration>,
    ) -> String {
        let token = random_token();
        let session = Session {
            csrf: random_token(),
            principal,
            expires: now + left.map_or(LIFETIME, |left| left.min(LIFETIME)),
            owner,
            flash: None,
        };
        let mut table = self.table();
        table.retain(|_, s| s.expires > now);
        table.insert(key(&token), session);
        token
    }

    /// The live session of `owner`'s hub whose cookie is `token`.
    pub fn find(&self, token: &str, owner: &[u8; 32], now: Instant) -> Option<Session> {
        let mut table = self.table();
        let k = key(token);
        let session = table.get(&k)?;
        if session.expires <= now {
            table.remove(&k);
            return None;
        }
        bool::from(session.owner.ct_eq(owner)).then(|| session.clone())
    }

    /// Ends the session; false when there was none.
    pub fn end(&self, token: &str) -> bool {
        self.table().remove(&key(token)).is_some()
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, token: &str, flash: Flash) {
        if let Some(session) = self.table().get_mut(&key(token)) {
            session.flash = Some(flash);
        }
    }

    /// The message left for this page, once.
    pub fn take_flash(&self, token: &str) -> Option<Flash> {
        self.table()
            .get_mut(&key(token))
            .and_then(|s| s.flash.take())
    }

    /// How many sessions the table holds, expired ones included.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: [u8; 32] = [7; 32];

    #[test]
    fn a_session_lives_twelve_hours() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let token = sessions.create(HUB, Principal::local_admin(), start, None);
        assert_eq!(token.len(), 64);
        assert!(sessions.find(&token, &HUB, start).is_some());
        assert!(
            sessions
                .find(&token, &HUB, start + LIFETIME - Duration::from_secs(1))
                .is_some()
        );
        assert!(sessions.find(&token, &HUB, start + LIFETIME).is_none());
        // The expired session is gone from the table, not only refused.
        assert!(sessions.is_empty());
    }

    #[test]
    fn expired_sessions_are_dropped_when_another_is_made() {
        let sessions = Sessions::default();
        let start = Instant::now();
        sessions.create(HUB, Principal::local_admin(), start, None);
        sessions.create(HUB, Principal::local_admin(), start, None);
        let later = sessions.create(
            HUB,
            Principal::local_admin(),
            start + LIFETIME + Duration::from_secs(1),
            None,
        );
        assert_eq!(sessions.len(), 1);
        assert!(
            sessions
                .find(&later, &HUB, start + LIFETIME + Duration::from_secs(2))
                .is_some()
        );
    }

    #[test]
    fn a_session_ends_with_its_credential() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let token = sessions.create(
            HUB,
            Principal::local_admin(),
            start,
            Some(Duration::from_secs(60)),
        );
        assert!(
            sessions
                .find(&token, &HUB, start + Duration::from_secs(59))
                .is_some()
        );
        assert!(
            sessions
                .find(&token, &HUB, start + Duration::from_secs(60))
                .is_none()
        );
    }

    #[test]
    fn sessions_belong_to_their_hub_and_end() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let token = sessions.create(HUB, Principal::local_admin(), now, None);
        assert!(sessions.find(&token, &[8; 32], now).is_none());
        assert!(sessions.find("not-a-session", &HUB, now).is_none());
        assert!(sessions.end(&token));
        assert!(sessions.find(&token, &HUB, now).is_none());
        assert!(!sessions.end(&token));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let token = sessions.create(HUB, Principal::local_admin(), now, None);
        let session = sessions.find(&token, &HUB, now).expect("live");
        let check = |given: &str, expected: bool| assert_eq!(session.csrf_matches(given), expected);
        check(&session.csrf.clone(), true);
        check("", false);
        check(&session.csrf[..63], false);
        check(&format!("{}0", session.csrf), false);
        check(&session.csrf.to_uppercase(), false);
        // Each session has its own.
        let other = sessions.create(HUB, Principal::local_admin(), now, None);
        let other = sessions.find(&other, &HUB, now).expect("live");
        assert_ne!(other.csrf, session.csrf);
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = Sessions::default();
        let token = sessions.create(HUB, Principal::local_admin(), Instant::now(), None);
        let flash = Flash {
            message: "rolled back".into(),
            error: false,
        };
        sessions.set_flash(&token, flash.clone());
        assert_eq!(sessions.take_flash(&token), Some(flash));
        assert_eq!(sessions.take_flash(&token), None);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; flotilla_session=abc ; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
