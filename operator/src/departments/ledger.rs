//! Reservations against a department's budget: how two admins at once cannot both take its
//! last share.
//!
//! The webhook decides from its caches, which can be a moment behind, and two admissions can
//! run at the same time on two replicas. So before admitting a change that takes more of a
//! budget, the webhook records the taker's new amounts on the Department itself (an
//! annotation), with the Department's `resourceVersion` as a precondition. Of two admissions at
//! once, one write wins; the other reads the Department again, now with the winner's
//! reservation in it, and decides again. A reservation stands for [`HOLD`], longer than any
//! cache lag: by then the taker is in the caches (or was never stored, and is rightly
//! forgotten). Reservations only ever count more than is taken, never less.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Deserialize, Serialize};

use super::budget::{Amounts, OverBudget, RESOURCES, Taker};
use crate::{api::department::Department, labels};

/// The annotation on a Department that holds its reservations.
pub const RESERVATIONS: &str = "zhengyun.io/budget-reservations";
/// How long a reservation stands.
pub const HOLD_SECONDS: i64 = 60;
/// How many times an admission reads the Department again after losing a race.
const ATTEMPTS: usize = 5;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reservation {
    /// Unix seconds when it was made.
    at: i64,
    /// Thousandths of a unit, by the budget's resource names.
    amounts: BTreeMap<String, i64>,
}

fn key(t: &Taker) -> String {
    match t {
        Taker::Department(c) => format!("Department/{c}"),
        Taker::Tenant(n) => format!("Tenant/{n}"),
    }
}

fn taker(key: &str) -> Option<Taker> {
    let (kind, name) = key.split_once('/')?;
    match kind {
        "Department" => Some(Taker::Department(name.into())),
        "Tenant" => Some(Taker::Tenant(name.into())),
        _ => None,
    }
}

fn resource(name: &str) -> Option<&'static str> {
    RESOURCES.iter().map(|(r, _, _)| *r).find(|r| *r == name)
}

/// The reservations a Department's metadata holds that still stand at `now`.
fn standing(meta: &ObjectMeta, now: i64) -> BTreeMap<String, Reservation> {
    let text = meta.annotations.as_ref().and_then(|a| a.get(RESERVATIONS));
    let all: BTreeMap<String, Reservation> = text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    all.into_iter().filter(|(_, r)| now - r.at < HOLD_SECONDS && r.at <= now + HOLD_SECONDS).collect()
}

/// `takers` as the caches show them, with every standing reservation laid over (a reservation
/// is the newer word on its taker).
pub fn with_reservations(
    meta: &ObjectMeta,
    now: i64,
    mut takers: BTreeMap<Taker, Amounts>,
) -> BTreeMap<Taker, Amounts> {
    for (k, r) in standing(meta, now) {
        let Some(t) = taker(&k) else { continue };
        let amounts: Amounts =
            r.amounts.iter().filter_map(|(name, v)| resource(name).map(|res| (res, i128::from(*v)))).collect();
        takers.insert(t, amounts);
    }
    takers
}

/// What an admission asks of a department's budget.
pub struct Ask<'a> {
    /// The Department object's name, and its code.
    pub name: &'a str,
    pub code: &'a str,
    pub who: Taker,
    pub amounts: &'a Amounts,
    /// Decided, nothing recorded.
    pub dry_run: bool,
}

/// Takes `ask.amounts` for `ask.who` from the department's budget, if `check` (given every
/// taker: `takers`, the cached ones, with the standing reservations and the ask laid over)
/// says it fits.
pub async fn reserve(
    client: &Client,
    ask: Ask<'_>,
    takers: impl Fn() -> BTreeMap<Taker, Amounts>,
    check: impl Fn(&Department, &BTreeMap<Taker, Amounts>) -> Result<(), OverBudget>,
) -> Result<(), String> {
    let Ask { name, code, who, amounts, dry_run } = ask;
    let api: Api<Department> = Api::all(client.clone());
    for _ in 0..ATTEMPTS {
        // The Department fresh: its reservations and version as they are now.
        let found = api.get_opt(name).await.map_err(|e| format!("reading department {code} failed: {e}; retry"))?;
        let Some(dept) = found.filter(|d| d.spec.code == code) else { return Ok(()) };
        let now = jiff::Timestamp::now().as_second();
        let mut all = with_reservations(&dept.metadata, now, takers());
        all.insert(who.clone(), amounts.clone());
        check(&dept, &all).map_err(|e| e.message)?;
        if dry_run {
            return Ok(());
        }
        let mut kept = standing(&dept.metadata, now);
        let stored: BTreeMap<String, i64> =
            amounts.iter().map(|(k, v)| (k.to_string(), i64::try_from(*v).unwrap_or(i64::MAX))).collect();
        kept.insert(key(&who), Reservation { at: now, amounts: stored });
        let text = serde_json::to_string(&kept).map_err(|e| e.to_string())?;
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": dept.resource_version(), "annotations": {RESERVATIONS: text}}
        });
        let params = PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..Default::default() };
        match api.patch(&dept.name_any(), &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            // Another admission reserved first: read again, with its reservation.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(format!("recording the reservation on department {code} failed: {e}; retry")),
        }
    }
    Err(format!("department {code} is being changed by many requests at once; retry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_lay_over_the_cache_and_lapse() {
        let mut meta = ObjectMeta::default();
        let text = r#"{"Tenant/a": {"at": 1000, "amounts": {"cpu": 4000}}, "Tenant/old": {"at": 900, "amounts": {"cpu": 9000}}, "Bogus/x": {"at": 1000, "amounts": {}}}"#;
        meta.annotations = Some([(RESERVATIONS.to_string(), text.to_string())].into());
        let cached: BTreeMap<Taker, Amounts> =
            [(Taker::Tenant("a".into()), [("cpu", 1000)].into()), (Taker::Tenant("b".into()), [("cpu", 2000)].into())]
                .into();
        let all = with_reservations(&meta, 1010, cached);
        assert_eq!(all[&Taker::Tenant("a".into())]["cpu"], 4000, "the reservation is the newer word");
        assert_eq!(all[&Taker::Tenant("b".into())]["cpu"], 2000);
        assert!(!all.contains_key(&Taker::Tenant("old".into())), "lapsed after {HOLD_SECONDS} s");
        assert_eq!(all.len(), 2);
        // Unreadable: as if there were none (the caches still count).
        meta.annotations = Some([(RESERVATIONS.to_string(), "{".to_string())].into());
        assert_eq!(with_reservations(&meta, 1010, BTreeMap::new()).len(), 0);
    }
}
