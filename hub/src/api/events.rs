//! Server-sent events: `event: fleet` whenever something the fleet views show changes (a
//! round, an agent's report, a registration), at most one per [`SETTLE`], and a comment
//! every [`KEEPALIVE`] so proxies keep the connection. Carries no data beyond a counter: a
//! client reloads what it shows through the API or the dashboard, with its own rights.

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt as _;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::watch;

use super::Body;

/// Changes closer together than this are sent as one event.
pub(crate) const SETTLE: Duration = Duration::from_millis(250);
/// A keep-alive comment after this much silence.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the stream waits for next.
enum Next {
    Changed(u64),
    Idle,
    End,
}

/// The event stream as an answer; it ends when the hub shuts down.
pub(crate) fn stream(
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let first = *changes.borrow();
    let hello = Bytes::from(format!("retry: 2000\nevent: hello\ndata: {first}\n\n"));
    let events = futures::stream::unfold(
        (changes, shutdown, false),
        |(mut changes, mut shutdown, ended)| async move {
            if ended || *shutdown.borrow() {
                return None;
            }
            let next = tokio::select! {
                changed = changes.changed() => match changed {
                    Ok(()) => {
                        tokio::time::sleep(SETTLE).await;
                        Next::Changed(*changes.borrow_and_update())
                    }
                    Err(_) => Next::End,
                },
                _ = tokio::time::sleep(KEEPALIVE) => Next::Idle,
                _ = shutdown.changed() => Next::End,
            };
            let (chunk, ended) = match next {
                Next::Changed(n) => (format!("event: fleet\ndata: {n}\n\n"), false),
                Next::Idle => (": keep-alive\n\n".to_owned(), false),
                Next::End => ("event: bye\ndata: 0\n\n".to_owned(), true),
            };
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))),
                (changes, shutdown, ended),
            ))
        },
    );
    let body = futures::stream::once(async move { Ok(Frame::data(hello)) }).chain(events);
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
