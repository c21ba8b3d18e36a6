//! A metadata watch whose store keeps, of each object, only its version, whether it is being
//! deleted and the labels read here: about a tenth of a reflector store's cost per object.
//!
//! A reflector store keeps a whole `ObjectMeta` per object (some 400 bytes of fields even when
//! empty), its type strings, and a key that repeats name and namespace; an index repeats them
//! again. At 5,000 tenants with ten children each that was most of the operator's heap. Here
//! objects are held in one ordered map by (namespace, name), so "the children in this
//! namespace" is a range of the store itself (a map per namespace would cost more than the one
//! or two objects in it), and readers get a `PartialObjectMeta` made from what is held when
//! they ask.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{
    Api,
    core::{PartialObjectMeta, PartialObjectMetaExt},
    runtime::{
        WatchStreamExt,
        reflector::ObjectRef,
        watcher::{self, watcher},
    },
};

use super::{Fanout, Ready, Watched};

/// How a store's objects are found besides by name.
#[derive(Clone, Copy)]
pub enum IndexBy {
    /// By namespace: a tenant's children, a namespace's pods.
    Namespace,
    /// By the value of this label (kept in the store): a tenant's namespaces.
    Label(&'static str),
}

/// What the store keeps of one object (its name and namespace are the keys it is held under).
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    version: Option<Box<str>>,
    deleted_at: Option<Time>,
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Kept {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

/// Objects by (namespace, name); the namespace of cluster-scoped ones is "".
type Objects = BTreeMap<(Box<str>, Box<str>), Kept>;

#[derive(Default)]
struct Held {
    objects: Objects,
    /// For [`IndexBy::Label`]: (label value, namespace, name) of each object with the label.
    by_label: BTreeSet<(Box<str>, Box<str>, Box<str>)>,
    /// A relist under way: the objects listed so far, swapped in when it completes.
    relist: Option<Objects>,
}

/// One metadata watch of a kind `K`, shared by every reader in the process.
pub struct Metas<K: Watched>
where
    PartialObjectMeta<K>: Watched,
{
    held: Arc<RwLock<Held>>,
    fanout: Arc<Mutex<Fanout<PartialObjectMeta<K>>>>,
    index: IndexBy,
    /// The labels the store keeps; readers see no other.
    labels: fn(&str) -> bool,
    pending: Mutex<Option<super::Events<PartialObjectMeta<K>>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

fn namespace_key(ns: Option<&str>) -> Box<str> {
    ns.unwrap_or_default().into()
}

/// The entries of `objects` in namespace `ns`.
fn in_namespace<'a>(objects: &'a Objects, ns: &str) -> impl Iterator<Item = (&'a str, &'a Kept)> + 'a {
    let ns: Box<str> = ns.into();
    let from = (ns.clone(), Box::<str>::from(""));
    objects.range(from..).take_while(move |((n, _), _)| *n == ns).map(|((_, name), k)| (&**name, k))
}

/// The (namespace, name) of the objects whose indexed label is `value`.
fn labelled<'a>(
    by_label: &'a BTreeSet<(Box<str>, Box<str>, Box<str>)>,
    value: &str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let value: Box<str> = value.into();
    let from = (value.clone(), Box::<str>::from(""), Box::<str>::from(""));
    by_label.range(from..).take_while(move |(v, _, _)| *v == value).map(|(_, ns, name)| (&**ns, &**name))
}

