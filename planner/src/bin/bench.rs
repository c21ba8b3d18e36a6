//! The planner beside the textbook baselines (first-fit and best-fit decreasing) and the best
//! of eighteen simple ones, on generated fleets and on lists of the Alibaba openb 2023 trace read
//! as its authors define them (GPUs per device, GPU models; planner/src/trace.rs), in one
//! process: time, nodes used and nodes used over the lower bound. Then, on priced generated
//! fleets (node prices by [`fleet::price`]), the planner for least cost beside the same fleet
//! planned for fewest nodes and the baselines: monthly cost over the cost bound. Run by
//! bench/planner.sh; figures in docs/performance.md.
//!
//! planner-bench [--nodes FILE] [--pods FILE]... [--sizes N,N] [--baseline-max N] [--priced N,N]

#![forbid(unsafe_code)]

use std::time::Instant;

use zhengyun_planner::pack::{self, Baseline};
use zhengyun_planner::{
    Node, Options, Plan, System, best_fit_decreasing, cost_lower_bound, first_fit_decreasing, fleet, lower_bound, plan,
    trace,
};

type Planner = fn(&[Node], &[System], &Options) -> Plan;

/// The most replicas the best of the eighteen baselines is run on.
const BEST_OF_MAX: u64 = 50_000;

/// Flags: `--nodes FILE`, `--pods FILE` (again for each list), `--sizes N,N` (generated
/// fleets; `none` for none), `--baseline-max N`, `--priced N,N` (`none` for no priced table).
struct Args {
    nodes: String,
    pods: Vec<String>,
    sizes: Vec<usize>,
    baseline_max: usize,
    priced: Vec<usize>,
}

fn list(flag: &str, v: &str) -> Vec<usize> {
    if v == "none" {
        return Vec::new();
    }
    v.split(',').map(|x| x.parse().unwrap_or_else(|_| fail(&format!("{flag}: '{x}' is not a number")))).collect()
}

fn fail(msg: &str) -> ! {
    eprintln!("planner-bench: {msg}");
    std::process::exit(2)
}

fn args() -> Args {
    let data = "bench/data/alibaba-openb-2023";
    let mut a = Args {
        nodes: format!("{data}/openb_node_list_all_node.csv"),
        pods: Vec::new(),
        sizes: vec![1_000, 10_000, 100_000],
        baseline_max: 100_000,
        priced: vec![10_000],
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let v = raw.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--nodes" => a.nodes = v,
            "--pods" => a.pods.push(v),
            "--sizes" => a.sizes = list(&flag, &v),
            "--baseline-max" => a.baseline_max = v.parse().unwrap_or_else(|_| fail(&format!("{flag}: '{v}'"))),
            "--priced" => a.priced = list(&flag, &v),
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    if a.pods.is_empty() {
        a.pods.push(format!("{data}/openb_pod_list_default.csv"));
    }
    a
}

fn row(label: &str, nodes: &[Node], systems: &[System], o: &Options, baselines: bool, with_fgd: bool) {
    let lb = lower_bound(nodes, systems, o);
    let replicas: u64 = systems.iter().map(|s| u64::from(s.replicas)).sum();
    let mut runs: Vec<(String, Box<dyn Fn() -> Plan + '_>)> =
        vec![("planner".into(), Box::new(|| plan(nodes, systems, o)))];
    if baselines {
        runs.push(("ffd".into(), Box::new(|| first_fit_decreasing(nodes, systems, o))));
        runs.push(("bfd".into(), Box::new(|| best_fit_decreasing(nodes, systems, o))));
    }
    // Eighteen baselines on 300,000 replicas take minutes (BFD is quadratic in nodes used).
    if baselines && replicas <= BEST_OF_MAX {
        // The best of them, named by what won.
        let t = Instant::now();
        let (b, p) = pack::best_baseline(nodes, systems, o);
        let name = format!("best of {} baselines: {}", Baseline::ALL.len(), b.name());
        print_row(label, nodes, systems, o, replicas, lb, &name, t.elapsed().as_secs_f64(), &p);
    }
    if with_fgd {
        runs.push(("fgd (Weng et al., ATC '23)".into(), Box::new(|| zhengyun_planner::fgd::fgd(nodes, systems, o))));
    }
    for (name, f) in runs {
        let t = Instant::now();
        let p = f();
        print_row(label, nodes, systems, o, replicas, lb, &name, t.elapsed().as_secs_f64(), &p);
    }
}

/// One row, once the plan is checked. The bound is about plans that place every replica: a plan
/// that leaves some out gets no ratio, and the shortfall is printed beneath.
#[allow(clippy::too_many_arguments)]
fn print_row(
    label: &str,
    nodes: &[Node],
    systems: &[System],
    o: &Options,
    replicas: u64,
    lb: usize,
    name: &str,
    secs: f64,
    p: &Plan,
) {
    if let Err(e) = pack::check(nodes, systems, o, p) {
        eprintln!("{label} {name}: invalid plan: {e}");
        std::process::exit(1);
    }
    let ratio = if p.unplaced.is_empty() {
        format!("{:.4}", p.nodes_used as f64 / lb.max(1) as f64)
    } else {
        "— (not every replica placed)".to_string()
    };
    println!(
        "| {label} | {} | {replicas} | {name} | {secs:.3} | {} | {lb} | {ratio} | {} |",
        nodes.len(),
        p.nodes_used,
        p.unplaced.len()
    );
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
        if let Err(e) = pack::check(input, systems, o, &p) {
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

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")))
}

fn main() {
    let a = args();
    println!(
        "| fleet | nodes offered | replicas | method | seconds | nodes used | lower bound | used / bound | unplaced |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let o = Options { headroom: 0.7 };
    for &n in &a.sizes {
        let (nodes, systems) = fleet::generate(n, 42);
        row(&format!("generated {n} servers, 70% headroom"), &nodes, &systems, &o, n <= a.baseline_max, false);
    }
    let trace_nodes = trace::nodes(&a.nodes, &read(&a.nodes)).unwrap_or_else(|e| fail(&e));
    let mut first_tasks: Option<Vec<System>> = None;
    for pods in &a.pods {
        let t = trace::tasks(pods, &read(pods), &trace_nodes).unwrap_or_else(|e| fail(&e));
        let name = std::path::Path::new(pods).file_name().and_then(|f| f.to_str()).unwrap_or(pods);
        let which = if t.phased { "Running tasks" } else { "every task (no pod_phase column)" };
        let label = format!("openb {name}: {which}, no headroom");
        row(&label, &trace_nodes, &t.tasks, &Options::default(), true, true);
        for s in pack::shortfall(&trace_nodes, &t.tasks, &Options::default()) {
            println!("| {label}: demand exceeds the fleet | {s} | | | | | | | |");
        }
        first_tasks.get_or_insert(t.tasks);
    }
    if a.priced.is_empty() {
        return;
    }
    println!();
    println!("| priced fleet | method | seconds | nodes used | monthly cost | cost bound | cost / bound | unplaced |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &a.priced {
        let (nodes, systems) = fleet::generate(n, 42);
        priced_rows(&format!("generated {n} servers, 70% headroom"), &nodes, &systems, &o);
    }
    if let Some(tasks) = first_tasks {
        priced_rows(&format!("openb {}, no headroom", a.pods[0]), &trace_nodes, &tasks, &Options::default());
    }
}
