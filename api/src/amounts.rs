//! What a quota or a budget states, as numbers by resource, and what many of them state
//! together. Pure: the operator's budget arithmetic and its watch-fed tallies share it.

use std::collections::BTreeMap;

use crate::{
    quantity::{Kind, Milli},
    tenant::TenantQuota,
};

/// Amounts by resource (the budget's field names: `cpu`, `memory`, `pods`, ...).
pub type Amounts = BTreeMap<&'static str, Milli>;

/// The budget's resources, their kinds, and how a ResourceQuota names each.
pub const RESOURCES: &[(&str, Kind, &str)] = &[
    ("cpu", Kind::Cores, "requests.cpu"),
    ("memory", Kind::Bytes, "requests.memory"),
    ("storage", Kind::Bytes, "requests.storage"),
    ("persistentVolumeClaims", Kind::Count, "persistentvolumeclaims"),
    ("pods", Kind::Count, "pods"),
    ("services", Kind::Count, "services"),
    ("loadBalancers", Kind::Count, "services.loadbalancers"),
    ("gpu", Kind::Count, "gpu"),
];

/// How a resource's amounts are written.
pub fn kind_of(resource: &str) -> Kind {
    RESOURCES.iter().find(|(r, _, _)| *r == resource).map(|(_, k, _)| *k).unwrap_or(Kind::Count)
}

/// The amounts a quota (or budget) states; the ones it leaves out are absent.
pub fn of(q: &TenantQuota) -> Amounts {
    let fields: [(&'static str, Option<Milli>); 8] = [
        ("cpu", q.cpu.as_ref().and_then(|a| a.milli().ok())),
        ("memory", q.memory.as_ref().and_then(|a| a.milli().ok())),
        ("storage", q.storage.as_ref().and_then(|a| a.milli().ok())),
        ("persistentVolumeClaims", q.persistent_volume_claims.as_ref().and_then(|a| a.milli().ok())),
        ("pods", q.pods.as_ref().and_then(|a| a.milli().ok())),
        ("services", q.services.as_ref().and_then(|a| a.milli().ok())),
        ("loadBalancers", q.load_balancers.as_ref().and_then(|a| a.milli().ok())),
        ("gpu", q.gpu.as_ref().and_then(|a| a.milli().ok())),
    ];
    fields.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

/// What a number of takers take together: how many there are, their amounts added up, and how
/// many state each resource (one that leaves a resource out is unlimited there). Kept up to date
/// one taker at a time, so a budget with 10,000 takers is checked without reading them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub takers: usize,
    pub sum: Amounts,
    pub stating: BTreeMap<&'static str, usize>,
}

impl Tally {
    pub fn add(&mut self, a: &Amounts) {
        self.takers += 1;
        for (k, v) in a {
            *self.sum.entry(k).or_default() += v;
            *self.stating.entry(k).or_default() += 1;
        }
    }

    /// Takes back what [`Tally::add`] added for `a`.
    pub fn remove(&mut self, a: &Amounts) {
        self.takers = self.takers.saturating_sub(1);
        for (k, v) in a {
            if let Some(s) = self.sum.get_mut(k) {
                *s -= v;
            }
            if let Some(n) = self.stating.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.stating.remove(k);
                    self.sum.remove(k);
                }
            }
        }
    }

    /// Whether `budget` holds these takers: every budgeted resource stated by each of them, and
    /// their sum within it.
    pub fn within(&self, budget: &Amounts) -> bool {
        budget.iter().all(|(r, limit)| {
            self.stating.get(r).copied().unwrap_or(0) == self.takers && self.sum.get(r).copied().unwrap_or(0) <= *limit
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pairs: &[(&'static str, Milli)]) -> Amounts {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_tally_adds_takes_back_and_holds_only_what_every_taker_states() {
        let mut t = Tally::default();
        t.add(&a(&[("cpu", 4000), ("pods", 10_000)]));
        t.add(&a(&[("cpu", 2000)]));
        assert_eq!(t.sum["cpu"], 6000);
        assert!(t.within(&a(&[("cpu", 6000)])));
        assert!(!t.within(&a(&[("cpu", 5999)])), "over");
        assert!(!t.within(&a(&[("pods", 1_000_000)])), "the second taker states no pods: unlimited there");
        t.remove(&a(&[("cpu", 2000)]));
        assert!(t.within(&a(&[("cpu", 4000), ("pods", 10_000)])));
        t.remove(&a(&[("cpu", 4000), ("pods", 10_000)]));
        assert_eq!(t, Tally::default(), "nothing left over once every taker is gone");
    }
}
