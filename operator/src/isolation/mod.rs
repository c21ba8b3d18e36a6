//! Cluster-level isolation with ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`).
//!
//! Where the cluster serves that API, every tenant also gets an Admin-tier policy that denies
//! traffic to and from other tenants and outside addresses, and passes (to NetworkPolicy) what
//! the tenant may do: itself, DNS, its zone's networks. Tenants' own NetworkPolicies cannot
//! override the Admin tier, so what the zone or the tenant boundary closes stays closed. Each
//! active exchange channel gets Admin-tier `Pass` rules at a higher precedence, so its flow
//! reaches the NetworkPolicies the channel controller writes. We own the types we need here
//! (a subset of the upstream API) rather than depending on a Go-generated crate.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
    util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde::{Deserialize, Serialize};

use crate::{
    api::ExchangeChannel,
    channels::build::{CHANNEL_LABEL, Ends},
    labels,
    tenancy::validate::{ValidatedTenant, ZonePlacement},
};

/// Precedence of channel rules: before every tenant's deny rules.
pub const CHANNEL_PRIORITY: i32 = 10;
/// Precedence of the tenant boundary.
pub const TENANT_PRIORITY: i32 = 100;

/// The upstream API's group, version and kind.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy.networking.k8s.io", "v1alpha2", "ClusterNetworkPolicy"),
        "clusternetworkpolicies",
    )
}

/// A ClusterNetworkPolicy, as much of it as zhengyun writes and evaluates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: CnpSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpSpec {
    pub tier: String,
    pub priority: i32,
    pub subject: CnpSubject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<CnpRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<CnpRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpSubject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<CnpPods>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpPods {
    pub namespace_selector: LabelSelector,
    pub pod_selector: LabelSelector,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<CnpPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<CnpPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<CnpProtocol>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<CnpPods>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpProtocol {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<CnpPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<CnpPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpPort {
    pub destination_port: CnpPortNumber,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CnpPortNumber {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
}

fn sel(m: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

fn sel_map(m: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(m.clone()), ..Default::default() }
}

fn rule(name: &str, action: &str, peers: Vec<CnpPeer>, protocols: Vec<CnpProtocol>, ingress: bool) -> CnpRule {
    let (from, to) = if ingress { (peers, Vec::new()) } else { (Vec::new(), peers) };
    CnpRule { name: Some(name.into()), action: action.into(), from, to, protocols }
}

fn namespaces(s: LabelSelector) -> CnpPeer {
    CnpPeer { namespaces: Some(s), ..Default::default() }
}

fn port(p: &IntOrString, udp: bool) -> CnpProtocol {
    match p {
        IntOrString::Int(n) => {
            let port = Some(CnpPort { destination_port: CnpPortNumber { number: Some(*n) } });
            if udp {
                CnpProtocol { udp: port, ..Default::default() }
            } else {
                CnpProtocol { tcp: port, ..Default::default() }
            }
        }
        IntOrString::String(name) => CnpProtocol { destination_named_port: Some(name.clone()), ..Default::default() },
    }
}

/// The tenant boundary as an Admin-tier policy.
pub fn tenant_policy(t: &ValidatedTenant, zone: &ZonePlacement, owner: OwnerReference) -> ClusterNetworkPolicy {
    let own = sel(&[(labels::TENANT, &t.name)]);
    let dns = CnpPeer {
        pods: Some(CnpPods {
            namespace_selector: sel(&[("kubernetes.io/metadata.name", "kube-system")]),
            pod_selector: sel(&[("k8s-app", "kube-dns")]),
        }),
        ..Default::default()
    };
    let mut egress = vec![
        rule("same-tenant", "Pass", vec![namespaces(own.clone())], vec![], false),
        rule(
            "dns",
            "Pass",
            vec![dns],
            vec![port(&IntOrString::Int(53), true), port(&IntOrString::Int(53), false)],
            false,
        ),
    ];
    if !zone.egress.is_empty() {
        egress.push(rule(
            "zone-networks",
            "Pass",
            vec![CnpPeer { networks: Some(zone.egress.clone()), ..Default::default() }],
            vec![],
            false,
        ));
    }
    egress.push(rule("other-tenants", "Deny", vec![namespaces(LabelSelector::default())], vec![], false));
    egress.push(rule(
        "outside",
        "Deny",
        vec![CnpPeer { networks: Some(vec!["0.0.0.0/0".into(), "::/0".into()]), ..Default::default() }],
        vec![],
        false,
    ));
    ClusterNetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("zhengyun-tenant-{}", t.name)),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (labels::TENANT.into(), t.name.clone()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: CnpSpec {
            tier: "Admin".into(),
            priority: TENANT_PRIORITY,
            subject: CnpSubject { namespaces: Some(own.clone()), pods: None },
            ingress: vec![
                rule("same-tenant", "Pass", vec![namespaces(own)], vec![], true),
                rule("other-tenants", "Deny", vec![namespaces(LabelSelector::default())], vec![], true),
            ],
            egress,
        },
    }
}

/// An active channel's flow, passed through the Admin tier before any tenant's deny rules.
pub fn channel_policies(ch: &ExchangeChannel, ends: &Ends) -> Vec<ClusterNetworkPolicy> {
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
        namespace_selector: sel(&[(labels::TENANT, &ends.source_tenant)]),
        pod_selector: sel_map(&ch.spec.from.pod_labels),
    };
    let targets = CnpPods {
        namespace_selector: sel(&[("kubernetes.io/metadata.name", &ends.target_namespace)]),
        pod_selector: sel_map(&ends.target_pods),
    };
    let protocols = vec![port(&ends.target_port, false)];
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
    egress.spec.egress = vec![rule("channel", "Pass", vec![to], protocols.clone(), false)];
    let mut out = vec![egress];
    // A gateway's traffic comes from outside the cluster: the Admin tier's pod and namespace
    // rules do not match it, so only a same-zone flow needs an ingress pass.
    if ends.gateway.is_none() {
        let mut ingress = ClusterNetworkPolicy { metadata: meta("ingress"), spec: spec(targets) };
        ingress.spec.ingress =
            vec![rule("channel", "Pass", vec![CnpPeer { pods: Some(sources), ..Default::default() }], protocols, true)];
        out.push(ingress);
    }
    out
}

/// Server-Side Apply of a ClusterNetworkPolicy.
pub async fn apply(client: &Client, p: &ClusterNetworkPolicy) -> Result<(), kube::Error> {
    let ar = api_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut v = serde_json::to_value(p).map_err(kube::Error::SerdeError)?;
    v["apiVersion"] = ar.api_version.clone().into();
    v["kind"] = ar.kind.clone().into();
    api.patch(
        &p.metadata.name.clone().unwrap_or_default(),
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&v),
    )
    .await
    .map(|_| ())
}

/// Deletes the ClusterNetworkPolicies with a label selector, except those named in `keep`.
pub async fn delete_except(client: &Client, selector: &str, keep: &[String]) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource());
    for p in api.list(&kube::api::ListParams::default().labels(selector)).await?.items {
        let name = p.name_any();
        if !keep.contains(&name) {
            match api.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Every ClusterNetworkPolicy in the cluster, for the reachability view.
pub async fn list(client: &Client) -> Result<Vec<ClusterNetworkPolicy>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource());
    let items = api.list(&Default::default()).await?.items;
    Ok(items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok().and_then(|v| serde_json::from_value(v).ok()))
        .collect())
}
