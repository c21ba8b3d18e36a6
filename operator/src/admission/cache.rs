//! What the webhook reads, held by watches on every replica: an admission makes no API call.
//!
//! Each store is fed by its own reflector task, started with the server; the handlers wait once
//! for every store's first list, then answer from memory. Pods are watched as metadata only
//! (the webhook only counts them per namespace).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store, reflector},
        watcher::{self, watcher},
    },
};
use serde::de::DeserializeOwned;

use crate::api::{SmClusterIssuer, SmIssuer, Tenant, Zone};

/// The stores the webhook answers from.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub zones: Store<Zone>,
    pub tenants: Store<Tenant>,
    pub nodes: Store<Node>,
    pub pods: Store<PartialObjectMeta<Pod>>,
    pub issuers: Store<SmIssuer>,
    pub cluster_issuers: Store<SmClusterIssuer>,
    ready: Arc<tokio::sync::OnceCell<()>>,
}

fn spawn_reflector<K>(api: Api<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    // The store is all we want from the stream; errors are retried with backoff inside it.
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

impl Caches {
    /// Starts one watch per kind.
    pub fn start(client: &Client) -> Caches {
        // Metadata only: the webhook counts pods, it never reads their specs.
        let pods = spawn_reflector(Api::<PartialObjectMeta<Pod>>::all(client.clone()));
        Caches {
            namespaces: spawn_reflector(Api::all(client.clone())),
            zones: spawn_reflector(Api::all(client.clone())),
            tenants: spawn_reflector(Api::all(client.clone())),
            nodes: spawn_reflector(Api::all(client.clone())),
            pods,
            issuers: spawn_reflector(Api::all(client.clone())),
            cluster_issuers: spawn_reflector(Api::all(client.clone())),
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

    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(&ObjectRef::new(name))
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
