//! The one place that writes a status. Each controller computes its status once, purely from
//! what its round observed, and hands it to its [`Writer`], which decides whether anything
//! changed: not when the cache shows it already (condition times aside), and not when it is what
//! this process wrote last while the cache still shows the version that write replaced (a round
//! on a cache one write behind). Writes are Server-Side Apply of the whole status under our
//! field manager, or (where a controller must not roll back fields it cannot see fresh) a merge
//! of named fields; each is counted as a write of `<Kind>Status` for its controller.

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Resource, ResourceExt,
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

/// A status with conditions, whose times [`Writer`] sets aside when it compares.
pub trait Conditioned: Serialize + Clone + PartialEq {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

macro_rules! conditioned {
    ($($t:ty),*) => {$(
        impl Conditioned for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
        }
    )*};
}

conditioned!(
    crate::api::ExchangeChannelStatus,
    crate::api::SecureGatewayStatus,
    crate::api::department::DepartmentStatus,
    crate::api::ZoneStatus,
    crate::api::SmIssuerStatus,
    crate::api::SmCertificateStatus,
    crate::api::ComputerRoomStatus
);

/// Whether `shown` says what `status` says, the conditions' times aside.
pub fn same<S: Conditioned>(shown: &S, status: &S) -> bool {
    let mut times_aside = shown.clone();
    *times_aside.conditions_mut() = status.conditions().to_vec();
    times_aside == *status && crate::conditions::same(shown.conditions(), status.conditions())
}

/// A fingerprint of `status` with its conditions' times set aside: a round a second later on a
/// cache that has not caught up computes new times for conditions it has not seen turn yet.
fn fingerprint<S: Conditioned>(status: &S) -> u64 {
    let mut times_aside = status.clone();
    for c in times_aside.conditions_mut() {
        c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH);
    }
    crate::apply::fingerprint(&times_aside)
}

/// At most one status write per object per interval for changes that may wait (sums and lists
/// that move with every child during a bulk create), while anything else is written at once.
pub struct Pace {
    interval: std::time::Duration,
    last: Mutex<HashMap<String, std::time::Instant>>,
}

impl Pace {
    pub fn new(interval: std::time::Duration) -> Self {
        Pace { interval, last: Mutex::new(HashMap::new()) }
    }

    /// How long a change to `name` that may wait should wait: `None` when it may be written now.
    pub fn wait(&self, name: &str) -> Option<std::time::Duration> {
        let since = self.last.lock().ok()?.get(name)?.elapsed();
        (since < self.interval).then(|| self.interval - since)
    }

    /// Notes that `name`'s status was written now.
    pub fn wrote(&self, name: &str) {
        if let Ok(mut l) = self.last.lock() {
            l.insert(name.to_string(), std::time::Instant::now());
        }
    }
}

/// A controller's status writer: what it last wrote per object (a fingerprint, and the
/// object's version that write replaced).
pub struct Writer {
    controller: String,
    last: Mutex<HashMap<String, (u64, Option<String>)>>,
}

impl Writer {
    pub fn new(controller: &str) -> Self {
        Writer { controller: controller.into(), last: Mutex::new(HashMap::new()) }
    }

    fn key<K: Resource>(obj: &K) -> String {
        format!(
            "{}/{}",
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default()
        )
    }

