//! The NetworkPolicies an active channel implies. Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
        NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

use crate::isolation::{self as cnp, CHANNEL_PRIORITY, ClusterNetworkPolicy, CnpPeer, CnpPods, CnpSpec, CnpSubject};
use crate::{api::ExchangeChannel, labels};

/// Label naming the channel a policy belongs to.
pub use labels::CHANNEL as CHANNEL_LABEL;

/// What the channel's ends resolve to in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Ends {
    pub source_tenant: String,
    pub source_namespaces: Vec<String>,
    pub target_tenant: String,
    pub target_namespace: String,
    /// The Service's pod selector.
    pub target_pods: BTreeMap<String, String>,
    /// The pods' port behind the Service port (a number or a named port).
    pub target_port: IntOrString,
    /// Set when the tenants are in different zones: the flow goes through this gateway only.
    pub gateway: Option<String>,
}

/// The policy name of a channel.
pub fn policy_name(channel: &str) -> String {
    format!("zhengyun-channel-{channel}")
}

/// Makes the channel the owner of what it produces: deleting the channel deletes its policies
/// (garbage collection), so the flow closes even when the operator is down.
pub fn owner(ch: &ExchangeChannel) -> OwnerReference {
    ch.controller_owner_ref(&()).unwrap_or_default()
}

fn meta(ch: &ExchangeChannel, namespace: &str, tenant: &str) -> ObjectMeta {
    let owner = owner(ch);
    ObjectMeta {
        name: Some(policy_name(&ch.name_any())),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.into(), labels::MANAGER.into()),
            (labels::TENANT.into(), tenant.into()),
            (CHANNEL_LABEL.into(), ch.name_any()),
        ])),
        owner_references: Some(vec![owner]),
        ..Default::default()
    }
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: (!labels.is_empty()).then(|| labels.clone()), ..Default::default() }
}

/// Egress from the source pods in each source namespace, ingress to the target pods.
pub fn policies(ch: &ExchangeChannel, ends: &Ends) -> Vec<NetworkPolicy> {
    let ports = Some(vec![NetworkPolicyPort {
        protocol: Some("TCP".into()),
        port: Some(ends.target_port.clone()),
        end_port: None,
    }]);
    let gateway_peer = |cidr: &str| NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.into(), except: None }),
        ..Default::default()
    };
    let to = match &ends.gateway {
        Some(cidr) => gateway_peer(cidr),
        None => NetworkPolicyPeer {
            namespace_selector: Some(selector(&BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ends.target_namespace.clone(),
            )]))),
            pod_selector: Some(selector(&ends.target_pods)),
            ip_block: None,
        },
    };
    let from = match &ends.gateway {
        Some(cidr) => gateway_peer(cidr),
        None => NetworkPolicyPeer {
            namespace_selector: Some(selector(&BTreeMap::from([(
                labels::TENANT.to_string(),
                ends.source_tenant.clone(),
            )]))),
            pod_selector: Some(selector(&ch.spec.from.pod_labels)),
            ip_block: None,
        },
    };
    let mut out: Vec<NetworkPolicy> = ends
        .source_namespaces
        .iter()
        .map(|ns| NetworkPolicy {
            metadata: meta(ch, ns, &ends.source_tenant),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(selector(&ch.spec.from.pod_labels)),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![NetworkPolicyEgressRule { to: Some(vec![to.clone()]), ports: ports.clone() }]),
                ingress: None,
            }),
        })
        .collect();
    out.push(NetworkPolicy {
        metadata: meta(ch, &ends.target_namespace, &ends.target_tenant),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&ends.target_pods)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(vec![from]), ports }]),
            egress: None,
        }),
    });
    out
}

