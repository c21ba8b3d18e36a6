//! The planner on one room: its inventory packed onto the free capacity of the shared nodes of
//! its systems' zones, for the room's status (what `kubectl get computerrooms` shows).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use zhengyun_planner as planner;

use crate::{
    api::{Arch, ComputerRoomSpec, RoomPlan, Zone},
    quantity::Milli,
};

/// The headroom the room's plan keeps on every node (30% free), as the planner's CLI does.
pub const HEADROOM: f64 = 0.7;

fn arch(a: Arch) -> planner::Arch {
    match a {
        Arch::Amd64 => planner::Arch::Amd64,
        Arch::Arm64 => planner::Arch::Arm64,
    }
}

/// A node's free capacity in the planner's units (millicores, MiB, GiB, thousandths of a GPU):
/// allocatable less what its pods request.
pub fn free(allocatable: &BTreeMap<String, Milli>, requested: &BTreeMap<String, Milli>) -> planner::Res {
    let left = |k: &str| (allocatable.get(k).copied().unwrap_or(0) - requested.get(k).copied().unwrap_or(0)).max(0);
    let gpus: Milli = allocatable.keys().filter(|k| k.ends_with("/gpu")).map(|k| left(k)).sum();
    // Quantities are in thousandths of their unit (bytes for memory and disk).
    let mib = 1024 * 1024 * 1000;
    let gib = 1024 * mib;
    [left("cpu") as u64, (left("memory") / mib) as u64, (left("ephemeral-storage") / gib) as u64, gpus as u64]
}

/// The shared nodes of `zones` as the planner sees them: zone, architecture, free capacity.
pub fn shared_nodes(
    nodes: &[&Node],
    zones: &[&Zone],
    requested: impl Fn(&str) -> BTreeMap<String, Milli>,
) -> Vec<planner::Node> {
    let mut out = Vec::new();
    for n in nodes {
        let Some(zone) = zones.iter().find(|z| crate::zones::selects(&z.spec.node_selector, n.labels())) else {
            continue;
        };
        let a = match super::build::arch_of(n) {
            Some("arm64") => planner::Arch::Arm64,
            Some("amd64") => planner::Arch::Amd64,
            _ => continue,
        };
        let alloc = super::build::allocatable(&[*n]);
        out.push(planner::Node {
            name: n.name_any(),
            capacity: free(&alloc, &requested(&n.name_any())),
            arch: a,
            zone: zone.name_any(),
            price: None,
            gpu_model: None,
        });
    }
    out
}

/// The room's systems as the planner's, with the server each runs on.
pub fn systems(spec: &ComputerRoomSpec) -> (Vec<planner::System>, Vec<usize>) {
    let mut systems = Vec::new();
    let mut server_of = Vec::new();
    for (i, server) in spec.inventory.iter().enumerate() {
        for s in &server.systems {
            let gib = |g: f64| (g * 1024.0).ceil() as u64;
            systems.push(planner::System {
                name: format!("{}/{}", server.name, s.name),
                department: s.department.clone().unwrap_or_else(|| spec.department.clone()),
                need: [
                    (s.cpu_cores * 1000.0).ceil() as u64,
                    gib(s.memory_gib),
                    s.disk_gib.ceil() as u64,
                    u64::from(s.gpus) * 1000,
                ],
                replicas: s.replicas,
                zone: s.zone.clone().unwrap_or_else(|| spec.zone.clone()),
                arch: s.arch.map(arch),
                gpu_models: Vec::new(),
            });
            server_of.push(i);
        }
    }
    (systems, server_of)
}

/// Everything the rooms hold, as the planner's report reads it: their systems with where each
/// comes from, and their servers' capacity. Rooms whose inventory is empty add nothing.
pub fn inventories(
    rooms: &[&crate::api::ComputerRoom],
) -> (Vec<planner::System>, Vec<planner::inventory::Origin>, Vec<planner::inventory::Server>) {
    let (mut systems, mut origins, mut servers) = (Vec::new(), Vec::new(), Vec::new());
    for room in rooms {
        let name = room.name_any();
        let (s, server_of) = self::systems(&room.spec);
        for (sys, i) in s.into_iter().zip(server_of) {
            origins
                .push(planner::inventory::Origin { room: name.clone(), server: room.spec.inventory[i].name.clone() });
            systems.push(sys);
        }
        for server in &room.spec.inventory {
            servers.push(planner::inventory::Server {
                room: name.clone(),
                server: server.name.clone(),
                capacity: [
                    u64::from(server.cores) * 1000,
                    u64::from(server.memory_gib) * 1024,
                    server.disk_gib,
                    u64::from(server.gpus) * 1000,
                ],
            });
        }
    }
    (systems, origins, servers)
}

