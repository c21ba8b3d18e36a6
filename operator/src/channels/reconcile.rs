//! The ExchangeChannel controller: resolves the channel's ends, applies or removes its
//! policies by phase, and wakes up at the expiry to close the flow.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{core::v1::Service, networking::v1::NetworkPolicy},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Resource, ResourceExt,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
    },
};
use tracing::{info, warn};

use super::{
    EndsProblem, approval,
    build::{self, CHANNEL_LABEL, Ends},
    phase,
};
use crate::{
    api::{ChannelPhase, ExchangeChannel, ExchangeChannelStatus, Tenant, Zone},
    apply::{self, Seen},
    children::{self, ChildSet},
    conditions::{self, Observed},
    context::Context,
    error::{Error, Result},
};

pub const CONTROLLER: &str = "exchangechannel";

/// The shared [`Context`] (whose watches the controller reads) plus what only it keeps.
pub struct Channels {
    ctx: Arc<Context>,
    applied: apply::Memory,
    own: Arc<super::metrics::ChannelMetrics>,
    status: crate::status::Writer,
}

impl std::ops::Deref for Channels {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl Channels {
    fn tenant(&self, name: &str) -> Option<Tenant> {
        self.watches.tenants.get(&ObjectRef::new(name)).and_then(|t| t.0.as_ref().ok().cloned())
    }
}

/// The channels that name a tenant at either end.
fn naming(
    channels: &Store<DeserializeGuard<ExchangeChannel>>,
    tenant: &str,
) -> Vec<ObjectRef<DeserializeGuard<ExchangeChannel>>> {
    channels
        .state()
        .iter()
        .filter(|c| c.0.as_ref().is_ok_and(|c| c.spec.from.tenant == tenant || c.spec.to.tenant == tenant))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The channel controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, own: Arc<super::metrics::ChannelMetrics>) -> Arc<Channels> {
    Arc::new(Channels { ctx, applied: apply::Memory::default(), own, status: crate::status::Writer::new(CONTROLLER) })
}

impl crate::controller::Reconciler for Channels {
    crate::controller::plumbing!(ExchangeChannel, CONTROLLER, channels);

    fn reads(hub: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![&hub.tenants, &hub.zones, &hub.services, &hub.policies]
    }

