//! Vector bin packing onto heterogeneous nodes, one zone at a time.
//!
//! The planner fills one node at a time. Nodes are opened in the order a greedy cover of the
//! zone's demand picks them (again and again the node that covers most of what is left, each
//! resource as a share of its demand; past the cover, largest first) or largest first, whichever
//! plans the zone (or a pilot of a tenth of it) in fewer nodes: on the Alibaba trace the cover
//! mixes GPU-rich and cpu-rich nodes where largest first took only the former. The planner also
//! works out how full each resource of the nodes it uses can be on the whole (`rho`: the demand
//! over the capacity of the cover; on the generated fleets disk is about 1.0 and memory about
//! 0.7). Each node then takes, again and again, the replica that fits whose need has the
//! largest dot product with the room left below that target, both relative to the node's
//! capacity: a node whose memory is already past its share takes disk-heavy replicas, so every
//! node fills its tight resource and no node is left with memory full and disk to spare (the
//! earlier best-fit-decreasing planner filled the largest nodes with the largest,
//! memory-heavy replicas and ended 5–7% over the bound for that). GPU nodes take replicas that
//! need a GPU first, and of those the ones bound to GPU models first; amd64 nodes are filled while amd64-only replicas are left, then arm64
//! nodes, then either architecture. Replicas wait in buckets of similar shape (each resource
//! within a factor √2) so a choice looks at a few thousand buckets, not at every replica.
//! Finally the least-loaded nodes are emptied into the others where everything fits. The
//! baselines are first-fit and best-fit decreasing as textbooks state them: replicas by their
//! largest normalized dimension, nodes in the order given; [`best_baseline`] tries eighteen
//! variants of them (node and replica orders) and keeps the best.
//!
//! GPUs are devices ([`crate::GpuNeed`]): every node in use knows each device's free
//! thousandths; a share goes on the fullest device it fits (shares packed together leave whole
//! devices free), whole devices are taken only when free, and a replica bound to GPU models goes
//! only to nodes of one of them. The planner, the baselines, [`crate::fgd`] and [`check`] all
//! work device by device; the bounds count a zone's GPU thousandths in sum (devices and models
//! relaxed), which keeps them valid.
//!
//! A zone whose every node has a price is planned for least cost instead (a zone with an
//! unpriced node is planned as above, whatever its other nodes cost). Beside the plan for fewest
//! nodes, nodes are opened by a greedy cover that takes, again and again, the node covering most
//! of what is left per unit of its price (past the cover, the most capacity per unit of price,
//! weighted as above), with the replicas that take either architecture sent first to amd64
//! nodes and, in another plan, to arm64 ones. Every plan's nodes are then downsized (each node's
//! replicas moved together onto a cheaper node not used that holds them), and the cheapest plan
//! kept. [`cost_lower_bound`] says how far from the cheapest possible it can be.

#![allow(clippy::needless_range_loop)] // resources are fixed-size vectors: loops over the dimension read as the arithmetic does

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::{Arch, DEVICE, DIMS, GpuNeed, MAX_DEVICES, Node, Options, Placement, Plan, Res, System, Unplaced};

/// A textbook baseline: which open node a replica goes to, the order nodes are opened in, and
/// the order replicas are taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub method: Method,
    pub nodes: NodeOrder,
    pub items: ItemOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The first open node it fits.
    FirstFit,
    /// The open node it leaves least room on (each resource weighted by how scarce it is).
    BestFit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOrder {
    /// As the input lists them.
    Input,
    /// Largest first: the sum of each resource as a share of the zone's largest node.
    Largest,
    /// Largest first by volume: the product of those shares (over the resources the node has).
    Volume,
}

/// Replicas largest first, by their needs each as a share of the zone's largest node:
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOrder {
    /// the largest share (the textbook's key);
    Max,
    /// the sum of the shares;
    Sum,
    /// the product of the shares of the resources it asks for.
    Product,
}

impl Baseline {
    /// Every combination [`best_baseline`] tries.
    pub const ALL: [Baseline; 18] = {
        let mut all = [Baseline { method: Method::FirstFit, nodes: NodeOrder::Input, items: ItemOrder::Max }; 18];
        let methods = [Method::FirstFit, Method::BestFit];
        let orders = [NodeOrder::Input, NodeOrder::Largest, NodeOrder::Volume];
        let keys = [ItemOrder::Max, ItemOrder::Sum, ItemOrder::Product];
        let mut i = 0;
        while i < 18 {
            all[i] = Baseline { method: methods[i / 9], nodes: orders[(i / 3) % 3], items: keys[i % 3] };
            i += 1;
        }
        all
    };

    pub fn name(&self) -> String {
        let m = match self.method {
            Method::FirstFit => "ffd",
            Method::BestFit => "bfd",
        };
        let n = match self.nodes {
            NodeOrder::Input => "nodes as given",
            NodeOrder::Largest => "largest nodes first",
            NodeOrder::Volume => "nodes by volume",
        };
        let k = match self.items {
            ItemOrder::Max => "max",
            ItemOrder::Sum => "sum",
            ItemOrder::Product => "product",
        };
        format!("{m} ({n}, replicas by {k})")
    }
}

/// The GPU dimension.
pub(crate) const GPU: usize = 3;

/// How many of the commonest node shapes of a zone the bound mixes resources over.
const SHAPES: usize = 16;
/// With more different node capacities than this in a zone and architecture, the planner's
/// cover takes the largest nodes first rather than the greedy choice (which looks at each
/// capacity for each node it takes).
const COVER_SHAPES: usize = 64;
/// A zone with more replicas than this is planned once, in the node order that won on a pilot
/// of one system in `PILOT_EVERY` (smaller zones are planned in both orders).
const PILOT_ABOVE: usize = 20_000;
const PILOT_EVERY: usize = 10;
/// How many of the least-loaded nodes the planner tries to empty at the end.
const EMPTY_TRIES: usize = 1024;
/// How many replicas of a bucket, from its largest, the planner looks at for one that fits.
const DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) system: usize,
    pub(crate) replica: u32,
    /// Its GPU need as devices take it ([`GpuNeed::of`]: whole devices counted whole).
    pub(crate) need: Res,
    pub(crate) gpu: GpuNeed,
    pub(crate) arch: Option<Arch>,
    /// The GPU models it may run on, sorted; `None`: any.
    pub(crate) models: Option<Arc<[String]>>,
}

/// A node in use: its free room in each resource, and each GPU device's free thousandths.
#[derive(Debug, Clone)]
pub(crate) struct Bin {
    pub(crate) node: usize,
    pub(crate) free: Res,
    pub(crate) cap: Res,
    pub(crate) items: Vec<usize>,
    /// The devices each of `items` takes (a bit per device), in the same order.
    pub(crate) gpus: Vec<u64>,
    pub(crate) devices: Vec<u64>,
}

/// How many GPU devices a node's capacity counts.
pub(crate) fn device_count(gpu_milli: u64) -> usize {
    (gpu_milli / DEVICE).min(MAX_DEVICES) as usize
}

impl Bin {
    pub(crate) fn new(node: usize, cap: Res) -> Bin {
        Bin { node, free: cap, cap, items: Vec::new(), gpus: Vec::new(), devices: vec![DEVICE; device_count(cap[GPU])] }
    }

    /// Whether the replica fits what is free, device by device for its GPU need.
    pub(crate) fn holds(&self, it: &Item) -> bool {
        fits(&self.free, &it.need) && self.devices_for(it.gpu).is_some()
    }

    /// The devices `gpu` would take here: for a share, the fullest device it fits on (shares
    /// packed together leave whole devices free); for whole devices, the first free ones.
    pub(crate) fn devices_for(&self, gpu: GpuNeed) -> Option<u64> {
        match gpu {
            GpuNeed::None => Some(0),
            GpuNeed::Share(m) => self
                .devices
                .iter()
                .enumerate()
                .filter(|(_, f)| **f >= m)
                .min_by_key(|(i, f)| (**f, *i))
                .map(|(i, _)| 1u64 << i),
            GpuNeed::Whole(k) => {
                let mut mask = 0u64;
                let mut n = 0;
                for (i, f) in self.devices.iter().enumerate() {
                    if n == k {
                        break;
                    }
                    if *f == DEVICE {
                        mask |= 1 << i;
                        n += 1;
                    }
                }
                (n == k).then_some(mask)
            }
        }
    }

    /// Places the replica `items[ix]` (which [`Bin::holds`]).
    pub(crate) fn put(&mut self, ix: usize, it: &Item) {
        let mask = self.devices_for(it.gpu).unwrap_or(0);
        for d in 0..DIMS {
            self.free[d] -= it.need[d];
        }
        self.take_devices(mask, it.gpu, false);
        self.items.push(ix);
        self.gpus.push(mask);
    }

    /// Places a replica whose share goes on device `device` (which has room for it).
    pub(crate) fn put_on(&mut self, ix: usize, it: &Item, device: usize) {
        for d in 0..DIMS {
            self.free[d] -= it.need[d];
        }
        let mask = 1u64 << device;
        self.take_devices(mask, it.gpu, false);
        self.items.push(ix);
        self.gpus.push(mask);
    }

    /// Removes the replica at `pos` of `items`.
    fn remove(&mut self, pos: usize, it: &Item) {
        self.items.remove(pos);
        let mask = self.gpus.remove(pos);
        for d in 0..DIMS {
            self.free[d] += it.need[d];
        }
        self.take_devices(mask, it.gpu, true);
    }

    fn take_devices(&mut self, mask: u64, gpu: GpuNeed, back: bool) {
        let per = match gpu {
            GpuNeed::None => return,
            GpuNeed::Share(m) => m,
            GpuNeed::Whole(_) => DEVICE,
        };
        for (i, f) in self.devices.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *f = if back { *f + per } else { *f - per };
            }
        }
    }

    fn clear(&mut self) {
        self.items.clear();
        self.gpus.clear();
        self.free = self.cap;
        self.devices.iter_mut().for_each(|f| *f = DEVICE);
    }

    /// The devices some replica here takes.
    fn devices_used(&self) -> usize {
        self.devices.iter().filter(|f| **f < DEVICE).count()
    }

    /// Moves everything here onto another node of capacity `cap`, its devices in use onto the
    /// new node's first ones (every device is the same size, so loads move as they are).
    fn move_to(&mut self, node: usize, cap: Res) {
        let used: Vec<usize> = (0..self.devices.len()).filter(|&i| self.devices[i] < DEVICE).collect();
        let remap = |mask: u64| -> u64 {
            used.iter().enumerate().filter(|(_, old)| mask & (1 << **old) != 0).fold(0, |m, (new, _)| m | 1 << new)
        };
        let mut devices = vec![DEVICE; device_count(cap[GPU])];
        for (new, &old) in used.iter().enumerate() {
            devices[new] = self.devices[old];
        }
        for m in self.gpus.iter_mut() {
            *m = remap(*m);
        }
        for d in 0..DIMS {
            self.free[d] = cap[d] - (self.cap[d] - self.free[d]);
        }
        self.node = node;
        self.cap = cap;
        self.devices = devices;
    }
}

/// A node's capacity after headroom. GPUs are devices, handed out whole or shared, so headroom
/// leaves them alone.
pub(crate) fn capacity(n: &Node, o: &Options) -> Res {
    let h = o.headroom.clamp(0.0, 1.0);
    let mut c = [0; DIMS];
    for (d, v) in c.iter_mut().enumerate() {
        *v = (n.capacity[d] as f64 * h).floor() as u64;
    }
    c[GPU] = device_count(n.capacity[GPU]) as u64 * DEVICE;
    c
}

pub(crate) fn fits(free: &Res, need: &Res) -> bool {
    (0..DIMS).all(|d| need[d] <= free[d])
}

fn arch_ok(item: Option<Arch>, node: Arch) -> bool {
    item.is_none_or(|a| a == node)
}

/// Whether a replica that asks for `models` may run on a node of GPU model `model`.
pub(crate) fn model_ok(models: &Option<Arc<[String]>>, model: &Option<String>) -> bool {
    match (models, model) {
        (None, _) => true,
        (Some(m), Some(g)) => m.iter().any(|x| x == g),
        (Some(_), None) => false,
    }
}

/// Whether the node may take the replica at all (architecture and GPU model).
pub(crate) fn allowed(it: &Item, n: &Node) -> bool {
    arch_ok(it.arch, n.arch) && model_ok(&it.models, &n.gpu_model)
}

/// Whether the node, empty, holds the replica (an empty node's devices are all free, and its
/// GPU capacity is whole devices: what fits in sum fits device by device).
fn hosts(it: &Item, n: &Node, o: &Options) -> bool {
    allowed(it, n) && fits(&capacity(n, o), &it.need)
}

/// Per architecture, the capacities (after headroom) no other node of `node_ix` exceeds in
/// every resource: a replica fits some node of an architecture exactly when it fits one of these.
pub(crate) fn largest_capacities(nodes: &[Node], node_ix: &[usize], o: &Options) -> [Vec<Res>; 2] {
    let mut out: [Vec<Res>; 2] = Default::default();
    for (a, arch) in [Arch::Amd64, Arch::Arm64].into_iter().enumerate() {
        let mut caps: Vec<Res> =
            node_ix.iter().filter(|&&n| nodes[n].arch == arch).map(|&n| capacity(&nodes[n], o)).collect();
        caps.sort_unstable_by(|a, b| b.cmp(a));
        caps.dedup();
        for c in caps {
            if !out[a].iter().any(|m| fits(m, &c)) {
                out[a].push(c);
            }
        }
    }
    out
}

