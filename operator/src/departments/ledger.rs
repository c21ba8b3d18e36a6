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

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Deserialize, Serialize};

use super::budget::{Amounts, RESOURCES, Taker};
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

/// What a reservation holds, by the budget's resources.
fn reserved(r: &Reservation) -> Amounts {
    r.amounts.iter().filter_map(|(name, v)| resource(name).map(|res| (res, i128::from(*v)))).collect()
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
        takers.insert(t, reserved(&r));
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

/// A reservation is dropped when it is recorded over once it is this old and the caches show
/// its taker as it reserved: the caches count it from then on. Without that a department
/// taking thousands of tenants a minute would carry thousands of reservations, past the
/// 256 KiB the API server allows a Department's annotations.
pub const SETTLE_SECONDS: i64 = 10;

/// This process's reservations, one department at a time: admissions here against the same
/// department wait for each other instead of racing on its `resourceVersion`, and each starts
/// from the Department as the last one wrote it (the watch may not have it yet).
#[derive(Default)]
pub struct Ledger {
    written: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Department>>>>>,
}

impl Ledger {
    fn slot(&self, name: &str) -> Arc<tokio::sync::Mutex<Option<Department>>> {
        match self.written.lock() {
            Ok(mut w) => w.entry(name.to_string()).or_default().clone(),
            Err(_) => Default::default(),
        }
    }
}

/// Takes `ask.amounts` for `ask.who` from the department's budget, if `decide` says it fits.
/// `decide` is given the Department and what is laid over the cached takers: every standing
/// reservation and the ask. `cached` is the Department as the caches have it, tried first;
/// `shown` says whether the caches already show a taker as it reserved (see [`SETTLE_SECONDS`]).
pub async fn reserve(
    client: &Client,
    ledger: &Ledger,
    ask: Ask<'_>,
    cached: Option<Department>,
    decide: impl Fn(&Department, &BTreeMap<Taker, Amounts>) -> Result<(), String>,
    shown: impl Fn(&Taker, &Amounts) -> bool,
) -> Result<(), String> {
    let Ask { name, code, who, amounts, dry_run } = ask;
    let api: Api<Department> = Api::all(client.clone());
    let slot = ledger.slot(name);
    let mut last = slot.lock().await;
    // Newest first: what this process last wrote, else the cache; once refused or outrun, the
    // API server's copy.
    let mut start = last.take().or(cached);
    for _ in 0..ATTEMPTS {
        let (dept, fresh) = match start.take() {
            Some(d) => (d, false),
            None => {
                let found =
                    api.get_opt(name).await.map_err(|e| format!("reading department {code} failed: {e}; retry"))?;
                let Some(d) = found else { return Ok(()) };
                (d, true)
            }
        };
        if dept.spec.code != code {
            if fresh {
                return Ok(());
            }
            continue;
        }
        let now = jiff::Timestamp::now().as_second();
        let mut overlay = with_reservations(&dept.metadata, now, BTreeMap::new());
        overlay.insert(who.clone(), amounts.clone());
        match decide(&dept, &overlay) {
            Ok(()) => {}
            Err(e) if fresh => return Err(e),
            // A copy that may be behind refuses: ask the API server before refusing.
            Err(_) => continue,
        }
        if dry_run {
            return Ok(());
        }
        let mut kept = standing(&dept.metadata, now);
        kept.retain(|k, r| {
            let settled = now - r.at >= SETTLE_SECONDS;
            !(settled && taker(k).is_some_and(|t| shown(&t, &reserved(r))))
        });
        let stored: BTreeMap<String, i64> =
            amounts.iter().map(|(k, v)| (k.to_string(), i64::try_from(*v).unwrap_or(i64::MAX))).collect();
        kept.insert(key(&who), Reservation { at: now, amounts: stored });
        let text = serde_json::to_string(&kept).map_err(|e| e.to_string())?;
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": dept.resource_version(), "annotations": {RESERVATIONS: text}}
        });
        let params = PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..Default::default() };
        match api.patch(&dept.name_any(), &params, &Patch::Merge(&patch)).await {
            Ok(written) => {
                *last = Some(written);
                return Ok(());
            }
            // Another writer was first (another replica, an admin): read again, with its change.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(format!("recording the reservation on department {code} failed: {e}; retry")),
        }
    }
    Err(format!("department {code} is being changed by many requests at once; retry"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::{self, Answer};
    use serde_json::{Value, json};
    use std::sync::Mutex;

    /// A fake API server holding one Department: GET answers it, a merge PATCH whose
    /// `resourceVersion` is not the current one gets 409, else its annotations are merged.
    fn server(dept: &Department) -> (Client, fake_api::Recorded, Arc<Mutex<Value>>) {
        let stored = Arc::new(Mutex::new(serde_json::to_value(dept).unwrap_or_default()));
        let state = stored.clone();
        let (client, recorded) = fake_api::serve(move |r| {
            let Ok(mut d) = state.lock() else { return Answer::status(500, "InternalError", "poisoned") };
            if r.method == http::Method::GET {
                return Answer::ok(d.clone());
            }
            let current = d["metadata"]["resourceVersion"].clone();
            if r.body["metadata"]["resourceVersion"] != current {
                return Answer::status(409, "Conflict", "the object has been modified");
            }
            let next = current.as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            d["metadata"]["resourceVersion"] = json!(next.to_string());
            d["metadata"]["annotations"] = r.body["metadata"]["annotations"].clone();
            Answer::ok(d.clone())
        });
        (client, recorded, stored)
    }

    fn within(d: &Department, overlay: &BTreeMap<Taker, Amounts>) -> Result<(), String> {
        let limit = super::super::budget::amounts(&d.spec.budget)["cpu"];
        let asked: i128 = overlay.values().filter_map(|a| a.get("cpu")).sum();
        if asked <= limit { Ok(()) } else { Err(format!("{asked} > {limit}")) }
    }

    fn reservations(d: &Value) -> BTreeMap<String, Reservation> {
        let text = d["metadata"]["annotations"][RESERVATIONS].as_str().unwrap_or("{}").to_string();
        serde_json::from_str(&text).unwrap_or_default()
    }

    #[tokio::test]
    async fn admissions_here_start_from_the_last_write_reread_when_outrun_and_drop_settled_reservations() {
        let mut dept = crate::departments::fixture("GZ", None, Some("10"));
        dept.metadata.resource_version = Some("1".into());
        let (client, recorded, stored) = server(&dept);
        let ledger = Ledger::default();
        fn ask<'a>(who: &str, amounts: &'a Amounts) -> Ask<'a> {
            Ask { name: "gz", code: "GZ", who: Taker::Tenant(who.into()), amounts, dry_run: false }
        }
        let (one, four, twelve): (Amounts, Amounts, Amounts) =
            ([("cpu", 1000)].into(), [("cpu", 4000)].into(), [("cpu", 12_000)].into());
        let held = || stored.lock().map(|d| d.clone()).unwrap_or_default();
        let never = |_: &Taker, _: &Amounts| false;

        // From the cache; then from what this process wrote, though the cache is still at "1".
        reserve(&client, &ledger, ask("a", &four), Some(dept.clone()), within, never).await.expect("a fits");
        reserve(&client, &ledger, ask("b", &four), Some(dept.clone()), within, never).await.expect("b fits");
        assert_eq!(recorded.lines(), ["PATCH /apis/zhengyun.io/v1alpha1/departments/gz"; 2], "no read, no conflict");

        // An admin raises the budget meanwhile: the write is outrun, read again, decided again.
        // (Asking more than the old copy holds would be refused there and read again first.)
        if let Ok(mut d) = stored.lock() {
            d["metadata"]["resourceVersion"] = json!("50");
            d["spec"]["budget"]["cpu"] = json!("20");
        }
        reserve(&client, &ledger, ask("c", &one), Some(dept.clone()), within, never).await.expect("c fits");
        assert_eq!(
            recorded.lines()[2..],
            [
                "PATCH /apis/zhengyun.io/v1alpha1/departments/gz",
                "GET /apis/zhengyun.io/v1alpha1/departments/gz",
                "PATCH /apis/zhengyun.io/v1alpha1/departments/gz"
            ]
        );
        assert_eq!(reservations(&held()).len(), 3);

        // Refused on a copy that may be behind: asked again before refusing; nothing written.
        let before = recorded.all().len();
        let err = reserve(&client, &ledger, ask("d", &twelve), Some(dept.clone()), within, never).await;
        assert_eq!(err, Err("21000 > 20000".to_string()));
        assert_eq!(recorded.lines()[before..], ["GET /apis/zhengyun.io/v1alpha1/departments/gz"]);

        // Reservations the caches show, and older than SETTLE_SECONDS, go with the next write.
        if let Ok(mut d) = stored.lock() {
            let mut all = reservations(&d);
            for r in all.values_mut() {
                r.at -= SETTLE_SECONDS;
            }
            d["metadata"]["annotations"][RESERVATIONS] = json!(serde_json::to_string(&all).unwrap_or_default());
        }
        let shown = |t: &Taker, a: &Amounts| *t == Taker::Tenant("a".into()) && a["cpu"] == 4000;
        reserve(&client, &ledger, ask("e", &four), None, within, shown).await.expect("e fits");
        let left: Vec<String> = reservations(&held()).into_keys().collect();
        assert_eq!(left, ["Tenant/b", "Tenant/c", "Tenant/e"], "a settled; b and c not shown yet");
    }

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
