//! The one place that writes desired objects: Server-Side Apply under one field manager.
//!
//! Builders produce whole objects; applying them with `force` makes the operator the owner of
//! exactly the fields it sets, so an admin's hand edit of those fields is reverted on the next
//! round while fields we never set are left alone.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    core::PartialObjectMeta,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::labels::FIELD_MANAGER;

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies a namespaced object where its metadata says.
pub async fn namespaced<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let ns = obj.namespace().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), &ns).patch(&obj.name_any(), &params(), &Patch::Apply(obj)).await
}

/// Applies `desired` through `api` unless what is stored already says all of it ([`covers`]);
/// whether it wrote. For objects kept in place by a periodic check (the webhook registrations,
/// the isolation canary): a settled cluster then only reads.
pub async fn unless_covered<K>(api: &Api<K>, desired: &K) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let actual = api.get_opt(&desired.name_any()).await?;
    let in_place = actual.is_some_and(|a| match (serde_json::to_value(&a), serde_json::to_value(desired)) {
        (Ok(a), Ok(d)) => covers(&a, &d),
        _ => false,
    });
    if !in_place {
        api.patch(&desired.name_any(), &params(), &Patch::Apply(desired)).await?;
    }
    Ok(!in_place)
}

/// Applies a cluster-scoped object.
pub async fn cluster<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    Api::<K>::all(client.clone()).patch(&obj.name_any(), &params(), &Patch::Apply(obj)).await
}

/// Whether a write failed only because its namespace is being deleted: nothing to keep there.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// Deletes a namespaced object; one that is already gone is not an error.
pub async fn delete_namespaced<K>(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match Api::<K>::namespaced(client.clone(), namespace).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A JSON merge patch under our field manager, for what a desired object cannot say without
/// owning the whole object: labels, taints and annotations on objects others own (a node, a
/// gateway's pods), finalizers, and the label transitions SSA cannot express (removing a label
/// that another manager entry of ours also owns). A `resourceVersion` in the patch makes it
/// conditional.
pub async fn merge<K>(api: &Api<K>, name: &str, patch: &serde_json::Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch(
        name,
        &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
        &Patch::Merge(patch),
    )
    .await
}

/// [`merge`] of labels only.
pub async fn merge_labels<K>(api: &Api<K>, name: &str, labels: serde_json::Value) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    merge(api, name, &serde_json::json!({ "metadata": { "labels": labels } })).await.map(|_| ())
}

/// Whether `actual` already says everything `desired` says: every field of `desired` is in
/// `actual` with the same value (quantities compared by value, as the API server may rewrite
/// `1024Mi` as `1Gi`); fields only in `actual` (server defaults, other managers') are ignored.
/// An empty list, map or null in `desired` matches a missing field.
pub fn covers(actual: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match (actual, desired) {
        (Value::Object(a), Value::Object(d)) => d.iter().all(|(k, dv)| match a.get(k) {
            Some(av) => covers(av, dv),
            None => empty(dv),
        }),
        (Value::Array(a), Value::Array(d)) => a.len() == d.len() && a.iter().zip(d).all(|(x, y)| covers(x, y)),
        (Value::String(a), Value::String(d)) => {
            a == d || matches!((crate::quantity::parse(a), crate::quantity::parse(d)), (Ok(x), Ok(y)) if x == y)
        }
        (Value::Number(a), Value::Number(d)) => a.as_f64() == d.as_f64(),
        (a, d) => a == d || (a.is_null() && empty(d)),
    }
}

