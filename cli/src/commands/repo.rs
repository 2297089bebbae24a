//! `flotilla repo add|list|rm`: the Git repositories the hub fetches. Credentials are read
//! from files (or standard input, once) into the request body and never printed: the answers
//! say only whether a repository has credentials. The body and the table are pure.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{CommandError, Report};
use crate::args::{RepoAddArgs, parse_repo_url};
use crate::client::Client;
use crate::output::{Format, Table, or_dash};

/// Reads secret files; `-` is standard input, which can be read once.
struct Secrets<'a, R> {
    stdin: &'a mut R,
    stdin_read: bool,
}

impl<R: Read> Secrets<'_, R> {
    /// The file's text; what it is for names it in errors (never its content).
    fn read(&mut self, file: &Path, what: &str) -> Result<String, CommandError> {
        let mut text = String::new();
        if file == Path::new("-") {
            if self.stdin_read {
                return Err(CommandError::Usage(format!(
                    "standard input (-) is given for two files; read the {what} from a file"
                )));
            }
            self.stdin_read = true;
            self.stdin
                .read_to_string(&mut text)
                .map_err(CommandError::io(format!(
                    "read the {what} from standard input"
                )))?;
        } else {
            text = std::fs::read_to_string(file).map_err(CommandError::io(format!(
                "read the {what} from {}",
                file.display()
            )))?;
        }
        if text.trim().is_empty() {
            return Err(CommandError::Usage(format!(
                "the {what} file {} is empty",
                file.display()
            )));
        }
        Ok(text)
    }
}

/// The `credentials` of the request, if any flags ask for them.
fn credentials(args: &RepoAddArgs, stdin: &mut impl Read) -> Result<Option<Value>, CommandError> {
    let from_stdin = [
        &args.git_token_file,
        &args.password_file,
        &args.ssh_key_file,
        &args.known_hosts_file,
    ]
    .iter()
    .filter(|f| f.as_deref() == Some(Path::new("-")))
    .count();
    if from_stdin > 1 {
        return Err(CommandError::Usage(
            "standard input (-) is given for two files; read one of them from a file".to_owned(),
        ));
    }
    let mut secrets = Secrets {
        stdin,
        stdin_read: false,
    };
    let line = |text: String| text.trim_end_matches(['\n', '\r']).to_owned();
    let file = |f: &Option<PathBuf>| f.clone();
    Ok(
        match (
            file(&args.git_token_file),
            &args.username,
            file(&args.password_file),
            file(&args.ssh_key_file),
            file(&args.known_hosts_file),
        ) {
            (Some(token), _, _, _, _) => Some(json!({
                "type": "token",
                "token": secrets.read(&token, "Git token")?.trim(),
            })),
            (None, Some(username), Some(password), _, _) => Some(json!({
                "type": "basic",
                "username": username,
                "password": line(secrets.read(&password, "password")?),
            })),
            (None, None, None, Some(key), Some(known_hosts)) => Some(json!({
                "type": "ssh",
                "privateKey": secrets.read(&key, "SSH private key")?,
                "knownHosts": secrets.read(&known_hosts, "known_hosts")?,
            })),
            // clap requires the pairs; nothing else names a credential.
            _ => None,
        },
    )
}

/// The URL checked, or a usage error that does not echo it.
pub fn checked_url(url: &str) -> Result<String, CommandError> {
    parse_repo_url(url).map_err(CommandError::Usage)
}

fn body(args: &RepoAddArgs, stdin: &mut impl Read) -> Result<Value, CommandError> {
    let mut body = json!({"url": checked_url(&args.url)?});
    if let Some(credentials) = credentials(args, stdin)? {
        body["credentials"] = credentials;
    }
    if let Some(interval) = &args.poll_interval {
        body["pollInterval"] = json!(interval);
    }
    Ok(body)
}

fn list_table(repos: &[Value]) -> Table {
    let mut table = Table::new(&["URL", "CREDENTIALS", "POLL-INTERVAL", "UPDATED"]);
    for repo in repos {
        table.push(vec![
            or_dash(&repo["url"]),
            if repo["hasCredentials"] == json!(true) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            match repo["pollInterval"].as_str() {
                Some(interval) => interval.to_owned(),
                None => "default".to_owned(),
            },
            or_dash(&repo["updatedAt"]),
        ]);
    }
    table
}

pub fn add(
    client: &Client,
    format: Format,
    args: &RepoAddArgs,
    stdin: &mut impl Read,
) -> Result<Report, CommandError> {
    // Every file is read before the hub is asked.
    let body = body(args, stdin)?;
    let answer = client.put(&["repositories"], &body)?;
    Ok(Report::answer(format, &answer, || {
        format!(
            "repository {} stored ({}; poll interval {})\n",
            or_dash(&answer["url"]),
            if answer["hasCredentials"] == json!(true) {
                "with credentials"
            } else {
                "no credentials"
            },
            answer["pollInterval"]
                .as_str()
                .unwrap_or("the hub's default"),
        )
    }))
}

