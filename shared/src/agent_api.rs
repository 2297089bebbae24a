//! The agent API's messages, as hub and agent both read and write them: registration and
//! renewal, the status report, and the error object. The routes themselves (DESIGN.md,
//! "Transport and identity"):
//!
//! - `POST /v1/register` — [`RegisterRequest`] → [`CertificateResponse`] (200), or 202 with an
//!   [`ErrorBody`] of code `pending_approval` until an administrator approves the cluster.
//!   The only route that needs no client certificate.
//! - `POST /v1/renew` — [`RenewRequest`] → [`CertificateResponse`].
//! - `GET /v1/state?wait=SECONDS` with `If-None-Match: "<payload digest>"` — the DSSE envelope
//!   of the cluster's newest state, with `ETag: "<payload digest>"`; 304 when nothing changed
//!   within the wait; 404 `no_state` while the cluster has none.
//! - `GET /v1/blobs/sha256:<hex>` — a blob of one of this cluster's states; 404 otherwise.
//! - `POST /v1/status` — a [`StatusReport`] → [`StatusAck`].
//!
//! Every error answer is an [`ErrorBody`]. Pure types: no I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path prefix of the agent API.
pub const REGISTER_PATH: &str = "/v1/register";
pub const RENEW_PATH: &str = "/v1/renew";
pub const STATE_PATH: &str = "/v1/state";
pub const BLOBS_PATH: &str = "/v1/blobs/";
pub const STATUS_PATH: &str = "/v1/status";

/// Longest long-poll the hub holds a `GET /v1/state` open, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// Largest status report the hub reads, in bytes.
pub const MAX_STATUS_BYTES: usize = 4 << 20;

/// A registration: the cluster's name, its single-use bootstrap token and a CSR (PEM) for the
/// key the agent generated in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    pub cluster: String,
    pub token: String,
    pub csr: String,
}

/// A renewal: a CSR for the (same or a new) key, sent over mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    pub csr: String,
}

/// A client certificate for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateResponse {
    /// PEM: the leaf, then the hub CA.
    pub certificate: String,
    /// PEM of the hub CA, which also signs the agent API's server certificate.
    pub ca_certificate: String,
    /// RFC 3339.
    pub not_after: String,
}

/// The error object of every failed answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, for programs: `token_invalid`, `pending_approval`, `revoked`, `csr_invalid`,
    /// `unauthenticated`, `rate_limited`, `no_state`, `not_found`, `bad_request`,
    /// `too_large`, `agent_too_old`, `internal`.
    pub code: String,
    /// For people: says what was refused and why.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// What an agent reports: after each apply, on drift, on a refused state and on a heartbeat.
/// `seq` rises by one per report the agent sends and survives its restarts, so the hub can
/// see a gap or a duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub seq: u64,
    /// RFC 3339, the agent's clock.
    pub sent_at: String,
    /// `apply`, `drift`, `refused`, `heartbeat`, `start` or `stale`.
    pub reason: String,
    pub agent: AgentInfo,
    pub state: StateReport,
    #[serde(default)]
    pub apps: Vec<AppReport>,
    /// Out-of-band changes seen since the previous report.
    #[serde(default)]
    pub drift: Vec<DriftReport>,
}

/// The agent and its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub version: String,
    pub kube_version: String,
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// The API server URL of the cluster, as the agent reaches it.
    pub server: String,
    /// The agent's estimate of its clock minus the hub's, in milliseconds (from the `Date`
    /// of the hub's answers).
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// The replica that holds the Lease and sends this report.
    #[serde(default)]
    pub holder: String,
}

/// What the agent did with the newest state it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    /// The last accepted generation (0: none yet).
    pub generation: u64,
    /// `Applied`, `Applying`, `Failed` (applied with errors), `Refused` (the newest state
    /// was not accepted; the last accepted one is kept), or `Stale` (the last accepted state
    /// expired and no newer one could be fetched).
    pub phase: String,
    #[serde(default)]
    pub message: String,
    /// The generation that was refused, with `phase: Refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_generation: Option<u64>,
    /// RFC 3339 expiry of the accepted state.
    #[serde(default)]
    pub expires_at: String,
}

/// One application on the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppReport {
    pub name: String,
    /// The generation whose content is applied.
    pub generation: u64,
    /// The Git revision of that content.
    #[serde(default)]
    pub revision: String,
    /// `Synced`, `OutOfSync` or `Failed`.
    pub sync: String,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended` or `Missing`.
    pub health: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub objects: Vec<ObjectReport>,
}

/// One object of an application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    /// `Kind.group namespace/name`.
    pub object: String,
    /// `Current`, `InProgress`, `Failed`, `Terminating` or `NotFound`.
    pub state: String,
    #[serde(default)]
    pub message: String,
}

/// An out-of-band change of a managed object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub app: String,
    pub object: String,
    /// Field managers that made the change, from managedFields.
    #[serde(default)]
    pub changed_by: Vec<String>,
    /// Whether the agent reverted it (selfHeal).
    pub healed: bool,
    /// RFC 3339.
    pub at: String,
}

/// The hub's answer to a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusAck {
    /// False when the hub already had a report with this `seq` or a later one.
    pub recorded: bool,
    /// The highest `seq` the hub holds for the cluster.
    pub last_seq: u64,
}

/// Labels as the API carries them.
pub type Labels = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_report_reads_back_and_tolerates_missing_lists() {
        let text = r#"{"seq": 3, "sentAt": "2026-11-28T00:00:00Z", "reason": "heartbeat",
            "agent": {"version": "0.1.0", "kubeVersion": "v1.35.4", "server": "https://k"},
            "state": {"generation": 7, "phase": "Applied"}}"#;
        let report: StatusReport = serde_json::from_str(text).expect("reads");
        assert_eq!((report.seq, report.state.generation), (3, 7));
        assert!(report.apps.is_empty() && report.drift.is_empty());
        let again: StatusReport =
            serde_json::from_value(serde_json::to_value(&report).expect("writes")).expect("reads");
        assert_eq!(again, report);
    }

    #[test]
    fn registration_refuses_unknown_fields() {
        let error = serde_json::from_str::<RegisterRequest>(
            r#"{"cluster": "a", "token": "t", "csr": "c", "admin": true}"#,
        )
        .expect_err("refused")
        .to_string();
        assert!(error.contains("unknown field `admin`"), "{error}");
    }
}
