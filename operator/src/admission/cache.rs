//! What the webhook reads, held by watches on every replica: an admission makes no API call.
//!
//! Each store is fed by its own reflector task, started with the server; the handlers wait once
//! for every store's first list, then answer from memory. Pods are watched as metadata only
//! (the webhook only counts them per namespace).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    api::{SmClusterIssuer, SmIssuer, Tenant, Zone},
    watch::spawn_store,
};

/// The stores the webhook answers from.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub zones: Store<Zone>,
    /// Through `DeserializeGuard`: a malformed Tenant in etcd must not break the whole watch.
    pub tenants: Store<DeserializeGuard<Tenant>>,
    pub nodes: Store<Node>,
    pub pods: Store<PartialObjectMeta<Pod>>,
    pub issuers: Store<SmIssuer>,
    pub cluster_issuers: Store<SmClusterIssuer>,
    ready: Arc<tokio::sync::OnceCell<()>>,
}

impl Caches {
    /// Starts one watch per kind.
    pub fn start(client: &Client) -> Caches {
        // Metadata only: the webhook counts pods, it never reads their specs.
        let pods = spawn_store(Api::<PartialObjectMeta<Pod>>::all(client.clone()), Default::default());
        Caches {
            namespaces: spawn_store(Api::all(client.clone()), Default::default()),
            zones: spawn_store(Api::all(client.clone()), Default::default()),
            tenants: spawn_store(Api::all(client.clone()), Default::default()),
            nodes: spawn_store(Api::all(client.clone()), Default::default()),
            pods,
            issuers: spawn_store(Api::all(client.clone()), Default::default()),
            cluster_issuers: spawn_store(Api::all(client.clone()), Default::default()),
            ready: Default::default(),
        }
    }

    /// Waits (once, for every caller) until each store has its first list.
    pub async fn ready(&self) {
        self.ready
            .get_or_init(|| async {
                let _ = futures::join!(
                    self.namespaces.wait_until_ready(),
                    self.zones.wait_until_ready(),
                    self.tenants.wait_until_ready(),
                    self.nodes.wait_until_ready(),
                    self.pods.wait_until_ready(),
                    self.issuers.wait_until_ready(),
                    self.cluster_issuers.wait_until_ready(),
                );
            })
            .await;
    }

    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    pub fn zone(&self, name: &str) -> Option<Arc<Zone>> {
        self.zones.get(&ObjectRef::new(name))
    }

    pub fn tenant(&self, name: &str) -> Option<Tenant> {
        self.tenants.get(&ObjectRef::new(name)).and_then(|t| t.0.as_ref().ok().cloned())
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    pub fn issuer(&self, namespace: &str, name: &str) -> Option<Arc<SmIssuer>> {
        self.issuers.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn cluster_issuer(&self, name: &str) -> Option<Arc<SmClusterIssuer>> {
        self.cluster_issuers.get(&ObjectRef::new(name))
    }

    /// How many pods a namespace holds.
    pub fn pods_in(&self, namespace: &str) -> usize {
        self.pods.state().iter().filter(|p| p.metadata.namespace.as_deref() == Some(namespace)).count()
    }
}
