//! Splitting one tenant budget over several namespaces so the API server enforces the total.
//!
//! Kubernetes enforces a `ResourceQuota` per namespace, atomically at admission. If the hard
//! limits of a tenant's namespaces never add up to more than its budget, then no interleaving
//! of pod creations, however concurrent, can push the tenant's total over it.
//!
//! Each namespace is offered what it uses plus an equal share of what the tenant has left
//! (units that do not divide evenly go to the busiest namespaces). When usage moves, the free
//! budget moves with it: a namespace that fills its share is offered half of what is left
//! (with two namespaces) on the next round, and so on, until the tenant's budget is used. Admission enforces `status.hard`, which the
//! quota controller copies from `spec.hard` a moment after we write it, so a lowered limit is
//! not in force at once. We therefore bound each namespace by the largest of its new spec,
//! its enforced `status.hard` and its usage, and only raise others within what that bound
//! leaves. The invariant `Σ max(spec, status, used) ≤ budget` holds after every write, and a
//! raise held back this round happens on the next one, when the lowering is in force.

use std::collections::BTreeMap;

use crate::quantity::Milli;

use super::validate::Budget;

/// What a namespace's ResourceQuota looks like now, by resource (0 when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// `spec.hard` as we last wrote it.
    pub spec: BTreeMap<String, Milli>,
    /// `status.hard`: what admission enforces.
    pub enforced: BTreeMap<String, Milli>,
    /// `status.used`.
    pub used: BTreeMap<String, Milli>,
}

fn get(m: &BTreeMap<String, Milli>, k: &str) -> Milli {
    m.get(k).copied().unwrap_or(0)
}

/// The `spec.hard` to write for each namespace (same order as `observed`), and whether the
/// split has reached its target (nothing held back for a later round).
pub fn split(budget: &BTreeMap<String, Budget>, observed: &[Observed]) -> (Vec<BTreeMap<String, Milli>>, bool) {
    let n = observed.len();
    let mut out = vec![BTreeMap::new(); n];
    let mut settled = true;
    if n == 0 {
        return (out, settled);
    }
    for (resource, b) in budget {
        let g = b.kind.granularity();
        let used: Vec<Milli> = observed.iter().map(|o| get(&o.used, resource).max(0)).collect();
        let free = (b.total - used.iter().sum::<Milli>()).max(0);
        let units = free / g;
        let (share, rem) = (units / n as Milli, units % n as Milli);
        // Units that do not divide evenly go to the busiest namespaces, so one namespace
        // doing all the work can grow into the whole budget rather than strand the rest.
        let mut by_use: Vec<usize> = (0..n).collect();
        by_use.sort_by_key(|&i| std::cmp::Reverse(used[i]));
        let mut gets_rem = vec![false; n];
        for &i in by_use.iter().take(rem as usize) {
            gets_rem[i] = true;
        }
        let target: Vec<Milli> = (0..n)
            .map(|i| {
                let extra = (share + Milli::from(gets_rem[i])) * g;
                // Round a namespace's usage up to the step, so counts stay whole.
                let base = (used[i] + g - 1) / g * g;
                base + extra
            })
            .collect();
        let spec: Vec<Milli> = observed.iter().map(|o| get(&o.spec, resource)).collect();
        // Lowerings take effect in our spec immediately.
        let mut new_spec: Vec<Milli> = (0..n).map(|i| target[i].min(spec[i])).collect();
        let bound: Milli = (0..n).map(|i| new_spec[i].max(get(&observed[i].enforced, resource)).max(used[i])).sum();
        let mut room = (b.total - bound).max(0);
        for i in 0..n {
            if target[i] > new_spec[i] {
                let current_bound = new_spec[i].max(get(&observed[i].enforced, resource)).max(used[i]);
                // Raising up to what is already counted in the bound costs nothing.
                let free_raise = current_bound.min(target[i]) - new_spec[i];
                let want = target[i] - new_spec[i] - free_raise;
                let raise = want.min(room) / g * g;
                new_spec[i] += free_raise + raise;
                room -= raise;
                if new_spec[i] < target[i] {
                    settled = false;
                }
            }
        }
        for i in 0..n {
            if get(&observed[i].enforced, resource) != new_spec[i] {
                settled = false;
            }
            out[i].insert(resource.clone(), new_spec[i]);
        }
    }
    (out, settled)
}