impl<K: Watched> Metas<K>
where
    PartialObjectMeta<K>: Watched,
{
    /// A metadata watch of `api` (not started yet; an `Api` of `PartialObjectMeta` asks for
    /// nothing else) keeping the labels `labels` lets through.
    pub fn new(api: Api<PartialObjectMeta<K>>, cfg: watcher::Config, index: IndexBy, labels: fn(&str) -> bool) -> Self {
        Self::from_events(watcher(api, cfg).default_backoff().boxed(), index, labels)
    }

    /// A store fed by `events` (the watch's, or a test's).
    pub fn from_events(events: super::Events<PartialObjectMeta<K>>, index: IndexBy, labels: fn(&str) -> bool) -> Self {
        Metas {
            held: Default::default(),
            fanout: Arc::new(Mutex::new(Fanout { subscribers: Vec::new() })),
            index,
            labels,
            pending: Mutex::new(Some(events)),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    fn object(ns: &str, name: &str, kept: &Kept) -> Arc<PartialObjectMeta<K>> {
        let labels: std::collections::BTreeMap<String, String> =
            kept.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let meta = ObjectMeta {
            name: Some(name.to_string()),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            resource_version: kept.version.as_deref().map(str::to_string),
            deletion_timestamp: kept.deleted_at.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            ..ObjectMeta::default()
        };
        Arc::new(meta.into_response_partial())
    }

    /// The held object `r`, if any (does not start the watch: wait on [`Metas::ready`] first).
    pub fn get(&self, r: &ObjectRef<PartialObjectMeta<K>>) -> Option<Arc<PartialObjectMeta<K>>> {
        let held = self.held.read().ok()?;
        let key = (namespace_key(r.namespace.as_deref()), Box::<str>::from(r.name.as_str()));
        held.objects.get(&key).map(|k| Self::object(&key.0, &key.1, k))
    }

    /// Every held object.
    pub fn state(&self) -> Vec<Arc<PartialObjectMeta<K>>> {
        let Ok(held) = self.held.read() else { return Vec::new() };
        held.objects.iter().map(|((ns, name), k)| Self::object(ns, name, k)).collect()
    }

    /// The held objects whose key (namespace or label value, by [`IndexBy`]) is `key`.
    pub fn by_key(&self, key: &str) -> Vec<Arc<PartialObjectMeta<K>>> {
        let Ok(held) = self.held.read() else { return Vec::new() };
        match self.index {
            IndexBy::Namespace => {
                in_namespace(&held.objects, key).map(|(name, k)| Self::object(key, name, k)).collect()
            }
            IndexBy::Label(_) => labelled(&held.by_label, key)
                .filter_map(|(ns, name)| held.objects.get(&(ns.into(), name.into())).map(|k| Self::object(ns, name, k)))
                .collect(),
        }
    }

    /// How many held objects have key `key`, without making them.
    pub fn count(&self, key: &str) -> usize {
        let Ok(held) = self.held.read() else { return 0 };
        match self.index {
            IndexBy::Namespace => in_namespace(&held.objects, key).count(),
            IndexBy::Label(_) => labelled(&held.by_label, key).count(),
        }
    }

    /// A stream of every object applied or deleted from now on, whole as the watch delivered
    /// it, after the objects already held (as held: a late subscriber sees everything once).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<PartialObjectMeta<K>>> + Send + 'static {
        let rx = Fanout::join(&self.fanout, || self.state());
        self.start();
        rx
    }

    /// Waits until the watch has its first full list (starting it if need be).
    pub async fn ready(&self) {
        self.start();
        super::first_list(&self.ready).await;
    }

    fn start(&self) {
        let Some(mut events) = self.pending.lock().ok().and_then(|mut p| p.take()) else { return };
        let (fanout, held, ready) = (self.fanout.clone(), self.held.clone(), self.ready.clone());
        let (index, labels) = (self.index, self.labels);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                // Errors are retried with backoff inside the stream.
                let Ok(event) = event else { continue };
                let Ok(mut f) = fanout.lock() else { return };
                if let Ok(mut h) = held.write() {
                    h.follow(&event, index, labels);
                }
                let touched = match event {
                    watcher::Event::InitDone => {
                        ready.send_replace(true);
                        continue;
                    }
                    watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => o,
                    watcher::Event::Init => continue,
                };
                let touched = Arc::new(touched);
                f.subscribers.retain(|s| s.unbounded_send(touched.clone()).is_ok());
            }
        });
    }
}

impl Held {
    /// Follows one watch event.
    fn follow<K>(&mut self, event: &watcher::Event<PartialObjectMeta<K>>, index: IndexBy, labels: fn(&str) -> bool) {
        let keep = |o: &PartialObjectMeta<K>| -> (Box<str>, Box<str>, Kept) {
            let m = &o.metadata;
            let kept = Kept {
                version: m.resource_version.as_deref().map(Into::into),
                deleted_at: m.deletion_timestamp.clone(),
                labels: m
                    .labels
                    .iter()
                    .flatten()
                    .filter(|(k, _)| labels(k))
                    .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                    .collect(),
            };
            (namespace_key(m.namespace.as_deref()), m.name.as_deref().unwrap_or_default().into(), kept)
        };
        match event {
            watcher::Event::Init => self.relist = Some(Objects::default()),
            watcher::Event::InitApply(o) => {
                let (ns, name, kept) = keep(o);
                self.relist.get_or_insert_default().insert((ns, name), kept);
            }
            watcher::Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.by_label.clear();
                if let IndexBy::Label(label) = index {
                    for ((ns, name), kept) in &self.objects {
                        if let Some(v) = kept.label(label) {
                            self.by_label.insert((v.into(), ns.clone(), name.clone()));
                        }
                    }
                }
            }
            watcher::Event::Apply(o) => {
                let (ns, name, kept) = keep(o);
                let now = match index {
                    IndexBy::Label(label) => kept.label(label).map(Box::<str>::from),
                    IndexBy::Namespace => None,
                };
                let before = self.objects.insert((ns.clone(), name.clone()), kept);
                if let IndexBy::Label(label) = index {
                    if let Some(old) = before.as_ref().and_then(|b| b.label(label)) {
                        self.by_label.remove(&(old.into(), ns.clone(), name.clone()));
                    }
                    if let Some(v) = now {
                        self.by_label.insert((v, ns, name));
                    }
                }
            }
            watcher::Event::Delete(o) => {
                let (ns, name, _) = keep(o);
                let before = self.objects.remove(&(ns.clone(), name.clone()));
                if let IndexBy::Label(label) = index
                    && let Some(old) = before.as_ref().and_then(|b| b.label(label))
                {
                    self.by_label.remove(&(old.into(), ns, name));
                }
            }
        }
    }
}

