//! The consolidation report: what a plan means for the cloud office, as one model rendered three
//! ways — JSON ([`Report::to_json`], schema below), Markdown ([`markdown`]) and a self-contained
//! HTML page ([`html`]).
//!
//! This module owns the report's content and its stable JSON schema. It does not plan (it takes
//! a [`Plan`] and calls the public [`crate::lower_bound`]), and it does not read files (the
//! inventory and showback modules do).
//!
//! # JSON schema `zhengyun.io/consolidation-plan/v1`
//!
//! Quantities are objects `{cpu_cores, memory_gib, disk_gib, gpus}` (the CSV columns' units);
//! ratios are objects `{cpu, memory, disk, gpu}` of fractions (0.39 is 39%), `null` where the
//! capacity is zero. Lists are sorted by name (nodes: in the order of `nodes.csv`). Fields are
//! only ever added within v1.
//!
//! - `schema`, `headroom` (the share of each node that may be used).
//! - `summary`: `systems`, `replicas`, `replicas_placed`, `replicas_unplaced`, `servers`,
//!   `servers_retirable`, `rooms`, `rooms_retirable`, `nodes_available`, `nodes_used`.
//! - `lower_bound`: `nodes`, `name` (which bound), `statement` (a sentence: what it is and why
//!   it is valid), `plan_complete` (every replica placed), `gap_percent` (`null` unless
//!   complete: the bound is about plans that place everything), `zones` (`zone`,
//!   `nodes_available`, `nodes_used`, `lower_bound`).
//! - `utilisation`: `before` (`null` without `servers.csv`; else `servers`, `capacity` of the
//!   old servers, `requested` by every system, `ratio`) and `after` (`nodes`, `capacity` of the
//!   nodes used, `requested` by the replicas placed, `ratio`).
//! - `rooms`: `room`, `departments`, `servers`, `servers_retirable`, `retirable` (the whole
//!   room), `servers_detail` (`server`, `retirable`, `systems`, `capacity` or `null`,
//!   `requested`, `blocked_by`: the replicas that cannot move, with `system`, `replica`,
//!   `reason`).
//! - `systems`: where each replica of each system goes: `system`, `department`, `room`,
//!   `server`, `zone`, `arch` (`amd64`, `arm64`, `any`), `need` (one replica), `replicas`
//!   (`replica`, `node` or `null`, `reason` or `null`).
//! - `unplaced`: `system`, `department`, `room`, `server`, `replica`, `reason`.
//! - `unplaced_by_department`: `department`, `replicas` (how many of its replicas are unplaced).
//! - `shortfall`: where the replicas ask for more than the nodes they may use have, so that no
//!   plan places them all: `zone`, `scope` (`all`, `amd64-only`, `arm64-only` or `GPU models
//!   A|B`), `resource`, `demand`, `capacity`, `short_by` (in the resource's CSV unit).
//! - `nodes_used`: `node`, `zone`, `arch`, `capacity`, `requested`, `ratio`, `replicas`,
//!   `departments` (`department`, `requested` on this node), and `price_per_month` when
//!   `nodes.csv` gives the node a price.
//! - `node_cost` (only when `nodes.csv` gives some node a price; absent otherwise, never
//!   invented): `monthly` (what the nodes used cost a month, `null` when one of them has no
//!   price), `lower_bound` (`null` when a zone with replicas has a node without a price), `name`,
//!   `statement` (which bound and why it is valid), `gap_percent` (`null` unless the plan is
//!   complete and both are known), `nodes_priced`, `nodes_available`, `zones` (`zone`,
//!   `least_cost`: every node of the zone priced, so it was planned for least cost rather than
//!   fewest nodes; `monthly`, `lower_bound`).
//! - `showback`: `prices` (`null`, or `resource`, `unit`, `price_per_month`), `unpriced`
//!   (resources requested but not priced), `departments` (`department`, `systems`, `replicas`,
//!   `requested`, `quota` or `null`, `over_quota`: resource names, `monthly_cost` or `null`),
//!   `rooms` (`room`, `departments`, `systems`, `replicas`, `requested`), `total`
//!   (`requested`, `monthly_cost` or `null`). `monthly_cost` is `{cpu, memory, disk, gpu,
//!   total}`, a resource `null` when not priced. "Requested" is the systems' needs times their
//!   replicas, placed or not.

