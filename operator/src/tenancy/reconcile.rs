//! The Tenant controller: watches tenants and everything they produce, and converges.
//!
//! The pipeline per round: validate → claim namespaces (never taking over someone else's) →
//! apply namespaces → split and apply quotas → limits, network policy, and last the owners'
//! access (so nobody can create pods in a namespace before its quota exists) → sweep what
//! the round no longer produces → write status. Deletion goes through a finalizer that
//! follows the tenant's deletion policy.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, PostParams},
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        controller::{self, Action},
        events::{Event, EventType},
        finalizer::{Event as Finalizer, finalizer},
        reflector::ObjectRef,
    },
};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::{
    build::{self, CHILD_NAME},
    quota::{self, Observed},
    validate::{ValidatedTenant, check_zone, validate},
};
use crate::{
    api::{DeletionPolicy, QuotaStatus, SmCertificate, Tenant, TenantStatus, Zone},
    apply::{self, Seen},
    children::{self, ChildSet},
    conditions::{self, Observed as Cond},
    context::Context,
    error::{Error, Result},
    labels,
    quantity::{self, Milli},
};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "tenant";
/// Finalizer that lets the deletion policy run before a tenant disappears.
pub const FINALIZER: &str = "zhengyun.io/tenant-protection";

/// How soon to look again while a namespace is held by someone else or still terminating:
/// those are not ours to watch, so no event says when they are free.
const SOON: Duration = Duration::from_secs(2);
/// How soon to look again while waiting on what a watch reports anyway (the quota controller
/// enforcing a quota, the cache showing our own write): the timer is only a backstop. Polling
/// every two seconds instead made a tenant's rounds grow with how long the quota controller
/// takes, which grows with the number of tenants.
const BACKSTOP: Duration = Duration::from_secs(30);
/// How often to re-check a settled tenant, as a safety net under the watches.
const RESYNC: Duration = Duration::from_secs(300);
/// How long a new tenant goes without a status while it waits on nothing but the quota
/// controller. Its first status is then its Ready one: one status write a tenant, not two,
/// which at 10,000 tenants is 10,000 fewer writes to an API server the quota controller is
/// already waiting on (the controller-manager writes quota status at 20 a second by default,
/// so the last of 20,000 namespaces waits about 17 minutes). The conditions metric says
/// `QuotaReady` is false meanwhile; past this, the status says so too.
const QUOTA_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// How many tenants converge at once: enough to keep the API server busy, few enough that it
/// is never saturated by one operator (each round is a handful of writes at most).
const CONCURRENCY: u16 = 16;

/// The shared [`Context`] plus what only the tenant controller keeps.
pub struct Tenants {
    ctx: Arc<Context>,
    /// The tenants' own series and counts.
    own: Arc<super::metrics::TenantMetrics>,
    /// What this process last applied, so unchanged children are not written again.
    applied: apply::Memory,
    /// The status this process last wrote per tenant: the base for the next one, so a cache
    /// one write behind can never make the conditions' times flap.
    written: std::sync::Mutex<std::collections::HashMap<String, Written>>,
    /// When each tenant was last swept, and for which generation: the sweep scans whole stores,
    /// so it runs when the spec changed or every [`RESYNC`], not on every round.
    swept: std::sync::Mutex<std::collections::HashMap<String, (Option<i64>, std::time::Instant)>>,
    /// Quotas written whose new version the cache has not shown yet, by namespace.
    quota_written: std::sync::Mutex<std::collections::HashMap<String, QuotaWrite>>,
    /// Tenants (by UID) whose cleanup finished and whose finalizer this process removed: a
    /// round on a cached copy a moment old must not release their namespaces a second time.
    released: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a released tenant is remembered: far longer than any cache lag.
const RELEASED_MEMORY: Duration = Duration::from_secs(600);

/// A quota write the cache has not caught up with.
#[derive(Clone)]
struct QuotaWrite {
    /// The version the write replaced (none when it created the quota).
    before: Option<String>,
    /// The version it stored.
    after: Option<String>,
    /// What it wrote.
    hard: BTreeMap<String, Milli>,
}

impl QuotaWrite {
    /// Whether a cache showing the quota at version `now` has caught up with this write: it
    /// shows what we wrote, or a version other than the one our write replaced (a later write
    /// by the quota controller; a write that changed nothing leaves the version as it was).
    fn caught_up(&self, now: Option<&str>) -> bool {
        now == self.after.as_deref() || now != self.before.as_deref()
    }
}

impl Tenants {
    /// Whether the tenant's children should be swept this round: never for this generation,
    /// or not for a resync period (someone may have added an object under our labels).
    fn sweep_due(&self, tenant: &str, generation: Option<i64>) -> bool {
        self.swept
            .lock()
            .ok()
            .and_then(|s| s.get(tenant).copied())
            .is_none_or(|(g, at)| g != generation || at.elapsed() >= RESYNC)
    }
}

impl std::ops::Deref for Tenants {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// The tenant controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, own: Arc<super::metrics::TenantMetrics>) -> Arc<Tenants> {
    Arc::new(Tenants {
        ctx,
        own,
        applied: apply::Memory::default(),
        written: Default::default(),
        released: Default::default(),
        swept: Default::default(),
        quota_written: Default::default(),
    })
}

impl crate::controller::Reconciler for Tenants {
    crate::controller::plumbing!(Tenant, CONTROLLER, tenants);

