//! Drift events as pages show them: the out-of-band changes agents reported, read from the
//! reports the store keeps (`report["drift"]`), and their table. Pure.

use maud::{Markup, html};

use super::layout::{app_href, cluster_href, dash};
use crate::store::StatusHistoryEntry;

/// One out-of-band change of a managed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub cluster: String,
    pub app: String,
    pub object: String,
    pub changed_by: Vec<String>,
    /// Whether the agent reverted it.
    pub healed: bool,
    /// As the agent wrote it (RFC 3339).
    pub at: String,
}

/// The drift events of `cluster`'s reports, newest report first, of the applications
/// `keep` accepts.
pub fn of_reports(
    cluster: &str,
    reports: &[StatusHistoryEntry],
    keep: impl Fn(&str) -> bool,
) -> Vec<Drift> {
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    reports
        .iter()
        .filter_map(|r| r.report["drift"].as_array())
        .flatten()
        .filter(|d| keep(d["app"].as_str().unwrap_or_default()))
        .map(|d| Drift {
            cluster: cluster.to_owned(),
            app: text(d, "app"),
            object: text(d, "object"),
            changed_by: d["changedBy"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            healed: d["healed"].as_bool().unwrap_or(false),
            at: text(d, "at"),
        })
        .collect()
}

/// The drift table, or a sentence when there is none.
pub fn table(events: &[Drift]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No out-of-band change reported recently." }
        } @else {
            div.table-wrap {
                table #drift {
                    thead {
                        tr {
                            th scope="col" { "At" }
                            th scope="col" { "Cluster" }
                            th scope="col" { "Application" }
                            th scope="col" { "Object" }
                            th scope="col" { "Changed by" }
                            th scope="col" { "Reverted" }
                        }
                    }
                    tbody {
                        @for d in events {
                            tr {
                                td { time datetime=(d.at) { (d.at) } }
                                td { a href=(cluster_href(&d.cluster)) { (d.cluster) } }
                                td { a href=(app_href(&d.app)) { (d.app) } }
                                td { code { (d.object) } }
                                td {
                                    @if d.changed_by.is_empty() { (dash()) }
                                    @else { (d.changed_by.join(", ")) }
                                }
                                td {
                                    @if d.healed { "yes (selfHeal)" } @else { span.word.warn { "no" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_is_read_from_reports() {
        let reports = vec![
            StatusHistoryEntry {
                seq: 2,
                received_at: "2026-11-28T06:00:00Z".parse().expect("time"),
                report: json!({"reason": "drift", "drift": [
                    {"app": "web", "object": "ConfigMap web/web", "changedBy": ["kubectl-edit"], "healed": true, "at": "2026-11-28T05:59:00Z"},
                    {"app": "db", "object": "Service db/db", "changedBy": [], "healed": false, "at": "2026-11-28T05:58:00Z"}
                ]}),
            },
            StatusHistoryEntry {
                seq: 1,
                received_at: "2026-11-28T05:00:00Z".parse().expect("time"),
                report: json!({"reason": "heartbeat"}),
            },
        ];
        let events = of_reports("east", &reports, |app| app == "web");
        assert_eq!(
            events,
            vec![Drift {
                cluster: "east".into(),
                app: "web".into(),
                object: "ConfigMap web/web".into(),
                changed_by: vec!["kubectl-edit".into()],
                healed: true,
                at: "2026-11-28T05:59:00Z".into(),
            }]
        );
        let html = table(&events).into_string();
        assert!(html.contains("kubectl-edit") && html.contains("yes (selfHeal)"));
        assert!(of_reports("east", &reports, |_| true).len() == 2);
    }
}