#![allow(clippy::needless_range_loop)] // resources are fixed-size vectors: loops over the dimension read as the arithmetic does

mod html;
mod markdown;

pub use html::html;
pub use markdown::markdown;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::inventory::{Origin, Server};
use crate::showback::{self, Prices, Quota};
use crate::{Arch, DIMS, Node, Options, Plan, Res, System};

pub const SCHEMA: &str = "zhengyun.io/consolidation-plan/v1";

/// What the report is made from: the inventory, the planning options, and the optional inputs.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub nodes: &'a [Node],
    pub systems: &'a [System],
    pub origins: &'a [Origin],
    pub options: Options,
    /// The old servers' capacity (`servers.csv`), for utilisation before the move.
    pub servers: Option<&'a [Server]>,
    pub prices: Option<&'a Prices>,
    pub quotas: Option<&'a [Quota]>,
}

/// An amount of each resource in the units the CSV files use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantities {
    pub cpu_cores: f64,
    pub memory_gib: f64,
    pub disk_gib: f64,
    pub gpus: f64,
}

impl Quantities {
    fn of(r: &Res) -> Self {
        let h = showback::human(r);
        Quantities {
            cpu_cores: round(h[0], 3),
            memory_gib: round(h[1], 3),
            disk_gib: round(h[2], 3),
            gpus: round(h[3], 3),
        }
    }
    pub fn get(&self, d: usize) -> f64 {
        [self.cpu_cores, self.memory_gib, self.disk_gib, self.gpus][d]
    }
}

/// A fraction of capacity per resource; `None` where there is no capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub gpu: Option<f64>,
}

impl Ratios {
    fn of(requested: &Res, capacity: &Res) -> Self {
        let r = |d: usize| (capacity[d] > 0).then(|| round(requested[d] as f64 / capacity[d] as f64, 4));
        Ratios { cpu: r(0), memory: r(1), disk: r(2), gpu: r(3) }
    }
    pub fn get(&self, d: usize) -> Option<f64> {
        [self.cpu, self.memory, self.disk, self.gpu][d]
    }
}

/// A monthly cost per resource (`None`: not priced) and its total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub gpu: Option<f64>,
    pub total: f64,
}

