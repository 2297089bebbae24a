//! What every dashboard page shares: the document around `<main>` (top navigation, the
//! flash message, the assets), the status badges of a cell, and how names and times are
//! written into pages and links. Pure: values in, HTML out (maud escapes every value).

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::session::Flash;
use crate::auth::Principal;
use crate::fleet::Cell;
use crate::store::AuditEntry;

/// The hub's version, in the navigation.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a path segment must not carry unencoded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'&')
    .add(b'+');

/// `name` as one segment of a path.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// The page of an application or matrix column.
pub fn app_href(name: &str) -> String {
    format!("/apps/{}", segment(name))
}

/// The page of a cluster.
pub fn cluster_href(name: &str) -> String {
    format!("/clusters/{}", segment(name))
}

/// A moment as people read it, in UTC, in a `<time>` element.
pub fn time(at: Option<Timestamp>) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(at.to_string()) { (at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()) }
        },
        None => html! { span.muted { "never" } },
    }
}

/// What the logged-in chrome needs: the session's CSRF token (none on the login page), the
/// message left by the last form, and who is logged in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chrome<'a> {
    pub csrf: Option<&'a str>,
    pub flash: Option<&'a Flash>,
    pub who: Option<&'a Principal>,
}

/// A whole page: `title`, the navigation, the flash message and `main`.
pub fn page(title: &str, chrome: &Chrome<'_>, main: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Flotilla" }
                link rel="icon" href="/static/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-live="off" data-refreshes="0" {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Flotilla" }
                    @if let Some(csrf) = chrome.csrf {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/" { "Fleet" } }
                                li { a href="/repositories" { "Repositories" } }
                                li { a href="/audit" { "Audit log" } }
                            }
                        }
                        @if let Some(who) = chrome.who {
                            span #whoami data-grants=(who.grants_text()) title=(format!("Roles: {}", who.grants_text())) {
                                (who.name)
                            }
                        }
                        span.version { "hub " (VERSION) }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    } @else {
                        span.version { "hub " (VERSION) }
                    }
                }
                div #flash role="status" {
                    @if let Some(flash) = chrome.flash {
                        p.flash.error[flash.error] { (flash.message) }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// The login page, with `error` when a token or a sign-in was refused, and the single
/// sign-on link when the hub has an identity provider.
pub fn login(error: Option<&str>, sso: bool) -> Markup {
    let main = html! {
        section.login {
            h1 { "Log in" }
            @if let Some(error) = error {
                p.error #login-error role="alert" { (error) }
            }
            @if sso {
                p { a.button #sso href="/auth/sso" { "Log in with SSO" } }
                p.muted { "Or with an API token:" }
            } @else {
                p { "Enter the admin token that " code { "flotilla-hub init" } " printed, or an API token." }
            }
            form #login method="post" action="/login" {
                label for="token" { "Token" }
                input #token name="token" type="password" autocomplete="current-password"
                    required aria-describedby=[error.map(|_| "login-error")];
                button type="submit" { "Log in" }
            }
        }
    };
    page("Log in", &Chrome::default(), &main)
}

/// After single sign-on: the session cookie is set by this answer, and the page moves on to
/// the fleet by itself (a same-site navigation, so the `SameSite=Strict` cookie goes along).
pub fn signed_in(who: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="0;url=/";
                title { "Signed in · Flotilla" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                main #main {
                    h1 { "Signed in" }
                    p { "Signed in as " (who) ". " a href="/" { "Continue to the fleet" } }
                }
            }
        }
    }
}

/// The audit log: who changed what, when, through what and from where, newest first.
pub fn audit(entries: &[AuditEntry]) -> Markup {
    html! {
        h1 { "Audit log" }
        @if entries.is_empty() {
            p.muted { "No change recorded that you may see." }
        } @else {
            table #audit {
                caption.sr-only { "Changes, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Subject" } th scope="col" { "Through" } th scope="col" { "From" } } }
                tbody {
                    @for entry in entries {
                        tr {
                            td { (time(Some(entry.at))) }
                            td.who { (entry.who) }
                            td.action { (entry.action) }
                            td { (entry.subject) }
                            td { (entry.source) }
                            td.address { (entry.address) }
                        }
                    }
                }
            }
        }
    }
}

/// A page that only says what went wrong (404, 403, 500).
pub fn message(title: &str, text: &str, chrome: &Chrome<'_>) -> Markup {
    let main = html! {
        h1 { (title) }
        p { (text) }
        p { a href="/" { "Back to the fleet" } }
    };
    page(title, chrome, &main)
}

