//! The gate container and the canary's objects, built from the configuration alone.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Container, Service},
    networking::v1::{NetworkPolicy, NetworkPolicyPeer},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use super::{CANARY, CANARY_LABEL, CONTAINER, Config, DENIED_PORT, LISTEN_PORT, MAX_WAIT_SECONDS, OPEN_PORT};
use crate::labels;

/// What every container of ours in a tenant pod must be to pass Pod Security `restricted`.
fn restricted() -> serde_json::Value {
    json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// The gate, for a canary at `canary_ip` (the canary Service's cluster address).
pub fn gate_container(cfg: &Config, canary_ip: &str) -> Container {
    let value = json!({
        "name": CONTAINER,
        "image": cfg.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/probe"],
        "args": ["gate", canary_ip, OPEN_PORT.to_string(), DENIED_PORT.to_string(), LISTEN_PORT.to_string(),
                 MAX_WAIT_SECONDS.to_string()],
        // Small enough to fit under any tenant's container limits, and an init container's
        // requests only count where they exceed the pod's containers' sum.
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "100m", "memory": "16Mi"}},
        "securityContext": restricted(),
        "terminationMessagePolicy": "FallbackToLogsOnError"
    });
    // Fixed shapes, checked by the tests below: a default here would be refused by the API server.
    serde_json::from_value(value).unwrap_or_default()
}

fn canary_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (CANARY_LABEL.to_string(), CANARY.to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
    ])
}

/// The canary pods as a tenant policy names them: in the operator's namespace only, so no
/// tenant can make a pod that the rule also admits.
pub fn canary_peer(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), namespace.into())])),
            ..Default::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(CANARY_LABEL.into(), CANARY.into())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One canary on every node, whatever its taints: a template that followed the zones' taints
/// changed with every zone and rolled the canary out from under gates waiting on it. It
/// requests nothing, so a node's (and a computer room's) requested capacity stays the tenants'.
pub fn canary_daemonset(cfg: &Config) -> DaemonSet {
    let tolerations = vec![json!({"operator": "Exists"})];
    let value = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": CANARY, "namespace": cfg.namespace, "labels": canary_labels()},
        "spec": {
            "selector": {"matchLabels": {CANARY_LABEL: CANARY}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": canary_labels()},
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 1,
                    "tolerations": tolerations,
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "canary",
                        "image": cfg.image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/probe"],
                        "args": ["canary", OPEN_PORT.to_string(), DENIED_PORT.to_string()],
                        "ports": [{"name": "open", "containerPort": OPEN_PORT}, {"name": "denied", "containerPort": DENIED_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": OPEN_PORT}, "periodSeconds": 5},
                        "resources": {"requests": {"cpu": "0", "memory": "0"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
                        "securityContext": restricted()
                    }]
                }
            }
        }
    });
    // Fixed shapes, checked by the tests below: a default here would be refused by the API server.
    serde_json::from_value(value).unwrap_or_default()
}

/// The canary's address: a cluster IP that always leads to the canary on the asker's own node,
/// so a gate depends on nothing beyond its node.
pub fn canary_service(cfg: &Config) -> Service {
    let value = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": CANARY, "namespace": cfg.namespace, "labels": canary_labels()},
        "spec": {
            "selector": {CANARY_LABEL: CANARY},
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "open", "port": OPEN_PORT, "targetPort": OPEN_PORT, "protocol": "TCP"},
                {"name": "denied", "port": DENIED_PORT, "targetPort": DENIED_PORT, "protocol": "TCP"}
            ]
        }
    });
    // Fixed shapes, checked by the tests below: a default here would be refused by the API server.
    serde_json::from_value(value).unwrap_or_default()
}

/// The canary takes both ports from anyone (a refusal must come from the asker's policies, not
/// its own) and connects back to anyone (only ever to whoever asked).
pub fn canary_policy(cfg: &Config) -> NetworkPolicy {
    let value = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": CANARY, "namespace": cfg.namespace, "labels": canary_labels()},
        "spec": {
            "podSelector": {"matchLabels": {CANARY_LABEL: CANARY}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": OPEN_PORT}, {"protocol": "TCP", "port": DENIED_PORT}]}],
            "egress": [{}]
        }
    });
    // Fixed shapes, checked by the tests below: a default here would be refused by the API server.
    serde_json::from_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config { image: "localhost/zhengyun/probe:0.1.0".into(), namespace: "zhengyun-system".into() }
    }

    #[test]
    fn the_gate_is_restricted_and_names_its_canary() {
        let c = gate_container(&cfg(), "10.0.0.77");
        assert_eq!(c.name, CONTAINER);
        let args = c.args.clone().unwrap_or_default();
        assert_eq!(args[..2], ["gate".to_string(), "10.0.0.77".to_string()]);
        let sc = c.security_context.expect("security context");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_string()]));
    }

    #[test]
    fn the_canary_runs_everywhere_and_is_reachable_only_where_meant() {
        let ds = canary_daemonset(&cfg());
        let spec = ds.spec.expect("spec").template.spec.expect("pod spec");
        assert_eq!(spec.tolerations.expect("tolerations")[0].operator.as_deref(), Some("Exists"));
        let requests = spec.containers[0].resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        assert!(requests.values().all(|q| q.0 == "0"), "the canary takes no node capacity: {requests:?}");
        let policy = canary_policy(&cfg()).spec.expect("spec");
        assert_eq!(policy.egress.map(|e| e.len()), Some(1), "the canary connects back to anyone who asks");
        let svc = canary_service(&cfg()).spec.expect("spec");
        assert_eq!(svc.internal_traffic_policy.as_deref(), Some("Local"));
        let peer = canary_peer("zhengyun-system");
        assert_eq!(
            peer.namespace_selector
                .and_then(|s| s.match_labels)
                .and_then(|l| l.get("kubernetes.io/metadata.name").cloned()),
            Some("zhengyun-system".to_string()),
            "a tenant could label a pod of its own like the canary: the namespace must be the operator's"
        );
    }
}
