//! The SecureGateway controller: resolves what a gateway names (its tenant's zone, the
//! certificate, the client CA, the backend Service), refuses what the tenant's level forbids,
//! applies the policy first and the workload last, tells running replicas when their
//! certificate Secret changed, and reports what is served.

use std::{collections::HashMap, sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret, Service},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
    },
};
use tracing::{info, warn};

use super::{
    GATEWAY_LABEL, SECRETS_ANNOTATION,
    build::{self, Resolved},
};
use crate::{
    api::{
        Pair, SecureGateway, SecureGatewayStatus, SmCertificate, SmIssuer, Zone,
        gateway::{ClientAuthMode, GatewayProtocol},
    },
    apply::{self, Seen},
    children::ChildSet,
    conditions::{self, Observed},
    context::Context,
    error::{Error, Result},
    labels,
};

pub const CONTROLLER: &str = "securegateway";

type Guarded = DeserializeGuard<SecureGateway>;

/// What the controller keeps between rounds.
pub struct Gateways {
    ctx: Arc<Context>,
    applied: apply::Memory,
    /// Per gateway, the Secret versions its pods were last told about.
    told: std::sync::Mutex<HashMap<(String, String), String>>,
    /// SecureGateways that cannot be served, by reason.
    problems: prometheus::IntCounterVec,
    status: crate::status::Writer,
}

/// The gateways of a namespace for which `pick` holds.
fn those(store: &Store<Guarded>, ns: &str, pick: impl Fn(&SecureGateway) -> bool) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|g| g.namespace().as_deref() == Some(ns) && g.0.as_ref().is_ok_and(&pick))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The Secret names a gateway's pods mount: its certificate's and the standard one.
fn secrets_of(g: &SecureGateway, certificates: &Store<DeserializeGuard<SmCertificate>>) -> Vec<String> {
    let ns = g.namespace().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(c) = certificates.get(&ObjectRef::new(&g.spec.certificate.name).within(&ns))
        && let Ok(c) = &c.0
    {
        out.push(c.spec.secret_name.clone());
    }
    if let Some(s) = &g.spec.standard_certificate {
        out.push(s.secret_name.clone());
    }
    out
}

/// The SecureGateway controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, problems: prometheus::IntCounterVec) -> Arc<Gateways> {
    Arc::new(Gateways {
        ctx,
        applied: apply::Memory::default(),
        told: Default::default(),
        problems,
        status: crate::status::Writer::new(CONTROLLER),
    })
}

impl crate::controller::Reconciler for Gateways {
    crate::controller::plumbing!(SecureGateway, CONTROLLER, gateways);

    fn reads(h: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![
            &h.certificates,
            &h.services,
            &h.zones,
            &h.issuers,
            &h.gateway_deployments,
            &h.namespaces,
            &h.policies,
            &h.gateway_configmaps,
        ]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<SecureGateway>) -> crate::controller::Wired<SecureGateway> {
        let hub = self.ctx.watches.clone();
        let store = hub.gateways.store();
        let certificates = hub.certificates.store();
        let (s1, s2, s3, s4, s5) = (store.clone(), store.clone(), store.clone(), store.clone(), store);
        // The backend Service (its cluster IP, port and selector) and the gateway's own Service.
        c.watches_shared_stream(hub.services.subscribe(), move |svc: Arc<Service>| {
            let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
            those(&s1, &ns, |g| g.spec.backend.service == name || build::child_name(&g.name_any()) == name)
        })
        .watches_shared_stream(hub.certificates.subscribe(), move |c: Arc<DeserializeGuard<SmCertificate>>| {
            let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
            those(&s2, &ns, |g| g.spec.certificate.name == name)
        })
        // A rotated certificate: the pods are told so their volumes refresh now.
        .watches_shared_stream(hub.secrets.subscribe(), move |s: Arc<PartialObjectMeta<Secret>>| {
            let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
            those(&s3, &ns, |g| secrets_of(g, &certificates).contains(&name))
        })
        .watches_shared_stream(hub.issuers.subscribe(), move |i: Arc<DeserializeGuard<SmIssuer>>| {
            let (ns, name) = (i.namespace().unwrap_or_default(), i.name_any());
            those(&s4, &ns, |g| g.spec.client_auth.as_ref().and_then(|c| c.ca_issuer.as_deref()) == Some(&name))
        })
        .watches_shared_stream(hub.gateway_deployments.subscribe(), move |d: Arc<Deployment>| {
            let ns = d.namespace().unwrap_or_default();
            d.labels().get(GATEWAY_LABEL).map(|g| ObjectRef::new(g).within(&ns)).into_iter().collect::<Vec<_>>()
        })
        // A zone's declared networks are the gateway's allowed clients.
        .watches_shared_stream(hub.zones.subscribe(), move |_z: Arc<DeserializeGuard<Zone>>| {
            s5.state().iter().map(|g| ObjectRef::from_obj(g.as_ref())).collect::<Vec<_>>()
        })
    }