/// Whether some node of the architecture `arch` asks for (either when `None`) holds `need`, given
/// [`largest_capacities`].
fn holds_some(fronts: &[Vec<Res>; 2], arch: Option<Arch>, need: &Res) -> bool {
    [Arch::Amd64, Arch::Arm64]
        .into_iter()
        .enumerate()
        .any(|(a, x)| arch_ok(arch, x) && fronts[a].iter().any(|c| fits(c, need)))
}

/// Whether some node of `node_ix` holds the replica: by the fronts, and node by node for a
/// replica bound to GPU models (few, and the fronts know no models).
pub(crate) fn placeable(fronts: &[Vec<Res>; 2], nodes: &[Node], node_ix: &[usize], o: &Options, it: &Item) -> bool {
    if it.models.is_none() {
        holds_some(fronts, it.arch, &it.need)
    } else {
        node_ix.iter().any(|&n| hosts(it, &nodes[n], o))
    }
}

/// Zones in a stable order, each with its nodes and replicas.
pub(crate) fn zones<'a>(nodes: &'a [Node], systems: &'a [System]) -> BTreeMap<&'a str, (Vec<usize>, Vec<Item>)> {
    let mut z: BTreeMap<&str, (Vec<usize>, Vec<Item>)> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        z.entry(n.zone.as_str()).or_default().0.push(i);
    }
    for (s, sys) in systems.iter().enumerate() {
        let e = z.entry(sys.zone.as_str()).or_default();
        let gpu = GpuNeed::of(sys.need[GPU]);
        let mut need = sys.need;
        need[GPU] = match gpu {
            GpuNeed::None => 0,
            GpuNeed::Share(m) => m,
            GpuNeed::Whole(k) => k * DEVICE,
        };
        let models: Option<Arc<[String]>> = (!sys.gpu_models.is_empty()).then(|| {
            let mut m = sys.gpu_models.clone();
            m.sort();
            m.dedup();
            m.into()
        });
        for r in 0..sys.replicas {
            e.1.push(Item { system: s, replica: r, need, gpu, arch: sys.arch, models: models.clone() });
        }
    }
    z
}

fn total(items: &[&Item]) -> Res {
    let mut t = [0u64; DIMS];
    for it in items {
        for d in 0..DIMS {
            t[d] = t[d].saturating_add(it.need[d]);
        }
    }
    t
}

/// A lower bound on the nodes any valid plan uses (one that places every replica some node of
/// its zone and architecture can hold; those no node can hold are left out, as every plan
/// reports them unplaced), summed over zones. In a zone, let A and R be the amd64 and arm64
/// nodes, `a` and `r` how many of each a plan uses, and D_amd, D_arm, D_all the summed needs of
/// the amd64-only replicas, the arm64-only ones and all of them. The bound is the least `a + r`
/// that passes every test below; the plan's own `(a, r)` passes them all, so it is at least that:
///
/// - **Covers, per architecture and together, in every direction at once.** For a weighting
///   λ ≥ 0 of the resources, write λ·x for the weighted sum of a vector x, and P_A(k) for the sum
///   of λ·capacity over the k nodes of A largest by it (P_R likewise). The amd64 nodes a plan
///   uses hold every amd64-only replica, so their capacities add up to D_amd or more in each
///   resource, hence in λ·; and no k nodes of A weigh more than the k heaviest, so
///   P_A(a) ≥ λ·D_amd. Likewise P_R(r) ≥ λ·D_arm and P_A(a) + P_R(r) ≥ λ·D_all (replicas that
///   take either architecture may go to either). The weightings tried ([`directions`]) are each
///   resource alone and, for pairs of resources, those where two node shapes weigh the same:
///   one resource alone misses that the nodes rich in cpu and those rich in GPUs (the Alibaba
///   trace) or in memory are not the same nodes. Integer weights, so the sums are exact.
/// - **Replicas that cannot share a node** ([`clique_limits`]): a system's replicas each need
///   their own node; and two replicas that each need more than half of resource d of the largest
///   node their architecture allows cannot share a node (together they exceed every node both
///   may use). Each such set counted in A alone (amd64-only replicas), in R alone, and overall
///   gives a least `a`, `r` and `a + r`.
///
/// It ignores how replicas fragment the room on each node, and that replicas needing a GPU
/// only go where the GPUs are (beyond the GPU resource itself).
pub fn lower_bound(nodes: &[Node], systems: &[System], o: &Options) -> usize {
    zones(nodes, systems).values().map(|(node_ix, items)| zone_bound(nodes, node_ix, items, o)).sum()
}

/// What the tests of [`lower_bound`] say about one zone: for each weighting, the prefix sums of
/// each architecture's node weights (heaviest first), the least `a` and `r` the per-architecture
/// tests allow, and how few nodes replicas that cannot share one need.
struct ZoneTests {
    caps_a: Vec<Res>,
    caps_r: Vec<Res>,
    /// The nodes of `caps_a` and `caps_r`, in the same order.
    ix_a: Vec<usize>,
    ix_r: Vec<usize>,
    d_amd: Res,
    d_arm: Res,
    d_all: Res,
    dirs: Vec<[u128; DIMS]>,
    p_a: Vec<Vec<u128>>,
    p_r: Vec<Vec<u128>>,
    a0: usize,
    r0: usize,
    min_all: usize,
    /// Whether some replica fits some node (there is anything to bound).
    any: bool,
}

/// The fewest of the heaviest nodes whose weights (prefix sums `p`) reach `need` (one more than
/// there are when they never do).
fn least(p: &[u128], need: u128) -> usize {
    p.partition_point(|&s| s < need)
}

impl ZoneTests {
    fn new(nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options) -> ZoneTests {
        let fronts = largest_capacities(nodes, node_ix, o);
        let placeable: Vec<&Item> = items.iter().filter(|it| placeable(&fronts, nodes, node_ix, o, it)).collect();
        let ix = |arch: Arch| -> Vec<usize> { node_ix.iter().copied().filter(|&n| nodes[n].arch == arch).collect() };
        let (ix_a, ix_r) = (ix(Arch::Amd64), ix(Arch::Arm64));
        let caps = |ix: &[usize]| -> Vec<Res> { ix.iter().map(|&n| capacity(&nodes[n], o)).collect() };
        let (caps_a, caps_r) = (caps(&ix_a), caps(&ix_r));
        let only =
            |arch: Arch| -> Vec<&Item> { placeable.iter().copied().filter(|it| it.arch == Some(arch)).collect() };
        let (d_amd, d_arm, d_all) = (total(&only(Arch::Amd64)), total(&only(Arch::Arm64)), total(&placeable));
        let [min_a, min_r, min_all] = clique_limits(&placeable, &caps_a, &caps_r);
        let dirs = directions(&[caps_a.as_slice(), caps_r.as_slice()].concat(), &d_all);
        let prefix = |caps: &[Res], l: &[u128; DIMS]| -> Vec<u128> {
            let mut v: Vec<u128> = caps.iter().map(|c| weigh(l, c)).collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            let mut p = Vec::with_capacity(v.len() + 1);
            p.push(0u128);
            for x in v {
                p.push(p[p.len() - 1] + x);
            }
            p
        };
        let p_a: Vec<Vec<u128>> = dirs.iter().map(|l| prefix(&caps_a, l)).collect();
        let p_r: Vec<Vec<u128>> = dirs.iter().map(|l| prefix(&caps_r, l)).collect();
        let mut a0 = min_a;
        let mut r0 = min_r;
        for (i, l) in dirs.iter().enumerate() {
            a0 = a0.max(least(&p_a[i], weigh(l, &d_amd)));
            r0 = r0.max(least(&p_r[i], weigh(l, &d_arm)));
        }
        let any = !placeable.is_empty();
        ZoneTests { caps_a, caps_r, ix_a, ix_r, d_amd, d_arm, d_all, dirs, p_a, p_r, a0, r0, min_all, any }
    }

    /// The least `r` that passes every test with `a` amd64 nodes, but for `a + r ≥ min_all`
    /// (more than there are when none does).
    fn r_for(&self, a: usize) -> usize {
        let mut r = self.r0;
        for (i, l) in self.dirs.iter().enumerate() {
            r = r.max(least(&self.p_r[i], weigh(l, &self.d_all).saturating_sub(self.p_a[i][a])));
        }
        r
    }
}

/// [`lower_bound`] for one zone.
fn zone_bound(nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options) -> usize {
    let z = ZoneTests::new(nodes, node_ix, items, o);
    let (n_a, n_r) = (z.caps_a.len(), z.caps_r.len());
    let mut best = usize::MAX;
    for a in z.a0..=n_a {
        if a + z.r0 >= best {
            break; // r is never below r0: larger a cannot do better
        }
        let r = z.r_for(a);
        if r <= n_r {
            best = best.min((a + r).max(z.min_all));
        }
    }
    // When no plan places every replica (the zone lacks room), the covers say no more than the
    // nodes there are.
    best.min(n_a + n_r).max(z.min_all)
}

/// A lower bound on what the nodes of any valid plan cost a month (a plan that places every
/// replica some node of its zone and architecture can hold, as for [`lower_bound`]), summed over
/// zones; `None` when a zone with such replicas has a node without a price (an unpriced node may
/// cost anything). In a zone, with the notation of [`lower_bound`] and p(n) the price of node n,
/// it is the largest of three bounds, each valid, so their maximum is:
///
/// - **Counts priced at the cheapest.** A plan's `a` amd64 and `r` arm64 nodes pass every test
///   of [`lower_bound`], so a ≥ a0, r is at least the least r those tests allow with `a`, and
///   a + r is at least the replicas that cannot share a node. The plan's a amd64 nodes cost at
///   least the a cheapest amd64 nodes (prices are not negative), its r arm64 nodes at least the r
///   cheapest; the bound is the least such sum over the (a, r) that pass.
/// - **Capacity bought at the best price, fractionally, in every direction.** For a weighting λ,
///   the plan's amd64 nodes weigh at least λ·D_amd together, its arm64 nodes λ·D_arm, and all
///   of them λ·D_all. Allowing a fraction of a node (0 ≤ x(n) ≤ 1, price p(n)·x(n), weight
///   λ·capacity(n)·x(n)) only adds plans, so the least cost of this relaxation is at most the
///   plan's. Its least cost takes amd64 nodes by price per unit of weight, cheapest first, until
///   λ·D_amd is covered, arm64 nodes likewise until λ·D_arm, then the cheapest per unit of what
///   is left of either until λ·D_all: each architecture's least cost for covering X is convex in
///   X (cheapest first), so the cheapest extra unit is always the one to buy. The weightings
///   are those of [`lower_bound`]. Where one resource is tight this is the tight resource's
///   demand at the lowest price per unit of it, limited to the nodes there are.
/// - **Resources priced so that no node is worth much more than it costs** ([`resource_prices`]):
///   every resource at once, where a weighting above sees one mix of them at a time. It is the
///   dual of the relaxation above with all resources together, and on the priced generated
///   fleets the strongest of the three (4–5% above the second).
///
/// When no plan places every replica (the zone lacks room), the bound is what all the zone's
/// nodes cost. Each zone's bound is lowered by one part in 10⁹ so that rounding in the sums of
/// prices never puts it above a plan's cost.
pub fn cost_lower_bound(nodes: &[Node], systems: &[System], o: &Options) -> Option<f64> {
    zones(nodes, systems).values().map(|(node_ix, items)| zone_cost_bound(nodes, node_ix, items, o)).sum()
}

/// [`cost_lower_bound`] for one zone.
fn zone_cost_bound(nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options) -> Option<f64> {
    let z = ZoneTests::new(nodes, node_ix, items, o);
    if !z.any {
        return Some(0.0);
    }
    let price = |n: usize| nodes[n].price;
    let all: f64 = node_ix.iter().map(|&n| price(n)).sum::<Option<f64>>()?;
    let cheapest = |ix: &[usize]| -> Vec<f64> {
        let mut v: Vec<f64> = ix.iter().filter_map(|&n| price(n)).collect();
        v.sort_by(f64::total_cmp);
        let mut p = vec![0.0];
        for x in v {
            p.push(p[p.len() - 1] + x);
        }
        p
    };
    let (c_a, c_r) = (cheapest(&z.ix_a), cheapest(&z.ix_r));
    let (n_a, n_r) = (z.ix_a.len(), z.ix_r.len());
    let mut by_count = f64::INFINITY;
    for a in z.a0..=n_a {
        let r = z.r_for(a).max(z.min_all.saturating_sub(a));
        if r <= n_r {
            by_count = by_count.min(c_a[a] + c_r[r]);
        }
    }
    let mut by_capacity: f64 = 0.0;
    for l in &z.dirs {
        // (price per unit of weight, weight) of each node with any weight, cheapest first.
        let pieces = |caps: &[Res], ix: &[usize]| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = caps
                .iter()
                .zip(ix)
                .map(|(c, &n)| (price(n).unwrap_or(0.0), weigh(l, c) as f64))
                .filter(|&(_, w)| w > 0.0)
                .map(|(p, w)| (p / w, w))
                .collect();
            v.sort_by(|x, y| x.0.total_cmp(&y.0));
            v
        };
        // Buys `need` of weight from `pieces`, cheapest first; returns the cost (infinite when
        // there is not enough, past rounding: weights are rounded to f64, and calling a zone
        // full when it is not would overstate the bound) and leaves in `pieces` what was not bought.
        let buy = |pieces: &mut Vec<(f64, f64)>, need: f64| -> f64 {
            let short = need * 1e-9;
            let (mut cost, mut need, mut k) = (0.0, need, 0);
            while need > 0.0 && k < pieces.len() {
                let take = pieces[k].1.min(need);
                cost += take * pieces[k].0;
                need -= take;
                pieces[k].1 -= take;
                if pieces[k].1 <= 0.0 {
                    k += 1;
                }
            }
            pieces.drain(..k);
            if need > short { f64::INFINITY } else { cost }
        };
        let (mut pa, mut pr) = (pieces(&z.caps_a, &z.ix_a), pieces(&z.caps_r, &z.ix_r));
        let (w_amd, w_arm) = (weigh(l, &z.d_amd), weigh(l, &z.d_arm));
        let w_either = weigh(l, &z.d_all).saturating_sub(w_amd).saturating_sub(w_arm);
        let mut cost = buy(&mut pa, w_amd as f64) + buy(&mut pr, w_arm as f64);
        let mut rest: Vec<(f64, f64)> = pa.into_iter().chain(pr).collect();
        rest.sort_by(|x, y| x.0.total_cmp(&y.0));
        cost += buy(&mut rest, w_either as f64);
        by_capacity = by_capacity.max(cost);
    }
    let by_prices = resource_prices(nodes, node_ix, &z, o, by_count.max(by_capacity).min(all));
    Some(by_count.max(by_capacity).max(by_prices).min(all) * (1.0 - 1e-9))
}

