//! Pure admission decisions. Each returns `Err(message)` with words an admin can act on.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service, Toleration},
    networking::v1::{NetworkPolicy, NetworkPolicyPeer},
};
use serde_json::{Value, json};

use crate::{
    api::{ServiceType, ZoneTaint},
    labels,
    zones::ZonePlacement,
};

/// The deployment controller, as kube-controller-manager names it with per-controller credentials.
pub const DEPLOYMENT_CONTROLLER: &str = "system:serviceaccount:kube-system:deployment-controller";
/// The ReplicaSet controller, likewise.
pub const REPLICASET_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";
/// kube-controller-manager without per-controller credentials.
pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";

/// A pod or ReplicaSet labelled as a gateway's: the gateway's NetworkPolicy and Service select
/// by that label, so a tenant who could set it on a workload of its own would open that
/// workload to the zone's networks. Only Kubernetes' controllers may write such a workload,
/// and only for the gateway's own Deployment (`deployment(name)` says whether the named
/// Deployment is a zhengyun-managed one of that gateway): a pod's owner is the ReplicaSet
/// `<deployment>-<hash>`, a ReplicaSet's owner the Deployment.
pub fn check_gateway_workload(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    user: &str,
    deployment: impl Fn(&str, &str) -> bool,
) -> Result<(), String> {
    let Some(gateway) = meta.labels.as_ref().and_then(|l| l.get(crate::gateways::GATEWAY_LABEL)) else {
        return Ok(());
    };
    let name = meta.name.clone().or_else(|| meta.generate_name.clone()).unwrap_or_default();
    let writer = match kind {
        "Pod" => REPLICASET_CONTROLLER,
        _ => DEPLOYMENT_CONTROLLER,
    };
    if user != writer && user != CONTROLLER_MANAGER && !SYSTEM_CONTROLLERS.contains(&user) {
        return Err(format!(
            "{kind} {name}: the label {} belongs to zhengyun's gateway {gateway}; only its Deployment's controllers set it",
            crate::gateways::GATEWAY_LABEL
        ));
    }
    let owner = meta.owner_references.as_ref().and_then(|o| o.iter().find(|r| r.controller == Some(true)));
    let deployment_name = match (kind, owner) {
        ("Pod", Some(o)) if o.kind == "ReplicaSet" => o.name.rsplit_once('-').map(|(d, _)| d.to_string()),
        ("ReplicaSet", Some(o)) if o.kind == "Deployment" => Some(o.name.clone()),
        _ => None,
    };
    match deployment_name {
        Some(d) if deployment(&d, gateway) => Ok(()),
        _ => Err(format!("{kind} {name}: labelled as gateway {gateway}'s but not made for its Deployment")),
    }
}

/// Controllers of Kubernetes itself that must be able to delete what we own (namespace
/// deletion, garbage collection).
pub const SYSTEM_CONTROLLERS: &[&str] = &[
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
];

/// Labels on a tenant namespace that only the operator may change.
pub fn protected_label(key: &str) -> bool {
    key == labels::MANAGED_BY
        || key == labels::TENANT
        || key == labels::DEPARTMENT
        || key == labels::ZONE
        || key == labels::SECURITY_LEVEL
        || key == labels::ORPHANED
        || key == labels::ARCH
        || key.starts_with("pod-security.kubernetes.io/")
}

/// A namespace update that changes a protected label.
pub fn check_namespace_update(old: &Namespace, new: &Namespace) -> Result<(), String> {
    let empty = BTreeMap::new();
    let o = old.metadata.labels.as_ref().unwrap_or(&empty);
    let n = new.metadata.labels.as_ref().unwrap_or(&empty);
    let changed: Vec<&String> =
        o.keys().chain(n.keys()).filter(|k| protected_label(k) && o.get(*k) != n.get(*k)).collect();
    match changed.first() {
        None => Ok(()),
        Some(k) => Err(format!(
            "label {k} of tenant namespace {} is managed by zhengyun: change the Tenant instead",
            new.metadata.name.as_deref().unwrap_or("?")
        )),
    }
}

