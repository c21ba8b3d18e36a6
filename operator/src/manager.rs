//! The leader's term: the one list of what runs while this replica leads ([`registry`]), and
//! [`lead`], which starts it, watches it and stops it.
//!
//! Everything in the registry writes, so it runs only while this replica holds the Lease. A
//! controller that ends on its own (a panic, most likely) would leave its objects unreconciled
//! while everything else looks alive: the term ends instead, and the process exits so that a
//! supervisor restarts it.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::ClusterRole;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    admission, apply,
    certificates::{self, issuers},
    channels,
    context::Context,
    controller::{self, Reconciler},
    departments, gate, gateways, rooms, tenancy, zones,
};

/// How long a leader told to stop lets the rounds in flight finish before cancelling them.
const DRAIN: Duration = Duration::from_secs(5);

/// One thing the leader runs, by name; it starts with a receiver that turns true when it must stop.
pub struct Registered {
    pub name: &'static str,
    start: Box<dyn FnOnce(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>,
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn controller<R: Reconciler>(r: Arc<R>) -> Registered {
    Registered { name: R::NAME, start: Box::new(move |stop| Box::pin(controller::run(r, stopped(stop)))) }
}

fn task<F>(name: &'static str, f: impl FnOnce(watch::Receiver<bool>) -> F + Send + 'static) -> Registered
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    Registered { name, start: Box::new(move |stop| Box::pin(f(stop))) }
}

/// Each concern's own metrics, registered once per process (followers export them too, at zero).
pub struct ConcernMetrics {
    tenants: Arc<tenancy::metrics::TenantMetrics>,
    channels: Arc<channels::metrics::ChannelMetrics>,
    certificates: Arc<certificates::metrics::CertificateMetrics>,
    rooms: Arc<rooms::metrics::RoomMetrics>,
    department_problems: prometheus::IntCounterVec,
    gateway_problems: prometheus::IntCounterVec,
    gate_failures: prometheus::IntCounter,
}

impl ConcernMetrics {
    /// Defines every concern's metrics into `m`'s registry; `tenant_series` says which tenants
    /// have series of their own.
    pub fn new(m: &crate::metrics::Metrics, tenant_series: tenancy::series::Scope) -> Self {
        ConcernMetrics {
            tenants: tenancy::metrics::TenantMetrics::scoped(m, tenant_series),
            channels: channels::metrics::ChannelMetrics::new(m),
            certificates: certificates::metrics::CertificateMetrics::new(m),
            rooms: rooms::metrics::RoomMetrics::new(m),
            department_problems: departments::problems_metric(m),
            gateway_problems: gateways::reconcile::problems_metric(m),
            gate_failures: gate::events::failures_metric(m),
        }
    }

    /// The tenant controller's metrics (the benchmarks fill them without a controller).
    pub fn tenants(&self) -> &Arc<tenancy::metrics::TenantMetrics> {
        &self.tenants
    }
}

/// Every controller and task the leader runs. A new controller is added here, and only here.
pub fn registry(ctx: &Arc<Context>, m: &ConcernMetrics, gated: bool) -> Vec<Registered> {
    let c = || ctx.clone();
    let mut all = vec![
        controller(tenancy::reconcile::controller(c(), m.tenants.clone())),
        controller(zones::controller(c())),
        controller(channels::reconcile::controller(c(), m.channels.clone())),
        controller(issuers::controller::<crate::api::SmIssuer>(c(), m.certificates.clone())),
        controller(issuers::controller::<crate::api::SmClusterIssuer>(c(), m.certificates.clone())),
        controller(certificates::reconcile::controller(c(), m.certificates.clone())),
        controller(gateways::reconcile::controller(c(), m.gateway_problems.clone())),
        controller(rooms::controller(c(), m.rooms.clone())),
        controller(departments::controller(c(), m.department_problems.clone())),
        task("showback", {
            let (ctx, rooms) = (c(), m.rooms.clone());
            move |stop| rooms::showback::run(ctx, rooms, stopped(stop))
        }),
    ];
    if gated {
        let (ctx, failures) = (c(), m.gate_failures.clone());
        all.push(task("isolation-gate-events", move |stop| gate::events::run(ctx, failures, stopped(stop))));
    }
    all
}

/// The registry narrowed to `only` (every entry when `None`; none for `["none"]`), or the names
/// that are in no registry.
pub fn select(all: Vec<Registered>, only: Option<&[String]>) -> Result<Vec<Registered>, String> {
    let Some(only) = only else { return Ok(all) };
    let wanted: Vec<&str> = only.iter().map(|n| n.trim()).filter(|n| !n.is_empty() && *n != "none").collect();
    let unknown: Vec<&str> = wanted.iter().copied().filter(|n| !all.iter().any(|r| r.name == *n)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|r| r.name).collect();
        return Err(format!("--controllers: no controller {} (there are: {})", unknown.join(", "), known.join(", ")));
    }
    Ok(all.into_iter().filter(|r| wanted.contains(&r.name)).collect())
}

/// What the leader keeps besides its controllers.
pub struct Term {
    /// Each concern's metrics, for its controllers.
    pub metrics: ConcernMetrics,
    /// The webhook this replica serves, whose registrations the leader keeps.
    pub webhook: Option<admission::run::Running>,
    /// The isolation gate's settings, whose canary the leader keeps.
    pub gate: Option<gate::Config>,
    /// The ClusterRole that owns what the leader keeps outside any tenant (registrations,
    /// canary), so uninstalling removes them.
    pub registration_owner: Option<String>,
    /// Of the registry, only these (`--controllers`; checked by [`select`] at start).
    pub only: Option<Vec<String>>,
}

/// How a leader's term ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    LostLead,
    Signal,
    ControllerStopped(&'static str, &'static str),
}

