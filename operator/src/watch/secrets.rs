//! Secret contents, read once per change: the watch holds every Secret's metadata (no key
//! material crosses it), and a Secret's data is fetched only when the watch shows a version
//! not read before. A settled cluster makes no GET; a Secret the watch does not show yet is
//! looked up for real, so a round never decides "absent" on a cache that lags its own write.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

/// The Secrets the certificate and issuer controllers read, by namespace and name.
pub struct Secrets {
    meta: Store<PartialObjectMeta<Secret>>,
    data: std::sync::Mutex<HashMap<(String, String), Arc<Secret>>>,
}

impl Secrets {
    pub fn new(meta: Store<PartialObjectMeta<Secret>>) -> Self {
        Secrets { meta, data: Default::default() }
    }

    /// The Secret as it is now.
    pub async fn get(&self, client: &Client, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        let seen = self.meta.get(&ObjectRef::new(name).within(namespace));
        if let Some(seen) = &seen {
            let held = self.data.lock().ok().and_then(|d| d.get(&key).cloned());
            if let Some(held) = held
                && held.resource_version().is_some()
                && held.resource_version() == seen.resource_version()
            {
                return Ok(Some(held));
            }
        }
        let fresh = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await?.map(Arc::new);
        self.remember(namespace, name, fresh.clone());
        Ok(fresh)
    }

    /// Drops what is held of a Secret the watch no longer shows (called on its watch events), so
    /// key material of deleted Secrets does not stay in memory.
    pub fn forget_if_gone(&self, namespace: &str, name: &str) {
        if self.meta.get(&ObjectRef::new(name).within(namespace)).is_none()
            && let Ok(mut d) = self.data.lock()
        {
            d.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    /// Keeps what a write returned, so the next round needs no GET for it.
    pub fn remember(&self, namespace: &str, name: &str, secret: Option<Arc<Secret>>) {
        if let Ok(mut d) = self.data.lock() {
            let key = (namespace.to_string(), name.to_string());
            match secret {
                Some(s) => d.insert(key, s),
                None => d.remove(&key),
            };
        }
    }
}
