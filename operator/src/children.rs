//! A controller's child set: the one applier a round feeds with the objects its pure builders
//! made, stage by stage in the order that keeps a namespace safe.
//!
//! - Each object is written only when it changed ([`apply::Memory`] and what the watch-fed
//!   store shows, [`Seen`]); the set records what it wrote and what the API server refused,
//!   and goes on past a refusal, so one refused child never leaves the safety objects after it
//!   unapplied.
//! - A later stage asks [`ChildSet::in_place`] whether an earlier one holds in a namespace
//!   before it writes there (access only where isolation and quota are in place).
//! - [`ChildSet::prune`] deletes the owned objects it was shown (from the stores) that the
//!   desired set does not name: orphans. It deletes nothing else.
//! - [`ChildSet::finish`] counts the writes, deletions and refusals in the shared metrics and
//!   hands the round its [`Outcome`] for the status and the Events.

use std::{
    collections::BTreeSet,
    fmt::Debug,
    time::{Duration, Instant},
};

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::{Client, Resource, ResourceExt};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    apply::{self, Memory, Seen},
    metrics::Metrics,
};

/// A child the API server did not take (write or delete) this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: String,
    /// `namespace/name`, or `name` for a cluster-scoped object.
    pub name: String,
    pub error: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.error)
    }
}

/// What a round's child set did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The kinds of the objects written, one entry per write.
    pub writes: Vec<String>,
    /// The objects deleted as orphans (kind, `namespace/name`).
    pub deleted: Vec<(String, String)>,
    /// What the API server refused, in the order tried.
    pub failures: Vec<Failure>,
}

/// The applier of one round.
pub struct ChildSet<'a> {
    client: &'a Client,
    memory: &'a Memory,
    outcome: Outcome,
    /// (kind, namespace) of every refused object, for [`ChildSet::in_place`].
    refused_in: BTreeSet<(String, String)>,
}

fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn display_name<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or_default()),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

impl<'a> ChildSet<'a> {
    pub fn new(client: &'a Client, memory: &'a Memory) -> Self {
        ChildSet { client, memory, outcome: Outcome::default(), refused_in: BTreeSet::new() }
    }

    /// Notes one write's result; whether the object is in place.
    fn note<T>(
        &mut self,
        kind: String,
        name: String,
        namespace: Option<&str>,
        r: Result<Option<T>, kube::Error>,
    ) -> Option<Option<T>> {
        match r {
            Ok(written) => {
                if written.is_some() {
                    self.outcome.writes.push(kind);
                }
                Some(written)
            }
            Err(e) => {
                self.refused_in.insert((kind.clone(), namespace.unwrap_or_default().to_string()));
                self.outcome.failures.push(Failure { kind, name, error: message(&e) });
                None
            }
        }
    }

    /// Applies a namespaced object unless it is in place already; whether it is in place now.
    pub async fn namespaced<K>(&mut self, obj: &K, seen: Seen<'_, K>) -> bool
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        self.namespaced_written(obj, seen).await.is_some()
    }

    /// [`ChildSet::namespaced`], with the object as the API server stored it when it wrote:
    /// `None` when refused, `Some(None)` when already in place.
    pub async fn namespaced_written<K>(&mut self, obj: &K, seen: Seen<'_, K>) -> Option<Option<K>>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let r = apply::ensure_namespaced_written(self.client, self.memory, obj, seen).await;
        let ns = obj.namespace();
        self.note(kind_of::<K>(), display_name(obj), ns.as_deref(), r)
    }

