//! A tenant's status, computed purely from what its round observed and applied: every
//! condition is backed by a check the round made (a namespace claimed, a policy or binding in
//! place, a quota enforced by the API server), never written `True` on faith.

use std::collections::BTreeMap;

use super::{build, quota::Observed, validate::ValidatedTenant};
use crate::{
    api::QuotaStatus,
    conditions::Observed as Cond,
    quantity::{self, Milli},
};

/// What a round saw and did.
#[derive(Clone)]
pub struct Round<'a> {
    pub vt: &'a ValidatedTenant,
    /// The namespaces the tenant holds.
    pub owned: &'a [String],
    /// Why a namespace could not be claimed.
    pub conflicts: &'a [String],
    /// Namespaces terminating, or created elsewhere a moment ago.
    pub pending: &'a [String],
    /// Each owned namespace's quota as the cache shows it, in `owned` order.
    pub quotas: &'a [Observed],
    /// Whether the quota split is where it should be.
    pub settled: bool,
    /// Namespaces whose default-deny and allow policies are in place.
    pub isolated: usize,
    /// Namespaces whose owners' binding is in place.
    pub bound: usize,
    /// The children the API server refused, each `kind name: message`.
    pub failures: &'a [String],
    /// Why the zone does not admit the tenant (reason, message).
    pub zone_problem: Option<(&'static str, String)>,
    /// The tenant's place in the department tree, when the cloud keeps one (any Department
    /// exists): informative, it does not hold the tenant back.
    pub department: Option<Cond>,
}

/// The status a round leads to.
pub struct Outcome {
    pub conditions: Vec<Cond>,
    pub quota: QuotaStatus,
    /// Usage summed over the namespaces, for the budgeted resources.
    pub used: BTreeMap<String, Milli>,
    pub ready: bool,
    /// Everything is in place but the quota controller has not enforced the quotas yet: the
    /// one wait that says nothing a user can act on.
    pub awaits_quota_only: bool,
}

