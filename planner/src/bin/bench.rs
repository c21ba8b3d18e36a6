//! The planner beside first-fit and best-fit decreasing, on generated fleets and the Alibaba
//! trace, in one process: time, nodes used and nodes used over the lower bound. Run by
//! bench/planner.sh; figures in docs/performance.md.

#![forbid(unsafe_code)]

use std::time::Instant;

use zhengyun_planner::{
    Node, Options, Plan, System, best_fit_decreasing, first_fit_decreasing, fleet, lower_bound, plan, trace,
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args.get(1).cloned().unwrap_or_else(|| "bench/data/alibaba-openb-2023".into());
    let sizes: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![1_000, 10_000, 100_000]);
    let baseline_max: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
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
    let nodes = trace::nodes(&read("openb_node_list_all_node.csv")).unwrap_or_else(|e| panic!("{e}"));
    let tasks = trace::running_tasks(&read("openb_pod_list_default.csv")).unwrap_or_else(|e| panic!("{e}"));
    row("Alibaba openb 2023, Running tasks, no headroom", &nodes, &tasks, &Options::default(), true);
}