impl<K: Watched> Ready for Metas<K>
where
    PartialObjectMeta<K>: Watched,
{
    fn wait(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::ResourceExt;

    fn cm(ns: &str, name: &str, tenant: Option<&str>, version: &str) -> PartialObjectMeta<ConfigMap> {
        let mut m = ObjectMeta {
            name: Some(name.into()),
            namespace: (!ns.is_empty()).then(|| ns.into()),
            resource_version: Some(version.into()),
            uid: Some("dropped".into()),
            ..Default::default()
        };
        let mut labels = std::collections::BTreeMap::from([("other".to_string(), "dropped".to_string())]);
        if let Some(t) = tenant {
            labels.insert(crate::labels::TENANT.to_string(), t.to_string());
        }
        m.labels = Some(labels);
        m.into_response_partial()
    }

    fn store(index: IndexBy) -> Metas<ConfigMap> {
        Metas::from_events(futures::stream::empty().boxed(), index, |k| k == crate::labels::TENANT)
    }

    fn feed(m: &Metas<ConfigMap>, e: watcher::Event<PartialObjectMeta<ConfigMap>>) {
        let Ok(mut h) = m.held.write() else { panic!("lock") };
        h.follow(&e, m.index, m.labels);
    }

    fn names(objs: Vec<Arc<PartialObjectMeta<ConfigMap>>>) -> Vec<String> {
        let mut n: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn keeps_version_and_read_labels_only() {
        let m = store(IndexBy::Namespace);
        feed(&m, watcher::Event::Init);
        feed(&m, watcher::Event::InitApply(cm("a", "q", Some("t"), "5")));
        feed(&m, watcher::Event::InitDone);
        let got = m.get(&ObjectRef::new("q").within("a")).expect("held");
        assert_eq!(got.metadata.resource_version.as_deref(), Some("5"));
        assert_eq!(got.namespace().as_deref(), Some("a"));
        assert_eq!(got.labels().get(crate::labels::TENANT).map(String::as_str), Some("t"));
        assert!(!got.labels().contains_key("other") && got.metadata.uid.is_none());
        assert!(m.get(&ObjectRef::new("q").within("b")).is_none());
    }

    #[test]
    fn the_namespace_index_follows_applies_deletes_and_relists() {
        let m = store(IndexBy::Namespace);
        feed(&m, watcher::Event::Init);
        feed(&m, watcher::Event::InitApply(cm("a", "q", None, "1")));
        feed(&m, watcher::Event::InitApply(cm("b", "q", None, "1")));
        feed(&m, watcher::Event::InitDone);
        feed(&m, watcher::Event::Apply(cm("a", "l", None, "2")));
        assert_eq!(names(m.by_key("a")), ["l", "q"]);
        assert_eq!(m.count("a"), 2);
        feed(&m, watcher::Event::Delete(cm("a", "q", None, "3")));
        assert_eq!(names(m.by_key("a")), ["l"]);
        // A relist replaces what is held only once it is complete.
        feed(&m, watcher::Event::Init);
        feed(&m, watcher::Event::InitApply(cm("b", "q", None, "4")));
        assert_eq!(names(m.by_key("a")), ["l"]);
        feed(&m, watcher::Event::InitDone);
        assert!(m.by_key("a").is_empty() && m.count("a") == 0);
        assert_eq!(names(m.state()), ["q"]);
    }

    #[test]
    fn the_label_index_follows_relabels() {
        let m = store(IndexBy::Label(crate::labels::TENANT));
        feed(&m, watcher::Event::Init);
        feed(&m, watcher::Event::InitApply(cm("", "a-x", Some("a"), "1")));
        feed(&m, watcher::Event::InitApply(cm("", "plain", None, "1")));
        feed(&m, watcher::Event::InitDone);
        assert_eq!(names(m.by_key("a")), ["a-x"]);
        // Relabelled to another tenant: found under the new key only, the old entry gone.
        feed(&m, watcher::Event::Apply(cm("", "a-x", Some("b"), "2")));
        assert!(m.by_key("a").is_empty());
        assert!(!m.held.read().expect("lock").by_label.iter().any(|(v, _, _)| &**v == "a"));
        assert_eq!(names(m.by_key("b")), ["a-x"]);
        feed(&m, watcher::Event::Delete(cm("", "a-x", Some("b"), "3")));
        assert!(m.by_key("b").is_empty() && m.held.read().expect("lock").by_label.is_empty());
        // A relist that no longer holds an object leaves no entry.
        feed(&m, watcher::Event::Apply(cm("", "c-x", Some("c"), "4")));
        feed(&m, watcher::Event::Init);
        feed(&m, watcher::Event::InitDone);
        assert!(m.by_key("c").is_empty() && m.state().is_empty());
    }
}
