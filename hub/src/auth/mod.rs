//! Who may do what. A [`Principal`] is whoever a request comes from — the local admin (the
//! token `init` printed), an API token, or a person signed in through single sign-on — with
//! [`Grant`]s: a [`Role`] on a project (or on every project). The permissions table
//! ([`PERMISSIONS`], the literal file `hub/permissions.md`) says for each route of the human
//! API and each role whether it is allowed, allowed only on the role's projects, answered
//! with what those projects cover, or refused. [`decide`] turns a principal and a route into
//! the [`Scope`] a handler must keep to. Pure.

pub mod oidc;
pub mod tokens;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use http::Method;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A role, as in Argo CD's projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: clusters, repositories, projects, tokens, every application.
    Admin,
    /// Sync, roll back, pin and edit the applications of a project; read them.
    Maintainer,
    /// Read the applications of a project.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Maintainer, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Maintainer => "maintainer",
            Role::Viewer => "viewer",
        }
    }

    fn column(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (known: admin, maintainer, viewer)"))
    }
}

/// Every project.
pub const ANY_PROJECT: &str = "*";

/// A role on one project, or on every project (`*`). The admin role is always on every project.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub role: Role,
    #[serde(default = "any_project")]
    pub project: String,
}

fn any_project() -> String {
    ANY_PROJECT.to_owned()
}

impl Grant {
    pub fn new(role: Role, project: &str) -> Self {
        let project = if role == Role::Admin {
            ANY_PROJECT
        } else {
            project
        };
        Grant {
            role,
            project: project.to_owned(),
        }
    }

    /// `ROLE` or `ROLE:PROJECT`, as flags and the CLI write grants.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (role, project) = text.split_once(':').unwrap_or((text, ANY_PROJECT));
        let role: Role = role.trim().parse()?;
        let project = project.trim();
        if project.is_empty() {
            return Err(format!("grant {text:?}: the project after ':' is empty"));
        }
        if role == Role::Admin && project != ANY_PROJECT {
            return Err(format!(
                "grant {text:?}: admin is a role on every project; write `admin`"
            ));
        }
        Ok(Grant::new(role, project))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.project == ANY_PROJECT {
            write!(f, "{}", self.role.as_str())
        } else {
            write!(f, "{}:{}", self.role.as_str(), self.project)
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The admin token `init` printed.
    LocalAdmin,
    /// An API token (its id).
    Token(String),
    /// Single sign-on.
    Sso,
    /// Nobody: the public routes.
    Anonymous,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::LocalAdmin => "local-admin",
            Kind::Token(_) => "token",
            Kind::Sso => "sso",
            Kind::Anonymous => "anonymous",
        }
    }
}

/// Whoever a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What the audit log names: `admin`, `token:<name>`, or the person's e-mail.
    pub name: String,
    pub kind: Kind,
    pub grants: Vec<Grant>,
    /// When its credential stops working.
    pub expires: Option<Timestamp>,
}

/// The name of the local admin.
pub const LOCAL_ADMIN: &str = "admin";

impl Principal {
    pub fn local_admin() -> Self {
        Principal {
            name: LOCAL_ADMIN.to_owned(),
            kind: Kind::LocalAdmin,
            grants: vec![Grant::new(Role::Admin, ANY_PROJECT)],
            expires: None,
        }
    }

    /// Whoever calls a public route: no grants.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            kind: Kind::Anonymous,
            grants: Vec::new(),
            expires: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::Admin)
    }

    /// The grants as `maintainer:shop,viewer`.
    pub fn grants_text(&self) -> String {
        self.grants
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One cell of the permissions table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to anyone, without a token (health, webhooks verified by their own secret).
    Public,
    /// Allowed.
    Yes,
    /// Allowed on objects of the role's projects; refused (403) on others.
    Project,
    /// Allowed; the answer holds only what the role's projects cover.
    Filtered,
    /// Refused (403).
    No,
}

impl Access {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "public" => Access::Public,
            "yes" => Access::Yes,
            "project" => Access::Project,
            "filtered" => Access::Filtered,
            "no" => Access::No,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Yes => "yes",
            Access::Project => "project",
            Access::Filtered => "filtered",
            Access::No => "no",
        }
    }
}

/// One row of the permissions table: a route and what each role may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: Method,
    pub path: String,
    /// By [`Role`]: admin, maintainer, viewer.
    pub access: [Access; 3],
}

impl Rule {
    pub fn access(&self, role: Role) -> Access {
        self.access[role.column()]
    }
}

/// The permissions table's source: a Markdown table, one row per route.
pub const PERMISSIONS_MD: &str = include_str!("../../permissions.md");

/// The permissions table, parsed once. A malformed table is a build defect: the unit test
/// below parses it, and the hub refuses to start on a table it cannot read.
pub static PERMISSIONS: LazyLock<Result<Vec<Rule>, String>> =
    LazyLock::new(|| parse_table(PERMISSIONS_MD));

/// The rows of a Markdown table `| METHOD | /path | admin | maintainer | viewer | notes |`.
pub fn parse_table(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules: Vec<Rule> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(method) = cells.first() else {
            continue;
        };
        if !["GET", "POST", "PUT", "DELETE"].contains(method) {
            continue; // the header and its separator
        }
        let at = |what: &str| format!("permissions table line {}: {what}", number + 1);
        if cells.len() < 5 {
            return Err(at("expected method, route, admin, maintainer, viewer"));
        }
        let path = cells[1].trim_matches('`');
        let mut access = [Access::No; 3];
        for (i, cell) in cells[2..5].iter().enumerate() {
            access[i] = Access::parse(cell).ok_or_else(|| {
                at(&format!(
                    "{cell:?} is not one of public, yes, project, filtered, no"
                ))
            })?;
        }
        let public = access.iter().filter(|a| **a == Access::Public).count();
        if public != 0 && public != 3 {
            return Err(at("a public route is public for every role"));
        }
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| at("bad method"))?;
        if rules.iter().any(|r| r.method == method && r.path == path) {
            return Err(at(&format!("{method} {path} appears twice")));
        }
        rules.push(Rule {
            method,
            path: path.to_owned(),
            access,
        });
    }
    Ok(rules)
}

