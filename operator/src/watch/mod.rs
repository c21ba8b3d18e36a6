//! Watch-fed stores: every controller and the webhook read through these.
//!
//! One watch per kind for the whole process ([`Shared`]): it fills one store, keeps an index by
//! a key (the owning tenant, or a pod's namespace) so a round finds its own objects without
//! scanning everyone's, and hands each applied or deleted object to every controller that
//! subscribed for triggers. Objects are kept without their `managedFields` and
//! `last-applied-configuration` (often half an object's size, and never read here). Kinds read
//! only by name, version and labels are held by [`Metas`], which keeps just those.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{
        ConfigMap, Container, LimitRange, Namespace, Node, Pod, PodSpec, PodStatus, ResourceQuota,
        ResourceRequirements, Secret, Service,
    },
    networking::v1::NetworkPolicy,
    rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher::{self, watcher},
    },
};
use serde::de::DeserializeOwned;

use crate::api::{
    ComputerRoom, ExchangeChannel, SecureGateway, SmCertificate, SmClusterIssuer, SmIssuer, Tenant, Zone,
};
use futures::channel::mpsc;

mod metas;
pub mod secrets;
mod sums;
pub use metas::{IndexBy, Metas};
pub use sums::PartFn;

/// What a kind must be to be watched here.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}
impl<K> Watched for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

/// The key an object is indexed by, if any.
pub type KeyFn<K> = fn(&K) -> Option<String>;

/// Who hears of changes, and the index; both change only under this lock, in the order the
/// watch delivered events, so a late subscriber's snapshot and the events after it never miss.
struct Fanout<K: Watched> {
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
}

impl<K: Watched> Fanout<K> {
    /// A new subscriber: first every object `held` returns (taken under the lock), then every
    /// object the watch delivers after them.
    fn join(fanout: &Mutex<Fanout<K>>, held: impl FnOnce() -> Vec<Arc<K>>) -> mpsc::UnboundedReceiver<Arc<K>> {
        let (tx, rx) = mpsc::unbounded();
        if let Ok(mut f) = fanout.lock() {
            for obj in held() {
                let _ = tx.unbounded_send(obj);
            }
            f.subscribers.push(tx);
        }
        rx
    }
}

/// Waits until `ready` says the first full list is in.
async fn first_list(ready: &tokio::sync::watch::Sender<bool>) {
    let _ = ready.subscribe().wait_for(|ready| *ready).await;
}

/// One watch of a kind, shared by every reader in the process.
pub struct Shared<K: Watched> {
    store: Store<K>,
    fanout: Arc<Mutex<Fanout<K>>>,
    index: Arc<RwLock<HashMap<String, HashSet<ObjectRef<K>>>>>,
    key: Option<KeyFn<K>>,
    /// More indexes by name (tenants by zone, by department, ...), fed by the same events.
    indexes: Vec<Named<K>>,
    /// Amounts added up by a key (tenants' quotas by department), fed by the same events.
    sums: Option<Arc<RwLock<sums::Sums<K>>>>,
    /// What the store keeps of each object, when less than the watch delivers (subscribers
    /// still get the whole object, labels and all, to find whom it concerns).
    keep: Option<fn(&mut K)>,
    /// The watch, until the first reader starts it: a follower that only serves the webhook
    /// never watches what only the controllers read.
    pending: Mutex<Option<(Events<K>, reflector::store::Writer<K>)>>,
    /// True from the first full list. Readers wait on this, never on the store itself: a
    /// store wakes only the last of its waiters, and the one waiter it has is the controller
    /// that takes it as its primary.
    ready: tokio::sync::watch::Sender<bool>,
}

/// An index kept beside the store under a name.
struct Named<K: Watched> {
    name: &'static str,
    key: KeyFn<K>,
    map: Index<K>,
}

type Index<K> = Arc<RwLock<HashMap<String, HashSet<ObjectRef<K>>>>>;

type Events<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// Drops what no reader here needs: often half an object's size.
fn slim<K: Resource>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Whether a label is one this process reads: its own (`zhengyun.io/...`) and the manager's.
pub fn read_here(key: &str) -> bool {
    key.starts_with("zhengyun.io/") || key == crate::labels::MANAGED_BY
}

