//! Named failpoints: places in publication where a crash test makes the hub abort, to prove
//! that a crash at that step never serves a half-published state.
//!
//! Failpoints exist only in test builds and with the `failpoints` cargo feature; in any other
//! build `Failpoints::hit` is an empty function and asking for a failpoint is an error. They
//! are chosen once at start-up through clap (`--failpoints`, `FLOTILLA_HUB_FAILPOINTS`); this
//! module never reads the environment itself.

use std::collections::BTreeSet;

/// After the new states are planned (renders in hand), before anything is written.
pub const AFTER_RENDER: &str = "after-render";
/// After the new blobs are committed, before any state is signed.
pub const AFTER_BLOB_WRITE: &str = "after-blob-write";
/// After a state is signed, before it is stored.
pub const AFTER_SIGN: &str = "after-sign";
/// Inside the transaction that stores a state, after its rows are written, before commit.
pub const MID_TRANSACTION: &str = "mid-transaction";
/// After a state is committed, before agents are woken.
pub const AFTER_COMMIT: &str = "after-commit";

/// Every failpoint, in the order publication reaches them.
pub const ALL: &[&str] = &[
    AFTER_RENDER,
    AFTER_BLOB_WRITE,
    AFTER_SIGN,
    MID_TRANSACTION,
    AFTER_COMMIT,
];

/// Why a failpoint list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailpointError {
    #[error("failpoint {0:?} does not exist (known: {known})", known = ALL.join(", "))]
    Unknown(String),
    #[error("failpoints are not compiled into this build (cargo feature \"failpoints\")")]
    NotCompiled,
}

/// The failpoints enabled in this process. `Failpoints::default()` enables none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failpoints {
    enabled: BTreeSet<&'static str>,
}

impl Failpoints {
    /// No failpoint enabled.
    pub fn none() -> Self {
        Self::default()
    }

    /// Enables the named failpoints; refuses unknown names, and any name at all in a build
    /// without failpoints.
    pub fn enable<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, FailpointError> {
        let mut enabled = BTreeSet::new();
        for name in names {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let known = ALL
                .iter()
                .find(|known| **known == name)
                .ok_or_else(|| FailpointError::Unknown(name.to_owned()))?;
            if !cfg!(any(test, feature = "failpoints")) {
                return Err(FailpointError::NotCompiled);
            }
            enabled.insert(*known);
        }
        Ok(Self { enabled })
    }

    /// Aborts the process (no unwinding, no destructors, like a kill) when `name` is enabled.
    pub fn hit(&self, name: &'static str) {
        #[cfg(any(test, feature = "failpoints"))]
        if self.enabled.contains(name) {
            tracing::error!(failpoint = name, "failpoint hit; aborting");
            std::process::abort();
        }
        #[cfg(not(any(test, feature = "failpoints")))]
        let _ = name;
    }
}

/// The hidden, test-only flag that enables failpoints; flattened into a command's `Args`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FailpointArgs {
    /// Comma-separated failpoints that abort the hub (tests only).
    #[arg(
        long = "failpoints",
        env = "FLOTILLA_HUB_FAILPOINTS",
        value_delimiter = ',',
        hide = true
    )]
    pub failpoints: Vec<String>,
}

impl FailpointArgs {
    pub fn failpoints(&self) -> Result<Failpoints, FailpointError> {
        Failpoints::enable(self.failpoints.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(names: &[&str], expected: Result<Vec<&str>, FailpointError>) {
        let got = Failpoints::enable(names.iter().copied())
            .map(|f| f.enabled.into_iter().collect::<Vec<_>>());
        assert_eq!(got, expected, "{names:?}");
    }

    #[test]
    fn names_are_checked() {
        check(&[], Ok(vec![]));
        check(&[" after-sign ", ""], Ok(vec![AFTER_SIGN]));
        check(
            &[MID_TRANSACTION, AFTER_RENDER],
            Ok(vec![AFTER_RENDER, MID_TRANSACTION]),
        );
        check(
            &["after-lunch"],
            Err(FailpointError::Unknown("after-lunch".to_owned())),
        );
        // A disabled failpoint is a no-op.
        Failpoints::enable([AFTER_SIGN])
            .expect("known")
            .hit(AFTER_RENDER);
    }
}
