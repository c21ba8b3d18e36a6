//! Cluster-level isolation with ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`).
//!
//! Where the cluster serves that API, every tenant also gets an Admin-tier policy that denies
//! traffic to and from other tenants and outside addresses, and passes (to NetworkPolicy) what
//! the tenant may do: itself, DNS, its zone's networks. Tenants' own NetworkPolicies cannot
//! override the Admin tier, so what the zone or the tenant boundary closes stays closed. Each
//! active exchange channel gets Admin-tier `Pass` rules at a higher precedence, so its flow
//! reaches the NetworkPolicies the channel controller writes. We own the types we need here
//! (a subset of the upstream API) rather than depending on a Go-generated crate.
//!
//! This module is the API's model and I/O only; the tenant and channel builders that decide
//! what policies say live with their concerns (`tenancy::build`, `channels::build`), so the
//! dependencies point one way.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{LabelSelector, ObjectMeta},
    util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde::{Deserialize, Serialize};

use crate::labels;

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

pub(crate) fn sel(m: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

pub(crate) fn sel_map(m: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(m.clone()), ..Default::default() }
}

pub(crate) fn rule(
    name: &str,
    action: &str,
    peers: Vec<CnpPeer>,
    protocols: Vec<CnpProtocol>,
    ingress: bool,
) -> CnpRule {
    let (from, to) = if ingress { (peers, Vec::new()) } else { (Vec::new(), peers) };
    CnpRule { name: Some(name.into()), action: action.into(), from, to, protocols }
}

pub(crate) fn namespaces(s: LabelSelector) -> CnpPeer {
    CnpPeer { namespaces: Some(s), ..Default::default() }
}

pub(crate) fn port(p: &IntOrString, udp: bool) -> CnpProtocol {
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

/// Whether the cluster serves `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
pub async fn served(client: &Client) -> bool {
    match client.list_api_group_resources("policy.networking.k8s.io/v1alpha2").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "clusternetworkpolicies"),
        Err(_) => false,
    }
}