/// How many steps [`resource_prices`] takes, at most, and how much work (steps times node
/// groups) it may do: 4,000 steps reach within 0.1% of the best prices found in 40,000 on the
/// priced generated fleets, where 400 fall 1.5% short.
const PRICE_STEPS: usize = 4000;
const PRICE_WORK: usize = 20_000_000;

/// The third bound of [`cost_lower_bound`]: resources priced so that no node is worth more than
/// it costs, but for what it is over by. For any prices y ≥ 0 of each resource, separately for
/// the amd64-only demand (y_A), the arm64-only one (y_R) and all of it (y_T), let a node's worth
/// be its capacity at y_A + y_T (amd64) or y_R + y_T (arm64), and its excess the worth over its
/// price, or 0. Each node costs at least its worth minus its excess; summed over the nodes a
/// plan uses, their worth is at least y_A·D_amd + y_R·D_arm + y_T·D_all (they hold the demand
/// each price applies to), and their excess at most the excess of all the zone's nodes. So every
/// plan costs at least y_A·D_amd + y_R·D_arm + y_T·D_all − (the zone's total excess), whatever
/// y ≥ 0 is (the dual of the linear relaxation of choosing nodes, which this reaches at its
/// best y). The prices are searched by projected subgradient ascent from zero (up to
/// [`PRICE_STEPS`] steps of decreasing length scaled by `scale`, another bound), keeping the best
/// value seen: any y gives a valid bound, a better search only a higher one.
fn resource_prices(nodes: &[Node], node_ix: &[usize], z: &ZoneTests, o: &Options, scale: f64) -> f64 {
    // Resources in shares of the zone's whole demand; those not asked for are left out.
    let unit: [f64; DIMS] = std::array::from_fn(|d| z.d_all[d] as f64);
    let share =
        |x: &Res| -> [f64; DIMS] { std::array::from_fn(|d| if unit[d] > 0.0 { x[d] as f64 / unit[d] } else { 0.0 }) };
    let mut groups: BTreeMap<(usize, Res, u64), usize> = BTreeMap::new();
    for &n in node_ix {
        let a = usize::from(nodes[n].arch == Arch::Arm64);
        *groups.entry((a, capacity(&nodes[n], o), price_of(&nodes[n]).to_bits())).or_default() += 1;
    }
    let groups: Vec<(usize, [f64; DIMS], f64, f64)> =
        groups.into_iter().map(|((a, c, p), k)| (a, share(&c), f64::from_bits(p), k as f64)).collect();
    // Demand per price: amd64-only, arm64-only, all.
    let demand = [share(&z.d_amd), share(&z.d_arm), share(&z.d_all)];
    if !(scale.is_finite() && scale > 0.0) {
        return 0.0;
    }
    let mut y = [[0.0f64; DIMS]; 3];
    let mut best: f64 = 0.0;
    for step in 0..PRICE_STEPS.min(PRICE_WORK / groups.len().max(1)).max(100) {
        let mut value: f64 = (0..3).map(|i| (0..DIMS).map(|d| y[i][d] * demand[i][d]).sum::<f64>()).sum();
        let mut grad = demand;
        for (a, c, p, k) in &groups {
            let worth: f64 = (0..DIMS).map(|d| (y[*a][d] + y[2][d]) * c[d]).sum();
            if worth > *p {
                value -= k * (worth - p);
                for d in 0..DIMS {
                    grad[*a][d] -= k * c[d];
                    grad[2][d] -= k * c[d];
                }
            }
        }
        best = best.max(value);
        let norm = grad.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        let t = scale / (norm * (1.0 + step as f64).sqrt());
        for i in 0..3 {
            for d in 0..DIMS {
                y[i][d] = if unit[d] > 0.0 { (y[i][d] + t * grad[i][d]).max(0.0) } else { 0.0 };
            }
        }
    }
    best
}

/// λ·x: the weighted sum.
fn weigh(l: &[u128; DIMS], x: &Res) -> u128 {
    (0..DIMS).map(|d| l[d] * u128::from(x[d])).sum()
}

/// The weightings [`lower_bound`] tries: each resource alone, and for each pair of resources
/// d and e and each two node shapes i and j where i has more of d and j more of e, the weighting
/// under which i and j weigh the same (d weighed by j's surplus of e, e by i's surplus of d).
/// Those are where the order of the nodes by weight changes, so where the best mix of two
/// resources lies. Shapes are the [`SHAPES`] commonest capacities; weights are scaled below
/// 2^32 so every sum is exact in u128 (any weighting ≥ 0 is valid, so rounding costs nothing).
fn directions(caps: &[Res], demand: &Res) -> Vec<[u128; DIMS]> {
    let mut count: BTreeMap<Res, usize> = BTreeMap::new();
    for c in caps {
        *count.entry(*c).or_default() += 1;
    }
    let mut shapes: Vec<(Res, usize)> = count.into_iter().collect();
    shapes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    shapes.truncate(SHAPES);
    let mut out: std::collections::BTreeSet<[u128; DIMS]> = std::collections::BTreeSet::new();
    for d in 0..DIMS {
        if demand[d] == 0 {
            continue;
        }
        let mut l = [0u128; DIMS];
        l[d] = 1;
        out.insert(l);
        for e in d + 1..DIMS {
            if demand[e] == 0 {
                continue;
            }
            for (i, _) in &shapes {
                for (j, _) in &shapes {
                    if i[d] <= j[d] || i[e] >= j[e] {
                        continue;
                    }
                    let (mut wd, mut we) = (u128::from(j[e] - i[e]), u128::from(i[d] - j[d]));
                    while wd.max(we) >= 1 << 32 {
                        wd >>= 1;
                        we >>= 1;
                    }
                    let g = gcd(wd, we).max(1);
                    let mut l = [0u128; DIMS];
                    l[d] = wd / g;
                    l[e] = we / g;
                    out.insert(l);
                }
            }
        }
    }
    out.into_iter().collect()
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The least number of amd64 nodes, arm64 nodes and nodes overall a plan uses because some
/// replicas cannot share a node: a system's replicas, and, for each resource d, the replicas
/// that need more than half of d of the largest node of their architecture (for either
/// architecture, the largest of both). Two of the latter cannot share a node n: n is allowed to
/// both, so neither largest is below n's capacity, and their needs add up to more than it.
fn clique_limits(items: &[&Item], caps_a: &[Res], caps_r: &[Res]) -> [usize; 3] {
    let largest = |caps: &[Res]| -> Res {
        let mut m = [0u64; DIMS];
        for c in caps {
            for d in 0..DIMS {
                m[d] = m[d].max(c[d]);
            }
        }
        m
    };
    let (max_a, max_r) = (largest(caps_a), largest(caps_r));
    let mut max_e = max_a;
    for d in 0..DIMS {
        max_e[d] = max_e[d].max(max_r[d]);
    }
    // By class (amd64 only, arm64 only, either): replicas big in each resource, most replicas.
    let mut big = [[0usize; DIMS]; 3];
    let mut spread = [0usize; 3];
    for it in items {
        let c = class_of(it.arch);
        let m = [&max_a, &max_r, &max_e][c];
        for d in 0..DIMS {
            if it.need[d] > 0 && 2 * u128::from(it.need[d]) > u128::from(m[d]) {
                big[c][d] += 1;
            }
        }
        spread[c] = spread[c].max(it.replica as usize + 1);
    }
    let most = |c: usize| big[c].iter().copied().max().unwrap_or(0).max(spread[c]);
    let all_big = (0..DIMS).map(|d| big[0][d] + big[1][d] + big[2][d]).max().unwrap_or(0);
    [most(0), most(1), all_big.max(spread.iter().copied().max().unwrap_or(0))]
}

/// How scarce each resource is in a zone: demand over capacity (0 when nothing is asked).
fn scarcity(items: &[Item], node_ix: &[usize], nodes: &[Node], o: &Options) -> [f64; DIMS] {
    let demand = total(&items.iter().collect::<Vec<_>>());
    let mut cap = [0u128; DIMS];
    for &i in node_ix {
        let c = capacity(&nodes[i], o);
        for d in 0..DIMS {
            cap[d] += u128::from(c[d]);
        }
    }
    let mut w = [0.0; DIMS];
    for d in 0..DIMS {
        if cap[d] > 0 {
            w[d] = demand[d] as f64 / cap[d] as f64;
        }
    }
    w
}

/// A bin's free capacity, weighted: what best fit minimizes.
fn slack(bin: &Bin, need: &Res, w: &[f64; DIMS]) -> f64 {
    (0..DIMS)
        .map(|d| if bin.cap[d] == 0 { 0.0 } else { w[d] * (bin.free[d] - need[d]) as f64 / bin.cap[d] as f64 })
        .sum()
}

/// A node not used yet: its capacity (after headroom), its size (weighted by how scarce each
/// resource is; for [`Order::Cheapest`], per unit of price) and its place in the greedy cover,
/// if the cover took it; its price (1 unless the order is [`Order::Cheapest`]).
#[derive(Debug, Clone, Copy)]
struct Unused {
    node: usize,
    cap: Res,
    size: f64,
    rank: Option<usize>,
    price: f64,
}

/// The order in which [`fill_once`] opens nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The greedy cover of the demand, then largest first.
    Cover,
    /// Largest first.
    Largest,
    /// Least cost: the greedy cover taking the node that covers most of what is left per unit
    /// of its price, then the most capacity per unit of price first; replicas that take either
    /// architecture go to the nodes of the architecture given first.
    Cheapest(Arch),
}

/// A node's price (0 when it has none, or a negative one).
fn price_of(n: &Node) -> f64 {
    match n.price {
        Some(p) if p > 0.0 => p,
        _ => 0.0,
    }
}

/// `value` per unit of `price`: infinite for something of value at no price.
fn per(value: f64, price: f64) -> f64 {
    if value <= 0.0 {
        0.0
    } else if price > 0.0 {
        value / price
    } else {
        f64::INFINITY
    }
}

impl Unused {
    /// Whether `self` is opened before `other` (`Less`): the cover's nodes first, in its order,
    /// then the largest.
    fn opens_before(&self, other: &Unused) -> std::cmp::Ordering {
        match (self.rank, other.rank) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => other.size.total_cmp(&self.size).then(self.node.cmp(&other.node)),
        }
    }
}

/// Ranks nodes by a greedy cover of `demand`: again and again the node whose capacity covers
/// most of what is left to cover, each resource counted as a share of its demand (the textbook
/// greedy for covering problems), until every resource is covered. On the Alibaba trace it
/// takes GPU-rich nodes while GPUs are left to cover and cpu-rich ones after, where largest
/// first took only the former. Nodes are grouped by capacity; without `greedy`, or with more
/// than [`COVER_SHAPES`] different capacities (and prices), the cover takes the largest first
/// instead. For [`Order::Cheapest`], what a node covers is counted per unit of its price (the
/// textbook greedy for weighted covering), and "largest" is the size per unit of price.
fn cover(mut nodes: Vec<Unused>, demand: &Res, order: Order) -> Vec<Unused> {
    let greedy = order != Order::Largest;
    let by_price = matches!(order, Order::Cheapest(_));
    let mut shapes: BTreeMap<(Res, u64), Vec<usize>> = BTreeMap::new();
    for (i, u) in nodes.iter().enumerate() {
        shapes.entry((u.cap, u.price.to_bits())).or_default().push(i);
    }
    let mut left: Vec<f64> = demand.iter().map(|&x| x as f64).collect();
    let value = |c: &Res, left: &[f64]| -> f64 {
        (0..DIMS).filter(|&d| demand[d] > 0).map(|d| (c[d] as f64).min(left[d]) / demand[d] as f64).sum()
    };
    let take = |i: usize, nodes: &mut [Unused], left: &mut [f64], rank: &mut usize| {
        for d in 0..DIMS {
            left[d] = (left[d] - nodes[i].cap[d] as f64).max(0.0);
        }
        nodes[i].rank = Some(*rank);
        *rank += 1;
    };
    let mut rank = 0;
    if !greedy || shapes.len() > COVER_SHAPES {
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|&a, &b| nodes[b].size.total_cmp(&nodes[a].size).then(nodes[a].node.cmp(&nodes[b].node)));
        for i in order {
            if value(&nodes[i].cap, &left) <= 0.0 {
                break;
            }
            take(i, &mut nodes, &mut left, &mut rank);
        }
        return nodes;
    }
    let mut shapes: Vec<Vec<usize>> = shapes.into_values().collect();
    for v in shapes.iter_mut() {
        v.sort_by(|&a, &b| nodes[b].node.cmp(&nodes[a].node)); // popped from the end
    }
    loop {
        let mut best: Option<(f64, f64, usize)> = None;
        for (s, v) in shapes.iter().enumerate() {
            let Some(&i) = v.last() else { continue };
            let v = value(&nodes[i].cap, &left);
            let x = (if by_price { per(v, nodes[i].price) } else { v }, nodes[i].size);
            if best.is_none_or(|(bv, bs, _)| x > (bv, bs)) {
                best = Some((x.0, x.1, s));
            }
        }
        let Some((v, _, s)) = best else { break };
        let Some(i) = shapes[s].pop() else { break };
        if v <= 0.0 {
            break;
        }
        take(i, &mut nodes, &mut left, &mut rank);
    }
    nodes
}