pub fn list(client: &Client, format: Format) -> Result<Report, CommandError> {
    let answer = client.get(&["repositories"])?;
    let repos = answer["repositories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut report = Report::answer(format, &answer, || list_table(&repos).render());
    if format == Format::Table && repos.is_empty() {
        report.stdout.clear();
        report.note("no repositories: register one with flotilla repo add URL");
    }
    Ok(report)
}

pub fn rm(client: &Client, format: Format, url: &str) -> Result<Report, CommandError> {
    let answer = client.delete(&["repositories"], &[("url", checked_url(url)?)])?;
    Ok(Report::answer(format, &answer, || {
        format!("repository {} removed\n", or_dash(&answer["deleted"]))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Args, Command, RepoCommand};
    use clap::Parser as _;

    fn add_args(argv: &[&str]) -> Result<RepoAddArgs, clap::Error> {
        let args = Args::try_parse_from(["flotilla", "repo", "add"].iter().chain(argv))?;
        match args.command {
            Command::Repo {
                command: RepoCommand::Add(add),
            } => Ok(add),
            other => panic!("not repo add: {other:?}"),
        }
    }

    #[test]
    fn credentials_come_from_files_and_stdin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.to_str().expect("UTF-8").to_owned()
        };
        let token = file("token", "ghp_secret\n");
        let key = file(
            "id",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nk\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        let hosts = file("known_hosts", "git.example ssh-ed25519 AAAA\n");
        let url = "https://git.example/fleet.git";
        let check = |argv: &[&str], stdin: &str, expected: Value| {
            let args = add_args(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(body(&args, &mut stdin.as_bytes()).expect("body"), expected);
        };
        check(&[url], "", json!({"url": url}));
        check(
            &[url, "--git-token-file", &token, "--poll-interval", "5m"],
            "",
            json!({"url": url, "credentials": {"type": "token", "token": "ghp_secret"}, "pollInterval": "5m"}),
        );
        check(
            &[url, "--username", "x-access-token", "--password-file", "-"],
            "p@ss word\n",
            json!({"url": url, "credentials": {"type": "basic", "username": "x-access-token", "password": "p@ss word"}}),
        );
        check(
            &[
                "git@git.example:fleet.git",
                "--ssh-key-file",
                &key,
                "--known-hosts-file",
                &hosts,
            ],
            "",
            json!({"url": "git@git.example:fleet.git", "credentials": {"type": "ssh",
                   "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nk\n-----END OPENSSH PRIVATE KEY-----\n",
                   "knownHosts": "git.example ssh-ed25519 AAAA\n"}}),
        );

        let twice =
            add_args(&[url, "--ssh-key-file", "-", "--known-hosts-file", "-"]).expect("parses");
        let error = body(&twice, &mut "k".as_bytes()).expect_err("stdin once");
        assert_eq!(error.exit_code(), 2);
        let empty = add_args(&[url, "--git-token-file", &file("empty", "\n")]).expect("parses");
        assert_eq!(
            body(&empty, &mut "".as_bytes())
                .expect_err("empty")
                .exit_code(),
            2
        );
        let missing = add_args(&[url, "--git-token-file", "/nonexistent/token"]).expect("parses");
        let error = body(&missing, &mut "".as_bytes()).expect_err("missing");
        assert_eq!(error.exit_code(), 1);
        assert!(error.to_string().contains("/nonexistent/token"), "{error}");
    }

    #[test]
    fn usage_errors_never_echo_secrets() {
        for argv in [
            &["https://git.example/x.git", "--username", "u"][..],
            &["https://git.example/x.git", "--password-file", "f"],
            &["https://git.example/x.git", "--ssh-key-file", "k"],
            &[
                "https://git.example/x.git",
                "--git-token-file",
                "t",
                "--username",
                "u",
                "--password-file",
                "p",
            ],
            &["https://git.example/x.git", "--poll-interval", "often"],
            &["https://git.example/x.git", "--token-value", "t"],
        ] {
            let error = add_args(argv).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{argv:?}");
        }
        let with_password = add_args(&["https://user:hunter2@git.example/x.git"]).expect("parses");
        let error = body(&with_password, &mut "".as_bytes()).expect_err("refused");
        assert_eq!(error.exit_code(), 2);
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("--password-file"), "{error}");
    }

    #[test]
    fn repository_rows() {
        let repos = json!([
            {"url": "https://git.example/fleet.git", "hasCredentials": true, "pollInterval": "300s",
             "createdAt": "2026-11-28T06:00:00Z", "updatedAt": "2026-11-28T06:00:00Z"},
            {"url": "https://git.example/public.git", "hasCredentials": false, "pollInterval": null,
             "createdAt": "2026-11-28T06:00:00Z", "updatedAt": "2026-11-28T07:00:00Z"}
        ]);
        assert_eq!(
            list_table(repos.as_array().expect("array")).render(),
            "\
URL                              CREDENTIALS   POLL-INTERVAL   UPDATED
https://git.example/fleet.git    yes           300s            2026-11-28T06:00:00Z
https://git.example/public.git   no            default         2026-11-28T07:00:00Z
"
        );
    }
}