/// The pod fields a tenant workload may not use, and the nodes it may not ask for.
pub fn check_pod(
    pod: &Pod,
    zone_name: &str,
    zone: &ZonePlacement,
    other_zones: &[(String, ZoneTaint)],
) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else { return Ok(()) };
    for (field, on) in [("hostNetwork", spec.host_network), ("hostPID", spec.host_pid), ("hostIPC", spec.host_ipc)] {
        if on == Some(true) {
            return Err(format!("spec.{field}: tenant pods may not share the node's namespaces"));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.host_path.is_some() {
            return Err(format!("spec.volumes[{}].hostPath: tenant pods may not mount node paths", v.name));
        }
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        if let Some(want) = zone.node_selector.get(k)
            && want != v
        {
            return Err(format!(
                "spec.nodeSelector: {k}={v} asks for another zone's nodes; this namespace runs in zone {zone_name}"
            ));
        }
        if let Some(arch) = &zone.arch
            && k == crate::labels::KUBE_ARCH
            && v != arch
        {
            return Err(format!(
                "spec.nodeSelector: {k}={v}, but this tenant's pods run on {arch} nodes (its spec.arch)"
            ));
        }
    }
    for t in spec.tolerations.iter().flatten() {
        for (other, taint) in other_zones {
            if tolerates(t, taint) {
                return Err(format!(
                    "spec.tolerations: tolerating {}={} would let the pod onto zone {other}'s nodes",
                    taint.key, taint.value
                ));
            }
        }
    }
    Ok(())
}

fn tolerates(t: &Toleration, taint: &ZoneTaint) -> bool {
    let key_ok = match t.key.as_deref() {
        None | Some("") => t.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = t.operator.as_deref() == Some("Exists") || t.value.as_deref().unwrap_or("") == taint.value;
    let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    key_ok && value_ok && effect_ok
}

/// A JSON patch that pins the pod to its zone: a required node-affinity term per existing term
/// (AND-ed with the zone's labels) and the zone's toleration.
pub fn placement_patch(pod: &Pod, zone: &ZonePlacement) -> Vec<Value> {
    let mut ops = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut zone_exprs: Vec<Value> =
        zone.node_selector.iter().map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]})).collect();
    if let Some(arch) = &zone.arch {
        zone_exprs.push(json!({"key": crate::labels::KUBE_ARCH, "operator": "In", "values": [arch]}));
    }
    if !zone_exprs.is_empty() {
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
        let terms: Vec<Value> = match required {
            Some(sel) if !sel.node_selector_terms.is_empty() => sel
                .node_selector_terms
                .iter()
                .map(|t| {
                    let mut term = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
                    let mut exprs = term.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
                    exprs.extend(zone_exprs.iter().cloned());
                    term["matchExpressions"] = Value::Array(exprs);
                    term
                })
                .collect(),
            _ => vec![json!({"matchExpressions": zone_exprs})],
        };
        let required = json!({"nodeSelectorTerms": terms});
        match (&spec.affinity, spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref())) {
            (None, _) => ops.push(json!({"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}})),
            (Some(_), None) => ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {"requiredDuringSchedulingIgnoredDuringExecution": required}})),
            (Some(_), Some(_)) => ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution", "value": required})),
        }
    }
    if let Some(taint) = &zone.taint {
        let toleration = json!({"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect});
        let already =
            spec.tolerations.iter().flatten().any(|t| {
                t.key.as_deref() == Some(taint.key.as_str()) && t.value.as_deref() == Some(taint.value.as_str())
            });
        if !already {
            if spec.tolerations.is_none() {
                ops.push(json!({"op": "add", "path": "/spec/tolerations", "value": [toleration]}));
            } else {
                ops.push(json!({"op": "add", "path": "/spec/tolerations/-", "value": toleration}));
            }
        }
    }
    ops
}

/// YAML makes `cpu: 0.5` a number, which a CRD's int-or-string schema refuses although every
/// Kubernetes quantity accepts it. The webhook rewrites fractional numbers in a Tenant's quota and
/// limits as strings before the API server checks the schema (mutation runs first).
pub fn normalize_amounts(tenant: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    let mut fix = |path: String, v: &Value| {
        if let Value::Number(n) = v
            && !n.is_i64()
            && !n.is_u64()
            && let Some(f) = n.as_f64()
        {
            ops.push(json!({"op": "replace", "path": path, "value": f.to_string()}));
        }
    };
    if let Some(Value::Object(quota)) = tenant.pointer("/spec/quota") {
        for (k, v) in quota {
            fix(format!("/spec/quota/{k}"), v);
        }
    }
    if let Some(Value::Object(limits)) = tenant.pointer("/spec/limits") {
        for (section, pair) in limits {
            if let Value::Object(pair) = pair {
                for (k, v) in pair {
                    fix(format!("/spec/limits/{section}/{k}"), v);
                }
            }
        }
    }
    ops
}

/// A tenant Service may not claim outside addresses (`externalIPs`, CVE-2020-8554: any tenant
/// could intercept traffic to any address), and uses a type beyond ClusterIP only where its
/// zone allows that type.
pub fn check_service(svc: &Service, zone_name: &str, allowed: &[ServiceType]) -> Result<(), String> {
    let Some(spec) = svc.spec.as_ref() else { return Ok(()) };
    if spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        return Err("spec.externalIPs: tenant Services may not claim outside addresses (CVE-2020-8554); ask the cloud admins for a gateway".into());
    }
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ClusterIP" || allowed.iter().any(|a| a.as_str() == ty) {
        return Ok(());
    }
    let list = if allowed.is_empty() {
        "ClusterIP only".to_string()
    } else {
        format!("ClusterIP, {}", allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))
    };
    Err(format!(
        "spec.type: zone {zone_name} allows {list} Services for tenants, not {ty} (see spec.allowedServiceTypes of the Zone)"
    ))
}