    async fn reconcile(&self, g: &SecureGateway) -> Result<Action> {
        reconcile_inner(g, self).await
    }

    /// A deleted gateway: what its pods were told goes with it.
    fn forget(&self, namespace: Option<&str>, name: &str) {
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        if let Ok(mut t) = self.told.lock() {
            t.remove(&key);
        }
        self.status.forget(namespace, name);
    }
}

type Problem = (&'static str, String);

/// Refusals that mean the gateway must not run at all, not merely that it cannot change now.
const FORBIDDEN: [&str; 4] =
    ["StandardTlsForbidden", "CertificateInOtherNamespace", "NotATenantNamespace", "ZoneNotFound"];

/// Whether an object exists and is zhengyun's: `None` when absent, `Some(managed)` otherwise.
/// A cached one is ours (the caches select by our labels); one the cache lacks is read.
async fn cached_or_read<K>(ctx: &Context, ns: &str, name: &str, cached: bool) -> Result<Option<bool>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if cached {
        return Ok(Some(true));
    }
    let found = Api::<K>::namespaced(ctx.client.clone(), ns).get_opt(name).await?;
    Ok(found.map(|o| o.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER)))
}

/// Resolves everything the gateway names, or says what is wrong, naming the field.
async fn resolve(g: &SecureGateway, ctx: &Context) -> Result<std::result::Result<(Resolved, SmCertificate), Problem>> {
    let ns = g.namespace().unwrap_or_default();
    let hub = &ctx.watches;
    let s = &g.spec;
    macro_rules! refuse {
        ($reason:expr, $($msg:tt)*) => { return Ok(Err(($reason, format!($($msg)*)))) };
    }
    if let Some(other) = &s.certificate.namespace
        && other != &ns
    {
        refuse!(
            "CertificateInOtherNamespace",
            "spec.certificate.namespace: a gateway serves only a certificate of its own namespace ({ns}), not {other}'s"
        );
    }
    let Some(namespace) = hub.namespaces.get(&ObjectRef::new(&ns)) else {
        refuse!("NotATenantNamespace", "namespace {ns} is not known yet");
    };
    let (Some(tenant), Some(zone_name)) =
        (namespace.labels().get(labels::TENANT).cloned(), namespace.labels().get(labels::ZONE).cloned())
    else {
        refuse!(
            "NotATenantNamespace",
            "namespace {ns} belongs to no tenant: SecureGateways serve tenants' Services, placed in their zone"
        );
    };
    let level = namespace.labels().get(labels::SECURITY_LEVEL).cloned().unwrap_or_default();
    if level == "4" && s.protocols.contains(&GatewayProtocol::Tls) {
        refuse!(
            "StandardTlsForbidden",
            "spec.protocols: standard TLS is not allowed at 等保 level 4 (namespace {ns}); serve TLCP or TLS13-SM only"
        );
    }
    let Some(zone) = hub.zones.get(&ObjectRef::new(&zone_name)) else {
        refuse!("ZoneNotFound", "the tenant's zone {zone_name} does not exist");
    };
    let Ok(zone) = &zone.0 else { refuse!("ZoneNotFound", "zone {zone_name} does not match its schema") };
    let Some(image) = ctx.gateway_image.get().cloned() else {
        refuse!(
            "NoGatewayImage",
            "the operator runs without --gateway-image (chart value gateway.image): no gateway can be deployed"
        );
    };

    let cert_name = &s.certificate.name;
    let Some(cert) = hub.certificates.get(&ObjectRef::new(cert_name).within(&ns)) else {
        refuse!("CertificateNotFound", "spec.certificate: SmCertificate {ns}/{cert_name} does not exist");
    };
    let Ok(cert) = &cert.0 else {
        refuse!("CertificateNotFound", "SmCertificate {ns}/{cert_name} does not match its schema")
    };
    if s.protocols.contains(&GatewayProtocol::Tlcp) && cert.spec.pair != Pair::Tlcp {
        refuse!(
            "CertificateNotTlcp",
            "spec.certificate: TLCP needs a sign + enc pair, and SmCertificate {cert_name} has spec.pair Single"
        );
    }
    if !cert.spec.usages().0 {
        refuse!("CertificateNotForServers", "spec.certificate: SmCertificate {cert_name} lacks the server usage");
    }
    let ready = cert.status.as_ref().is_some_and(|st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") && st.serial_number.is_some()
    });
    if !ready {
        refuse!("CertificateNotReady", "spec.certificate: SmCertificate {cert_name} is not Ready yet");
    }
    if let Some(std) = &s.standard_certificate
        && hub.secrets.get(&ObjectRef::new(&std.secret_name).within(&ns)).is_none()
    {
        refuse!(
            "StandardCertificateMissing",
            "spec.standardCertificate: Secret {ns}/{} does not exist",
            std.secret_name
        );
    }

    let client_ca = match (s.client_auth_mode(), s.client_auth.as_ref().and_then(|c| c.ca_issuer.clone())) {
        (ClientAuthMode::None, _) => None,
        (_, None) => {
            refuse!("ClientCaMissing", "spec.clientAuth.caIssuer is required when clients present certificates")
        }
        (_, Some(issuer)) => {
            let Some(i) = hub.issuers.get(&ObjectRef::new(&issuer).within(&ns)) else {
                refuse!("ClientCaMissing", "spec.clientAuth.caIssuer: SmIssuer {ns}/{issuer} does not exist");
            };
            let Ok(i) = &i.0 else { refuse!("ClientCaMissing", "SmIssuer {issuer} does not match its schema") };
            match crate::certificates::issuers::load_ca(&ctx.client, i, ctx, Timestamp::now()).await? {
                // The issuer's own certificate, not the root above it: a root would also admit
                // clients of every other issuer under it (other departments').
                Ok(ca) => Some(crate::pki::cert::pem("CERTIFICATE", &ca.cert.der)),
                Err((_, why)) => {
                    refuse!("ClientCaNotReady", "spec.clientAuth.caIssuer: SmIssuer {issuer} cannot be used: {why}")
                }
            }
        }
    };

    let backend = &s.backend.service;
    let Some(svc) = hub.services.get(&ObjectRef::new(backend).within(&ns)) else {
        refuse!("BackendNotFound", "spec.backend.service: Service {ns}/{backend} does not exist");
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        refuse!("BackendHeadless", "spec.backend.service: Service {backend} has no cluster IP (headless)");
    }
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        refuse!(
            "BackendWithoutSelector",
            "spec.backend.service: Service {backend} selects no pods, so no policy can name them"
        );
    }
    let Some(port) = spec.ports.unwrap_or_default().into_iter().find(|p| p.port == i32::from(s.backend.port)) else {
        refuse!("BackendPortNotFound", "spec.backend.port: Service {backend} has no port {}", s.backend.port);
    };
    let target = port.target_port.unwrap_or(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port.port));
    Ok(Ok((
        Resolved {
            tenant,
            zone_ingress: zone.spec.ingress.clone(),
            backend_ip: ip,
            backend_pods: selector,
            backend_target_port: target,
            certificate_secret: cert.spec.secret_name.clone(),
            client_ca,
            image,
        },
        cert.clone(),
    )))
}

