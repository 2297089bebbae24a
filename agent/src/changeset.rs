//! The change set of one sync: per object what happened (Created, Configured, Unchanged,
//! Deleted, Skipped, Failed) with a message, and how it prints for a person.
//!
//! It must not decide anything: the engine records outcomes here.

use std::fmt;

use serde::Serialize;

use crate::object::ObjectRef;

/// What a sync did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    /// Left alone on purpose: a conflict, a held prune, a refused object.
    Skipped,
    Failed,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Action::Created => "Created",
            Action::Configured => "Configured",
            Action::Unchanged => "Unchanged",
            Action::Deleted => "Deleted",
            Action::Skipped => "Skipped",
            Action::Failed => "Failed",
        };
        f.pad(s)
    }
}

/// One entry of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub app: String,
    /// `Kind namespace/name` or `Kind name`.
    pub object: String,
    pub action: Action,
    pub message: String,
}

/// Everything one sync did, in the order it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    pub entries: Vec<Change>,
}

impl ChangeSet {
    pub fn record(&mut self, app: &str, object: &ObjectRef, action: Action, message: String) {
        self.entries.push(Change {
            app: app.to_owned(),
            object: object.to_string(),
            action,
            message,
        });
    }

    /// Records an outcome that concerns an app as a whole (an orphan, a refused prune step).
    pub fn record_app(&mut self, app: &str, action: Action, message: String) {
        self.entries.push(Change {
            app: app.to_owned(),
            object: String::new(),
            action,
            message,
        });
    }

    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|c| c.action == action).count()
    }

    /// Whether everything asked for was done: nothing failed.
    pub fn succeeded(&self) -> bool {
        self.count(Action::Failed) == 0
    }

    pub fn extend(&mut self, other: ChangeSet) {
        self.entries.extend(other.entries);
    }
}

/// A table, one line per entry, then a one-line summary.
impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let app_width = self
            .entries
            .iter()
            .map(|c| c.app.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let object_width = self
            .entries
            .iter()
            .map(|c| c.object.len())
            .max()
            .unwrap_or(6)
            .max(6);
        for change in &self.entries {
            let line = format!(
                "{:<app_width$}  {:<10}  {:<object_width$}  {}",
                change.app, change.action, change.object, change.message
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        let summary = [
            Action::Created,
            Action::Configured,
            Action::Unchanged,
            Action::Deleted,
            Action::Skipped,
            Action::Failed,
        ]
        .iter()
        .map(|a| format!("{} {}", self.count(*a), a.to_string().to_lowercase()))
        .collect::<Vec<_>>()
        .join(", ");
        write!(f, "{summary}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef::new("v1", kind, namespace, name).expect("valid object")
    }

    #[test]
    fn prints_a_table_and_a_summary() {
        let mut set = ChangeSet::default();
        set.record(
            "shop",
            &object("ConfigMap", Some("shop"), "a"),
            Action::Created,
            String::new(),
        );
        set.record(
            "shop",
            &object("Namespace", None, "shop"),
            Action::Skipped,
            "owned by app other".into(),
        );
        assert_eq!(
            set.to_string(),
            "shop  Created     ConfigMap shop/a\n\
             shop  Skipped     Namespace shop    owned by app other\n\
             1 created, 0 configured, 0 unchanged, 0 deleted, 1 skipped, 0 failed"
        );
        assert!(set.succeeded());
    }

    #[test]
    fn a_failure_fails_the_set() {
        let mut set = ChangeSet::default();
        set.record(
            "a",
            &object("Pod", Some("x"), "p"),
            Action::Failed,
            "forbidden".into(),
        );
        assert!(!set.succeeded());
    }
}
