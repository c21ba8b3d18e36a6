//! The department tree's arithmetic, pure: what a budget holds, what is handed down from it,
//! and whether a change fits. The webhook decides with it, the controller reports with it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    api::{Tenant, TenantQuota, department::Department},
    quantity,
};
use kube::ResourceExt;

pub use crate::api::amounts::{Amounts, RESOURCES, Tally, kind_of};

/// The amounts a quota (or budget) states; the ones it leaves out are absent.
pub fn amounts(q: &TenantQuota) -> Amounts {
    crate::api::amounts::of(q)
}

/// Who takes from a department's budget: a child department or one of its own tenants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Taker {
    Department(String),
    Tenant(String),
}

impl std::fmt::Display for Taker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Taker::Department(c) => write!(f, "department {c}"),
            Taker::Tenant(n) => write!(f, "tenant {n}"),
        }
    }
}

/// What each taker of `code`'s budget takes: its children's budgets and its own tenants' quotas.
pub fn takers(code: &str, departments: &[&Department], tenants: &[&Tenant]) -> BTreeMap<Taker, Amounts> {
    let mut out = BTreeMap::new();
    for d in departments {
        if d.spec.parent.as_deref() == Some(code) {
            out.insert(Taker::Department(d.spec.code.clone()), amounts(&d.spec.budget));
        }
    }
    for t in tenants {
        if t.spec.department.code == code && t.metadata.deletion_timestamp.is_none() {
            out.insert(Taker::Tenant(t.name_any()), amounts(&t.spec.quota));
        }
    }
    out
}

/// Whether `budget` holds what department `code` hands down, without listing its tenants: their
/// quotas as the watch adds them up (`tenants`, [`crate::watch::Shared::tally`]), its children's
/// budgets, and `overlay` laid over (standing reservations and the taker asking, each the newer
/// word on its taker: a tenant named there no longer counts as `part_of` says it does).
/// `false` may be a moment's lag of the sums: the caller then counts the takers one by one
/// ([`takers`], [`fits`]), which also names them.
pub fn holds_tallied(
    code: &str,
    budget: &Amounts,
    mut tenants: Tally,
    departments: &[&Department],
    overlay: &BTreeMap<Taker, Amounts>,
    part_of: impl Fn(&str) -> Option<Amounts>,
) -> bool {
    for d in departments.iter().filter(|d| d.spec.parent.as_deref() == Some(code)) {
        if !overlay.contains_key(&Taker::Department(d.spec.code.clone())) {
            tenants.add(&amounts(&d.spec.budget));
        }
    }
    for (who, a) in overlay {
        if let Taker::Tenant(name) = who
            && let Some(cached) = part_of(name)
        {
            tenants.remove(&cached);
        }
        tenants.add(a);
    }
    tenants.within(budget)
}

/// The sum of what the takers take, by resource.
pub fn allocated(takers: &BTreeMap<Taker, Amounts>) -> Amounts {
    let mut sum = Amounts::new();
    for a in takers.values() {
        for (k, v) in a {
            *sum.entry(k).or_default() += v;
        }
    }
    sum
}

/// Why a budget does not hold what is handed down from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub department: String,
    pub message: String,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether `budget` holds `takers`, resource by resource: a budgeted resource a taker leaves
/// unstated is unlimited there, so it does not fit either. The message gives the numbers.
pub fn fits(code: &str, budget: &Amounts, takers: &BTreeMap<Taker, Amounts>) -> Result<(), OverBudget> {
    let sum = allocated(takers);
    for (resource, limit) in budget {
        let kind = kind_of(resource);
        if let Some((who, _)) = takers.iter().find(|(_, a)| !a.contains_key(resource)) {
            return Err(OverBudget {
                department: code.into(),
                message: format!(
                    "department {code} budgets {resource} ({}): {who} must state its {resource} too",
                    quantity::format(*limit, kind)
                ),
            });
        }
        let total = sum.get(resource).copied().unwrap_or(0);
        if total > *limit {
            let parts: Vec<String> = takers
                .iter()
                .filter_map(|(who, a)| a.get(resource).map(|v| format!("{who} {}", quantity::format(*v, kind))))
                .collect();
            return Err(OverBudget {
                department: code.into(),
                message: format!(
                    "department {code}'s {resource} budget is {}, and {} would be handed down ({}): {} over",
                    quantity::format(*limit, kind),
                    quantity::format(total, kind),
                    parts.join(", "),
                    quantity::format(total - limit, kind)
                ),
            });
        }
    }
    Ok(())
}