/// Why a replica found no node.
pub(crate) fn unplaced_reason(zone: &str, nodes: &[Node], node_ix: &[usize], o: &Options, it: &Item) -> String {
    let able = node_ix.iter().filter(|&&n| hosts(it, &nodes[n], o)).count();
    let of_model = node_ix.iter().filter(|&&n| allowed(it, &nodes[n])).count();
    if node_ix.is_empty() {
        format!("zone {zone} has no nodes")
    } else if of_model == 0 && it.models.is_some() {
        let models = it.models.as_deref().unwrap_or_default().join("|");
        format!("no node of its zone and architecture has a GPU of model {models}")
    } else if able == 0 {
        if it.models.is_some() {
            "larger than any node of its zone, architecture and GPU models (after headroom)".to_string()
        } else {
            "larger than any node of its zone and architecture (after headroom)".to_string()
        }
    } else if able <= it.replica as usize {
        format!(
            "only {able} node(s) of its zone and architecture can hold it, and its replicas must be on different nodes"
        )
    } else {
        "no node of its zone and architecture has room left".to_string()
    }
}

pub(crate) fn has_system(bin: &Bin, items: &[Item], system: usize) -> bool {
    bin.items.iter().any(|&i| items[i].system == system)
}

fn usable(bin: &Bin, items: &[Item], it: &Item, nodes: &[Node]) -> bool {
    bin.holds(it) && allowed(it, &nodes[bin.node]) && !has_system(bin, items, it.system)
}

fn pack_zone(zone: &str, nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options, s: Baseline, plan: &mut Plan) {
    let w = scarcity(items, node_ix, nodes, o);
    let mut order: Vec<usize> = (0..items.len()).collect();
    let mut max = [1u64; DIMS];
    for &i in node_ix {
        for d in 0..DIMS {
            max[d] = max[d].max(capacity(&nodes[i], o)[d]);
        }
    }
    let share = |x: &Res, d: usize| x[d] as f64 / max[d] as f64;
    let key = |it: &Item| -> f64 {
        match s.items {
            ItemOrder::Max => (0..DIMS).map(|d| share(&it.need, d)).fold(0.0, f64::max),
            ItemOrder::Sum => (0..DIMS).map(|d| share(&it.need, d)).sum(),
            ItemOrder::Product => (0..DIMS).filter(|&d| it.need[d] > 0).map(|d| share(&it.need, d)).product(),
        }
    };
    let keys: Vec<f64> = items.iter().map(key).collect();
    order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(items[a].system.cmp(&items[b].system)));
    let mut node_order: Vec<usize> = node_ix.to_vec();
    let size = |n: usize| -> f64 {
        let c = capacity(&nodes[n], o);
        match s.nodes {
            NodeOrder::Volume => (0..DIMS).filter(|&d| c[d] > 0).map(|d| share(&c, d)).product(),
            _ => (0..DIMS).map(|d| share(&c, d)).sum(),
        }
    };
    if s.nodes != NodeOrder::Input {
        node_order.sort_by(|&a, &b| size(b).total_cmp(&size(a)).then(a.cmp(&b)));
    }
    let mut bins: Vec<Bin> = Vec::new();
    let mut next_unused = vec![true; node_order.len()];
    let caps: Vec<Res> = node_order.iter().map(|&n| capacity(&nodes[n], o)).collect();
    // Unused nodes by class (architecture, with or without GPUs), in this strategy's order,
    // each with a cursor past its used prefix: opening a node costs about O(1), not O(nodes).
    let class = |n: usize| (usize::from(nodes[n].arch == Arch::Arm64), usize::from(nodes[n].capacity[GPU] > 0));
    let mut lists: [[Vec<usize>; 2]; 2] = Default::default();
    for (k, &n) in node_order.iter().enumerate() {
        let (a, g) = class(n);
        lists[a][g].push(k);
    }
    let mut cursors = [[0usize; 2]; 2];
    for &ix in &order {
        let it = &items[ix];
        let chosen = match s.method {
            Method::FirstFit => bins.iter().position(|b| usable(b, items, it, nodes)),
            Method::BestFit => best(&bins, items, it, nodes, &w),
        };
        if let Some(b) = chosen {
            bins[b].put(ix, it);
            continue;
        }
        // The first unused node of a class that holds the replica, by position in the order.
        let mut first_in = |a: usize, g: usize| -> Option<usize> {
            let list = &lists[a][g];
            while cursors[a][g] < list.len() && !next_unused[list[cursors[a][g]]] {
                cursors[a][g] += 1;
            }
            list[cursors[a][g]..]
                .iter()
                .copied()
                .find(|&k| next_unused[k] && fits(&caps[k], &it.need) && allowed(it, &nodes[node_order[k]]))
        };
        let archs: &[usize] = match it.arch {
            Some(Arch::Amd64) => &[0],
            Some(Arch::Arm64) => &[1],
            None => &[0, 1],
        };
        let earliest = |found: &[Option<usize>]| found.iter().flatten().copied().min();
        let plain: Vec<Option<usize>> = archs.iter().map(|&a| first_in(a, 0)).collect();
        let gpu: Vec<Option<usize>> = archs.iter().map(|&a| first_in(a, 1)).collect();
        // Open the first unused node (in input order) that can hold the replica.
        match earliest(&[earliest(&plain), earliest(&gpu)]) {
            Some(k) => {
                next_unused[k] = false;
                let n = node_order[k];
                let mut bin = Bin::new(n, caps[k]);
                bin.put(ix, it);
                bins.push(bin);
            }
            None => {
                let reason = unplaced_reason(zone, nodes, node_ix, o, it);
                plan.unplaced.push(Unplaced { system: it.system, replica: it.replica, reason });
            }
        }
    }
    record(&bins, items, plan);
}

/// The bins' replicas as the plan's placements, with the devices each takes.
pub(crate) fn record(bins: &[Bin], items: &[Item], plan: &mut Plan) {
    for b in bins.iter().filter(|b| !b.items.is_empty()) {
        plan.nodes_used += 1;
        for (&ix, &mask) in b.items.iter().zip(&b.gpus) {
            let gpus = (0..MAX_DEVICES as u8).filter(|&i| mask & (1 << i) != 0).collect();
            plan.placements.push(Placement {
                system: items[ix].system,
                replica: items[ix].replica,
                node: b.node,
                gpus,
            });
        }
    }
}

/// The usable bin the replica fills best (least weighted room left).
fn best(bins: &[Bin], items: &[Item], it: &Item, nodes: &[Node], w: &[f64; DIMS]) -> Option<usize> {
    let mut found: Option<(usize, f64)> = None;
    for (b, bin) in bins.iter().enumerate() {
        if usable(bin, items, it, nodes) {
            let sl = slack(bin, &it.need, w);
            if found.is_none_or(|(_, s)| sl < s) {
                found = Some((b, sl));
            }
        }
    }
    found.map(|(b, _)| b)
}

