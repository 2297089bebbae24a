//! Resolving kinds through the apiserver's discovery: which resource serves a
//! `group/version Kind` and whether it is namespaced. Talks to the apiserver.
//!
//! Discovery is loaded once per sync (aggregated discovery: two requests) and refreshed
//! after CustomResourceDefinitions are applied, so custom objects of a CRD in the same
//! state resolve in the same sync.

use std::collections::BTreeMap;

use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};

use crate::object::ObjectRef;

#[derive(Debug, thiserror::Error)]
#[error("discover the apiserver's resources")]
pub struct DiscoveryError(#[source] kube::Error);

/// A served resource.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// The kinds the apiserver serves, plus the scopes declared by CRDs not yet served.
pub struct Kinds {
    discovery: Discovery,
    /// `(group, kind)` → namespaced, from CRDs in the state being applied; lets namespaces
    /// be defaulted before the CRD is established.
    declared: BTreeMap<(String, String), bool>,
}

impl Kinds {
    pub async fn load(client: &kube::Client) -> Result<Self, DiscoveryError> {
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(DiscoveryError)?;
        Ok(Self {
            discovery,
            declared: BTreeMap::new(),
        })
    }

    /// Reloads discovery, keeping what CRDs declared.
    pub async fn refresh(&mut self, client: &kube::Client) -> Result<(), DiscoveryError> {
        let declared = std::mem::take(&mut self.declared);
        *self = Self::load(client).await?;
        self.declared = declared;
        Ok(())
    }

    /// Every group version the apiserver serves (`v1`, `apps/v1`, …), sorted: what Helm's
    /// `--api-versions` wants to know of a cluster.
    pub fn api_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .discovery
            .groups()
            .flat_map(|group| {
                group.versions().map(move |version| {
                    if group.name().is_empty() {
                        version.to_owned()
                    } else {
                        format!("{}/{version}", group.name())
                    }
                })
            })
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }

    /// Remembers the scope a CRD object declares for its kind.
    pub fn declare_crd(&mut self, crd: &serde_json::Value) {
        let group = crd.pointer("/spec/group").and_then(|v| v.as_str());
        let kind = crd.pointer("/spec/names/kind").and_then(|v| v.as_str());
        let scope = crd.pointer("/spec/scope").and_then(|v| v.as_str());
        if let (Some(group), Some(kind), Some(scope)) = (group, kind, scope) {
            self.declared
                .insert((group.to_owned(), kind.to_owned()), scope == "Namespaced");
        }
    }

    /// The served resource for an object's group, version and kind.
    pub fn resolve(&self, object: &ObjectRef) -> Option<Resolved> {
        let gvk = GroupVersionKind::gvk(&object.group, &object.version, &object.kind);
        self.discovery
            .resolve_gvk(&gvk)
            .map(|(resource, caps)| Resolved {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            })
    }

    /// Whether a kind is namespaced: from discovery, else from a CRD in the state; `None`
    /// when neither knows the kind.
    pub fn namespaced(&self, object: &ObjectRef) -> Option<bool> {
        if let Some(resolved) = self.resolve(object) {
            return Some(resolved.namespaced);
        }
        self.declared
            .get(&(object.group.clone(), object.kind.clone()))
            .copied()
    }
}
