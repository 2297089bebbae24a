//! The config file: named contexts (a hub's URL and its admin token) and the current one, as
//! JSON. Where it lives and which context, hub and token a command uses are pure functions;
//! [`load`] and [`save`] talk to the disk (written atomically, mode 0600, its directory 0700
//! when created). A token never reaches a `Debug` output or an error.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An admin API token: shown by no `Debug`, handed out only by [`Token::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// The token without surrounding whitespace (a file's newline); `None` when empty.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// The secret itself, for the `Authorization` header and the config file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// The config file's content.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One hub and the token to use with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub hub: String,
    pub token: Token,
}

/// What a command talks to: the context it came from (if any), the hub and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub context: Option<String>,
    pub hub: String,
    pub token: Token,
}

/// Why the config file cannot be found, read or written, or says nothing to use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no place for the config file: set FLOTILLA_CONFIG, XDG_CONFIG_HOME or HOME")]
    NoLocation,
    #[error("read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is not valid: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write config file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("context {name:?} is not in config file {} (contexts: {known})", path.display())]
    UnknownContext {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error(
        "not logged in: run flotilla login --hub URL --token-file FILE, or set FLOTILLA_HUB and FLOTILLA_TOKEN"
    )]
    NotLoggedIn,
    #[error(
        "no token for hub {hub}: run flotilla login --hub {hub} --token-file FILE, or set FLOTILLA_TOKEN"
    )]
    NoToken { hub: String },
}

/// The config file's path: `explicit`, else `$XDG_CONFIG_HOME/flotilla/config.json` (an
/// absolute one, as the XDG specification says), else `~/.config/flotilla/config.json`.
pub fn path(
    explicit: Option<&Path>,
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    fn nonempty(p: Option<&Path>) -> Option<&Path> {
        p.filter(|p| !p.as_os_str().is_empty())
    }
    if let Some(path) = nonempty(explicit) {
        return Ok(path.to_owned());
    }
    let base = match (
        nonempty(xdg_config_home).filter(|p| p.is_absolute()),
        nonempty(home),
    ) {
        (Some(xdg), _) => xdg.to_owned(),
        (None, Some(home)) => home.join(".config"),
        (None, None) => return Err(ConfigError::NoLocation),
    };
    Ok(base.join("flotilla").join("config.json"))
}

/// Reads the config file; a missing one is an empty config.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes the config file: a temporary file (mode 0600) in the same directory, then a rename,
/// so a reader never sees half a file and the token is never readable by others.
pub fn save(path: &Path, config: &Config) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir).map_err(write_error)?;
    let mut file = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(write_error)?;
    let mut text = serde_json::to_vec_pretty(config).expect("a config serializes to JSON");
    text.push(b'\n');
    file.write_all(&text).map_err(write_error)?;
    file.as_file().sync_all().map_err(write_error)?;
    file.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// Creates `dir` and its missing parents; the ones created get mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The name `login` gives a context when none is asked for: the hub's host, and its port
/// when it has one.
pub fn default_context_name(hub: &str) -> String {
    let Ok(url) = reqwest::Url::parse(hub) else {
        return hub.to_owned();
    };
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => hub.to_owned(),
    }
}

impl Config {
    /// The context named `name`, else the current one; `Ok(None)` when there is none.
    pub fn context<'a>(
        &'a self,
        name: Option<&'a str>,
        path: &Path,
    ) -> Result<Option<(&'a str, &'a Context)>, ConfigError> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get(name) {
            Some(context) => Ok(Some((name, context))),
            None => Err(ConfigError::UnknownContext {
                name: name.to_owned(),
                path: path.to_owned(),
                known: if self.contexts.is_empty() {
                    "none".to_owned()
                } else {
                    self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            }),
        }
    }

    /// What a command talks to: `hub` and `token` (from flags or the environment) win over
    /// the context's. A token given alone is used with the context's hub; a hub given alone
    /// takes the context's token only when it is the context's hub, so a token never goes to
    /// a hub it was not made for.
    pub fn target(
        &self,
        context: Option<&str>,
        hub: Option<&str>,
        token: Option<Token>,
        path: &Path,
    ) -> Result<Target, ConfigError> {
        let found = self.context(context, path)?;
        let name = found.map(|(name, _)| name.to_owned());
        let hub = match (hub, found) {
            (Some(hub), _) => hub.to_owned(),
            (None, Some((_, context))) => context.hub.clone(),
            (None, None) => return Err(ConfigError::NotLoggedIn),
        };
        let token = match (token, found) {
            (Some(token), _) => token,
            (None, Some((_, context))) if same_hub(&context.hub, &hub) => context.token.clone(),
            (None, _) => return Err(ConfigError::NoToken { hub }),
        };
        Ok(Target {
            context: name,
            hub,
            token,
        })
    }
}

