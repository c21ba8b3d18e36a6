//! `zhengyun-plan`: plans a consolidation from the CSV inventory a cloud office fills in
//! offline (planner/src/inventory.rs describes the columns) and prints it as Markdown.
//!
//!     zhengyun-plan NODES.csv SYSTEMS.csv [HEADROOM]      (headroom 0.7 keeps 30% free)

#![forbid(unsafe_code)]

use zhengyun_planner::{Options, inventory, lower_bound, pack, plan};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: zhengyun-plan NODES.csv SYSTEMS.csv [HEADROOM]");
        std::process::exit(2);
    }
    let read = |p: &str| match std::fs::read_to_string(p) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{p}: {e}");
            std::process::exit(1);
        }
    };
    let headroom: f64 = args.get(3).and_then(|h| h.parse().ok()).unwrap_or(0.7);
    if !(0.05..=1.0).contains(&headroom) {
        eprintln!("HEADROOM must be between 0.05 and 1 (the share of each node that may be used)");
        std::process::exit(2);
    }
    let nodes = inventory::nodes(&args[1], &read(&args[1])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let (systems, origins) = inventory::systems(&args[2], &read(&args[2])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let o = Options { headroom };
    let p = plan(&nodes, &systems, &o);
    if let Err(e) = pack::check(&nodes, &systems, &o, &p) {
        eprintln!("internal error, the plan does not hold: {e}");
        std::process::exit(3);
    }
    let summary = inventory::summarize(&nodes, &systems, &origins, &p, lower_bound(&nodes, &systems, &o));
    print!("{}", inventory::markdown(&summary));
}
