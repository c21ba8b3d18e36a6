//! Consolidation planning (集约化): which shared nodes a department's systems can move to, and
//! how few nodes they need.
//!
//! A pure library: systems (each with replicas, a zone and an architecture) are packed onto
//! nodes of the same zone and architecture, no node over its capacity times a headroom target,
//! no two replicas of one system on one node. [`plan`] is the planner; [`first_fit_decreasing`]
//! and [`best_fit_decreasing`] are the textbook baselines it is measured against, and
//! [`lower_bound`] says how far from optimal any of them can be. When node prices are given, a
//! zone whose every node is priced is planned for least cost instead, and [`cost_lower_bound`]
//! says how far from the cheapest plan it is. [`inventory`] and [`showback`]
//! read what a cloud office fills in (CSV); [`report`] turns a plan into JSON, Markdown and HTML.

#![forbid(unsafe_code)]

pub mod fgd;
pub mod fleet;
pub mod inventory;
pub mod pack;
pub mod report;
pub mod showback;
pub mod trace;

pub use pack::{best_fit_decreasing, cost_lower_bound, first_fit_decreasing, lower_bound, plan};

/// Resources, in fixed units: millicores, MiB of memory, GiB of disk, thousandths of a GPU.
///
/// GPUs are devices, not a pool (the openb trace's own semantics, see [`trace`]): a node's GPU
/// capacity is its devices times [`DEVICE`]; a need below [`DEVICE`] is a share of one device
/// (GPU sharing), a need of k × [`DEVICE`] is k whole devices ([`GpuNeed`]). Headroom does not
/// apply to GPUs: a device is handed out whole or shared, never burst into.
pub const DIMS: usize = 4;
/// One GPU device, in thousandths.
pub const DEVICE: u64 = 1000;
/// The most GPU devices of one node the planner hands out (inputs refuse more).
pub const MAX_DEVICES: u64 = 64;
pub const DIM_NAMES: [&str; DIMS] = ["cpu", "memory", "disk", "gpu"];

/// An amount of each resource.
pub type Res = [u64; DIMS];

/// A CPU architecture (信创 servers are often arm64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

/// A node systems can be placed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub capacity: Res,
    pub arch: Arch,
    pub zone: String,
    /// What the node costs a month (`price_per_month` in `nodes.csv`), in whatever currency the
    /// file's prices are; `None`: not priced. A zone whose every node is priced is planned for
    /// least cost ([`plan`]); prices are never invented.
    pub price: Option<f64>,
    /// The model of its GPUs (`V100M32`, `T4`, ...), when it has GPUs and the input says.
    pub gpu_model: Option<String>,
}

/// A department's system: `replicas` copies of `need`, each on its own node.
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: String,
    pub department: String,
    pub need: Res,
    pub replicas: u32,
    pub zone: String,
    /// `None`: either architecture.
    pub arch: Option<Arch>,
    /// The GPU models it may run on (the trace's `gpu_spec`); empty: any node with room.
    pub gpu_models: Vec<String>,
}

/// What a replica asks of a node's GPU devices, from its GPU need in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GpuNeed {
    None,
    /// A share of one device, 1 to 999 thousandths.
    Share(u64),
    /// Whole devices, each to itself.
    Whole(u64),
}

impl GpuNeed {
    /// A need below one device is a share of one; from one device up, whole devices (a need
    /// that is not a whole number of devices is rounded up: the inputs refuse it before).
    pub fn of(milli: u64) -> GpuNeed {
        match milli {
            0 => GpuNeed::None,
            m if m < DEVICE => GpuNeed::Share(m),
            m => GpuNeed::Whole(m.div_ceil(DEVICE)),
        }
    }
}

/// Planning options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// The share of each node's capacity that may be used (0.7: 30% headroom).
    pub headroom: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { headroom: 1.0 }
    }
}

/// One replica placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub system: usize,
    pub replica: u32,
    pub node: usize,
    /// The node's GPU devices it takes (indices from 0), each whole or a share as its
    /// [`GpuNeed`] says; empty when it needs none.
    pub gpus: Vec<u8>,
}

/// One replica that could not be placed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub system: usize,
    pub replica: u32,
    pub reason: String,
}

/// A plan: where each replica goes, what could not go anywhere, and how many nodes it uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
    pub nodes_used: usize,
    /// What the nodes used cost a month: the sum of their prices, when every node used has one
    /// (and some node of the input does); `None` otherwise.
    pub cost: Option<f64>,
}
