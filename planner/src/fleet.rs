//! Generated fleets for the benchmark: seeded, so every run plans the same fleet.
//!
//! Distributions (docs/performance.md repeats them): each old server hosts 1–4 systems; a
//! system asks for 0.5–16 cores (log-uniform), 1–8 GiB of memory per core, 10–500 GiB of disk,
//! and a GPU (a quarter to a whole one) one time in 50; a fifth of the systems run 2 or 3
//! replicas; zones are intranet 50%, extranet 40%, internet-access 10%; architectures amd64 70%,
//! arm64 20%, either 10%. The shared pool has, per zone and architecture, enough nodes of four
//! sizes (32c/128Gi, 64c/256Gi, 96c/384Gi, 128c/512Gi with a fifth of them holding 4 GPUs) to
//! hold 2.5 times what is asked (with 70% headroom, 1.75 times).
//!
//! Priced fleets ([`price`]): a node costs 30 a core, 5 a GiB of memory and 1,000 a GPU a
//! month, arm64 nodes 20% less (32c/128Gi amd64 1,600; 128c/512Gi with 4 GPUs 10,400; disk is
//! not priced, so every node has its 4 TB at no charge).

#![allow(clippy::needless_range_loop)] // resources are fixed-size vectors: loops over the dimension read as the arithmetic does

use crate::{Arch, Node, System};

/// A small, fast, seeded generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

const ZONES: [(&str, f64); 3] = [("intranet", 0.5), ("extranet", 0.4), ("internet-access", 0.1)];

fn pick_zone(r: &mut Rng) -> &'static str {
    let u = r.unit();
    if u < ZONES[0].1 {
        ZONES[0].0
    } else if u < ZONES[0].1 + ZONES[1].1 {
        ZONES[1].0
    } else {
        ZONES[2].0
    }
}

/// The systems of `servers` old servers, and a shared pool sized to hold them.
pub fn generate(servers: usize, seed: u64) -> (Vec<Node>, Vec<System>) {
    let mut r = Rng::new(seed);
    let mut systems = Vec::new();
    for s in 0..servers {
        for k in 0..r.range(1, 4) {
            let cores = (0.5f64 * 32f64.powf(r.unit())).max(0.5);
            let cpu = (cores * 1000.0) as u64;
            let mem = (cores * r.range(1, 8) as f64 * 1024.0) as u64;
            let gpu = if r.range(0, 49) == 0 { r.range(1, 4) * 250 } else { 0 };
            let replicas = if r.unit() < 0.2 { r.range(2, 3) as u32 } else { 1 };
            let a = r.unit();
            let arch = if a < 0.7 {
                Some(Arch::Amd64)
            } else if a < 0.9 {
                Some(Arch::Arm64)
            } else {
                None
            };
            systems.push(System {
                name: format!("sys-{s}-{k}"),
                department: format!("dept-{}", s % 40),
                need: [cpu, mem, r.range(10, 500), gpu],
                replicas,
                zone: pick_zone(&mut r).into(),
                arch,
                gpu_models: Vec::new(),
            });
        }
    }
    // The pool: per zone and architecture, nodes until 2.5x the demand of what must go there
    // (systems that take either architecture counted on amd64).
    let mut nodes = Vec::new();
    let sizes: [(u64, u64); 4] = [(32, 128), (64, 256), (96, 384), (128, 512)];
    for (zone, _) in ZONES {
        for arch in [Arch::Amd64, Arch::Arm64] {
            let mut demand = [0u64; crate::DIMS];
            for s in systems.iter().filter(|s| s.zone == zone && s.arch.unwrap_or(Arch::Amd64) == arch) {
                for (d, v) in demand.iter_mut().enumerate() {
                    *v += s.need[d] * u64::from(s.replicas);
                }
            }
            let mut have = [0u64; crate::DIMS];
            let enough = |have: &[u64; crate::DIMS]| (0..crate::DIMS).all(|d| have[d] as f64 >= 2.5 * demand[d] as f64);
            while !enough(&have) {
                let (c, m) = sizes[r.range(0, 3) as usize];
                let gpu = if c == 128 && r.range(0, 4) == 0 { 4000 } else { 0 };
                let cap = [c * 1000, m * 1024, 4000, gpu];
                for d in 0..crate::DIMS {
                    have[d] += cap[d];
                }
                nodes.push(Node {
                    name: format!("{zone}-{}-{}", if arch == Arch::Amd64 { "x86" } else { "arm" }, nodes.len()),
                    capacity: cap,
                    arch,
                    zone: zone.into(),
                    price: None,
                    gpu_model: None,
                });
            }
        }
    }
    (nodes, systems)
}

/// A node's monthly price in the priced fleets: 30 a core, 5 a GiB of memory and 1,000 a GPU,
/// 20% less for arm64.
pub fn price(n: &Node) -> f64 {
    let c = &n.capacity;
    let p = 30.0 * c[0] as f64 / 1000.0 + 5.0 * c[1] as f64 / 1024.0 + 1000.0 * c[3] as f64 / 1000.0;
    if n.arch == Arch::Arm64 { 0.8 * p } else { p }
}
