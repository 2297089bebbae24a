//! What the agent keeps in its own cluster so that a restart loses nothing: the last
//! accepted generation (anti-rollback), each app's inventory and the sequence number of its
//! status reports, as ConfigMaps in the agent's namespace. Talks to the apiserver.
//!
//! Invariant: a write happens only when the stored value changes, so an unchanged sync
//! costs no write here either (except the generation of a newer state, which must be
//! recorded before anything is applied).

use std::collections::BTreeMap;

use flotilla_shared::{Digest, LastAccepted};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use crate::inventory::Inventory;

/// The field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "flotilla";
const STATE_CONFIGMAP: &str = "flotilla-agent-state";
/// Its own ConfigMap: the state ConfigMap is written whole by server-side apply, which would
/// drop a key it does not name.
const STATUS_CONFIGMAP: &str = "flotilla-agent-status";
const INVENTORY_PREFIX: &str = "flotilla-inventory-";
const INVENTORY_LABEL: &str = "flotilla.dev/inventory-of";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read {what} from namespace {namespace}")]
    Read {
        what: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("write {what} to namespace {namespace}")]
    Write {
        what: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
}

/// The agent's persistent state in its namespace.
#[derive(Debug, Clone)]
pub struct Store {
    api: Api<ConfigMap>,
    namespace: String,
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    fn read_error(&self, what: &str, source: kube::Error) -> StoreError {
        StoreError::Read {
            what: what.to_owned(),
            namespace: self.namespace.clone(),
            source,
        }
    }

    fn write_error(&self, what: &str, source: kube::Error) -> StoreError {
        StoreError::Write {
            what: what.to_owned(),
            namespace: self.namespace.clone(),
            source,
        }
    }

    async fn get(&self, name: &str) -> Result<Option<ConfigMap>, StoreError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| self.read_error(name, e))
    }

    async fn put(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        data: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut map = ConfigMap::default();
        map.metadata.name = Some(name.to_owned());
        map.metadata.labels = Some(labels);
        map.data = Some(data);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(name, &params, &Patch::Apply(&map_with_type(map)))
            .await
            .map_err(|e| self.write_error(name, e))?;
        Ok(())
    }

    /// The last accepted state, if any.
    pub async fn last_accepted(&self) -> Result<Option<LastAccepted>, StoreError> {
        let Some(map) = self.get(STATE_CONFIGMAP).await? else {
            return Ok(None);
        };
        let data = map.data.unwrap_or_default();
        let corrupt = |reason: &str| StoreError::Corrupt {
            what: format!("ConfigMap {}/{STATE_CONFIGMAP}", self.namespace),
            reason: reason.to_owned(),
        };
        let generation = data
            .get("generation")
            .ok_or_else(|| corrupt("no generation"))?
            .parse::<u64>()
            .map_err(|_| corrupt("generation is not a number"))?;
        let payload_digest = match data.get("payloadDigest") {
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|_| corrupt("payloadDigest is not a digest"))?,
            ),
            None => None,
        };
        Ok(Some(LastAccepted {
            generation,
            payload_digest,
        }))
    }

    /// Records a newly accepted state; no write when it is the one already recorded.
    pub async fn save_accepted(
        &self,
        accepted: &LastAccepted,
        previous: Option<&LastAccepted>,
    ) -> Result<(), StoreError> {
        if previous == Some(accepted) {
            return Ok(());
        }
        let mut data = BTreeMap::from([("generation".to_owned(), accepted.generation.to_string())]);
        if let Some(digest) = &accepted.payload_digest {
            data.insert("payloadDigest".to_owned(), digest.to_string());
        }
        let labels = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "flotilla".to_owned(),
        )]);
        self.put(STATE_CONFIGMAP, labels, data).await
    }

    /// The highest status report sequence number handed out so far (0: none yet).
    pub async fn status_seq(&self) -> Result<u64, StoreError> {
        let Some(map) = self.get(STATUS_CONFIGMAP).await? else {
            return Ok(0);
        };
        let data = map.data.unwrap_or_default();
        match data.get("seq") {
            None => Ok(0),
            Some(seq) => seq.parse().map_err(|_| StoreError::Corrupt {
                what: format!("ConfigMap {}/{STATUS_CONFIGMAP}", self.namespace),
                reason: "seq is not a number".to_owned(),
            }),
        }
    }

    /// Records the highest status report sequence number handed out.
    pub async fn save_status_seq(&self, seq: u64) -> Result<(), StoreError> {
        let labels = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "flotilla".to_owned(),
        )]);
        let data = BTreeMap::from([("seq".to_owned(), seq.to_string())]);
        self.put(STATUS_CONFIGMAP, labels, data).await
    }

    /// The inventory of `app`, if the agent ever applied it.
    pub async fn inventory(&self, app: &str) -> Result<Option<Inventory>, StoreError> {
        let name = inventory_name(app);
        let Some(map) = self.get(&name).await? else {
            return Ok(None);
        };
        let json = map
            .data
            .unwrap_or_default()
            .remove("inventory")
            .unwrap_or_default();
        Inventory::from_json(json.as_bytes())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: format!("ConfigMap {}/{name}", self.namespace),
                reason: e.to_string(),
            })
    }

    /// Stores an inventory; no write when it equals `previous`.
    pub async fn save_inventory(
        &self,
        inventory: &Inventory,
        previous: Option<&Inventory>,
    ) -> Result<(), StoreError> {
        if previous == Some(inventory) {
            return Ok(());
        }
        let labels = BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "flotilla".to_owned(),
            ),
            (INVENTORY_LABEL.to_owned(), inventory.app.clone()),
        ]);
        let data = BTreeMap::from([("inventory".to_owned(), inventory.to_json())]);
        self.put(&inventory_name(&inventory.app), labels, data)
            .await
    }

    pub async fn delete_inventory(&self, app: &str) -> Result<(), StoreError> {
        let name = inventory_name(app);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(self.write_error(&name, e)),
        }
    }

    /// The apps that have an inventory here.
    pub async fn apps(&self) -> Result<Vec<String>, StoreError> {
        let list = self
            .api
            .list(&ListParams::default().labels(INVENTORY_LABEL))
            .await
            .map_err(|e| self.read_error("inventories", e))?;
        let mut apps: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|m| {
                m.metadata
                    .labels
                    .and_then(|mut l| l.remove(INVENTORY_LABEL))
            })
            .collect();
        apps.sort();
        Ok(apps)
    }
}

fn inventory_name(app: &str) -> String {
    format!("{INVENTORY_PREFIX}{app}")
}

/// Server-side apply needs apiVersion and kind in the body.
fn map_with_type(map: ConfigMap) -> serde_json::Value {
    let mut value = serde_json::to_value(map).expect("a ConfigMap serializes");
    value["apiVersion"] = "v1".into();
    value["kind"] = "ConfigMap".into();
    value
}