/// Each department's quota, summed over its tenants (cpu and memory, what tenants state), in
/// the planner's units.
pub fn department_quotas(tenants: &[&crate::api::Tenant]) -> Vec<planner::showback::Quota> {
    let mut by: BTreeMap<String, planner::Res> = BTreeMap::new();
    for t in tenants {
        let e = by.entry(t.spec.department.code.clone()).or_default();
        let milli = |a: &Option<crate::api::Amount>| a.as_ref().and_then(|a| a.milli().ok()).unwrap_or(0).max(0);
        e[0] += milli(&t.spec.quota.cpu) as u64;
        e[1] += (milli(&t.spec.quota.memory) / (1024 * 1024 * 1000)) as u64;
        e[2] += (milli(&t.spec.quota.storage) / (1024 * 1024 * 1024 * 1000)) as u64;
    }
    by.into_iter().map(|(department, limit)| planner::showback::Quota { department, limit }).collect()
}

/// The plan's summary for the room's status.
pub fn summary(spec: &ComputerRoomSpec, nodes: &[planner::Node]) -> Option<RoomPlan> {
    if spec.inventory.is_empty() {
        return None;
    }
    let (systems, server_of) = systems(spec);
    let p = planner::plan(nodes, &systems, &planner::Options { headroom: HEADROOM });
    let mut blocked = vec![false; spec.inventory.len()];
    for u in &p.unplaced {
        if let Some(&server) = server_of.get(u.system) {
            blocked[server] = true;
        }
    }
    Some(RoomPlan {
        placeable_replicas: p.placements.len() as i32,
        unplaced_replicas: p.unplaced.len() as i32,
        unplaced_reason: p.unplaced.first().map(|u| {
            let name = systems.get(u.system).map(|s| s.name.as_str()).unwrap_or("?");
            format!("{name}: {}", u.reason)
        }),
        retirable_servers: blocked.iter().filter(|b| !**b).count() as i32,
        nodes_used: p.nodes_used as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RoomNodes, RoomServer, RoomSystem};

    fn system(name: &str, cpu: f64, mem: f64) -> RoomSystem {
        RoomSystem {
            name: name.into(),
            department: None,
            cpu_cores: cpu,
            memory_gib: mem,
            disk_gib: 10.0,
            gpus: 0,
            replicas: 1,
            zone: None,
            arch: None,
        }
    }

    #[test]
    fn a_server_whose_systems_all_fit_is_retirable_and_one_that_does_not_fit_says_why() {
        let spec = ComputerRoomSpec {
            department: "edu".into(),
            location: String::new(),
            zone: "intranet".into(),
            arch: None,
            nodes: RoomNodes::default(),
            inventory: vec![
                RoomServer {
                    name: "s1".into(),
                    cores: 8,
                    memory_gib: 32,
                    disk_gib: 100,
                    gpus: 0,
                    arch: Arch::Amd64,
                    peak_utilisation_percent: None,
                    systems: vec![system("web", 2.0, 4.0)],
                },
                RoomServer {
                    name: "s2".into(),
                    cores: 64,
                    memory_gib: 256,
                    disk_gib: 100,
                    gpus: 0,
                    arch: Arch::Amd64,
                    peak_utilisation_percent: None,
                    systems: vec![system("big", 60.0, 8.0)],
                },
            ],
        };
        // One shared node with 16 cores and 64 GiB free (before headroom).
        let mib = 1024 * 1024 * 1000;
        let alloc = BTreeMap::from([
            ("cpu".to_string(), 16_000),
            ("memory".to_string(), 64 * 1024 * mib),
            ("ephemeral-storage".to_string(), 500 * 1024 * mib),
        ]);
        let nodes = vec![planner::Node {
            name: "n1".into(),
            capacity: free(&alloc, &BTreeMap::new()),
            arch: planner::Arch::Amd64,
            zone: "intranet".into(),
            price: None,
            gpu_model: None,
        }];
        assert_eq!(nodes[0].capacity, [16_000, 65_536, 500, 0]);
        let s = summary(&spec, &nodes).expect("a plan");
        assert_eq!((s.placeable_replicas, s.unplaced_replicas, s.retirable_servers, s.nodes_used), (1, 1, 1, 1));
        assert!(s.unplaced_reason.as_deref().is_some_and(|r| r.starts_with("s2/big")), "{s:?}");
    }
}