    fn reads(h: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![
            &h.zones,
            &h.namespaces,
            &h.quotas,
            &h.limits,
            &h.policies,
            &h.bindings,
            &h.reader_roles,
            &h.reader_bindings,
            &h.departments,
            &h.certificates,
            // Whether the zone has nodes of the architecture a tenant asks for.
            &h.nodes,
        ]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<Tenant>) -> crate::controller::Wired<Tenant> {
        let hub = self.ctx.watches.clone();
        let (in_zone, of_department) = (hub.clone(), hub.clone());
        let departments_now = hub.departments.store();
        let department_generations: std::sync::Mutex<std::collections::HashMap<String, Option<i64>>> =
            Default::default();
        let zones_now = hub.zones.store();
        // A zone's status changes whenever one of its tenants comes or goes; only a change of its
        // spec (a new generation) or its deletion concerns its tenants.
        let zone_generations: std::sync::Mutex<std::collections::HashMap<String, Option<i64>>> = Default::default();
        c.with_config(controller::Config::default().concurrency(CONCURRENCY))
            // A zone wakes only its own tenants.
            .watches_shared_stream(hub.zones.subscribe(), move |zone: Arc<DeserializeGuard<Zone>>| {
                let name = zone.name_any();
                let generation = zone.meta().generation;
                let gone = zones_now.get(&ObjectRef::new(&name)).is_none();
                let seen = zone_generations.lock().ok().and_then(|mut g| g.insert(name.clone(), generation));
                if !gone && seen == Some(generation) {
                    return Vec::new();
                }
                in_zone
                    .tenants
                    .by(crate::watch::TENANTS_BY_ZONE, &name)
                    .iter()
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_shared_stream(hub.namespaces.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.quotas.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.limits.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.bindings.subscribe(), map_to_tenant)
            // A department coming, going or changing its spec: its tenants' Department condition.
            // Not its status, which moves with every tenant's usage (that would wake all of its
            // tenants at each pod of one).
            .watches_shared_stream(
                hub.departments.subscribe(),
                move |d: Arc<DeserializeGuard<crate::api::department::Department>>| {
                    let Ok(d) = d.0.as_ref() else { return Vec::new() };
                    let name = d.name_any();
                    let gone = departments_now.get(&ObjectRef::new(&name)).is_none();
                    let seen =
                        department_generations.lock().ok().and_then(|mut g| g.insert(name, d.metadata.generation));
                    if !gone && seen == Some(d.metadata.generation) {
                        return Vec::new();
                    }
                    of_department
                        .tenants
                        .by(crate::watch::TENANTS_BY_DEPARTMENT, &d.spec.code)
                        .iter()
                        .map(|t| ObjectRef::from_obj(t.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            .watches_shared_stream(hub.reader_roles.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.reader_bindings.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.policies.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.certificates.subscribe(), map_to_tenant)
            .watches_shared_stream(hub.gateways.subscribe(), map_to_tenant)
    }

    fn error_policy(&self, err: &Error) -> Action {
        match err {
            Error::DeletionBlocked(_) => Action::requeue(Duration::from_secs(10)),
            Error::Finalizer(inner)
                if matches!(inner.as_ref(), kube::runtime::finalizer::Error::ApplyFailed(Error::Apply { .. })) =>
            {
                Action::requeue(Duration::from_secs(15))
            }
            _ => Action::requeue(Duration::from_secs(5)),
        }
    }

    async fn reconcile(&self, tenant: &Tenant) -> Result<Action> {
        let uid = tenant.metadata.uid.clone().unwrap_or_default();
        let deleting = tenant.metadata.deletion_timestamp.is_some();
        if deleting && self.released.lock().is_ok_and(|r| r.contains_key(&uid)) {
            // Released already; the cache has yet to see the finalizer go.
            return Ok(Action::await_change());
        }
        let api: Api<Tenant> = Api::all(self.ctx.client.clone());
        let result = finalizer(&api, FINALIZER, Arc::new(tenant.clone()), |event| async {
            match event {
                Finalizer::Apply(t) => apply_tenant(&t, self).await,
                Finalizer::Cleanup(t) => cleanup(&t, self).await,
            }
        })
        .await;
        if deleting
            && result.is_ok()
            && let Ok(mut r) = self.released.lock()
        {
            r.retain(|_, at| at.elapsed() < RELEASED_MEMORY);
            r.insert(uid, std::time::Instant::now());
        }
        settle_finalizer(result).map_err(|e| Error::Finalizer(Box::new(e)))
    }
}

fn map_to_tenant<K: Resource>(obj: Arc<K>) -> Option<ObjectRef<DeserializeGuard<Tenant>>> {
    // Only ours: an unmanaged namespace that happens to carry the label wakes nobody.
    let l = obj.labels();
    if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER) && l.get(labels::ORPHANED).is_none() {
        return None;
    }
    l.get(labels::TENANT).map(|t| ObjectRef::new(t))
}

/// The cached object of a kind by namespace and name.
fn cached<K: crate::watch::Watched>(shared: &crate::watch::Shared<K>, namespace: &str, name: &str) -> Option<Arc<K>> {
    shared.get(&ObjectRef::new(name).within(namespace))
}

/// What a metadata store holds of a child, by namespace and name.
fn cached_meta<K: crate::watch::Watched>(
    metas: &crate::watch::Metas<K>,
    namespace: &str,
    name: &str,
) -> Option<Arc<PartialObjectMeta<K>>>
where
    PartialObjectMeta<K>: crate::watch::Watched,
{
    metas.get(&ObjectRef::new(name).within(namespace))
}

/// The cached children of a kind in the tenant's namespaces (every one the watch holds is
/// managed by zhengyun: it selects no other).
fn children_in<K: crate::watch::Watched>(
    metas: &crate::watch::Metas<K>,
    owned: &[String],
) -> Vec<Arc<PartialObjectMeta<K>>>
where
    PartialObjectMeta<K>: crate::watch::Watched,
{
    owned.iter().flat_map(|ns| metas.by_key(ns)).collect()
}

/// The cached objects of a kind that belong to a tenant, found through the watch's index.
fn labelled<K: crate::watch::Watched>(shared: &crate::watch::Shared<K>, tenant: &str) -> Vec<Arc<K>> {
    shared
        .by_key(tenant)
        .into_iter()
        .filter(|o| o.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER))
        .collect()
}

/// Finalizer outcomes that are not errors. Removing the finalizer from a tenant that is already
/// gone is what was wanted. Adding it can meet a stale copy (the JSON patch's test fails with 422,
/// or a conflict with 409): the watch brings the fresh tenant and the next round adds it.
fn settle_finalizer(
    result: std::result::Result<Action, kube::runtime::finalizer::Error<Error>>,
) -> std::result::Result<Action, kube::runtime::finalizer::Error<Error>> {
    use kube::runtime::finalizer::Error as F;
    match result {
        Err(F::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => Ok(Action::await_change()),
        Err(F::AddFinalizer(kube::Error::Api(s))) if s.code == 422 || s.code == 409 => {
            tracing::debug!(code = s.code, "finalizer added to a stale copy; retrying with the fresh tenant");
            Ok(Action::requeue(Duration::from_millis(500)))
        }
        other => other,
    }
}

async fn publish(ctx: &Context, tenant: &Tenant, type_: EventType, reason: &str, note: String) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &tenant.object_ref(&())).await {
        warn!(error = %e, "publishing an event failed");
    }
}

/// Whether a namespace is ours to manage for this tenant.
#[derive(Debug)]
enum Claim {
    Owned,
    /// Created by this round: the namespace as the API server stored it (the cache has yet to
    /// see it).
    Created(Box<Namespace>),
    Conflict(String),
    /// Ours again after being found stranded: what to say about it in an Event.
    Recovered(String),
    /// Being deleted, or created by someone else a moment ago: look again next round.
    NotYet,
}

fn is_ours(ns: &PartialObjectMeta<Namespace>, vt: &ValidatedTenant) -> std::result::Result<bool, String> {
    let l = ns.labels();
    let tenant = l.get(labels::TENANT);
    let managed = l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER);
    let orphaned = l.get(labels::ORPHANED).map(String::as_str) == Some("true");
    match tenant {
        Some(t) if t == &vt.name && (managed || orphaned) => {
            // An orphan is only re-adopted by a tenant of the same department.
            if orphaned && !managed && l.get(labels::DEPARTMENT) != Some(&vt.department_code) {
                return Err(format!(
                    "namespace {} was left by a tenant of department {} and is not adopted by another department",
                    ns.name_any(),
                    l.get(labels::DEPARTMENT).map(String::as_str).unwrap_or("?")
                ));
            }
            Ok(orphaned && !managed)
        }
        Some(t) if managed || orphaned => Err(format!("namespace {} belongs to tenant {t}", ns.name_any())),
        _ => Err(format!("namespace {} already exists and was not created by zhengyun", ns.name_any())),
    }
}

async fn claim(ctx: &Tenants, vt: &ValidatedTenant, name: &str) -> Result<Claim> {
    let client = &ctx.client;
    let api: Api<Namespace> = Api::all(client.clone());
    match ctx.watches.namespaces.get(&ObjectRef::new(name)) {
        None => {
            // Create, not apply: if two tenants race for one name, the loser gets AlreadyExists
            // instead of silently taking over the winner's namespace.
            let pp = PostParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..Default::default() };
            let desired = build::namespace(vt, name);
            match api.create(&pp, &desired).await {
                Ok(created) => {
                    info!(namespace = name, "created namespace");
                    // The create wrote exactly what an apply would: the same round's apply of
                    // this namespace is then a no-op, not a second write.
                    ctx.applied.remember(&desired, &created);
                    Ok(Claim::Created(Box::new(created)))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Claim::NotYet),
                Err(e) => Err(e.into()),
            }
        }
        Some(ns) => {
            if ns.metadata.deletion_timestamp.is_some() {
                return Ok(Claim::NotYet);
            }
            match is_ours(&ns, vt) {
                Ok(false) => Ok(Claim::Owned),
                Ok(true) => {
                    adopt(client, name).await?;
                    info!(namespace = name, "re-adopted orphaned namespace");
                    Ok(Claim::Owned)
                }
                Err(why) => {
                    if !(stranded(&ns, vt) && labelled_by_us(&api.get_metadata(name).await?)) {
                        return Ok(Claim::Conflict(why));
                    }
                    adopt(client, name).await?;
                    warn!(namespace = name, "re-adopted a namespace stranded without its owner marker");
                    Ok(Claim::Recovered(format!(
                        "namespace {name} had this tenant's labels, set by zhengyun, but neither {} nor {} (left by an interrupted re-adoption of an older version): re-adopted",
                        labels::MANAGED_BY,
                        labels::ORPHANED
                    )))
                }
            }
        }
    }
}

/// Takes an orphaned namespace back: its children first, then the namespace, each in one patch
/// that drops the orphan marker and puts ours back. A round stopped between the two finds the
/// namespace still marked orphaned and does it again; no state in between lacks both markers.
async fn adopt(client: &Client, name: &str) -> Result<()> {
    let adopt = serde_json::json!({ labels::ORPHANED: null, labels::MANAGED_BY: labels::MANAGER });
    relabel_children(client, name, &format!("{}=true", labels::ORPHANED), adopt.clone()).await?;
    apply::merge_labels(&Api::<Namespace>::all(client.clone()), name, adopt).await?;
    Ok(())
}

/// A namespace labelled for this tenant and its department that carries neither our marker nor
/// the orphan marker: what an interrupted re-adoption of versions before this one left.
fn stranded(ns: &PartialObjectMeta<Namespace>, vt: &ValidatedTenant) -> bool {
    let l = ns.labels();
    l.get(labels::TENANT) == Some(&vt.name)
        && l.get(labels::DEPARTMENT) == Some(&vt.department_code)
        && !l.contains_key(labels::MANAGED_BY)
        && !l.contains_key(labels::ORPHANED)
}

/// Whether our field manager set the namespace's tenant label (its managed fields say who set
/// what; the cache drops them, so this reads the namespace once, only for a stranded one).
fn labelled_by_us(ns: &PartialObjectMeta<Namespace>) -> bool {
    let tenant_label = format!("f:{}", labels::TENANT);
    ns.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(labels::FIELD_MANAGER)
            && m.fields_v1.as_ref().and_then(|f| f.0.get("f:metadata")?.get("f:labels")?.get(&tenant_label)).is_some()
    })
}