/// For quotas: of their metadata, only what their readers use: name and namespace, version,
/// whether it is being deleted, and the labels read here (whose tenant, which zone, which
/// department). At thousands of tenants the rest (uid, owner references, timestamps, other
/// labels) is megabytes.
pub fn trim<K: Resource>(obj: &mut K) {
    let m = obj.meta_mut();
    let labels = m.labels.take().map(|l| l.into_iter().filter(|(k, _)| read_here(k)).collect::<BTreeMap<_, _>>());
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        resource_version: m.resource_version.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        // Even one label costs a map node of ~0.6 KiB: none is better than an empty map.
        labels: labels.filter(|l| !l.is_empty()),
        ..ObjectMeta::default()
    };
}

/// For kinds anyone may create in numbers (Secrets, Services in tenants' namespaces): their
/// annotations, which a tenant owner can fill with up to 256 KiB each and which nothing here
/// reads, are not kept.
pub fn no_annotations<K: Resource>(obj: &mut K) {
    obj.meta_mut().annotations = None;
}

/// For pods on nodes: only where a pod runs and what it requests (what a computer room's
/// utilisation is made of); the rest of a pod (images, env, volumes) is never read here.
pub fn placement_only(p: &mut Pod) {
    trim(p);
    p.metadata.labels = None;
    let slim = |c: &Container| Container {
        name: c.name.clone(),
        resources: c
            .resources
            .as_ref()
            .map(|r| ResourceRequirements { requests: r.requests.clone(), ..Default::default() }),
        ..Default::default()
    };
    if let Some(spec) = p.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            containers: spec.containers.iter().map(slim).collect(),
            init_containers: spec.init_containers.as_ref().map(|v| v.iter().map(slim).collect()),
            overhead: spec.overhead.take(),
            ..Default::default()
        };
    }
    p.status = p.status.take().map(|s| PodStatus { phase: s.phase, ..Default::default() });
}

/// The node a pod runs on, for indexing pods by node.
pub fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

impl<K: Watched> Shared<K> {
    /// A watch of `api` (not started yet), indexed by `key` when given.
    pub fn new(api: Api<K>, cfg: watcher::Config, key: Option<KeyFn<K>>) -> Self {
        Self::from_events(watcher(api, cfg).default_backoff().modify(slim).boxed(), key)
    }

    /// [`Shared::new`] whose store keeps of each object only what `keep` leaves (see [`trim`]);
    /// subscribers still get whole objects.
    pub fn keeping(api: Api<K>, cfg: watcher::Config, key: Option<KeyFn<K>>, keep: fn(&mut K)) -> Self {
        let mut shared = Self::new(api, cfg, key);
        shared.keep = Some(keep);
        shared
    }

