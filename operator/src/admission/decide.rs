//! What the validating webhook decides, one function per kind: the request is parsed once into
//! its typed [`Subject`] (group, version and kind checked), and each kind's function sees only
//! its own object.

use k8s_openapi::api::{
    core::v1::{Pod, Service},
    networking::v1::NetworkPolicy,
};
use kube::{
    ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, Operation},
    },
};

use super::{
    budgets,
    cache::InZone,
    checks,
    subject::{self, Subject, caller},
    webhook::Webhook,
};
use crate::{
    api::{ExchangeChannel, IssuerKind, Tenant, Zone},
    certificates::department_allows,
    channels::{approval, reconcile::check_ends},
    labels,
    tenancy::validate::{check_zone, validate},
};

/// Admits or refuses a request (the operator's own requests are always admitted).
pub async fn decide(w: &Webhook, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
    let user = req.user_info.username.clone().unwrap_or_default();
    if user == w.operator_user {
        return Ok(());
    }
    let subject = subject::parse(req)?;
    w.caches.ready().await;
    let namespace = req.namespace.as_deref().unwrap_or_default();
    match subject {
        Subject::Pod { new, old } => pod(w, namespace, &user, &new, old.as_deref()).await,
        Subject::Namespace { old, new } => checks::check_namespace_update(&old, &new),
        Subject::ReplicaSet(rs) => checks::check_gateway_workload("ReplicaSet", &rs.metadata, &user, |d, g| {
            w.gateway_deployment(namespace, d, g)
        }),
        Subject::Owned { kind, managed, policy } => owned(w, req, namespace, &user, kind, managed, policy.as_deref()),
        Subject::Tenant { new, old } => tenant(w, req, &new, old.as_deref()).await,
        Subject::Department { new, old } => budgets::department(w, req, &new, old.as_deref()).await,
        Subject::Channel { new, old } => channel(w, req, &new, old.as_deref()),
        Subject::Zone(zone) => crate::zones::validate::validate(&zone.spec),
        Subject::Service(svc) => service(w, namespace, &svc),
        // Answered by the certificate handler, which can warn.
        Subject::Certificate(_) => Ok(()),
        Subject::MalformedTenantLetGo => Ok(()),
    }
}

/// A pod in a tenant namespace: its gate in place, placed in its zone, on a node of its zone
/// and architecture; a gateway's pod only from its Deployment.
async fn pod(w: &Webhook, namespace: &str, user: &str, pod: &Pod, old: Option<&Pod>) -> Result<(), String> {
    checks::check_gateway_workload("Pod", &pod.metadata, user, |d, g| w.gateway_deployment(namespace, d, g))?;
    let Some(InZone { zone_name, placement, .. }) = w.caches.namespace_zone(namespace)? else {
        return Ok(());
    };
    if let Some(gate) = &w.gate {
        match old {
            Some(old) => crate::gate::check::check_update(old, pod)?,
            None => crate::gate::check::check_create(pod, &gate.container().await?)?,
        }
    }
    let zones = w.caches.all_zones();
    let others: Vec<(String, crate::api::ZoneTaint)> =
        zones.iter().filter(|z| z.name_any() != zone_name).map(|z| (z.name_any(), z.effective_taint())).collect();
    checks::check_pod(pod, &zone_name, &placement, &others)?;
    // A pod that names its node skips the scheduler, and with it the node affinity.
    if let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
        let labels = w.caches.node(&node_name).map(|n| n.labels().clone()).unwrap_or_default();
        if !crate::zones::selects(&placement.node_selector, &labels) {
            return Err(format!("spec.nodeName: node {node_name} is not in zone {zone_name}"));
        }
        if let Some(arch) = &placement.arch
            && labels.get(labels::KUBE_ARCH) != Some(arch)
        {
            return Err(format!("spec.nodeName: node {node_name} is not an {arch} node (the tenant's spec.arch)"));
        }
    }
    // A tenant that asks for an architecture its zone has no node of: the pod would
    // wait forever; say why now, in the words of the tenant's condition.
    if let (Some(arch), Some(InZone { zone, .. })) = (&placement.arch, w.caches.namespace_zone(namespace)?) {
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

/// An object zhengyun owns (quota, limits, policies, bindings, a gateway's workload): only the
/// operator and the system controllers that must change it; a tenant's own NetworkPolicy only
/// within the tenant boundary (when no ClusterNetworkPolicy API holds it).
fn owned(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    namespace: &str,
    user: &str,
    kind: &str,
    managed: bool,
    policy: Option<&NetworkPolicy>,
) -> Result<(), String> {
    if managed {
        if checks::SYSTEM_CONTROLLERS.contains(&user) && req.operation == Operation::Delete {
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
        let Some(InZone { tenant, .. }) = w.caches.namespace_zone(namespace)? else { return Ok(()) };
        return checks::check_tenant_network_policy(np, &tenant);
    }
    Ok(())
}

/// A Tenant: the reconciler's own validation, its certificates' issuers, its zone, a zone change
/// only without pods, the department admin's scope, and last its department's budget.
async fn tenant(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    tenant: &Tenant,
    old: Option<&Tenant>,
) -> Result<(), String> {
    if tenant.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    validate(tenant).map_err(|e| e.to_string())?;
    for (i, c) in tenant.spec.certificates.iter().enumerate() {
        if c.certificate.issuer_ref.kind != IssuerKind::SmClusterIssuer {
            continue;
        }
        let ns = format!("{}-{}", tenant.name_any(), c.namespace);
        let (department, below) = w.caches.cluster_issuer_department(&c.certificate.issuer_ref.name).flatten().unzip();
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
    if let Some(old) = old
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
    budgets::admin_scope(w, req, tenant, old)?;
    // Last: it records a reservation when the quota fits its department's budget.
    budgets::tenant(w, req, tenant, old).await
}

/// An ExchangeChannel: its approval record, and ends that resolve.
fn channel(
    w: &Webhook,
    req: &AdmissionRequest<DynamicObject>,
    ch: &ExchangeChannel,
    old: Option<&ExchangeChannel>,
) -> Result<(), String> {
    let (user, groups) = caller(req);
    approval::check_record(old, ch, approval::Caller { user: &user, groups: &groups })?;
    let source = w.caches.tenant(&ch.spec.from.tenant);
    let target = w.caches.tenant(&ch.spec.to.tenant);
    let mut zones: Vec<Zone> = Vec::new();
    for t in [source.as_ref(), target.as_ref()].into_iter().flatten() {
        if let Some(z) = w.caches.zone(&t.spec.zone) {
            zones.push(z);
        }
    }
    let zones: Vec<&Zone> = zones.iter().collect();
    check_ends(ch, source.as_ref(), target.as_ref(), &zones)?;
    Ok(())
}

/// A Service in a tenant namespace: only the types its zone allows.
fn service(w: &Webhook, namespace: &str, svc: &Service) -> Result<(), String> {
    let Some(InZone { zone_name, zone, .. }) = w.caches.namespace_zone(namespace)? else { return Ok(()) };
    checks::check_service(svc, &zone_name, &zone.spec.allowed_service_types)
}
