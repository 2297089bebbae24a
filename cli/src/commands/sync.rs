//! `flotilla app sync [--wait]`: asks the hub to fetch an application's repositories and
//! publish now; with `--wait`, polls the application every second until every cluster is
//! Synced and Healthy, showing the progress on standard error, bounded by `--wait-timeout`.
//! What counts as done and the progress line are pure ([`progress`], [`Progress::line`]);
//! [`Display`] writes them to standard error.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::AppSyncArgs;
use crate::client::Client;
use crate::output::{self, Format, or_dash};

/// What the hub's answer to a sync says, in one line.
fn published(name: &str, answer: &Value) -> String {
    let fetched = match answer["repositories"].as_u64() {
        Some(1) => "its repository".to_owned(),
        Some(0) | None => "every repository".to_owned(),
        Some(n) => format!("its {n} repositories"),
    };
    if answer["published"] != true {
        return format!(
            "sync of application {name} requested: the hub fetches {fetched} and publishes what changed\n"
        );
    }
    let cells = answer["clusters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut revisions: Vec<String> = cells
        .iter()
        .map(|c| output::short_revision(&c["revision"]))
        .collect();
    revisions.sort();
    revisions.dedup();
    format!(
        "application {name} synced: fetched {fetched}, published {} to {} cluster{}\n",
        if revisions.is_empty() {
            "nothing".to_owned()
        } else {
            format!("revision {}", revisions.join(", "))
        },
        cells.len(),
        if cells.len() == 1 { "" } else { "s" }
    )
}

/// How often the application is polled while waiting.
const POLL: Duration = Duration::from_secs(1);

/// Without a terminal, an unchanged progress line is repeated this often.
const QUIET_REPEAT: Duration = Duration::from_secs(10);

/// Where the clusters of one application stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Clusters the application is served to.
    pub total: usize,
    /// Those that report Synced and Healthy.
    pub done: usize,
    /// The others, each with why it is not done.
    pub waiting: Vec<(String, String)>,
}

