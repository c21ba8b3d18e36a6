//! `Tenant`: one department's share of the cloud (one per 部门).
//!
//! Cluster-scoped. The schema carries every check the API server can make by itself (CEL and
//! OpenAPI); the checks it cannot make live in the operator's `tenancy::validate`, which the
//! reconciler (and later the admission webhook) both call.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::amount::{Amount, Count};

/// A department's tenant: its namespaces, one quota over all of them, default limits, owner
/// access, pod security for its 等保 level and default-deny networking.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    singular = "tenant",
    shortname = "tn",
    category = "zhengyun",
    status = "TenantStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The department (部门) this tenant belongs to.
    pub department: Department,

    /// The zone (安全区域) the tenant's workloads run in, for example `extranet` (政务外网) or
    /// `intranet` (政务内网). A lowercase DNS label.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub zone: String,

    /// The CPU architecture the tenant's pods need (信创): `amd64` or `arm64`. Left out: either,
    /// as the scheduler finds room. The zone must have nodes of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<super::Arch>,

    /// Who administers the tenant's workloads. Owners may run workloads in every namespace of
    /// the tenant, but may not change its quota, limits, network policies or namespace labels.
    #[schemars(length(min = 1, max = 64))]
    pub owners: Vec<Owner>,

    /// The namespaces the tenant gets. Each is named `<tenant>-<suffix>`.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["suffix"]))]
    pub namespaces: Vec<TenantNamespace>,

    /// One quota for the whole tenant: the sum over all its namespaces never exceeds it.
    /// A resource left out is not limited.
    #[serde(default)]
    pub quota: TenantQuota,

    /// Default requests and limits for containers that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ContainerLimits>,

    /// The 等保 2.0 (graded protection) level of the department's systems: 2, 3 or 4.
    /// Level 2 enforces the `baseline` pod security standard; 3 and 4 enforce `restricted`.
    #[schemars(extend("enum" = [2, 3, 4]))]
    pub security_level: u8,

    /// What happens to the namespaces when the tenant is deleted. `Retain` (the default) keeps
    /// them and everything in them, labelled as orphaned; `Delete` removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// With `deletionPolicy: Delete`, namespaces holding PersistentVolumeClaims are only
    /// deleted when this is `true`: a guard against losing a department's data by mistake.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_data_deletion: bool,

    /// 国密 certificates (SmCertificate) the tenant's namespaces get, for example from the
    /// department's own CA (an SmClusterIssuer with the department's code). Each is renewed before
    /// it expires; dropping one from the list deletes the SmCertificate but keeps its Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["namespace", "name"]))]
    pub certificates: Vec<TenantCertificate>,

    /// Services the department exposes with 国密 TLS (SecureGateway): TLCP, TLS 1.3 with SM
    /// suites and, below 等保 level 4, standard TLS. Dropping one from the list deletes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["namespace", "name"]))]
    pub gateways: Vec<TenantGateway>,
}

/// A gateway a tenant's namespace gets: a SecureGateway named `name` in `<tenant>-<namespace>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantGateway {
    /// The SecureGateway's name.
    #[schemars(length(min = 1, max = 48), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The suffix of the tenant namespace it goes to (one of `spec.namespaces`).
    #[schemars(length(min = 1, max = 61))]
    pub namespace: String,
    /// The gateway, as in a SecureGateway's spec.
    #[serde(flatten)]
    pub gateway: super::SecureGatewaySpec,
}

/// A certificate a tenant's namespace gets: an SmCertificate named `name` in `<tenant>-<namespace>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantCertificate {
    /// The SmCertificate's name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The suffix of the tenant namespace it goes to (one of `spec.namespaces`).
    #[schemars(length(min = 1, max = 61))]
    pub namespace: String,
    /// The certificate, as in an SmCertificate's spec.
    #[serde(flatten)]
    pub certificate: super::SmCertificateSpec,
}

/// The department (部门) a tenant serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.code == oldSelf.code",
    "message": "spec.department.code is immutable: create a new tenant for another department",
    "fieldPath": ".code",
    "reason": "FieldValueForbidden"
}]))]
pub struct Department {
    /// The department's code (for example its organisation code). Immutable; used as a label.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    pub code: String,
    /// The department's name in English.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The department's name in Chinese (中文名称), for example 市大数据局.
    #[schemars(length(max = 256))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
}

/// A user or group that administers the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.kind != 'Group' || !self.name.startsWith('system:')",
        "message": "a system: group (system:authenticated, system:serviceaccounts, ...) holds users of the whole cluster: name the department's own group",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'User' || self.name != 'system:anonymous'",
        "message": "system:anonymous is every unauthenticated request: name a real user",
        "fieldPath": ".name"
    }
]))]
pub struct Owner {
    /// `User` or `Group`, as the cluster's authenticator names them. Groups named `system:…`
    /// (every authenticated user, every service account, ...) are refused.
    pub kind: OwnerKind,
    /// The user or group name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kind of an owner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OwnerKind {
    User,
    Group,
}

/// One namespace of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantNamespace {
    /// The suffix of the namespace name `<tenant>-<suffix>`: a lowercase DNS label.
    #[schemars(length(min = 1, max = 61), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub suffix: String,
}

/// The tenant's quota over all its namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuota {
    /// Total CPU requests, for example `8` or `7500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Amount>,
    /// Total memory requests, for example `16Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Amount>,
    /// Total storage requested by PersistentVolumeClaims, for example `500Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Amount>,
    /// Number of PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claims: Option<Count>,
    /// Number of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Count>,
    /// Number of Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Count>,
    /// Number of Services of type LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Count>,
    /// Number of GPUs (the extended resource named by `gpuResourceName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Count>,
    /// The extended resource that counts GPUs on this cloud's nodes. Default `nvidia.com/gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
        )
    )]
    pub gpu_resource_name: Option<String>,
}

/// Default requests and limits for containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLimits {
    /// What a container requests when it sets no requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_request: Option<CpuMemory>,
    /// The limit a container gets when it sets no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_limit: Option<CpuMemory>,
    /// The most a single container may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<CpuMemory>,
}

/// A CPU and memory pair.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuMemory {
    /// CPU, for example `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Amount>,
    /// Memory, for example `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Amount>,
}

/// What deleting the tenant does to its namespaces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the namespaces and their contents, labelled as orphaned.
    #[default]
    Retain,
    /// Delete the namespaces (guarded by `confirmDataDeletion` when they hold volumes).
    Delete,
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and one condition per concern: `NamespacesReady`, `QuotaReady`, `AccessReady`,
    /// `NetworkReady`; `Conflict` when a namespace belongs to someone else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The namespaces the tenant holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// How many namespaces the tenant holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_count: Option<i32>,
    /// The tenant's quota and what its namespaces use of it, by ResourceQuota resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStatus>,
    /// A one-line summary of quota use, for `kubectl get tenants -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_summary: Option<String>,
}

/// Quota totals over all of a tenant's namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// The tenant's quota.
    #[serde(default)]
    pub hard: BTreeMap<String, String>,
    /// What all its namespaces use together.
    #[serde(default)]
    pub used: BTreeMap<String, String>,
}
