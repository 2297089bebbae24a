//! `flotilla cluster …`: bootstrap tokens (with the `helm install` command for the agent),
//! the cluster list, approval, revocation and labels. The request bodies, the table and the
//! helm command are pure functions of their inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::{LabelChange, TokenCreateArgs};
use crate::client::Client;
use crate::output::{self, Format, Table, or_dash};

/// The agent API as `GET /api/v1/agent-api` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentApi {
    pub url: String,
    pub ca_certificate: String,
    pub trusted_keys: Vec<String>,
}

impl AgentApi {
    pub fn get(client: &Client) -> Result<Self, CommandError> {
        Self::from_json(&client.get(&["agent-api"])?)
    }

    fn from_json(value: &Value) -> Result<Self, CommandError> {
        let text = |field: &str| {
            value[field]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    CommandError::Answer(format!("the hub's agent-api answer has no {field}"))
                })
        };
        let trusted_keys: Vec<String> = value["trustedKeys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if trusted_keys.is_empty() {
            return Err(CommandError::Answer(
                "the hub's agent-api answer has no trustedKeys".to_owned(),
            ));
        }
        Ok(Self {
            url: text("url")?,
            ca_certificate: text("caCertificate")?,
            trusted_keys,
        })
    }
}

/// The file names the helm command refers to: the CA, then one per trusted key.
fn file_names(keys: usize) -> (String, Vec<String>) {
    let keys = (0..keys)
        .map(|i| match i {
            0 => "signing.pub".to_owned(),
            i => format!("signing-{i}.pub"),
        })
        .collect();
    ("hub-ca.crt".to_owned(), keys)
}

/// `text` as one POSIX shell word: as is when it is plain, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The `helm install` command that installs the agent for `cluster`.
fn helm_command(
    chart: &str,
    cluster: &str,
    agent_url: &str,
    ca_file: &str,
    key_files: &[String],
    token: &str,
) -> String {
    let mut words: Vec<String> = [
        "helm",
        "install",
        "flotilla-agent",
        chart,
        "--namespace",
        "flotilla-system",
        "--create-namespace",
    ]
    .iter()
    .map(|w| shell_word(w))
    .collect();
    let mut set = |flag: &str, value: String| {
        words.push(flag.to_owned());
        words.push(shell_word(&value));
    };
    set("--set", format!("cluster.name={cluster}"));
    set("--set", format!("hub.url={agent_url}"));
    set("--set-file", format!("hub.ca={ca_file}"));
    for (i, file) in key_files.iter().enumerate() {
        set("--set-file", format!("trust.keys[{i}]={file}"));
    }
    set("--set", format!("bootstrap.token={token}"));
    words.join(" ")
}

fn token_body(create: &TokenCreateArgs) -> Value {
    let labels: BTreeMap<&str, &str> = create
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!({"labels": labels, "ttl": create.ttl, "requireApproval": create.require_approval})
}

/// Writes the CA and the keys into `dir`; their paths.
fn write_files(dir: &Path, agent: &AgentApi) -> Result<(PathBuf, Vec<PathBuf>), CommandError> {
    std::fs::create_dir_all(dir).map_err(CommandError::io(format!(
        "create directory {}",
        dir.display()
    )))?;
    let (ca, keys) = file_names(agent.trusted_keys.len());
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem)
            .map_err(CommandError::io(format!("write {}", path.display())))?;
        Ok::<_, CommandError>(path)
    };
    let ca = write(&ca, &agent.ca_certificate)?;
    let keys = keys
        .iter()
        .zip(&agent.trusted_keys)
        .map(|(name, pem)| write(name, pem))
        .collect::<Result<_, _>>()?;
    Ok((ca, keys))
}

pub fn token_create(
    client: &Client,
    format: Format,
    create: &TokenCreateArgs,
) -> Result<Report, CommandError> {
    // Everything that can fail happens before the token exists, so none is wasted.
    let agent = AgentApi::get(client)?;
    let (ca_file, key_files, written) = match &create.write_files {
        Some(dir) => {
            let (ca, keys) = write_files(dir, &agent)?;
            let shown = |p: &PathBuf| p.display().to_string();
            (shown(&ca), keys.iter().map(shown).collect(), true)
        }
        None => {
            let (ca, keys) = file_names(agent.trusted_keys.len());
            (ca, keys, false)
        }
    };
    let answer = client.post(&["clusters", &create.name, "tokens"], &token_body(create))?;
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| CommandError::Answer("the hub's answer has no token".to_owned()))?;
    let helm = helm_command(
        &create.chart,
        &create.name,
        &agent.url,
        &ca_file,
        &key_files,
        token,
    );
    let mut files = vec![ca_file];
    files.extend(key_files);
    if format != Format::Table {
        let mut value = answer.clone();
        value["helmCommand"] = json!(helm);
        value["files"] = if written { json!(files) } else { json!([]) };
        return Ok(Report::out(output::render(format, &value, String::new)));
    }
    let expires = answer["expiresAt"].as_str().unwrap_or("-");
    let mut out = format!(
        "Bootstrap token for cluster {} (single use, expires {expires}); it is shown only now:\n\n  {token}\n\nInstall the agent into the cluster:\n\n  {helm}\n\n",
        create.name
    );
    if written {
        out.push_str(&format!("Wrote {}.\n", files.join(", ")));
    } else {
        out.push_str(&format!(
            "{} are the caCertificate and trustedKeys of GET /api/v1/agent-api on the hub; --write-files DIR writes them.\n",
            files.join(" and ")
        ));
    }
    Ok(Report::out(out))
}

