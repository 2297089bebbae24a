//! The agent API of a real `flotilla-hub serve` process, spoken to as an agent would: over
//! TLS on 127.0.0.1 with keys and CSRs made here. Registration with bootstrap tokens (and
//! each way it is refused), approval, the long poll for the state, blobs, status reports
//! with sequence numbers, revocation, a certificate of another CA, rate limits, and the test
//! hook that serves a wrong state. Refusals must show in `GET /api/v1/clusters`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_shared::agent_api::StatusReport;
use serde_json::{Value, json};
use support::agent::{Agent, register, send};
use support::git;
use support::hub_process::{DEADLINE, Serve, init, start, tail};

const FLEET: &str = "https://git.example/acme/fleet.git";

const APPS: &str = "apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: web}
spec:
  generators: [{clusters: {selector: {matchLabels: {env: prod}}}}]
  template:
    metadata: {name: 'web-{{name}}'}
    spec:
      project: default
      source: {repoURL: 'https://git.example/acme/fleet.git', path: apps/web}
      destination: {name: '{{name}}', namespace: web}
      syncPolicy: {automated: {}}
";

fn fleet(dir: &Path) -> String {
    let repo = dir.join("fleet");
    std::fs::create_dir_all(repo.join("apps/web")).expect("mkdir");
    std::fs::write(
        repo.join("apps/web/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web}\ndata: {a: b}\n",
    )
    .expect("write");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["rev-parse", "HEAD"])
}

async fn token(hub: &Serve, cluster: &str, body: Value) -> String {
    let reply = hub
        .admin(
            "POST",
            &format!("/api/v1/clusters/{cluster}/tokens"),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["token"].as_str().expect("a token").to_owned()
}

async fn cluster_info(hub: &Serve, cluster: &str) -> Value {
    let reply = hub.admin("GET", "/api/v1/clusters", None).await;
    reply.body["clusters"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == cluster))
        .cloned()
        .unwrap_or(Value::Null)
}

