//! The webhook's HTTPS server and the I/O around the pure checks.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use kube::{
    ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    },
};
use tokio_rustls::TlsAcceptor;

use super::{
    cache::Caches,
    checks,
    subject::{self, Subject},
    tls::Resolver,
    webhook::Webhook,
};
use crate::{
    api::{IssuerKind, Zone},
    certificates::department_allows,
    channels::{approval, reconcile::check_ends},
    labels,
    tenancy::validate::{check_zone, validate},
    zones::ZonePlacement,
};

/// Serves `/mutate` and `/validate` over TLS until `stop` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    resolver: Arc<Resolver>,
    webhook: Arc<Webhook>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app =
        Router::new().route("/mutate", post(mutate)).route("/validate", post(validate_handler)).with_state(webhook);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admission webhook listening");
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return Ok(()),
        };
        // An accept that fails (out of file descriptors, a connection reset before it was
        // taken) must not end the server: the webhook is registered fail-closed.
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an admission connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let service = TowerToHyperService::new(app);
                    if let Err(e) =
                        Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
                    {
                        tracing::debug!(%peer, error = %e, "webhook connection");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "webhook TLS handshake"),
            }
        });
    }
}

fn respond(req: &AdmissionRequest<DynamicObject>, verdict: Result<(), String>) -> Json<AdmissionReview<DynamicObject>> {
    respond_warning(req, verdict, Vec::new())
}

/// A verdict with warnings, which kubectl prints (`Warning: …`) even when the request passes.
fn respond_warning(
    req: &AdmissionRequest<DynamicObject>,
    verdict: Result<(), String>,
    warnings: Vec<String>,
) -> Json<AdmissionReview<DynamicObject>> {
    let mut res = AdmissionResponse::from(req);
    if !warnings.is_empty() {
        res.warnings = Some(warnings);
    }
    let res = match verdict {
        Ok(()) => res,
        Err(msg) => {
            tracing::info!(kind = %req.kind.kind, name = %req.name, user = ?req.user_info.username, reason = %msg, "admission refused");
            res.deny(msg)
        }
    };
    Json(res.into_review())
}

fn parse(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review.try_into().map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
        Box::new(Json(AdmissionResponse::invalid(e.to_string()).into_review()))
    })
}

/// The zone a tenant namespace runs in, or `None` for namespaces we do not manage.
/// A tenant namespace as the webhook sees it: whose it is and the zone it runs in.
struct InZone {
    tenant: String,
    zone_name: String,
    placement: ZonePlacement,
    zone: Zone,
}

fn namespace_zone(caches: &Caches, namespace: &str) -> Result<Option<InZone>, String> {
    let Some(ns) = caches.namespace(namespace) else { return Ok(None) };
    let l = ns.labels();
    let (Some(tenant), Some(zone_name)) = (l.get(labels::TENANT), l.get(labels::ZONE)) else { return Ok(None) };
    let Some(zone) = caches.zone(zone_name) else {
        return Err(format!("zone {zone_name} of tenant {tenant} does not exist: pods cannot be placed"));
    };
    let mut placement = crate::zones::placement(&zone);
    placement.arch = l.get(labels::ARCH).cloned();
    Ok(Some(InZone { tenant: tenant.clone(), zone_name: zone_name.clone(), placement, zone }))
}

fn caller(req: &AdmissionRequest<DynamicObject>) -> (String, Vec<String>) {
    (req.user_info.username.clone().unwrap_or_default(), req.user_info.groups.clone().unwrap_or_default())
}

/// A JSON-patch response, or a refusal when the patch cannot be made.
fn patched(
    req: &AdmissionRequest<DynamicObject>,
    ops: Vec<serde_json::Value>,
    warnings: Vec<String>,
) -> Json<AdmissionReview<DynamicObject>> {
    if ops.is_empty() {
        return respond_warning(req, Ok(()), warnings);
    }
    let patch: Result<json_patch::Patch, _> = serde_json::from_value(serde_json::Value::Array(ops));
    match patch
        .map_err(|e| e.to_string())
        .and_then(|p| AdmissionResponse::from(req).with_patch(p).map_err(|e| e.to_string()))
    {
        Ok(mut res) => {
            if !warnings.is_empty() {
                res.warnings = Some(warnings);
            }
            Json(res.into_review())
        }
        Err(e) => respond(req, Err(format!("mutating the object failed: {e}"))),
    }
}