/// The codes from the top of the tree down to `code`, or why there is no such path (a parent
/// missing, or a cycle).
pub fn path(code: &str, departments: &[&Department]) -> Result<Vec<String>, String> {
    let by_code: BTreeMap<&str, &Department> = departments.iter().map(|d| (d.spec.code.as_str(), *d)).collect();
    let mut path = vec![code.to_string()];
    let mut seen = BTreeSet::from([code.to_string()]);
    let mut at = code.to_string();
    loop {
        let Some(d) = by_code.get(at.as_str()) else { return Err(format!("department {at} does not exist")) };
        let Some(parent) = d.spec.parent.clone() else { break };
        if !seen.insert(parent.clone()) {
            return Err(format!(
                "spec.parent: the parents of {code} lead back to {parent}: the tree would have a cycle"
            ));
        }
        if !by_code.contains_key(parent.as_str()) {
            return Err(format!("spec.parent: department {parent} (the parent of {at}) does not exist"));
        }
        path.push(parent.clone());
        at = parent;
    }
    path.reverse();
    Ok(path)
}

/// `allocated/budget` per budgeted resource, for the printer column.
pub fn summary(budget: &Amounts, allocated: &Amounts) -> String {
    budget
        .iter()
        .map(|(r, limit)| {
            let kind = kind_of(r);
            format!(
                "{r} {}/{}",
                quantity::format(allocated.get(r).copied().unwrap_or(0), kind),
                quantity::format(*limit, kind)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Amounts as the status shows them (`cpu: 12`, `memory: 48Gi`).
pub fn formatted(a: &Amounts) -> BTreeMap<String, String> {
    a.iter().map(|(k, v)| (k.to_string(), quantity::format(*v, kind_of(k)))).collect()
}

/// What the subtree of `code` uses: every tenant below it (its own and its descendants'),
/// summed from each tenant's quota `used` (ResourceQuota names, mapped back to the budget's).
pub fn used(code: &str, departments: &[&Department], tenants: &[&Tenant]) -> Amounts {
    let below = subtree(code, departments);
    let mut sum = Amounts::new();
    for t in tenants.iter().filter(|t| below.contains(t.spec.department.code.as_str())) {
        let Some(q) = t.status.as_ref().and_then(|s| s.quota.as_ref()) else { continue };
        for (resource, _, quota_name) in RESOURCES {
            if let Some(v) = q.used.get(*quota_name).and_then(|v| quantity::parse(v).ok()) {
                *sum.entry(resource).or_default() += v;
            }
        }
    }
    sum
}

/// The codes of `code` and every department below it.
pub fn subtree<'a>(code: &'a str, departments: &[&'a Department]) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::from([code]);
    let mut grew = true;
    while grew {
        grew = false;
        for d in departments {
            if let Some(p) = d.spec.parent.as_deref()
                && out.contains(p)
                && out.insert(d.spec.code.as_str())
            {
                grew = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Amount;

    fn dept(code: &str, parent: Option<&str>, cpu: Option<&str>) -> Department {
        crate::departments::fixture(code, parent, cpu)
    }

    fn tenant(name: &str, code: &str, cpu: Option<&str>) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"department": {"code": code, "name": code}, "zone": "z", "owners": [{"kind": "User", "name": "a"}],
                     "namespaces": [{"suffix": "a"}], "quota": {}, "securityLevel": 2}
        }))
        .expect("tenant");
        t.spec.quota.cpu = cpu.map(Amount::from);
        t
    }

    #[test]
    fn children_and_own_tenants_share_the_budget_and_the_refusal_gives_the_numbers() {
        let city = dept("GZ", None, Some("10"));
        let county = dept("TH", Some("GZ"), Some("6"));
        let t = tenant("edu", "GZ", Some("3"));
        let takers = takers("GZ", &[&city, &county], &[&t]);
        assert_eq!(allocated(&takers)["cpu"], 9000);
        assert!(fits("GZ", &amounts(&city.spec.budget), &takers).is_ok());

        let more = tenant("edu", "GZ", Some("5"));
        let takers = super::takers("GZ", &[&city, &county], &[&more]);
        let err = fits("GZ", &amounts(&city.spec.budget), &takers).expect_err("11 > 10");
        assert!(
            err.message.contains("budget is 10") && err.message.contains("11") && err.message.contains("1 over"),
            "{err}"
        );
        assert!(err.message.contains("department TH 6") && err.message.contains("tenant edu 5"), "{err}");
    }

    #[test]
    fn a_taker_that_leaves_a_budgeted_resource_unstated_does_not_fit() {
        let city = dept("GZ", None, Some("10"));
        let unbounded = tenant("edu", "GZ", None);
        let err =
            fits("GZ", &amounts(&city.spec.budget), &takers("GZ", &[&city], &[&unbounded])).expect_err("unbounded");
        assert!(err.message.contains("tenant edu must state its cpu"), "{err}");
        // A resource the budget leaves out is not limited here.
        let open = dept("GZ", None, None);
        assert!(fits("GZ", &amounts(&open.spec.budget), &takers("GZ", &[&open], &[&unbounded])).is_ok());
    }

    #[test]
    fn the_tally_decides_as_the_takers_one_by_one_do() {
        let city = dept("GZ", None, Some("10"));
        let county = dept("TH", Some("GZ"), Some("6"));
        let tenants = [tenant("a", "GZ", Some("1")), tenant("b", "GZ", Some("2")), tenant("c", "GZ", None)];
        let budget = amounts(&city.spec.budget);
        let ds = [&city, &county];
        // Each case: the tenants held, and what is laid over (reservations, the ask).
        type Case<'a> = (Vec<&'a Tenant>, Vec<(Taker, &'a str)>);
        let cases: Vec<Case> = vec![
            (vec![&tenants[0], &tenants[1]], vec![]),
            (vec![&tenants[0], &tenants[1]], vec![(Taker::Tenant("n".into()), "1")]),
            (vec![&tenants[0], &tenants[1]], vec![(Taker::Tenant("n".into()), "2")]),
            // `b` raising its own quota: its cached 2 no longer counts.
            (vec![&tenants[0], &tenants[1]], vec![(Taker::Tenant("b".into()), "3")]),
            (vec![&tenants[0], &tenants[1]], vec![(Taker::Tenant("b".into()), "4")]),
            (vec![&tenants[0], &tenants[2]], vec![]),
            (vec![&tenants[0]], vec![(Taker::Department("TH".into()), "9")]),
            (vec![&tenants[0]], vec![(Taker::Department("TH".into()), "2"), (Taker::Tenant("n".into()), "7")]),
        ];
        for (i, (held, over)) in cases.into_iter().enumerate() {
            let overlay: BTreeMap<Taker, Amounts> = over
                .iter()
                .map(|(who, cpu)| (who.clone(), [("cpu", crate::quantity::parse(cpu).unwrap_or_default())].into()))
                .collect();
            let mut tally = Tally::default();
            for t in &held {
                tally.add(&amounts(&t.spec.quota));
            }
            let part_of = |n: &str| held.iter().find(|t| t.name_any() == n).map(|t| amounts(&t.spec.quota));
            let mut all = takers("GZ", &ds, &held);
            all.extend(overlay.clone());
            let tallied = holds_tallied("GZ", &budget, tally, &ds, &overlay, part_of);
            assert_eq!(tallied, fits("GZ", &budget, &all).is_ok(), "case {i}");
        }
    }

    #[test]
    fn paths_run_from_the_top_and_cycles_or_missing_parents_are_named() {
        let gd = dept("GD", None, None);
        let gz = dept("GZ", Some("GD"), None);
        let th = dept("TH", Some("GZ"), None);
        assert_eq!(path("TH", &[&gd, &gz, &th]), Ok(vec!["GD".into(), "GZ".into(), "TH".into()]));
        assert!(path("TH", &[&gz, &th]).expect_err("GD missing").contains("GD"));
        let a = dept("A", Some("B"), None);
        let b = dept("B", Some("A"), None);
        assert!(path("A", &[&a, &b]).expect_err("cycle").contains("cycle"));
        assert_eq!(subtree("GZ", &[&gd, &gz, &th]), BTreeSet::from(["GZ", "TH"]));
    }

    #[test]
    fn the_subtree_uses_what_its_tenants_use() {
        let gz = dept("GZ", None, Some("10"));
        let th = dept("TH", Some("GZ"), Some("4"));
        let mut a = tenant("a", "GZ", Some("2"));
        let mut b = tenant("b", "TH", Some("2"));
        let other = tenant("c", "SZ", Some("2"));
        for (t, used) in [(&mut a, "1500m"), (&mut b, "500m")] {
            t.status = Some(crate::api::TenantStatus {
                quota: Some(crate::api::QuotaStatus {
                    hard: Default::default(),
                    used: [("requests.cpu".to_string(), used.to_string())].into(),
                }),
                ..Default::default()
            });
        }
        assert_eq!(used("GZ", &[&gz, &th], &[&a, &b, &other])["cpu"], 2000);
        assert_eq!(used("TH", &[&gz, &th], &[&a, &b, &other])["cpu"], 500);
        assert_eq!(summary(&amounts(&gz.spec.budget), &[("cpu", 6000)].into()), "cpu 6/10");
    }
}
