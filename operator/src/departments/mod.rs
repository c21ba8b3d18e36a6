//! The department tree (部门树): each Department's place in it, what is handed down from its
//! budget and what its subtree uses, as its status. The budget itself is kept at admission
//! (the webhook, with [`ledger`]); this controller reports what holds, so a budget broken
//! anyway (the webhook down, an admin's force) is a condition, an Event and a metric.

pub mod budget;
pub mod ledger;
pub mod tree;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use tracing::{info_span, warn};

use crate::{
    api::{
        Tenant,
        department::{Department, DepartmentStatus},
    },
    conditions::{self, Observed},
    context::Context,
    error::Result,
};

const CONTROLLER: &str = "department";

/// The departments a tenant's change concerns: its own and every one above it (their `used`).
fn chain(departments: &[&Department], code: &str) -> Vec<String> {
    match budget::path(code, departments) {
        Ok(p) => p,
        Err(_) => vec![code.to_string()],
    }
}

fn refs_for(
    store: &kube::runtime::reflector::Store<DeserializeGuard<Department>>,
    codes: &[String],
) -> Vec<ObjectRef<DeserializeGuard<Department>>> {
    store
        .state()
        .iter()
        .filter(|d| d.0.as_ref().is_ok_and(|d| codes.contains(&d.spec.code)))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let hub = ctx.watches.clone();
    let store = hub.departments.store();
    let (for_tenants, for_departments) = (store.clone(), store.clone());
    Controller::for_shared_stream(hub.departments.subscribe(), store)
        .with_config(kube::runtime::controller::Config::default().debounce(Duration::from_millis(500)))
        // A tenant's quota or use concerns its department and every one above it.
        .watches_shared_stream(hub.tenants.subscribe(), move |t: Arc<DeserializeGuard<Tenant>>| {
            let Ok(t) = t.0.as_ref() else { return Vec::new() };
            let all = for_tenants.state();
            let all: Vec<&Department> = all.iter().filter_map(|d| d.0.as_ref().ok()).collect();
            refs_for(&for_tenants, &chain(&all, &t.spec.department.code))
        })
        // A department's budget or parent concerns the whole tree (paths, children, sums): a
        // tree is a few hundred departments at most.
        .watches_shared_stream(hub.departments.subscribe(), move |_d: Arc<DeserializeGuard<Department>>| {
            for_departments.state().iter().map(|d| ObjectRef::from_obj(d.as_ref())).collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(10)), ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "department reconcile");
            }
        })
        .await;
}

/// The status of `d` from the tree and tenants as the caches show them.
pub fn status(d: &Department, departments: &[&Department], tenants: &[&Tenant]) -> (DepartmentStatus, Observed) {
    let code = d.spec.code.as_str();
    let takers = budget::takers(code, departments, tenants);
    let allocated = budget::allocated(&takers);
    let limit = budget::amounts(&d.spec.budget);
    let path = budget::path(code, departments);
    let duplicate = departments.iter().any(|o| o.spec.code == code && o.name_any() != d.name_any());
    let observed = if duplicate {
        Observed::new("Ready", false, "DuplicateCode", format!("spec.code: another department has code {code}"))
    } else {
        match (&path, budget::fits(code, &limit, &takers)) {
            (Err(why), _) => Observed::new("Ready", false, "ParentNotFound", why.clone()),
            (Ok(_), Err(over)) => Observed::new("Ready", false, "OverBudget", over.message),
            (Ok(_), Ok(())) => Observed::new("Ready", true, "WithinBudget", budget::summary(&limit, &allocated)),
        }
    };
    let mut own: Vec<String> =
        tenants.iter().filter(|t| t.spec.department.code == code).map(|t| t.name_any()).collect();
    own.sort();
    let mut children: Vec<String> =
        departments.iter().filter(|o| o.spec.parent.as_deref() == Some(code)).map(|o| o.spec.code.clone()).collect();
    children.sort();
    let status = DepartmentStatus {
        observed_generation: d.metadata.generation,
        conditions: Vec::new(),
        path: path.ok().map(|p| p.join("/")),
        children,
        tenants: own,
        allocated: budget::formatted(&allocated),
        used: budget::formatted(&budget::used(code, departments, tenants)),
        budget_summary: (!limit.is_empty()).then(|| budget::summary(&limit, &allocated)),
    };
    (status, observed)
}

async fn reconcile(obj: Arc<DeserializeGuard<Department>>, ctx: Arc<Context>) -> Result<Action> {
    let Ok(d) = obj.0.as_ref() else {
        warn!("skipping a Department that does not deserialize");
        return Ok(Action::await_change());
    };
    let name = d.name_any();
    let span = info_span!("reconcile", controller = CONTROLLER, department = %name);
    crate::watch::all_ready(&[&ctx.watches.departments, &ctx.watches.tenants]).await;
    let round = async {
        let departments = ctx.watches.departments.state();
        let departments: Vec<&Department> = departments.iter().filter_map(|d| d.0.as_ref().ok()).collect();
        let tenants = ctx.watches.tenants.state();
        let tenants: Vec<&Tenant> = tenants.iter().filter_map(|t| t.0.as_ref().ok()).collect();
        let (mut status, observed) = status(d, &departments, &tenants);
        let previous = d.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
        status.conditions =
            conditions::merge(previous, std::slice::from_ref(&observed), d.metadata.generation, jiff::Timestamp::now());
        let was = previous.iter().find(|c| c.type_ == "Ready");
        let changed = was.is_none_or(|c| c.reason != observed.reason || c.message != observed.message);
        if changed && !observed.ok {
            ctx.metrics.department_problems.with_label_values(&[observed.reason.as_str()]).inc();
            let ev = Event {
                type_: EventType::Warning,
                reason: observed.reason.clone(),
                note: Some(observed.message.clone()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&ev, &d.object_ref(&())).await {
                warn!(error = %e, "publishing an event failed");
            }
        }
        let unchanged = d.status.as_ref().is_some_and(|s| {
            let mut times_aside = s.clone();
            times_aside.conditions = status.conditions.clone();
            times_aside == status && conditions::same(&s.conditions, &status.conditions)
        });
        if !unchanged {
            let api: Api<Department> = Api::all(ctx.client.clone());
            crate::status::write(&ctx.metrics, CONTROLLER, &api, &name, crate::status::Body::Whole(&status)).await?;
        }
        Ok(Action::requeue(Duration::from_secs(300)))
    };
    crate::metrics::instrumented(&ctx.metrics, CONTROLLER, span, round).await
}