/// Records or drops a channel's approval ([`approval::admit`]) in what the API server stores.
fn mutate_channel(req: &AdmissionRequest<DynamicObject>) -> Json<AdmissionReview<DynamicObject>> {
    let (new, old) = match subject::parse(req) {
        Ok(Subject::Channel { new, old }) => (new, old),
        Ok(_) => return respond(req, Err(format!("expected an ExchangeChannel, got {}", req.kind.kind))),
        Err(why) => return respond(req, Err(why)),
    };
    let (user, groups) = caller(req);
    let who = approval::Caller { user: &user, groups: &groups };
    let decision = match approval::admit(old.as_deref(), &new, who, jiff::Timestamp::now()) {
        Ok(d) => d,
        Err(why) => return respond(req, Err(why)),
    };
    let mut ops = Vec::new();
    if new.spec.approved != decision.approved {
        ops.push(serde_json::json!({"op": "add", "path": "/spec/approved", "value": decision.approved}));
    }
    let mut annotations = new.metadata.annotations.clone().unwrap_or_default();
    for k in approval::ANNOTATIONS {
        annotations.remove(k);
    }
    for (k, v) in &decision.annotations {
        annotations.insert(k.to_string(), v.clone());
    }
    if Some(&annotations) != new.metadata.annotations.as_ref() {
        ops.push(serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": annotations}));
    }
    patched(req, ops, decision.warnings)
}

async fn mutate(
    State(w): State<Arc<Webhook>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match req.kind.kind.as_str() {
        "ExchangeChannel" => return mutate_channel(&req),
        "Tenant" => {
            let ops = req
                .object
                .as_ref()
                .and_then(|o| serde_json::to_value(o).ok())
                .map(|v| checks::normalize_amounts(&v))
                .unwrap_or_default();
            return patched(&req, ops, Vec::new());
        }
        _ => {}
    }
    let pod = match subject::parse(&req) {
        Ok(Subject::Pod { new, .. }) => new,
        Ok(_) => return respond(&req, Err(format!("/mutate does not handle {}", req.kind.kind))),
        Err(why) => return respond(&req, Err(why)),
    };
    let ns = req.namespace.clone().unwrap_or_default();
    w.caches.ready().await;
    match namespace_zone(&w.caches, &ns) {
        Ok(Some(z)) => {
            let mut ops = checks::placement_patch(&pod, &z.placement);
            if let Some(gate) = &w.gate {
                match gate.container().await {
                    Ok(c) => ops.extend(crate::gate::check::inject(&pod, &c)),
                    Err(e) => return respond(&req, Err(e)),
                }
            }
            patched(&req, ops, Vec::new())
        }
        Ok(None) => respond(&req, Ok(())),
        Err(e) => respond(&req, Err(e)),
    }
}

async fn validate_handler(
    State(w): State<Arc<Webhook>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if req.kind.kind == "SmCertificate" {
        let (verdict, warnings) = certificate(&w, &req).await;
        return respond_warning(&req, verdict, warnings);
    }
    let verdict = decide(&w, &req).await;
    respond(&req, verdict)
}

/// An SmCertificate may not name another department's CA (refused); naming an issuer that does
/// not exist yet is allowed, with a warning, since the issuer may be applied next.
async fn certificate(w: &Webhook, req: &AdmissionRequest<DynamicObject>) -> (Result<(), String>, Vec<String>) {
    let c = match subject::parse(req) {
        Ok(Subject::Certificate(c)) => c,
        Ok(_) => return (Err(format!("expected an SmCertificate, got {}", req.kind.kind)), Vec::new()),
        Err(why) => return (Err(why), Vec::new()),
    };
    let ns = req.namespace.clone().unwrap_or_default();
    // The operator writes a tenant's certificates, already checked with the Tenant; should the
    // issuer's department change later, the certificate says so in its status.
    if req.user_info.username.as_deref() == Some(w.operator_user.as_str()) {
        return (Ok(()), Vec::new());
    }
    let r = &c.spec.issuer_ref;
    w.caches.ready().await;
    let found = match r.kind {
        IssuerKind::SmIssuer => w.caches.issuer_exists(&ns, &r.name).then_some(None),
        IssuerKind::SmClusterIssuer => w.caches.cluster_issuer_department(&r.name),
    };
    match found {
        None => {
            let kind = format!("{:?}", r.kind);
            let warning = format!(
                "spec.issuerRef: {kind} {:?} does not exist{}: the certificate waits for it",
                r.name,
                if r.kind == IssuerKind::SmIssuer { format!(" in namespace {ns}") } else { String::new() }
            );
            (Ok(()), vec![warning])
        }
        Some(None) => (Ok(()), Vec::new()),
        Some(Some((department, below))) => {
            let theirs = w.caches.namespace(&ns).and_then(|n| n.labels().get(labels::DEPARTMENT).cloned());
            (department_allows(&r.name, Some(&department), &below, &ns, theirs.as_deref()), Vec::new())
        }
    }
}

/// Whether `name` in `namespace` is the zhengyun-managed Deployment of gateway `gateway`.
fn gateway_deployment(w: &Webhook, namespace: &str, name: &str, gateway: &str) -> bool {
    w.caches.gateway_deployment(namespace, name).is_some_and(|d| {
        let l = d.labels();
        l.get(crate::labels::MANAGED_BY).map(String::as_str) == Some(crate::labels::MANAGER)
            && l.get(crate::gateways::GATEWAY_LABEL).map(String::as_str) == Some(gateway)
    })
}

async fn decide(w: &Webhook, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
    let user = req.user_info.username.clone().unwrap_or_default();
    if user == w.operator_user {
        return Ok(());
    }
    let subject = subject::parse(req)?;
    w.caches.ready().await;
    let namespace = req.namespace.as_deref().unwrap_or_default();
    match subject {
        Subject::Pod { new: pod, old } => {
            checks::check_gateway_workload("Pod", &pod.metadata, &user, |d, g| gateway_deployment(w, namespace, d, g))?;
            let Some(InZone { zone_name, placement, .. }) = namespace_zone(&w.caches, namespace)? else {
                return Ok(());
            };
            if let Some(gate) = &w.gate {
                match &old {
                    Some(old) => crate::gate::check::check_update(old, &pod)?,
                    None => crate::gate::check::check_create(&pod, &gate.container().await?)?,
                }
            }
            let zones = w.caches.all_zones();
            let others: Vec<(String, crate::api::ZoneTaint)> = zones
                .iter()
                .filter(|z| z.name_any() != zone_name)
                .map(|z| (z.name_any(), z.effective_taint()))
                .collect();
            checks::check_pod(&pod, &zone_name, &placement, &others)?;
            // A pod that names its node skips the scheduler, and with it the node affinity.
            if let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                let labels = w.caches.node(&node_name).map(|n| n.labels().clone()).unwrap_or_default();
                if !crate::zones::selects(&placement.node_selector, &labels) {
                    return Err(format!("spec.nodeName: node {node_name} is not in zone {zone_name}"));
                }
                if let Some(arch) = &placement.arch
                    && labels.get(labels::KUBE_ARCH) != Some(arch)
                {
                    return Err(format!(
                        "spec.nodeName: node {node_name} is not an {arch} node (the tenant's spec.arch)"
                    ));
                }
            }
            // A tenant that asks for an architecture its zone has no node of: the pod would
            // wait forever; say why now, in the words of the tenant's condition.
            if let (Some(arch), Some(InZone { zone, .. })) = (&placement.arch, namespace_zone(&w.caches, namespace)?) {
                let nodes = w.caches.nodes.state();
                let nodes: Vec<&k8s_openapi::api::core::v1::Node> = nodes.iter().map(|n| n.as_ref()).collect();
                let wanted = match arch.as_str() {
                    "arm64" => Some(crate::api::Arch::Arm64),
                    "amd64" => Some(crate::api::Arch::Amd64),
                    _ => None,
                };
                if let Err(e) = crate::tenancy::validate::check_arch(wanted, &zone, &nodes) {
                    return Err(e.to_string());
                }
            }
            Ok(())
        }
        Subject::Namespace { old, new } => checks::check_namespace_update(&old, &new),
        Subject::ReplicaSet(rs) => checks::check_gateway_workload("ReplicaSet", &rs.metadata, &user, |d, g| {
            gateway_deployment(w, namespace, d, g)
        }),
        Subject::Owned { kind, managed, policy } => {
            if managed {
                if checks::SYSTEM_CONTROLLERS.contains(&user.as_str()) && req.operation == Operation::Delete {
                    return Ok(());
                }
                // The deployment controller records its rollout on the Deployment it runs.
                if kind == "Deployment" && user == checks::DEPLOYMENT_CONTROLLER && req.operation == Operation::Update {
                    return Ok(());
                }
                return Err(format!(
                    "{kind} {namespace}/{} is managed by zhengyun: change the Tenant, ExchangeChannel or SecureGateway instead",
                    req.name
                ));
            }
            if let (Some(np), false) = (policy, w.cluster_network_policy) {
                let Some(InZone { tenant, .. }) = namespace_zone(&w.caches, namespace)? else { return Ok(()) };
                return checks::check_tenant_network_policy(&np, &tenant);
            }
            Ok(())
        }
        Subject::Tenant { new: tenant, old } => {
            if tenant.metadata.deletion_timestamp.is_some() {
                return Ok(());
            }
            validate(&tenant).map_err(|e| e.to_string())?;
            for (i, c) in tenant.spec.certificates.iter().enumerate() {
                if c.certificate.issuer_ref.kind != IssuerKind::SmClusterIssuer {
                    continue;
                }
                let ns = format!("{}-{}", tenant.name_any(), c.namespace);
                let (department, below) =
                    w.caches.cluster_issuer_department(&c.certificate.issuer_ref.name).flatten().unzip();
                department_allows(
                    &c.certificate.issuer_ref.name,
                    department.as_deref(),
                    &below.unwrap_or_default(),
                    &ns,
                    Some(&tenant.spec.department.code),
                )
                .map_err(|e| format!("spec.certificates[{i}].{}", e.trim_start_matches("spec.")))?;
            }
            let zone = w.caches.zone(&tenant.spec.zone);
            check_zone(tenant.spec.security_level, &tenant.spec.zone, zone.as_ref()).map_err(|e| e.to_string())?;
            if let Some(old) = old.as_deref()
                && old.spec.zone != tenant.spec.zone
            {
                let namespaces: Vec<String> =
                    old.spec.namespaces.iter().map(|n| format!("{}-{}", old.name_any(), n.suffix)).collect();
                let mut running: usize = namespaces.iter().map(|n| w.caches.pods_in(n)).sum();
                // None in the cache may be a pod created a moment ago: a zone change is rare, so
                // the API server is asked before letting it through.
                if running == 0
                    && let Some(client) = w.client.as_ref()
                {
                    for ns in &namespaces {
                        let lp = kube::api::ListParams::default();
                        let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
                            .list_metadata(&lp)
                            .await
                            .map_err(|e| format!("spec.zone: counting the tenant's pods failed: {e}; retry"))?;
                        running += pods.items.len();
                    }
                }
                if running > 0 {
                    return Err(format!(
                        "spec.zone: tenant {} still has {running} pods in zone {}; stop or move its workloads before changing zone",
                        tenant.name_any(),
                        old.spec.zone
                    ));
                }
            }
            super::budgets::admin_scope(w, req, &tenant, old.as_deref())?;
            // Last: it records a reservation when the quota fits its department's budget.
            super::budgets::tenant(w, req, &tenant, old.as_deref()).await
        }
        Subject::Department { new, old } => super::budgets::department(w, req, &new, old.as_deref()).await,
        Subject::Channel { new: ch, old } => {
            let (user, groups) = caller(req);
            approval::check_record(old.as_deref(), &ch, approval::Caller { user: &user, groups: &groups })?;
            let source = w.caches.tenant(&ch.spec.from.tenant);
            let target = w.caches.tenant(&ch.spec.to.tenant);
            let mut zones: Vec<Zone> = Vec::new();
            for t in [source.as_ref(), target.as_ref()].into_iter().flatten() {
                if let Some(z) = w.caches.zone(&t.spec.zone) {
                    zones.push(z);
                }
            }
            let zones: Vec<&Zone> = zones.iter().collect();
            check_ends(&ch, source.as_ref(), target.as_ref(), &zones)?;
            Ok(())
        }
        Subject::Zone(zone) => crate::zones::validate::validate(&zone.spec),
        Subject::Service(svc) => {
            let Some(InZone { zone_name, zone, .. }) = namespace_zone(&w.caches, namespace)? else { return Ok(()) };
            checks::check_service(&svc, &zone_name, &zone.spec.allowed_service_types)
        }
        // Answered by [`certificate`], which can warn.
        Subject::Certificate(_) => Ok(()),
        Subject::MalformedTenantLetGo => Ok(()),
    }
}