/// How a cell looks: `ok`, `progress`, `warn`, `bad` or `unknown`.
pub fn tone(sync: &str, health: &str) -> &'static str {
    match (sync, health) {
        ("Synced", "Healthy") => "ok",
        ("Failed", _) | (_, "Degraded" | "Missing") => "bad",
        (_, "Progressing") => "progress",
        ("Unknown", _) | (_, "Unknown") => "unknown",
        _ => "warn",
    }
}

/// A symbol for the tone; never the only signal (the text goes with it).
fn symbol(tone: &str) -> &'static str {
    match tone {
        "ok" => "✓",
        "bad" => "✕",
        "progress" => "◔",
        "unknown" => "?",
        _ => "!",
    }
}

/// `Synced, Healthy`: what a cell says in words.
pub fn state_words(cell: &Cell) -> String {
    format!("{}, {}", cell.sync, cell.health)
}

/// A matrix cell's badge: a symbol for the eye, the words for everyone.
pub fn badge(cell: &Cell) -> Markup {
    let tone = tone(&cell.sync, &cell.health);
    html! {
        span.badge.(tone) aria-hidden="true" { (symbol(tone)) }
        @if cell.pinned.is_some() {
            span.pin aria-hidden="true" { "⚑" }
        }
        span.sr-only {
            (state_words(cell))
            @if let Some((revision, by)) = &cell.pinned {
                ", pinned to " (crate::fleet::short_revision(revision)) " by " (by)
            }
        }
    }
}

/// A sync or health word, coloured by what it means.
pub fn word(text: &str, tone: &str) -> Markup {
    html! { span.word.(tone) { (text) } }
}

/// The tone of a sync word alone.
pub fn sync_tone(sync: &str) -> &'static str {
    match sync {
        "Synced" => "ok",
        "Failed" => "bad",
        "Unknown" => "unknown",
        _ => "warn",
    }
}

/// The tone of a health word alone.
pub fn health_tone(health: &str) -> &'static str {
    match health {
        "Healthy" => "ok",
        "Degraded" | "Missing" => "bad",
        "Progressing" => "progress",
        "Unknown" => "unknown",
        _ => "warn",
    }
}

/// The tone of a cluster's status word.
pub fn status_tone(status: &str) -> &'static str {
    match status {
        "Online" => "ok",
        "Offline" | "Revoked" => "bad",
        "Pending" | "Registered" => "progress",
        _ => "unknown",
    }
}

/// An em dash for an empty value.
pub fn dash() -> Markup {
    PreEscaped("<span class=\"muted\">—</span>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_path_segment() {
        assert_eq!(app_href("web-east"), "/apps/web-east");
        assert_eq!(segment("a/b c?d#e%"), "a%2Fb%20c%3Fd%23e%25");
        assert_eq!(cluster_href("ü"), "/clusters/%C3%BC");
    }

    #[test]
    fn tones_follow_sync_and_health() {
        let check = |sync: &str, health: &str, expected: &str| {
            assert_eq!(tone(sync, health), expected, "{sync} {health}");
        };
        check("Synced", "Healthy", "ok");
        check("Synced", "Degraded", "bad");
        check("Failed", "Healthy", "bad");
        check("OutOfSync", "Missing", "bad");
        check("Synced", "Progressing", "progress");
        check("Unknown", "Unknown", "unknown");
        check("OutOfSync", "Healthy", "warn");
        check("Synced", "Suspended", "warn");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let flash = Flash {
            message: "<script>alert(1)</script>".into(),
            error: true,
        };
        let html = page(
            "<b>",
            &Chrome {
                csrf: Some("c\"s"),
                flash: Some(&flash),
                who: Some(&Principal {
                    name: "<i>eve</i>".into(),
                    kind: crate::auth::Kind::Sso,
                    grants: vec![crate::auth::Grant::new(crate::auth::Role::Viewer, "shop")],
                    expires: None,
                }),
            },
            &html! { p { "x" } },
        )
        .into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("value=\"c&quot;s\""));
        assert!(html.contains(r#"data-grants="viewer:shop""#), "{html}");
        assert!(html.contains("&lt;i&gt;eve&lt;/i&gt;"));
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    }

    #[test]
    fn the_login_page_labels_its_field() {
        let html = login(Some("the token was refused"), false).into_string();
        assert!(html.contains(r#"<form id="login" method="post" action="/login">"#));
        assert!(!html.contains("/auth/sso"));
        let sso = login(None, true).into_string();
        assert!(
            sso.contains(r#"<a class="button" id="sso" href="/auth/sso">"#),
            "{sso}"
        );
        assert!(html.contains(r#"<label for="token">"#));
        assert!(html.contains(r#"aria-describedby="login-error""#));
        assert!(!html.contains("Log out"));
    }
}