/// Runs the leader's term until `lost` (the Lease is someone else's: not one more write),
/// `shutdown` (a signal: rounds in flight may finish, for a bounded time) or a controller ends.
pub async fn lead(
    ctx: &Arc<Context>,
    term: Term,
    stop: watch::Receiver<bool>,
    lost: impl std::future::Future<Output = ()>,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::Result<Ended> {
    let client = &ctx.client;
    tokio::pin!(lost);
    tokio::pin!(shutdown);
    let mut keepers = JoinSet::new();
    if let Some(running) = term.webhook {
        keepers.spawn(admission::run::register(client.clone(), running, term.registration_owner.clone(), stop.clone()));
    }
    let gated = term.gate.is_some();
    if let Some(gate) = term.gate {
        let owner = match &term.registration_owner {
            Some(role) => admission::run::owner(client, role).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the ClusterRole that owns the isolation canary failed");
                None
            }),
            None => None,
        };
        keepers.spawn(gate::run::keep_canary(client.clone(), gate, owner, stop.clone()));
    }
    let (ctl_stop, ctl_stopped) = watch::channel(false);
    let mut writers = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    let ended = tokio::select! {
        r = shared_roles(ctx) => {
            if let Err(e) = r {
                keepers.shutdown().await;
                return Err(e);
            }
            for r in select(registry(ctx, &term.metrics, gated), term.only.as_deref()).unwrap_or_default() {
                let handle = writers.spawn((r.start)(ctl_stopped.clone()));
                names.insert(handle.id(), r.name);
            }
            tokio::select! {
                _ = &mut lost => Ended::LostLead,
                _ = &mut shutdown => Ended::Signal,
                Some(r) = writers.join_next_with_id() => {
                    let (id, why) = match r {
                        Err(e) if e.is_panic() => (e.id(), "panicked"),
                        Err(e) => (e.id(), "was cancelled"),
                        Ok((id, ())) => (id, "returned"),
                    };
                    let name = names.get(&id).copied().unwrap_or("?");
                    // No metric: the process is about to go; its restart count is the figure.
                    tracing::error!(controller = name, why, "a controller ended while this replica leads; exiting");
                    Ended::ControllerStopped(name, why)
                }
            }
        }
        _ = &mut lost => Ended::LostLead,
        _ = &mut shutdown => Ended::Signal,
    };
    keepers.shutdown().await;
    if ended == Ended::Signal {
        // Still the holder: the rounds in flight may finish, for a bounded time.
        let _ = ctl_stop.send(true);
        let drained = tokio::time::timeout(DRAIN, async { while writers.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(seconds = DRAIN.as_secs(), "rounds still running after the drain time: cancelled");
        }
    }
    // Lost: the lease may be another replica's already, so not one more write. Aborting drops
    // the rounds in flight (kube-runtime cancels a controller's reconciles with it).
    writers.shutdown().await;
    Ok(ended)
}

/// Before anything runs: the CRDs are installed (else the fix is in the error), and whether
/// the ClusterNetworkPolicy API is served and declared enforced (the admin's word: nothing in
/// the API says whether a network plugin implements it), so tenants rely on it.
pub async fn preflight(client: &kube::Client, cluster_network_policy_enforced: bool) -> crate::Result<bool> {
    // Fail fast, with the fix in the message, when the CRD is missing. Metadata only: a
    // malformed Tenant stored in etcd must not stop the operator from starting.
    match kube::Api::<kube::core::PartialObjectMeta<crate::api::Tenant>>::all(client.clone())
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(crate::Error::CrdMissing { crd: "tenants.zhengyun.io" });
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    // Optional APIs are detected, not assumed; that one is enforced is the admin's word, as
    // nothing in the API says whether a network plugin implements it.
    let served = crate::isolation::served(client).await;
    let cnp = served && cluster_network_policy_enforced;
    if served && !cnp {
        tracing::warn!(
            "the ClusterNetworkPolicy API is served but --cluster-network-policy-enforced is not set, so it is not \
             relied on (not enforced, as far as zhengyun knows): tenants are isolated by NetworkPolicies and the webhook \
             keeps restricting tenants' own policies"
        );
    } else if cluster_network_policy_enforced && !served {
        tracing::warn!(
            "--cluster-network-policy-enforced is set but the ClusterNetworkPolicy API is not served: ignored"
        );
    }
    Ok(cnp)
}

/// The ClusterRoles every tenant's owners and every department's admins are bound to; the
/// leader keeps them in shape.
async fn shared_roles(ctx: &Context) -> crate::Result<()> {
    apply::cluster::<ClusterRole>(&ctx.client, &tenancy::build::owner_cluster_role()).await?;
    apply::cluster::<ClusterRole>(&ctx.client, &departments::admin_cluster_role()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &[Registered]) -> Vec<&'static str> {
        r.iter().map(|r| r.name).collect()
    }

    #[test]
    fn controllers_are_narrowed_by_name_and_an_unknown_name_is_refused() {
        let all = || vec![task("tenant", |_| async {}), task("zone", |_| async {}), task("showback", |_| async {})];
        assert_eq!(names(&select(all(), None).unwrap_or_default()), ["tenant", "zone", "showback"]);
        let only = ["zone".to_string(), " showback".to_string()];
        assert_eq!(names(&select(all(), Some(&only)).unwrap_or_default()), ["zone", "showback"]);
        assert!(select(all(), Some(&["none".to_string()])).is_ok_and(|r| r.is_empty()));
        let Err(e) = select(all(), Some(&["tenants".to_string()])) else { panic!("an unknown name") };
        assert_eq!(e, "--controllers: no controller tenants (there are: tenant, zone, showback)");
    }
}
