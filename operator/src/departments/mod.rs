//! The department tree (部门树): each Department's place in it, what is handed down from its
//! budget and what its subtree uses, as its status. The budget itself is kept at admission
//! (the webhook, with [`ledger`]); this controller reports what holds, so a budget broken
//! anyway (the webhook down, an admin's force) is a condition, an Event and a metric.

pub mod budget;
pub mod ledger;
pub mod tree;

use std::{sync::Arc, time::Duration};

use kube::{
    Api, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use tracing::warn;

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

/// The department controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, problems: prometheus::IntCounterVec) -> Arc<Departments> {
    Arc::new(Departments {
        ctx,
        applied: Default::default(),
        problems,
        status: crate::status::Writer::new(CONTROLLER),
        pace: crate::status::Pace::new(SUMS_EVERY),
    })
}

impl crate::controller::Reconciler for Departments {
    crate::controller::plumbing!(Department, CONTROLLER, departments);

    fn reads(hub: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![&hub.tenants, &hub.reader_bindings]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<Department>) -> crate::controller::Wired<Department> {
        let hub = self.ctx.watches.clone();
        let store = hub.departments.store();
        let (for_tenants, for_departments, now) = (store.clone(), store.clone(), store);
        // What wakes the whole tree: a department coming, going or changing its spec (a new
        // generation). Not its status or its annotations, which move with every tenant and every
        // budget reservation the webhook records (that woke all 148 departments of the scale
        // benchmark's tree at each Tenant create).
        let generations: std::sync::Mutex<std::collections::HashMap<String, Option<i64>>> = Default::default();
        c.with_config(kube::runtime::controller::Config::default().debounce(Duration::from_millis(500)))
            // A tenant's quota or use concerns its department and every one above it.
            .watches_shared_stream(hub.tenants.subscribe(), move |t: Arc<DeserializeGuard<Tenant>>| {
                let Ok(t) = t.0.as_ref() else { return Vec::new() };
                let all = for_tenants.state();
                let all: Vec<&Department> = all.iter().filter_map(|d| d.0.as_ref().ok()).collect();
                refs_for(&for_tenants, &chain(&all, &t.spec.department.code))
            })
            // A department's budget or parent concerns the whole tree (paths, children, sums): a
            // tree is a few hundred departments at most.
            .watches_shared_stream(hub.departments.subscribe(), move |d: Arc<DeserializeGuard<Department>>| {
                let name = d.name_any();
                let gone = now.get(&ObjectRef::new(&name)).is_none();
                let seen = generations.lock().ok().and_then(|mut g| g.insert(name, d.meta().generation));
                if !gone && seen == Some(d.meta().generation) {
                    return Vec::new();
                }
                for_departments.state().iter().map(|d| ObjectRef::from_obj(d.as_ref())).collect::<Vec<_>>()
            })
    }

    fn error_policy(&self, _err: &crate::Error) -> Action {
        Action::requeue(Duration::from_secs(10))
    }

    async fn reconcile(&self, d: &Department) -> Result<Action> {
        reconcile(d, self).await
    }
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

/// The controller's state: the shared [`Context`] and what it applied.
pub struct Departments {
    ctx: Arc<Context>,
    applied: crate::apply::Memory,
    /// Departments found broken (a parent missing, a budget exceeded anyway), by reason.
    problems: prometheus::IntCounterVec,
    status: crate::status::Writer,
    pace: crate::status::Pace,
}

/// How often a department's status may be written while only its sums and tenant list move
/// (every Tenant create in a bulk of 10,000 moves them); a change of its Ready condition, path,
/// children or generation is written at once.
const SUMS_EVERY: Duration = Duration::from_secs(10);

/// Whether the difference between what is shown and what a round computed may wait for the pace.
fn may_wait(shown: Option<&DepartmentStatus>, status: &DepartmentStatus) -> bool {
    let ready = |s: &DepartmentStatus| {
        s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone()))
    };
    shown.is_some_and(|s| {
        s.observed_generation == status.observed_generation
            && s.path == status.path
            && s.children == status.children
            && ready(s) == ready(status)
    })
}

