//! The Alibaba openb 2023 trace (bench/data/alibaba-openb-2023/, see its README for the source
//! and citation): 1,523 heterogeneous nodes and 8,152 tasks. The tasks Running in the trace are
//! packed onto as few of its nodes as possible. A task's GPU share is counted against its node's
//! GPUs in aggregate (num_gpu × gpu_milli thousandths), not per device: a relaxation of the
//! trace's GPU-sharing scheduler that this planner does not model.

use crate::{Arch, Node, System};

fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

/// Nodes from `openb_node_list_all_node.csv` (sn, cpu_milli, memory_mib, gpu, model).
pub fn nodes(csv: &str) -> Result<Vec<Node>, String> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = fields(l);
            let num =
                |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("bad node line: {l}"));
            Ok(Node {
                name: f.first().copied().unwrap_or_default().to_string(),
                capacity: [num(1)?, num(2)?, 0, num(3)? * 1000],
                arch: Arch::Amd64,
                zone: "openb".into(),
                price: None,
            })
        })
        .collect()
}

/// Running tasks from `openb_pod_list_default.csv` (name, cpu_milli, memory_mib, num_gpu,
/// gpu_milli, gpu_spec, qos, pod_phase, ...), one replica each.
pub fn running_tasks(csv: &str) -> Result<Vec<System>, String> {
    let mut out = Vec::new();
    for l in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f = fields(l);
        if f.get(7) != Some(&"Running") {
            continue;
        }
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("bad task line: {l}"));
        out.push(System {
            name: f.first().copied().unwrap_or_default().to_string(),
            department: f.get(6).copied().unwrap_or_default().to_string(),
            need: [num(1)?, num(2)?, 0, num(3)? * num(4)?],
            replicas: 1,
            zone: "openb".into(),
            arch: None,
        });
    }
    Ok(out)
}