/// What the cache shows of an object a round may write.
pub enum Seen<'a, K> {
    /// The whole object: in place when it still says everything we applied ([`covers`]).
    Whole(Option<&'a K>),
    /// Only its metadata (the store keeps no more): in place when its `resourceVersion` is the
    /// one our last write left. Any later change by anyone moves the version, so the next
    /// round applies again; when that apply changes nothing the API server keeps the version,
    /// and the round after it is quiet.
    Version(Option<&'a ObjectMeta>),
}

impl<'a, K> Seen<'a, K> {
    /// What a metadata-only store holds of the object.
    pub fn meta(cached: Option<&'a PartialObjectMeta<K>>) -> Self {
        Seen::Version(cached.map(|m| &m.metadata))
    }
}

/// A digest of an object as it serialises: two equal fingerprints mean the same object (to
/// within 2^-64), so what was written can be remembered without keeping it.
pub fn fingerprint<K: Serialize>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// What the operator last applied to one object, and the version that write left.
struct Applied {
    fingerprint: u64,
    version: Option<String>,
    /// When, for objects no store watches.
    at: Option<std::time::Instant>,
}

/// What the operator last applied, by object, so a round writes only what changed. A write is
/// skipped when the desired object is the one last applied *and* the cache shows it still in
/// place ([`Seen`]); after a restart (nothing remembered) each object is applied once.
#[derive(Default)]
pub struct Memory(std::sync::Mutex<std::collections::HashMap<String, Applied>>);

impl Memory {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!("{}/{}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// Whether `desired` needs no write given what the cache shows.
    pub fn unchanged<K: Resource<DynamicType = ()> + Serialize>(&self, desired: &K, seen: Seen<'_, K>) -> bool {
        let Ok(m) = self.0.lock() else { return false };
        let Some(last) = m.get(&Self::key(desired)) else { return false };
        if last.fingerprint != fingerprint(desired) {
            return false;
        }
        match seen {
            Seen::Whole(None) | Seen::Version(None) => false,
            Seen::Whole(Some(actual)) => match (serde_json::to_value(actual), serde_json::to_value(desired)) {
                (Ok(a), Ok(d)) => covers(&a, &d),
                _ => false,
            },
            Seen::Version(Some(meta)) => last.version.is_some() && meta.resource_version == last.version,
        }
    }

    /// Notes that `desired` was applied and the API server stored it as `written`.
    pub fn remember<K: Resource<DynamicType = ()> + Serialize>(&self, desired: &K, written: &K) {
        if let Ok(mut m) = self.0.lock() {
            let applied = Applied {
                fingerprint: fingerprint(desired),
                version: written.meta().resource_version.clone(),
                at: None,
            };
            m.insert(Self::key(desired), applied);
        }
    }

    /// Whether `key` was last applied as `fingerprint` less than `within` ago (an object no
    /// store watches: only time tells when to look again).
    pub fn recent(&self, key: &str, fingerprint: u64, within: std::time::Duration) -> bool {
        let Ok(m) = self.0.lock() else { return false };
        m.get(key).is_some_and(|a| a.fingerprint == fingerprint && a.at.is_some_and(|at| at.elapsed() < within))
    }

    /// Notes that `key` was applied as `fingerprint` at `at`.
    pub fn note_recent(&self, key: &str, fingerprint: u64, at: std::time::Instant) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), Applied { fingerprint, version: None, at: Some(at) });
        }
    }

    /// Forgets a namespace and everything applied in it (let go with its tenant), so what a
    /// process remembers stays the size of what it manages.
    pub fn forget_namespace(&self, namespace: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|key, _| {
                let mut parts = key.splitn(3, '/');
                let (kind, ns, name) = (parts.next(), parts.next(), parts.next());
                ns != Some(namespace) && !(kind == Some("Namespace") && name == Some(namespace))
            });
        }
    }
}

/// Writes `desired` with `write` unless `memory` and the cache show it in place already.
/// Returns the object as written, when it wrote.
async fn ensure<K, W>(
    memory: &Memory,
    desired: &K,
    seen: Seen<'_, K>,
    write: impl FnOnce() -> W,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
    W: std::future::Future<Output = Result<K, kube::Error>>,
{
    if memory.unchanged(desired, seen) {
        return Ok(None);
    }
    let written = write().await?;
    memory.remember(desired, &written);
    Ok(Some(written))
}

/// [`ensure_namespaced`], returning the object as the API server stored it when it wrote.
pub async fn ensure_namespaced_written<K>(
    client: &Client,
    memory: &Memory,
    desired: &K,
    seen: Seen<'_, K>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    ensure(memory, desired, seen, || namespaced(client, desired)).await
}

/// Applies a namespaced object unless it is in place already ([`Memory`]); whether it wrote.
pub async fn ensure_namespaced<K>(
    client: &Client,
    memory: &Memory,
    desired: &K,
    seen: Seen<'_, K>,
) -> Result<bool, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    ensure(memory, desired, seen, || namespaced(client, desired)).await.map(|w| w.is_some())
}