/// The table of `GET /api/v1/clusters`.
fn cluster_table(answer: &Value, now: Timestamp) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "STATUS",
        "LABELS",
        "AGENT",
        "KUBERNETES",
        "LAST-SEEN",
        "GENERATION",
        "MESSAGE",
    ]);
    for cluster in answer["clusters"].as_array().into_iter().flatten() {
        let name = or_dash(&cluster["name"]);
        let labels = cluster["labels"]
            .as_object()
            .map(|labels| {
                let mut pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                pairs.sort();
                pairs.join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".to_owned());
        let status = match cluster["status"].as_str().filter(|s| !s.is_empty()) {
            Some(status) => status.to_owned(),
            None if cluster["revoked"].as_bool() == Some(true) => "Revoked".to_owned(),
            None if cluster["approved"].as_bool() == Some(false) => "Pending".to_owned(),
            None => "-".to_owned(),
        };
        // The hub's last refusal or error first; else what the status asks of the operator.
        let message = match (cluster["lastError"].as_str(), status.as_str()) {
            (Some(error), _) if !error.is_empty() => error.to_owned(),
            (_, "Pending") => format!("waiting for approval: flotilla cluster approve {name}"),
            (_, "Revoked") => match cluster["revokedAt"].as_str() {
                Some(at) => format!("revoked at {at}"),
                None => "revoked".to_owned(),
            },
            (_, "Unregistered") => "no agent has registered yet".to_owned(),
            _ => String::new(),
        };
        table.push(vec![
            name,
            status,
            labels,
            or_dash(&cluster["agentVersion"]),
            or_dash(&cluster["kubeVersion"]),
            output::age(cluster["lastSeen"].as_str(), now),
            or_dash(&cluster["generation"]),
            output::truncate(&message, 100),
        ]);
    }
    table
}

pub fn list(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["clusters"])?;
    let table = cluster_table(&answer, Timestamp::now());
    let mut report = Report::answer(format, &answer, || table.render());
    if format == Format::Table && table.is_empty() {
        report.stdout.clear();
        report
            .note("no clusters: create a bootstrap token with flotilla cluster token create NAME");
    }
    Ok(report)
}

pub fn approve(client: &Client, format: Format, name: &str) -> Result<Report, CommandError> {
    let answer = client.post(&["clusters", name, "approve"], &json!({}))?;
    Ok(Report::answer(format, &answer, || {
        format!("cluster {name} approved\n")
    }))
}

pub fn revoke(client: &Client, format: Format, name: &str) -> Result<Report, CommandError> {
    let answer = client.post(&["clusters", name, "revoke"], &json!({}))?;
    Ok(Report::answer(format, &answer, || {
        format!("cluster {name} revoked: the hub refuses its certificate from now on\n")
    }))
}

/// `{"set": {…}, "remove": […]}`; a key both set and removed, or set twice to different
/// values, is a usage error.
fn label_body(changes: &[LabelChange]) -> Result<Value, String> {
    let mut set: BTreeMap<&str, &str> = BTreeMap::new();
    let mut remove: Vec<&str> = Vec::new();
    for change in changes {
        match change {
            LabelChange::Set(key, value) => {
                if remove.contains(&key.as_str()) {
                    return Err(format!("label {key} is both set and removed"));
                }
                if let Some(old) = set.insert(key, value)
                    && old != value
                {
                    return Err(format!("label {key} is set to both {old:?} and {value:?}"));
                }
            }
            LabelChange::Remove(key) => {
                if set.contains_key(key.as_str()) {
                    return Err(format!("label {key} is both set and removed"));
                }
                if !remove.contains(&key.as_str()) {
                    remove.push(key);
                }
            }
        }
    }
    Ok(json!({"set": set, "remove": remove}))
}