    /// Writes `status` as the whole status of `obj` (as the cache shows it, with `shown` its
    /// status there) unless nothing changed; whether it wrote.
    pub async fn whole<K, S>(
        &self,
        metrics: &Metrics,
        api: &Api<K>,
        obj: &K,
        shown: Option<&S>,
        status: &S,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Conditioned,
    {
        if shown.is_some_and(|s| same(s, status)) {
            return Ok(false);
        }
        self.once(metrics, api, obj, fingerprint(status), Body::Whole(status)).await
    }

    /// Writes `body` unless this process wrote the same (`fingerprint`) over the version of
    /// `obj` the cache still shows; whether it wrote.
    async fn once<K, S>(
        &self,
        metrics: &Metrics,
        api: &Api<K>,
        obj: &K,
        fingerprint: u64,
        body: Body<'_, S>,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        let key = Self::key(obj);
        let version = obj.resource_version();
        if self.last.lock().ok().and_then(|l| l.get(&key).cloned()) == Some((fingerprint, version.clone())) {
            return Ok(false);
        }
        write(metrics, &self.controller, api, &obj.name_any(), body).await?;
        if let Ok(mut l) = self.last.lock() {
            l.insert(key, (fingerprint, version));
        }
        Ok(true)
    }

    /// Merges `fields` into the status of `obj` (for a controller that must not write back
    /// fields it cannot see fresh) unless `shown` (the cache says so already) or this process
    /// wrote the same fields, condition times aside, over the version the cache still shows;
    /// whether it wrote.
    pub async fn fields<K>(
        &self,
        metrics: &Metrics,
        api: &Api<K>,
        obj: &K,
        shown: bool,
        fields: serde_json::Value,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        if shown {
            return Ok(false);
        }
        let mut times_aside = fields.clone();
        if let Some(cs) = times_aside.get_mut("conditions").and_then(serde_json::Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(serde_json::Value::as_object_mut) {
                c.remove("lastTransitionTime");
            }
        }
        let fingerprint = crate::apply::fingerprint(&times_aside);
        self.once::<K, ()>(metrics, api, obj, fingerprint, Body::Fields(fields)).await
    }

    /// Forgets a deleted object.
    pub fn forget(&self, namespace: Option<&str>, name: &str) {
        if let Ok(mut l) = self.last.lock() {
            l.remove(&format!("{}/{name}", namespace.unwrap_or_default()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Zone, ZoneStatus};
    use crate::fake_api;

    fn zone(version: &str, status: Option<ZoneStatus>) -> Zone {
        let mut z: Zone = serde_json::from_value(serde_json::json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
            "metadata": {"name": "z", "resourceVersion": version},
            "spec": {"kind": "Extranet", "nodeSelector": {"a": "b"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        z.status = status;
        z
    }

    fn status(nodes: &[&str], at: i64) -> ZoneStatus {
        let t = jiff::Timestamp::from_second(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        ZoneStatus {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            conditions: crate::conditions::merge(
                &[],
                &[crate::conditions::Observed::new("Ready", true, "Ok", "")],
                Some(1),
                t,
            ),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn writes_a_change_once_even_on_a_cache_one_write_behind_and_repairs_anothers_write() {
        let (client, recorded) = fake_api::serve(|r| {
            let mut z = serde_json::to_value(zone("2", None)).unwrap_or_default();
            z["status"] = r.body["status"].clone();
            fake_api::Answer::ok(z)
        });
        let api: Api<Zone> = Api::all(client);
        let metrics = Metrics::new();
        let w = Writer::new("zone");
        let old = status(&["n1"], 1);
        let z = zone("1", Some(old.clone()));
        // Condition times aside, nothing changed: no write.
        assert!(!w.whole(&metrics, &api, &z, z.status.as_ref(), &status(&["n1"], 99)).await.unwrap_or(true));
        let new = status(&["n1", "n2"], 1);
        assert!(w.whole(&metrics, &api, &z, z.status.as_ref(), &new).await.unwrap_or(false));
        // The next round still sees version 1: written already, no second write (even a
        // second later, when its conditions would say they turned then).
        assert!(!w.whole(&metrics, &api, &z, z.status.as_ref(), &new).await.unwrap_or(true));
        let later = status(&["n1", "n2"], 2);
        assert!(!w.whole(&metrics, &api, &z, z.status.as_ref(), &later).await.unwrap_or(true));
        assert_eq!(recorded.lines(), ["PATCH /apis/zhengyun.io/v1alpha1/zones/z/status"]);
        // Someone else wrote the old status back (version 3): ours is written again.
        let overwritten = zone("3", Some(old));
        assert!(w.whole(&metrics, &api, &overwritten, overwritten.status.as_ref(), &new).await.unwrap_or(false));
        assert_eq!(recorded.all().len(), 2);
        assert_eq!(metrics.child_writes.with_label_values(&["zone", "ZoneStatus"]).get(), 2);
    }
}
