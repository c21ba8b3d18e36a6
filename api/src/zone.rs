//! `Zone`: a security zone (安全区域) with its own nodes and outside networks.
//!
//! Cluster-scoped, written by cloud admins. A zone's kind says what it is (政务内网, 政务外网,
//! 互联网接入区); its node selector and taint keep its pods on its nodes and other pods off them;
//! its networks are the only outside addresses its tenants may reach or be reached from.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A security zone: its kind, nodes, taint, outside networks and lowest accepted 等保 level.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "Zone",
    plural = "zones",
    singular = "zone",
    shortname = "zn",
    category = "zhengyun",
    status = "ZoneStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.kind != 'Intranet' || !has(self.egress) || self.egress.all(c, !isCIDR(c) || cidr(c).prefixLength() != 0)",
        "message": "spec.egress: an Intranet zone (政务内网) reaches no Internet: it may not list a default route (0.0.0.0/0 or ::/0)",
        "fieldPath": ".egress"
    },
    {
        "rule": "self.kind != 'Intranet' || !has(self.ingress) || self.ingress.all(c, !isCIDR(c) || cidr(c).prefixLength() != 0)",
        "message": "spec.ingress: an Intranet zone (政务内网) is not reachable from the Internet: it may not list 0.0.0.0/0 or ::/0",
        "fieldPath": ".ingress"
    }
]))]
pub struct ZoneSpec {
    /// `Intranet` (政务内网), `Extranet` (政务外网) or `InternetAccess` (互联网接入区).
    pub kind: ZoneKind,

    /// Labels that select the zone's nodes (at least one). The zone's pods are placed on these
    /// nodes only. Keys and values follow the Kubernetes label syntax.
    #[schemars(extend("minProperties" = 1, "maxProperties" = 8))]
    pub node_selector: BTreeMap<String, String>,

    /// The taint on the zone's nodes that keeps other zones' pods off them. The zone's pods get
    /// the matching toleration. Default: `zhengyun.io/zone=<zone name>:NoSchedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<ZoneTaint>,

    /// Outside networks (CIDRs) the zone's tenants may reach, for example the extranet backbone
    /// or an Internet egress proxy. An Intranet zone may not list a default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("items" = {"type": "string", "maxLength": 43, "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.20.0.0/16"}]}))]
    pub egress: Vec<String>,

    /// Outside networks (CIDRs) that may reach the zone's tenants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("items" = {"type": "string", "maxLength": 43, "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.20.0.0/16"}]}))]
    pub ingress: Vec<String>,

    /// An Intranet zone's networks must lie in private address space (RFC 1918, 100.64.0.0/10,
    /// fc00::/7) unless this is `true`: set it only when the intranet really uses public
    /// allocations. No zone may list ranges that together cover the whole address space.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_public_ranges: bool,

    /// Service types other than ClusterIP that the zone's tenants may create. Default: none
    /// (ClusterIP only), since NodePort and LoadBalancer Services open the zone's nodes or an
    /// outside address to traffic that the tenant's network policies do not see first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_service_types: Vec<ServiceType>,

    /// The lowest 等保 level a tenant must have to run in this zone (2, 3 or 4).
    #[serde(default = "default_level")]
    #[schemars(extend("enum" = [2, 3, 4]))]
    pub min_security_level: u8,
}

fn default_level() -> u8 {
    2
}

/// What a zone is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ZoneKind {
    Intranet,
    Extranet,
    InternetAccess,
}

/// A Service type beyond ClusterIP.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum ServiceType {
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// The taint on a zone's nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneTaint {
    /// Taint key.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Taint value.
    #[serde(default)]
    #[schemars(length(max = 63))]
    pub value: String,
    /// `NoSchedule` or `NoExecute`.
    #[serde(default = "default_effect")]
    #[schemars(extend("enum" = ["NoSchedule", "NoExecute"]))]
    pub effect: String,
}

fn default_effect() -> String {
    "NoSchedule".into()
}

/// What the operator sees of a zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` when the zone has nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many nodes the zone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,
    /// The zone's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Allocatable capacity summed over the zone's nodes (cpu, memory, pods, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    /// Tenants that run in the zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

impl Zone {
    /// The zone's taint, with the default filled in.
    pub fn effective_taint(&self) -> ZoneTaint {
        self.spec.taint.clone().unwrap_or_else(|| ZoneTaint {
            key: crate::labels::ZONE.into(),
            value: self.metadata.name.clone().unwrap_or_default(),
            effect: default_effect(),
        })
    }
}
