//! The agent's own HTTP endpoints (`--listen`): `/healthz` (the process answers),
//! `/readyz` (200 when this replica leads and enforces an accepted state, or stands by; 503
//! with the reason otherwise) and `/metrics` (Prometheus text format). Owns the counters
//! and the readiness the rest of `run` updates; talks to the network (hyper).
//!
//! A replica standing by is ready: it does what it should, and a rolling update must not
//! wait for it to lead.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// The counters and gauges of `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub leader: AtomicBool,
    /// The last accepted generation.
    pub generation: AtomicU64,
    pub applies_succeeded: AtomicU64,
    /// Syncs in which an object failed.
    pub applies_failed: AtomicU64,
    /// Syncs that could not run (the apiserver failed them).
    pub applies_errored: AtomicU64,
    pub state_refusals: AtomicU64,
    pub drift_events: AtomicU64,
    pub hub_errors: AtomicU64,
    /// Unix seconds of the last sync without a failed object; 0 before the first.
    pub last_success: AtomicI64,
    /// The seq of the last status report the hub holds.
    pub status_seq: AtomicU64,
}

/// What `/readyz` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
}

/// What the endpoints show, shared with the rest of `run`.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    readiness: Mutex<Readiness>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            metrics: Metrics::default(),
            readiness: Mutex::new(Readiness {
                ready: false,
                reason: "starting".to_owned(),
            }),
        }
    }
}

impl Shared {
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let mut readiness = self.readiness.lock().expect("never poisoned");
        if readiness.ready != ready || readiness.reason != reason {
            tracing::debug!(ready, %reason, "readiness");
        }
        *readiness = Readiness { ready, reason };
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.lock().expect("never poisoned").clone()
    }

    /// Marks this replica as standing by.
    pub fn standby(&self, holder: &str) {
        self.metrics.leader.store(false, Ordering::Relaxed);
        self.set_ready(
            true,
            format!("not leader: standing by while {holder} holds the lease"),
        );
    }
}

/// The metrics in Prometheus text format (version 0.0.4).
pub fn render(metrics: &Metrics) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "flotilla_agent_leader",
        "gauge",
        "Whether this replica holds the lease and is the active agent (1) or stands by (0).",
        &[(
            "",
            u8::from(metrics.leader.load(Ordering::Relaxed)).to_string(),
        )],
    );
    metric(
        "flotilla_agent_generation",
        "gauge",
        "The generation of the last accepted cluster state (0: none).",
        &[("", get(&metrics.generation).to_string())],
    );
    metric(
        "flotilla_agent_applies_total",
        "counter",
        "Syncs of an accepted state, by result: success, failure (an object failed) or error (the sync could not run).",
        &[
            (
                "{result=\"success\"}",
                get(&metrics.applies_succeeded).to_string(),
            ),
            (
                "{result=\"failure\"}",
                get(&metrics.applies_failed).to_string(),
            ),
            (
                "{result=\"error\"}",
                get(&metrics.applies_errored).to_string(),
            ),
        ],
    );
    metric(
        "flotilla_agent_state_refusals_total",
        "counter",
        "Cluster states (or their blobs) refused by verification.",
        &[("", get(&metrics.state_refusals).to_string())],
    );
    metric(
        "flotilla_agent_drift_events_total",
        "counter",
        "Out-of-band changes of managed objects seen by the drift watch.",
        &[("", get(&metrics.drift_events).to_string())],
    );
    metric(
        "flotilla_agent_hub_errors_total",
        "counter",
        "Requests to the hub that failed or were refused.",
        &[("", get(&metrics.hub_errors).to_string())],
    );
    metric(
        "flotilla_agent_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last sync in which no object failed (0: none yet).",
        &[("", metrics.last_success.load(Ordering::Relaxed).to_string())],
    );
    metric(
        "flotilla_agent_status_seq",
        "gauge",
        "Sequence number of the last status report the hub holds.",
        &[("", get(&metrics.status_seq).to_string())],
    );
    out
}

#[derive(Debug, thiserror::Error)]
#[error("listen on {addr}")]
pub struct ServeError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds the listener (so the caller can say where it listens before serving).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })
}

/// Serves the endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &shared)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

fn answer<B>(request: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if request.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            let readiness = shared.readiness();
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{}\n", readiness.reason))
        }
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(render(&shared.metrics))))
            .expect("a valid response"),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.leader.store(true, Ordering::Relaxed);
        metrics
            .generation
            .store(1_764_288_000_123, Ordering::Relaxed);
        metrics.applies_succeeded.store(3, Ordering::Relaxed);
        metrics.applies_failed.store(1, Ordering::Relaxed);
        metrics.state_refusals.store(2, Ordering::Relaxed);
        metrics.drift_events.store(5, Ordering::Relaxed);
        metrics.hub_errors.store(7, Ordering::Relaxed);
        metrics.last_success.store(1_764_288_001, Ordering::Relaxed);
        metrics.status_seq.store(42, Ordering::Relaxed);
        let text = render(&metrics);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "flotilla_agent_leader 1",
                "flotilla_agent_generation 1764288000123",
                "flotilla_agent_applies_total{result=\"success\"} 3",
                "flotilla_agent_applies_total{result=\"failure\"} 1",
                "flotilla_agent_applies_total{result=\"error\"} 0",
                "flotilla_agent_state_refusals_total 2",
                "flotilla_agent_drift_events_total 5",
                "flotilla_agent_hub_errors_total 7",
                "flotilla_agent_last_success_timestamp_seconds 1764288001",
                "flotilla_agent_status_seq 42",
            ]
        );
        // Every metric has HELP and TYPE before its samples.
        for name in samples
            .iter()
            .map(|s| s.split(['{', ' ']).next().expect("name"))
        {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    fn get(path: &str, shared: &Shared) -> (StatusCode, String) {
        let request = Request::get(path).body(()).expect("request");
        let response = answer(&request, shared);
        let status = response.status();
        let body = response.into_body();
        let bytes = futures::executor::block_on(http_body_util::BodyExt::collect(body))
            .expect("body")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("text"))
    }

    #[test]
    fn readiness_says_why() {
        let shared = Shared::default();
        assert_eq!(
            get("/readyz", &shared),
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
        );
        shared.standby("agent-b-12");
        assert_eq!(
            get("/readyz", &shared),
            (
                StatusCode::OK,
                "not leader: standing by while agent-b-12 holds the lease\n".into()
            )
        );
        assert_eq!(get("/healthz", &shared).0, StatusCode::OK);
        assert_eq!(get("/nope", &shared).0, StatusCode::NOT_FOUND);
        assert!(
            get("/metrics", &shared)
                .1
                .contains("flotilla_agent_leader 0")
        );
    }
}
