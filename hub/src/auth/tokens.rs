//! API tokens: named, scoped by their grants, expiring, revocable, kept as their SHA-256
//! only. What a presented token proves ([`check`]) and how long a new one lives
//! ([`parse_lifetime`]). Pure: the store keeps the records, the API writes them.

use jiff::{SignedDuration, Timestamp};

use super::{Grant, Kind, Principal};

/// A token's lifetime when its creator names none.
pub const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The longest lifetime a token may have.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(366 * 24);

/// One API token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// Short random id, for listing and revoking.
    pub id: String,
    pub name: String,
    /// SHA-256 (hex) of the token.
    pub hash: String,
    pub grants: Vec<Grant>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub expires_at: Timestamp,
    pub revoked: Option<(Timestamp, String)>,
}

/// Why a presented token is refused. The messages never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the token is not one this hub issued")]
    Unknown,
    #[error("the token {name:?} expired at {at}")]
    Expired { name: String, at: Timestamp },
    #[error("the token {name:?} was revoked at {at} by {by}")]
    Revoked {
        name: String,
        at: Timestamp,
        by: String,
    },
}

/// The principal `token` stands for at `now`, or why it stands for none.
pub fn check(token: Option<&ApiToken>, now: Timestamp) -> Result<Principal, Refused> {
    let token = token.ok_or(Refused::Unknown)?;
    if let Some((at, by)) = &token.revoked {
        return Err(Refused::Revoked {
            name: token.name.clone(),
            at: *at,
            by: by.clone(),
        });
    }
    if token.expires_at <= now {
        return Err(Refused::Expired {
            name: token.name.clone(),
            at: token.expires_at,
        });
    }
    Ok(Principal {
        name: format!("token:{}", token.name),
        kind: Kind::Token(token.id.clone()),
        grants: token.grants.clone(),
        expires: Some(token.expires_at),
    })
}

/// A lifetime written `90m`, `12h`, `30d` (or a whole number of seconds followed by `s`),
/// at most [`MAX_LIFETIME`].
pub fn parse_lifetime(text: &str) -> Result<SignedDuration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("lifetime {text:?}: add a unit (s, m, h or d), e.g. 30d"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("lifetime {text:?}: expected a number and a unit, e.g. 30d"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => {
            return Err(format!(
                "lifetime {text:?}: unknown unit {unit:?} (s, m, h, d)"
            ));
        }
    }
    .ok_or_else(|| format!("lifetime {text:?} is too long"))?;
    let lifetime = SignedDuration::from_secs(seconds);
    if lifetime <= SignedDuration::ZERO {
        return Err(format!("lifetime {text:?} must be positive"));
    }
    if lifetime > MAX_LIFETIME {
        return Err(format!(
            "lifetime {text:?} exceeds the longest allowed, 366d"
        ));
    }
    Ok(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn token() -> ApiToken {
        ApiToken {
            id: "t1".into(),
            name: "ci".into(),
            hash: "h".into(),
            grants: vec![Grant::new(Role::Maintainer, "shop")],
            created_at: Timestamp::UNIX_EPOCH,
            created_by: "admin".into(),
            expires_at: Timestamp::from_second(100).expect("ts"),
            revoked: None,
        }
    }

    #[test]
    fn live_tokens_stand_for_their_grants() {
        let p = check(Some(&token()), Timestamp::from_second(99).expect("ts")).expect("live");
        assert_eq!(p.name, "token:ci");
        assert_eq!(p.grants_text(), "maintainer:shop");
        assert_eq!(p.kind, Kind::Token("t1".into()));
    }

    #[test]
    fn expired_revoked_and_unknown_tokens_are_refused_by_name() {
        let at = Timestamp::from_second(100).expect("ts");
        let expired = check(Some(&token()), at).expect_err("expired");
        assert!(
            expired.to_string().contains("\"ci\" expired at"),
            "{expired}"
        );
        let mut revoked = token();
        revoked.revoked = Some((Timestamp::UNIX_EPOCH, "admin".into()));
        let refused = check(Some(&revoked), Timestamp::UNIX_EPOCH).expect_err("revoked");
        assert!(refused.to_string().contains("revoked"), "{refused}");
        assert_eq!(check(None, at), Err(Refused::Unknown));
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90m"), Ok(SignedDuration::from_mins(90)));
        assert_eq!(parse_lifetime("30d"), Ok(DEFAULT_LIFETIME));
        assert!(parse_lifetime("400d").expect_err("long").contains("366d"));
        assert!(parse_lifetime("0h").is_err());
        assert!(parse_lifetime("12").expect_err("unit").contains("unit"));
        assert!(parse_lifetime("12w").expect_err("unit").contains("\"w\""));
        assert!(parse_lifetime("99999999999999999d").is_err());
    }
}
