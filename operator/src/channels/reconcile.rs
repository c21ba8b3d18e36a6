//! The ExchangeChannel controller: resolves the channel's ends, applies or removes its
//! policies by phase, and wakes up at the expiry to close the flow.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{core::v1::Service, networking::v1::NetworkPolicy},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        watcher,
    },
};
use tracing::{info, info_span, warn};

use super::{
    EndsProblem, approval,
    build::{self, CHANNEL_LABEL, Ends},
    phase,
};
use crate::{
    api::{ChannelPhase, ExchangeChannel, ExchangeChannelStatus, Tenant, Zone},
    apply,
    conditions::{self, Observed},
    context::Context,
    error::Result,
    labels,
};

pub const CONTROLLER: &str = "exchangechannel";

pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    // Tenants appearing, moving zone or losing namespaces change what a channel resolves to.
    let tenants = watcher(Api::<Tenant>::all(client.clone()), watcher::Config::default()).map(|_| ());
    // A zone's networks bound the gateway of a channel into it.
    let zones = watcher(Api::<Zone>::all(client.clone()), watcher::Config::default()).map(|_| ());
    let tenants = futures::stream::select(tenants, zones);
    let metrics = ctx.metrics.clone();
    Controller::new(Api::<ExchangeChannel>::all(client.clone()), watcher::Config::default())
        .owns(Api::<NetworkPolicy>::all(client.clone()), watcher::Config::default().labels(CHANNEL_LABEL))
        .reconcile_all_on(tenants)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(5)), ctx)
        .for_each(|res| {
            let metrics = metrics.clone();
            async move {
                match res {
                    // A deleted channel: its policies go with it (owner references).
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => metrics.forget_channel(&obj.name),
                    Err(e) => tracing::debug!(error = %e, "channel reconcile"),
                    Ok(_) => {}
                }
            }
        })
        .await;
}

/// Checks a channel's ends against the tenants they name and their zones: both exist, the
/// target namespace is the target tenant's, a flow between zones names a gateway, and the
/// gateway fits the zones ([`super::gateway::check`]). Returns whether the flow crosses zones.
/// The admission webhook calls this too, so the two never disagree.
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

/// The zones of the tenants a channel names (those that exist).
pub async fn end_zones(client: &kube::Client, tenants: [Option<&Tenant>; 2]) -> Result<Vec<Zone>> {
    let api: Api<Zone> = Api::all(client.clone());
    let mut zones = Vec::new();
    for t in tenants.into_iter().flatten() {
        if let Some(z) = api.get_opt(&t.spec.zone).await?
            && !zones.iter().any(|have: &Zone| have.metadata.name == z.metadata.name)
        {
            zones.push(z);
        }
    }
    Ok(zones)
}

/// Finds what the channel's ends are, or says in words why they do not check out.
pub async fn resolve(client: &kube::Client, ch: &ExchangeChannel) -> Result<std::result::Result<Ends, EndsProblem>> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let source = tenants.get_opt(&ch.spec.from.tenant).await?;
    let target = tenants.get_opt(&ch.spec.to.tenant).await?;
    let zones = end_zones(client, [source.as_ref(), target.as_ref()]).await?;
    let cross_zone = match check_ends(ch, source.as_ref(), target.as_ref(), &zones.iter().collect::<Vec<_>>()) {
        Ok(cross_zone) => cross_zone,
        Err(why) => return Ok(Err(EndsProblem::Declaration(why))),
    };
    let (Some(source), Some(target)) = (source, target) else {
        return Ok(Err(EndsProblem::Declaration("a tenant of the channel disappeared".into())));
    };
    let target_namespace = format!("{}-{}", ch.spec.to.tenant, ch.spec.to.namespace);
    let Some(service) =
        Api::<Service>::namespaced(client.clone(), &target_namespace).get_opt(&ch.spec.to.service).await?
    else {
        return Ok(Err(EndsProblem::Target(format!(
            "spec.to.service: service {}/{} does not exist",
            target_namespace, ch.spec.to.service
        ))));
    };
    let spec = service.spec.unwrap_or_default();
    let Some(port) = spec.ports.unwrap_or_default().into_iter().find(|p| p.port == ch.spec.to.port) else {
        return Ok(Err(EndsProblem::Target(format!(
            "spec.to.port: service {} has no port {}",
            ch.spec.to.service, ch.spec.to.port
        ))));
    };
    let target_pods = spec.selector.unwrap_or_default();
    if target_pods.is_empty() {
        return Ok(Err(EndsProblem::Target(format!(
            "spec.to.service: service {} selects no pods",
            ch.spec.to.service
        ))));
    }
    Ok(Ok(Ends {
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
    }))
}