    fn from_events(events: Events<K>, key: Option<KeyFn<K>>) -> Self {
        let (store, writer) = reflector::store();
        Shared {
            store,
            fanout: Arc::new(Mutex::new(Fanout { subscribers: Vec::new() })),
            index: Default::default(),
            key,
            indexes: Vec::new(),
            sums: None,
            keep: None,
            pending: Mutex::new(Some((events, writer))),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// This watch with another index, named `name`, by `key` (read with [`Shared::by`]).
    pub fn indexed(mut self, name: &'static str, key: KeyFn<K>) -> Self {
        self.indexes.push(Named { name, key, map: Default::default() });
        self
    }

    /// This watch adding up what `part` says each object takes, by its key (read with
    /// [`Shared::tally`]).
    pub fn summed(mut self, part: PartFn<K>) -> Self {
        self.sums = Some(Arc::new(RwLock::new(sums::Sums::new(part))));
        self
    }

    /// What the held objects of `key` take together (nothing without [`Shared::summed`]).
    pub fn tally(&self, key: &str) -> crate::api::amounts::Tally {
        self.sums.as_ref().and_then(|s| s.read().ok().map(|s| s.tally(key))).unwrap_or_default()
    }

    /// What the held object `r` adds to the sums, and to which key.
    pub fn part(&self, r: &ObjectRef<K>) -> Option<(String, crate::api::amounts::Amounts)> {
        self.sums.as_ref().and_then(|s| s.read().ok().and_then(|s| s.part(r)))
    }

    /// The held objects whose key in the index named `name` is `key` (none for an unknown index).
    pub fn by(&self, name: &str, key: &str) -> Vec<Arc<K>> {
        let Some(ix) = self.indexes.iter().find(|i| i.name == name) else { return Vec::new() };
        let refs: Vec<ObjectRef<K>> = match ix.map.read() {
            Ok(m) => m.get(key).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        let f = ix.key;
        refs.iter().filter_map(|r| self.store.get(r)).filter(|o| f(o).as_deref() == Some(key)).collect()
    }

    /// The store, its watch not started by this call (a reader that needs it started also
    /// subscribes or calls [`Shared::store`]).
    pub fn handle(&self) -> Store<K> {
        self.store.clone()
    }

    /// The store, its watch started.
    pub fn store(&self) -> Store<K> {
        self.start();
        self.store.clone()
    }

    /// A stream of every object applied or deleted from now on, after the objects already held
    /// (so a controller that subscribes late still sees everything once).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let rx = Fanout::join(&self.fanout, || self.store.state());
        self.start();
        rx
    }

    /// Waits until the watch has its first full list (starting it if need be), so nobody
    /// decides on an empty cache.
    pub async fn ready(&self) {
        self.start();
        first_list(&self.ready).await;
    }

    /// The held object `r`, if any (does not start the watch: wait on [`Shared::ready`] first).
    pub fn get(&self, r: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store.get(r)
    }

    /// Every held object (does not start the watch).
    pub fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// The held objects whose key is `key`.
    pub fn by_key(&self, key: &str) -> Vec<Arc<K>> {
        let Some(f) = self.key else { return Vec::new() };
        let refs: Vec<ObjectRef<K>> = match self.index.read() {
            Ok(ix) => ix.get(key).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        refs.iter().filter_map(|r| self.store.get(r)).filter(|o| f(o).as_deref() == Some(key)).collect()
    }

    fn start(&self) {
        let Some((mut events, mut writer)) = self.pending.lock().ok().and_then(|mut p| p.take()) else { return };
        let (fanout, index, key, keep) = (self.fanout.clone(), self.index.clone(), self.key, self.keep);
        let more: Vec<(KeyFn<K>, Index<K>)> = self.indexes.iter().map(|i| (i.key, i.map.clone())).collect();
        let (store, ready, sums) = (self.store.clone(), self.ready.clone(), self.sums.clone());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                // Errors are retried with backoff inside the stream.
                let Ok(event) = event else { continue };
                let Ok(mut f) = fanout.lock() else { return };
                let before = key.and_then(|k| key_before(&store, k, &event));
                let more_before: Vec<Option<String>> =
                    more.iter().map(|(k, _)| key_before(&store, *k, &event)).collect();
                match keep {
                    Some(keep) => writer.apply_watcher_event(&event.clone().modify(keep)),
                    None => writer.apply_watcher_event(&event),
                }
                if let Some(key) = key {
                    reindex(&index, &store, key, &event, before);
                }
                for ((k, map), before) in more.iter().zip(more_before) {
                    reindex(map, &store, *k, &event, before);
                }
                if let Some(mut s) = sums.as_ref().and_then(|s| s.write().ok()) {
                    match &event {
                        watcher::Event::Apply(o) => s.follow(plain_ref(o), Some(o)),
                        watcher::Event::Delete(o) => s.follow(plain_ref(o), None),
                        watcher::Event::InitDone => s.rebuild(store.state(), |o| plain_ref(o)),
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                    }
                }
                if matches!(event, watcher::Event::InitDone) {
                    ready.send_replace(true);
                }
                let touched = match event {
                    watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => o,
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                };
                let touched = Arc::new(touched);
                // A subscriber whose controller ended is dropped.
                f.subscribers.retain(|s| s.unbounded_send(touched.clone()).is_ok());
            }
        });
    }
}