pub fn label(
    client: &Client,
    format: Format,
    name: &str,
    changes: &[LabelChange],
) -> Result<Report, CommandError> {
    let body = label_body(changes).map_err(CommandError::Usage)?;
    let answer = client.post(&["clusters", name, "labels"], &body)?;
    Ok(Report::answer(format, &answer, || {
        match answer["labels"].as_object() {
            Some(labels) if labels.is_empty() => format!("cluster {name} has no labels now\n"),
            Some(labels) => {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                format!("cluster {name} labels: {}\n", pairs.join(","))
            }
            None => format!("cluster {name} labelled\n"),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> LabelChange {
        LabelChange::Set(k.to_owned(), v.to_owned())
    }

    fn remove(k: &str) -> LabelChange {
        LabelChange::Remove(k.to_owned())
    }

    #[test]
    fn label_bodies() {
        let check = |changes: &[LabelChange], expected: Result<Value, &str>| match (
            label_body(changes),
            expected,
        ) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected),
            (Err(got), Err(expected)) => assert!(got.contains(expected), "{got}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        };
        check(
            &[set("env", "prod"), remove("tier"), set("team", "shop")],
            Ok(json!({"set": {"env": "prod", "team": "shop"}, "remove": ["tier"]})),
        );
        check(
            &[remove("a"), remove("a")],
            Ok(json!({"set": {}, "remove": ["a"]})),
        );
        check(
            &[set("a", "1"), set("a", "1")],
            Ok(json!({"set": {"a": "1"}, "remove": []})),
        );
        check(&[set("a", "1"), remove("a")], Err("both set and removed"));
        check(&[remove("a"), set("a", "1")], Err("both set and removed"));
        check(&[set("a", "1"), set("a", "2")], Err("set to both"));
    }

    #[test]
    fn token_bodies() {
        let create = TokenCreateArgs {
            name: "east".to_owned(),
            labels: vec![("env".into(), "prod".into())],
            ttl: "24h".to_owned(),
            require_approval: true,
            write_files: None,
            chart: "charts/flotilla-agent".to_owned(),
        };
        assert_eq!(
            token_body(&create),
            json!({"labels": {"env": "prod"}, "ttl": "24h", "requireApproval": true})
        );
    }

    #[test]
    fn the_helm_command_is_one_shell_line() {
        let (ca, keys) = file_names(2);
        assert_eq!(
            helm_command(
                "charts/flotilla-agent",
                "prod-east",
                "https://hub.example.com:8443",
                &ca,
                &keys,
                "flt_bt_abc",
            ),
            "helm install flotilla-agent charts/flotilla-agent --namespace flotilla-system \
             --create-namespace --set cluster.name=prod-east \
             --set hub.url=https://hub.example.com:8443 --set-file hub.ca=hub-ca.crt \
             --set-file 'trust.keys[0]=signing.pub' --set-file 'trust.keys[1]=signing-1.pub' \
             --set bootstrap.token=flt_bt_abc"
        );
        assert_eq!(shell_word("it's a dir/x"), r"'it'\''s a dir/x'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn agent_api_answers() {
        let good = json!({"url": "https://hub:8443", "caCertificate": "PEM", "trustedKeys": ["K"]});
        assert_eq!(
            AgentApi::from_json(&good).expect("complete"),
            AgentApi {
                url: "https://hub:8443".to_owned(),
                ca_certificate: "PEM".to_owned(),
                trusted_keys: vec!["K".to_owned()],
            }
        );
        let no_keys = json!({"url": "https://hub:8443", "caCertificate": "PEM", "trustedKeys": []});
        assert!(AgentApi::from_json(&no_keys).is_err());
        let no_url = json!({"caCertificate": "PEM", "trustedKeys": ["K"]});
        assert!(AgentApi::from_json(&no_url).is_err());
    }

    #[test]
    fn the_cluster_table() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().expect("time");
        let answer = json!({"clusters": [
            {"name": "prod-east", "labels": {"tier": "web", "env": "prod"}, "status": "Online",
             "approved": true, "revoked": false, "lastSeen": "2026-11-28T11:59:30Z",
             "agentVersion": "0.1.0", "kubeVersion": "v1.35.0", "generation": 1795824000123_u64,
             "lastError": null},
            {"name": "lab", "labels": {}, "approved": false, "revoked": false, "lastSeen": null,
             "generation": null},
            {"name": "old", "labels": {"env": "dev"}, "status": "Offline", "lastSeen": "2026-11-20T12:00:00Z",
             "lastError": "apply Deployment web/api: field is immutable\nsecond line"},
            {"name": "gone", "status": "Revoked", "revoked": true, "revokedAt": "2026-11-27T10:00:00Z"},
            {"name": "new", "status": "Unregistered", "labels": {"env": "prod"}, "lastError": null},
            {"name": "refused", "status": "Pending", "lastError": "bootstrap token expired"},
            {"name": "older-hub", "labels": {"env": "prod"}, "revoked": true, "generation": 7}
        ]});
        assert_eq!(
            cluster_table(&answer, now).render(),
            "\
NAME        STATUS         LABELS              AGENT   KUBERNETES   LAST-SEEN   GENERATION      MESSAGE
prod-east   Online         env=prod,tier=web   0.1.0   v1.35.0      30s ago     1795824000123
lab         Pending        -                   -       -            never       -               waiting for approval: flotilla cluster approve lab
old         Offline        env=dev             -       -            8d ago      -               apply Deployment web/api: field is immutable second line
gone        Revoked        -                   -       -            never       -               revoked at 2026-11-27T10:00:00Z
new         Unregistered   env=prod            -       -            never       -               no agent has registered yet
refused     Pending        -                   -       -            never       -               bootstrap token expired
older-hub   Revoked        env=prod            -       -            never       7               revoked
"
        );
    }
}