async fn reconcile(d: &Department, state: &Departments) -> Result<Action> {
    let ctx = &state.ctx;
    let departments = ctx.watches.departments.state();
    let departments: Vec<&Department> = departments.iter().filter_map(|d| d.0.as_ref().ok()).collect();
    // The tenants of its subtree, from the index by department: all its status reads.
    let tenants: Vec<_> = budget::subtree(&d.spec.code, &departments)
        .iter()
        .flat_map(|code| ctx.watches.tenants.by(crate::watch::TENANTS_BY_DEPARTMENT, code))
        .collect();
    let tenants: Vec<&Tenant> = tenants.iter().filter_map(|t| t.0.as_ref().ok()).collect();
    // The admin group's binding (removed by the garbage collector with the Department; a
    // group dropped from the spec leaves it until then, which the webhook makes harmless:
    // it only lets admins act for departments whose spec names their group).
    // The admin group's binding, with no subject once the group leaves the spec (its members
    // lose the role at once; the binding itself goes with the Department). Only for a
    // department that has or had a group: the others need none.
    let binding_name = admin_binding_name(d);
    let cached = ctx.watches.reader_bindings.get(&ObjectRef::new(&binding_name));
    if let Some(binding) = admin_binding(d)
        && (d.spec.admin_group.is_some() || cached.is_some())
    {
        let seen = crate::apply::Seen::meta(cached.as_deref());
        if crate::apply::ensure_cluster(&ctx.client, &state.applied, &binding, seen).await? {
            ctx.metrics.child_writes.with_label_values(&[CONTROLLER, "ClusterRoleBinding"]).inc();
        }
    }
    let (mut status, observed) = status(d, &departments, &tenants);
    let previous = d.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    status.conditions =
        conditions::merge(previous, std::slice::from_ref(&observed), d.metadata.generation, jiff::Timestamp::now());
    let was = previous.iter().find(|c| c.type_ == "Ready");
    let changed = was.is_none_or(|c| c.reason != observed.reason || c.message != observed.message);
    if changed && !observed.ok {
        state.problems.with_label_values(&[observed.reason.as_str()]).inc();
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
    let name = d.name_any();
    let shown = d.status.as_ref();
    if may_wait(shown, &status)
        && !shown.is_some_and(|s| crate::status::same(s, &status))
        && let Some(wait) = state.pace.wait(&name)
    {
        return Ok(Action::requeue(wait));
    }
    let api: Api<Department> = Api::all(ctx.client.clone());
    if state.status.whole(&ctx.metrics, &api, d, shown, &status).await? {
        state.pace.wrote(&name);
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The ClusterRole every department's admin group is bound to: tenants, which the webhook
/// then limits to the department's subtree. No delete: deleting a department's tenant (and
/// perhaps its data) stays with the cloud's admins.
pub const ADMIN_ROLE: &str = "zhengyun-department-admin";

pub fn admin_cluster_role() -> k8s_openapi::api::rbac::v1::ClusterRole {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec!["zhengyun.io".into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some(ADMIN_ROLE.into()),
            labels: Some([(crate::labels::MANAGED_BY.to_string(), crate::labels::MANAGER.to_string())].into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule(&["tenants"], &["get", "list", "watch", "create", "update", "patch"]),
            rule(&["departments"], &["get", "list", "watch"]),
        ]),
        aggregation_rule: None,
    }
}

fn admin_binding_name(d: &Department) -> String {
    format!("{ADMIN_ROLE}:{}", d.name_any())
}

/// The binding of a department's admin group (none: no subject) to [`ADMIN_ROLE`], owned by
/// the Department.
pub fn admin_binding(d: &Department) -> Option<k8s_openapi::api::rbac::v1::ClusterRoleBinding> {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
    let uid = d.metadata.uid.clone()?;
    Some(ClusterRoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(admin_binding_name(d)),
            labels: Some([(crate::labels::MANAGED_BY.to_string(), crate::labels::MANAGER.to_string())].into()),
            owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "zhengyun.io/v1alpha1".into(),
                kind: "Department".into(),
                name: d.name_any(),
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: ADMIN_ROLE.into(),
        },
        subjects: Some(
            d.spec
                .admin_group
                .iter()
                .map(|group| Subject {
                    kind: "Group".into(),
                    name: group.clone(),
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    namespace: None,
                })
                .collect(),
        ),
    })
}

/// The departments whose admin group holds one of `groups`: their codes.
pub fn administered<'a>(departments: &[&'a Department], groups: &[String]) -> Vec<&'a str> {
    departments
        .iter()
        .filter(|d| d.spec.admin_group.as_ref().is_some_and(|g| groups.contains(g)))
        .map(|d| d.spec.code.as_str())
        .collect()
}

/// Whether a department admin of `administered` may manage a tenant of department `code`: it
/// is one of theirs or below one of theirs.
pub fn admin_may(departments: &[&Department], administered: &[&str], code: &str) -> bool {
    administered.iter().any(|a| budget::subtree(a, departments).contains(code))
}