/// Whether `hards` raises some namespace's quota above the spec it has (a namespace without a
/// quota yet raises nothing: no pod can run there before it exists). A raise moves room another
/// namespace held, so it is computed on quotas read fresh, not cached: the cache's usage can
/// lag an admission that has just taken some of that room.
pub fn raises(hards: &[BTreeMap<String, Milli>], observed: &[Observed]) -> bool {
    hards.iter().zip(observed).any(|(hard, o)| hard.iter().any(|(r, h)| o.spec.get(r).is_some_and(|s| h > s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::{Kind, UNIT};

    fn budget(res: &str, total: Milli, kind: Kind) -> BTreeMap<String, Budget> {
        BTreeMap::from([(res.to_string(), Budget { total, kind })])
    }

    #[test]
    fn a_raise_is_a_hard_above_an_existing_spec() {
        let pods = |v: Milli| BTreeMap::from([("pods".to_string(), v)]);
        let o = |spec: Option<Milli>| Observed { spec: spec.map(pods).unwrap_or_default(), ..Default::default() };
        assert!(raises(&[pods(3000), pods(1000)], &[o(Some(2000)), o(Some(2000))]));
        assert!(!raises(&[pods(2000), pods(1000)], &[o(Some(2000)), o(Some(2000))]), "lowering only");
        assert!(!raises(&[pods(2000)], &[o(None)]), "no quota yet");
    }

    fn obs(spec: Milli, enforced: Milli, used: Milli) -> Observed {
        let m = |v| BTreeMap::from([("pods".to_string(), v)]);
        Observed { spec: m(spec), enforced: m(enforced), used: m(used) }
    }

    fn invariant(b: Milli, observed: &[Observed], new: &[BTreeMap<String, Milli>]) {
        let bound: Milli = observed
            .iter()
            .zip(new)
            .map(|(o, s)| get(s, "pods").max(get(&o.enforced, "pods")).max(get(&o.used, "pods")))
            .sum();
        assert!(bound <= b, "bound {bound} exceeds budget {b}: {observed:?} -> {new:?}");
    }

    #[test]
    fn fresh_namespaces_share_the_budget_whole() {
        let b = budget("pods", 5 * UNIT, Kind::Count);
        let observed = vec![Observed::default(); 2];
        let (s, settled) = split(&b, &observed);
        assert_eq!(get(&s[0], "pods") + get(&s[1], "pods"), 5 * UNIT);
        assert_eq!(get(&s[0], "pods"), 3 * UNIT);
        assert!(!settled, "status.hard is not yet enforced");
        invariant(5 * UNIT, &observed, &s);
    }

    #[test]
    fn budget_moves_only_once_the_lowering_is_enforced() {
        let b = budget("pods", 4 * UNIT, Kind::Count);
        // ns0 used its share, ns1 uses nothing: a round lowers ns1 but cannot yet raise ns0.
        let observed = vec![obs(2 * UNIT, 2 * UNIT, 2 * UNIT), obs(2 * UNIT, 2 * UNIT, 0)];
        let (s, settled) = split(&b, &observed);
        assert_eq!(get(&s[1], "pods"), UNIT);
        assert_eq!(get(&s[0], "pods"), 2 * UNIT);
        assert!(!settled);
        invariant(4 * UNIT, &observed, &s);
        // The quota controller copies spec to status; now ns0 may grow.
        let observed = vec![obs(2 * UNIT, 2 * UNIT, 2 * UNIT), obs(UNIT, UNIT, 0)];
        let (s, settled) = split(&b, &observed);
        assert_eq!(get(&s[0], "pods"), 3 * UNIT);
        assert_eq!(get(&s[1], "pods"), UNIT);
        invariant(4 * UNIT, &observed, &s);
        assert!(!settled);
        let observed = vec![obs(3 * UNIT, 3 * UNIT, 2 * UNIT), obs(UNIT, UNIT, 0)];
        let (_, settled) = split(&b, &observed);
        assert!(settled);
    }

    #[test]
    fn a_shrunk_budget_never_goes_below_usage_nor_raises_anyone() {
        let b = budget("pods", 2 * UNIT, Kind::Count);
        let observed = vec![obs(5 * UNIT, 5 * UNIT, 3 * UNIT), obs(5 * UNIT, 5 * UNIT, 0)];
        let (s, _) = split(&b, &observed);
        assert_eq!(get(&s[0], "pods"), 3 * UNIT);
        assert_eq!(get(&s[1], "pods"), 0);
    }

    #[test]
    fn one_busy_namespace_can_grow_into_the_whole_budget() {
        let b = budget("pods", 4 * UNIT, Kind::Count);
        // The idle namespace gives its share up as the busy one fills.
        let observed = vec![obs(UNIT, UNIT, 0), obs(3 * UNIT, 3 * UNIT, 3 * UNIT)];
        let (s, _) = split(&b, &observed);
        assert_eq!((get(&s[0], "pods"), get(&s[1], "pods")), (0, 3 * UNIT), "lowered first, raised next round");
        let observed = vec![obs(0, 0, 0), obs(3 * UNIT, 3 * UNIT, 3 * UNIT)];
        let (s, _) = split(&b, &observed);
        assert_eq!((get(&s[0], "pods"), get(&s[1], "pods")), (0, 4 * UNIT));
    }

    #[test]
    fn cpu_splits_to_the_millicore() {
        let b = budget("requests.cpu", 1001, Kind::Cores);
        let (s, _) = split(&b, &vec![Observed::default(); 2]);
        assert_eq!(get(&s[0], "requests.cpu"), 501);
        assert_eq!(get(&s[1], "requests.cpu"), 500);
    }

    /// Whatever the observed state, no round ever lets the namespaces' bounds exceed the budget
    /// (given that the state we start from respected it).
    #[test]
    fn the_invariant_holds_for_many_states() {
        let mut seed: u64 = 0x5eed;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m) as Milli
        };
        for _ in 0..20_000 {
            let total = next(12) * UNIT;
            let n = 1 + next(4) as usize;
            let mut observed = Vec::new();
            let mut left = total;
            for _ in 0..n {
                let bound = next((left / UNIT + 1) as u64) * UNIT;
                left -= bound;
                let mut pick = || next((bound / UNIT + 1) as u64) * UNIT;
                let (spec, enforced, used) = (pick(), pick(), pick());
                observed.push(obs(spec, enforced, used));
            }
            let b = budget("pods", total, Kind::Count);
            let (s, _) = split(&b, &observed);
            invariant(total, &observed, &s);
        }
    }
}
