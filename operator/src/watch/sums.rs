//! Sums kept beside a store: for each key (a tenant's department), what its objects state added
//! up, followed one event at a time. A reader asks one key's [`Tally`] instead of adding up every
//! object with that key: a department with 10,000 tenants costs its rounds and admissions the
//! same as one with ten.

use std::{collections::HashMap, sync::Arc};

use kube::runtime::reflector::ObjectRef;

use super::Watched;
use crate::api::amounts::{Amounts, Tally};

/// What an object adds, and to which key's tally (none: it counts nowhere). It reads only what
/// the store keeps of an object: after a relist the sums are rebuilt from the store.
pub type PartFn<K> = fn(&K) -> Option<(String, Amounts)>;

pub(super) struct Sums<K: Watched> {
    part: PartFn<K>,
    by_key: HashMap<String, Tally>,
    parts: HashMap<ObjectRef<K>, (String, Amounts)>,
}

impl<K: Watched> Sums<K> {
    pub(super) fn new(part: PartFn<K>) -> Self {
        Sums { part, by_key: HashMap::new(), parts: HashMap::new() }
    }

    /// Follows one object: `now` as delivered, or `None` once it is deleted.
    pub(super) fn follow(&mut self, r: ObjectRef<K>, now: Option<&K>) {
        if let Some((key, a)) = self.parts.remove(&r)
            && let Some(t) = self.by_key.get_mut(&key)
        {
            t.remove(&a);
            if t.takers == 0 {
                self.by_key.remove(&key);
            }
        }
        if let Some((key, a)) = now.and_then(self.part) {
            self.by_key.entry(key.clone()).or_default().add(&a);
            self.parts.insert(r, (key, a));
        }
    }

    /// Starts again from `objects` (the store after a relist).
    pub(super) fn rebuild(&mut self, objects: Vec<Arc<K>>, of: impl Fn(&K) -> ObjectRef<K>) {
        self.by_key.clear();
        self.parts.clear();
        for o in objects {
            self.follow(of(&o), Some(&o));
        }
    }

    pub(super) fn tally(&self, key: &str) -> Tally {
        self.by_key.get(key).cloned().unwrap_or_default()
    }

    pub(super) fn part(&self, r: &ObjectRef<K>) -> Option<(String, Amounts)> {
        self.parts.get(r).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    /// A ConfigMap's `key` label, and its `cpu` data in thousandths.
    fn part(cm: &ConfigMap) -> Option<(String, Amounts)> {
        let key = cm.metadata.labels.as_ref()?.get("key")?.clone();
        let cpu = cm.data.as_ref().and_then(|d| d.get("cpu")).and_then(|v| v.parse().ok());
        Some((key, cpu.map(|c| ("cpu", c)).into_iter().collect()))
    }

    fn cm(name: &str, key: &str, cpu: Option<i128>) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.labels = Some([("key".to_string(), key.to_string())].into());
        c.data = cpu.map(|v| [("cpu".to_string(), v.to_string())].into());
        c
    }

    #[test]
    fn sums_follow_changes_moves_and_deletions_and_match_a_rebuild() {
        let mut s = Sums::new(part as PartFn<ConfigMap>);
        let r = |n: &str| ObjectRef::<ConfigMap>::new(n);
        s.follow(r("a"), Some(&cm("a", "x", Some(1000))));
        s.follow(r("b"), Some(&cm("b", "x", Some(2000))));
        s.follow(r("c"), Some(&cm("c", "y", None)));
        assert_eq!(s.tally("x").sum["cpu"], 3000);
        assert_eq!(s.tally("x").takers, 2);
        // Changed, then moved to another key, then deleted.
        s.follow(r("a"), Some(&cm("a", "x", Some(5000))));
        assert_eq!(s.tally("x").sum["cpu"], 7000);
        s.follow(r("b"), Some(&cm("b", "y", Some(2000))));
        assert_eq!((s.tally("x").sum["cpu"], s.tally("x").takers), (5000, 1));
        assert_eq!(s.tally("y").takers, 2);
        assert!(!s.tally("y").within(&[("cpu", 1_000_000)].into()), "c states no cpu");
        s.follow(r("a"), None);
        assert_eq!(s.tally("x"), Tally::default());
        assert_eq!(s.part(&r("b")).map(|p| p.0), Some("y".to_string()));
        let followed = s.tally("y");
        s.rebuild(vec![Arc::new(cm("b", "y", Some(2000))), Arc::new(cm("c", "y", None))], |o| {
            ObjectRef::new(o.metadata.name.as_deref().unwrap_or_default())
        });
        assert_eq!(s.tally("y"), followed);
    }
}