impl Cost {
    fn of(prices: &Prices, requested: &Res) -> Self {
        let c = showback::cost(prices, requested);
        let r = |d: usize| c[d].map(|v| round(v, 2));
        Cost { cpu: r(0), memory: r(1), disk: r(2), gpu: r(3), total: round(c.iter().flatten().sum(), 2) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub systems: usize,
    pub replicas: usize,
    pub replicas_placed: usize,
    pub replicas_unplaced: usize,
    pub servers: usize,
    pub servers_retirable: usize,
    pub rooms: usize,
    pub rooms_retirable: usize,
    pub nodes_available: usize,
    pub nodes_used: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneBound {
    pub zone: String,
    pub nodes_available: usize,
    pub nodes_used: usize,
    pub lower_bound: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LowerBound {
    pub nodes: usize,
    pub name: &'static str,
    pub statement: String,
    pub plan_complete: bool,
    pub gap_percent: Option<f64>,
    pub zones: Vec<ZoneBound>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// Old servers (before) or shared nodes (after) counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    pub capacity: Quantities,
    pub requested: Quantities,
    pub ratio: Ratios,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Utilisation {
    pub before: Option<Usage>,
    pub after: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocker {
    pub system: String,
    pub replica: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerReport {
    pub server: String,
    pub retirable: bool,
    pub systems: usize,
    pub capacity: Option<Quantities>,
    pub requested: Quantities,
    pub blocked_by: Vec<Blocker>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomReport {
    pub room: String,
    pub departments: Vec<String>,
    pub servers: usize,
    pub servers_retirable: usize,
    pub retirable: bool,
    pub servers_detail: Vec<ServerReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaPlace {
    pub replica: u32,
    pub node: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemReport {
    pub system: String,
    pub department: String,
    pub room: String,
    pub server: String,
    pub zone: String,
    pub arch: &'static str,
    pub need: Quantities,
    pub replicas: Vec<ReplicaPlace>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnplacedReport {
    pub system: String,
    pub department: String,
    pub room: String,
    pub server: String,
    pub replica: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnplacedCount {
    pub department: String,
    pub replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShortfallReport {
    pub zone: String,
    pub scope: String,
    pub resource: &'static str,
    pub demand: f64,
    pub capacity: f64,
    pub short_by: f64,
}

impl ShortfallReport {
    /// The table's cells, as both renderings show them: zone, replicas, resource, asked, had,
    /// short by.
    pub fn cells(&self) -> [String; 6] {
        [
            self.zone.clone(),
            self.scope.clone(),
            self.resource.to_string(),
            self.demand.to_string(),
            self.capacity.to_string(),
            self.short_by.to_string(),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepartmentOnNode {
    pub department: String,
    pub requested: Quantities,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub zone: String,
    pub arch: &'static str,
    pub capacity: Quantities,
    pub requested: Quantities,
    pub ratio: Ratios,
    pub replicas: usize,
    pub departments: Vec<DepartmentOnNode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_month: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneCost {
    pub zone: String,
    pub least_cost: bool,
    pub monthly: Option<f64>,
    pub lower_bound: Option<f64>,
}

/// What the nodes used cost, from the prices in `nodes.csv`, and the bound on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCost {
    pub monthly: Option<f64>,
    pub lower_bound: Option<f64>,
    pub name: &'static str,
    pub statement: String,
    pub gap_percent: Option<f64>,
    pub nodes_priced: usize,
    pub nodes_available: usize,
    pub zones: Vec<ZoneCost>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub resource: &'static str,
    pub unit: &'static str,
    pub price_per_month: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepartmentShowback {
    pub department: String,
    pub systems: usize,
    pub replicas: usize,
    pub requested: Quantities,
    pub quota: Option<Quantities>,
    pub over_quota: Vec<&'static str>,
    pub monthly_cost: Option<Cost>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomShowback {
    pub room: String,
    pub departments: Vec<String>,
    pub systems: usize,
    pub replicas: usize,
    pub requested: Quantities,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShowbackTotal {
    pub requested: Quantities,
    pub monthly_cost: Option<Cost>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Showback {
    pub prices: Option<Vec<Price>>,
    pub unpriced: Vec<&'static str>,
    pub departments: Vec<DepartmentShowback>,
    pub rooms: Vec<RoomShowback>,
    pub total: ShowbackTotal,
}

/// The whole report; its JSON form is the schema in the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub headroom: f64,
    pub summary: Summary,
    pub lower_bound: LowerBound,
    pub utilisation: Utilisation,
    pub rooms: Vec<RoomReport>,
    pub systems: Vec<SystemReport>,
    pub unplaced: Vec<UnplacedReport>,
    pub unplaced_by_department: Vec<UnplacedCount>,
    pub shortfall: Vec<ShortfallReport>,
    pub nodes_used: Vec<NodeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_cost: Option<NodeCost>,
    pub showback: Showback,
}

/// Which bound [`crate::lower_bound`] computes, and why no valid plan can go below it.
pub const BOUND_NAME: &str =
    "weighted capacity cover per architecture, with replicas that cannot share a node, per zone";

fn bound_statement(nodes: usize) -> String {
    format!(
        "No plan placing every replica that fits some node can use fewer than {nodes} nodes. In each zone, a plan's amd64 \
         nodes must hold the amd64-only replicas, its arm64 nodes the arm64-only ones, and both together all of them; so \
         for every weighting of the resources tried (each resource alone, and pairs weighted where two node shapes weigh \
         the same), the heaviest a amd64 and r arm64 nodes after headroom must cover those demands (no k nodes weigh more \
         than the k heaviest), and a, r and a + r are at least the number of replicas that cannot share a node (one \
         system's replicas; replicas each needing over half of a resource of the largest node they may use). The bound \
         is the least a + r passing every test; zones share no nodes, so the zones' bounds add up. It ignores how \
         replicas fragment a node, so the fewest possible may be higher (planner/src/pack.rs, lower_bound)."
    )
}

/// Which bound [`crate::cost_lower_bound`] computes.
pub const COST_BOUND_NAME: &str = "cheapest nodes for the node bound, capacity at the best price per unit, and resource \
     prices (the linear relaxation's dual), per zone";

fn cost_statement(bound: Option<f64>, unpriced: &[&str]) -> String {
    match bound {
        Some(b) => format!(
            "No plan placing every replica that fits some node can cost less than {} a month. In each zone it is the \
             largest of three bounds, each true of every such plan: the cheapest nodes of each architecture in the numbers \
             the node bound allows; for each weighting of the resources, the demand's weight bought at the lowest price \
             per unit of weight, a fraction of a node allowed (amd64-only demand on amd64 nodes, arm64-only on arm64, the \
             rest on either); and, for a price put on each resource, the demand at those prices less what every node is \
             worth beyond its own price (the nodes a plan uses are worth at least the demand they hold, and cost at least \
             their worth less that excess). It ignores how replicas fragment a node, so the least possible may be higher \
             (planner/src/pack.rs, cost_lower_bound).",
            markdown::money(b)
        ),
        None => format!(
            "No bound on cost: zone {} has replicas and a node without a price, which may cost anything. A zone is \
             planned for least cost only when every node of it has a price.",
            unpriced.join(", ")
        ),
    }
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

fn add(a: &mut Res, b: &Res, times: u64) {
    for d in 0..DIMS {
        a[d] = a[d].saturating_add(b[d].saturating_mul(times));
    }
}

fn arch_name(a: Option<Arch>) -> &'static str {
    match a {
        Some(Arch::Amd64) => "amd64",
        Some(Arch::Arm64) => "arm64",
        None => "any",
    }
}

impl Report {
    /// Builds the report of `plan` (a plan of `input`'s nodes and systems under its options).
    pub fn new(input: &Input, plan: &Plan) -> Report {
        let Input { nodes, systems, origins, options, .. } = *input;
        let replicas: usize = systems.iter().map(|s| s.replicas as usize).sum();

        // Per system and replica: the node, or why not.
        let mut node_of: BTreeMap<(usize, u32), usize> = BTreeMap::new();
        for p in &plan.placements {
            node_of.insert((p.system, p.replica), p.node);
        }
        let mut why_not: BTreeMap<(usize, u32), &str> = BTreeMap::new();
        for u in &plan.unplaced {
            why_not.insert((u.system, u.replica), &u.reason);
        }

        // Servers and rooms: every (room, server) named by a system or by servers.csv.
        let capacity_of: BTreeMap<(&str, &str), &Res> = input
            .servers
            .unwrap_or_default()
            .iter()
            .map(|s| ((s.room.as_str(), s.server.as_str()), &s.capacity))
            .collect();
        let mut on_server: BTreeMap<(&str, &str), Vec<usize>> = capacity_of.keys().map(|k| (*k, Vec::new())).collect();
        for (s, o) in origins.iter().enumerate() {
            on_server.entry((o.room.as_str(), o.server.as_str())).or_default().push(s);
        }
        let mut rooms: BTreeMap<&str, RoomReport> = BTreeMap::new();
        for ((room, server), sys) in &on_server {
            let mut requested = [0; DIMS];
            let mut blocked_by = Vec::new();
            for &s in sys {
                add(&mut requested, &systems[s].need, u64::from(systems[s].replicas));
                for r in 0..systems[s].replicas {
                    if let Some(reason) = why_not.get(&(s, r)) {
                        blocked_by.push(Blocker {
                            system: systems[s].name.clone(),
                            replica: r,
                            reason: reason.to_string(),
                        });
                    }
                }
            }
            let e = rooms.entry(room).or_insert_with(|| RoomReport {
                room: room.to_string(),
                departments: Vec::new(),
                servers: 0,
                servers_retirable: 0,
                retirable: true,
                servers_detail: Vec::new(),
            });
            for &s in sys {
                if !e.departments.contains(&systems[s].department) {
                    e.departments.push(systems[s].department.clone());
                }
            }
            let retirable = blocked_by.is_empty();
            e.servers += 1;
            e.servers_retirable += usize::from(retirable);
            e.retirable &= retirable;
            e.servers_detail.push(ServerReport {
                server: server.to_string(),
                retirable,
                systems: sys.len(),
                capacity: capacity_of.get(&(*room, *server)).map(|c| Quantities::of(c)),
                requested: Quantities::of(&requested),
                blocked_by,
            });
        }
        let mut rooms: Vec<RoomReport> = rooms.into_values().collect();
        for r in &mut rooms {
            r.departments.sort();
        }

        // Where each replica goes.
        let mut system_reports: Vec<SystemReport> = systems
            .iter()
            .enumerate()
            .map(|(s, sys)| SystemReport {
                system: sys.name.clone(),
                department: sys.department.clone(),
                room: origins[s].room.clone(),
                server: origins[s].server.clone(),
                zone: sys.zone.clone(),
                arch: arch_name(sys.arch),
                need: Quantities::of(&sys.need),
                replicas: (0..sys.replicas)
                    .map(|r| ReplicaPlace {
                        replica: r,
                        node: node_of.get(&(s, r)).map(|&n| nodes[n].name.clone()),
                        reason: why_not.get(&(s, r)).map(|w| w.to_string()),
                    })
                    .collect(),
            })
            .collect();
        system_reports.sort_by(|a, b| (&a.system, &a.room, &a.server).cmp(&(&b.system, &b.room, &b.server)));
        let mut unplaced: Vec<UnplacedReport> = plan
            .unplaced
            .iter()
            .map(|u| UnplacedReport {
                system: systems[u.system].name.clone(),
                department: systems[u.system].department.clone(),
                room: origins[u.system].room.clone(),
                server: origins[u.system].server.clone(),
                replica: u.replica,
                reason: u.reason.clone(),
            })
            .collect();
        unplaced.sort_by(|a, b| {
            (&a.system, &a.room, &a.server, a.replica).cmp(&(&b.system, &b.room, &b.server, b.replica))
        });

        // The nodes used, in nodes.csv order, with each department's share.
        let mut per_node: BTreeMap<usize, (Res, usize, BTreeMap<&str, Res>)> = BTreeMap::new();
        for p in &plan.placements {
            let sys = &systems[p.system];
            let e = per_node.entry(p.node).or_default();
            add(&mut e.0, &sys.need, 1);
            e.1 += 1;
            add(e.2.entry(sys.department.as_str()).or_default(), &sys.need, 1);
        }
        let mut after_req = [0; DIMS];
        let mut after_cap = [0; DIMS];
        let nodes_used: Vec<NodeReport> = per_node
            .iter()
            .map(|(&n, (req, count, depts))| {
                add(&mut after_req, req, 1);
                add(&mut after_cap, &nodes[n].capacity, 1);
                NodeReport {
                    node: nodes[n].name.clone(),
                    zone: nodes[n].zone.clone(),
                    arch: arch_name(Some(nodes[n].arch)),
                    capacity: Quantities::of(&nodes[n].capacity),
                    requested: Quantities::of(req),
                    ratio: Ratios::of(req, &nodes[n].capacity),
                    replicas: *count,
                    departments: depts
                        .iter()
                        .map(|(d, r)| DepartmentOnNode { department: d.to_string(), requested: Quantities::of(r) })
                        .collect(),
                    price_per_month: nodes[n].price,
                }
            })
            .collect();

        let mut all_req = [0; DIMS];
        for s in systems {
            add(&mut all_req, &s.need, u64::from(s.replicas));
        }
        let before = input.servers.map(|servers| {
            let mut cap = [0; DIMS];
            for s in servers {
                add(&mut cap, &s.capacity, 1);
            }
            Usage {
                servers: Some(on_server.len()),
                nodes: None,
                capacity: Quantities::of(&cap),
                requested: Quantities::of(&all_req),
                ratio: Ratios::of(&all_req, &cap),
            }
        });
        let after = Usage {
            servers: None,
            nodes: Some(plan.nodes_used),
            capacity: Quantities::of(&after_cap),
            requested: Quantities::of(&after_req),
            ratio: Ratios::of(&after_req, &after_cap),
        };

        // The bound, overall and per zone (zones share no nodes).
        let bound = crate::lower_bound(nodes, systems, &options);
        let zone_names: BTreeSet<&str> =
            nodes.iter().map(|n| n.zone.as_str()).chain(systems.iter().map(|s| s.zone.as_str())).collect();
        let priced = nodes.iter().any(|n| n.price.is_some());
        let mut zone_costs = Vec::new();
        let zones = zone_names
            .into_iter()
            .map(|z| {
                let zn: Vec<Node> = nodes.iter().filter(|n| n.zone == z).cloned().collect();
                let zs: Vec<System> = systems.iter().filter(|s| s.zone == z).cloned().collect();
                if priced {
                    let used: Vec<usize> = per_node.keys().copied().filter(|&n| nodes[n].zone == z).collect();
                    zone_costs.push(ZoneCost {
                        zone: z.to_string(),
                        least_cost: !zn.is_empty() && zn.iter().all(|n| n.price.is_some()),
                        monthly: used.iter().map(|&n| nodes[n].price).sum::<Option<f64>>().map(|c| round(c, 2)),
                        lower_bound: crate::cost_lower_bound(&zn, &zs, &options).map(|b| round(b, 2)),
                    });
                }
                ZoneBound {
                    zone: z.to_string(),
                    nodes_available: zn.len(),
                    nodes_used: per_node.keys().filter(|&&n| nodes[n].zone == z).count(),
                    lower_bound: crate::lower_bound(&zn, &zs, &options),
                }
            })
            .collect();
        let complete = plan.unplaced.is_empty();
        let lower_bound = LowerBound {
            nodes: bound,
            name: BOUND_NAME,
            statement: bound_statement(bound),
            plan_complete: complete,
            gap_percent: (complete && bound > 0)
                .then(|| round((plan.nodes_used as f64 / bound as f64 - 1.0) * 100.0, 1)),
            zones,
        };

        let node_cost = priced.then(|| {
            let bound = crate::cost_lower_bound(nodes, systems, &options);
            let unpriced: Vec<&str> =
                zone_costs.iter().filter(|z| z.lower_bound.is_none()).map(|z| z.zone.as_str()).collect();
            let monthly = plan.cost.map(|c| round(c, 2));
            NodeCost {
                monthly,
                lower_bound: bound.map(|b| round(b, 2)),
                name: COST_BOUND_NAME,
                statement: cost_statement(bound, &unpriced),
                gap_percent: match (complete, monthly, bound) {
                    (true, Some(c), Some(b)) if b > 0.0 => Some(round((c / b - 1.0) * 100.0, 1)),
                    _ => None,
                },
                nodes_priced: nodes.iter().filter(|n| n.price.is_some()).count(),
                nodes_available: nodes.len(),
                zones: zone_costs,
            }
        });

        let summary = Summary {
            systems: systems.len(),
            replicas,
            replicas_placed: plan.placements.len(),
            replicas_unplaced: plan.unplaced.len(),
            servers: on_server.len(),
            servers_retirable: rooms.iter().map(|r| r.servers_retirable).sum(),
            rooms: rooms.len(),
            rooms_retirable: rooms.iter().filter(|r| r.retirable).count(),
            nodes_available: nodes.len(),
            nodes_used: plan.nodes_used,
        };

        Report {
            schema: SCHEMA,
            headroom: options.headroom,
            summary,
            lower_bound,
            utilisation: Utilisation { before, after },
            rooms,
            systems: system_reports,
            unplaced_by_department: {
                let mut by: BTreeMap<&str, usize> = BTreeMap::new();
                for u in &unplaced {
                    *by.entry(u.department.as_str()).or_default() += 1;
                }
                by.into_iter().map(|(d, n)| UnplacedCount { department: d.to_string(), replicas: n }).collect()
            },
            shortfall: crate::pack::shortfall(nodes, systems, &options)
                .into_iter()
                .map(|s| {
                    let d = crate::DIM_NAMES.iter().position(|n| *n == s.resource).unwrap_or(0);
                    let unit = |x: u64| {
                        let mut r = [0; DIMS];
                        r[d] = x;
                        Quantities::of(&r).get(d)
                    };
                    ShortfallReport {
                        zone: s.zone,
                        scope: s.scope,
                        resource: s.resource,
                        demand: unit(s.demand),
                        capacity: unit(s.capacity),
                        short_by: unit(s.demand - s.capacity),
                    }
                })
                .collect(),
            unplaced,
            nodes_used,
            node_cost,
            showback: showback_of(input, &all_req),
        }
    }

    /// The report as pretty-printed JSON (schema `zhengyun.io/consolidation-plan/v1`).
    pub fn to_json(&self) -> String {
        // Only strings, numbers, options and vectors: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

fn showback_of(input: &Input, all_req: &Res) -> Showback {
    let systems = input.systems;
    let mut depts: BTreeMap<&str, (usize, usize, Res)> = BTreeMap::new();
    let mut rooms: BTreeMap<&str, (BTreeSet<&str>, usize, usize, Res)> = BTreeMap::new();
    for (s, sys) in systems.iter().enumerate() {
        let d = depts.entry(sys.department.as_str()).or_default();
        d.0 += 1;
        d.1 += sys.replicas as usize;
        add(&mut d.2, &sys.need, u64::from(sys.replicas));
        let r = rooms.entry(input.origins[s].room.as_str()).or_default();
        r.0.insert(sys.department.as_str());
        r.1 += 1;
        r.2 += sys.replicas as usize;
        add(&mut r.3, &sys.need, u64::from(sys.replicas));
    }
    let quota_of: BTreeMap<&str, &Res> =
        input.quotas.unwrap_or_default().iter().map(|q| (q.department.as_str(), &q.limit)).collect();
    for d in quota_of.keys() {
        depts.entry(d).or_default();
    }
    let prices = input.prices;
    Showback {
        prices: prices.map(|p| {
            (0..DIMS)
                .filter_map(|d| {
                    p.0[d].map(|v| Price {
                        resource: crate::DIM_NAMES[d],
                        unit: showback::PRICE_UNITS[d].0,
                        price_per_month: v,
                    })
                })
                .collect()
        }),
        unpriced: match prices {
            Some(p) => (0..DIMS).filter(|&d| p.0[d].is_none() && all_req[d] > 0).map(|d| crate::DIM_NAMES[d]).collect(),
            None => Vec::new(),
        },
        departments: depts
            .into_iter()
            .map(|(d, (n, r, req))| DepartmentShowback {
                department: d.to_string(),
                systems: n,
                replicas: r,
                requested: Quantities::of(&req),
                quota: quota_of.get(d).map(|q| Quantities::of(q)),
                over_quota: quota_of.get(d).map(|q| showback::over(&req, q)).unwrap_or_default(),
                monthly_cost: prices.map(|p| Cost::of(p, &req)),
            })
            .collect(),
        rooms: rooms
            .into_iter()
            .map(|(room, (d, n, r, req))| RoomShowback {
                room: room.to_string(),
                departments: d.into_iter().map(str::to_string).collect(),
                systems: n,
                replicas: r,
                requested: Quantities::of(&req),
            })
            .collect(),
        total: ShowbackTotal { requested: Quantities::of(all_req), monthly_cost: prices.map(|p| Cost::of(p, all_req)) },
    }
}

#[cfg(test)]
mod tests;
