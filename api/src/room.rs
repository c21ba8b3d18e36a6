//! `ComputerRoom`: a department's computer room (机房) joining the shared cloud (集约化).
//!
//! Cluster-scoped, written by cloud admins. A room names its owning department, where it is,
//! the zone its servers serve, which nodes are its servers once they have joined, and an
//! inventory of the servers not yet migrated (with the systems on them), which the planner
//! packs onto the shared nodes. The operator labels and taints the room's nodes and reports
//! what they hold.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A CPU architecture (信创 servers are often arm64), as `kubernetes.io/arch` names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// A computer room: its department, location, zone, servers that joined as nodes, and the
/// inventory of servers still to migrate.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "ComputerRoom",
    plural = "computerrooms",
    singular = "computerroom",
    shortname = "room",
    category = "zhengyun",
    status = "ComputerRoomStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ComputerRoomSpec {
    /// The department that owns the room: its code, as in a Tenant's `spec.department.code`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    pub department: String,

    /// Where the room is (building, floor), in words.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub location: String,

    /// The zone (安全区域) the room's servers serve. Its nodes get the zone's labels and taint.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub zone: String,

    /// The architecture of the room's servers. When set, a node whose `kubernetes.io/arch`
    /// says otherwise is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,

    /// Which nodes are the room's servers that have joined the cluster.
    #[serde(default)]
    pub nodes: RoomNodes,

    /// The servers not yet migrated, with the systems running on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub inventory: Vec<RoomServer>,
}

/// The room's nodes: those with every label of `selector`, and those named.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomNodes {
    /// Labels that select the room's nodes (for example `topology.kubernetes.io/zone`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8))]
    pub selector: BTreeMap<String, String>,
    /// Nodes by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "set", "items" = {"type": "string", "maxLength": 253}))]
    pub names: Vec<String>,
}

/// An old server still in the room.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomServer {
    /// The server's name in the room (asset tag or host name).
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// CPU cores.
    #[schemars(range(min = 1, max = 1024))]
    pub cores: u32,
    /// Memory in GiB.
    #[schemars(range(min = 1, max = 65536))]
    pub memory_gib: u32,
    /// Disk in GiB.
    #[serde(default)]
    #[schemars(range(max = 10_000_000))]
    pub disk_gib: u64,
    /// GPUs.
    #[serde(default)]
    #[schemars(range(max = 64))]
    pub gpus: u32,
    /// `amd64` or `arm64`.
    pub arch: Arch,
    /// The highest CPU utilisation measured on it, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub peak_utilisation_percent: Option<u8>,
    /// The systems running on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub systems: Vec<RoomSystem>,
}

/// A department's system on an old server, with what it needs on the shared cloud.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSystem {
    /// The system's name.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// The department that owns the system (its code), when not the room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub department: Option<String>,
    /// CPU cores it needs (per replica), for example 0.5 or 4.
    #[schemars(range(min = 0.001, max = 1024.0))]
    pub cpu_cores: f64,
    /// Memory in GiB (per replica).
    #[schemars(range(min = 0.001, max = 65536.0))]
    pub memory_gib: f64,
    /// Disk in GiB (per replica).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 10_000_000.0))]
    pub disk_gib: f64,
    /// GPUs (per replica).
    #[serde(default)]
    #[schemars(range(max = 64))]
    pub gpus: u32,
    /// Copies, each on its own node.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: u32,
    /// The zone it must run in, when not the room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,
    /// The architecture it needs, when it cannot run on either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
}

fn one() -> u32 {
    1
}

/// Where a room is in its move to the shared cloud.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MigrationPhase {
    /// Servers still to migrate, none joined yet.
    Planned,
    /// Some servers joined as nodes, some still to migrate.
    Migrating,
    /// Every server migrated: the room's nodes serve the shared cloud.
    Consolidated,
    /// Nothing left: no node and no server.
    Retired,
}

/// What the operator sees of a room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputerRoomStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the room's nodes carry its labels and taint; False with the reason
    /// (`InvalidSpec`, `ZoneNotFound`, `NodeInTwoRooms`, `ArchMismatch`, `ZoneMismatch`) when
    /// nothing was applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    /// The room's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Allocatable capacity summed over the room's nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    /// Requests of the pods running on the room's nodes, summed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requested: BTreeMap<String, String>,
    /// Requested over allocatable, per resource, in percent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utilisation_percent: BTreeMap<String, i32>,
    /// Tenants with pods on the room's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// The inventory still to migrate, counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventorySummary>,
    /// What the planner says of the inventory against the zone's free capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RoomPlan>,
}

/// The inventory, counted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventorySummary {
    pub servers: i32,
    pub systems: i32,
    pub cores: i64,
    pub memory_gib: i64,
}

/// The planner's summary for the room: its systems packed onto the free capacity of its
/// zone's nodes (after a 30% headroom).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomPlan {
    /// Replicas that fit on the shared nodes today.
    pub placeable_replicas: i32,
    /// Replicas that do not fit, and the first reason.
    pub unplaced_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced_reason: Option<String>,
    /// Old servers whose every system fits, so they can be switched off.
    pub retirable_servers: i32,
    /// Shared nodes the plan uses.
    pub nodes_used: i32,
}