/// Tries to move every replica of the least-loaded nodes (up to [`EMPTY_TRIES`] of them; with
/// `by_price`, least load per unit of price) onto the other used nodes, each where it leaves the
/// least room; a node whose replicas all find room is freed.
fn empty_least_loaded(bins: &mut [Bin], items: &[Item], nodes: &[Node], w: &[f64; DIMS], by_price: bool) {
    let load = |b: &Bin| -> f64 {
        let l = (0..DIMS)
            .map(|d| if b.cap[d] == 0 { 0.0 } else { w[d] * (b.cap[d] - b.free[d]) as f64 / b.cap[d] as f64 })
            .sum();
        // With prices, a node that costs nothing is emptied last: that saves nothing.
        if by_price { per(1.0, price_of(&nodes[b.node])).min(f64::MAX) * l } else { l }
    };
    let mut by_load: Vec<usize> = (0..bins.len()).collect();
    by_load.sort_by(|&a, &b| load(&bins[a]).total_cmp(&load(&bins[b])));
    for &victim in by_load.iter().take(EMPTY_TRIES) {
        if bins[victim].items.is_empty() {
            continue;
        }
        let moving = bins[victim].items.clone();
        let mut moved: Vec<(usize, usize)> = Vec::new();
        let mut ok = true;
        for &ix in &moving {
            let it = &items[ix];
            let mut target: Option<(usize, f64)> = None;
            for (b, bin) in bins.iter().enumerate() {
                if b == victim || bin.items.is_empty() || !usable(bin, items, it, nodes) {
                    continue;
                }
                let sl = slack(bin, &it.need, w);
                if target.is_none_or(|(_, s)| sl < s) {
                    target = Some((b, sl));
                }
            }
            match target {
                Some((b, _)) => {
                    bins[b].put(ix, it);
                    moved.push((b, ix));
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            bins[victim].clear();
        } else {
            for (b, ix) in moved.into_iter().rev() {
                let bin = &mut bins[b];
                if let Some(p) = bin.items.iter().rposition(|&i| i == ix) {
                    bin.remove(p, &items[ix]);
                }
            }
        }
    }
}

/// The replicas of one zone not placed yet, grouped by shape for the planner's node-by-node
/// filling: a bucket holds replicas of one architecture class whose every dimension is within
/// a factor of √2 of the others', largest first.
struct Pool {
    buckets: Vec<Bucket>,
    /// Non-empty buckets by class: amd64 only, arm64 only, either.
    active: [Vec<usize>; 3],
    /// Replicas left by class, and of those how many need a GPU.
    left: [usize; 3],
    gpu_left: [usize; 3],
}

struct Bucket {
    /// Replicas (need, index), smallest first.
    items: Vec<(Res, usize)>,
    /// Every replica of the bucket needs at least this much: when it does not fit, none does.
    min: Res,
    /// The GPU models its replicas may run on (the same for all of them).
    models: Option<Arc<[String]>>,
}

fn class_of(a: Option<Arch>) -> usize {
    match a {
        Some(Arch::Amd64) => 0,
        Some(Arch::Arm64) => 1,
        None => 2,
    }
}

impl Pool {
    fn new(items: &[Item], ix: &[usize], maxcap: &Res) -> Pool {
        let size = |it: &Item| -> f64 {
            (0..DIMS).map(|d| if maxcap[d] == 0 { 0.0 } else { it.need[d] as f64 / maxcap[d] as f64 }).sum()
        };
        // (architecture class, shape, GPU models) → bucket
        type Key = (usize, [i32; DIMS], Option<Arc<[String]>>);
        let mut keys: BTreeMap<Key, usize> = BTreeMap::new();
        let mut pool = Pool { buckets: Vec::new(), active: Default::default(), left: [0; 3], gpu_left: [0; 3] };
        for &i in ix {
            let it = &items[i];
            let mut q = [i32::MIN; DIMS];
            for d in 0..DIMS {
                if it.need[d] > 0 && maxcap[d] > 0 {
                    q[d] = (2.0 * (it.need[d] as f64 / maxcap[d] as f64).log2()).floor() as i32;
                }
            }
            let c = class_of(it.arch);
            let b = *keys.entry((c, q, it.models.clone())).or_insert_with(|| {
                pool.buckets.push(Bucket { items: Vec::new(), min: [u64::MAX; DIMS], models: it.models.clone() });
                pool.active[c].push(pool.buckets.len() - 1);
                pool.buckets.len() - 1
            });
            let bk = &mut pool.buckets[b];
            bk.items.push((it.need, i));
            for d in 0..DIMS {
                bk.min[d] = bk.min[d].min(it.need[d]);
            }
            pool.left[c] += 1;
            if it.need[GPU] > 0 {
                pool.gpu_left[c] += 1;
            }
        }
        let sizes: Vec<f64> = items.iter().map(size).collect();
        for bk in &mut pool.buckets {
            // Smallest first: the largest is taken from the end, and of one system's replicas the
            // first (a replica left over is the last, as the reason given for it assumes).
            bk.items.sort_by(|&(_, a), &(_, b)| {
                sizes[a]
                    .total_cmp(&sizes[b])
                    .then(items[b].system.cmp(&items[a].system))
                    .then(items[b].replica.cmp(&items[a].replica))
            });
        }
        pool
    }

    /// Fills `bin` from the classes given: each time with the replica that fits (and has no
    /// replica of its system there yet) whose need has the largest dot product with the room
    /// left below the target `rho`, both relative to the node's capacity; replicas that need a
    /// GPU first on a GPU node. Only the [`DEPTH`] largest replicas of a bucket are looked at.
    fn fill(&mut self, bin: &mut Bin, classes: &[usize], items: &[Item], rho: &[f64; DIMS], model: &Option<String>) {
        // Replicas needing a GPU first on a GPU node: no other node takes them.
        let gpu_first = bin.cap[GPU] > 0;
        loop {
            // A replica's score is the dot product of its need with what is left below the
            // target, both relative to the node's capacity.
            let mut coef = [0.0; DIMS];
            for d in 0..DIMS {
                if bin.cap[d] > 0 {
                    let c = bin.cap[d] as f64;
                    coef[d] = (rho[d] - (bin.cap[d] - bin.free[d]) as f64 / c) / c;
                }
            }
            // On a GPU node: replicas needing a GPU first, of those the ones bound to GPU models
            // (they have fewer nodes to go to: on the gpuspec10 list, 12 were left without a
            // node before); then the score.
            let mut best: Option<((bool, bool, f64), usize, usize)> = None;
            for &c in classes {
                for &b in &self.active[c] {
                    let bk = &self.buckets[b];
                    if !fits(&bin.free, &bk.min) || !model_ok(&bk.models, model) {
                        continue;
                    }
                    for (pos, (need, ix)) in bk.items.iter().enumerate().rev().take(DEPTH) {
                        if !bin.holds(&items[*ix]) {
                            continue;
                        }
                        let score: f64 = (0..DIMS).map(|d| need[d] as f64 * coef[d]).sum();
                        let g = gpu_first && need[GPU] > 0;
                        let key = (g, g && bk.models.is_some(), score);
                        if best.is_some_and(|(k, _, _)| key <= k) {
                            break;
                        }
                        if has_system(bin, items, items[*ix].system) {
                            continue;
                        }
                        best = Some((key, b, pos));
                        break;
                    }
                }
            }
            let Some((_, b, pos)) = best else { return };
            let (need, ix) = self.buckets[b].items.remove(pos);
            let c = class_of(items[ix].arch);
            self.left[c] -= 1;
            if need[GPU] > 0 {
                self.gpu_left[c] -= 1;
            }
            if self.buckets[b].items.is_empty() {
                self.active[c].retain(|&x| x != b);
            }
            bin.put(ix, &items[ix]);
        }
    }

    fn remaining(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.buckets.iter().flat_map(|b| b.items.iter().map(|x| x.1)).collect();
        v.sort_unstable();
        v
    }
}

/// One pass of the planner over a zone's replicas: node by node in `order`, a GPU node while
/// replicas needing a GPU are left, each filled by [`Pool::fill`]; amd64 nodes while amd64-only
/// replicas are left, then arm64 nodes, then either for what is left (for
/// [`Order::Cheapest`]: the architecture given while its own replicas or those that take either
/// are left, then the other while its own are). Then the least-loaded nodes (with prices, per
/// unit of price) are emptied into the others where they fit. Returns the nodes used and the
/// replicas left unplaced.
fn fill_once(nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options, order: Order) -> (Vec<Bin>, Vec<usize>) {
    let w = scarcity(items, node_ix, nodes, o);
    let (either, by_price) = match order {
        Order::Cheapest(a) => (a, true),
        Order::Cover | Order::Largest => (Arch::Amd64, false),
    };
    let mut maxcap = [0u64; DIMS];
    for &i in node_ix {
        let c = capacity(&nodes[i], o);
        for d in 0..DIMS {
            maxcap[d] = maxcap[d].max(c[d]);
        }
    }
    // Replicas no node of their architecture can hold, even empty, are reported at once.
    let fronts = largest_capacities(nodes, node_ix, o);
    let (placeable, never): (Vec<usize>, Vec<usize>) =
        (0..items.len()).partition(|&i| placeable(&fronts, nodes, node_ix, o, &items[i]));
    let mut pool = Pool::new(items, &placeable, &maxcap);
    let size = |c: &Res| -> f64 {
        (0..DIMS).map(|d| if maxcap[d] == 0 { 0.0 } else { w[d] * c[d] as f64 / maxcap[d] as f64 }).sum()
    };
    // Unused nodes by architecture and GPU, in the order they are opened: first those a greedy
    // cover of the demand picks (per architecture: amd64 for the amd64-only replicas and those
    // that take either, arm64 for the arm64-only ones), in the cover's order, then the others,
    // largest first.
    let mut lists: [[Vec<Unused>; 2]; 2] = Default::default();
    let mut covered = [0u128; DIMS];
    for (a, arch) in [Arch::Amd64, Arch::Arm64].into_iter().enumerate() {
        let mine: Vec<Unused> = node_ix
            .iter()
            .filter(|&&n| nodes[n].arch == arch)
            .map(|&n| {
                let cap = capacity(&nodes[n], o);
                if by_price {
                    let price = price_of(&nodes[n]);
                    Unused { node: n, cap, size: per(size(&cap), price), rank: None, price }
                } else {
                    Unused { node: n, cap, size: size(&cap), rank: None, price: 1.0 }
                }
            })
            .collect();
        let classes: &[usize] = if arch == either { &[a, 2] } else { &[a] };
        let demand = total(
            &placeable.iter().map(|&i| &items[i]).filter(|it| classes.contains(&class_of(it.arch))).collect::<Vec<_>>(),
        );
        let mut mine = cover(mine, &demand, order);
        if by_price {
            // The cover chose which nodes to pay for; they are opened largest first, so the
            // largest replicas find room and the small ones fill what is left.
            let mut chosen: Vec<usize> = (0..mine.len()).filter(|&i| mine[i].rank.is_some()).collect();
            chosen.sort_by(|&i, &j| {
                size(&mine[j].cap).total_cmp(&size(&mine[i].cap)).then(mine[i].node.cmp(&mine[j].node))
            });
            for (rank, i) in chosen.into_iter().enumerate() {
                mine[i].rank = Some(rank);
            }
        }
        for u in &mine {
            if u.rank.is_some() {
                for d in 0..DIMS {
                    covered[d] += u128::from(u.cap[d]);
                }
            }
        }
        mine.sort_by(|x, y| y.opens_before(x)); // popped from the end
        for u in mine {
            let g = usize::from(u.cap[GPU] > 0);
            lists[a][g].push(u);
        }
    }
    // How full each resource of the nodes used will be, about: the demand over the capacity of
    // the nodes the cover picked.
    let rho = {
        let demand = total(&placeable.iter().map(|&i| &items[i]).collect::<Vec<_>>());
        let mut rho = [0.0; DIMS];
        for d in 0..DIMS {
            if covered[d] > 0 {
                rho[d] = (demand[d] as f64 / covered[d] as f64).min(1.0);
            }
        }
        // With prices, the nodes chosen differ in what they have to spare (on the generated
        // fleets, the cheapest per unit of disk are the smallest, which run out of memory first):
        // one target for every node would stop each short of what it could take, so each node
        // fills every resource toward full. On the priced generated fleets this costs 6-8% less.
        if by_price { [1.0; DIMS] } else { rho }
    };
    let mut bins: Vec<Bin> = Vec::new();
    // Phases: (architectures whose nodes are opened, classes of replicas they take, classes
    // whose replicas left keep the phase going).
    let (x, y) = if either == Arch::Amd64 { (0, 1) } else { (1, 0) };
    let phases: [(&[usize], &[usize], &[usize]); 3] = if by_price {
        [(&[x], &[x, 2], &[x, 2]), (&[y], &[y, 2], &[y]), (&[0, 1], &[0, 1, 2], &[0, 1, 2])]
    } else {
        [(&[0], &[0, 2], &[0]), (&[1], &[1, 2], &[1]), (&[0, 1], &[0, 1, 2], &[0, 1, 2])]
    };
    for (archs, classes, until) in phases {
        loop {
            let left: usize = until.iter().map(|&c| pool.left[c]).sum();
            if left == 0 {
                break;
            }
            // The next node to open, with or without GPUs; while replicas needing a GPU are
            // left, a GPU node. Past the cover, a node without GPUs nearly as large (90%) is
            // preferred, to keep GPU nodes for replicas that need one.
            let gpu_wanted = classes.iter().any(|&c| pool.gpu_left[c] > 0);
            let next = |g: usize| -> Option<(usize, &Unused)> {
                archs.iter().filter_map(|&a| lists[a][g].last().map(|u| (a, u))).min_by(|x, y| x.1.opens_before(y.1))
            };
            let pick = match (next(0), next(1)) {
                (_, Some((a, _))) if gpu_wanted => (a, 1),
                (Some((a, p)), Some((b, g))) => {
                    let plain = if p.rank.is_some() || g.rank.is_some() {
                        p.opens_before(g).is_lt()
                    } else {
                        p.size >= 0.9 * g.size
                    };
                    if plain { (a, 0) } else { (b, 1) }
                }
                (None, Some((b, _))) => (b, 1),
                (Some((a, _)), None) => (a, 0),
                (None, None) => break,
            };
            let Some(Unused { node: n, cap, .. }) = lists[pick.0][pick.1].pop() else { break };
            let mut bin = Bin::new(n, cap);
            let cl: Vec<usize> = classes.iter().copied().filter(|&c| c == 2 || c == pick.0).collect();
            pool.fill(&mut bin, &cl, items, &rho, &nodes[n].gpu_model);
            if !bin.items.is_empty() {
                bins.push(bin);
            }
        }
    }
    let mut unplaced = never;
    unplaced.extend(pool.remaining());
    unplaced.sort_unstable();
    empty_least_loaded(&mut bins, items, nodes, &w, by_price);
    bins.retain(|b| !b.items.is_empty());
    (bins, unplaced)
}

/// The planner on one zone: [`fill_once`] with the nodes opened in the greedy cover's order and
/// largest first, keeping the plan that places more replicas, then uses fewer nodes. The
/// cover's order wins on the Alibaba trace (638 nodes against 654), largest first on fleets of
/// many random node shapes whose cpu is the tight resource (about 10% fewer nodes there); on
/// the generated fleets they tie. A zone of more than [`PILOT_ABOVE`] replicas is planned once,
/// in the order that won on a pilot of one system in [`PILOT_EVERY`].
///
/// A zone whose every node has a price is planned for least cost: that node-count plan and
/// [`Order::Cheapest`] (replicas that take either architecture sent first to amd64 nodes, and,
/// when the zone has both, to arm64 ones) are each [`downsize`]d, and the plan that places more
/// replicas, then costs less, then uses fewer nodes is kept (for a large zone, the order that
/// wins so on the pilot is planned). So a priced zone never costs more than its node-count plan
/// would after downsizing.
fn fill_zone(zone: &str, nodes: &[Node], node_ix: &[usize], items: &[Item], o: &Options, plan: &mut Plan) {
    type Zone = (Vec<Bin>, Vec<usize>);
    let better = |a: &Zone, b: &Zone| (a.1.len(), a.0.len()) <= (b.1.len(), b.0.len());
    let priced = !node_ix.is_empty() && node_ix.iter().all(|&n| nodes[n].price.is_some());
    let (bins, unplaced) = if priced {
        let cost = |z: &Zone| -> f64 { z.0.iter().map(|b| price_of(&nodes[b.node])).sum() };
        let cheaper = |a: &Zone, b: &Zone| {
            (a.1.len(), cost(a), a.0.len()).partial_cmp(&(b.1.len(), cost(b), b.0.len())).is_some_and(|c| c.is_le())
        };
        let mut orders = vec![Order::Cover, Order::Largest, Order::Cheapest(Arch::Amd64)];
        let has = |arch: Arch| node_ix.iter().any(|&n| nodes[n].arch == arch);
        if has(Arch::Amd64) && has(Arch::Arm64) && items.iter().any(|it| it.arch.is_none()) {
            orders.push(Order::Cheapest(Arch::Arm64));
        }
        let planned = |items: &[Item], order: Order| -> Zone {
            let mut z = fill_once(nodes, node_ix, items, o, order);
            downsize(&mut z.0, items, nodes, node_ix, o);
            z
        };
        let best = |items: &[Item]| -> (Order, Zone) {
            // The node-count plan first: the better of the first two orders by nodes.
            let mut found: Option<(Order, Zone)> = None;
            for &order in &orders {
                let z = planned(items, order);
                let keep = match (&found, order) {
                    (None, _) => true,
                    (Some((Order::Cover, f)), Order::Largest) => !better(f, &z),
                    (Some((_, f)), _) => !cheaper(f, &z),
                };
                if keep {
                    found = Some((order, z));
                }
            }
            found.unwrap_or((Order::Cover, (Vec::new(), Vec::new())))
        };
        if items.len() <= PILOT_ABOVE {
            best(items).1
        } else {
            let pilot: Vec<Item> = items.iter().filter(|it| it.system % PILOT_EVERY == 0).cloned().collect();
            let order = best(&pilot).0;
            let z = planned(items, order);
            if z.1.is_empty() || matches!(order, Order::Cover | Order::Largest) {
                z
            } else {
                // The pilot can misjudge how much room an order leaves: when the full plan leaves
                // replicas out, the cover's order (for fewest nodes) is planned too.
                let by_count = planned(items, Order::Cover);
                if cheaper(&z, &by_count) { z } else { by_count }
            }
        }
    } else if items.len() <= PILOT_ABOVE {
        let by_cover = fill_once(nodes, node_ix, items, o, Order::Cover);
        let largest = fill_once(nodes, node_ix, items, o, Order::Largest);
        if better(&by_cover, &largest) { by_cover } else { largest }
    } else {
        let pilot: Vec<Item> = items.iter().filter(|it| it.system % PILOT_EVERY == 0).cloned().collect();
        let order = if better(
            &fill_once(nodes, node_ix, &pilot, o, Order::Cover),
            &fill_once(nodes, node_ix, &pilot, o, Order::Largest),
        ) {
            Order::Cover
        } else {
            Order::Largest
        };
        fill_once(nodes, node_ix, items, o, order)
    };
    for ix in unplaced {
        let it = &items[ix];
        let reason = unplaced_reason(zone, nodes, node_ix, o, it);
        plan.unplaced.push(Unplaced { system: it.system, replica: it.replica, reason });
    }
    record(&bins, items, plan);
}

/// Moves the replicas of each node used, the dearest first, onto the cheapest node not used of
/// the same zone and architecture that holds them all (after headroom), when it costs less: the
/// same replicas stay together, so architectures and replicas apart still hold. The last nodes
/// a pass opens are often part-full, and a smaller node does.
fn downsize(bins: &mut [Bin], items: &[Item], nodes: &[Node], node_ix: &[usize], o: &Options) {
    let used: std::collections::BTreeSet<usize> = bins.iter().map(|b| b.node).collect();
    // Nodes not used, by (price, architecture, capacity, GPU model), cheapest first; prices are
    // never negative here ([`price_of`]), so their bits sort as they do.
    type Shape = (u64, Arch, Res, Option<String>);
    let shape = |n: usize| -> Shape {
        (price_of(&nodes[n]).to_bits(), nodes[n].arch, capacity(&nodes[n], o), nodes[n].gpu_model.clone())
    };
    let mut spare: BTreeMap<Shape, Vec<usize>> = BTreeMap::new();
    for &n in node_ix.iter().rev() {
        if !used.contains(&n) {
            spare.entry(shape(n)).or_default().push(n);
        }
    }
    let mut order: Vec<usize> = (0..bins.len()).collect();
    order.sort_by(|&a, &b| price_of(&nodes[bins[b].node]).total_cmp(&price_of(&nodes[bins[a].node])));
    for b in order {
        let bin = &bins[b];
        let mut load = [0u64; DIMS];
        for d in 0..DIMS {
            load[d] = bin.cap[d] - bin.free[d];
        }
        let (price, arch) = (price_of(&nodes[bin.node]), nodes[bin.node].arch);
        let devices = bin.devices_used();
        let Some(key) = spare
            .keys()
            .take_while(|k| f64::from_bits(k.0) < price)
            .find(|k| {
                k.1 == arch
                    && fits(&k.2, &load)
                    && device_count(k.2[GPU]) >= devices
                    && bin.items.iter().all(|&ix| model_ok(&items[ix].models, &k.3))
            })
            .cloned()
        else {
            continue;
        };
        let Some(n) = spare.get_mut(&key).and_then(Vec::pop) else { continue };
        if spare.get(&key).is_some_and(Vec::is_empty) {
            spare.remove(&key);
        }
        let old = bin.node;
        spare.entry(shape(old)).or_default().push(old);
        bins[b].move_to(n, key.2);
    }
}

/// What the nodes `plan` uses cost: `None` when no node of the input has a price (none is
/// invented) or when some node used has none.
pub(crate) fn cost_of(nodes: &[Node], plan: &Plan) -> Option<f64> {
    if nodes.iter().all(|n| n.price.is_none()) {
        return None;
    }
    let used: std::collections::BTreeSet<usize> = plan.placements.iter().map(|p| p.node).collect();
    used.into_iter().map(|n| nodes[n].price).sum()
}

fn run(nodes: &[Node], systems: &[System], o: &Options, s: Option<Baseline>) -> Plan {
    let mut plan = Plan::default();
    for (zone, (node_ix, items)) in zones(nodes, systems) {
        match s {
            None => fill_zone(zone, nodes, &node_ix, &items, o, &mut plan),
            Some(s) => pack_zone(zone, nodes, &node_ix, &items, o, s, &mut plan),
        }
    }
    plan.cost = cost_of(nodes, &plan);
    plan
}

/// The planner: see the module's documentation.
pub fn plan(nodes: &[Node], systems: &[System], o: &Options) -> Plan {
    run(nodes, systems, o, None)
}

/// First-fit decreasing: replicas by their largest normalized dimension, nodes in input order.
pub fn first_fit_decreasing(nodes: &[Node], systems: &[System], o: &Options) -> Plan {
    baseline(nodes, systems, o, Baseline { method: Method::FirstFit, nodes: NodeOrder::Input, items: ItemOrder::Max })
}

/// Best-fit decreasing: as first fit, but onto the open node with the least room left.
pub fn best_fit_decreasing(nodes: &[Node], systems: &[System], o: &Options) -> Plan {
    baseline(nodes, systems, o, Baseline { method: Method::BestFit, nodes: NodeOrder::Input, items: ItemOrder::Max })
}

/// One textbook baseline.
pub fn baseline(nodes: &[Node], systems: &[System], o: &Options, b: Baseline) -> Plan {
    run(nodes, systems, o, Some(b))
}

/// The best of the textbook baselines ([`Baseline::ALL`]): the one placing the most replicas,
/// then using the fewest nodes (the first such in that list).
pub fn best_baseline(nodes: &[Node], systems: &[System], o: &Options) -> (Baseline, Plan) {
    let mut best: Option<(Baseline, Plan)> = None;
    for b in Baseline::ALL {
        let p = baseline(nodes, systems, o, b);
        if best.as_ref().is_none_or(|(_, q)| (p.unplaced.len(), p.nodes_used) < (q.unplaced.len(), q.nodes_used)) {
            best = Some((b, p));
        }
    }
    let b = Baseline::ALL[0];
    best.unwrap_or_else(|| (b, baseline(nodes, systems, o, b)))
}

/// Where demand exceeds what a fleet has: a zone (and, within it, the replicas bound to one
/// architecture or to some GPU models) whose replicas together ask for more of a resource than
/// the nodes they may use have (after headroom). No plan places every replica then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub zone: String,
    /// Which replicas: "all", "amd64-only", "arm64-only" or "GPU models A|B".
    pub scope: String,
    /// The resource ([`crate::DIM_NAMES`]).
    pub resource: &'static str,
    /// In the resource's unit ([`crate::Res`]).
    pub demand: u64,
    pub capacity: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.resource {
            "cpu" => "millicores",
            "memory" => "MiB",
            "disk" => "GiB",
            _ => "thousandths of a GPU",
        };
        write!(
            f,
            "zone {}, {} replicas: {} asks {} {unit}, the nodes they may use have {} (short by {})",
            self.zone,
            self.scope,
            self.resource,
            self.demand,
            self.capacity,
            self.demand - self.capacity
        )
    }
}