async fn reconcile_inner(g: &SecureGateway, state: &Gateways) -> Result<Action> {
    let ctx = &state.ctx;
    let (ns, name) = (g.namespace().unwrap_or_default(), g.name_any());
    let now = Timestamp::now();
    let client = &ctx.client;
    let hub = &ctx.watches;
    let child = build::child_name(&name);
    let (r, cert) = match resolve(g, ctx).await? {
        Ok(x) => x,
        Err((reason, why)) => {
            // What the namespace forbids stops: a gateway that served standard TLS before its
            // tenant went to level 4 does not keep serving it. Other problems (a certificate
            // being renewed, a Service being replaced) leave the running gateway alone.
            if FORBIDDEN.contains(&reason) && hub.gateway_deployments.get(&ObjectRef::new(&child).within(&ns)).is_some()
            {
                apply::delete_namespaced::<Deployment>(client, &ns, &child).await?;
                warn!(namespace = %ns, gateway = %name, %reason, "stopped the gateway: it serves what its namespace forbids");
            }
            return fail(g, state, reason, why, now).await;
        }
    };
    // A child of that name that zhengyun did not make is not taken over.
    let here = ObjectRef::new(&child).within(&ns);
    let dep_cached = hub.gateway_deployments.get(&here).is_some();
    let svc_cached = hub
        .services
        .get(&ObjectRef::new(&child).within(&ns))
        .is_some_and(|s| s.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER));
    for (kind, exists) in [
        ("Deployment", cached_or_read::<Deployment>(ctx, &ns, &child, dep_cached).await?),
        ("Service", cached_or_read::<Service>(ctx, &ns, &child, svc_cached).await?),
    ] {
        if exists == Some(false) {
            let why =
                format!("a {kind} named {child} exists in {ns} and was not made by zhengyun: rename or remove it");
            return fail(g, state, "ChildConflict", why, now).await;
        }
    }
    // The policy first: a gateway never runs before its traffic is bounded, nor without its
    // client CA; the Service meanwhile is harmless (no pod behind it).
    let mut set = ChildSet::new(client, &state.applied);
    let np = build::network_policy(g, &r);
    let seen = hub.policies.get(&ObjectRef::new(&child).within(&ns));
    set.namespaced(&np, Seen::meta(seen.as_deref())).await;
    if let Some(cm) = build::client_ca(g, &r) {
        let seen = hub.gateway_configmaps.get(&ObjectRef::new(&cm.name_any()).within(&ns));
        set.namespaced(&cm, Seen::meta(seen.as_deref())).await;
    }
    let svc = build::service(g, &r);
    let seen_svc = hub.services.get(&ObjectRef::new(&child).within(&ns));
    set.namespaced(&svc, Seen::Whole(seen_svc.as_deref())).await;
    let seen_dep = hub.gateway_deployments.get(&ObjectRef::new(&child).within(&ns));
    if set.clean() {
        set.namespaced(&build::deployment(g, &r), Seen::Whole(seen_dep.as_deref())).await;
    }
    if let Some(f) = set.finish(&ctx.metrics, CONTROLLER).failures.into_iter().next() {
        return Err(Error::Apply { kind: f.kind, name: f.name, error: f.error });
    }

    tell_pods(g, state, &ns, &name).await?;

    let cert_status = cert.status.clone().unwrap_or_default();
    let (protocols, suites) = build::suites(g);
    let ready_replicas = seen_dep.as_ref().and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = seen_dep.as_ref().and_then(|d| d.status.as_ref()).is_some_and(|s| {
        s.observed_generation == d_generation(seen_dep.as_deref()) && s.updated_replicas.unwrap_or(0) >= g.spec.replicas
    });
    let mut endpoints = vec![format!("{child}.{ns}.svc:{}", g.spec.port)];
    if let Some(ip) = seen_svc.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.cluster_ip.clone()) {
        endpoints.push(format!("{ip}:{}", g.spec.port));
    }
    let ready = if ready_replicas >= g.spec.replicas && updated {
        Observed::new("Ready", true, "Serving", format!("{ready_replicas} replica(s) serve {}", protocols.join(", ")))
    } else {
        Observed::new(
            "Ready",
            false,
            "ReplicasNotReady",
            format!("{ready_replicas} of {} replica(s) ready", g.spec.replicas),
        )
    };
    let previous = g.status.clone().unwrap_or_default();
    let status = SecureGatewayStatus {
        observed_generation: g.metadata.generation,
        protocols,
        suites,
        sign_serial: cert_status.serial_number.clone(),
        enc_serial: cert_status.enc_serial_number.clone(),
        not_after: cert_status.not_after.clone(),
        endpoints,
        ready_replicas: Some(ready_replicas),
        conditions: conditions::merge(&previous.conditions, &[ready], g.metadata.generation, now),
    };
    let api = Api::<SecureGateway>::namespaced(client.clone(), &ns);
    state.status.whole(&ctx.metrics, &api, g, g.status.as_ref(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn d_generation(d: Option<&Deployment>) -> Option<i64> {
    d.and_then(|d| d.metadata.generation)
}

/// Annotates the gateway's pods with the versions of the Secrets they mount, when those moved:
/// an update to a pod makes its kubelet refresh the pod's Secret volumes now, not at its next
/// periodic sync (up to a minute or more), and the gateway reloads the files within a second.
async fn tell_pods(g: &SecureGateway, state: &Gateways, ns: &str, name: &str) -> Result<()> {
    let ctx = &state.ctx;
    let hub = &ctx.watches;
    let mut versions: Vec<String> = secrets_of(g, &hub.certificates.store())
        .into_iter()
        .map(|s| {
            let v = hub.secrets.get(&ObjectRef::new(&s).within(ns)).and_then(|m| m.resource_version());
            format!("{s}={}", v.unwrap_or_default())
        })
        .collect();
    versions.sort();
    let versions = versions.join(",");
    let key = (ns.to_string(), name.to_string());
    if state.told.lock().ok().and_then(|t| t.get(&key).cloned()).as_deref() == Some(versions.as_str()) {
        return Ok(());
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let listed = pods.list_metadata(&ListParams::default().labels(&format!("{GATEWAY_LABEL}={name}"))).await?;
    for p in listed.items {
        if p.annotations().get(SECRETS_ANNOTATION) == Some(&versions) || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {SECRETS_ANNOTATION: versions}}});
        match apply::merge(&pods, &p.name_any(), &patch).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        info!(namespace = %ns, gateway = %name, pod = %p.name_any(), secrets = %versions, "told a gateway pod its certificate changed");
    }
    if let Ok(mut t) = state.told.lock() {
        t.insert(key, versions);
    }
    Ok(())
}

