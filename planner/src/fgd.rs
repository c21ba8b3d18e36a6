//! Fragmentation gradient descent (FGD; Weng et al., "Beware of Fragmentation: Scheduling
//! GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC '23): the GPU packing
//! policy the openb trace was published with, as the anchor the planner is measured against on
//! GPU-heavy lists. Our own implementation of the policy as its authors' simulator defines it
//! (hkust-adsl/kubernetes-scheduler-simulator, pkg/utils/frag.go and
//! pkg/simulator/plugin/fgd_score.go):
//!
//! - **The target workload**: the zone's replicas grouped into task types by (cpu, GPU share per
//!   device, devices, GPU models); the commonest types until they cover 95% of the replicas,
//!   each with its share of those (p_m).
//! - **A node's fragmentation for one type m**, in GPU thousandths: when m cannot run there
//!   (too little cpu left, no device with room, a GPU model it does not take) or m needs no
//!   GPU, every free thousandth of the node's devices; else the free thousandths of the devices
//!   that cannot hold m's share (for whole devices, of every device partly used). Memory does
//!   not enter it, as in the simulator.
//! - **A node's fragmentation** F_n = Σ p_m · F_n(m); each replica goes, among the nodes that
//!   hold it (cpu, memory, disk, devices, architecture, GPU model, replicas apart), where F_n
//!   grows least (for a share, on the device where it grows least).
//!
//! Where this differs from the simulator, and why: the simulator replays an online arrival of
//! shuffled tasks until the cluster is full; here the given replicas are placed once, in input
//! order, and the nodes used are counted. The simulator ranks by a sigmoid of the growth
//! truncated to an integer score and breaks ties by a random node order; here the growth itself
//! is compared, and ties go to a node already in use, then to the first in input order (else
//! FGD would open a new node on every tie, which says nothing about packing).

#![allow(clippy::needless_range_loop)] // resources are fixed-size vectors

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pack::{
    Bin, Item, allowed, capacity, cost_of, has_system, largest_capacities, placeable, record, unplaced_reason, zones,
};
use crate::{DEVICE, GpuNeed, Node, Options, Plan, Res, System, Unplaced};

/// The share of the replicas the target workload's types cover.
const COVER: f64 = 0.95;

/// One task type of the target workload, with its share p_m.
struct Type {
    cpu: u64,
    gpu: GpuNeed,
    models: Option<Arc<[String]>>,
    p: f64,
}

/// A task type's key: cpu, GPU need, GPU models.
type Key = (u64, GpuNeed, Option<Arc<[String]>>);

fn target(items: &[Item]) -> Vec<Type> {
    let mut count: BTreeMap<Key, usize> = BTreeMap::new();
    for it in items {
        *count.entry((it.need[0], it.gpu, it.models.clone())).or_default() += 1;
    }
    let mut types: Vec<(Key, usize)> = count.into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut kept = Vec::new();
    let mut covered = 0;
    for (k, n) in types {
        if covered as f64 >= COVER * items.len() as f64 {
            break;
        }
        covered += n;
        kept.push((k, n));
    }
    kept.into_iter()
        .map(|((cpu, gpu, models), n)| Type { cpu, gpu, models, p: n as f64 / covered.max(1) as f64 })
        .collect()
}

/// F_n(M): the node's expected GPU fragmentation, from its free cpu and devices.
fn fragmentation(types: &[Type], cpu_left: u64, devices: &[u64], node: &Node) -> f64 {
    let idle: u64 = devices.iter().sum();
    if idle == 0 {
        return 0.0;
    }
    types
        .iter()
        .map(|m| {
            let model_ok = crate::pack::model_ok(&m.models, &node.gpu_model);
            let frag = match m.gpu {
                GpuNeed::None => idle,
                _ if !model_ok || cpu_left < m.cpu => idle,
                GpuNeed::Share(s) => {
                    if devices.iter().any(|&f| f >= s) {
                        devices.iter().filter(|&&f| f < s).sum()
                    } else {
                        idle
                    }
                }
                GpuNeed::Whole(k) => {
                    if devices.iter().filter(|&&f| f == DEVICE).count() as u64 >= k {
                        devices.iter().filter(|&&f| f < DEVICE).sum()
                    } else {
                        idle
                    }
                }
            };
            m.p * frag as f64
        })
        .sum()
}

/// Where a replica would go on one bin and how much F_n grows: for a share, the device where it
/// grows least (lowest index on ties); else the devices [`Bin::put`] takes.
fn growth(types: &[Type], bin: &Bin, it: &Item, node: &Node) -> Option<(f64, Option<usize>)> {
    let before = fragmentation(types, bin.free[0], &bin.devices, node);
    let cpu_after = bin.free[0] - it.need[0];
    match it.gpu {
        GpuNeed::Share(s) => {
            let mut best: Option<(f64, usize)> = None;
            let mut tried: Vec<u64> = Vec::new();
            for i in 0..bin.devices.len() {
                let f = bin.devices[i];
                if f < s || tried.contains(&f) {
                    continue; // devices with the same room left give the same growth
                }
                tried.push(f);
                let mut after = bin.devices.clone();
                after[i] -= s;
                let g = fragmentation(types, cpu_after, &after, node) - before;
                if best.is_none_or(|(b, _)| g < b) {
                    best = Some((g, i));
                }
            }
            best.map(|(g, i)| (g, Some(i)))
        }
        gpu => {
            let mask = bin.devices_for(gpu)?;
            let mut after = bin.devices.clone();
            for (i, f) in after.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *f = 0;
                }
            }
            Some((fragmentation(types, cpu_after, &after, node) - before, None))
        }
    }
}

