//! Watch-fed stores: every controller and the webhook read through these.
//!
//! One reflector per kind and reader; the stream it returns both fills the store and, where a
//! controller wants it, triggers rounds. Objects are kept without their `managedFields` and
//! `last-applied-configuration` (often half an object's size, and never read here).

use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store, reflector},
        watcher::{self, watcher},
    },
};
use serde::de::DeserializeOwned;

/// A store of `K` and the stream that fills it (applied and deleted objects).
pub fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, cfg).default_backoff().modify(|obj: &mut K| {
        obj.managed_fields_mut().clear();
        obj.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
    });
    (reader, reflector(writer, events).touched_objects())
}

/// A store of `K` filled by a task of its own, for readers that need no triggers.
pub fn spawn_store<K>(api: Api<K>, cfg: watcher::Config) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    use futures::StreamExt;
    let (store, stream) = reflect(api, cfg);
    // Errors are retried with backoff inside the stream; the store is all that is wanted here.
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    store
}