/// [`ensure_namespaced`] for a cluster-scoped object.
pub async fn ensure_cluster<K>(
    client: &Client,
    memory: &Memory,
    desired: &K,
    seen: Seen<'_, K>,
) -> Result<bool, kube::Error>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    ensure(memory, desired, seen, || cluster(client, desired)).await.map(|w| w.is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_cached_object_covers_what_we_set_and_ignores_what_others_add() {
        let desired = json!({"metadata": {"name": "q", "labels": {"a": "1"}}, "spec": {"hard": {"memory": "1024Mi", "pods": "10"}}});
        let actual = json!({"metadata": {"name": "q", "uid": "x", "labels": {"a": "1", "b": "2"}}, "spec": {"hard": {"memory": "1Gi", "pods": "10"}}, "status": {}});
        assert!(covers(&actual, &desired));
        let drifted =
            json!({"metadata": {"name": "q", "labels": {"b": "2"}}, "spec": {"hard": {"memory": "1Gi", "pods": "10"}}});
        assert!(!covers(&drifted, &desired), "a label of ours removed");
        let changed =
            json!({"metadata": {"name": "q", "labels": {"a": "1"}}, "spec": {"hard": {"memory": "2Gi", "pods": "10"}}});
        assert!(!covers(&changed, &desired));
        // Lists compare whole: a rule removed or added is a change.
        assert!(!covers(&json!({"rules": [1, 2]}), &json!({"rules": [1]})));
        assert!(covers(&json!({"x": 1}), &json!({"x": 1, "empty": [], "none": null})));
        // A server default inside a list item is fine.
        assert!(covers(
            &json!({"ports": [{"port": 53, "protocol": "UDP", "endPort": null}]}),
            &json!({"ports": [{"port": 53, "protocol": "UDP"}]})
        ));
    }

    #[test]
    fn a_write_is_skipped_only_when_remembered_and_still_in_place() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let cm = |v: &str| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "n"}, "data": {"k": v}}))
                .unwrap_or_default()
        };
        let memory = Memory::default();
        assert!(!memory.unchanged(&cm("1"), Seen::Whole(Some(&cm("1")))), "nothing remembered: apply once");
        memory.remember(&cm("1"), &cm("1"));
        assert!(memory.unchanged(&cm("1"), Seen::Whole(Some(&cm("1")))));
        assert!(!memory.unchanged(&cm("1"), Seen::Whole(Some(&cm("0")))), "drifted in the cluster");
        assert!(!memory.unchanged(&cm("1"), Seen::Whole(None)), "deleted in the cluster");
        assert!(!memory.unchanged(&cm("2"), Seen::Whole(Some(&cm("1")))), "our desire changed");
        memory.forget_namespace("n");
        assert!(!memory.unchanged(&cm("1"), Seen::Whole(Some(&cm("1")))));
    }

    #[test]
    fn a_metadata_only_object_is_in_place_at_the_version_our_write_left() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let at = |v: &str, rv: &str| -> ConfigMap {
            serde_json::from_value(
                json!({"metadata": {"name": "c", "namespace": "n", "resourceVersion": rv}, "data": {"k": v}}),
            )
            .unwrap_or_default()
        };
        let meta = |rv: &str| ObjectMeta { resource_version: Some(rv.into()), ..Default::default() };
        let memory = Memory::default();
        assert!(!memory.unchanged(&at("1", ""), Seen::Version(Some(&meta("5")))), "nothing remembered");
        memory.remember(&at("1", ""), &at("1", "7"));
        assert!(memory.unchanged(&at("1", ""), Seen::Version(Some(&meta("7")))));
        assert!(!memory.unchanged(&at("1", ""), Seen::Version(Some(&meta("6")))), "the cache is behind our write");
        assert!(!memory.unchanged(&at("1", ""), Seen::Version(Some(&meta("8")))), "changed by someone since");
        assert!(!memory.unchanged(&at("1", ""), Seen::Version(None)), "deleted");
        assert!(!memory.unchanged(&at("2", ""), Seen::Version(Some(&meta("7")))), "our desire changed");
        // A write that stored no version (never from a real API server) is never trusted.
        memory.remember(&at("1", ""), &ConfigMap::default());
        assert!(!memory.unchanged(&at("1", ""), Seen::Version(Some(&ObjectMeta::default()))));
    }
}