async fn reconcile(ch: Arc<ExchangeChannel>, ctx: Arc<Context>) -> Result<Action> {
    let name = ch.name_any();
    let span = info_span!("reconcile", controller = CONTROLLER, channel = %name);
    crate::metrics::instrumented(&ctx.metrics, CONTROLLER, span, reconcile_inner(&ch, &ctx)).await
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

async fn reconcile_inner(ch: &ExchangeChannel, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let name = ch.name_any();
    let now = jiff::Timestamp::now();
    // `phase` reports a malformed expiry; here it only decides the work and the next wake-up.
    let expires = ch.spec.expires.parse::<jiff::Timestamp>().ok();
    // Only resolve the ends of a channel that is not already past its expiry.
    let expired = expires.is_some_and(|t| now >= t);
    let ends = if expired { Ok(Err(EndsProblem::Declaration(String::new()))) } else { resolve(client, ch).await };
    let ends = ends?;
    let (phase, message) = phase(ch, ends.as_ref().map(|_| ()).map_err(Clone::clone), now);

    let desired = match (&phase, &ends) {
        (ChannelPhase::Active, Ok(ends)) => build::policies(ch, ends),
        _ => Vec::new(),
    };
    let mut applied = Vec::new();
    for np in &desired {
        apply::namespaced(client, np).await?;
        applied.push(format!("{}/{}", np.namespace().unwrap_or_default(), np.name_any()));
    }
    if ctx.uses_cluster_network_policy() {
        let cluster_policies = match (&phase, &ends) {
            (ChannelPhase::Active, Ok(ends)) => build::cluster_policies(ch, ends),
            _ => Vec::new(),
        };
        let mut keep = Vec::new();
        for p in &cluster_policies {
            crate::isolation::apply(client, p).await?;
            let n = p.metadata.name.clone().unwrap_or_default();
            applied.push(n.clone());
            keep.push(n);
        }
        crate::isolation::delete_except(client, &format!("{CHANNEL_LABEL}={name}"), &keep).await?;
    }
    // Close what this round no longer opens.
    let keep: BTreeSet<&String> = applied.iter().collect();
    let existing = Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{CHANNEL_LABEL}={name}")))
        .await?;
    for np in existing.items {
        let key = format!("{}/{}", np.namespace().unwrap_or_default(), np.name_any());
        if !keep.contains(&key) {
            apply::delete_namespaced::<NetworkPolicy>(client, &np.namespace().unwrap_or_default(), &np.name_any())
                .await?;
            info!(channel = %name, policy = %key, "closed");
        }
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
    announce(ctx, ch, &status).await;
    let seen = |s: &ExchangeChannelStatus| {
        (
            s.phase,
            s.message.clone(),
            s.policies.clone(),
            s.observed_generation,
            s.approved_at.clone(),
            s.requested_by.clone(),
        )
    };
    if ch.status.as_ref().map(seen) != Some(seen(&status)) {
        let patch =
            serde_json::json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel", "status": status});
        Api::<ExchangeChannel>::all(client.clone())
            .patch_status(&name, &PatchParams::apply(labels::FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }

    let to_expiry = expires.map(|t| t.duration_since(now).as_secs_f64());
    ctx.metrics.observe_channel(&name, &format!("{phase:?}"), to_expiry.unwrap_or(0.0).max(0.0));
    // Wake up right after the expiry to close the flow, and now and then to follow the ends.
    let next = match (phase, to_expiry) {
        (ChannelPhase::Expired, _) => Duration::from_secs(300),
        (ChannelPhase::Invalid, _) => Duration::from_secs(10),
        (_, Some(secs)) if secs > 0.0 => Duration::from_secs_f64((secs + 0.5).min(60.0)),
        _ => Duration::from_secs(60),
    };
    Ok(Action::requeue(next))
}
