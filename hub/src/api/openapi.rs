//! The routes of the human API ([`ROUTES`], which the router matches against) and its
//! OpenAPI 3 document (written by hand; a test keeps the two in step). Pure.

use http::Method;
use serde_json::{Value, json};

/// One route: method, path template (`{name}` segments are parameters), whether it needs the
/// bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub bearer: bool,
}

const fn route(method: Method, path: &'static str, bearer: bool) -> Route {
    Route {
        method,
        path,
        bearer,
    }
}

/// Every route the router serves.
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/healthz", false),
    route(Method::GET, "/api/v1/openapi.json", true),
    route(Method::POST, "/api/v1/apply", true),
    route(Method::GET, "/api/v1/applications", true),
    route(Method::POST, "/api/v1/applications", true),
    route(Method::GET, "/api/v1/applications/{name}", true),
    route(Method::DELETE, "/api/v1/applications/{name}", true),
    route(Method::POST, "/api/v1/applications/{name}/sync", true),
    route(Method::GET, "/api/v1/applications/{name}/history", true),
    route(Method::POST, "/api/v1/applications/{name}/rollback", true),
    route(Method::GET, "/api/v1/applications/{name}/diff", true),
    route(Method::GET, "/api/v1/applicationsets", true),
    route(Method::POST, "/api/v1/applicationsets", true),
    route(Method::GET, "/api/v1/applicationsets/{name}", true),
    route(Method::DELETE, "/api/v1/applicationsets/{name}", true),
    route(Method::GET, "/api/v1/audit", true),
    route(Method::POST, "/api/v1/applications/{name}/pin", true),
    route(Method::DELETE, "/api/v1/applications/{name}/pin", true),
    route(Method::GET, "/api/v1/clusters", true),
    route(Method::POST, "/api/v1/clusters", true),
    route(Method::GET, "/api/v1/clusters/{name}", true),
    route(Method::GET, "/api/v1/clusters/{name}/state", true),
    route(Method::POST, "/api/v1/clusters/{name}/tokens", true),
    route(Method::POST, "/api/v1/clusters/{name}/approve", true),
    route(Method::POST, "/api/v1/clusters/{name}/revoke", true),
    route(Method::POST, "/api/v1/clusters/{name}/labels", true),
    route(Method::GET, "/api/v1/clusters/{name}/bundle", true),
    route(Method::GET, "/api/v1/clusters/{name}/status", true),
    route(Method::GET, "/api/v1/agent-api", true),
    route(Method::PUT, "/api/v1/test/serve-override", true),
    route(Method::GET, "/api/v1/repositories", true),
    route(Method::PUT, "/api/v1/repositories", true),
    route(Method::DELETE, "/api/v1/repositories", true),
    route(Method::GET, "/api/v1/projects", true),
    route(Method::GET, "/api/v1/config-repository", true),
    route(Method::POST, "/api/v1/refresh", true),
    route(Method::GET, "/api/v1/events", true),
    route(Method::GET, "/api/v1/whoami", true),
    route(Method::GET, "/api/v1/tokens", true),
    route(Method::POST, "/api/v1/tokens", true),
    route(Method::DELETE, "/api/v1/tokens/{id}", true),
    route(Method::POST, "/api/v1/webhook/{provider}", false),
];

/// Matches `path` against a template; returns the parameters in order.
pub fn match_path(template: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for expected in template.split('/') {
        let got = segments.next()?;
        if expected.starts_with('{') && expected.ends_with('}') {
            if got.is_empty() {
                return None;
            }
            params.push(got.to_owned());
        } else if expected != got {
            return None;
        }
    }
    segments.next().is_none().then_some(params)
}

fn error_responses() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}
    })
}

fn ok(description: &str, extra: Value) -> Value {
    let mut responses = error_responses();
    responses["200"] = json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            responses[k] = v;
        }
    }
    responses
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

fn limit() -> Value {
    json!({"name": "limit", "in": "query", "required": false, "description": "items per page", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}})
}

fn offset() -> Value {
    json!({"name": "offset", "in": "query", "required": false, "description": "items to skip (a page's nextOffset)", "schema": {"type": "integer", "minimum": 0}})
}

fn name_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

