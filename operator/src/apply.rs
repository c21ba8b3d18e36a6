//! The one place that writes desired objects: Server-Side Apply under one field manager.
//!
//! Builders produce whole objects; applying them with `force` makes the operator the owner of
//! exactly the fields it sets, so an admin's hand edit of those fields is reverted on the next
//! round while fields we never set are left alone.

use std::fmt::Debug;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
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

/// A JSON merge patch, for the label transitions SSA cannot express (removing a label that
/// another manager entry of ours also owns).
pub async fn merge_labels<K>(api: &Api<K>, name: &str, labels: serde_json::Value) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = serde_json::json!({ "metadata": { "labels": labels } });
    api.patch(
        name,
        &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}