/// Every [`Shortfall`] of the input, zone by zone.
pub fn shortfall(nodes: &[Node], systems: &[System], o: &Options) -> Vec<Shortfall> {
    let mut out = Vec::new();
    for (zone, (node_ix, items)) in zones(nodes, systems) {
        let mut scopes: Vec<(String, Vec<&Item>, Vec<usize>)> =
            vec![("all".into(), items.iter().collect(), node_ix.clone())];
        for (arch, name) in [(Arch::Amd64, "amd64-only"), (Arch::Arm64, "arm64-only")] {
            let mine: Vec<&Item> = items.iter().filter(|it| it.arch == Some(arch)).collect();
            if !mine.is_empty() {
                scopes.push((name.into(), mine, node_ix.iter().copied().filter(|&n| nodes[n].arch == arch).collect()));
            }
        }
        let mut specs: BTreeMap<Arc<[String]>, Vec<&Item>> = BTreeMap::new();
        for it in items.iter() {
            if let Some(m) = &it.models {
                specs.entry(m.clone()).or_default().push(it);
            }
        }
        for (models, mine) in specs {
            let able =
                node_ix.iter().copied().filter(|&n| model_ok(&Some(models.clone()), &nodes[n].gpu_model)).collect();
            scopes.push((format!("GPU models {}", models.join("|")), mine, able));
        }
        for (scope, mine, able) in scopes {
            let demand = total(&mine);
            let mut cap = [0u64; DIMS];
            for &n in &able {
                let c = capacity(&nodes[n], o);
                for d in 0..DIMS {
                    cap[d] = cap[d].saturating_add(c[d]);
                }
            }
            for d in 0..DIMS {
                if demand[d] > cap[d] {
                    out.push(Shortfall {
                        zone: zone.to_string(),
                        scope: scope.clone(),
                        resource: crate::DIM_NAMES[d],
                        demand: demand[d],
                        capacity: cap[d],
                    });
                }
            }
        }
    }
    out
}

