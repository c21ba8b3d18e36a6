//! The planner beside first-fit and best-fit decreasing, on generated fleets and the Alibaba
//! trace, in one process: time, nodes used and nodes used over the lower bound. Then, on priced
//! generated fleets (node prices by [`fleet::price`]), the planner for least cost beside the
//! same fleet planned for fewest nodes and the baselines: monthly cost over the cost bound. Run
//! by bench/planner.sh; figures in docs/performance.md.

#![forbid(unsafe_code)]

use std::time::Instant;

use zhengyun_planner::{
    Node, Options, Plan, System, best_fit_decreasing, cost_lower_bound, first_fit_decreasing, fleet, lower_bound, plan,
    trace,
};

type Planner = fn(&[Node], &[System], &Options) -> Plan;

fn row(label: &str, nodes: &[Node], systems: &[System], o: &Options, baselines: bool) {
    let lb = lower_bound(nodes, systems, o);
    let replicas: u64 = systems.iter().map(|s| u64::from(s.replicas)).sum();
    let mut runs: Vec<(&str, Planner)> = vec![("planner", plan)];
    if baselines {
        runs.push(("ffd", first_fit_decreasing));
        runs.push(("bfd", best_fit_decreasing));
    }
    for (name, f) in runs {
        let t = Instant::now();
        let p = f(nodes, systems, o);
        let secs = t.elapsed().as_secs_f64();
        if let Err(e) = zhengyun_planner::pack::check(nodes, systems, o, &p) {
            eprintln!("{label} {name}: invalid plan: {e}");
            std::process::exit(1);
        }
        println!(
            "| {label} | {} | {replicas} | {name} | {secs:.3} | {} | {lb} | {:.4} | {} |",
            nodes.len(),
            p.nodes_used,
            p.nodes_used as f64 / lb.max(1) as f64,
            p.unplaced.len()
        );
    }
}

/// The priced fleet's rows: the planner (least cost, every node priced), the planner on the same
/// nodes without prices (fewest nodes) priced afterwards, and the baselines.
fn priced_rows(label: &str, nodes: &[Node], systems: &[System], o: &Options) {
    let priced: Vec<Node> = nodes.iter().map(|n| Node { price: Some(fleet::price(n)), ..n.clone() }).collect();
    let bound = cost_lower_bound(&priced, systems, o).unwrap_or(f64::NAN);
    let runs: [(&str, &[Node], Planner); 4] = [
        ("planner, least cost", &priced, plan),
        ("planner, fewest nodes", nodes, plan),
        ("ffd", &priced, first_fit_decreasing),
        ("bfd", &priced, best_fit_decreasing),
    ];
    for (name, input, f) in runs {
        let t = Instant::now();
        let p = f(input, systems, o);
        let secs = t.elapsed().as_secs_f64();
        if let Err(e) = zhengyun_planner::pack::check(input, systems, o, &p) {
            eprintln!("{label} {name}: invalid plan: {e}");
            std::process::exit(1);
        }
        // What the nodes used cost, at the fleet's prices (the fewest-nodes run had none).
        let used: std::collections::BTreeSet<usize> = p.placements.iter().map(|x| x.node).collect();
        let cost: f64 = used.iter().map(|&n| priced[n].price.unwrap_or(0.0)).sum();
        println!(
            "| {label} | {name} | {secs:.3} | {} | {cost:.0} | {bound:.0} | {:.4} | {} |",
            p.nodes_used,
            cost / bound,
            p.unplaced.len()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args.get(1).cloned().unwrap_or_else(|| "bench/data/alibaba-openb-2023".into());
    let sizes: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![1_000, 10_000, 100_000]);
    let baseline_max: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let priced: Vec<usize> =
        args.get(4).map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or(vec![10_000]);
    println!(
        "| fleet | nodes offered | replicas | method | seconds | nodes used | lower bound | used / bound | unplaced |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let o = Options { headroom: 0.7 };
    for n in sizes {
        let (nodes, systems) = fleet::generate(n, 42);
        row(&format!("generated {n} servers, 70% headroom"), &nodes, &systems, &o, n <= baseline_max);
    }
    let read = |f: &str| std::fs::read_to_string(format!("{data}/{f}")).unwrap_or_else(|e| panic!("{data}/{f}: {e}"));
    let trace_nodes = trace::nodes(&read("openb_node_list_all_node.csv")).unwrap_or_else(|e| panic!("{e}"));
    let tasks = trace::running_tasks(&read("openb_pod_list_default.csv")).unwrap_or_else(|e| panic!("{e}"));
    row("Alibaba openb 2023, Running tasks, no headroom", &trace_nodes, &tasks, &Options::default(), true);
    if priced.is_empty() {
        return;
    }
    println!();
    println!("| priced fleet | method | seconds | nodes used | monthly cost | cost bound | cost / bound | unplaced |");
    println!("|---|---|---|---|---|---|---|---|");
    for n in priced {
        let (nodes, systems) = fleet::generate(n, 42);
        priced_rows(&format!("generated {n} servers, 70% headroom"), &nodes, &systems, &o);
    }
    priced_rows("Alibaba openb 2023, no headroom", &trace_nodes, &tasks, &Options::default());
}
