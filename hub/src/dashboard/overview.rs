//! The fleet overview: counts, filters and the clusters × columns matrix, one page of
//! clusters at a time. Pure: a [`Fleet`] and the query in, `<main>`'s content out.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::layout::{self, app_href, cluster_href, state_words, status_tone};
use crate::fleet::{Counts, Filter, Fleet, Page, Selector};

/// Clusters per page unless the query says otherwise.
pub const PAGE_SIZE: usize = 50;

/// The cluster status words a filter may ask for.
const STATUSES: [&str; 6] = [
    "Online",
    "Offline",
    "Registered",
    "Pending",
    "Unregistered",
    "Revoked",
];

/// What the overview's query string asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub selector: String,
    pub project: String,
    pub cluster: String,
    pub app: String,
    pub status: String,
    pub problems: bool,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Query {
    /// Reads a query string; unknown parameters are ignored, bad numbers fall back.
    pub fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self {
            page: 1,
            per_page: PAGE_SIZE,
            ..Self::default()
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = value.trim().to_owned();
            match key.as_ref() {
                "selector" => parsed.selector = value,
                "project" => parsed.project = value,
                "cluster" => parsed.cluster = value,
                "app" => parsed.app = value,
                "status" => parsed.status = value,
                "problems" => parsed.problems = !value.is_empty() && value != "0",
                "page" => parsed.page = value.parse().ok().filter(|p| *p >= 1).unwrap_or(1),
                "per_page" => {
                    parsed.per_page = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
                        .unwrap_or(PAGE_SIZE);
                }
                _ => {}
            }
        }
        parsed
    }

    /// The fleet filter it asks for, and why its label selector was ignored, if it was.
    pub fn filter(&self) -> (Filter, Option<String>) {
        let (cluster_selector, error) = match Selector::parse(&self.selector) {
            Ok(selector) => (selector, None),
            Err(error) => (Selector::default(), Some(error)),
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let filter = Filter {
            cluster_selector,
            app_selector: Selector::default(),
            project: some(&self.project),
            cluster: some(&self.cluster),
            app: some(&self.app),
            status: some(&self.status),
            problems_only: self.problems,
        };
        (filter, error)
    }

    /// The overview's URL with this query at `page`.
    pub fn href(&self, page: usize) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("selector", &self.selector),
            ("project", &self.project),
            ("cluster", &self.cluster),
            ("app", &self.app),
            ("status", &self.status),
        ] {
            if !value.is_empty() {
                out.append_pair(key, value);
            }
        }
        if self.problems {
            out.append_pair("problems", "1");
        }
        if self.per_page != PAGE_SIZE {
            out.append_pair("per_page", &self.per_page.to_string());
        }
        if page > 1 {
            out.append_pair("page", &page.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

/// The overview's `<main>` content.
pub fn render(fleet: &Fleet, query: &Query) -> Markup {
    let (filter, selector_error) = query.filter();
    let (clusters, columns) = fleet.select(&filter);
    let counts = Counts::of(clusters.iter().flat_map(|cluster| {
        columns
            .iter()
            .filter_map(|column| fleet.column_cell(&column.name, &cluster.name))
    }));
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for cluster in &clusters {
        *by_status.entry(cluster.status).or_default() += 1;
    }
    let page = Page {
        offset: (query.page - 1).saturating_mul(query.per_page),
        limit: query.per_page,
    };
    let (shown, next) = page.of(&clusters);
    let pages = clusters.len().div_ceil(query.per_page).max(1);
    let mut projects: Vec<&str> = fleet.columns.iter().map(|c| c.project.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    html! {
        h1 { "Fleet" }
        section #counts aria-label="Counts" {
            div.count {
                span.figure { (clusters.len()) }
                " clusters"
                @if !by_status.is_empty() {
                    ": "
                    @for (i, (status, n)) in by_status.iter().enumerate() {
                        @if i > 0 { ", " }
                        span.word.(status_tone(status)) { (n) " " (status) }
                    }
                }
            }
            div.count { span.figure { (counts.cells) } " application cells" }
            div.count { span.figure { (counts.synced) } " synced" }
            div.count { span.figure { (counts.out_of_sync) } " out of sync" }
            div.count { span.figure { (counts.healthy) } " healthy" }
            div.count { span.figure { (counts.degraded) } " degraded" }
            div.count { span.figure { (counts.progressing) } " progressing" }
            div.count { span.figure { (counts.unknown) } " unknown" }
        }
        (filters(query, &projects, selector_error.as_deref()))
        @if clusters.is_empty() {
            p.empty { "No cluster matches." }
        } @else {
            div.matrix-wrap role="region" aria-label="Fleet matrix" tabindex="0" {
                table #matrix {
                    caption.sr-only {
                        "Clusters (rows) by application (columns); page " (query.page) " of " (pages)
                    }
                    thead {
                        tr {
                            th scope="col" { "Cluster" }
                            th scope="col" { "Status" }
                            @for column in &columns {
                                th scope="col" data-column=(column.name) title=(column.kind) {
                                    a href=(app_href(&column.name)) { (column.name) }
                                }
                            }
                        }
                    }
                    tbody {
                        @for cluster in shown {
                            tr data-cluster=(cluster.name) {
                                th scope="row" {
                                    a href=(cluster_href(&cluster.name)) { (cluster.name) }
                                }
                                td.status { span.word.(status_tone(cluster.status)) { (cluster.status) } }
                                @for column in &columns {
                                    @match fleet.column_cell(&column.name, &cluster.name) {
                                        Some(cell) => {
                                            td.cell data-column=(column.name) data-sync=(cell.sync)
                                                data-health=(cell.health)
                                                title=(cell.why.clone().unwrap_or_else(|| state_words(cell))) {
                                                (layout::badge(cell))
                                            }
                                        }
                                        None => {
                                            td.cell.none data-column=(column.name) {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if query.page > 1 {
                a rel="prev" href=(query.href(query.page - 1)) { "← Previous" }
            }
            span {
                "Page " (query.page.min(pages)) " of " (pages)
                @if !shown.is_empty() {
                    " (clusters " (page.offset + 1) "–" (page.offset + shown.len()) " of " (clusters.len()) ")"
                }
            }
            @if next.is_some() {
                a rel="next" href=(query.href(query.page + 1)) { "Next →" }
            }
        }
    }
}

fn filters(query: &Query, projects: &[&str], selector_error: Option<&str>) -> Markup {
    html! {
        form #filters method="get" action="/" {
            div.field {
                label for="f-selector" { "Cluster labels" }
                input #f-selector name="selector" type="text" value=(query.selector)
                    placeholder="env=prod,region" aria-describedby=[selector_error.map(|_| "f-selector-error")];
            }
            div.field {
                label for="f-project" { "Project" }
                select #f-project name="project" {
                    option value="" selected[query.project.is_empty()] { "Any" }
                    @for project in projects {
                        option value=(project) selected[query.project == *project] { (project) }
                    }
                    @if !query.project.is_empty() && !projects.contains(&query.project.as_str()) {
                        option value=(query.project) selected { (query.project) }
                    }
                }
            }
            div.field {
                label for="f-cluster" { "Cluster name" }
                input #f-cluster name="cluster" type="search" value=(query.cluster);
            }
            div.field {
                label for="f-app" { "Application name" }
                input #f-app name="app" type="search" value=(query.app);
            }
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[query.status.is_empty()] { "Any" }
                    @for status in STATUSES {
                        option value=(status) selected[query.status == status] { (status) }
                    }
                }
            }
            div.field.check {
                input #f-problems name="problems" type="checkbox" value="1" checked[query.problems];
                label for="f-problems" { "Only problems" }
            }
            div.field.buttons {
                button type="submit" { "Filter" }
                a href="/" { "Clear" }
            }
            @if let Some(error) = selector_error {
                p.error #f-selector-error { "The label selector was ignored: " (error) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::fleet::{AppView, Cell, ClusterView};

    fn cluster(name: &str, status: &'static str, labels: &[(&str, &str)]) -> ClusterView {
        ClusterView {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            status,
            last_seen: None,
            agent_version: None,
            kube_version: None,
            server: None,
            last_error: None,
            generation: Some(1),
        }
    }

    fn app(name: &str, generated_by: Option<&str>) -> AppView {
        AppView {
            name: name.to_owned(),
            project: "default".to_owned(),
            origin: if generated_by.is_some() {
                "generated"
            } else {
                "api"
            },
            generated_by: generated_by.map(str::to_owned),
            labels: BTreeMap::new(),
        }
    }

    fn cell(app: &str, cluster: &str, sync: &str, health: &str) -> Cell {
        Cell {
            app: app.to_owned(),
            cluster: cluster.to_owned(),
            generation: 1,
            revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            blob: String::new(),
            sync: sync.to_owned(),
            health: health.to_owned(),
            message: String::new(),
            why: (sync != "Synced" || health != "Healthy")
                .then(|| format!("{app} on {cluster} is {sync}")),
            pinned: None,
        }
    }

    fn small_fleet() -> Fleet {
        Fleet::from_parts(
            vec![
                cluster("east", "Online", &[("env", "prod")]),
                cluster("west", "Offline", &[("env", "<script>alert(1)</script>")]),
            ],
            vec![
                app("web-east", Some("web")),
                app("web-west", Some("web")),
                app("db", None),
            ],
            vec![
                cell("web-east", "east", "Synced", "Healthy"),
                cell("web-west", "west", "OutOfSync", "Degraded"),
                cell("db", "east", "Synced", "Progressing"),
            ],
        )
    }

    #[test]
    fn the_matrix_has_a_row_per_cluster_and_a_column_per_column() {
        let html = render(&small_fleet(), &Query::parse(None)).into_string();
        assert!(html.contains(r#"<table id="matrix">"#), "{html}");
        assert!(html.contains(r#"<tr data-cluster="east">"#));
        assert!(html.contains(r#"<tr data-cluster="west">"#));
        assert!(html.contains(
            r#"<th scope="col" data-column="web" title="ApplicationSet"><a href="/apps/web">web</a></th>"#
        ));
        assert!(html.contains(r#"data-column="db""#));
        assert!(html.contains(
            r#"<td class="cell" data-column="web" data-sync="Synced" data-health="Healthy" title="Synced, Healthy">"#
        ), "{html}");
        assert!(html.contains(
            r#"data-column="web" data-sync="OutOfSync" data-health="Degraded" title="web-west on west is OutOfSync">"#
        ));
        // db does not target west: an empty cell.
        assert!(html.contains(r#"<td class="cell none" data-column="db"></td>"#));
        assert!(html.contains(r#"<span class="sr-only">Synced, Healthy</span>"#));
        assert!(html.contains(r#"<section id="counts""#));
        // Labels are not shown in the matrix, and nothing from them runs.
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn filters_keep_what_they_name() {
        let fleet = small_fleet();
        let check = |query: &str, rows: &[&str]| {
            let html = render(&fleet, &Query::parse(Some(query))).into_string();
            for name in ["east", "west"] {
                let shown = html.contains(&format!(r#"<tr data-cluster="{name}">"#));
                assert_eq!(shown, rows.contains(&name), "{query}: {name}");
            }
        };
        check("", &["east", "west"]);
        check("selector=env%3Dprod", &["east"]);
        check("status=Offline", &["west"]);
        check("cluster=ea", &["east"]);
        check("problems=1", &["east", "west"]);
        check("app=web&problems=1", &["west"]);
        check("selector=bad+key%3Dx", &["east", "west"]);
        let html = render(&fleet, &Query::parse(Some("selector=bad+key%3Dx"))).into_string();
        assert!(html.contains("The label selector was ignored"));
    }

    #[test]
    fn queries_round_trip_through_links() {
        let query = Query::parse(Some("selector=env%3Dprod&problems=on&page=3&x=1"));
        assert_eq!(query.page, 3);
        assert!(query.problems);
        assert_eq!(query.href(4), "/?selector=env%3Dprod&problems=1&page=4");
        assert_eq!(Query::parse(Some("page=0")).page, 1);
        assert_eq!(Query::parse(None).href(1), "/");
    }

    fn big_fleet(clusters: usize, apps: usize) -> Fleet {
        let names: Vec<String> = (0..clusters).map(|i| format!("cluster-{i:04}")).collect();
        let views = names
            .iter()
            .map(|n| cluster(n, "Online", &[("env", "prod")]))
            .collect();
        let app_views = (0..apps)
            .map(|a| app(&format!("app-{a:03}"), None))
            .collect();
        let mut cells = Vec::with_capacity(clusters * apps);
        for (i, name) in names.iter().enumerate() {
            for a in 0..apps {
                let (sync, health) = if (i + a) % 17 == 0 {
                    ("OutOfSync", "Degraded")
                } else {
                    ("Synced", "Healthy")
                };
                cells.push(cell(&format!("app-{a:03}"), name, sync, health));
            }
        }
        Fleet::from_parts(views, app_views, cells)
    }

    #[test]
    fn pages_hold_fifty_clusters_and_link_the_next() {
        let fleet = big_fleet(120, 3);
        let html = render(&fleet, &Query::parse(None)).into_string();
        assert_eq!(html.matches("<tr data-cluster=").count(), 50);
        assert!(html.contains(r#"<a rel="next" href="/?page=2">"#));
        let last = render(&fleet, &Query::parse(Some("page=3"))).into_string();
        assert_eq!(last.matches("<tr data-cluster=").count(), 20);
        assert!(!last.contains(r#"rel="next""#));
        assert!(last.contains(r#"rel="prev""#));
    }

    /// Prints how long building and rendering a 1,000 × 100 fleet take (never asserted).
    #[test]
    fn a_thousand_clusters_by_a_hundred_applications() {
        let started = Instant::now();
        let fleet = big_fleet(1000, 100);
        let built = started.elapsed();
        let started = Instant::now();
        let html = render(&fleet, &Query::parse(None)).into_string();
        let rendered = started.elapsed();
        let started = Instant::now();
        let problems = render(&fleet, &Query::parse(Some("problems=1&page=3"))).into_string();
        let filtered = started.elapsed();
        println!(
            "fleet of 1000 clusters x 100 applications (100000 cells): built in {built:?}; \
             overview page rendered in {rendered:?} ({} bytes); problems-only page 3 in {filtered:?}",
            html.len()
        );
        assert_eq!(html.matches("<tr data-cluster=").count(), 50);
        assert_eq!(problems.matches("<tr data-cluster=").count(), 50);
        assert!(
            html.contains("100000</span> application cells"),
            "counts cover the fleet"
        );
    }
}