/// The progress of the `GET /api/v1/applications/{name}` answer.
pub fn progress(answer: &Value) -> Progress {
    let cells = answer["clusters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut waiting = Vec::new();
    for cell in cells {
        if cell["sync"] == "Synced" && cell["health"] == "Healthy" {
            continue;
        }
        let reason = match cell["why"].as_str().filter(|w| !w.is_empty()) {
            Some(why) => why.to_owned(),
            None => format!(
                "sync {}, health {}",
                or_dash(&cell["sync"]),
                or_dash(&cell["health"])
            ),
        };
        waiting.push((or_dash(&cell["cluster"]), reason));
    }
    Progress {
        total: cells.len(),
        done: cells.len() - waiting.len(),
        waiting,
    }
}

impl Progress {
    /// Every cluster is synced and healthy. An application served to no cluster yet is not
    /// done: right after a sync the hub may not have published it.
    pub fn is_done(&self) -> bool {
        self.total > 0 && self.waiting.is_empty()
    }

    /// One line: how many clusters are done, and the first one waiting with its reason.
    pub fn line(&self, app: &str) -> String {
        if self.total == 0 {
            return format!("waiting: the hub has not served {app} to any cluster yet");
        }
        let mut line = format!(
            "waiting: {}/{} clusters synced and healthy",
            self.done, self.total
        );
        if let Some((cluster, reason)) = self.waiting.first() {
            line.push_str(&format!(" ({cluster}: {reason}"));
            if self.waiting.len() > 1 {
                line.push_str(&format!("; {} more", self.waiting.len() - 1));
            }
            line.push(')');
        }
        line
    }

    /// Why the wait failed: the count, then one line per cluster still waiting.
    fn timeout_message(&self, app: &str, waited: Duration) -> String {
        let waited = human(waited);
        if self.total == 0 {
            return format!(
                "application {app} is served to no cluster after {waited}: check its destination and flotilla app get {app}"
            );
        }
        let mut message = format!(
            "application {app}: {}/{} clusters synced and healthy after {waited}; still waiting:",
            self.done, self.total
        );
        for (cluster, reason) in &self.waiting {
            message.push_str(&format!("\n  {cluster}: {reason}"));
        }
        message
    }
}

/// `5m`, `1m30s`, `45s`, `1h2m`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// The progress on standard error: one line rewritten in place on a terminal (cut to its
/// width), else a line whenever it changes and every [`QUIET_REPEAT`].
struct Display {
    terminal: bool,
    last: Option<(String, Instant)>,
}

impl Display {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the wait for.
        if self.terminal {
            let width = terminal_size::terminal_size_of(std::io::stderr())
                .map_or(100, |(w, _)| usize::from(w.0));
            let _ignored = write!(
                stderr,
                "\r\x1b[2K{}",
                output::truncate(line, width.saturating_sub(1).max(20))
            );
            let _ignored = stderr.flush();
            return;
        }
        let repeat = match &self.last {
            Some((last, at)) => last != line || at.elapsed() >= QUIET_REPEAT,
            None => true,
        };
        if repeat {
            let _ignored = writeln!(stderr, "{line}");
            self.last = Some((line.to_owned(), Instant::now()));
        }
    }

    /// Leaves the terminal's line empty for what follows.
    fn finish(&mut self) {
        if self.terminal {
            let _ignored = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

pub fn sync(client: &Client, format: Format, args: &AppSyncArgs) -> Result<Report, CommandError> {
    let name = args.name.as_str();
    let answer = client.post(&["applications", name, "sync"], &json!({}))?;
    if !args.wait {
        return Ok(Report::answer(format, &answer, || published(name, &answer)));
    }
    if format == Format::Table {
        eprint!("{}", published(name, &answer));
    }
    let start = Instant::now();
    let mut display = Display::new();
    let mut first = true;
    loop {
        // The hub answers once its round published (`published: true`); otherwise the round
        // is still under way and a first look at once could see the old state.
        if !first || answer["published"] != true {
            std::thread::sleep(POLL);
        }
        first = false;
        let current = client.get(&["applications", name])?;
        let progress = progress(&current);
        if progress.is_done() {
            display.finish();
            return Ok(Report::answer(format, &current, || {
                format!(
                    "application {name} is synced and healthy on {} cluster{} ({})\n",
                    progress.total,
                    if progress.total == 1 { "" } else { "s" },
                    human(start.elapsed())
                )
            }));
        }
        display.show(&progress.line(name));
        if start.elapsed() + POLL > args.wait_timeout {
            display.finish();
            return Err(CommandError::Wait(
                progress.timeout_message(name, args.wait_timeout),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(cluster: &str, sync: &str, health: &str, why: Option<&str>) -> Value {
        json!({"cluster": cluster, "sync": sync, "health": health, "why": why})
    }

    #[test]
    fn done_means_every_cluster_synced_and_healthy() {
        let check = |cells: Value, done: bool, line: &str| {
            let progress = progress(&json!({"name": "guestbook", "clusters": cells}));
            assert_eq!(progress.is_done(), done, "{progress:?}");
            assert_eq!(progress.line("guestbook"), line);
        };
        check(
            json!([]),
            false,
            "waiting: the hub has not served guestbook to any cluster yet",
        );
        check(
            json!([cell("east", "Synced", "Healthy", None)]),
            true,
            "waiting: 1/1 clusters synced and healthy",
        );
        // Pinned: synced and healthy, with a why; it is done all the same.
        check(
            json!([cell(
                "east",
                "Synced",
                "Healthy",
                Some("pinned to revision 0123456 by admin")
            )]),
            true,
            "waiting: 1/1 clusters synced and healthy",
        );
        check(
            json!([
                cell("prod-east", "Synced", "Healthy", None),
                cell(
                    "prod-west",
                    "Synced",
                    "Progressing",
                    Some("waiting for Deployment.apps guestbook/guestbook-ui to become ready")
                ),
                cell("lab", "OutOfSync", "Healthy", None),
            ]),
            false,
            "waiting: 1/3 clusters synced and healthy (prod-west: waiting for Deployment.apps guestbook/guestbook-ui to become ready; 1 more)",
        );
        check(
            json!([cell("lab", "OutOfSync", "Healthy", None)]),
            false,
            "waiting: 0/1 clusters synced and healthy (lab: sync OutOfSync, health Healthy)",
        );
    }

    #[test]
    fn timeouts_say_why_each_cluster_waits() {
        let waiting = progress(&json!({"clusters": [
            cell("east", "Synced", "Healthy", None),
            cell("west", "Unknown", "Unknown", Some("the agent is offline since 2026-11-28 06:00:00 UTC")),
        ]}));
        assert_eq!(
            waiting.timeout_message("guestbook", Duration::from_secs(90)),
            "application guestbook: 1/2 clusters synced and healthy after 1m30s; still waiting:\n  west: the agent is offline since 2026-11-28 06:00:00 UTC"
        );
        let nowhere = progress(&json!({"clusters": []}));
        assert!(
            nowhere
                .timeout_message("guestbook", Duration::from_secs(300))
                .starts_with("application guestbook is served to no cluster after 5m")
        );
    }

    #[test]
    fn durations_read_like_flags() {
        let check =
            |secs: u64, expected: &str| assert_eq!(human(Duration::from_secs(secs)), expected);
        check(0, "0s");
        check(45, "45s");
        check(300, "5m");
        check(90, "1m30s");
        check(3720, "1h2m");
    }
}
