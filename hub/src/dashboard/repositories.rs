//! The repositories page: every Git repository the hub fetches, its URL without
//! credentials, whether it has any, how often it is polled and why its last fetch failed;
//! and the configuration repository's status. Pure; never shows a credential.

use maud::{Markup, html};

use super::layout::{self, dash};
use crate::config_repo::ConfigStatus;
use crate::git::redact_url;
use crate::store::RepositoryRecord;

/// A repository the hub knows, and why its last fetch failed, if it did.
#[derive(Debug)]
pub struct Row<'a> {
    pub url: &'a str,
    /// Its registration (credentials, poll interval), when it was registered; otherwise an
    /// application or the configuration names it and it is fetched without credentials.
    pub record: Option<&'a RepositoryRecord>,
    pub fetch_error: Option<String>,
}

/// The page's `<main>` content.
pub fn render(rows: &[Row<'_>], config: &ConfigStatus) -> Markup {
    html! {
        h1 { "Repositories" }
        @if rows.is_empty() {
            p.muted { "No repository is registered or named by an application yet." }
        } @else {
            div.table-wrap {
                table #repositories {
                    thead {
                        tr {
                            th scope="col" { "URL" }
                            th scope="col" { "Credentials" }
                            th scope="col" { "Poll interval" }
                            th scope="col" { "Last fetch" }
                            th scope="col" { "Updated" }
                        }
                    }
                    tbody {
                        @for row in rows {
                            tr {
                                th scope="row" { code { (redact_url(row.url)) } }
                                td {
                                    @if row.record.is_some_and(|r| r.has_credentials) { "yes" } @else { "no" }
                                    @if row.record.is_none() { span.muted { " (not registered)" } }
                                }
                                td {
                                    @match row.record.and_then(|r| r.poll_interval) {
                                        Some(interval) => { (interval.as_secs()) " s" }
                                        None => "hub default",
                                    }
                                }
                                td {
                                    @match &row.fetch_error {
                                        Some(error) => span.word.bad { "failed: " (error) },
                                        None => span.word.ok { "ok" },
                                    }
                                }
                                td {
                                    @match row.record {
                                        Some(r) => (layout::time(Some(r.updated_at))),
                                        None => (dash()),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(source) = &config.source {
            section aria-labelledby="config-title" {
                h2 #config-title { "Configuration repository" }
                dl.facts {
                    dt { "URL" } dd { code { (redact_url(&source.url)) } }
                    dt { "Revision" } dd { (source.revision) }
                    dt { "Path" } dd { (source.path) }
                    dt { "Applied commit" } dd {
                        @match &config.applied_commit {
                            Some(commit) => code { (commit) },
                            None => (dash()),
                        }
                    }
                    dt { "Applied at" } dd { (layout::time(config.applied_at)) }
                    dt { "Documents" } dd { (config.documents.len()) }
                    dt { "Error" } dd {
                        @match &config.error {
                            Some(error) => span.error { (error) },
                            None => (dash()),
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

    #[test]
    fn urls_are_shown_without_credentials() {
        let at = "2026-11-28T06:00:00Z".parse().expect("time");
        let repo = RepositoryRecord {
            url: "https://user:s3cret@git.example/acme/fleet.git".into(),
            has_credentials: true,
            poll_interval: Some(std::time::Duration::from_secs(60)),
            created_at: at,
            updated_at: at,
        };
        let html = render(
            &[Row {
                url: &repo.url,
                record: Some(&repo),
                fetch_error: Some("could not resolve host".into()),
            }],
            &ConfigStatus::default(),
        )
        .into_string();
        assert!(!html.contains("s3cret"), "{html}");
        assert!(html.contains("https://git.example/acme/fleet.git"));
        assert!(html.contains("failed: could not resolve host"));
        assert!(html.contains("60 s"));
    }
}