pub fn compute(r: &Round) -> Outcome {
    let vt = r.vt;
    // The tenant's totals are the sums over its namespaces.
    let mut used: BTreeMap<String, Milli> = BTreeMap::new();
    for o in r.quotas {
        for (k, v) in &o.used {
            if vt.quota.contains_key(k) {
                *used.entry(k.clone()).or_default() += v;
            }
        }
    }
    let quota_status = QuotaStatus {
        hard: vt.quota.iter().map(|(k, b)| (k.clone(), quantity::format(b.total, b.kind))).collect(),
        used: vt
            .quota
            .iter()
            .map(|(k, b)| (k.clone(), quantity::format(used.get(k).copied().unwrap_or(0), b.kind)))
            .collect(),
    };
    let ns_ok = r.conflicts.is_empty() && r.pending.is_empty();
    let ns_message = if !r.conflicts.is_empty() {
        r.conflicts.join("; ")
    } else if !r.pending.is_empty() {
        format!("waiting for namespaces that are terminating or were just created elsewhere: {}", r.pending.join(", "))
    } else {
        format!("{} namespaces", r.owned.len())
    };
    let ns_reason = if !r.conflicts.is_empty() {
        "Conflict"
    } else if !r.pending.is_empty() {
        "Waiting"
    } else {
        "Created"
    };
    // Enforced: every namespace has a quota the API server applies to every budgeted resource.
    // Moving free budget between namespaces happens all the time under load and is not a
    // reason to call the tenant unready.
    let enforced = r.quotas.iter().all(|o| vt.quota.keys().all(|k| o.enforced.contains_key(k)));
    let (quota_reason, quota_message) = match (enforced, r.settled) {
        (true, true) => ("Enforced", "the tenant's quota is split over its namespaces and enforced"),
        (true, false) => ("Rebalancing", "enforced; moving free quota between namespaces as usage changes"),
        (false, _) => ("Pending", "waiting for the quota controller to enforce the namespaces' quotas"),
    };
    let network_ok = r.isolated == r.owned.len();
    let access_ok = r.bound == r.owned.len();
    let mut conds = vec![
        Cond::new("NamespacesReady", ns_ok, ns_reason, ns_message),
        Cond::new("QuotaReady", enforced, quota_reason, quota_message),
        if access_ok {
            Cond::new("AccessReady", true, "Bound", format!("owners bound to {} in every namespace", build::OWNER_ROLE))
        } else {
            Cond::new(
                "AccessReady",
                false,
                "NotBound",
                format!(
                    "owners are bound in {} of {} namespaces; access waits for isolation and quota",
                    r.bound,
                    r.owned.len()
                ),
            )
        },
        if network_ok {
            Cond::new("NetworkReady", true, "DefaultDeny", "default-deny with the tenant and DNS allowed")
        } else {
            Cond::new(
                "NetworkReady",
                false,
                "ApplyFailed",
                format!("default-deny is in force in {} of {} namespaces", r.isolated, r.owned.len()),
            )
        },
        Cond::new(
            "Conflict",
            !r.conflicts.is_empty(),
            if r.conflicts.is_empty() { "NoConflict" } else { "NamespaceTaken" },
            r.conflicts.join("; "),
        ),
    ];
    match &r.zone_problem {
        None => conds.push(Cond::new("ZoneReady", true, "Admitted", format!("zone {} admits the tenant", vt.zone))),
        Some(e) => conds.push(Cond::new("ZoneReady", false, e.0, e.1.clone())),
    }
    if let Some(d) = &r.department {
        conds.push(d.clone());
    }
    let in_place = ns_ok && r.zone_problem.is_none() && r.failures.is_empty();
    let ready = in_place && enforced;
    // A department problem does not hold the tenant back, but it is worth saying at once.
    let department_ok = r.department.as_ref().is_none_or(|d| d.ok);
    let (reason, message) = if ready {
        ("Ready", "everything the tenant needs is in place".to_string())
    } else if !r.failures.is_empty() {
        ("ApplyFailed", r.failures.join("; "))
    } else if !r.conflicts.is_empty() {
        ("Conflict", r.conflicts.join("; "))
    } else if let Some(e) = &r.zone_problem {
        (e.0, e.1.clone())
    } else {
        ("Progressing", "converging".to_string())
    };
    conds.insert(0, Cond::new("Ready", ready, reason, message));
    Outcome {
        conditions: conds,
        quota: quota_status,
        used,
        ready,
        awaits_quota_only: in_place && department_ok && !enforced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::validate::{tests::sample, validate};

    fn enforced(vt: &ValidatedTenant, used_cpu: Milli) -> Observed {
        let all: BTreeMap<String, Milli> = vt.quota.keys().map(|k| (k.clone(), 1)).collect();
        Observed { spec: all.clone(), enforced: all, used: [("requests.cpu".to_string(), used_cpu)].into() }
    }

    fn condition<'a>(o: &'a Outcome, type_: &str) -> &'a Cond {
        o.conditions.iter().find(|c| c.type_ == type_).expect("condition")
    }

    #[test]
    fn ready_only_when_every_check_of_the_round_passed() {
        let vt = validate(&sample()).expect("valid");
        let owned = vt.namespaces.clone();
        let quotas = [enforced(&vt, 500), enforced(&vt, 250)];
        let round = Round {
            vt: &vt,
            owned: &owned,
            conflicts: &[],
            pending: &[],
            quotas: &quotas,
            settled: true,
            isolated: 2,
            bound: 2,
            failures: &[],
            zone_problem: None,
            department: None,
        };
        let o = compute(&round);
        assert!(o.ready);
        assert_eq!(o.used["requests.cpu"], 750);
        assert_eq!(o.quota.used["requests.cpu"], "750m");
        assert!(condition(&o, "AccessReady").ok && condition(&o, "NetworkReady").ok);

        // One namespace without its policies: network and access are not claimed.
        let o = compute(&Round { isolated: 1, bound: 1, ..round.clone() });
        assert!(!condition(&o, "NetworkReady").ok, "{:?}", o.conditions);
        assert!(!condition(&o, "AccessReady").ok);
        assert!(condition(&o, "AccessReady").message.contains("bound in 1 of 2"));

        // A refused child makes the tenant unready with the API server's words.
        let failures = ["ResourceQuota edu-apps/zhengyun: exceeded".to_string()];
        let o = compute(&Round { failures: &failures, ..round.clone() });
        let ready = condition(&o, "Ready");
        assert!(!o.ready && ready.reason == "ApplyFailed" && ready.message.contains("exceeded"));

        // A quota the API server does not enforce yet.
        let mut pending_quota = quotas.clone();
        pending_quota[1].enforced.clear();
        let o = compute(&Round { quotas: &pending_quota, ..round.clone() });
        assert!(!o.ready && condition(&o, "QuotaReady").reason == "Pending");
        assert!(o.awaits_quota_only);
        let o = compute(&Round { quotas: &pending_quota, failures: &failures, ..round.clone() });
        assert!(!o.awaits_quota_only, "a refused child is worth saying at once");
        let lost =
            Cond::new("Department", false, "DepartmentNotFound", "spec.department.code: no Department has code X");
        let o = compute(&Round { quotas: &pending_quota, department: Some(lost), ..round.clone() });
        assert!(!o.awaits_quota_only, "so is a department that does not exist");

        // The zone's word comes through.
        let o =
            compute(&Round { zone_problem: Some(("ZoneMissing", "zone x does not exist".into())), ..round.clone() });
        assert!(!o.ready && condition(&o, "Ready").reason == "ZoneMissing");
    }
}