    fn wire(
        self: &Arc<Self>,
        c: crate::controller::Wired<ExchangeChannel>,
    ) -> crate::controller::Wired<ExchangeChannel> {
        let hub = self.ctx.watches.clone();
        let channels = hub.channels.store();
        let tenants_in = hub.clone();
        let (by_tenant, by_zone, by_service, by_policy) =
            (channels.clone(), channels.clone(), channels.clone(), channels);
        // Tenants appearing, moving zone or losing namespaces change what a channel resolves to.
        c.watches_shared_stream(hub.tenants.subscribe(), move |t: Arc<DeserializeGuard<Tenant>>| {
            naming(&by_tenant, &t.name_any())
        })
        // A zone's networks bound the gateway of a channel into it.
        .watches_shared_stream(hub.zones.subscribe(), move |z: Arc<DeserializeGuard<Zone>>| {
            let zone = z.name_any();
            tenants_in
                .tenants
                .by(crate::watch::TENANTS_BY_ZONE, &zone)
                .iter()
                .flat_map(|t| naming(&by_zone, &t.name_any()))
                .collect::<Vec<_>>()
        })
        // The target Service: its port and selector decide the opened policy.
        .watches_shared_stream(hub.services.subscribe(), move |svc: Arc<Service>| {
            let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
            by_service
                .state()
                .iter()
                .filter(|c| {
                    c.0.as_ref().is_ok_and(|c| {
                        c.spec.to.service == name && format!("{}-{}", c.spec.to.tenant, c.spec.to.namespace) == ns
                    })
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        // Its own policies, edited or deleted by someone else.
        .watches_shared_stream(hub.policies.subscribe(), move |np: Arc<PartialObjectMeta<NetworkPolicy>>| {
            np.labels()
                .get(CHANNEL_LABEL)
                .and_then(|c| by_policy.get(&ObjectRef::new(c)))
                .map(|c| ObjectRef::from_obj(c.as_ref()))
        })
    }

    async fn reconcile(&self, ch: &ExchangeChannel) -> Result<Action> {
        reconcile_inner(ch, self).await
    }

    /// A deleted channel: its policies go with it (owner references), its series here.
    fn forget(&self, _namespace: Option<&str>, name: &str) {
        self.own.forget_channel(name);
        self.status.forget(None, name);
    }
}

pub fn check_ends(
    ch: &ExchangeChannel,
    source: Option<&Tenant>,
    target: Option<&Tenant>,
    zones: &[&Zone],
) -> std::result::Result<bool, String> {
    let source = source.ok_or_else(|| format!("spec.from.tenant: tenant {} does not exist", ch.spec.from.tenant))?;
    let target = target.ok_or_else(|| format!("spec.to.tenant: tenant {} does not exist", ch.spec.to.tenant))?;
    if !target.spec.namespaces.iter().any(|n| n.suffix == ch.spec.to.namespace) {
        return Err(format!(
            "spec.to.namespace: tenant {} has no namespace with suffix {}",
            ch.spec.to.tenant, ch.spec.to.namespace
        ));
    }
    let cross_zone = source.spec.zone != target.spec.zone;
    if cross_zone && ch.spec.gateway.is_none() {
        return Err(format!(
            "spec.gateway: tenants {} ({}) and {} ({}) are in different zones: name the zone gateway (网闸) that carries the flow",
            source.name_any(),
            source.spec.zone,
            target.name_any(),
            target.spec.zone
        ));
    }
    if let Some(g) = &ch.spec.gateway {
        super::gateway::check(g, zones)?;
    }
    Ok(cross_zone)
}

/// Finds what the channel's ends are, or says in words why they do not check out.
fn resolve(state: &Channels, ch: &ExchangeChannel) -> std::result::Result<Ends, EndsProblem> {
    let source = state.tenant(&ch.spec.from.tenant);
    let target = state.tenant(&ch.spec.to.tenant);
    let mut zones: Vec<Arc<DeserializeGuard<Zone>>> = Vec::new();
    for t in [source.as_ref(), target.as_ref()].into_iter().flatten() {
        if let Some(z) = state.watches.zones.get(&ObjectRef::new(&t.spec.zone)) {
            zones.push(z);
        }
    }
    // A zone that does not deserialize is as good as missing here.
    let zones: Vec<&Zone> = zones.iter().filter_map(|z| z.0.as_ref().ok()).collect();
    let cross_zone = match check_ends(ch, source.as_ref(), target.as_ref(), &zones) {
        Ok(cross_zone) => cross_zone,
        Err(why) => return Err(EndsProblem::Declaration(why)),
    };
    let (Some(source), Some(target)) = (source, target) else {
        return Err(EndsProblem::Declaration("a tenant of the channel disappeared".into()));
    };
    let target_namespace = format!("{}-{}", ch.spec.to.tenant, ch.spec.to.namespace);
    let Some(service) = state.watches.services.get(&ObjectRef::new(&ch.spec.to.service).within(&target_namespace))
    else {
        return Err(EndsProblem::Target(format!(
            "spec.to.service: service {}/{} does not exist",
            target_namespace, ch.spec.to.service
        )));
    };
    let spec = service.spec.clone().unwrap_or_default();
    let Some(port) = spec.ports.unwrap_or_default().into_iter().find(|p| p.port == ch.spec.to.port) else {
        return Err(EndsProblem::Target(format!(
            "spec.to.port: service {} has no port {}",
            ch.spec.to.service, ch.spec.to.port
        )));
    };
    let target_pods = spec.selector.unwrap_or_default();
    if target_pods.is_empty() {
        return Err(EndsProblem::Target(format!("spec.to.service: service {} selects no pods", ch.spec.to.service)));
    }
    Ok(Ends {
        source_tenant: source.name_any(),
        source_namespaces: source
            .spec
            .namespaces
            .iter()
            .map(|n| format!("{}-{}", source.name_any(), n.suffix))
            .collect(),
        target_tenant: target.name_any(),
        target_namespace,
        target_pods,
        target_port: port.target_port.unwrap_or(IntOrString::Int(port.port)),
        gateway: if cross_zone { ch.spec.gateway.as_ref().map(|g| g.cidr.clone()) } else { None },
    })
}

/// Events for the audit trail: an approval, its withdrawal or loss, and the expiry, each once
/// (when the status the controller last wrote did not say so yet).
async fn announce(ctx: &Context, ch: &ExchangeChannel, now: &ExchangeChannelStatus) {
    let before = ch.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    if now.approved_at.is_some() && now.approved_at != before.approved_at {
        events.push((
            EventType::Normal,
            "Approved",
            format!(
                "approved by {} at {}, until {}",
                now.approved_by.as_deref().unwrap_or("?"),
                now.approved_at.as_deref().unwrap_or("?"),
                now.approved_until.as_deref().unwrap_or("?")
            ),
        ));
    }
    if now.approved_by.is_none() && before.approved_by.is_some() && now.phase != Some(ChannelPhase::Expired) {
        events.push((
            EventType::Warning,
            "ApprovalRevoked",
            format!(
                "the approval by {} no longer holds: {}",
                before.approved_by.as_deref().unwrap_or("?"),
                now.message.as_deref().unwrap_or("")
            ),
        ));
    }
    if now.phase == Some(ChannelPhase::Expired) && before.phase != Some(ChannelPhase::Expired) {
        events.push((EventType::Normal, "Expired", now.message.clone().unwrap_or_default()));
    }
    for (type_, reason, note) in events {
        info!(channel = %ch.name_any(), reason, note = %note, "channel event");
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
        if let Err(e) = ctx.recorder.publish(&ev, &ch.object_ref(&())).await {
            warn!(error = %e, "publishing an event failed");
        }
    }
}

async fn reconcile_inner(ch: &ExchangeChannel, ctx: &Channels) -> Result<Action> {
    let client = &ctx.client;
    let name = ch.name_any();
    let now = jiff::Timestamp::now();
    // `phase` reports a malformed expiry; here it only decides the work and the next wake-up.
    let expires = ch.spec.expires.parse::<jiff::Timestamp>().ok();
    // Only resolve the ends of a channel that is not already past its expiry.
    let expired = expires.is_some_and(|t| now >= t);
    let ends = if expired { Err(EndsProblem::Declaration(String::new())) } else { resolve(ctx, ch) };
    let (phase, message) = phase(ch, ends.as_ref().map(|_| ()).map_err(Clone::clone), now);

    let desired = match (&phase, &ends) {
        (ChannelPhase::Active, Ok(ends)) => build::policies(ch, ends),
        _ => Vec::new(),
    };
    // One child set: what changed is written, what this round no longer opens is closed.
    let mut set = ChildSet::new(client, &ctx.applied);
    let mut applied = Vec::new();
    for np in &desired {
        let (ns, n) = (np.namespace().unwrap_or_default(), np.name_any());
        let actual = ctx.watches.policies.get(&ObjectRef::new(&n).within(&ns));
        if set.namespaced(np, Seen::meta(actual.as_deref())).await {
            applied.push(format!("{ns}/{n}"));
        }
    }
    if ctx.uses_cluster_network_policy() {
        let cluster_policies = match (&phase, &ends) {
            (ChannelPhase::Active, Ok(ends)) => build::cluster_policies(ch, ends),
            _ => Vec::new(),
        };
        let mut keep = Vec::new();
        for p in &cluster_policies {
            let n = p.metadata.name.clone().unwrap_or_default();
            let fingerprint = apply::fingerprint(p);
            if set.unwatched("ClusterNetworkPolicy", &n, fingerprint, crate::isolation::apply(client, p)).await {
                applied.push(n.clone());
            }
            keep.push(n);
        }
        crate::isolation::delete_except(client, &format!("{CHANNEL_LABEL}={name}"), &keep).await?;
    }
    let found: Vec<(String, String)> = ctx
        .watches
        .policies
        .state()
        .iter()
        .filter(|p| p.labels().get(CHANNEL_LABEL) == Some(&name))
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    set.prune::<NetworkPolicy>(&found, &children::keys(&desired)).await;
    let outcome = set.finish(&ctx.metrics, CONTROLLER);
    for (_, key) in &outcome.deleted {
        info!(channel = %name, policy = %key, "closed");
    }
    if let Some(f) = outcome.failures.into_iter().next() {
        return Err(Error::Apply { kind: f.kind, name: f.name, error: f.error });
    }

    let previous = ch.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let ready = [Observed::new("Ready", true, format!("{phase:?}"), message.clone())];
    let record = approval::verify(ch).ok();
    let status = ExchangeChannelStatus {
        observed_generation: ch.metadata.generation,
        phase: Some(phase),
        message: Some(message),
        requested_by: approval::requested_by(ch).map(str::to_string),
        approved_by: record.as_ref().map(|r| r.by.clone()),
        approved_at: record.as_ref().map(|r| r.at.clone()),
        approved_until: record.as_ref().map(|r| r.until.clone()),
        policies: applied,
        conditions: conditions::merge(previous, &ready, ch.metadata.generation, now),
    };
    let api = Api::<ExchangeChannel>::all(client.clone());
    // Announced with the write that says it: a round on a cache one write behind neither
    // writes nor announces again.
    if ctx.status.whole(&ctx.metrics, &api, ch, ch.status.as_ref(), &status).await? {
        announce(ctx, ch, &status).await;
    }

    let to_expiry = expires.map(|t| t.duration_since(now).as_secs_f64());
    ctx.own.observe_channel(&name, &format!("{phase:?}"), to_expiry.unwrap_or(0.0).max(0.0));
    // Wake up right after the expiry to close the flow, and now and then to follow the ends.
    let next = match (phase, to_expiry) {
        (ChannelPhase::Expired, _) => Duration::from_secs(300),
        (ChannelPhase::Invalid, _) => Duration::from_secs(10),
        (_, Some(secs)) if secs > 0.0 => Duration::from_secs_f64((secs + 0.5).min(60.0)),
        _ => Duration::from_secs(60),
    };
    Ok(Action::requeue(next))
}

#[cfg(test)]
mod tests {
    //! Rounds against a fake API server: tenants tax (namespace tax-export) and stats
    //! (stats-ingest, whose Service api listens on 443) in one zone, and a policy this channel
    //! opened in a namespace it no longer reaches.
    use super::*;
    use crate::fake_api::{self, writes};
    use serde_json::{Value, json};

    fn tenant(name: &str, suffix: &str) -> Value {
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant",
               "metadata": {"name": name, "resourceVersion": "4"},
               "spec": {"department": {"code": "GZ", "name": "GZ"}, "zone": "extranet",
                        "owners": [{"kind": "User", "name": "a"}], "namespaces": [{"suffix": suffix}],
                        "quota": {}, "securityLevel": 2}})
    }

    fn policy(namespace: &str, name: &str) -> Value {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
               "metadata": {"name": name, "namespace": namespace, "resourceVersion": "9",
                            "labels": {(crate::labels::MANAGED_BY): crate::labels::MANAGER, (CHANNEL_LABEL): "tax-to-stats"}}})
    }