/// The OpenAPI 3 document served at `/api/v1/openapi.json`.
pub fn document() -> Value {
    let app = name_param("name", "application name");
    let cluster = name_param("name", "cluster name");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Flotilla hub human API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Declarative configuration, clusters and their signed states. Every route except /healthz and the webhook needs `Authorization: Bearer <token>`. Request bodies refuse unknown fields."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/api/v1/openapi.json": {"get": {"summary": "this document", "responses": ok("the OpenAPI document", json!({}))}},
            "/api/v1/apply": {"post": {
                "summary": "store Application, ApplicationSet and AppProject documents (argoproj.io/v1alpha1)",
                "requestBody": {"required": true, "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "string"}}
                }},
                "responses": ok("what was stored, and warnings naming unsupported fields", json!({}))
            }},
            "/api/v1/applications": {
                "get": {
                    "summary": "applications (declared and generated) with their status on every cluster and the why-not-synced sentence; filtered and paged",
                    "parameters": [
                        query("project", "only applications of this project"),
                        query("selector", "label selector on the application's labels: k=v, k!=v, k, !k, comma-separated"),
                        query("cluster", "only applications served to this cluster"),
                        limit(), offset()
                    ],
                    "responses": ok("a page of applications: applications, total, offset, limit, nextOffset (null on the last page)", json!({}))
                },
                "post": {
                    "summary": "declare one Application (argoproj.io/v1alpha1, YAML or JSON); 409 when it exists unless upsert=true",
                    "parameters": [query("upsert", "true: replace an application the API declared before")],
                    "requestBody": {"required": true, "content": {
                        "application/yaml": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}}
                    }},
                    "responses": ok("replaced", json!({"201": {"description": "declared"}, "409": {"$ref": "#/components/responses/Error"}}))
                }
            },
            "/api/v1/applications/{name}": {
                "get": {
                    "summary": "one application: declaration, where it runs with sync, health and why, pins, history",
                    "parameters": [app.clone()],
                    "responses": ok("the application", json!({}))
                },
                "delete": {
                    "summary": "delete an application the API declared; it leaves its clusters (409 for one declared in Git or generated by an ApplicationSet)",
                    "parameters": [app.clone()],
                    "responses": ok("deleted", json!({"409": {"$ref": "#/components/responses/Error"}}))
                }
            },
            "/api/v1/applications/{name}/sync": {"post": {
                "summary": "fetch the application's repositories and publish now (also with automated sync off); answers 200 with the clusters once the round is done, or 202 if it takes over 60 s",
                "parameters": [app.clone()],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false}}}},
                "responses": {"200": {"description": "published: where the application runs now"}, "202": {"description": "still under way"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}
            }},
            "/api/v1/applications/{name}/history": {"get": {
                "summary": "revisions deployed, newest first",
                "parameters": [app.clone(), query("cluster", "only this cluster"), limit()],
                "responses": ok("the history", json!({}))
            }},
            "/api/v1/applications/{name}/rollback": {"post": {
                "summary": "hold the application (or one cluster of it) at a revision of its history",
                "parameters": [app.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PinRequest"}}}},
                "responses": ok("pinned", json!({"409": {"$ref": "#/components/responses/Error"}}))
            }},
            "/api/v1/applications/{name}/diff": {"get": {
                "summary": "per cluster: the rendered objects that change between what the agent runs and the target (revision, else what is served), as unified diffs, and the drift the agent reported",
                "parameters": [app.clone(), query("revision", "the target revision (default: what the hub serves)"), query("cluster", "only this cluster")],
                "responses": ok("the diff", json!({}))
            }},
            "/api/v1/applicationsets": {
                "get": {"summary": "declared ApplicationSets with what they generated", "parameters": [limit(), offset()], "responses": ok("a page of sets", json!({}))},
                "post": {
                    "summary": "declare or replace one ApplicationSet (YAML or JSON)",
                    "requestBody": {"required": true, "content": {"application/yaml": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}},
                    "responses": ok("replaced", json!({"201": {"description": "declared"}, "409": {"$ref": "#/components/responses/Error"}}))
                }
            },
            "/api/v1/applicationsets/{name}": {
                "get": {"summary": "one ApplicationSet and its applications on their clusters", "parameters": [name_param("name", "ApplicationSet name")], "responses": ok("the set", json!({}))},
                "delete": {"summary": "delete an ApplicationSet the API declared; its applications leave their clusters", "parameters": [name_param("name", "ApplicationSet name")], "responses": ok("deleted", json!({"409": {"$ref": "#/components/responses/Error"}}))}
            },
            "/api/v1/whoami": {"get": {
                "summary": "who the bearer token stands for: name, kind (local-admin, token, sso), grants, expiry",
                "responses": ok("the principal", json!({}))
            }},
            "/api/v1/tokens": {
                "get": {
                    "summary": "every API token (never the token itself): name, grants, expiry, revocation",
                    "responses": ok("tokens", json!({}))
                },
                "post": {
                    "summary": "create an API token with grants ({role, project}) and a lifetime (expiresIn: 90m, 12h, 30d; default 30d, at most 366d); the token is in this answer only",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "grants"], "properties": {"name": {"type": "string"}, "grants": {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string", "enum": ["admin", "maintainer", "viewer"]}, "project": {"type": "string"}}}}, "expiresIn": {"type": "string"}}}}}},
                    "responses": ok("created", json!({"201": {"description": "created; the token is in the answer once"}}))
                }
            },
            "/api/v1/tokens/{id}": {"delete": {
                "summary": "revoke an API token: it stops working at once",
                "parameters": [name_param("id", "the token's id")],
                "responses": ok("revoked", json!({"409": {"$ref": "#/components/responses/Error"}}))
            }},
            "/api/v1/audit": {"get": {
                "summary": "the audit log, newest first: who changed what, when and from where",
                "parameters": [limit()],
                "responses": ok("entries", json!({}))
            }},
            "/api/v1/applications/{name}/pin": {
                "post": {
                    "summary": "hold an application (or one cluster of it) at a deployed revision",
                    "parameters": [app],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PinRequest"}}}},
                    "responses": ok("pinned", json!({"409": {"$ref": "#/components/responses/Error"}}))
                },
                "delete": {
                    "summary": "lift a pin",
                    "parameters": [app, {"name": "cluster", "in": "query", "required": false, "schema": {"type": "string"}}],
                    "responses": ok("unpinned", json!({}))
                }
            },
            "/api/v1/clusters": {
                "get": {
                    "summary": "registered clusters with status and served generation; filtered and paged",
                    "parameters": [
                        query("selector", "label selector: k=v, k!=v, k, !k, comma-separated"),
                        query("status", "Online, Offline, Registered, Pending, Unregistered or Revoked"),
                        limit(), offset()
                    ],
                    "responses": ok("a page of clusters", json!({}))
                },
                "post": {
                    "summary": "register or update a cluster (admin)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClusterRequest"}}}},
                    "responses": ok("the cluster", json!({}))
                }
            },
            "/api/v1/clusters/{name}": {"get": {
                "summary": "one cluster: registration, versions, last seen, and every application it is served with sync, health and why",
                "parameters": [cluster.clone()],
                "responses": ok("the cluster", json!({}))
            }},
            "/api/v1/clusters/{name}/state": {"get": {
                "summary": "the cluster's current signed ClusterState: the DSSE envelope and its decoded payload",
                "parameters": [cluster.clone()],
                "responses": ok("the state", json!({}))
            }},
            "/api/v1/clusters/{name}/tokens": {"post": {
                "summary": "make a single-use bootstrap token for the cluster's agent (created if new); the token is shown once",
                "parameters": [cluster.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
                "responses": ok("the token", json!({"201": {"description": "token made"}, "409": {"$ref": "#/components/responses/Error"}}))
            }},
            "/api/v1/clusters/{name}/approve": {"post": {
                "summary": "approve a cluster that registers with requireApproval",
                "parameters": [cluster.clone()],
                "responses": ok("approved", json!({}))
            }},
            "/api/v1/clusters/{name}/revoke": {"post": {
                "summary": "revoke a cluster: its agent is refused from its next request on",
                "parameters": [cluster.clone()],
                "responses": ok("revoked", json!({}))
            }},
            "/api/v1/clusters/{name}/labels": {"post": {
                "summary": "set and remove cluster labels",
                "parameters": [cluster.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LabelRequest"}}}},
                "responses": ok("the labels", json!({}))
            }},
            "/api/v1/clusters/{name}/bundle": {"get": {
                "summary": "the cluster's newest state and blobs as a bundle file (OCI image layout tar) for flotilla-agent apply --bundle",
                "parameters": [cluster.clone()],
                "responses": {"200": {"description": "the bundle", "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}, "404": {"$ref": "#/components/responses/Error"}}
            }},
            "/api/v1/clusters/{name}/status": {"get": {
                "summary": "what the cluster's agent reported: latest status per application and object, and the newest reports (newest first)",
                "parameters": [cluster.clone(), {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": ok("the status", json!({}))
            }},
            "/api/v1/agent-api": {"get": {"summary": "what an agent needs to reach this hub: the agent API URL, the hub CA and the keys to trust", "responses": ok("the agent API", json!({}))}},
            "/api/v1/test/serve-override": {"put": {
                "summary": "test hook: serve agents an older or another cluster's state; 404 unless the hub runs with --enable-test-hooks",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": ok("set", json!({}))
            }},
            "/api/v1/repositories": {
                "get": {"summary": "registered repositories (credentials are never shown, only whether there are some)", "responses": ok("repositories", json!({}))},
                "put": {
                    "summary": "register a repository, or replace its credentials and poll interval; fetched at once",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RepositoryRequest"}}}},
                    "responses": ok("the repository", json!({"201": {"description": "registered"}}))
                },
                "delete": {
                    "summary": "forget a repository and its credentials",
                    "parameters": [{"name": "url", "in": "query", "required": true, "schema": {"type": "string"}}],
                    "responses": ok("deleted", json!({}))
                }
            },
            "/api/v1/projects": {"get": {"summary": "declared AppProjects", "responses": ok("projects", json!({}))}},
            "/api/v1/config-repository": {"get": {"summary": "the configuration repository the hub watches: commit applied, warnings, error", "responses": ok("its status", json!({}))}},
            "/api/v1/events": {"get": {
                "summary": "server-sent events: `fleet` whenever clusters, applications or their status change (coalesced, at most one per 250 ms), a keep-alive comment every 15 s",
                "responses": {"200": {"description": "the event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Error"}}
            }},
            "/api/v1/refresh": {"post": {"summary": "fetch every repository and reconcile now", "responses": ok("queued", json!({}))}},
            "/api/v1/webhook/{provider}": {"post": {
                "summary": "push webhook of GitHub, GitLab or Gitea/Forgejo, verified with the webhook secret",
                "security": [],
                "parameters": [name_param("provider", "github, gitlab, gitea or forgejo")],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": ok("accepted", json!({"503": {"$ref": "#/components/responses/Error"}}))
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                }}},
                "PinRequest": {"type": "object", "additionalProperties": false, "required": ["revision"], "properties": {
                    "revision": {"type": "string"}, "cluster": {"type": "string"}
                }},
                "TokenRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ttl": {"type": "string", "description": "how long the token may be used, like 1h or 24h (default 24h, at most 30 days)"},
                    "requireApproval": {"type": "boolean", "description": "the agent gets a certificate only after POST .../approve"}
                }},
                "LabelRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "set": {"type": "object", "additionalProperties": {"type": "string"}},
                    "remove": {"type": "array", "items": {"type": "string"}}
                }},
                "RepositoryRequest": {"type": "object", "additionalProperties": false, "required": ["url"], "properties": {
                    "url": {"type": "string", "description": "https://…, ssh://… or git@host:path, or a local path"},
                    "pollInterval": {"type": "string", "description": "like 30s, 5m or 1h (at least 10s); the hub's default when absent"},
                    "credentials": {"oneOf": [
                        {"type": "object", "additionalProperties": false, "required": ["type", "token"], "properties": {"type": {"enum": ["token"]}, "token": {"type": "string"}}},
                        {"type": "object", "additionalProperties": false, "required": ["type", "username", "password"], "properties": {"type": {"enum": ["basic"]}, "username": {"type": "string"}, "password": {"type": "string"}}},
                        {"type": "object", "additionalProperties": false, "required": ["type", "privateKey", "knownHosts"], "properties": {"type": {"enum": ["ssh"]}, "privateKey": {"type": "string"}, "knownHosts": {"type": "string"}}}
                    ]}
                }},
                "ClusterRequest": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "server": {"type": "string"}
                }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = 0;
        for (path, methods) in paths {
            documented += methods.as_object().expect("methods").len();
            assert!(
                ROUTES.iter().any(|r| r.path == path),
                "{path} is not routed"
            );
        }
        for route in ROUTES {
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                doc["paths"][route.path][&method].is_object(),
                "{} {} is not documented",
                route.method,
                route.path
            );
        }
        assert_eq!(documented, ROUTES.len());
    }

    #[test]
    fn paths_match_templates() {
        let check = |template, path, expected: Option<Vec<&str>>| {
            assert_eq!(
                match_path(template, path),
                expected.map(|v| v.into_iter().map(str::to_owned).collect()),
                "{template} {path}"
            );
        };
        check("/api/v1/clusters", "/api/v1/clusters", Some(vec![]));
        check(
            "/api/v1/clusters/{name}/state",
            "/api/v1/clusters/east/state",
            Some(vec!["east"]),
        );
        check(
            "/api/v1/clusters/{name}/state",
            "/api/v1/clusters//state",
            None,
        );
        check("/api/v1/clusters", "/api/v1/clusters/x", None);
        check("/api/v1/applications/{name}", "/api/v1/applications", None);
    }
}