fn parse_map(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, Milli> {
    m.map(|m| m.iter().filter_map(|(k, v)| quantity::parse(&v.0).ok().map(|x| (k.clone(), x))).collect())
        .unwrap_or_default()
}

/// A round of a tenant: validate → zone → claim its namespaces → plan its quotas → build the
/// whole desired set → apply it in the safety order → sweep orphans → status.
async fn apply_tenant(tenant: &Tenant, ctx: &Tenants) -> Result<Action> {
    let vt = match validate(tenant) {
        Ok(vt) => vt,
        Err(e) => {
            publish(ctx, tenant, EventType::Warning, e.reason(), e.to_string()).await;
            let conds = vec![Cond::new("Ready", false, e.reason(), e.to_string())];
            write_status(ctx, tenant, conds, Vec::new(), None, false).await?;
            return Ok(Action::await_change());
        }
    };
    let (placement, zone_problem) = placement(ctx, &vt);
    if let Some(e) = &zone_problem {
        publish(ctx, tenant, EventType::Warning, e.reason(), e.to_string()).await;
    }
    let claims = claim_all(ctx, &vt).await?;
    for why in &claims.conflicts {
        publish(ctx, tenant, EventType::Warning, "NamespaceConflict", why.clone()).await;
    }
    for note in &claims.recovered {
        publish(ctx, tenant, EventType::Normal, "NamespaceRecovered", note.clone()).await;
    }
    let owned = &claims.owned;
    let plan = quota_plan(ctx, &vt, owned).await?;
    let department = ctx
        .watches
        .departments
        .state()
        .iter()
        .filter_map(|d| d.0.as_ref().ok())
        .find(|d| d.spec.code == vt.department_code)
        .map(|d| d.name_any());
    let desired = build::desired(
        &vt,
        &build::Inputs {
            owned,
            quotas: &plan.writes,
            placement: &placement,
            system: &ctx.cluster_resource_namespace,
            cluster_policy_owner: ctx
                .uses_cluster_network_policy()
                .then(|| tenant.controller_owner_ref(&()).unwrap_or_default()),
            uid: tenant.metadata.uid.as_deref(),
            department: department.as_deref(),
        },
    );

    let mut set = ChildSet::new(&ctx.client, &ctx.applied);
    let safe = apply_desired(ctx, &mut set, &desired, owned, &claims.created).await;
    if set.clean() && ctx.sweep_due(&vt.name, tenant.metadata.generation) {
        prune(ctx, &mut set, &vt, &desired, owned).await;
        if set.clean() {
            release_dropped(ctx, tenant, &vt).await?;
            if let Ok(mut swept) = ctx.swept.lock() {
                swept.insert(vt.name.clone(), (tenant.metadata.generation, std::time::Instant::now()));
            }
        }
    }
    let outcome = set.finish(&ctx.metrics, CONTROLLER);
    for f in &outcome.failures {
        warn!(tenant = %vt.name, kind = %f.kind, object = %f.name, error = %f.error, "applying a child failed");
        publish(ctx, tenant, EventType::Warning, "ApplyFailed", f.to_string()).await;
    }

    let failures: Vec<String> = outcome.failures.iter().map(|f| f.to_string()).collect();
    let status = super::status::compute(&super::status::Round {
        vt: &vt,
        owned,
        conflicts: &claims.conflicts,
        pending: &claims.pending,
        quotas: &plan.observed,
        settled: plan.settled,
        isolated: safe.isolated,
        bound: safe.bound,
        failures: &failures,
        zone_problem: zone_problem.as_ref().map(|e| (e.reason(), e.to_string())),
        department: department_condition(&ctx.watches, tenant),
    });
    let ready = status.ready;
    let quota_wait = status.awaits_quota_only;
    let quiet = quota_wait && younger_than(tenant, QUOTA_PATIENCE);
    write_status(ctx, tenant, status.conditions, owned.clone(), Some((status.quota, &vt, &status.used)), quiet).await?;

    if let Some(first) = outcome.failures.into_iter().next() {
        return Err(Error::Apply { kind: first.kind, name: first.name, error: first.error });
    }
    ctx.own.tenant_series.set_last_success(&vt.name, jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
    Ok(if ready && plan.settled {
        Action::requeue(RESYNC)
    } else if !claims.conflicts.is_empty() || !claims.pending.is_empty() {
        Action::requeue(SOON)
    } else if quota_wait {
        // The quota's status change wakes the round; at 10,000 tenants the quota controller
        // takes up to 15 minutes, and a 30 s timer made 14.3 rounds a tenant there against
        // 8.8 at 1,000 (bench/scale.sh at d84e842).
        Action::requeue(RESYNC)
    } else {
        Action::requeue(BACKSTOP)
    })
}

/// The zone's placement for the tenant, and what keeps its pods from running there (no such
/// zone, a level it does not admit, no node of the asked architecture: the webhook refuses its
/// pods with the same words). Its networking and quota are put in place regardless.
fn placement(
    ctx: &Tenants,
    vt: &ValidatedTenant,
) -> (crate::zones::ZonePlacement, Option<super::validate::ValidationError>) {
    let zone = ctx.watches.zones.get(&ObjectRef::new(&vt.zone));
    let zone = zone.as_ref().and_then(|z| z.0.as_ref().ok());
    let (placement, problem) = match check_zone(vt.level.number(), &vt.zone, zone) {
        Ok(p) => (p, None),
        Err(e) => (crate::zones::ZonePlacement::default(), Some(e)),
    };
    let problem = problem.or_else(|| {
        let nodes = ctx.watches.nodes.state();
        let nodes: Vec<&k8s_openapi::api::core::v1::Node> = nodes.iter().map(|n| n.as_ref()).collect();
        zone.and_then(|z| crate::tenancy::validate::check_arch(vt.arch, z, &nodes).err())
    });
    (placement, problem)
}

/// The namespaces of a round, by how their claim went.
#[derive(Default)]
struct Claims {
    owned: Vec<String>,
    /// Created by this round, as the API server stored them (the cache has yet to see them).
    created: BTreeMap<String, Box<Namespace>>,
    conflicts: Vec<String>,
    pending: Vec<String>,
    /// Namespaces taken back from a stranded state, each with its Event's message.
    recovered: Vec<String>,
}

/// Claims each namespace of the spec, never taking one over.
async fn claim_all(ctx: &Tenants, vt: &ValidatedTenant) -> Result<Claims> {
    let mut c = Claims::default();
    for name in &vt.namespaces {
        match claim(ctx, vt, name).await? {
            Claim::Owned => c.owned.push(name.clone()),
            Claim::Created(ns) => {
                c.owned.push(name.clone());
                c.created.insert(name.clone(), ns);
            }
            Claim::Conflict(why) => c.conflicts.push(why),
            Claim::Recovered(note) => {
                c.owned.push(name.clone());
                c.recovered.push(note);
            }
            Claim::NotYet => c.pending.push(name.clone()),
        }
    }
    Ok(c)
}

/// The quotas a round writes.
struct QuotaPlan {
    /// Per owned namespace, what its quota says and enforces now.
    observed: Vec<Observed>,
    /// Per owned namespace, the quota to write; `None` keeps the one in place (a write of ours
    /// the cache has not shown yet: a split on a stale cache could hand out room twice).
    writes: Vec<Option<BTreeMap<String, Milli>>>,
    /// Whether the split is where it wants to be.
    settled: bool,
}

fn observe(q: Option<&ResourceQuota>) -> Observed {
    Observed {
        spec: parse_map(q.and_then(|q| q.spec.as_ref()).and_then(|s| s.hard.as_ref())),
        enforced: parse_map(q.and_then(|q| q.status.as_ref()).and_then(|s| s.hard.as_ref())),
        used: parse_map(q.and_then(|q| q.status.as_ref()).and_then(|s| s.used.as_ref())),
    }
}

async fn quota_plan(ctx: &Tenants, vt: &ValidatedTenant, owned: &[String]) -> Result<QuotaPlan> {
    let (client, s) = (&ctx.client, &*ctx.watches);
    let mut observed: Vec<Observed> =
        owned.iter().map(|ns| observe(cached(&s.quotas, ns, CHILD_NAME).as_deref())).collect();
    let (mut hards, mut settled) = quota::split(&vt.quota, &observed);
    if quota::raises(&hards, &observed) {
        // Read fresh: an admission may have used room that the cached usage still shows free.
        // Raises happen while budget moves, never in a settled cluster.
        // The quota's `status.used` is not enough either: kube-controller-manager recomputes it
        // from its own pod cache, which can lag an admission and write a smaller count back
        // (CI saw a fifth pod admitted against a budget of four). The pods the API server holds
        // now are counted too, and the larger count is used (terminating pods included: a
        // count too high only delays a raise).
        let mut fresh = Vec::with_capacity(owned.len());
        for ns in owned {
            let q = Api::<ResourceQuota>::namespaced(client.clone(), ns).get_opt(CHILD_NAME).await?;
            let mut o = observe(q.as_ref());
            if vt.quota.contains_key("pods") {
                let live = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
                    .list_metadata(&ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed"))
                    .await?
                    .items
                    .len();
                let counted = crate::quantity::Milli::try_from(live).unwrap_or(0).saturating_mul(crate::quantity::UNIT);
                let used = o.used.entry("pods".to_string()).or_insert(0);
                *used = (*used).max(counted);
            }
            fresh.push(o);
        }
        (hards, settled) = quota::split(&vt.quota, &fresh);
        observed = fresh;
    }
    // The split is safe against the quotas as they are, so it needs a cache that shows our own
    // last write to each of them: a round on a cache one write behind could raise one namespace
    // into room another still holds. Until the cache catches up no split is written (the quotas
    // in place keep the invariant), a quota that is missing is put back as it was (deleted by
    // someone, or not in the cache yet: either way never more than we had written), and the
    // round looks again soon.
    let rv = |ns: &str| cached(&s.quotas, ns, CHILD_NAME).map(|q| q.resource_version());
    let in_flight: BTreeMap<String, QuotaWrite> = match ctx.quota_written.lock() {
        Ok(mut w) => owned
            .iter()
            .filter_map(|ns| {
                let e = w.get(ns)?.clone();
                if rv(ns).is_some_and(|now| e.caught_up(now.as_deref())) {
                    w.remove(ns);
                    return None;
                }
                Some((ns.clone(), e))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let hold = !in_flight.is_empty();
    let writes = owned
        .iter()
        .zip(hards)
        .map(|(ns, hard)| {
            if !hold {
                return Some(hard);
            }
            settled = false;
            match cached(&s.quotas, ns, CHILD_NAME) {
                Some(_) => None,
                None => Some(in_flight.get(ns).map_or(hard, |e| e.hard.clone())),
            }
        })
        .collect();
    Ok(QuotaPlan { observed, writes, settled })
}

/// How far a round's safety objects got.
struct Safe {
    /// Namespaces whose isolation is in place.
    isolated: usize,
    /// Namespaces whose owners' access is in place (only where isolation and quota are).
    bound: usize,
}

/// Applies the desired set in the order that keeps a namespace safe: the namespaces, their
/// isolation, their bounds (quota, limits), certificates and gateways, and the owners' access
/// last and only where isolation and quota are in place; the owners' cluster-scoped reads after
/// everything that keeps them in bounds. Every child is tried: one refusal never leaves the
/// safety objects after it unapplied.
async fn apply_desired(
    ctx: &Tenants,
    set: &mut ChildSet<'_>,
    desired: &build::Desired,
    owned: &[String],
    created: &BTreeMap<String, Box<Namespace>>,
) -> Safe {
    let build::Desired {
        namespaces,
        policies,
        cluster_policy,
        quotas,
        limits,
        certificates,
        gateways,
        bindings,
        reader,
    } = desired;
    let s = &*ctx.watches;
    for ns in namespaces {
        let name = ns.name_any();
        let actual = s.namespaces.get(&ObjectRef::new(&name));
        let seen = match created.get(&name) {
            Some(c) => Seen::Version(Some(&c.metadata)),
            None => Seen::meta(actual.as_deref()),
        };
        set.cluster(ns, seen).await;
    }
    for np in policies {
        let actual = cached_meta(&s.policies, &np.namespace().unwrap_or_default(), &np.name_any());
        set.namespaced(np, Seen::meta(actual.as_deref())).await;
    }
    let mut cluster_wide = true;
    if let Some(cnp) = cluster_policy {
        let name = cnp.metadata.name.clone().unwrap_or_default();
        let fingerprint = apply::fingerprint(cnp);
        cluster_wide =
            set.unwatched("ClusterNetworkPolicy", &name, fingerprint, crate::isolation::apply(&ctx.client, cnp)).await;
    }
    let isolated: BTreeSet<&str> =
        owned.iter().map(String::as_str).filter(|ns| cluster_wide && set.in_place::<NetworkPolicy>(ns)).collect();

    // Quotas before access, so the namespace is bounded before anyone may create pods in it.
    for rq in quotas {
        let ns = rq.namespace().unwrap_or_default();
        let actual = cached(&s.quotas, &ns, CHILD_NAME);
        if let Some(Some(stored)) = set.namespaced_written(rq, Seen::Whole(actual.as_deref())).await
            && let Ok(mut w) = ctx.quota_written.lock()
        {
            let before = actual.as_ref().and_then(|q| q.resource_version());
            let hard = parse_map(rq.spec.as_ref().and_then(|s| s.hard.as_ref()));
            w.insert(ns, QuotaWrite { before, after: stored.resource_version(), hard });
        }
    }
    // A namespace whose quota is held this round keeps the one in place (the plan holds only
    // quotas the cache shows): bounded, like one whose quota the API server took.
    let bounded: BTreeSet<&str> =
        owned.iter().map(String::as_str).filter(|ns| set.in_place::<ResourceQuota>(ns)).collect();
    for lr in limits {
        let actual = cached_meta(&s.limits, &lr.namespace().unwrap_or_default(), CHILD_NAME);
        set.namespaced(lr, Seen::meta(actual.as_deref())).await;
    }
    for c in certificates {
        let actual = cached(&s.certificates, &c.namespace().unwrap_or_default(), &c.name_any());
        set.namespaced(c, Seen::Whole(actual.as_ref().and_then(|a| a.0.as_ref().ok()))).await;
    }
    for g in gateways {
        let actual = cached(&s.gateways, &g.namespace().unwrap_or_default(), &g.name_any());
        set.namespaced(g, Seen::Whole(actual.as_ref().and_then(|a| a.0.as_ref().ok()))).await;
    }
    let mut bound = 0;
    for rb in bindings {
        let ns = rb.namespace().unwrap_or_default();
        if isolated.contains(ns.as_str()) && bounded.contains(ns.as_str()) {
            let actual = cached_meta(&s.bindings, &ns, CHILD_NAME);
            bound += usize::from(set.namespaced(rb, Seen::meta(actual.as_deref())).await);
        }
    }
    // The owners read their Tenant and their namespaces by name (cluster-scoped reads, which
    // no RoleBinding can grant): read-only, so after everything that keeps them in bounds.
    if let Some((role, binding)) = reader {
        let name = role.name_any();
        let actual = s.reader_roles.get(&ObjectRef::new(&name));
        if set.cluster(role, Seen::meta(actual.as_deref())).await {
            let actual = s.reader_bindings.get(&ObjectRef::new(&name));
            set.cluster(binding, Seen::meta(actual.as_deref())).await;
        }
    }
    Safe { isolated: isolated.len(), bound }
}

/// Deletes what the tenant's namespaces hold of ours that the desired set no longer names
/// (found through the watch-fed stores). A channel's or a gateway's NetworkPolicy belongs to
/// it, not to the tenant's own set; a dropped certificate's Secret (the department's keys)
/// stays.
async fn prune(
    ctx: &Tenants,
    set: &mut ChildSet<'_>,
    vt: &ValidatedTenant,
    desired: &build::Desired,
    owned: &[String],
) {
    let build::Desired {
        namespaces: _,
        policies,
        cluster_policy: _,
        quotas: _,
        limits,
        certificates,
        gateways,
        bindings,
        reader: _,
    } = desired;
    let s = &*ctx.watches;
    let owned_set: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
    let mine = |ns: &str| owned_set.contains(ns);
    let found = |v: Vec<(String, String)>| v.into_iter().filter(|(ns, _)| mine(ns)).collect::<Vec<_>>();
    let at = |ns: Option<String>, name: String| (ns.unwrap_or_default(), name);
    let limits_found = children_in(&s.limits, owned).iter().map(|o| at(o.namespace(), o.name_any())).collect();
    set.prune::<LimitRange>(&found(limits_found), &children::keys(limits)).await;
    let policies_found = children_in(&s.policies, owned)
        .iter()
        .filter(|np| !np.labels().contains_key(labels::CHANNEL) && !np.labels().contains_key(labels::SECURE_GATEWAY))
        .map(|o| at(o.namespace(), o.name_any()))
        .collect();
    set.prune::<NetworkPolicy>(&found(policies_found), &children::keys(policies)).await;
    let certificates_found =
        labelled(&s.certificates, &vt.name).iter().map(|o| at(o.namespace(), o.name_any())).collect();
    set.prune::<SmCertificate>(&found(certificates_found), &children::keys(certificates)).await;
    let gateways_found = labelled(&s.gateways, &vt.name).iter().map(|o| at(o.namespace(), o.name_any())).collect();
    set.prune::<crate::api::SecureGateway>(&found(gateways_found), &children::keys(gateways)).await;
    let bindings_found = children_in(&s.bindings, owned).iter().map(|o| at(o.namespace(), o.name_any())).collect();
    set.prune::<RoleBinding>(&found(bindings_found), &children::keys(bindings)).await;
}

/// Lets go of the namespaces dropped from the spec, by the deletion policy.
async fn release_dropped(ctx: &Tenants, tenant: &Tenant, vt: &ValidatedTenant) -> Result<()> {
    let dropped: Vec<String> = ctx
        .watches
        .namespaces
        .by_key(&vt.name)
        .into_iter()
        .filter(|ns| ns.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER))
        .map(|ns| ns.name_any())
        .filter(|n| !vt.namespaces.contains(n))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    release_namespaces(ctx, tenant, vt.deletion_policy, vt.confirm_data_deletion, &dropped).await
}

/// The tenant's `Department` condition: its department exists and its budget holds what it
/// hands down; `None` while the cloud keeps no department tree at all.
fn department_condition(hub: &crate::watch::Hub, tenant: &Tenant) -> Option<Cond> {
    use crate::departments::budget;
    let departments = hub.departments.state();
    let departments: Vec<&crate::api::department::Department> =
        departments.iter().filter_map(|d| d.0.as_ref().ok()).collect();
    if departments.is_empty() {
        return None;
    }
    let code = tenant.spec.department.code.as_str();
    let Some(d) = departments.iter().find(|d| d.spec.code == code) else {
        return Some(Cond::new(
            "Department",
            false,
            "DepartmentNotFound",
            format!("spec.department.code: no Department has code {code}"),
        ));
    };
    let within = Cond::new("Department", true, "WithinBudget", format!("department {code}'s budget holds the quota"));
    let budget = budget::amounts(&d.spec.budget);
    // The sums the watch keeps: a round costs the same in a department of 10,000 tenants.
    let no_overlay = std::collections::BTreeMap::new();
    if budget::holds_tallied(code, &budget, hub.tenants.tally(code), &departments, &no_overlay, |_| None) {
        return Some(within);
    }
    // Over: its own tenants one by one (the index), to name them.
    let tenants = hub.tenants.by(crate::watch::TENANTS_BY_DEPARTMENT, code);
    let tenants: Vec<&Tenant> = tenants.iter().filter_map(|t| t.0.as_ref().ok()).collect();
    let takers = budget::takers(code, &departments, &tenants);
    Some(match budget::fits(code, &budget, &takers) {
        Ok(()) => within,
        Err(over) => Cond::new("Department", false, "OverBudget", over.message),
    })
}

/// Lets namespaces go by the deletion policy: `Retain` orphans them, `Delete` deletes them
/// unless they hold volumes and deletion of data is not confirmed.
async fn release_namespaces(
    ctx: &Context,
    tenant: &Tenant,
    policy: DeletionPolicy,
    confirmed: bool,
    names: &[String],
) -> Result<()> {
    let client = &ctx.client;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    match policy {
        DeletionPolicy::Retain => {
            for name in names {
                // The owners' access goes first: once our label is off, the webhook no longer
                // guards the namespace, and a former owner could lift its isolation or move its
                // pods onto another zone's nodes. The data and the workloads stay; what becomes
                // of them is a cloud admin's call, or the department's when it re-creates the
                // tenant (which binds its owners again).
                let bindings = Api::<RoleBinding>::namespaced(client.clone(), name);
                let ours = ListParams::default().labels(&labels::managed_selector());
                for b in bindings.list(&ours).await?.items {
                    apply::delete_namespaced::<RoleBinding>(client, name, &b.name_any()).await?;
                }
                // Strip our ownership from the children too, so nothing maps back to a tenant.
                let orphan = serde_json::json!({ labels::MANAGED_BY: null, labels::ORPHANED: "true" });
                relabel_children(client, name, &labels::managed_selector(), orphan).await?;
                apply::merge_labels(
                    &ns_api,
                    name,
                    serde_json::json!({ labels::MANAGED_BY: null, labels::ORPHANED: "true" }),
                )
                .await?;
                info!(namespace = %name, "retained namespace as orphaned");
                publish(
                    ctx,
                    tenant,
                    EventType::Normal,
                    "NamespaceRetained",
                    format!(
                        "namespace {name} kept with its contents and labelled {}=true; the owners' access to it was removed",
                        labels::ORPHANED
                    ),
                )
                .await;
            }
        }
        DeletionPolicy::Delete => {
            let mut with_data = Vec::new();
            for name in names {
                let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), name)
                    .list(&ListParams::default().limit(1))
                    .await?;
                if !pvcs.items.is_empty() {
                    with_data.push(name.clone());
                }
            }
            if !with_data.is_empty() && !confirmed {
                let why = format!(
                    "namespaces {} hold PersistentVolumeClaims; set spec.confirmDataDeletion: true to delete them with their data, or spec.deletionPolicy: Retain to keep them",
                    with_data.join(", ")
                );
                publish(ctx, tenant, EventType::Warning, "DeletionBlocked", why.clone()).await;
                return Err(Error::DeletionBlocked(why));
            }
            for name in names {
                match ns_api.delete(name, &Default::default()).await {
                    Ok(_) => {}
                    // Gone, or terminating already (a round stopped after its delete): done.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                info!(namespace = %name, "deleted namespace");
                publish(
                    ctx,
                    tenant,
                    EventType::Normal,
                    "NamespaceDeleted",
                    format!("namespace {name} deleted by deletionPolicy Delete"),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// Re-labels every child of ours in a namespace matching `selector`.
async fn relabel<K>(client: &Client, namespace: &str, selector: &str, patch: &serde_json::Value) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    for obj in api.list(&ListParams::default().labels(selector)).await?.items {
        apply::merge_labels(&api, &obj.name_any(), patch.clone()).await?;
    }
    Ok(())
}

/// Re-labels all our children (quota, limits, policies, binding) in a namespace.
async fn relabel_children(client: &Client, namespace: &str, selector: &str, patch: serde_json::Value) -> Result<()> {
    relabel::<ResourceQuota>(client, namespace, selector, &patch).await?;
    relabel::<LimitRange>(client, namespace, selector, &patch).await?;
    relabel::<NetworkPolicy>(client, namespace, selector, &patch).await?;
    relabel::<SmCertificate>(client, namespace, selector, &patch).await?;
    relabel::<RoleBinding>(client, namespace, selector, &patch).await
}

async fn cleanup(tenant: &Tenant, ctx: &Tenants) -> Result<Action> {
    let name = tenant.name_any();
    // A real LIST here, not the cache: a namespace created a moment ago must not be missed when
    // the tenant lets its namespaces go (deletion is rare; being exact matters more).
    let lp = ListParams::default().labels(&labels::tenant_selector(&name));
    let names: Vec<String> =
        Api::<Namespace>::all(ctx.client.clone()).list(&lp).await?.items.iter().map(|n| n.name_any()).collect();
    let policy = tenant.spec.deletion_policy;
    if let Err(e) = release_namespaces(ctx, tenant, policy, tenant.spec.confirm_data_deletion, &names).await {
        if let Error::DeletionBlocked(why) = &e {
            let conds = vec![Cond::new("Ready", false, "DeletionBlocked", why.clone())];
            write_status(ctx, tenant, conds, names, None, false).await?;
        }
        return Err(e);
    }
    ctx.own.forget_tenant(&name);
    for ns in &names {
        ctx.applied.forget_namespace(ns);
        if let Ok(mut w) = ctx.quota_written.lock() {
            w.remove(ns);
        }
    }
    if let (Ok(mut written), Ok(mut swept)) = (ctx.written.lock(), ctx.swept.lock()) {
        written.remove(&name);
        swept.remove(&name);
    }
    info!(tenant = %name, ?policy, namespaces = names.len(), "tenant released");
    Ok(Action::await_change())
}

async fn write_status(
    ctx: &Tenants,
    tenant: &Tenant,
    observed: Vec<Cond>,
    namespaces: Vec<String>,
    quota: Option<(QuotaStatus, &ValidatedTenant, &BTreeMap<String, Milli>)>,
    quiet_first: bool,
) -> Result<()> {
    let name = tenant.name_any();
    // The base is what this process last wrote when it is for the same generation, else the
    // cached status: a cached copy one write behind must not move a condition's time again.
    let last = ctx.written.lock().ok().and_then(|w| w.get(&name).cloned());
    let cached = tenant.status.as_ref();
    let last_is_base = match (&last, cached) {
        (Some(l), Some(c)) => l.generation >= c.observed_generation,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let previous: Vec<Condition> = match (&last, cached) {
        (Some(l), _) if last_is_base => l.conditions(),
        (_, Some(c)) => c.conditions.clone(),
        _ => Vec::new(),
    };
    let generation = tenant.metadata.generation;
    let conditions = conditions::merge(&previous, &observed, generation, jiff::Timestamp::now());
    let flags: Vec<(&'static str, bool)> = observed.iter().map(|c| (c.type_, c.ok)).collect();
    ctx.own.observe_tenant(&tenant.name_any(), &flags);
    let (quota_status, summary) = match quota {
        Some((qs, vt, used)) => {
            let scale = |v: Milli| v as f64 / 1000.0;
            ctx.own.tenant_series.set_quota(
                &vt.name,
                vt.quota
                    .iter()
                    .map(|(res, b)| (res.as_str(), scale(b.total), scale(used.get(res).copied().unwrap_or(0)))),
            );
            let summary = summary(vt, used);
            (Some(qs), Some(summary))
        }
        None => (
            tenant.status.as_ref().and_then(|s| s.quota.clone()),
            tenant.status.as_ref().and_then(|s| s.quota_summary.clone()),
        ),
    };
    let status = TenantStatus {
        observed_generation: generation,
        conditions,
        namespace_count: Some(namespaces.len() as i32),
        namespaces,
        quota: quota_status,
        quota_summary: summary,
    };
    // A first status that would only say "waiting for the quota controller" waits for the
    // Ready one (the quota's status change wakes the round).
    if quiet_first && cached.is_none() && last.is_none() {
        return Ok(());
    }
    let written = Written::of(&status);
    let last_is = last.as_ref().map(|l| l.fingerprint) == Some(written.fingerprint);
    // Nothing new to say: no write, so no event and no round after it.
    if cached == Some(&status) && (last_is || !last_is_base) {
        return Ok(());
    }
    if last_is && cached.map(|s| s.observed_generation) <= Some(generation) {
        // Written already; the cache has not caught up yet.
        return Ok(());
    }
    let api = Api::<Tenant>::all(ctx.client.clone());
    crate::status::write(&ctx.metrics, CONTROLLER, &api, &name, crate::status::Body::Whole(&status)).await?;
    if let Ok(mut w) = ctx.written.lock() {
        w.insert(name, written);
    }
    Ok(())
}

/// Whether `tenant` was created less than `age` ago (by the API server's clock as this
/// machine reads it; a tenant with no creation time is not young).
fn younger_than(tenant: &Tenant, age: Duration) -> bool {
    let Some(created) = tenant.metadata.creation_timestamp.as_ref() else { return false };
    let elapsed = jiff::Timestamp::now().duration_since(created.0);
    elapsed.is_negative() || elapsed.unsigned_abs() < age
}

/// What this process last wrote of a tenant's status: the generation, when each condition last
/// turned, and a fingerprint of the whole. Enough to merge the next round's conditions and to
/// know a status is written already, at a tenth of the status's size (thousands of tenants).
#[derive(Clone)]
pub struct Written {
    generation: Option<i64>,
    fingerprint: u64,
    /// (type, status is "True", lastTransitionTime) of each condition.
    turned: Vec<(Box<str>, bool, Time)>,
}

impl Written {
    pub fn of(status: &TenantStatus) -> Self {
        Written {
            generation: status.observed_generation,
            fingerprint: crate::apply::fingerprint(status),
            turned: status
                .conditions
                .iter()
                .map(|c| (c.type_.as_str().into(), c.status == "True", c.last_transition_time.clone()))
                .collect(),
        }
    }

    /// The conditions as far as a merge reads them (type, status and time).
    fn conditions(&self) -> Vec<Condition> {
        self.turned
            .iter()
            .map(|(type_, ok, time)| Condition {
                type_: type_.to_string(),
                status: if *ok { "True" } else { "False" }.to_string(),
                last_transition_time: time.clone(),
                observed_generation: self.generation,
                reason: String::new(),
                message: String::new(),
            })
            .collect()
    }
}

/// `cpu 1500m/8, memory 2Gi/16Gi, pods 3/20`: short enough for a table column.
fn summary(vt: &ValidatedTenant, used: &BTreeMap<String, Milli>) -> String {
    let short = |res: &str| match res {
        "requests.cpu" => "cpu".to_string(),
        "requests.memory" => "memory".to_string(),
        "requests.storage" => "storage".to_string(),
        "services.loadbalancers" => "lb".to_string(),
        "persistentvolumeclaims" => "pvc".to_string(),
        other => other.strip_prefix("requests.").unwrap_or(other).to_string(),
    };
    vt.quota
        .iter()
        .map(|(res, b)| {
            let u = used.get(res).copied().unwrap_or(0);
            format!("{} {}/{}", short(res), quantity::format(u, b.kind), quantity::format(b.total, b.kind))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::{self, Answer, Received};
    use serde_json::{Value, json};

    /// The cluster as the stores list it: the tenant's `edu-apps` namespace exists and is ours,
    /// with our default-deny, a stale policy of ours and a channel's policy; `edu-data` does
    /// not exist yet. `refuse` says which writes the API server refuses.
    fn cluster(refuse: fn(&Received) -> bool) -> impl Fn(&Received) -> Answer + Send + 'static {
        move |r: &Received| {
            let path = r.uri.split('?').next().unwrap_or_default().to_string();
            if fake_api::is_watch(r) {
                return Answer::quiet_watch();
            }
            if fake_api::is_list(r) {
                let mine = json!({"app.kubernetes.io/managed-by": labels::MANAGER, "zhengyun.io/tenant": "edu"});
                let policy = |name: &str, extra: Value| {
                    let mut l = mine.clone();
                    if let (Some(l), Some(e)) = (l.as_object_mut(), extra.as_object()) {
                        l.extend(e.clone());
                    }
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": name, "namespace": "edu-apps", "resourceVersion": "5", "labels": l}})
                };
                return Answer::list(match path.as_str() {
                    "/apis/zhengyun.io/v1alpha1/zones" => vec![json!({
                        "apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
                        "metadata": {"name": "extranet", "resourceVersion": "3", "generation": 1},
                        "spec": {"kind": "Extranet", "nodeSelector": {"zone": "extranet"}}
                    })],
                    "/api/v1/namespaces" => vec![json!({
                        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": "edu-apps", "resourceVersion": "4", "labels": mine}
                    })],
                    "/apis/networking.k8s.io/v1/networkpolicies" => vec![
                        policy(build::DENY_POLICY, json!({})),
                        policy("stale", json!({})),
                        policy("channel-x", json!({(labels::CHANNEL): "x"})),
                    ],
                    _ => vec![],
                });
            }
            if refuse(r) {
                return Answer::status(403, "Forbidden", "refused by the test");
            }
            match r.method.as_str() {
                // What a status write returns is the whole Tenant.
                "PATCH" if path.ends_with("/status") => {
                    let mut t = serde_json::to_value(super::super::validate::tests::sample()).unwrap_or_default();
                    t["status"] = r.body["status"].clone();
                    Answer::ok(t)
                }
                "GET" if path.ends_with("/pods") => Answer::list(vec![]),
                "GET" => Answer::status(404, "NotFound", "not found"),
                "DELETE" => Answer::ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                _ => fake_api::echo(r, "9"),
            }
        }
    }

    async fn round(refuse: fn(&Received) -> bool) -> (Result<Action>, Vec<String>) {
        let (result, writes, _) = round_of(refuse, None).await;
        (result, writes)
    }

    /// A first round of the sample tenant, created at `created`: its result, its writes and the
    /// metrics after it.
    async fn round_of(
        refuse: fn(&Received) -> bool,
        created: Option<jiff::Timestamp>,
    ) -> (Result<Action>, Vec<String>, String) {
        let (client, recorded) = fake_api::serve(cluster(refuse));
        let ctx = Context::new(client, "test", Arc::new(crate::metrics::Metrics::new()), "zhengyun-system");
        let tenants = controller(ctx.clone(), super::super::metrics::TenantMetrics::new(&ctx.metrics));
        let hub = &ctx.watches;
        let reads = <Tenants as crate::controller::Reconciler>::reads(hub);
        tokio::time::timeout(Duration::from_secs(10), crate::watch::all_ready(&reads)).await.expect("stores listed");
        let mut tenant = super::super::validate::tests::sample();
        tenant.metadata.uid = Some("u-1".into());
        tenant.metadata.generation = Some(1);
        tenant.metadata.creation_timestamp = created.map(Time);
        let result = apply_tenant(&tenant, &tenants).await;
        let writes = recorded
            .all()
            .iter()
            .filter(|r| !fake_api::is_watch(r) && !fake_api::is_list(r) && r.method != http::Method::GET)
            .map(Received::line)
            .collect();
        (result, writes, ctx.metrics.render())
    }

    #[tokio::test]
    async fn a_round_writes_its_set_in_safety_order_and_no_access_where_isolation_was_refused() {
        // The API server refuses every NetworkPolicy of edu-data.
        let (result, writes) =
            round(|r| r.method == http::Method::PATCH && r.uri.contains("/namespaces/edu-data/networkpolicies/")).await;
        assert!(matches!(result, Err(Error::Apply { ref kind, .. }) if kind == "NetworkPolicy"), "{result:?}");
        let position = |w: &str| writes.iter().position(|x| x == w).unwrap_or_else(|| panic!("{w} not in {writes:#?}"));
        let ns = position("POST /api/v1/namespaces");
        let deny = position(&format!(
            "PATCH /apis/networking.k8s.io/v1/namespaces/edu-apps/networkpolicies/{}",
            build::DENY_POLICY
        ));
        let quota = position(&format!("PATCH /api/v1/namespaces/edu-apps/resourcequotas/{CHILD_NAME}"));
        let access = position(&format!(
            "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/edu-apps/rolebindings/{CHILD_NAME}"
        ));
        let reader =
            position(&format!("PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/{}", build::reader_name("edu")));
        let status = position("PATCH /apis/zhengyun.io/v1alpha1/tenants/edu/status");
        assert!(ns < deny && deny < quota && quota < access && access < reader && reader < status, "{writes:#?}");
        // edu-data got its quota (a refusal stops nothing after it) but no access.
        position(&format!("PATCH /api/v1/namespaces/edu-data/resourcequotas/{CHILD_NAME}"));
        assert!(
            !writes.iter().any(|w| w.contains("edu-data/rolebindings")),
            "access granted where isolation was refused: {writes:#?}"
        );
        assert!(!writes.iter().any(|w| w.starts_with("DELETE")), "no sweep after a refusal: {writes:#?}");
        assert!(writes.iter().any(|w| w.contains("/events")), "the refusal is an Event: {writes:#?}");
    }

    #[tokio::test]
    async fn a_new_tenant_waiting_only_on_the_quota_controller_gets_no_status_until_patience_runs_out() {
        let status = "PATCH /apis/zhengyun.io/v1alpha1/tenants/edu/status";
        // The fake API server never enforces a quota: everything else is in place.
        let (result, writes, metrics) = round_of(|_| false, Some(jiff::Timestamp::now())).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(writes.iter().any(|w| w.contains("/resourcequotas/")), "{writes:#?}");
        assert!(!writes.iter().any(|w| w == status), "a Pending first status was written: {writes:#?}");
        // Meanwhile the metric says it.
        let waiting = "zhengyun_tenant_conditions{status=\"False\",type=\"QuotaReady\"} 1";
        assert!(metrics.contains(waiting), "{metrics}");

        let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(QUOTA_PATIENCE.as_secs() as i64 + 60);
        let (_, writes, _) = round_of(|_| false, Some(long_ago)).await;
        assert!(writes.iter().any(|w| w == status), "past patience the wait is said: {writes:#?}");

        // A refusal is said at once, however young the tenant.
        let (_, writes, _) = round_of(|r| r.uri.contains("/clusterroles/"), Some(jiff::Timestamp::now())).await;
        assert!(writes.iter().any(|w| w == status), "{writes:#?}");
    }

    /// Claims the sample tenant's namespaces over a cluster listing `namespaces` (metadata
    /// JSON by name, labels and managed fields); the claims and the writes.
    async fn claims_over(namespaces: Vec<Value>) -> (Claims, Vec<Received>) {
        let items = namespaces
            .into_iter()
            // As a Namespace: the stores read its metadata, a write answers the whole object.
            .map(|m| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m}))
            .collect();
        // The children re-adoption relabels are listed by selector: none here.
        let lists: Vec<(&'static str, Vec<Value>)> = vec![("/api/v1/namespaces", items)];
        let (ctx, recorded) = fake_api::context(lists);
        let tenants = controller(ctx.clone(), Arc::new(super::super::metrics::TenantMetrics::unregistered()));
        fake_api::listed(&[&ctx.watches.namespaces as &dyn crate::watch::Ready]).await;
        let vt = validate(&super::super::validate::tests::sample()).expect("valid");
        let claims = claim_all(&tenants, &vt).await.unwrap_or_else(|e| panic!("{e}"));
        let writes = recorded.all().into_iter().filter(|r| r.method == http::Method::PATCH).collect();
        (claims, writes)
    }

    fn by(manager: &str) -> Value {
        json!([{"manager": manager, "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {(format!("f:{}", labels::TENANT)): {}}}}}])
    }

    #[tokio::test]
    async fn re_adoption_restores_our_marker_in_the_patch_that_drops_the_orphan_one_and_stranded_namespaces_come_back()
    {
        let code = validate(&super::super::validate::tests::sample()).expect("valid").department_code;
        let (claims, writes) = claims_over(vec![
            // Retained by a deleted tenant edu of the same department.
            json!({"name": "edu-apps", "resourceVersion": "4", "labels": {
                (labels::TENANT): "edu", (labels::DEPARTMENT): code, (labels::ORPHANED): "true"}}),
            // Stranded by an older version: the orphan marker gone, ours not yet back.
            json!({"name": "edu-data", "resourceVersion": "4", "managedFields": by(labels::FIELD_MANAGER),
                   "labels": {(labels::TENANT): "edu", (labels::DEPARTMENT): code}}),
        ])
        .await;
        assert_eq!(claims.owned, ["edu-apps", "edu-data"], "conflicts: {:?}", claims.conflicts);
        assert_eq!(claims.recovered.len(), 1, "{:?}", claims.recovered);
        for ns in ["edu-apps", "edu-data"] {
            let patch = writes.iter().find(|r| r.uri.split('?').next() == Some(&format!("/api/v1/namespaces/{ns}")));
            let l = patch.map(|r| r.body["metadata"]["labels"].clone()).unwrap_or_default();
            assert!(
                l[labels::ORPHANED].is_null()
                    && l.get(labels::ORPHANED).is_some()
                    && l[labels::MANAGED_BY] == labels::MANAGER,
                "{ns}: one patch drops the orphan marker and restores ours: {l}"
            );
        }

        // The same labels set by someone else: not ours, and nothing written.
        let (claims, writes) = claims_over(vec![json!({"name": "edu-apps", "resourceVersion": "4",
            "managedFields": by("kubectl"), "labels": {(labels::TENANT): "edu", (labels::DEPARTMENT): code}})])
        .await;
        assert!(claims.owned.iter().all(|n| n != "edu-apps") && claims.conflicts.len() == 1, "{:?}", claims.conflicts);
        assert!(writes.is_empty(), "{:?}", writes.iter().map(Received::line).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_clean_round_deletes_its_orphans_and_nothing_else() {
        let (result, writes) = round(|_| false).await;
        assert!(result.is_ok(), "{result:?}");
        let deletes: Vec<&String> = writes.iter().filter(|w| w.starts_with("DELETE")).collect();
        assert_eq!(
            deletes,
            ["DELETE /apis/networking.k8s.io/v1/namespaces/edu-apps/networkpolicies/stale"],
            "only our stale policy goes: not the channel's, not our default-deny"
        );
    }

    fn write(before: Option<&str>, after: Option<&str>) -> QuotaWrite {
        QuotaWrite { before: before.map(str::to_string), after: after.map(str::to_string), hard: BTreeMap::new() }
    }

    #[test]
    fn a_quota_write_is_caught_up_once_the_cache_moves_past_what_it_replaced() {
        let w = write(Some("10"), Some("12"));
        assert!(!w.caught_up(Some("10")), "the cache still shows the version our write replaced");
        assert!(w.caught_up(Some("12")), "the cache shows our write");
        assert!(w.caught_up(Some("13")), "the quota controller wrote after us");
        // A write that changed nothing keeps the version: the cache already shows it.
        assert!(write(Some("10"), Some("10")).caught_up(Some("10")));
        // A quota we created: caught up when the cache shows any version of it.
        let created = write(None, Some("5"));
        assert!(created.caught_up(Some("5")));
        assert!(!created.caught_up(None));
    }
}