/// A tenant's own NetworkPolicy may only name peers inside the tenant: no IP blocks, no other
/// namespaces, no "from/to everywhere". Crossing the boundary is what exchange channels are for.
pub fn check_tenant_network_policy(np: &NetworkPolicy, tenant: &str) -> Result<(), String> {
    let Some(spec) = np.spec.as_ref() else { return Ok(()) };
    let inside = |peer: &NetworkPolicyPeer, path: &str| -> Result<(), String> {
        if peer.ip_block.is_some() {
            return Err(format!(
                "{path}.ipBlock: tenant policies may not open outside addresses; ask for an exchange channel"
            ));
        }
        if let Some(ns) = &peer.namespace_selector {
            let own = ns.match_labels.as_ref().and_then(|l| l.get(labels::TENANT)).map(String::as_str) == Some(tenant);
            if !own {
                return Err(format!(
                    "{path}.namespaceSelector: must select {}={tenant}: tenant policies may not reach other tenants; ask for an exchange channel",
                    labels::TENANT
                ));
            }
        }
        Ok(())
    };
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        match &rule.from {
            None => {
                return Err(format!(
                    "spec.ingress[{i}].from: an empty peer list admits every source; name peers inside the tenant"
                ));
            }
            Some(peers) if peers.is_empty() => {
                return Err(format!("spec.ingress[{i}].from: an empty peer list admits every source"));
            }
            Some(peers) => {
                for (j, p) in peers.iter().enumerate() {
                    inside(p, &format!("spec.ingress[{i}].from[{j}]"))?;
                }
            }
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        match &rule.to {
            None => {
                return Err(format!(
                    "spec.egress[{i}].to: an empty peer list reaches every destination; name peers inside the tenant"
                ));
            }
            Some(peers) if peers.is_empty() => {
                return Err(format!("spec.egress[{i}].to: an empty peer list reaches every destination"));
            }
            Some(peers) => {
                for (j, p) in peers.iter().enumerate() {
                    inside(p, &format!("spec.egress[{i}].to[{j}]"))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn placement() -> ZonePlacement {
        ZonePlacement {
            node_selector: BTreeMap::from([("zhengyun.io/zone".into(), "extranet".into())]),
            taint: Some(ZoneTaint {
                key: "zhengyun.io/zone".into(),
                value: "extranet".into(),
                effect: "NoSchedule".into(),
            }),
            ..Default::default()
        }
    }

    fn others() -> Vec<(String, ZoneTaint)> {
        vec![(
            "intranet".into(),
            ZoneTaint { key: "zhengyun.io/zone".into(), value: "intranet".into(), effect: "NoSchedule".into() },
        )]
    }

    #[test]
    fn pods_may_not_use_the_host_or_another_zone() {
        let ok = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert!(check_pod(&ok, "extranet", &placement(), &others()).is_ok());
        for (bad, field) in [
            (json!({"spec": {"hostNetwork": true, "containers": []}}), "hostNetwork"),
            (json!({"spec": {"hostPID": true, "containers": []}}), "hostPID"),
            (json!({"spec": {"hostIPC": true, "containers": []}}), "hostIPC"),
            (json!({"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}], "containers": []}}), "hostPath"),
            (json!({"spec": {"nodeSelector": {"zhengyun.io/zone": "intranet"}, "containers": []}}), "nodeSelector"),
            (
                json!({"spec": {"tolerations": [{"key": "zhengyun.io/zone", "operator": "Equal", "value": "intranet"}], "containers": []}}),
                "tolerations",
            ),
            (json!({"spec": {"tolerations": [{"operator": "Exists"}], "containers": []}}), "tolerations"),
        ] {
            let err = check_pod(&pod(bad), "extranet", &placement(), &others()).expect_err(field);
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn a_tenant_that_needs_an_architecture_gets_it_in_its_affinity_and_may_not_ask_for_another() {
        let arm = ZonePlacement { arch: Some("arm64".into()), ..placement() };
        let ops = placement_patch(&pod(json!({"spec": {"containers": []}})), &arm);
        let exprs = &ops[0]["value"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"];
        assert_eq!(exprs[1], json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}));
        let x86 = pod(json!({"spec": {"nodeSelector": {"kubernetes.io/arch": "amd64"}, "containers": []}}));
        let err = check_pod(&x86, "extranet", &arm, &others()).expect_err("another arch");
        assert!(err.contains("spec.nodeSelector") && err.contains("arm64"), "{err}");
        assert!(check_pod(&x86, "extranet", &placement(), &others()).is_ok(), "no arch asked: any");
    }

    #[test]
    fn placement_adds_affinity_and_toleration_and_keeps_user_terms() {
        let ops = placement_patch(&pod(json!({"spec": {"containers": []}})), &placement());
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0]["path"], "/spec/affinity");
        assert_eq!(
            ops[0]["value"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
                [0]["values"][0],
            "extranet"
        );
        assert_eq!(ops[1]["value"][0]["value"], "extranet");
        // A user's own term is kept and AND-ed with the zone.
        let with_terms = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]}}}}}),
        );
        let ops = placement_patch(&with_terms, &placement());
        let exprs = &ops[0]["value"]["nodeSelectorTerms"][0]["matchExpressions"];
        assert_eq!(exprs.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn protected_namespace_labels_cannot_change() {
        let ns = |zone: &str, extra: &str| -> Namespace {
            serde_json::from_value(
                json!({"metadata": {"name": "edu-apps", "labels": {"zhengyun.io/zone": zone, "team": extra}}}),
            )
            .unwrap_or_default()
        };
        assert!(check_namespace_update(&ns("extranet", "a"), &ns("extranet", "b")).is_ok(), "other labels are free");
        let err = check_namespace_update(&ns("extranet", "a"), &ns("intranet", "a")).expect_err("zone label");
        assert!(err.contains("zhengyun.io/zone"));
    }

    #[test]
    fn fractional_numbers_become_quantity_strings() {
        let t = json!({"spec": {"quota": {"cpu": 0.5, "memory": "8Gi", "pods": 10}, "limits": {"max": {"cpu": 1.5, "memory": 2}}}});
        let ops = normalize_amounts(&t);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/spec/quota/cpu", "value": "0.5"}),
                json!({"op": "replace", "path": "/spec/limits/max/cpu", "value": "1.5"}),
            ]
        );
        assert!(normalize_amounts(&json!({"spec": {}})).is_empty());
    }

    #[test]
    fn tenant_services_claim_no_outside_address_and_follow_the_zone() {
        let svc = |v: Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": v})).unwrap_or_default()
        };
        assert!(check_service(&svc(json!({"ports": [{"port": 80}]})), "extranet", &[]).is_ok());
        let err =
            check_service(&svc(json!({"externalIPs": ["8.8.8.8"]})), "extranet", &[ServiceType::NodePort]).unwrap_err();
        assert!(err.starts_with("spec.externalIPs"), "{err}");
        let err = check_service(&svc(json!({"type": "NodePort"})), "intranet", &[]).unwrap_err();
        assert!(err.contains("zone intranet allows ClusterIP only") && err.contains("not NodePort"), "{err}");
        assert!(check_service(&svc(json!({"type": "NodePort"})), "extranet", &[ServiceType::NodePort]).is_ok());
        let err =
            check_service(&svc(json!({"type": "LoadBalancer"})), "extranet", &[ServiceType::NodePort]).unwrap_err();
        assert!(err.contains("ClusterIP, NodePort"), "{err}");
        assert!(check_service(&svc(json!({"type": "ExternalName", "externalName": "db.example"})), "x", &[]).is_err());
    }

    #[test]
    fn tenant_policies_stay_inside_the_tenant() {
        let np = |v: Value| -> NetworkPolicy {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": v})).unwrap_or_default()
        };
        assert!(check_tenant_network_policy(&np(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})), "edu").is_ok());
        assert!(check_tenant_network_policy(&np(json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"zhengyun.io/tenant": "edu"}}}]}]})), "edu").is_ok());
        for (bad, field) in [
            (json!({"podSelector": {}, "ingress": [{}]}), "spec.ingress[0].from"),
            (json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}), "namespaceSelector"),
            (
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"zhengyun.io/tenant": "tax"}}}]}]}),
                "namespaceSelector",
            ),
            (json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}), "ipBlock"),
            (json!({"podSelector": {}, "egress": [{"ports": [{"port": 443}]}]}), "spec.egress[0].to"),
        ] {
            let err = check_tenant_network_policy(&np(bad), "edu").expect_err(field);
            assert!(err.contains(field), "{err}");
        }
    }
}

