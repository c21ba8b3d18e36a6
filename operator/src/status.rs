//! The one place that writes a status. Each controller computes its status purely from what its
//! round observed and decides, with [`crate::conditions::same`], whether anything changed; only
//! then does it come here. Writes are Server-Side Apply of the whole status under our field
//! manager, or (where a controller must not roll back fields it cannot see fresh) a merge of
//! named fields; each is counted as a write of `<Kind>Status` for its controller.

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{labels::FIELD_MANAGER, metrics::Metrics};

/// How much of the status a write replaces.
pub enum Body<'a, S: Serialize> {
    /// The whole status, owned by our field manager.
    Whole(&'a S),
    /// Only these fields, merged into what is there.
    Fields(serde_json::Value),
}

/// Writes `body` as the status of `name` through `api`.
pub async fn write<K, S>(
    metrics: &Metrics,
    controller: &str,
    api: &Api<K>,
    name: &str,
    body: Body<'_, S>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let (kind, api_version) = (K::kind(&()), K::api_version(&()));
    match body {
        Body::Whole(status) => {
            let patch = serde_json::json!({"apiVersion": api_version, "kind": kind, "status": status});
            api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
        }
        Body::Fields(fields) => {
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            api.patch_status(name, &params, &Patch::Merge(&serde_json::json!({ "status": fields }))).await?;
        }
    }
    metrics.child_writes.with_label_values(&[controller, &format!("{kind}Status")]).inc();
    Ok(())
}