    async fn channels_over(ch: &ExchangeChannel, policies: Vec<Value>) -> (Arc<Channels>, fake_api::Recorded) {
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "api", "namespace": "stats-ingest", "resourceVersion": "2"},
            "spec": {"ports": [{"port": 443, "targetPort": 8443}], "selector": {"app": "api"}}});
        let zone = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
            "metadata": {"name": "extranet", "resourceVersion": "3"},
            "spec": {"kind": "Extranet", "nodeSelector": {"zone": "extranet"}}});
        let (ctx, recorded) = fake_api::context(vec![
            ("/apis/zhengyun.io/v1alpha1/exchangechannels", vec![serde_json::to_value(ch).unwrap_or_default()]),
            ("/apis/zhengyun.io/v1alpha1/tenants", vec![tenant("tax", "export"), tenant("stats", "ingest")]),
            ("/apis/zhengyun.io/v1alpha1/zones", vec![zone]),
            ("/api/v1/services", vec![service]),
            ("/apis/networking.k8s.io/v1/networkpolicies", policies),
        ]);
        let own = super::super::metrics::ChannelMetrics::new(&ctx.metrics);
        let channels = controller(ctx.clone(), own);
        let reads = <Channels as crate::controller::Reconciler>::reads(&ctx.watches);
        fake_api::listed(&reads).await;
        (channels, recorded)
    }

    fn approved() -> ExchangeChannel {
        let mut ch = super::super::tests::channel(true, "2099-01-01T00:00:00Z");
        ch.metadata.resource_version = Some("5".into());
        ch
    }

    #[tokio::test]
    async fn an_approved_channel_opens_its_policies_closes_a_stale_one_and_is_quiet_when_settled() {
        let ch = approved();
        let (channels, recorded) = channels_over(&ch, vec![policy("tax-old", "channel-tax-to-stats")]).await;
        reconcile_inner(&ch, &channels).await.unwrap_or_else(|e| panic!("{e}"));
        let w = writes(&recorded);
        let opened: Vec<&String> =
            w.iter().filter(|l| l.starts_with("PATCH") && l.contains("networkpolicies")).collect();
        assert!(
            opened.iter().any(|l| l.contains("/namespaces/tax-export/"))
                && opened.iter().any(|l| l.contains("/namespaces/stats-ingest/")),
            "egress from the source and ingress to the target: {w:#?}"
        );
        assert!(w.contains(
            &"DELETE /apis/networking.k8s.io/v1/namespaces/tax-old/networkpolicies/channel-tax-to-stats".to_string()
        ));
        let status =
            recorded.all().into_iter().rfind(|r| r.line().ends_with("/status")).map(|r| r.body["status"].clone());
        assert_eq!(status.map(|s| s["phase"].clone()), Some(json!("Active")));
        assert!(w.iter().any(|l| l.contains("/events")), "the approval is an Event: {w:#?}");

        // The same cluster with those policies in place at the version our writes left: one
        // round writes them (nothing remembered yet), the next writes nothing at all.
        let in_place: Vec<Value> = opened
            .iter()
            .filter_map(|l| {
                let rest = l.split("/namespaces/").nth(1)?;
                let (ns, name) = rest.split_once("/networkpolicies/")?;
                Some(policy(ns, name))
            })
            .collect();
        let (channels, recorded) = channels_over(&ch, in_place).await;
        reconcile_inner(&ch, &channels).await.unwrap_or_else(|e| panic!("{e}"));
        let first = writes(&recorded).len();
        reconcile_inner(&ch, &channels).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writes(&recorded).len(), first, "{:#?}", &writes(&recorded)[first..]);
        assert!(!writes(&recorded).iter().any(|l| l.starts_with("DELETE")), "nothing of its own to close");
    }

    #[tokio::test]
    async fn an_unapproved_channel_opens_nothing_and_closes_what_it_had_opened() {
        let mut ch = super::super::tests::channel(false, "2099-01-01T00:00:00Z");
        ch.metadata.resource_version = Some("5".into());
        let (channels, recorded) = channels_over(&ch, vec![policy("stats-ingest", "channel-tax-to-stats")]).await;
        reconcile_inner(&ch, &channels).await.unwrap_or_else(|e| panic!("{e}"));
        let w = writes(&recorded);
        assert!(!w.iter().any(|l| l.starts_with("PATCH") && l.contains("networkpolicies")), "{w:#?}");
        assert!(
            w.contains(
                &"DELETE /apis/networking.k8s.io/v1/namespaces/stats-ingest/networkpolicies/channel-tax-to-stats"
                    .to_string()
            )
        );
        let status =
            recorded.all().into_iter().rfind(|r| r.line().ends_with("/status")).map(|r| r.body["status"].clone());
        assert_eq!(status.map(|s| s["phase"].clone()), Some(json!("Pending")));
    }
}