/// The rule of `method path` (a route template), if the table has one.
pub fn rule<'a>(rules: &'a [Rule], method: &Method, path: &str) -> Option<&'a Rule> {
    rules.iter().find(|r| r.method == *method && r.path == path)
}

/// What a handler may touch for a principal on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything the route reaches.
    All,
    /// Only objects of these projects.
    Projects(BTreeSet<String>),
}

impl Scope {
    pub fn allows(&self, project: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Projects(projects) => projects.contains(project),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }
}

/// Why a principal may not use a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{who} ({grants}) may not {method} {path}")]
pub struct Denied {
    pub who: String,
    pub grants: String,
    pub method: Method,
    pub path: String,
}

/// What `principal` may do on the route `rule`: the union of what each grant allows.
pub fn decide(principal: &Principal, rule: &Rule) -> Result<Scope, Denied> {
    let mut projects = BTreeSet::new();
    for grant in &principal.grants {
        match rule.access(grant.role) {
            Access::Public | Access::Yes => return Ok(Scope::All),
            Access::Project | Access::Filtered if grant.project == ANY_PROJECT => {
                return Ok(Scope::All);
            }
            Access::Project | Access::Filtered => {
                projects.insert(grant.project.clone());
            }
            Access::No => {}
        }
    }
    if projects.is_empty() {
        return Err(Denied {
            who: principal.name.clone(),
            grants: principal.grants_text(),
            method: rule.method.clone(),
            path: rule.path.clone(),
        });
    }
    Ok(Scope::Projects(projects))
}

/// What `principal` may reach on the route `method path` (a route template) by the
/// permissions table, or why nothing: a route the table lacks is refused to everyone.
pub fn scope(principal: &Principal, method: &Method, path: &str) -> Result<Scope, String> {
    let rules = PERMISSIONS
        .as_ref()
        .map_err(|e| format!("the permissions table is unreadable: {e}"))?;
    let rule = rule(rules, method, path)
        .ok_or_else(|| format!("{method} {path} is not in the permissions table"))?;
    decide(principal, rule).map_err(|denied| denied.to_string())
}

/// Whether `principal` may use the route on `project` (for the dashboard's buttons).
pub fn may(principal: &Principal, method: &Method, path: &str, project: &str) -> bool {
    scope(principal, method, path).is_ok_and(|scope| scope.allows(project))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            kind: Kind::Sso,
            grants: grants
                .iter()
                .map(|g| Grant::parse(g).expect("grant"))
                .collect(),
            expires: None,
        }
    }

    #[test]
    fn the_table_in_the_repository_parses() {
        let rules = PERMISSIONS.as_ref().expect("permissions.md parses");
        assert!(rules.len() > 40, "{} rules", rules.len());
        let sync = rule(rules, &Method::POST, "/api/v1/applications/{name}/sync")
            .expect("sync is in the table");
        assert_eq!(sync.access(Role::Viewer), Access::No);
        assert_eq!(sync.access(Role::Maintainer), Access::Project);
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let bad = "| GET | /a | yes | maybe | no |";
        assert!(parse_table(bad).expect_err("bad").contains("\"maybe\""));
        let twice = "| GET | /a | yes | yes | no |\n| GET | /a | yes | no | no |";
        assert!(parse_table(twice).expect_err("twice").contains("line 2"));
        let half = "| GET | /a | public | yes | no |";
        assert!(parse_table(half).expect_err("half").contains("public"));
    }

    #[test]
    fn grants_parse_and_print() {
        assert_eq!(
            Grant::parse("maintainer:shop").expect("ok"),
            Grant::new(Role::Maintainer, "shop")
        );
        assert_eq!(Grant::parse("viewer").expect("ok").project, "*");
        assert!(Grant::parse("admin:shop").is_err());
        assert!(
            Grant::parse("owner")
                .expect_err("role")
                .contains("unknown role")
        );
        assert!(Grant::parse("viewer:").is_err());
        assert_eq!(
            principal(&["maintainer:a", "viewer"]).grants_text(),
            "maintainer:a,viewer"
        );
    }

    #[test]
    fn scopes_are_the_union_of_grants() {
        let rule = Rule {
            method: Method::POST,
            path: "/x".into(),
            access: [Access::Yes, Access::Project, Access::No],
        };
        assert_eq!(decide(&Principal::local_admin(), &rule), Ok(Scope::All));
        let a = principal(&["maintainer:a", "maintainer:b", "viewer"]);
        assert_eq!(
            decide(&a, &rule),
            Ok(Scope::Projects(["a".to_owned(), "b".to_owned()].into()))
        );
        assert_eq!(decide(&principal(&["maintainer"]), &rule), Ok(Scope::All));
        let denied = decide(&principal(&["viewer:a"]), &rule).expect_err("viewer");
        assert_eq!(denied.to_string(), "p (viewer:a) may not POST /x");
        assert!(!Scope::Projects(["a".to_owned()].into()).allows("b"));
    }
}