    /// Applies a cluster-scoped object unless it is in place already; whether it is in place.
    pub async fn cluster<K>(&mut self, obj: &K, seen: Seen<'_, K>) -> bool
    where
        K: Resource<Scope = ClusterResourceScope, DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
    {
        let r = apply::ensure_cluster(self.client, self.memory, obj, seen).await.map(|w| w.then_some(()));
        self.note(kind_of::<K>(), display_name(obj), None, r).is_some()
    }

    /// Applies an object that no store of ours watches (a ClusterNetworkPolicy: its API may not
    /// be served at all): written when it differs from what this process last applied, or when
    /// that was [`UNWATCHED_RESYNC`] ago (a hand edit is repaired within that time).
    pub async fn unwatched<F>(&mut self, kind: &'static str, name: &str, fingerprint: u64, write: F) -> bool
    where
        F: std::future::Future<Output = Result<(), kube::Error>>,
    {
        let key = format!("{kind}//{name}");
        if self.memory.recent(&key, fingerprint, UNWATCHED_RESYNC) {
            return true;
        }
        let r = write.await.map(|()| Some(()));
        if r.is_ok() {
            self.memory.note_recent(&key, fingerprint, Instant::now());
        }
        self.note(kind.to_string(), name.to_string(), None, r).is_some()
    }

    /// Whether every object of `kind` tried in `namespace` so far is in place.
    pub fn in_place<K: Resource<DynamicType = ()>>(&self, namespace: &str) -> bool {
        !self.refused_in.contains(&(kind_of::<K>(), namespace.to_string()))
    }

    /// Whether nothing was refused so far.
    pub fn clean(&self) -> bool {
        self.outcome.failures.is_empty()
    }

    /// Deletes the objects of kind `K` in `found` (owned ones, `(namespace, name)` from a
    /// store) whose `namespace/name` is not in `keep`; one already gone is not an error.
    /// Whether every orphan is gone.
    pub async fn prune<K>(&mut self, found: &[(String, String)], keep: &BTreeSet<String>) -> bool
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let mut all = true;
        for (ns, name) in found {
            let (ns, name) = (ns.clone(), name.as_str());
            let key = format!("{ns}/{name}");
            if keep.contains(&key) {
                continue;
            }
            match apply::delete_namespaced::<K>(self.client, &ns, name).await {
                Ok(()) => {
                    tracing::info!(kind = %kind_of::<K>(), object = %key, "deleted an orphaned child");
                    self.outcome.deleted.push((kind_of::<K>(), key));
                }
                Err(e) => {
                    all = false;
                    self.refused_in.insert((kind_of::<K>(), ns));
                    self.outcome.failures.push(Failure { kind: kind_of::<K>(), name: key, error: message(&e) });
                }
            }
        }
        all
    }

    /// Counts what the round did in `metrics` under `controller`, and hands it over.
    pub fn finish(self, metrics: &Metrics, controller: &str) -> Outcome {
        for kind in &self.outcome.writes {
            metrics.child_writes.with_label_values(&[controller, kind.as_str()]).inc();
        }
        for (kind, _) in &self.outcome.deleted {
            metrics.child_deletes.with_label_values(&[controller, kind.as_str()]).inc();
        }
        for f in &self.outcome.failures {
            metrics.child_apply_failures.with_label_values(&[controller, f.kind.as_str()]).inc();
        }
        self.outcome
    }
}

/// How long an unwatched object's last write is trusted before it is applied again.
pub const UNWATCHED_RESYNC: Duration = Duration::from_secs(300);

/// `namespace/name` of each object, for [`ChildSet::prune`]'s `keep`.
pub fn keys<'o, K: Resource + 'o>(objs: impl IntoIterator<Item = &'o K>) -> BTreeSet<String> {
    objs.into_iter().map(display_name).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1::ConfigMap, rbac::v1::RoleBinding};
    use serde_json::json;

    use super::*;
    use crate::fake_api::{self, Answer};

