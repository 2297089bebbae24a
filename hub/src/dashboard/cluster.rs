//! The page of one cluster: its agent, Kubernetes version, server, when it was last seen and
//! why it was last refused, its labels, and every application it is served with sync,
//! health and why; the objects of those not synced and healthy, and its drift. Pure.

use maud::{Markup, html};

use super::application::objects;
use super::drift::{self, Drift};
use super::layout::{self, app_href, dash, health_tone, status_tone, sync_tone};
use crate::fleet::{Cell, ClusterView, Counts, short_revision};
use crate::store::AppStatus;

/// What the page shows, read by the caller.
#[derive(Debug)]
pub struct ClusterPage<'a> {
    pub cluster: &'a ClusterView,
    /// By application name.
    pub cells: Vec<&'a Cell>,
    /// The latest reports of its applications, with objects.
    pub statuses: &'a [(String, AppStatus)],
    pub drift: &'a [Drift],
}

fn optional(value: Option<&str>) -> Markup {
    match value {
        Some(v) if !v.is_empty() => html! { (v) },
        _ => dash(),
    }
}

/// The page's `<main>` content.
pub fn render(page: &ClusterPage<'_>) -> Markup {
    let cluster = page.cluster;
    let counts = Counts::of(page.cells.iter().copied());
    html! {
        h1 { (cluster.name) }
        p.subtitle {
            "Cluster · " span.word.(status_tone(cluster.status)) { (cluster.status) }
            " · " (page.cells.len()) " application" @if page.cells.len() != 1 { "s" }
            ": " (counts.synced) " synced, " (counts.healthy) " healthy"
        }
        dl.facts #facts {
            dt { "Status" } dd { (cluster.status) }
            dt { "Agent version" } dd { (optional(cluster.agent_version.as_deref())) }
            dt { "Kubernetes version" } dd { (optional(cluster.kube_version.as_deref())) }
            dt { "Server" } dd { (optional(cluster.server.as_deref())) }
            dt { "Last seen" } dd { (layout::time(cluster.last_seen)) }
            dt { "Generation served" } dd {
                @match cluster.generation { Some(g) => (g), None => (dash()) }
            }
            dt { "Last error" } dd {
                @match &cluster.last_error {
                    Some(error) => span.error { (error) },
                    None => (dash()),
                }
            }
            dt { "Labels" } dd {
                @if cluster.labels.is_empty() { (dash()) }
                @else {
                    ul.labels {
                        @for (key, value) in &cluster.labels {
                            li { code { (key) "=" (value) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="apps-title" {
            h2 #apps-title { "Applications" }
            @if page.cells.is_empty() {
                p.muted { "No application is served to this cluster." }
            } @else {
                div.table-wrap {
                    table #apps {
                        thead {
                            tr {
                                th scope="col" { "Application" }
                                th scope="col" { "Revision" }
                                th scope="col" { "Sync" }
                                th scope="col" { "Health" }
                                th scope="col" { "Why" }
                                th scope="col" { "Pinned" }
                            }
                        }
                        tbody {
                            @for cell in &page.cells {
                                tr data-app=(cell.app) {
                                    th scope="row" { a href=(app_href(&cell.app)) { (cell.app) } }
                                    td.revision title=(cell.revision) {
                                        @if cell.revision.is_empty() { (dash()) }
                                        @else { code { (short_revision(&cell.revision)) } }
                                    }
                                    td.sync { (layout::word(&cell.sync, sync_tone(&cell.sync))) }
                                    td.health { (layout::word(&cell.health, health_tone(&cell.health))) }
                                    td.why { @match &cell.why { Some(why) => (why), None => (dash()) } }
                                    td.pinned {
                                        @match &cell.pinned {
                                            Some((revision, by)) => {
                                                "to " code { (short_revision(revision)) } " by " (by)
                                            }
                                            None => (dash()),
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="objects-title" {
            h2 #objects-title { "Objects" }
            (objects(page.statuses, true))
        }
        section aria-labelledby="drift-title" {
            h2 #drift-title { "Drift" }
            (drift::table(page.drift))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_cluster_page_shows_its_facts_and_escapes_labels() {
        let cluster = ClusterView {
            name: "east".into(),
            labels: BTreeMap::from([("team".into(), "<script>alert(1)</script>".into())]),
            status: "Offline",
            last_seen: Some("2026-11-28T06:00:00Z".parse().expect("time")),
            agent_version: Some("0.1.0".into()),
            kube_version: Some("v1.35.0".into()),
            server: Some("https://10.0.0.1:6443".into()),
            last_error: None,
            generation: Some(9),
        };
        let html = render(&ClusterPage {
            cluster: &cluster,
            cells: Vec::new(),
            statuses: &[],
            drift: &[],
        })
        .into_string();
        assert!(html.contains("<h1>east</h1>"));
        assert!(html.contains("v1.35.0") && html.contains("https://10.0.0.1:6443"));
        assert!(html.contains("2026-11-28 06:00:00 UTC"));
        assert!(html.contains("team=&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
    }
}