/// Checks a plan: no node over capacity (after headroom), no GPU device over its thousandths and
/// a whole device to one replica alone, each replica on as many devices as its [`GpuNeed`]
/// says, zones, architectures and GPU models respected, no two replicas of a system on one
/// node, every replica placed or reported once. Returns what is wrong.
pub fn check(nodes: &[Node], systems: &[System], o: &Options, plan: &Plan) -> Result<(), String> {
    let mut used: BTreeMap<usize, Res> = BTreeMap::new();
    let mut device_load: BTreeMap<(usize, u8), u64> = BTreeMap::new();
    let mut seen: BTreeMap<(usize, u32), usize> = BTreeMap::new();
    let mut on_node: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    let known = |system: usize, replica: u32| systems.get(system).is_some_and(|s| replica < s.replicas);
    for p in &plan.placements {
        let (Some(s), Some(n)) = (systems.get(p.system), nodes.get(p.node)) else {
            return Err(format!("a placement names system {} on node {}, which the input lacks", p.system, p.node));
        };
        if !known(p.system, p.replica) {
            return Err(format!("{} has no replica {}", s.name, p.replica));
        }
        if s.zone != n.zone {
            return Err(format!(
                "{} replica {} in zone {} on node {} of zone {}",
                s.name, p.replica, s.zone, n.name, n.zone
            ));
        }
        if !arch_ok(s.arch, n.arch) {
            return Err(format!("{} needs {:?} and is on {} ({:?})", s.name, s.arch, n.name, n.arch));
        }
        if !s.gpu_models.is_empty() && !n.gpu_model.as_ref().is_some_and(|m| s.gpu_models.contains(m)) {
            return Err(format!(
                "{} runs on GPU models {} and is on {} ({})",
                s.name,
                s.gpu_models.join("|"),
                n.name,
                n.gpu_model.as_deref().unwrap_or("no model")
            ));
        }
        let gpu = GpuNeed::of(s.need[GPU]);
        let (devices, per) = match gpu {
            GpuNeed::None => (0, 0),
            GpuNeed::Share(m) => (1, m),
            GpuNeed::Whole(k) => (k, DEVICE),
        };
        let mut distinct = p.gpus.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() as u64 != devices || p.gpus.len() as u64 != devices {
            return Err(format!(
                "{} replica {} needs {devices} GPU device(s) ({gpu:?}) and is given {:?} on {}",
                s.name, p.replica, p.gpus, n.name
            ));
        }
        let have = n.capacity[GPU] / DEVICE;
        for &g in &p.gpus {
            if u64::from(g) >= have.min(MAX_DEVICES) {
                return Err(format!("{} replica {} on GPU {g} of {}, which has {have}", s.name, p.replica, n.name));
            }
            *device_load.entry((p.node, g)).or_default() += per;
        }
        let u = used.entry(p.node).or_default();
        for d in 0..DIMS {
            u[d] += s.need[d];
        }
        u[GPU] += devices * per - s.need[GPU];
        *seen.entry((p.system, p.replica)).or_default() += 1;
        *on_node.entry((p.system, p.node)).or_default() += 1;
    }
    for (n, u) in &used {
        let c = capacity(&nodes[*n], o);
        if !fits(&c, u) {
            return Err(format!("node {} over capacity: {u:?} > {c:?}", nodes[*n].name));
        }
    }
    if let Some(((n, g), load)) = device_load.iter().find(|(_, l)| **l > DEVICE) {
        return Err(format!("GPU {g} of node {} holds {load} thousandths", nodes[*n].name));
    }
    if let Some(((s, n), k)) = on_node.iter().find(|(_, k)| **k > 1) {
        return Err(format!("{k} replicas of {} on node {}", systems[*s].name, nodes[*n].name));
    }
    for u in &plan.unplaced {
        if !known(u.system, u.replica) {
            return Err(format!("unplaced system {} replica {}, which the input lacks", u.system, u.replica));
        }
        *seen.entry((u.system, u.replica)).or_default() += 1;
    }
    for (s, sys) in systems.iter().enumerate() {
        for r in 0..sys.replicas {
            match seen.get(&(s, r)) {
                Some(1) => {}
                other => return Err(format!("{} replica {r} accounted for {other:?} times", sys.name)),
            }
        }
    }
    if used.len() != plan.nodes_used {
        return Err(format!("plan says {} nodes, uses {}", plan.nodes_used, used.len()));
    }
    let cost = cost_of(nodes, plan);
    let same = match (cost, plan.cost) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (a, b) => a.is_none() && b.is_none(),
    };
    if !same {
        return Err(format!("plan says it costs {:?}, its nodes cost {cost:?}", plan.cost));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str, cpu: u64, mem: u64, zone: &str, arch: Arch) -> Node {
        Node { name: name.into(), capacity: [cpu, mem, 1000, 0], arch, zone: zone.into(), price: None, gpu_model: None }
    }

    fn sys(name: &str, cpu: u64, mem: u64, replicas: u32, zone: &str, arch: Option<Arch>) -> System {
        System {
            name: name.into(),
            department: "d".into(),
            need: [cpu, mem, 10, 0],
            replicas,
            zone: zone.into(),
            arch,
            gpu_models: Vec::new(),
        }
    }

    /// The bound before it mixed resources and architectures (kept to show the new one is never
    /// weaker): per zone, the largest of the per-resource bound over all replicas, the per-arch
    /// ones added, and the most replicas of one system.
    fn simple_bound(nodes: &[Node], systems: &[System], o: &Options) -> usize {
        let dimension_bound = |demand: &Res, caps: &[Res]| -> usize {
            let mut worst = 0;
            for d in 0..DIMS {
                if demand[d] == 0 {
                    continue;
                }
                let mut c: Vec<u64> = caps.iter().map(|c| c[d]).collect();
                c.sort_unstable_by(|a, b| b.cmp(a));
                let mut sum = 0u128;
                let mut k = c.len();
                for (i, v) in c.iter().enumerate() {
                    sum += u128::from(*v);
                    if sum >= u128::from(demand[d]) {
                        k = i + 1;
                        break;
                    }
                }
                worst = worst.max(k);
            }
            worst
        };
        let mut lb = 0;
        for (node_ix, items) in zones(nodes, systems).values() {
            let caps: Vec<(Arch, Res)> = node_ix.iter().map(|&i| (nodes[i].arch, capacity(&nodes[i], o))).collect();
            let placeable: Vec<&Item> =
                items.iter().filter(|it| node_ix.iter().any(|&n| hosts(it, &nodes[n], o))).collect();
            let all: Vec<Res> = caps.iter().map(|c| c.1).collect();
            let bound_all = dimension_bound(&total(&placeable), &all);
            let per_arch = |arch: Arch| {
                let only: Vec<&Item> = placeable.iter().copied().filter(|it| it.arch == Some(arch)).collect();
                let c: Vec<Res> = caps.iter().filter(|(a, _)| *a == arch).map(|c| c.1).collect();
                dimension_bound(&total(&only), &c)
            };
            let bound_arch = per_arch(Arch::Amd64) + per_arch(Arch::Arm64);
            let spread = placeable.iter().map(|it| it.replica as usize + 1).max().unwrap_or(0);
            lb += bound_all.max(bound_arch).max(spread);
        }
        lb
    }

    /// The fewest nodes a plan placing every replica can use, by trying every placement (tiny
    /// fleets only); `None` when no plan places them all.
    fn optimum(nodes: &[Node], systems: &[System], o: &Options) -> Option<usize> {
        cheapest(nodes, systems, o, |_| 1.0).map(|n| n as usize)
    }

    /// The least a plan placing every replica can cost, each node used costing `price(node)`, by
    /// trying every placement (tiny fleets only); `None` when no plan places them all.
    /// Device by device and with GPU models, written apart from the planner's [`Bin`].
    fn cheapest(nodes: &[Node], systems: &[System], o: &Options, price: impl Fn(usize) -> f64) -> Option<f64> {
        let reps: Vec<(usize, &System)> =
            systems.iter().enumerate().flat_map(|(s, sys)| (0..sys.replicas).map(move |_| (s, sys))).collect();
        let caps: Vec<Res> = nodes.iter().map(|n| capacity(n, o)).collect();
        let devices: Vec<Vec<u64>> = nodes.iter().map(|n| vec![1000; (n.capacity[GPU] / 1000) as usize]).collect();
        struct Search<'a> {
            reps: &'a [(usize, &'a System)],
            nodes: &'a [Node],
            price: &'a dyn Fn(usize) -> f64,
            free: Vec<Res>,
            devices: Vec<Vec<u64>>,
            on: Vec<Vec<usize>>,
            best: Option<f64>,
        }
        fn go(k: usize, cost: f64, x: &mut Search) {
            if x.best.is_some_and(|b| cost >= b) {
                return;
            }
            let Some(&(s, sys)) = x.reps.get(k) else {
                x.best = Some(cost);
                return;
            };
            let mut need = sys.need;
            need[GPU] = 0;
            for n in 0..x.nodes.len() {
                let node = &x.nodes[n];
                if node.zone != sys.zone
                    || !arch_ok(sys.arch, node.arch)
                    || !(sys.gpu_models.is_empty()
                        || node.gpu_model.as_ref().is_some_and(|m| sys.gpu_models.contains(m)))
                    || !fits(&x.free[n], &need)
                    || x.on[n].contains(&s)
                {
                    continue;
                }
                // The device choices: for a share, each distinct free level it fits; for whole
                // devices, any that many free ones (all alike).
                let choices: Vec<(Vec<usize>, u64)> = match GpuNeed::of(sys.need[GPU]) {
                    GpuNeed::None => vec![(Vec::new(), 0)],
                    GpuNeed::Share(m) => {
                        let mut seen = Vec::new();
                        let mut c = Vec::new();
                        for (i, f) in x.devices[n].iter().enumerate() {
                            if *f >= m && !seen.contains(f) {
                                seen.push(*f);
                                c.push((vec![i], m));
                            }
                        }
                        c
                    }
                    GpuNeed::Whole(w) => {
                        let free: Vec<usize> = (0..x.devices[n].len()).filter(|&i| x.devices[n][i] == 1000).collect();
                        if (free.len() as u64) < w { Vec::new() } else { vec![(free[..w as usize].to_vec(), 1000)] }
                    }
                };
                let opened = if x.on[n].is_empty() { (x.price)(n) } else { 0.0 };
                for (devs, per) in choices {
                    for d in 0..DIMS {
                        x.free[n][d] -= need[d];
                    }
                    for &i in &devs {
                        x.devices[n][i] -= per;
                    }
                    x.on[n].push(s);
                    go(k + 1, cost + opened, x);
                    x.on[n].pop();
                    for &i in &devs {
                        x.devices[n][i] += per;
                    }
                    for d in 0..DIMS {
                        x.free[n][d] += need[d];
                    }
                }
            }
        }
        let mut x = Search {
            reps: &reps,
            nodes,
            price: &price,
            free: caps,
            devices,
            on: vec![Vec::new(); nodes.len()],
            best: None,
        };
        go(0, 0.0, &mut x);
        x.best
    }

    fn shaped(name: &str, cap: Res, arch: Arch) -> Node {
        Node { name: name.into(), capacity: cap, arch, zone: "a".into(), price: None, gpu_model: None }
    }

    fn needs(name: &str, need: Res, arch: Option<Arch>) -> System {
        System {
            name: name.into(),
            department: "d".into(),
            need,
            replicas: 1,
            zone: "a".into(),
            arch,
            gpu_models: Vec::new(),
        }
    }

    #[test]
    fn the_bound_mixes_resources_when_nodes_are_rich_in_different_ones() {
        // Two cpu-rich and two memory-rich nodes; two cpu-heavy and two memory-heavy replicas.
        // Each resource alone fits on one node (1,000 of 1,000), but no node has 1,000 of both:
        // weighing cpu and memory alike, every node weighs 1,100 and the replicas 2,000.
        let nodes = vec![
            shaped("c1", [1000, 100, 0, 0], Arch::Amd64),
            shaped("c2", [1000, 100, 0, 0], Arch::Amd64),
            shaped("m1", [100, 1000, 0, 0], Arch::Amd64),
            shaped("m2", [100, 1000, 0, 0], Arch::Amd64),
        ];
        let systems = vec![
            needs("cpu1", [450, 50, 0, 0], None),
            needs("cpu2", [450, 50, 0, 0], None),
            needs("mem1", [50, 450, 0, 0], None),
            needs("mem2", [50, 450, 0, 0], None),
        ];
        let o = Options::default();
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!(optimum(&nodes, &systems, &o), Some(2));
        assert_eq!((simple_bound(&nodes, &systems, &o), lower_bound(&nodes, &systems, &o), p.nodes_used), (1, 2, 2));
    }

    #[test]
    fn the_bound_counts_either_architecture_in_every_resource_with_the_arch_only_replicas() {
        // amd64 nodes are rich in cpu, arm64 ones in memory. The amd64-only replicas need both
        // amd64 nodes for cpu; the replicas that take either need memory only arm64 nodes have.
        // Per resource over all nodes: 2; per architecture: 2 amd64 + 0 arm64. Both at once: 4.
        let nodes = vec![
            shaped("x1", [1000, 100, 0, 0], Arch::Amd64),
            shaped("x2", [1000, 100, 0, 0], Arch::Amd64),
            shaped("k1", [100, 1000, 0, 0], Arch::Arm64),
            shaped("k2", [100, 1000, 0, 0], Arch::Arm64),
        ];
        let systems = vec![
            needs("x-only1", [900, 50, 0, 0], Some(Arch::Amd64)),
            needs("x-only2", [900, 50, 0, 0], Some(Arch::Amd64)),
            needs("any1", [50, 900, 0, 0], None),
            needs("any2", [50, 900, 0, 0], None),
        ];
        let o = Options::default();
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!(optimum(&nodes, &systems, &o), Some(4));
        assert_eq!((simple_bound(&nodes, &systems, &o), lower_bound(&nodes, &systems, &o), p.nodes_used), (2, 4, 4));
    }

    #[test]
    fn replicas_over_half_the_largest_node_each_need_their_own() {
        // Three replicas of 60% of the cpu of the largest amd64 node: 1,800 of cpu fits on two
        // nodes by volume, but no two share a node. Two arm64-only replicas of more than half
        // the memory of the largest arm64 node need two more: 3 + 2 (by volume, 2 + 2).
        let mut nodes: Vec<Node> = (0..4).map(|i| shaped(&format!("x{i}"), [1000, 1000, 0, 0], Arch::Amd64)).collect();
        nodes.push(shaped("x-small", [500, 500, 0, 0], Arch::Amd64));
        nodes.extend((0..3).map(|i| shaped(&format!("k{i}"), [800, 800, 0, 0], Arch::Arm64)));
        let mut systems: Vec<System> =
            (0..3).map(|i| needs(&format!("big{i}"), [600, 100, 0, 0], Some(Arch::Amd64))).collect();
        systems.extend((0..2).map(|i| needs(&format!("wide{i}"), [100, 500, 0, 0], Some(Arch::Arm64))));
        let o = Options::default();
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!(optimum(&nodes, &systems, &o), Some(5));
        assert_eq!((simple_bound(&nodes, &systems, &o), lower_bound(&nodes, &systems, &o), p.nodes_used), (4, 5, 5));
    }

    #[test]
    fn the_bound_says_nothing_beyond_the_nodes_there_are() {
        // More demand than the zone holds: no plan places it all, and the covers stop at the
        // zone's two nodes.
        let nodes = vec![shaped("x1", [1000, 1000, 0, 0], Arch::Amd64), shaped("x2", [1000, 1000, 0, 0], Arch::Amd64)];
        let systems: Vec<System> = (0..6).map(|i| needs(&format!("s{i}"), [400, 100, 0, 0], None)).collect();
        assert_eq!(lower_bound(&nodes, &systems, &Options::default()), 2);
    }

    const MODELS: [&str; 3] = ["T4", "V100M16", "V100M32"];

    /// GPU needs as the trace has them: none (most), shares of one device, and whole devices.
    fn gpu_needs() -> impl Strategy<Value = u64> {
        proptest::sample::select(vec![0, 0, 0, 0, 250, 460, 500, 700, 1000, 2000, 4000])
    }

    /// The GPU models a system with GPU need `g` asks for: mostly any, sometimes one or two.
    fn spec_of(g: u64, pick: u8) -> Vec<String> {
        match (g, pick) {
            (0, _) | (_, 0..=4) => Vec::new(),
            (_, 5) => vec![MODELS[0].into()],
            (_, 6) => vec![MODELS[1].into(), MODELS[2].into()],
            _ => vec![MODELS[2].into()],
        }
    }

    fn arb_tiny() -> impl Strategy<Value = (Vec<Node>, Vec<System>, f64)> {
        let nodes = proptest::collection::vec((1u64..9, 1u64..9, 0u64..3, any::<bool>(), 0usize..2, 0usize..3), 1..6)
            .prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (c, m, g, arm, z, model))| Node {
                        name: format!("n{i}"),
                        capacity: [c * 1000, m * 1000, 100, g * 1000],
                        arch: if arm { Arch::Arm64 } else { Arch::Amd64 },
                        zone: ["a", "b"][z].into(),
                        price: None,
                        gpu_model: (g > 0).then(|| MODELS[model].to_string()),
                    })
                    .collect::<Vec<_>>()
            });
        let systems = proptest::collection::vec(
            (1u64..6000, 1u64..6000, 0u64..60, gpu_needs(), 1u32..3, 0u8..3, 0usize..2, 0u8..8),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (c, m, k, g, r, a, z, spec))| System {
                    name: format!("s{i}"),
                    department: "d".into(),
                    need: [c, m, k, g],
                    replicas: r,
                    zone: ["a", "b"][z].into(),
                    arch: [None, Some(Arch::Amd64), Some(Arch::Arm64)][a as usize],
                    gpu_models: spec_of(g, spec),
                })
                .collect::<Vec<_>>()
        });
        (nodes, systems, 0.5f64..1.0)
    }

    #[test]
    fn a_plan_the_pooled_gpu_model_accepted_is_refused_device_by_device() {
        // One node of two devices and three shares of 0.6: 1.8 of 2 GPUs in sum, but no device
        // holds two of them.
        let n = Node { gpu_model: Some("T4".into()), ..shaped("n", [8000, 8192, 100, 2000], Arch::Amd64) };
        let two = Node { name: "m".into(), ..n.clone() };
        let s: Vec<System> = (0..3).map(|i| needs(&format!("s{i}"), [100, 100, 1, 600], None)).collect();
        let o = Options::default();
        let on = |node: usize, gpus: Vec<u8>, system: usize| Placement { system, replica: 0, node, gpus };
        let pooled = Plan {
            placements: vec![on(0, vec![0], 0), on(0, vec![1], 1), on(0, vec![1], 2)],
            nodes_used: 1,
            ..Plan::default()
        };
        let nodes = vec![n, two];
        assert_eq!(check(&nodes, &s, &o, &pooled), Err("GPU 1 of node n holds 1200 thousandths".to_string()));
        // Whole devices are each to one replica, and a share sits on exactly one device.
        let whole = vec![needs("w", [100, 100, 1, 2000], None)];
        let half = Plan { placements: vec![on(0, vec![0], 0)], nodes_used: 1, ..Plan::default() };
        assert!(check(&nodes, &whole, &o, &half).is_err_and(|e| e.contains("needs 2 GPU device(s)")));
        // The planner and every baseline need both nodes, and say so.
        let mut plans = vec![plan(&nodes, &s, &o), crate::fgd::fgd(&nodes, &s, &o)];
        plans.extend(Baseline::ALL.iter().map(|&b| baseline(&nodes, &s, &o, b)));
        for p in plans {
            assert_eq!(check(&nodes, &s, &o, &p), Ok(()));
            assert_eq!((p.nodes_used, p.unplaced.len()), (2, 0), "{p:?}");
        }
        // A model the replica does not take is never used, and the reason names the model.
        let v100 = vec![System { gpu_models: vec!["V100M32".into()], ..needs("v", [100, 100, 1, 500], None) }];
        let p = plan(&nodes, &v100, &o);
        assert_eq!(p.unplaced.len(), 1);
        assert_eq!(p.unplaced[0].reason, "no node of its zone and architecture has a GPU of model V100M32");
    }

    #[test]
    fn a_known_optimum_is_found() {
        // Six items of 50% of a node: three nodes, and the bound says three.
        let nodes: Vec<Node> = (0..6).map(|i| node(&format!("n{i}"), 1000, 1000, "a", Arch::Amd64)).collect();
        let systems: Vec<System> = (0..6).map(|i| sys(&format!("s{i}"), 500, 500, 1, "a", None)).collect();
        let o = Options::default();
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!((p.nodes_used, lower_bound(&nodes, &systems, &o)), (3, 3));
        // Complementary shapes pair up: cpu-heavy with memory-heavy.
        let systems = vec![
            sys("c1", 700, 300, 1, "a", None),
            sys("m1", 300, 700, 1, "a", None),
            sys("c2", 700, 300, 1, "a", None),
            sys("m2", 300, 700, 1, "a", None),
        ];
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!(p.nodes_used, 2);
    }

    #[test]
    fn zones_architectures_replicas_and_headroom_are_kept() {
        let nodes = vec![
            node("x1", 1000, 1000, "intranet", Arch::Amd64),
            node("x2", 1000, 1000, "intranet", Arch::Amd64),
            node("k1", 1000, 1000, "intranet", Arch::Arm64),
            node("e1", 1000, 1000, "extranet", Arch::Amd64),
        ];
        let systems = vec![
            sys("web", 300, 300, 2, "intranet", Some(Arch::Amd64)),
            sys("db", 300, 300, 1, "intranet", Some(Arch::Arm64)),
            sys("portal", 300, 300, 1, "extranet", None),
            sys("huge", 900, 100, 1, "intranet", None),
            sys("nowhere", 100, 100, 1, "internet", None),
        ];
        let o = Options { headroom: 0.7 };
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        let reasons: Vec<_> = p.unplaced.iter().map(|u| (systems[u.system].name.as_str(), u.reason.clone())).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons.iter().any(|(n, r)| *n == "huge" && r.contains("larger than any node")), "{reasons:?}");
        assert!(reasons.iter().any(|(n, r)| *n == "nowhere" && r.contains("no nodes")), "{reasons:?}");
        // web's two replicas are on two amd64 nodes; db on the arm64 node.
        assert_eq!(p.nodes_used, 4);
    }

    fn priced(name: &str, cap: Res, arch: Arch, price: f64) -> Node {
        Node { price: Some(price), ..shaped(name, cap, arch) }
    }

    fn unpriced(nodes: &[Node]) -> Vec<Node> {
        nodes.iter().map(|n| Node { price: None, ..n.clone() }).collect()
    }

    #[test]
    fn two_small_cheap_nodes_are_chosen_over_one_big_dear_one() {
        // One node of 16 cores for 1,000 a month, two of 8 cores for 300 each; 12 cores to place.
        // The fewest nodes is the big one (1,000); the cheapest plan is the two small (600).
        let nodes = vec![
            priced("big", [16_000, 65_536, 1000, 0], Arch::Amd64, 1000.0),
            priced("small-1", [8000, 32_768, 1000, 0], Arch::Amd64, 300.0),
            priced("small-2", [8000, 32_768, 1000, 0], Arch::Amd64, 300.0),
        ];
        let systems = vec![needs("web", [6000, 8192, 10, 0], None), needs("db", [6000, 8192, 10, 0], None)];
        let o = Options::default();
        let by_count = plan(&unpriced(&nodes), &systems, &o);
        assert_eq!((by_count.nodes_used, by_count.cost), (1, None));
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!((p.nodes_used, p.cost), (2, Some(600.0)));
        assert!(p.placements.iter().all(|pl| nodes[pl.node].name != "big"), "{p:?}");
        assert_eq!(cheapest(&nodes, &systems, &o, |n| nodes[n].price.unwrap()), Some(600.0));
        // The bound: 12 cores bought at 37.5 a core (the small nodes' price per core).
        let b = cost_lower_bound(&nodes, &systems, &o).unwrap();
        assert!((449.999..=450.0).contains(&b), "{b}");
        // The baselines report what their nodes cost too.
        assert_eq!(first_fit_decreasing(&nodes, &systems, &o).cost, Some(1000.0));
    }

    #[test]
    fn replicas_that_take_either_architecture_go_where_it_is_cheaper() {
        // arm64 nodes 20% cheaper than amd64 ones of the same size: the replicas that take either
        // go to arm64. Counting nodes alone, amd64 nodes are filled first.
        let mut nodes: Vec<Node> =
            (0..2).map(|i| priced(&format!("x{i}"), [8000, 32_768, 1000, 0], Arch::Amd64, 1000.0)).collect();
        nodes.extend((0..2).map(|i| priced(&format!("k{i}"), [8000, 32_768, 1000, 0], Arch::Arm64, 800.0)));
        let mut systems = vec![needs("x-only", [4000, 4096, 10, 0], Some(Arch::Amd64))];
        systems.extend((0..3).map(|i| needs(&format!("any{i}"), [4000, 4096, 10, 0], None)));
        let o = Options::default();
        let by_count = plan(&unpriced(&nodes), &systems, &o);
        assert_eq!(by_count.nodes_used, 2);
        assert_eq!(cost_of(&nodes, &by_count), Some(2000.0)); // both amd64
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        // x-only needs an amd64 node; the other three fill it and one arm64 node.
        assert_eq!((p.nodes_used, p.cost), (2, Some(1800.0)));
        let systems: Vec<System> = (0..4).map(|i| needs(&format!("any{i}"), [4000, 4096, 10, 0], None)).collect();
        assert_eq!(cost_of(&nodes, &plan(&unpriced(&nodes), &systems, &o)), Some(2000.0));
        let p = plan(&nodes, &systems, &o);
        check(&nodes, &systems, &o, &p).unwrap();
        assert_eq!((p.nodes_used, p.cost), (2, Some(1600.0)));
        assert_eq!(cost_lower_bound(&nodes, &systems, &o).map(|b| b.round()), Some(1600.0));
    }

    #[test]
    fn a_zone_with_an_unpriced_node_is_planned_for_fewest_nodes_and_has_no_cost_bound() {
        let mut nodes = vec![
            priced("big", [16_000, 65_536, 1000, 0], Arch::Amd64, 1000.0),
            priced("small-1", [8000, 32_768, 1000, 0], Arch::Amd64, 300.0),
            priced("small-2", [8000, 32_768, 1000, 0], Arch::Amd64, 300.0),
        ];
        nodes[1].price = None;
        let systems = vec![needs("web", [6000, 8192, 10, 0], None), needs("db", [6000, 8192, 10, 0], None)];
        let o = Options::default();
        let p = plan(&nodes, &systems, &o);
        assert_eq!(p.placements, plan(&unpriced(&nodes), &systems, &o).placements);
        assert_eq!((p.nodes_used, p.cost), (1, Some(1000.0)));
        assert_eq!(cost_lower_bound(&nodes, &systems, &o), None);
        // No price anywhere: no cost, never a made-up one.
        let p = plan(&unpriced(&nodes), &systems, &o);
        assert_eq!((p.cost, cost_lower_bound(&unpriced(&nodes), &systems, &o)), (None, None));
        assert_eq!(cost_lower_bound(&unpriced(&nodes), &[], &o), Some(0.0));
    }

    /// Tiny fleets (as [`arb_tiny`]) with a price on every node, from 0 up.
    fn arb_tiny_priced() -> impl Strategy<Value = (Vec<Node>, Vec<System>, f64)> {
        (
            arb_tiny(),
            proptest::collection::vec(prop_oneof![Just(0.0), 0.0f64..1000.0, (1u32..20).prop_map(f64::from)], 6),
        )
            .prop_map(|((nodes, systems, h), prices)| {
                let nodes = nodes.into_iter().zip(prices).map(|(n, p)| Node { price: Some(p), ..n }).collect();
                (nodes, systems, h)
            })
    }

    fn arb_fleet() -> impl Strategy<Value = (Vec<Node>, Vec<System>, f64)> {
        let zones = ["a", "b"];
        let nodes =
            proptest::collection::vec((1u64..64, 1u64..256, 0usize..2, any::<bool>(), 0u64..9, 0usize..3), 1..12)
                .prop_map(move |v| {
                    v.into_iter()
                        .enumerate()
                        .map(|(i, (c, m, z, arm, g, model))| Node {
                            name: format!("n{i}"),
                            capacity: [c * 1000, m * 1024, 500, if g > 4 { 0 } else { g * 1000 }],
                            arch: if arm { Arch::Arm64 } else { Arch::Amd64 },
                            zone: zones[z].into(),
                            price: None,
                            gpu_model: (g > 0 && g <= 4).then(|| MODELS[model].to_string()),
                        })
                        .collect::<Vec<_>>()
                });
        let systems = proptest::collection::vec(
            (1u64..32_000, 1u64..64 * 1024, 1u32..4, 0usize..2, 0u8..3, gpu_needs(), 0u8..8),
            0..40,
        )
        .prop_map(move |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (c, m, r, z, a, g, spec))| System {
                    name: format!("s{i}"),
                    department: "d".into(),
                    need: [c, m, 10, g],
                    replicas: r,
                    zone: zones[z].into(),
                    arch: [None, Some(Arch::Amd64), Some(Arch::Arm64)][a as usize],
                    gpu_models: spec_of(g, spec),
                })
                .collect::<Vec<_>>()
        });
        (nodes, systems, 0.5f64..1.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Every plan is valid, and never below the bound for the replicas it placed.
        #[test]
        fn plans_are_valid_and_above_the_bound((nodes, systems, h) in arb_fleet()) {
            let o = Options { headroom: h };
            let mut plans = vec![plan(&nodes, &systems, &o), crate::fgd::fgd(&nodes, &systems, &o)];
            plans.extend(Baseline::ALL.iter().map(|&b| baseline(&nodes, &systems, &o, b)));
            for p in plans {
                prop_assert_eq!(check(&nodes, &systems, &o, &p), Ok(()));
                if p.unplaced.is_empty() {
                    prop_assert!(p.nodes_used >= lower_bound(&nodes, &systems, &o));
                }
            }
        }

        /// The bound is never weaker than the per-resource one it replaced.
        #[test]
        fn the_bound_is_at_least_the_simple_one((nodes, systems, h) in arb_fleet()) {
            let o = Options { headroom: h };
            prop_assert!(lower_bound(&nodes, &systems, &o) >= simple_bound(&nodes, &systems, &o));
        }

        /// On priced fleets small enough to try every placement, the cost bound is at most the
        /// least cost, and the planner, when it places everything, costs at least that.
        #[test]
        fn the_cost_bound_is_at_most_the_least_cost((nodes, systems, h) in arb_tiny_priced()) {
            let o = Options { headroom: h };
            let bound = cost_lower_bound(&nodes, &systems, &o);
            prop_assert!(bound.is_some());
            if let Some(least) = cheapest(&nodes, &systems, &o, |n| nodes[n].price.unwrap_or(0.0)) {
                prop_assert!(bound.unwrap_or(f64::INFINITY) <= least, "bound {:?} > least {}", bound, least);
                let p = plan(&nodes, &systems, &o);
                prop_assert_eq!(check(&nodes, &systems, &o, &p), Ok(()));
                if p.unplaced.is_empty() {
                    prop_assert!(p.cost.unwrap_or(0.0) >= least * (1.0 - 1e-9));
                }
            }
        }

        /// With every node priced, plans are valid, never below the cost bound, and never dearer
        /// than the plan for fewest nodes when they leave as many replicas unplaced.
        #[test]
        fn priced_plans_are_valid_above_the_cost_bound_and_no_dearer((nodes, systems, h) in arb_fleet(), seed in any::<u64>()) {
            let o = Options { headroom: h };
            let mut r = crate::fleet::Rng::new(seed);
            let nodes: Vec<Node> = nodes
                .into_iter()
                .map(|n| {
                    let p = (n.capacity[0] as f64 * 0.03 + n.capacity[1] as f64 / 1024.0 * 5.0) * (0.5 + r.unit());
                    Node { price: Some(p.round()), ..n }
                })
                .collect();
            let p = plan(&nodes, &systems, &o);
            prop_assert_eq!(check(&nodes, &systems, &o, &p), Ok(()));
            let bound = cost_lower_bound(&nodes, &systems, &o).unwrap_or(f64::INFINITY);
            if p.unplaced.is_empty() {
                prop_assert!(p.cost.unwrap_or(0.0) >= bound);
            }
            let by_count = plan(&unpriced(&nodes), &systems, &o);
            if by_count.unplaced.len() == p.unplaced.len() {
                let c = cost_of(&nodes, &by_count).unwrap_or(0.0);
                prop_assert!(p.cost.unwrap_or(0.0) <= c + 1e-6, "{:?} > {}", p.cost, c);
            }
        }

        /// On fleets small enough to try every placement, the bound is at most the optimum, and
        /// the planner, when it places everything, at least the optimum.
        #[test]
        fn the_bound_is_at_most_the_optimum((nodes, systems, h) in arb_tiny()) {
            let o = Options { headroom: h };
            if let Some(opt) = optimum(&nodes, &systems, &o) {
                prop_assert!(lower_bound(&nodes, &systems, &o) <= opt);
                let p = plan(&nodes, &systems, &o);
                prop_assert_eq!(check(&nodes, &systems, &o, &p), Ok(()));
                if p.unplaced.is_empty() {
                    prop_assert!(p.nodes_used >= opt);
                }
            }
        }
    }
}