    fn cm(ns: &str, name: &str, v: &str) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "data": {"k": v}}))
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn writes_what_changed_and_nothing_once_settled() {
        let (client, recorded) = fake_api::serve(|r| fake_api::echo(r, "7"));
        let memory = Memory::default();
        let metrics = Metrics::new();
        let (a, b) = (cm("n", "a", "1"), cm("n", "b", "1"));

        let mut set = ChildSet::new(&client, &memory);
        assert!(set.namespaced(&a, Seen::Whole(None)).await);
        assert!(set.namespaced(&b, Seen::Whole(None)).await);
        let outcome = set.finish(&metrics, "test");
        assert_eq!(outcome.writes, ["ConfigMap", "ConfigMap"]);
        assert_eq!(
            recorded.lines(),
            ["PATCH /api/v1/namespaces/n/configmaps/a", "PATCH /api/v1/namespaces/n/configmaps/b"]
        );
        assert!(recorded.all()[0].uri.contains("fieldManager=zhengyun"), "{}", recorded.all()[0].uri);

        // The cache shows both as written: a settled round sends nothing at all.
        let stored = |o: &ConfigMap| {
            let mut o = o.clone();
            o.metadata.resource_version = Some("7".into());
            o
        };
        let (sa, sb) = (stored(&a), stored(&b));
        let mut set = ChildSet::new(&client, &memory);
        assert!(set.namespaced(&a, Seen::Whole(Some(&sa))).await);
        assert!(set.namespaced(&b, Seen::Whole(Some(&sb))).await);
        assert!(set.finish(&metrics, "test").writes.is_empty());
        assert_eq!(recorded.all().len(), 2, "no request for a settled set");

        // One drifted in the cluster, one changed in the spec: two writes, nothing else.
        let drifted = cm("n", "a", "hand-edited");
        let b2 = cm("n", "b", "2");
        let mut set = ChildSet::new(&client, &memory);
        set.namespaced(&a, Seen::Whole(Some(&drifted))).await;
        set.namespaced(&b2, Seen::Whole(Some(&sb))).await;
        assert_eq!(set.finish(&metrics, "test").writes.len(), 2);
        assert_eq!(recorded.all().len(), 4);
        assert_eq!(recorded.all()[3].body["data"]["k"], "2");
        assert_eq!(
            metrics.child_writes.with_label_values(&["test", "ConfigMap"]).get(),
            4,
            "every write counted under its controller and kind"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_and_the_rest_is_still_applied() {
        let (client, recorded) = fake_api::serve(|r| {
            if r.uri.contains("/namespaces/locked/") {
                Answer::status(403, "Forbidden", "configmaps \"a\" is forbidden: not today")
            } else {
                fake_api::echo(r, "3")
            }
        });
        let memory = Memory::default();
        let metrics = Metrics::new();
        let mut set = ChildSet::new(&client, &memory);
        assert!(!set.namespaced(&cm("locked", "a", "1"), Seen::Whole(None)).await);
        assert!(set.namespaced(&cm("open", "a", "1"), Seen::Whole(None)).await);
        assert!(!set.in_place::<ConfigMap>("locked"));
        assert!(set.in_place::<ConfigMap>("open"));
        assert!(set.in_place::<RoleBinding>("locked"), "a refusal of one kind says nothing of another");
        assert!(!set.clean());
        let outcome = set.finish(&metrics, "test");
        assert_eq!(recorded.all().len(), 2, "the refusal did not stop the next object");
        assert_eq!(
            outcome.failures,
            [Failure {
                kind: "ConfigMap".into(),
                name: "locked/a".into(),
                error: "configmaps \"a\" is forbidden: not today".into()
            }]
        );
        assert_eq!(metrics.child_apply_failures.with_label_values(&["test", "ConfigMap"]).get(), 1);
        // Not remembered: the next round tries again.
        let mut set = ChildSet::new(&client, &memory);
        set.namespaced(&cm("locked", "a", "1"), Seen::Whole(Some(&cm("locked", "a", "1")))).await;
        assert_eq!(recorded.all().len(), 3);
    }

    #[tokio::test]
    async fn prune_deletes_only_what_it_found_and_was_not_given() {
        let (client, recorded) = fake_api::serve(|r| {
            if r.uri.ends_with("/gone") {
                Answer::status(404, "NotFound", "configmaps \"gone\" not found")
            } else {
                Answer::ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
            }
        });
        let memory = Memory::default();
        let metrics = Metrics::new();
        let found: Vec<(String, String)> =
            [("n", "keep"), ("n", "orphan"), ("m", "keep"), ("n", "gone")].map(|(a, b)| (a.into(), b.into())).into();
        let keep = keys(&[cm("n", "keep", "1"), cm("m", "keep", "1")]);
        let mut set = ChildSet::new(&client, &memory);
        assert!(set.prune::<ConfigMap>(&found, &keep).await, "already gone is not a failure");
        let outcome = set.finish(&metrics, "test");
        assert_eq!(
            recorded.lines(),
            ["DELETE /api/v1/namespaces/n/configmaps/orphan", "DELETE /api/v1/namespaces/n/configmaps/gone"]
        );
        assert_eq!(outcome.deleted.len(), 2);
        assert_eq!(metrics.child_deletes.with_label_values(&["test", "ConfigMap"]).get(), 2);
    }

    #[tokio::test]
    async fn an_unwatched_object_is_written_again_only_when_it_changed() {
        let (client, recorded) = fake_api::serve(|r| fake_api::echo(r, "1"));
        let memory = Memory::default();
        let write = |v: &str| {
            let client = client.clone();
            let obj = cm("n", "u", v);
            async move { crate::apply::namespaced(&client, &obj).await.map(|_| ()) }
        };
        let mut set = ChildSet::new(&client, &memory);
        assert!(set.unwatched("ConfigMap", "u", 1, write("1")).await);
        assert!(set.unwatched("ConfigMap", "u", 1, write("1")).await);
        assert_eq!(recorded.all().len(), 1, "the same object within the resync: no write");
        assert!(set.unwatched("ConfigMap", "u", 2, write("2")).await);
        assert_eq!(recorded.all().len(), 2);
        memory.note_recent("ConfigMap//u", 2, Instant::now() - UNWATCHED_RESYNC);
        assert!(set.unwatched("ConfigMap", "u", 2, write("2")).await);
        assert_eq!(recorded.all().len(), 3, "applied again once the resync is due");
    }
}