/// The plan FGD makes: see the module's documentation.
pub fn fgd(nodes: &[Node], systems: &[System], o: &Options) -> Plan {
    let mut plan = Plan::default();
    for (zone, (node_ix, items)) in zones(nodes, systems) {
        let types = target(&items);
        let fronts = largest_capacities(nodes, &node_ix, o);
        let mut bins: Vec<Bin> = Vec::new();
        // Unused nodes by shape (capacity, architecture, GPU model), each in input order: empty
        // nodes of one shape grow alike, so one of each is tried.
        type Shape = (Res, crate::Arch, Option<String>);
        let mut unused: BTreeMap<Shape, std::collections::VecDeque<usize>> = BTreeMap::new();
        for &n in &node_ix {
            unused.entry((capacity(&nodes[n], o), nodes[n].arch, nodes[n].gpu_model.clone())).or_default().push_back(n);
        }
        for (ix, it) in items.iter().enumerate() {
            if !placeable(&fronts, nodes, &node_ix, o, it) {
                let reason = unplaced_reason(zone, nodes, &node_ix, o, it);
                plan.unplaced.push(Unplaced { system: it.system, replica: it.replica, reason });
                continue;
            }
            // (growth, opens a node, node, bin or unused shape, device)
            type Choice = (f64, bool, usize, Result<usize, Shape>, Option<usize>);
            let mut best: Option<Choice> = None;
            let mut consider = |g: f64, new: bool, node: usize, at: Result<usize, Shape>, dev: Option<usize>| {
                let better = match &best {
                    None => true,
                    Some((bg, bnew, bnode, _, _)) => (g, new, node) < (*bg, *bnew, *bnode),
                };
                if better {
                    best = Some((g, new, node, at, dev));
                }
            };
            for (b, bin) in bins.iter().enumerate() {
                let node = &nodes[bin.node];
                if allowed(it, node)
                    && bin.holds(it)
                    && !has_system(bin, &items, it.system)
                    && let Some((g, dev)) = growth(&types, bin, it, node)
                {
                    consider(g, false, bin.node, Ok(b), dev);
                }
            }
            for (shape, queue) in &unused {
                let Some(&n) = queue.front() else { continue };
                let empty = Bin::new(n, shape.0);
                if allowed(it, &nodes[n])
                    && empty.holds(it)
                    && let Some((g, dev)) = growth(&types, &empty, it, &nodes[n])
                {
                    consider(g, true, n, Err(shape.clone()), dev);
                }
            }
            let Some((_, _, _, at, dev)) = best else {
                let reason = unplaced_reason(zone, nodes, &node_ix, o, it);
                plan.unplaced.push(Unplaced { system: it.system, replica: it.replica, reason });
                continue;
            };
            let b = match at {
                Ok(b) => b,
                Err(shape) => {
                    let Some(n) = unused.get_mut(&shape).and_then(|q| q.pop_front()) else { continue };
                    bins.push(Bin::new(n, shape.0));
                    bins.len() - 1
                }
            };
            match dev {
                Some(d) => bins[b].put_on(ix, it, d),
                None => bins[b].put(ix, it),
            }
        }
        record(&bins, &items, &mut plan);
    }
    plan.cost = cost_of(nodes, &plan);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Arch;

    fn gpu_node(name: &str, devices: u64) -> Node {
        Node {
            name: name.into(),
            capacity: [64_000, 262_144, 0, devices * DEVICE],
            arch: Arch::Amd64,
            zone: "z".into(),
            price: None,
            gpu_model: Some("T4".into()),
        }
    }

    fn task(name: &str, gpu: u64) -> System {
        System {
            name: name.into(),
            department: "d".into(),
            need: [1000, 1024, 0, gpu],
            replicas: 1,
            zone: "z".into(),
            arch: None,
            gpu_models: Vec::new(),
        }
    }

    #[test]
    fn shares_fill_a_partly_used_device_before_a_free_one_and_plans_check() {
        // Half-device tasks mostly, and whole-device ones: two halves share one device, so the
        // whole-device tasks keep the free ones.
        let nodes = vec![gpu_node("a", 2), gpu_node("b", 2)];
        let systems = vec![task("h1", 500), task("h2", 500), task("w1", 1000), task("h3", 500), task("h4", 500)];
        let o = Options::default();
        let p = fgd(&nodes, &systems, &o);
        assert!(crate::pack::check(&nodes, &systems, &o, &p).is_ok(), "{p:?}");
        assert!(p.unplaced.is_empty(), "{p:?}");
        let devices_of = |s: usize| p.placements.iter().find(|x| x.system == s).map(|x| (x.node, x.gpus.clone()));
        assert_eq!(devices_of(0), devices_of(1), "the two halves share a device: {p:?}");
        assert_eq!(p.nodes_used, 2);
    }
}