/// An active channel's flow, passed through the Admin tier before any tenant's deny rules.
pub fn cluster_policies(ch: &ExchangeChannel, ends: &Ends) -> Vec<ClusterNetworkPolicy> {
    let name = ch.name_any();
    let owner = crate::channels::build::owner(ch);
    let meta = |side: &str| ObjectMeta {
        name: Some(format!("zhengyun-channel-{name}-{side}")),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.into(), labels::MANAGER.into()),
            (CHANNEL_LABEL.into(), name.clone()),
        ])),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let sources = CnpPods {
        namespace_selector: cnp::sel(&[(labels::TENANT, &ends.source_tenant)]),
        pod_selector: cnp::sel_map(&ch.spec.from.pod_labels),
    };
    let targets = CnpPods {
        namespace_selector: cnp::sel(&[("kubernetes.io/metadata.name", &ends.target_namespace)]),
        pod_selector: cnp::sel_map(&ends.target_pods),
    };
    let protocols = vec![cnp::port(&ends.target_port, false)];
    let to = match &ends.gateway {
        Some(g) => CnpPeer { networks: Some(vec![g.clone()]), ..Default::default() },
        None => CnpPeer { pods: Some(targets.clone()), ..Default::default() },
    };
    let spec = |subject: CnpPods| CnpSpec {
        tier: "Admin".into(),
        priority: CHANNEL_PRIORITY,
        subject: CnpSubject { namespaces: None, pods: Some(subject) },
        ..Default::default()
    };
    let mut egress = ClusterNetworkPolicy { metadata: meta("egress"), spec: spec(sources.clone()) };
    egress.spec.egress = vec![cnp::rule("channel", "Pass", vec![to], protocols.clone(), false)];
    let mut out = vec![egress];
    // A gateway's traffic comes from outside the cluster: the Admin tier's pod and namespace
    // rules do not match it, so only a same-zone flow needs an ingress pass.
    if ends.gateway.is_none() {
        let mut ingress = ClusterNetworkPolicy { metadata: meta("ingress"), spec: spec(targets) };
        ingress.spec.ingress = vec![cnp::rule(
            "channel",
            "Pass",
            vec![CnpPeer { pods: Some(sources), ..Default::default() }],
            protocols,
            true,
        )];
        out.push(ingress);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::tests::channel;

    fn ends(gateway: Option<&str>) -> Ends {
        Ends {
            source_tenant: "tax".into(),
            source_namespaces: vec!["tax-apps".into(), "tax-batch".into()],
            target_tenant: "stats".into(),
            target_namespace: "stats-ingest".into(),
            target_pods: BTreeMap::from([("app".into(), "api".into())]),
            target_port: IntOrString::Int(8443),
            gateway: gateway.map(Into::into),
        }
    }

    #[test]
    fn a_same_zone_channel_opens_exactly_the_declared_pods_and_port() {
        let p = policies(&channel(true, "2030-01-01T00:00:00Z"), &ends(None));
        assert_eq!(p.len(), 3, "egress in both source namespaces, ingress at the target");
        let egress = p[0].spec.clone().unwrap_or_default();
        assert_eq!(egress.policy_types, Some(vec!["Egress".to_string()]));
        let rule = &egress.egress.unwrap_or_default()[0];
        let peer = &rule.to.clone().unwrap_or_default()[0];
        // Namespace AND pods in one peer.
        assert!(peer.namespace_selector.is_some() && peer.pod_selector.is_some() && peer.ip_block.is_none());
        assert_eq!(rule.ports.clone().unwrap_or_default()[0].port, Some(IntOrString::Int(8443)));
        let ingress = p[2].spec.clone().unwrap_or_default();
        assert_eq!(p[2].metadata.namespace.as_deref(), Some("stats-ingest"));
        let from = &ingress.ingress.unwrap_or_default()[0].from.clone().unwrap_or_default()[0];
        assert_eq!(
            from.namespace_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default()[labels::TENANT],
            "tax"
        );
        assert_eq!(
            from.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default()["app"],
            "export"
        );
    }

    #[test]
    fn a_cross_zone_channel_goes_through_the_gateway_only() {
        let p = policies(&channel(true, "2030-01-01T00:00:00Z"), &ends(Some("10.200.0.10/32")));
        for np in &p {
            let spec = np.spec.clone().unwrap_or_default();
            let peers: Vec<NetworkPolicyPeer> = spec
                .egress
                .unwrap_or_default()
                .into_iter()
                .flat_map(|r| r.to.unwrap_or_default())
                .chain(spec.ingress.unwrap_or_default().into_iter().flat_map(|r| r.from.unwrap_or_default()))
                .collect();
            assert!(!peers.is_empty());
            for peer in peers {
                assert_eq!(peer.ip_block.map(|b| b.cidr).as_deref(), Some("10.200.0.10/32"));
                assert!(peer.namespace_selector.is_none() && peer.pod_selector.is_none());
            }
        }
    }
}
