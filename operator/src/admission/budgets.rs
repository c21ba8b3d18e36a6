//! The department tree at admission: a Department's place in the tree and its budget, and a
//! Tenant's quota against its department's budget. A change that takes more of a budget is
//! recorded against it first ([`ledger`]), so two admins at once cannot both take its last share.

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    core::{DynamicObject, admission::AdmissionRequest},
};

use super::webhook::Webhook;
use crate::{
    api::{Tenant, department::Department},
    departments::{
        budget::{self, Amounts, Taker},
        ledger,
    },
};

/// Whether `new` takes no more than `old` of any budget: every resource `old` states is still
/// stated, at most as much (a resource left out is unlimited, so stating it takes less).
pub fn takes_no_more(new: &Amounts, old: &Amounts) -> bool {
    old.iter().all(|(k, v)| new.get(k).is_some_and(|n| n <= v))
}

fn departments(w: &Webhook) -> Vec<Department> {
    w.caches.departments.state().iter().filter_map(|d| d.0.as_ref().ok().cloned()).collect()
}

/// The cached tenants of department `code`, from the index: a department's budget is taken by
/// its own tenants only, so an admission reads those, not every tenant.
fn tenants(w: &Webhook, code: &str) -> Vec<std::sync::Arc<kube::core::DeserializeGuard<Tenant>>> {
    w.caches.tenants_of_department(code)
}

fn readable(ts: &[std::sync::Arc<kube::core::DeserializeGuard<Tenant>>]) -> Vec<&Tenant> {
    ts.iter().filter_map(|t| t.0.as_ref().ok()).collect()
}

/// The departments as the API server has them now: for a lookup the cache may not answer yet
/// (one created a moment ago, by the same `kubectl apply` say).
async fn fresh_departments(w: &Webhook) -> Result<Vec<Department>, String> {
    let Some(client) = w.client.as_ref() else { return Ok(departments(w)) };
    kube::Api::<Department>::all(client.clone())
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("reading the departments failed: {e}; retry"))
}

/// Whether department `d`'s budget holds its takers as cached with `overlay` laid over: from
/// the watch's sums first; counted one by one (which names them) only when those say no.
fn decide(
    w: &Webhook,
    d: &Department,
    departments: &[&Department],
    overlay: &BTreeMap<Taker, Amounts>,
) -> Result<(), String> {
    let code = d.spec.code.as_str();
    let budget = budget::amounts(&d.spec.budget);
    let tally = w.caches.tenants_tally(code);
    if budget::holds_tallied(code, &budget, tally, departments, overlay, |n| w.caches.tenant_part(n, code)) {
        return Ok(());
    }
    let ts = tenants(w, code);
    let mut all = budget::takers(code, departments, &readable(&ts));
    all.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())));
    budget::fits(code, &budget, &all).map_err(|e| e.message)
}

/// Whether the caches show `who` taking `amounts` of department `code`'s budget.
fn shown(w: &Webhook, departments: &[&Department], code: &str, who: &Taker, amounts: &Amounts) -> bool {
    match who {
        Taker::Tenant(n) => w.caches.tenant_part(n, code).as_ref() == Some(amounts),
        Taker::Department(c) => departments.iter().any(|d| {
            d.spec.code == *c && d.spec.parent.as_deref() == Some(code) && budget::amounts(&d.spec.budget) == *amounts
        }),
    }
}

/// Reserves `amounts` for `who` against department `code`'s budget, if it fits.
async fn take(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    code: &str,
    who: Taker,
    amounts: &Amounts,
) -> Result<(), String> {
    let Some(client) = w.client.as_ref() else { return Ok(()) };
    let cached = departments(w);
    let mut found = cached.iter().find(|d| d.spec.code == code).cloned();
    let from_cache = found.is_some();
    // No department tree at all: nothing to ask. Some tree but not this code: the cache may be
    // a moment behind.
    if found.is_none() && !cached.is_empty() {
        found = fresh_departments(w).await?.into_iter().find(|d| d.spec.code == code);
    }
    let Some(dept) = found else { return Ok(()) };
    let name = dept.name_any();
    let refs: Vec<&Department> = cached.iter().collect();
    let ask = ledger::Ask { name: &name, code, who, amounts, dry_run: req.dry_run };
    ledger::reserve(
        client,
        &w.ledger,
        ask,
        from_cache.then_some(dept),
        |d, overlay| decide(w, d, &refs, overlay),
        |who, amounts| shown(w, &refs, code, who, amounts),
    )
    .await
}