fn plain_ref<K: Watched>(obj: &K) -> ObjectRef<K> {
    let r = ObjectRef::new(&obj.name_any());
    match obj.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

/// The key the store's copy of an applied object had before this event.
fn key_before<K: Watched>(store: &Store<K>, key: KeyFn<K>, event: &watcher::Event<K>) -> Option<String> {
    match event {
        watcher::Event::Apply(o) => store.get(&plain_ref(o)).and_then(|old| key(&old)),
        _ => None,
    }
}

/// Follows one event in the index; `before` is the object's key before it (an object
/// relabelled to another tenant leaves its old entry).
fn reindex<K: Watched>(
    index: &RwLock<HashMap<String, HashSet<ObjectRef<K>>>>,
    store: &Store<K>,
    key: KeyFn<K>,
    event: &watcher::Event<K>,
    before: Option<String>,
) {
    let Ok(mut ix) = index.write() else { return };
    match event {
        watcher::Event::Apply(o) => {
            let now = key(o);
            if let Some(old) = before.filter(|old| now.as_ref() != Some(old))
                && let Some(set) = ix.get_mut(&old)
            {
                set.remove(&plain_ref(o));
                if set.is_empty() {
                    ix.remove(&old);
                }
            }
            if let Some(k) = now {
                ix.entry(k).or_default().insert(plain_ref(o));
            }
        }
        watcher::Event::Delete(o) => {
            if let Some(k) = key(o)
                && let Some(set) = ix.get_mut(&k)
            {
                set.remove(&plain_ref(o));
                if set.is_empty() {
                    ix.remove(&k);
                }
            }
        }
        // A relist replaced the store: rebuild from it (objects gone or relabelled while the
        // watch was down leave no entry).
        watcher::Event::InitDone => {
            ix.clear();
            for o in store.state() {
                if let Some(k) = key(&o) {
                    ix.entry(k).or_default().insert(plain_ref(o.as_ref()));
                }
            }
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

/// The index of tenants by their zone (`spec.zone`).
pub const TENANTS_BY_ZONE: &str = "zone";
/// The index of tenants by their department's code (`spec.department.code`).
pub const TENANTS_BY_DEPARTMENT: &str = "department";

/// What a tenant takes of its department's budget: its quota, unless it is being deleted.
pub fn quota_by_department(t: &DeserializeGuard<Tenant>) -> Option<(String, crate::api::amounts::Amounts)> {
    let t = t.0.as_ref().ok().filter(|t| t.metadata.deletion_timestamp.is_none())?;
    Some((t.spec.department.code.clone(), crate::api::amounts::of(&t.spec.quota)))
}

/// The tenant an object of ours belongs to (its `zhengyun.io/tenant` label).
pub fn tenant_of<K: Resource>(obj: &K) -> Option<String> {
    obj.labels().get(crate::labels::TENANT).cloned()
}

/// A pod's namespace, for counting pods per namespace.
pub fn namespace_of<K: Resource>(obj: &K) -> Option<String> {
    obj.meta().namespace.clone()
}

/// Something whose first list can be awaited: lets a reader wait on several watches of
/// different kinds at once ([`all_ready`]).
pub trait Ready: Sync {
    fn wait(&self) -> futures::future::BoxFuture<'_, ()>;
}

impl<K: Watched> Ready for Shared<K> {
    fn wait(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.ready())
    }
}

/// Waits until every one of `watches` has its first list (starting each): no round and no
/// admission decides on an empty cache.
pub async fn all_ready(watches: &[&dyn Ready]) {
    futures::future::join_all(watches.iter().map(|w| w.wait())).await;
}

/// Every watch the process holds, one per kind; each starts when first read. Children are
/// watched by the managed label only, and indexed by their tenant.
pub struct Hub {
    pub tenants: Shared<DeserializeGuard<Tenant>>,
    pub zones: Shared<DeserializeGuard<Zone>>,
    /// Every namespace, ours or not: a claim must see a name someone else already holds.
    /// Metadata only, as for limits, policies, bindings and pods below ([`Metas`]): their
    /// labels say whose they are, and their `resourceVersion` whether anyone changed them
    /// since our last write ([`crate::apply::Seen::Version`]), so their contents are never
    /// read back. Those stores keep the version, the deletion time and only the labels read
    /// here: a reader that needs another must add it there.
    pub namespaces: Metas<Namespace>,
    /// Whole objects: their status feeds the quota split.
    pub quotas: Shared<ResourceQuota>,
    pub limits: Metas<LimitRange>,
    /// Tenants' and channels' policies (both carry the managed label).
    pub policies: Metas<NetworkPolicy>,
    pub bindings: Metas<RoleBinding>,
    /// The managed ClusterRoles and ClusterRoleBindings: each tenant's owners' reader role and
    /// binding, each department's admin-group binding, and the shared roles.
    pub reader_roles: Metas<ClusterRole>,
    pub reader_bindings: Metas<ClusterRoleBinding>,
    /// Every certificate, tenants' and others'.
    pub certificates: Shared<DeserializeGuard<SmCertificate>>,
    pub channels: Shared<DeserializeGuard<ExchangeChannel>>,
    pub services: Shared<Service>,
    pub nodes: Shared<Node>,
    /// Metadata, no label, by namespace: the webhook counts pods, it never reads them.
    pub pods: Metas<Pod>,
    /// Pods bound to a node and not finished, by node: where each runs and what it requests
    /// ([`placement_only`]), for the computer rooms' utilisation and the departments' showback.
    pub placed_pods: Shared<Pod>,
    pub rooms: Shared<DeserializeGuard<ComputerRoom>>,
    pub departments: Shared<DeserializeGuard<crate::api::department::Department>>,
    /// Metadata only: which Secrets exist and at which version; contents are read on change
    /// ([`secrets`]).
    pub secrets: Shared<PartialObjectMeta<Secret>>,
    pub issuers: Shared<DeserializeGuard<SmIssuer>>,
    pub cluster_issuers: Shared<DeserializeGuard<SmClusterIssuer>>,
    pub gateways: Shared<DeserializeGuard<SecureGateway>>,
    /// The gateways' Deployments (their status says how many replicas serve) and ConfigMaps,
    /// by the gateway label only.
    pub gateway_deployments: Shared<Deployment>,
    pub gateway_configmaps: Metas<ConfigMap>,
}

/// Of a managed child's labels, those that say it belongs to a channel or a gateway rather than
/// to its tenant (the tenant's sweep leaves those alone).
fn channel_only(label: &str) -> bool {
    label == crate::labels::CHANNEL || label == crate::labels::SECURE_GATEWAY
}

impl Hub {
    pub fn new(client: &Client) -> Self {
        let all = || watcher::Config::default();
        let managed = || watcher::Config::default().labels(&crate::labels::managed_selector());
        let gateway = || watcher::Config::default().labels(crate::labels::SECURE_GATEWAY);
        let tenant = Some(tenant_of as KeyFn<_>);
        fn in_ns<K: Resource>() -> Option<KeyFn<K>> {
            Some(namespace_of as KeyFn<K>)
        }
        Hub {
            tenants: Shared::new(Api::all(client.clone()), all(), None)
                .indexed(TENANTS_BY_ZONE, |t: &DeserializeGuard<Tenant>| t.0.as_ref().ok().map(|t| t.spec.zone.clone()))
                .indexed(TENANTS_BY_DEPARTMENT, |t: &DeserializeGuard<Tenant>| {
                    t.0.as_ref().ok().map(|t| t.spec.department.code.clone())
                })
                .summed(quota_by_department),
            zones: Shared::new(Api::all(client.clone()), all(), None),
            namespaces: Metas::new(Api::all(client.clone()), all(), IndexBy::Label(crate::labels::TENANT), read_here),
            // Labels kept: a quota is compared whole with what we apply (`apply::Seen::Whole`),
            // as its version moves with every status update of the quota controller.
            quotas: Shared::keeping(Api::all(client.clone()), managed(), in_ns(), trim),
            // Of a child read by version, only the channel's label (whose it is comes from its
            // namespace; a trigger reads the whole object before the store cuts it down).
            limits: Metas::new(Api::all(client.clone()), managed(), IndexBy::Namespace, channel_only),
            policies: Metas::new(Api::all(client.clone()), managed(), IndexBy::Namespace, channel_only),
            bindings: Metas::new(Api::all(client.clone()), managed(), IndexBy::Namespace, channel_only),
            reader_roles: Metas::new(Api::all(client.clone()), managed(), IndexBy::Namespace, |_| false),
            reader_bindings: Metas::new(Api::all(client.clone()), managed(), IndexBy::Namespace, |_| false),
            certificates: Shared::new(Api::all(client.clone()), all(), tenant),
            channels: Shared::new(Api::all(client.clone()), all(), None),
            // Whole (a gateway's own Service is compared with what it applies), less annotations.
            services: Shared::keeping(Api::all(client.clone()), all(), None, no_annotations),
            nodes: Shared::new(Api::all(client.clone()), all(), None),
            pods: Metas::new(Api::all(client.clone()), all(), IndexBy::Namespace, |_| false),
            placed_pods: Shared::keeping(
                Api::all(client.clone()),
                all().fields("spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"),
                Some(node_of as KeyFn<_>),
                placement_only,
            ),
            rooms: Shared::new(Api::all(client.clone()), all(), None),
            departments: Shared::new(Api::all(client.clone()), all(), None),
            // Of every Secret only what says which one it is and at which version: tenants own
            // Secrets in any number, with whatever labels and annotations they like.
            secrets: Shared::keeping(Api::all(client.clone()), all(), None, trim),
            issuers: Shared::new(Api::all(client.clone()), all(), None),
            cluster_issuers: Shared::new(Api::all(client.clone()), all(), None),
            gateways: Shared::new(Api::all(client.clone()), all(), Some(tenant_of as KeyFn<_>)),
            gateway_deployments: Shared::new(Api::all(client.clone()), gateway(), None),
            gateway_configmaps: Metas::new(Api::all(client.clone()), gateway(), IndexBy::Namespace, |_| false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str, tenant: Option<&str>) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some(ns.into());
        if let Some(t) = tenant {
            c.metadata.labels = Some([(crate::labels::TENANT.to_string(), t.to_string())].into());
        }
        c
    }

    /// Feeds events to a store and its index as the watch task does, and reads by key.
    struct Fixture {
        writer: reflector::store::Writer<ConfigMap>,
        store: Store<ConfigMap>,
        index: RwLock<HashMap<String, HashSet<ObjectRef<ConfigMap>>>>,
    }

    impl Fixture {
        fn new() -> Self {
            let (store, writer) = reflector::store();
            Fixture { writer, store, index: Default::default() }
        }
        fn feed(&mut self, e: watcher::Event<ConfigMap>) {
            let before = key_before(&self.store, tenant_of, &e);
            self.writer.apply_watcher_event(&e);
            reindex(&self.index, &self.store, tenant_of, &e, before);
        }
        fn of(&self, tenant: &str) -> Vec<String> {
            let ix = self.index.read().expect("lock");
            let mut names: Vec<String> = ix
                .get(tenant)
                .into_iter()
                .flatten()
                .filter_map(|r| self.store.get(r))
                .filter(|o| tenant_of(o.as_ref()).as_deref() == Some(tenant))
                .map(|o| o.name_any())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let mut f = Fixture::new();
        f.feed(watcher::Event::Init);
        f.feed(watcher::Event::InitApply(cm("a-x", "q", Some("a"))));
        f.feed(watcher::Event::InitApply(cm("b-x", "q", Some("b"))));
        f.feed(watcher::Event::InitApply(cm("n", "plain", None)));
        f.feed(watcher::Event::InitDone);
        assert_eq!(f.of("a"), ["q"]);
        f.feed(watcher::Event::Apply(cm("a-y", "l", Some("a"))));
        assert_eq!(f.of("a"), ["l", "q"]);
        f.feed(watcher::Event::Delete(cm("a-x", "q", Some("a"))));
        assert_eq!(f.of("a"), ["l"]);
        // Relabelled to another tenant: found under the new key only, and the old entry is gone
        // (not merely filtered out on lookup).
        f.feed(watcher::Event::Apply(cm("a-y", "l", Some("b"))));
        assert!(f.of("a").is_empty());
        assert!(f.index.read().expect("lock").get("a").is_none());
        assert_eq!(f.of("b"), ["l", "q"]);
        // A relist that no longer holds an object drops it from the index.
        f.feed(watcher::Event::Init);
        f.feed(watcher::Event::InitApply(cm("b-x", "q", Some("b"))));
        f.feed(watcher::Event::InitDone);
        assert_eq!(f.of("b"), ["q"]);
        assert!(f.index.read().expect("lock").get("a").is_none());
    }

    #[tokio::test]
    async fn a_named_index_is_kept_from_the_same_events() {
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(cm("a-x", "q", Some("a")))),
            Ok(watcher::Event::InitApply(cm("b-x", "r", Some("b")))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(cm("a-x", "r2", Some("a")))),
            Ok(watcher::Event::Apply(cm("b-x", "r", Some("a")))),
            Ok(watcher::Event::Delete(cm("a-x", "q", Some("a")))),
        ];
        let shared = Shared::from_events(futures::stream::iter(events).boxed(), None).indexed("tenant", tenant_of);
        shared.ready().await;
        let names = |key: &str| {
            let mut n: Vec<String> = shared.by("tenant", key).iter().map(|o| o.name_any()).collect();
            n.sort();
            n
        };
        // The stream is read by a task: wait until it has delivered the last event.
        for _ in 0..100 {
            if names("a") == ["r", "r2"] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(names("a"), ["r", "r2"]);
        assert!(names("b").is_empty(), "relabelled away");
        assert!(shared.by("no such index", "a").is_empty());
    }
}
