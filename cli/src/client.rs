//! The hub's human API over HTTP(S): one blocking reqwest client (rustls, a connect timeout
//! and a per-request timeout), the bearer token on every request, and the hub's error object
//! `{"error": {"code", "message"}}` turned into [`ClientError::Api`]. The only module that
//! talks to the network. Its errors name the method and URL, never the token. Query values
//! are percent-encoded here, so a repository URL or a selector cannot change the request.

use std::io::{Read as _, Write};
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Token;

/// A connection to one hub with one token.
#[derive(Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    /// The hub's URL with `/api/v1` appended.
    api: Url,
    token: Token,
}

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("hub URL {url:?} is not valid: {reason}")]
    HubUrl { url: String, reason: String },
    #[error("{name:?} is not a name the hub can know")]
    Name { name: String },
    #[error("set up the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The hub answered with an error; `message` is the hub's own, shown as is.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The hub does not know the route: it predates this command line.
    #[error("the hub at {hub} does not serve {method} {path}: it is older than this command line")]
    NoRoute {
        hub: String,
        method: Method,
        path: String,
    },
    #[error("{method} {url}")]
    Send {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: the answer is not the JSON expected")]
    Decode {
        method: Method,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{method} {url}: the answer is larger than {limit} bytes")]
    TooLarge {
        method: Method,
        url: String,
        limit: u64,
    },
    #[error("{method} {url}: save the answer")]
    Save {
        method: Method,
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: String,
    message: String,
}

/// Answers are JSON, except a bundle; this much JSON is more than any answer needs.
const MAX_JSON_BYTES: u64 = 64 << 20;

impl Client {
    pub fn new(hub: &str, token: Token, timeout: Duration) -> Result<Self, ClientError> {
        let hub_url = |reason: String| ClientError::HubUrl {
            url: hub.to_owned(),
            reason,
        };
        let mut api = Url::parse(hub).map_err(|e| hub_url(e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") || api.cannot_be_a_base() {
            return Err(hub_url("not an http:// or https:// URL".to_owned()));
        }
        if !api.username().is_empty() || api.password().is_some() {
            return Err(ClientError::HubUrl {
                url: "(redacted)".to_owned(),
                reason: "it carries a user or password".to_owned(),
            });
        }
        api.set_query(None);
        api.set_fragment(None);
        api.path_segments_mut()
            .expect("http URLs have segments")
            .pop_if_empty()
            .extend(["api", "v1"]);
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self { http, api, token })
    }

    /// `/api/v1/<segments>?<query>`, each segment and parameter percent-encoded, so a name
    /// cannot change the path; `.`, `..` and empty names, which URLs would resolve away, are
    /// refused.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, ClientError> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(ClientError::Name {
                name: (*bad).to_owned(),
            });
        }
        let mut url = self.api.clone();
        url.path_segments_mut()
            .expect("http URLs have segments")
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(Response, Method, Url), ClientError> {
        let url = self.url(segments, query)?;
        let request = self
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", self.token.expose()));
        let response = build(request).send().map_err(|e| ClientError::Send {
            method: method.clone(),
            url: url.to_string(),
            source: e.without_url(),
        })?;
        if response.status().is_success() {
            return Ok((response, method, url));
        }
        Err(self.error(method, url, response))
    }

    /// The error object of a failed answer; an answer without one still names its status.
    fn error(&self, method: Method, url: Url, response: Response) -> ClientError {
        let status = response.status();
        let mut body = Vec::new();
        // The body is only a hint: a failed read leaves the status to speak.
        let _ignored = response.take(MAX_JSON_BYTES).read_to_end(&mut body);
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => {
                if error.code == "not_found" && error.message.starts_with("no route ") {
                    let hub = self.api.as_str().trim_end_matches("/api/v1").to_owned();
                    return ClientError::NoRoute {
                        hub,
                        method,
                        path: url.path().to_owned(),
                    };
                }
                ClientError::Api {
                    status,
                    code: error.code,
                    message: error.message,
                }
            }
            Err(_) => ClientError::Api {
                status,
                code: status.as_str().to_owned(),
                message: format!("{method} {url}: the hub answered {status}"),
            },
        }
    }

    fn json(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Value, ClientError> {
        let (response, method, url) = self.send(method, segments, query, |r| {
            build(r.header(ACCEPT, "application/json"))
        })?;
        let mut body = Vec::new();
        response
            .take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|source| ClientError::Save {
                method: method.clone(),
                url: url.to_string(),
                source,
            })?;
        if body.len() as u64 > MAX_JSON_BYTES {
            return Err(ClientError::TooLarge {
                method,
                url: url.to_string(),
                limit: MAX_JSON_BYTES,
            });
        }
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            method,
            url: url.to_string(),
            source,
        })
    }

    pub fn get(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.get_query(segments, &[])
    }

    /// GET with query parameters (`query` holds only the ones given).
    pub fn get_query(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.json(Method::GET, segments, query, |r| r)
    }

    pub fn post(&self, segments: &[&str], body: &Value) -> Result<Value, ClientError> {
        self.post_query(segments, &[], body)
    }

    pub fn post_query(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.with_body(Method::POST, segments, query, body)
    }

    pub fn put(&self, segments: &[&str], body: &Value) -> Result<Value, ClientError> {
        self.with_body(Method::PUT, segments, &[], body)
    }

    pub fn delete(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.json(Method::DELETE, segments, query, |r| r)
    }

    fn with_body(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ClientError> {
        let body = body.to_string();
        self.json(method, segments, query, |r| {
            r.header(CONTENT_TYPE, "application/json").body(body)
        })
    }

    /// POSTs YAML text (one or more documents).
    pub fn post_yaml(&self, segments: &[&str], text: String) -> Result<Value, ClientError> {
        self.json(Method::POST, segments, &[], |r| {
            r.header(CONTENT_TYPE, "application/yaml").body(text)
        })
    }

    /// GETs a binary answer into `out`, at most `limit` bytes; how many were written.
    pub fn download(
        &self,
        segments: &[&str],
        out: &mut impl Write,
        limit: u64,
    ) -> Result<u64, ClientError> {
        let (response, method, url) = self.send(Method::GET, segments, &[], |r| r)?;
        let written = std::io::copy(&mut response.take(limit + 1), out).map_err(|source| {
            ClientError::Save {
                method: method.clone(),
                url: url.to_string(),
                source,
            }
        })?;
        if written > limit {
            return Err(ClientError::TooLarge {
                method,
                url: url.to_string(),
                limit,
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(hub: &str) -> Client {
        Client::new(
            hub,
            Token::new("flt_x").expect("token"),
            Duration::from_secs(1),
        )
        .expect("a client")
    }

    #[test]
    fn paths_are_under_api_v1_and_names_are_escaped() {
        let check = |hub: &str, segments: &[&str], expected: &str| {
            assert_eq!(
                client(hub).url(segments, &[]).expect("valid").as_str(),
                expected
            );
        };
        check(
            "http://127.0.0.1:1",
            &["clusters"],
            "http://127.0.0.1:1/api/v1/clusters",
        );
        check(
            "https://example.com/flotilla/",
            &["clusters", "east", "approve"],
            "https://example.com/flotilla/api/v1/clusters/east/approve",
        );
        check(
            "https://hub.example.com",
            &["clusters", "../x?y", "bundle"],
            "https://hub.example.com/api/v1/clusters/..%2Fx%3Fy/bundle",
        );
        for bad in ["..", ".", ""] {
            let refused = client("https://hub.example.com").url(&["clusters", bad, "approve"], &[]);
            assert!(refused.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_parameters_are_escaped() {
        let url = client("https://hub.example.com")
            .url(
                &["repositories"],
                &[
                    ("url", "https://git.example/a b.git?x=1&y".to_owned()),
                    ("selector", "env=prod,tier=web".to_owned()),
                ],
            )
            .expect("valid");
        assert_eq!(
            url.as_str(),
            "https://hub.example.com/api/v1/repositories?url=https%3A%2F%2Fgit.example%2Fa+b.git%3Fx%3D1%26y&selector=env%3Dprod%2Ctier%3Dweb"
        );
    }

    #[test]
    fn hub_urls_with_credentials_are_refused_without_echoing_them() {
        let error = Client::new(
            "https://admin:pw-7f3a@hub.example.com",
            Token::new("flt_x").expect("token"),
            Duration::from_secs(1),
        )
        .expect_err("refused");
        assert!(!error.to_string().contains("pw-7f3a"), "{error}");
    }
}
