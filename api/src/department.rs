//! `Department`: one node of the government's tree (province → city → county; bureau →
//! division), with the budget handed down to it.
//!
//! Cluster-scoped, written by cloud admins. A department names its parent by code and holds a
//! budget; its children's budgets and its own tenants' quotas together never exceed it (the
//! admission webhook refuses a change that would break that, with the numbers). Tenants name
//! their department by code (`spec.department.code`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tenant::TenantQuota;

/// A department: its code, names, parent and budget.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "Department",
    plural = "departments",
    singular = "department",
    shortname = "dept",
    category = "zhengyun",
    status = "DepartmentStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentSpec {
    /// The department's code, as tenants name it in `spec.department.code`. Unique among
    /// departments; immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    pub code: String,

    /// The department's name in Chinese (中文名称), for example 广州市教育局.
    #[schemars(length(min = 1, max = 256))]
    pub name_zh: String,

    /// The department's name in English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub name: Option<String>,

    /// The code of the department above this one; left out at the top of the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    pub parent: Option<String>,

    /// The group whose members administer the department's tenants: they may create and edit
    /// the tenants of this department and of every department below it, never above or beside
    /// it. Groups named `system:…` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub admin_group: Option<String>,

    /// What the department may hand down: its children's budgets and its own tenants' quotas
    /// together stay within it, resource by resource. A resource left out is not limited here
    /// (only by the departments above).
    #[serde(default)]
    pub budget: TenantQuota,
}

/// What the operator observed of a department and its subtree.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: the parent exists and the budget holds what was handed down.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// The codes from the top of the tree down to this department, joined by `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// The codes of the departments directly below.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,

    /// The tenants that name this department.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,

    /// Per resource: what the children's budgets and the own tenants' quotas take of the budget.
    #[serde(default)]
    pub allocated: BTreeMap<String, String>,

    /// Per resource: what the whole subtree's tenants use (their quotas' `used`).
    #[serde(default)]
    pub used: BTreeMap<String, String>,

    /// `allocated/budget` per budgeted resource, for `kubectl get departments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_summary: Option<String>,
}