/// A department for tests: code, parent, cpu budget; name `code` in lower case, a uid.
/// `zhengyun_department_problems_total`, registered into `m`'s registry.
pub fn problems_metric(m: &crate::metrics::Metrics) -> prometheus::IntCounterVec {
    use prometheus::{IntCounterVec, Opts};
    let department_problems = crate::metrics::must(IntCounterVec::new(
        Opts::new(
            "zhengyun_department_problems_total",
            "Times a department was found broken, by reason (ParentNotFound, OverBudget, DuplicateCode)",
        ),
        &["reason"],
    ));
    m.register(department_problems.clone());
    department_problems
}

#[cfg(test)]
pub(crate) fn fixture(code: &str, parent: Option<&str>, cpu: Option<&str>) -> Department {
    let mut d = Department::new(
        &code.to_lowercase(),
        crate::api::department::DepartmentSpec {
            code: code.into(),
            name_zh: format!("{code}局"),
            name: None,
            parent: parent.map(String::from),
            admin_group: None,
            budget: crate::api::TenantQuota { cpu: cpu.map(crate::api::Amount::from), ..Default::default() },
        },
    );
    d.metadata.uid = Some(format!("uid-{code}"));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(code: &str, parent: Option<&str>, group: Option<&str>) -> Department {
        let mut d = fixture(code, parent, None);
        d.spec.admin_group = group.map(String::from);
        d
    }

    #[test]
    fn admins_manage_their_subtree_only() {
        let gd = dept("GD", None, Some("gd-admins"));
        let gz = dept("GZ", Some("GD"), Some("gz-admins"));
        let th = dept("TH", Some("GZ"), None);
        let sz = dept("SZ", Some("GD"), None);
        let all = [&gd, &gz, &th, &sz];
        let mine = administered(&all, &["gz-admins".to_string(), "other".to_string()]);
        assert_eq!(mine, ["GZ"]);
        assert!(admin_may(&all, &mine, "GZ") && admin_may(&all, &mine, "TH"));
        assert!(!admin_may(&all, &mine, "GD") && !admin_may(&all, &mine, "SZ") && !admin_may(&all, &mine, "NOSUCH"));
        let province = administered(&all, &["gd-admins".to_string()]);
        assert!(["GD", "GZ", "TH", "SZ"].iter().all(|c| admin_may(&all, &province, c)));
        assert!(administered(&all, &[]).is_empty());
    }

    #[test]
    fn the_admin_binding_names_the_group_and_has_no_subject_without_one() {
        let b = admin_binding(&dept("GZ", None, Some("gz-admins"))).expect("binding");
        assert_eq!(b.role_ref.name, ADMIN_ROLE);
        assert_eq!(b.subjects.as_deref().map(|s| s[0].name.as_str()), Some("gz-admins"));
        assert_eq!(b.metadata.owner_references.unwrap_or_default()[0].uid, "uid-GZ");
        let none = admin_binding(&dept("GZ", None, None)).expect("binding");
        assert_eq!(none.subjects, Some(vec![]));
        // The role lets admins write tenants, never delete them.
        let role = admin_cluster_role();
        assert!(role.rules.unwrap_or_default().iter().all(|r| !r.verbs.iter().any(|v| v == "delete")));
    }

    /// A round of the controller against a fake API server whose stores list `listed`
    /// departments and one tenant `edu` of GZ taking 4 CPUs; what it writes, round after round.
    mod rounds {
        use super::*;
        use crate::fake_api::{self, writes};
        use serde_json::json;

        fn listed(d: &Department) -> serde_json::Value {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["metadata"]["resourceVersion"] = json!("3");
            v
        }

        async fn controller_over(gz: &Department) -> (Arc<Departments>, fake_api::Recorded) {
            let edu = json!({
                "apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": "edu", "resourceVersion": "4"},
                "spec": {"department": {"code": "GZ", "name": "GZ"}, "zone": "z",
                         "owners": [{"kind": "User", "name": "a"}], "namespaces": [{"suffix": "a"}],
                         "quota": {"cpu": "4"}, "securityLevel": 2}
            });
            // The binding as the API server keeps it after our write (writes are echoed at
            // version 9): a later round finds it in place.
            let binding = json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "zhengyun-department-admin:gz", "resourceVersion": "9",
                             "labels": {(crate::labels::MANAGED_BY): crate::labels::MANAGER}}
            });
            let (ctx, recorded) = fake_api::context(vec![
                ("/apis/zhengyun.io/v1alpha1/departments", vec![listed(gz)]),
                ("/apis/zhengyun.io/v1alpha1/tenants", vec![edu]),
                ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", vec![binding]),
            ]);
            let problems = prometheus::IntCounterVec::new(prometheus::Opts::new("p", "p"), &["reason"])
                .unwrap_or_else(|e| panic!("{e}"));
            let state = controller(ctx.clone(), problems);
            let hub = &ctx.watches;
            let reads = [&hub.departments as &dyn crate::watch::Ready, &hub.tenants, &hub.reader_bindings];
            fake_api::listed(&reads).await;
            (state, recorded)
        }

        #[tokio::test]
        async fn a_department_gets_its_binding_and_status_once_and_nothing_when_settled() {
            let mut gz = dept("GZ", None, Some("gz-admins"));
            gz.spec.budget.cpu = Some("10".into());
            gz.metadata.resource_version = Some("3".into());
            let (state, recorded) = controller_over(&gz).await;
            reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                writes(&recorded),
                [
                    "PATCH /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/zhengyun-department-admin:gz",
                    "PATCH /apis/zhengyun.io/v1alpha1/departments/gz/status"
                ]
            );
            let body = &recorded.all().iter().rfind(|r| r.uri.contains("/status")).map(|r| r.body.clone());
            let status = body.as_ref().map(|b| b["status"].clone()).unwrap_or_default();
            assert_eq!(status["tenants"], json!(["edu"]));
            assert_eq!(status["allocated"]["cpu"], json!("4"));
            assert_eq!(status["conditions"][0]["reason"], json!("WithinBudget"));

            // The same round again: the binding in place at the version our write left, the
            // status written already though the cache still shows the one it replaced.
            reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(writes(&recorded).len(), 2, "{:#?}", writes(&recorded));
        }

        #[tokio::test]
        async fn sums_that_move_again_wait_for_the_pace_but_a_ready_change_does_not() {
            let mut gz = dept("GZ", None, None);
            gz.spec.budget.cpu = Some("10".into());
            gz.metadata.resource_version = Some("3".into());
            let (state, recorded) = controller_over(&gz).await;
            reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            let status_writes = || writes(&recorded).iter().filter(|w| w.ends_with("/status")).count();
            assert_eq!(status_writes(), 1);

            // The cache now shows a status from before edu came (no tenants, nothing
            // allocated): only the sums differ, a moment after the last write.
            let body = recorded.all().iter().rfind(|r| r.uri.contains("/status")).map(|r| r.body.clone());
            let mut shown: DepartmentStatus =
                serde_json::from_value(body.map(|b| b["status"].clone()).unwrap_or_default()).unwrap_or_default();
            shown.tenants.clear();
            shown.allocated.clear();
            shown.budget_summary = Some("cpu 0/10".into());
            gz.status = Some(shown);
            gz.metadata.resource_version = Some("10".into());
            let action = reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status_writes(), 1, "sums written again within {SUMS_EVERY:?}: {:#?}", writes(&recorded));
            assert_ne!(action, Action::requeue(Duration::from_secs(300)), "the deferred write has its own time");

            // A budget cut below what is handed down turns Ready: written at once.
            gz.spec.budget.cpu = Some("3".into());
            reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status_writes(), 2, "{:#?}", writes(&recorded));
        }

        #[tokio::test]
        async fn a_budget_cut_below_what_is_handed_down_is_a_condition_and_an_event_and_a_dropped_group_loses_its_binding()
         {
            let mut gz = dept("GZ", None, None);
            gz.spec.budget.cpu = Some("3".into());
            gz.metadata.resource_version = Some("3".into());
            let (state, recorded) = controller_over(&gz).await;
            reconcile(&gz, &state).await.unwrap_or_else(|e| panic!("{e}"));
            let w = writes(&recorded);
            // The group left the spec (a binding of it is listed): the binding keeps no subject.
            let binding = recorded.all().into_iter().find(|r| r.uri.contains("clusterrolebindings")).map(|r| r.body);
            let subjects = binding.map(|b| b["subjects"].clone()).unwrap_or(json!(["no binding written"]));
            // Left out of the apply: our field manager lets go of the subjects it set.
            assert!(subjects.as_array().is_none_or(|s| s.is_empty()), "{subjects} in {w:#?}");
            assert!(w.iter().any(|w| w.contains("/events")), "an Event: {w:#?}");
            let body = recorded.all().iter().rfind(|r| r.uri.contains("/status")).map(|r| r.body.clone());
            let condition = body.map(|b| b["status"]["conditions"][0].clone()).unwrap_or_default();
            assert_eq!(condition["reason"], json!("OverBudget"));
            assert!(condition["message"].as_str().is_some_and(|m| m.contains("tenant edu 4")), "{condition}");
            assert_eq!(state.problems.with_label_values(&["OverBudget"]).get(), 1);
        }
    }
}