/// Reports why the gateway cannot be served. What already runs stays: a gateway serving the
/// last good certificate is better than none, and the condition says what to fix.
async fn fail(
    g: &SecureGateway,
    state: &Gateways,
    reason: &'static str,
    why: String,
    now: Timestamp,
) -> Result<Action> {
    let ctx = &state.ctx;
    let (ns, name) = (g.namespace().unwrap_or_default(), g.name_any());
    let previous = g.status.clone().unwrap_or_default();
    let in_status = previous.observed_generation == g.metadata.generation
        && previous.conditions.iter().any(|x| x.type_ == "Ready" && x.reason == reason && x.message == why);
    let merged = conditions::merge(
        &previous.conditions,
        &[Observed::new("Ready", false, reason, why.clone())],
        g.metadata.generation,
        now,
    );
    let fields = serde_json::json!({"observedGeneration": g.metadata.generation, "conditions": merged});
    let api = Api::<SecureGateway>::namespaced(ctx.client.clone(), &ns);
    // Reported with the write that says it: a round on a cache one write behind neither writes
    // nor reports again.
    if state.status.fields(&ctx.metrics, &api, g, in_status, fields).await? {
        warn!(namespace = %ns, gateway = %name, %reason, problem = %why, "cannot serve");
        state.problems.with_label_values(&[reason]).inc();
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(why),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &g.object_ref(&())).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
/// `zhengyun_securegateway_problems_total`, registered into `m`'s registry.
pub fn problems_metric(m: &crate::metrics::Metrics) -> prometheus::IntCounterVec {
    use prometheus::{IntCounterVec, Opts};
    let gateway_problems = crate::metrics::must(IntCounterVec::new(
        Opts::new(
            "zhengyun_securegateway_problems_total",
            "SecureGateways found unservable (a reference missing or not ready, a forbidden protocol), by reason",
        ),
        &["reason"],
    ));
    m.register(gateway_problems.clone());
    gateway_problems
}

#[cfg(test)]
mod tests {
    //! Rounds against a fake API server: tenant namespace edu-apps (level 3, zone extranet) with
    //! the Service web, and, when `certified`, a Ready SmCertificate web-cert.
    use super::*;
    use crate::fake_api::{self, writes};
    use serde_json::{Value, json};

    fn gateway() -> SecureGateway {
        fake_api::object(json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "SecureGateway",
            "metadata": {"name": "web", "namespace": "edu-apps", "resourceVersion": "5", "generation": 1},
            "spec": {"backend": {"service": "web", "port": 8080}, "protocols": ["TLS13-SM"],
                     "certificate": {"name": "web-cert"}, "replicas": 2}
        }))
    }

    async fn gateways_over(certified: bool) -> (Arc<Gateways>, fake_api::Recorded) {
        let namespace = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "edu-apps", "resourceVersion": "2", "labels": {
                (labels::MANAGED_BY): labels::MANAGER, (labels::TENANT): "edu",
                (labels::ZONE): "extranet", (labels::SECURITY_LEVEL): "3"}}});
        let zone = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
            "metadata": {"name": "extranet", "resourceVersion": "3"},
            "spec": {"kind": "Extranet", "nodeSelector": {"zone": "extranet"}}});
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "edu-apps", "resourceVersion": "2"},
            "spec": {"clusterIP": "10.0.0.5", "selector": {"app": "web"}, "ports": [{"port": 8080}]}});
        let certificate = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmCertificate",
            "metadata": {"name": "web-cert", "namespace": "edu-apps", "resourceVersion": "4"},
            "spec": {"issuerRef": {"name": "ca"}, "secretName": "web-cert", "dnsNames": ["web.edu.gov.cn"]},
            "status": {"serialNumber": "01", "conditions": [{"type": "Ready", "status": "True", "reason": "Issued",
                "message": "", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
        let gw = serde_json::to_value(gateway()).unwrap_or_default();
        let (ctx, recorded) = fake_api::context(vec![
            ("/apis/zhengyun.io/v1alpha1/namespaces/edu-apps/securegateways", vec![gw.clone()]),
            ("/apis/zhengyun.io/v1alpha1/securegateways", vec![gw]),
            ("/api/v1/namespaces", vec![namespace]),
            ("/apis/zhengyun.io/v1alpha1/zones", vec![zone]),
            ("/api/v1/services", vec![service]),
            ("/apis/zhengyun.io/v1alpha1/smcertificates", if certified { vec![certificate] } else { vec![] }),
            ("/api/v1/namespaces/edu-apps/pods", vec![]),
        ]);
        let problems = problems_metric(&ctx.metrics);
        let _ = ctx.gateway_image.set("registry.local/zhengyun-gateway:1".into());
        let gateways = controller(ctx.clone(), problems);
        let hub = &ctx.watches;
        let mut reads = <Gateways as crate::controller::Reconciler>::reads(hub);
        reads.push(&hub.gateways);
        fake_api::listed(&reads).await;
        (gateways, recorded)
    }

    fn status_body(recorded: &fake_api::Recorded) -> Value {
        let all = recorded.all();
        all.into_iter().rfind(|r| r.line().ends_with("/status")).map(|r| r.body["status"].clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_gateway_gets_its_policy_before_its_service_and_deployment_and_reports_its_endpoint() {
        let (gateways, recorded) = gateways_over(true).await;
        reconcile_inner(&gateway(), &gateways).await.unwrap_or_else(|e| panic!("{e}"));
        let w: Vec<String> = writes(&recorded).into_iter().filter(|l| !l.contains("/events")).collect();
        assert_eq!(
            w,
            [
                "PATCH /apis/networking.k8s.io/v1/namespaces/edu-apps/networkpolicies/sgw-web",
                "PATCH /api/v1/namespaces/edu-apps/services/sgw-web",
                "PATCH /apis/apps/v1/namespaces/edu-apps/deployments/sgw-web",
                "PATCH /apis/zhengyun.io/v1alpha1/namespaces/edu-apps/securegateways/web/status"
            ]
        );
        let status = status_body(&recorded);
        assert_eq!(status["endpoints"][0], json!("sgw-web.edu-apps.svc:443"));
        assert_eq!(status["signSerial"], json!("01"));
        assert_eq!(status["conditions"][0]["reason"], json!("ReplicasNotReady"), "no replica ready yet");
    }

    #[tokio::test]
    async fn a_gateway_without_its_certificate_says_so_once_and_deploys_nothing() {
        let (gateways, recorded) = gateways_over(false).await;
        reconcile_inner(&gateway(), &gateways).await.unwrap_or_else(|e| panic!("{e}"));
        let w = writes(&recorded);
        assert!(!w.iter().any(|l| l.contains("deployments") || l.contains("services")), "{w:#?}");
        assert_eq!(status_body(&recorded)["conditions"][0]["reason"], json!("CertificateNotFound"));
        assert!(w.iter().any(|l| l.contains("/events")), "an Event: {w:#?}");
        assert_eq!(gateways.problems.with_label_values(&["CertificateNotFound"]).get(), 1);
        // Again on a cache one write behind: no second write, Event or count.
        reconcile_inner(&gateway(), &gateways).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writes(&recorded), w);
        assert_eq!(gateways.problems.with_label_values(&["CertificateNotFound"]).get(), 1);
    }
}