fn same_hub(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Token {
        Token::new(t).expect("not empty")
    }

    fn config() -> Config {
        Config {
            current_context: Some("prod".to_owned()),
            contexts: BTreeMap::from([
                (
                    "prod".to_owned(),
                    Context {
                        hub: "https://hub.example.com".to_owned(),
                        token: token("flt_prod"),
                    },
                ),
                (
                    "lab".to_owned(),
                    Context {
                        hub: "http://127.0.0.1:8080".to_owned(),
                        token: token("flt_lab"),
                    },
                ),
            ]),
        }
    }

    #[test]
    fn config_file_location() {
        let p = |s: &str| PathBuf::from(s);
        let check = |explicit: Option<&str>,
                     xdg: Option<&str>,
                     home: Option<&str>,
                     expected: Option<&str>| {
            let got = path(
                explicit.map(Path::new),
                xdg.map(Path::new),
                home.map(Path::new),
            )
            .ok();
            assert_eq!(got, expected.map(p), "{explicit:?} {xdg:?} {home:?}");
        };
        check(Some("/c.json"), Some("/x"), Some("/h"), Some("/c.json"));
        check(
            None,
            Some("/x"),
            Some("/h"),
            Some("/x/flotilla/config.json"),
        );
        check(
            None,
            None,
            Some("/h"),
            Some("/h/.config/flotilla/config.json"),
        );
        check(
            None,
            Some("rel"),
            Some("/h"),
            Some("/h/.config/flotilla/config.json"),
        );
        check(
            Some(""),
            Some(""),
            Some("/h"),
            Some("/h/.config/flotilla/config.json"),
        );
        check(None, None, None, None);
    }

    #[test]
    fn what_a_command_talks_to() {
        let path = Path::new("/c.json");
        let check = |context: Option<&str>,
                     hub: Option<&str>,
                     tok: Option<&str>,
                     expected: Result<(Option<&str>, &str, &str), &str>| {
            let got = config().target(context, hub, tok.map(token), path);
            match (got, expected) {
                (Ok(got), Ok((name, hub, tok))) => {
                    assert_eq!(got.context.as_deref(), name);
                    assert_eq!((got.hub.as_str(), got.token.expose()), (hub, tok));
                }
                (Err(got), Err(expected)) => {
                    assert!(got.to_string().contains(expected), "{got}")
                }
                (got, expected) => panic!("got {got:?}, expected {expected:?}"),
            }
        };
        let prod = "https://hub.example.com";
        check(None, None, None, Ok((Some("prod"), prod, "flt_prod")));
        check(
            Some("lab"),
            None,
            None,
            Ok((Some("lab"), "http://127.0.0.1:8080", "flt_lab")),
        );
        check(None, None, Some("flt_x"), Ok((Some("prod"), prod, "flt_x")));
        check(
            None,
            Some("https://hub.example.com/"),
            None,
            Ok((Some("prod"), "https://hub.example.com/", "flt_prod")),
        );
        check(
            None,
            Some("https://other.example"),
            None,
            Err("no token for hub"),
        );
        check(
            None,
            Some("https://other.example"),
            Some("flt_o"),
            Ok((Some("prod"), "https://other.example", "flt_o")),
        );
        check(Some("nope"), None, None, Err("contexts: lab, prod"));

        let empty = Config::default();
        assert!(matches!(
            empty.target(None, None, None, path),
            Err(ConfigError::NotLoggedIn)
        ));
        let flags_only = empty
            .target(None, Some(prod), Some(token("flt_env")), path)
            .expect("flags suffice");
        assert_eq!(flags_only.context, None);
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let debug = format!("{:?}", config());
        assert!(!debug.contains("flt_prod"), "{debug}");
        assert_eq!(Token::new(" flt_a\n").expect("token").expose(), "flt_a");
        assert_eq!(Token::new(" \n"), None);
    }

    #[test]
    fn context_names() {
        assert_eq!(
            default_context_name("https://hub.example.com"),
            "hub.example.com"
        );
        assert_eq!(
            default_context_name("http://127.0.0.1:8080"),
            "127.0.0.1:8080"
        );
        assert_eq!(
            default_context_name("https://example.com:8443/flotilla"),
            "example.com:8443"
        );
    }

    #[test]
    fn saved_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new/flotilla/config.json");
        assert_eq!(load(&path).expect("missing is empty"), Config::default());
        save(&path, &config()).expect("saves");
        assert_eq!(load(&path).expect("loads"), config());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
        std::fs::write(&path, "{not json").expect("write");
        let error = load(&path).expect_err("refused");
        assert!(error.to_string().contains("is not valid"), "{error}");
    }
}