fn report(seq: u64, revision: &str, app: &str) -> StatusReport {
    serde_json::from_value(json!({
        "seq": seq,
        "sentAt": "2026-11-28T00:00:00Z",
        "reason": "apply",
        "agent": {"version": env!("CARGO_PKG_VERSION"), "kubeVersion": "v1.35.4",
                  "apiVersions": ["v1", "apps/v1"], "server": "https://east.example:6443"},
        "state": {"generation": 1, "phase": "Applied"},
        "apps": [{"name": app, "generation": 1, "revision": revision, "sync": "Synced",
                  "health": "Healthy", "objects": [{"object": "ConfigMap web/web", "state": "Current"}]}]
    }))
    .expect("a report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_poll_report_and_are_refused_for_clear_reasons() {
    let dir = tempfile::tempdir().expect("temp dir");
    let head = fleet(dir.path());
    let data_dir = dir.path().join("data");
    let admin = init(&data_dir);
    let hub = start(
        dir.path(),
        &data_dir,
        admin,
        "whsec-agent-api",
        &[
            format!("--rewrite={FLEET}={}", dir.path().join("fleet").display()),
            "--enable-test-hooks".to_owned(),
        ],
    );
    let info = hub.admin("GET", "/api/v1/agent-api", None).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let ca = info.body["caCertificate"].as_str().expect("CA").to_owned();
    assert!(
        info.body["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://localhost:")),
        "{}",
        info.body
    );
    assert!(
        info.body["trustedKeys"][0]
            .as_str()
            .is_some_and(|k| k.contains("BEGIN PUBLIC KEY"))
    );

    let east_token = token(&hub, "east", json!({"labels": {"env": "prod"}})).await;
    let west_token = token(
        &hub,
        "west",
        json!({"labels": {"env": "prod"}, "ttl": "1s"}),
    )
    .await;
    assert!(east_token.starts_with("flt_bt_"));
    let applied = hub
        .admin("POST", "/api/v1/apply", Some(APPS.to_owned()))
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);

    // Refusals, each with its reason.
    let east = Agent::new();
    let unknown = register(&hub, &ca, &east, "east", "flt_bt_nope").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (401, "token_invalid")
    );
    assert!(
        unknown.message().contains("not known"),
        "{}",
        unknown.message()
    );
    let other = register(&hub, &ca, &east, "east", &west_token).await;
    assert!(
        other.message().contains("made for cluster west, not east"),
        "{}",
        other.message()
    );
    // A CSR that names another cluster than the registration.
    let body = json!({"cluster": "east", "token": east_token, "csr": east.csr("west")});
    let named = send(
        east.client(&ca)
            .post(format!("{}/v1/register", hub.agent_base))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
    .expect("answer");
    assert_eq!((named.status, named.code().as_str()), (400, "csr_invalid"));
    assert!(named.message().contains("west"), "{}", named.message());
    assert!(
        cluster_info(&hub, "east").await["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("registration refused")),
        "the refusal shows in the cluster list"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = register(&hub, &ca, &Agent::new(), "west", &west_token).await;
    assert_eq!(expired.status, 401);
    assert!(
        expired.message().contains("expired at"),
        "{}",
        expired.message()
    );
    assert!(
        cluster_info(&hub, "west").await["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("expired"))
    );

    // Registration, idempotent for the same key; the token is then spent for other keys.
    let mut east = east;
    let issued = register(&hub, &ca, &east, "east", &east_token).await;
    assert_eq!(
        issued.status,
        200,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let again = register(&hub, &ca, &east, "east", &east_token).await;
    assert_eq!(again.status, 200, "the same key may come back");
    let thief = register(&hub, &ca, &Agent::new(), "east", &east_token).await;
    assert_eq!(thief.status, 401);
    assert!(
        thief.message().contains("already used"),
        "{}",
        thief.message()
    );
    east.chain = Some(
        again.json()["certificate"]
            .as_str()
            .expect("a certificate")
            .to_owned(),
    );
    let info = cluster_info(&hub, "east").await;
    assert_eq!(info["status"], "Registered", "{info}");

    // Without a certificate only registration is open.
    let anonymous = send(
        Agent::new()
            .client(&ca)
            .get(format!("{}/v1/state", hub.agent_base)),
    )
    .await
    .expect("answer");
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (401, "unauthenticated")
    );

    // The state: served with an ETag, then 304 until it changes.
    let client = east.client(&ca);
    let started = Instant::now();
    let state = loop {
        let call = send(client.get(format!("{}/v1/state?wait=5", hub.agent_base)))
            .await
            .expect("answer");
        if call.status == 200 {
            break call;
        }
        assert_eq!(call.code(), "no_state");
        assert!(
            started.elapsed() < DEADLINE,
            "no state; log:\n{}",
            tail(&hub.stderr)
        );
    };
    let etag = state.headers["etag"].to_str().expect("etag").to_owned();
    let envelope = flotilla_shared::Envelope::from_json(&state.body).expect("a DSSE envelope");
    let payload =
        flotilla_shared::ClusterState::from_payload(&envelope.payload_bytes().expect("payload"))
            .expect("a ClusterState")
            .state;
    assert_eq!(payload.cluster, "east");
    let app = &payload.apps[0];
    assert_eq!(
        (app.name.as_str(), app.source.revision.as_str()),
        ("web-east", head.as_str())
    );
    let waited = Instant::now();
    let unchanged = send(
        client
            .get(format!("{}/v1/state?wait=1", hub.agent_base))
            .header("if-none-match", &etag),
    )
    .await
    .expect("answer");
    assert_eq!(unchanged.status, 304);
    assert!(waited.elapsed() >= Duration::from_millis(900), "it waited");

    // Blobs: this cluster's, and nothing else (the same 404 for a forbidden one).
    let digest = app.blob.digest.to_string();
    let blob = send(client.get(format!("{}/v1/blobs/{digest}", hub.agent_base)))
        .await
        .expect("answer");
    assert_eq!(blob.status, 200);
    assert_eq!(flotilla_shared::Digest::of(&blob.body).to_string(), digest);
    let missing = format!("sha256:{}", "0".repeat(64));
    let nope = send(client.get(format!("{}/v1/blobs/{missing}", hub.agent_base)))
        .await
        .expect("answer");
    assert_eq!((nope.status, nope.code().as_str()), (404, "not_found"));

    // Status reports: a duplicate seq is not recorded, and the app list shows the report.
    let post = |seq| {
        client
            .post(format!("{}/v1/status", hub.agent_base))
            .body(serde_json::to_string(&report(seq, &head, "web-east")).expect("JSON"))
    };
    let first = send(post(1)).await.expect("answer");
    assert_eq!(first.json(), json!({"recorded": true, "lastSeq": 1}));
    let duplicate = send(post(1)).await.expect("answer");
    assert_eq!(duplicate.json(), json!({"recorded": false, "lastSeq": 1}));
    let second = send(post(2)).await.expect("answer");
    assert_eq!(second.json(), json!({"recorded": true, "lastSeq": 2}));
    let reports = hub.admin("GET", "/api/v1/clusters/east/status", None).await;
    let seqs: Vec<u64> = reports.body["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [2, 1], "each report once, newest first");
    assert_eq!(reports.body["apps"][0]["objects"][0]["state"], "Current");
    let info = cluster_info(&hub, "east").await;
    assert_eq!(
        (&info["status"], &info["agentVersion"], &info["server"]),
        (
            &json!("Online"),
            &json!(env!("CARGO_PKG_VERSION")),
            &json!("https://east.example:6443")
        ),
        "{info}"
    );
    let apps = hub.admin("GET", "/api/v1/applications", None).await;
    let web = apps.body["applications"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "web-east"))
        .cloned()
        .expect("the generated app is listed");
    assert_eq!(web["clusters"][0]["sync"], "Synced", "{web}");
    assert_eq!(web["clusters"][0]["health"], "Healthy", "{web}");

    // The test hook serves another cluster's state (west is prod too, so it has one): an
    // agent must refuse it, as the e2e tests check.
    let hooked = hub
        .admin(
            "PUT",
            "/api/v1/test/serve-override",
            Some(json!({"mode": "from", "cluster": "west"}).to_string()),
        )
        .await;
    assert_eq!(hooked.status, 200, "{}", hooked.body);
    let wrong = send(client.get(format!("{}/v1/state", hub.agent_base)))
        .await
        .expect("answer");
    let envelope = flotilla_shared::Envelope::from_json(&wrong.body).expect("an envelope");
    let served =
        flotilla_shared::ClusterState::from_payload(&envelope.payload_bytes().expect("payload"))
            .expect("a state")
            .state;
    assert_eq!(served.cluster, "west");
    let off = hub
        .admin("PUT", "/api/v1/test/serve-override", Some("{}".to_owned()))
        .await;
    assert_eq!(off.status, 200);
    let right = send(
        client
            .get(format!("{}/v1/state", hub.agent_base))
            .header("if-none-match", &etag),
    )
    .await
    .expect("answer");
    assert_eq!(right.status, 304, "served normally again");

    // Approval: a cluster that needs it waits, with the same key, until approved.
    let north_token = token(&hub, "north", json!({"requireApproval": true})).await;
    let north = Agent::new();
    let pending = register(&hub, &ca, &north, "north", &north_token).await;
    assert_eq!(
        (pending.status, pending.code().as_str()),
        (202, "pending_approval")
    );
    assert_eq!(cluster_info(&hub, "north").await["status"], "Pending");
    let approved = hub
        .admin("POST", "/api/v1/clusters/north/approve", None)
        .await;
    assert_eq!(approved.status, 200);
    let admitted = register(&hub, &ca, &north, "north", &north_token).await;
    assert_eq!(admitted.status, 200);

    // A certificate from another CA, claiming to be east, fails the handshake and says so.
    let impostor_ca = {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::Issuer::new(params, key)
    };
    let mut impostor = Agent::new();
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&impostor.csr("east")).expect("CSR");
    impostor.chain = Some(csr.signed_by(&impostor_ca).expect("signed").pem());
    let refused = send(
        impostor
            .client(&ca)
            .get(format!("{}/v1/state", hub.agent_base)),
    )
    .await;
    assert!(refused.is_err(), "the handshake fails");
    let started = Instant::now();
    loop {
        let error = cluster_info(&hub, "east").await["lastError"].clone();
        if error
            .as_str()
            .is_some_and(|e| e.contains("client certificate for cluster east was refused"))
        {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no refusal recorded: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Rate limits, per cluster.
    let mut limited = 0;
    for _ in 0..60 {
        let call = send(client.get(format!("{}/v1/blobs/{missing}", hub.agent_base)))
            .await
            .expect("answer");
        if call.status == 429 {
            assert_eq!(call.code(), "rate_limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "a burst of 60 requests meets the limit");

    // Revocation: refused from the next request on, with the reason.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let revoked = hub
        .admin("POST", "/api/v1/clusters/east/revoke", None)
        .await;
    assert_eq!(revoked.status, 200);
    let after = send(client.get(format!("{}/v1/state", hub.agent_base)))
        .await
        .expect("answer");
    assert_eq!((after.status, after.code().as_str()), (403, "revoked"));
    assert!(
        after.message().contains("cluster east was revoked at"),
        "{}",
        after.message()
    );
    assert_eq!(cluster_info(&hub, "east").await["status"], "Revoked");
    let log = hub.log();
    assert!(
        log.contains("revoked cluster refused"),
        "the hub log says it"
    );
    for secret in [&east_token, &north_token] {
        assert!(
            !log.contains(secret.as_str()),
            "a bootstrap token reached the log"
        );
    }
}