#[cfg(test)]
mod gateway_workload_tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn meta(owner_kind: &str, owner: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            labels: Some([(crate::gateways::GATEWAY_LABEL.to_string(), "portal".to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                kind: owner_kind.into(),
                name: owner.into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_gateways_controllers_make_its_workloads() {
        let ours = |d: &str, g: &str| d == "sgw-portal" && g == "portal";
        assert!(
            check_gateway_workload("Pod", &meta("ReplicaSet", "sgw-portal-5d9f"), REPLICASET_CONTROLLER, ours).is_ok()
        );
        assert!(
            check_gateway_workload("ReplicaSet", &meta("Deployment", "sgw-portal"), DEPLOYMENT_CONTROLLER, ours)
                .is_ok()
        );
        // A tenant labelling its own pod, or its own Deployment's pods.
        let err = check_gateway_workload("Pod", &meta("ReplicaSet", "sgw-portal-5d9f"), "alice", ours).unwrap_err();
        assert!(err.contains("only its Deployment's controllers"), "{err}");
        let err = check_gateway_workload("Pod", &meta("ReplicaSet", "sgw-portal-x-5d9f"), REPLICASET_CONTROLLER, ours)
            .unwrap_err();
        assert!(err.contains("not made for its Deployment"), "{err}");
        assert!(
            check_gateway_workload("ReplicaSet", &meta("Deployment", "mine"), DEPLOYMENT_CONTROLLER, ours).is_err()
        );
        // Unlabelled workloads are none of this check's business.
        assert!(check_gateway_workload("Pod", &ObjectMeta::default(), "alice", ours).is_ok());
    }
}