/// A department admin (a member of some Department's `adminGroup`) manages the tenants of
/// that department's subtree only: the tenant's department, before and after, must be in it.
/// Users in no admin group are left to RBAC (the cloud's own admins).
pub fn admin_scope(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    new: &Tenant,
    old: Option<&Tenant>,
) -> Result<(), String> {
    let groups = req.user_info.groups.clone().unwrap_or_default();
    let ds = departments(w);
    let refs: Vec<&Department> = ds.iter().collect();
    let mine = crate::departments::administered(&refs, &groups);
    if mine.is_empty() {
        return Ok(());
    }
    for code in std::iter::once(&new.spec.department.code).chain(old.map(|o| &o.spec.department.code)) {
        if !crate::departments::admin_may(&refs, &mine, code) {
            return Err(format!(
                "spec.department.code: you administer the tenants of department(s) {} and those below; {code} is not among them",
                mine.join(", ")
            ));
        }
    }
    Ok(())
}

/// A Tenant's quota against its department's budget. A department that does not exist as a
/// Department object limits nothing here (the tenant's `Department` condition says so).
pub async fn tenant(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    new: &Tenant,
    old: Option<&Tenant>,
) -> Result<(), String> {
    let code = new.spec.department.code.as_str();
    let amounts = budget::amounts(&new.spec.quota);
    if let Some(o) = old
        && o.spec.department.code == code
        && takes_no_more(&amounts, &budget::amounts(&o.spec.quota))
    {
        return Ok(());
    }
    take(w, req, code, Taker::Tenant(new.name_any()), &amounts).await.map_err(|e| format!("spec.quota: {e}"))
}

/// A Department: a code of its own, a parent that exists and no cycle, a budget that holds
/// what it already hands down, and room for it in its parent's budget.
pub async fn department(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    new: &Department,
    old: Option<&Department>,
) -> Result<(), String> {
    let code = new.spec.code.as_str();
    let with_new = |ds: Vec<Department>| -> Vec<Department> {
        let mut all: Vec<Department> = ds.into_iter().filter(|d| d.name_any() != new.name_any()).collect();
        all.push(new.clone());
        all
    };
    let mut all = with_new(departments(w));
    let tree_holds = |all: &[Department]| -> Result<(), String> {
        if let Some(other) = all.iter().find(|d| d.spec.code == code && d.name_any() != new.name_any()) {
            return Err(format!("spec.code: department {} already has code {code}", other.name_any()));
        }
        budget::path(code, &all.iter().collect::<Vec<_>>()).map(|_| ())
    };
    // What the cache refuses is asked again of the API server: a parent created a moment ago
    // (the line before in the same file) may not be in the cache yet.
    if tree_holds(&all).is_err() {
        all = with_new(fresh_departments(w).await?);
        tree_holds(&all)?;
    }
    let refs: Vec<&Department> = all.iter().collect();
    let now = jiff::Timestamp::now().as_second();
    let overlay = ledger::with_reservations(&new.metadata, now, BTreeMap::new());
    decide(w, new, &refs, &overlay).map_err(|e| format!("spec.budget: {e}"))?;
    let Some(parent) = new.spec.parent.as_deref() else { return Ok(()) };
    let amounts = budget::amounts(&new.spec.budget);
    if let Some(o) = old
        && o.spec.parent.as_deref() == Some(parent)
        && takes_no_more(&amounts, &budget::amounts(&o.spec.budget))
    {
        return Ok(());
    }
    take(w, req, parent, Taker::Department(code.into()), &amounts).await.map_err(|e| format!("spec.budget: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_or_bounding_takes_no_more_and_raising_or_unbounding_does() {
        let old: Amounts = [("cpu", 4000), ("pods", 10_000)].into();
        assert!(takes_no_more(&[("cpu", 3000), ("pods", 10_000)].into(), &old));
        assert!(takes_no_more(&[("cpu", 4000), ("pods", 10_000), ("memory", 1)].into(), &old), "a new bound");
        assert!(!takes_no_more(&[("cpu", 5000), ("pods", 10_000)].into(), &old));
        assert!(!takes_no_more(&[("cpu", 4000)].into(), &old), "pods unbounded now");
    }
}
