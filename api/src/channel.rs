//! `ExchangeChannel`: a declared, approved, expiring flow between two tenants (数据共享交换).
//!
//! Cluster-scoped, written by cloud admins. Nothing crosses a tenant boundary except through a
//! channel; a channel opens nothing until its approver approves it, and closes itself when it
//! expires. Across zones the flow goes through the zone gateway (网闸 / exchange proxy) only.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A flow from one tenant's pods to a Service port of another tenant.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "ExchangeChannel",
    plural = "exchangechannels",
    singular = "exchangechannel",
    shortname = "xch",
    category = "zhengyun",
    status = "ExchangeChannelStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.approver) != has(self.approverGroup)",
        "message": "name exactly one of spec.approver (a user) or spec.approverGroup (a group)"
    },
    {
        "rule": "has(self.approver) == has(oldSelf.approver) && (!has(self.approver) || self.approver == oldSelf.approver) && has(self.approverGroup) == has(oldSelf.approverGroup) && (!has(self.approverGroup) || self.approverGroup == oldSelf.approverGroup)",
        "message": "spec.approver and spec.approverGroup are fixed when the channel is requested: delete the channel and request it again to change who approves it",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.from.tenant != self.to.tenant",
        "message": "spec.to.tenant: a channel joins two tenants; inside one tenant traffic needs no channel",
        "fieldPath": ".to.tenant"
    }
]))]
pub struct ExchangeChannelSpec {
    /// Where the flow starts.
    pub from: ChannelSource,
    /// Where the flow goes: a named Service port in one namespace of the target tenant.
    pub to: ChannelTarget,
    /// Why the departments exchange data (数据共享用途), for the audit trail.
    #[schemars(length(min = 1, max = 1024))]
    pub purpose: String,
    /// The user who must approve the channel (审批人). Only that user may set `approved`, and
    /// not if they requested the channel themselves. Fixed when the channel is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub approver: Option<String>,
    /// Instead of `approver`: a group whose members may approve (any member but the requester).
    /// Fixed when the channel is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub approver_group: Option<String>,
    /// Set to `true` by the approver, in an update after the channel was requested. Until then
    /// the channel is `Pending` and opens nothing. A later change to what was approved (its
    /// ends, port, gateway, purpose, or an expiry past the approved one) by anyone but the
    /// approver sets it back to `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// When the channel closes by itself (RFC 3339, for example `2027-01-31T00:00:00Z`).
    #[schemars(extend("format" = "date-time"))]
    pub expires: String,
    /// The zone gateway (网闸 or exchange proxy) that carries a flow between two zones. Required
    /// when the tenants are in different zones; the flow then goes to and from this address only.
    /// One host or a small range (at most 256 addresses); for an Intranet zone, inside the zone's
    /// declared networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ChannelGateway>,
}

/// The source end of a channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSource {
    /// The source tenant.
    #[schemars(length(min = 1, max = 61))]
    pub tenant: String,
    /// Only pods with these labels may use the channel (default: every pod of the tenant).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// The target end of a channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelTarget {
    /// The target tenant.
    #[schemars(length(min = 1, max = 61))]
    pub tenant: String,
    /// The suffix of the target namespace (`<tenant>-<suffix>`).
    #[schemars(length(min = 1, max = 61))]
    pub namespace: String,
    /// The Service that receives the flow.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// The Service port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// A zone gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelGateway {
    /// The gateway's address as a CIDR (for example `10.200.0.10/32`).
    #[schemars(length(max = 43), extend("x-kubernetes-validations" = [{"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.200.0.10/32"}]))]
    pub cidr: String,
}

/// A channel's lifecycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ChannelPhase {
    /// Declared, not approved: opens nothing.
    Pending,
    /// Approved and not expired: the flow is open.
    Active,
    /// Past its expiry: closed.
    Expired,
    /// Its ends do not exist or do not fit: opens nothing.
    Invalid,
}

/// What the operator did with a channel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Active`, `Expired` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ChannelPhase>,
    /// Why the channel is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who requested the channel, as the API server authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Who approved what the channel now says, as the API server authenticated them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When they approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// The latest expiry they approved; a later one needs their approval again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_until: Option<String>,
    /// The NetworkPolicies the channel produced, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// `Ready` when the channel's state is in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
