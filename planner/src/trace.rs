//! The Alibaba openb 2023 trace (bench/data/alibaba-openb-2023/, see its README for the source
//! and citation): 1,523 heterogeneous nodes and lists of tasks, read as the trace's authors
//! define them (ATC '23, "Beware of Fragmentation"). A node has `gpu` devices of one model
//! (`model`); a task with `num_gpu` 1 and `gpu_milli` below 1000 takes that share of ONE device,
//! a task with `num_gpu` k takes k whole devices; `gpu_spec` (`|`-separated) names the models a
//! task may run on. Columns are found by the header's names, so every list layout of the trace
//! reads: a list with a `pod_phase` column gives its Running tasks (the tasks the trace shows in
//! place), a list without one (`multigpu20`) gives every row. A bad layout, number or value is
//! an error naming the file, line and column; a list that yields no task is an error too.

use std::collections::BTreeMap;

use crate::{Arch, DEVICE, MAX_DEVICES, Node, System};

/// What a list held, beside the tasks read: how many rows, and why the others were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Tasks {
    pub tasks: Vec<System>,
    pub rows: usize,
    /// Whether the list has a `pod_phase` column (only Running rows are read then).
    pub phased: bool,
}

/// A header: each column's position by name; the required ones checked.
struct Header<'a> {
    file: &'a str,
    at: BTreeMap<&'a str, usize>,
    width: usize,
}

impl<'a> Header<'a> {
    fn read(file: &'a str, line: Option<&'a str>, required: &[&str]) -> Result<Header<'a>, String> {
        let line = line.ok_or_else(|| format!("{file}: empty, expected a header line"))?;
        let line = line.trim_start_matches('\u{feff}');
        let names: Vec<&str> = line.trim_end_matches('\r').split(',').map(str::trim).collect();
        let mut at = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if at.insert(*n, i).is_some() {
                return Err(format!("{file}:1: column '{n}' appears twice"));
            }
        }
        let missing: Vec<&str> = required.iter().copied().filter(|c| !at.contains_key(c)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "{file}:1: not an openb list this reader knows: no column {} (header: {})",
                missing.join(", "),
                names.join(",")
            ));
        }
        Ok(Header { file, at, width: names.len() })
    }

    fn fields<'l>(&self, number: usize, line: &'l str) -> Result<Vec<&'l str>, String> {
        let f: Vec<&str> = line.trim_end_matches('\r').split(',').map(str::trim).collect();
        if f.len() != self.width {
            return Err(format!("{}:{number}: {} fields, the header has {}", self.file, f.len(), self.width));
        }
        Ok(f)
    }

    fn text<'l>(&self, f: &[&'l str], column: &str) -> &'l str {
        self.at.get(column).and_then(|&i| f.get(i)).copied().unwrap_or_default()
    }

    fn number(&self, number: usize, f: &[&str], column: &str, max: u64) -> Result<u64, String> {
        let v = self.text(f, column);
        let x: u64 =
            v.parse().map_err(|_| format!("{}:{number}: column {column}: '{v}' is not a whole number", self.file))?;
        if x > max {
            return Err(format!("{}:{number}: column {column}: {x} is above {max}", self.file));
        }
        Ok(x)
    }
}

fn lines(csv: &str) -> impl Iterator<Item = (usize, &str)> {
    csv.lines().enumerate().skip(1).map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty())
}

/// Nodes from `openb_node_list_all_node.csv` (sn, cpu_milli, memory_mib, gpu, model).
pub fn nodes(file: &str, csv: &str) -> Result<Vec<Node>, String> {
    let h = Header::read(file, csv.lines().next(), &["sn", "cpu_milli", "memory_mib", "gpu"])?;
    let mut out = Vec::new();
    for (n, l) in lines(csv) {
        let f = h.fields(n, l)?;
        let gpu = h.number(n, &f, "gpu", MAX_DEVICES)?;
        let model = h.text(&f, "model");
        if gpu > 0 && model.is_empty() && h.at.contains_key("model") {
            return Err(format!("{file}:{n}: column model: empty for a node with {gpu} GPUs"));
        }
        out.push(Node {
            name: h.text(&f, "sn").to_string(),
            capacity: [
                h.number(n, &f, "cpu_milli", 1 << 32)?,
                h.number(n, &f, "memory_mib", 1 << 40)?,
                0,
                gpu * DEVICE,
            ],
            arch: Arch::Amd64,
            zone: "openb".into(),
            price: None,
            gpu_model: (gpu > 0 && !model.is_empty()).then(|| model.to_string()),
        });
    }
    if out.is_empty() {
        return Err(format!("{file}: no nodes"));
    }
    Ok(out)
}

/// Tasks from an openb pod list (name, cpu_milli, memory_mib, num_gpu, gpu_milli, and where the
/// list has them gpu_spec, qos, pod_phase, ...), one replica each, the `qos` class as the
/// department. With a `pod_phase` column only Running rows are read. A task no node of `fleet`
/// could ever hold (too large, or no node of a model it names) is an error naming its line:
/// it would otherwise be reported unplaced in every plan and bound nothing.
pub fn tasks(file: &str, csv: &str, fleet: &[Node]) -> Result<Tasks, String> {
    let h = Header::read(file, csv.lines().next(), &["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"])?;
    let phased = h.at.contains_key("pod_phase");
    let mut out = Tasks { tasks: Vec::new(), rows: 0, phased };
    for (n, l) in lines(csv) {
        let f = h.fields(n, l)?;
        out.rows += 1;
        if phased && h.text(&f, "pod_phase") != "Running" {
            continue;
        }
        let num_gpu = h.number(n, &f, "num_gpu", MAX_DEVICES)?;
        let gpu_milli = h.number(n, &f, "gpu_milli", DEVICE)?;
        let gpu = match (num_gpu, gpu_milli) {
            (0, 0) => 0,
            (0, _) => return Err(format!("{file}:{n}: column gpu_milli: {gpu_milli} with num_gpu 0")),
            (_, 0) => return Err(format!("{file}:{n}: column gpu_milli: 0 with num_gpu {num_gpu}")),
            (1, m) => m,
            (k, DEVICE) => k * DEVICE,
            (k, m) => {
                return Err(format!(
                    "{file}:{n}: column gpu_milli: {m} with num_gpu {k} (a task on several devices takes each whole)"
                ));
            }
        };
        let gpu_models: Vec<String> =
            h.text(&f, "gpu_spec").split('|').map(str::trim).filter(|m| !m.is_empty()).map(String::from).collect();
        let system = System {
            name: h.text(&f, "name").to_string(),
            department: match h.text(&f, "qos") {
                "" => "openb".to_string(),
                q => q.to_string(),
            },
            need: [h.number(n, &f, "cpu_milli", 1 << 32)?, h.number(n, &f, "memory_mib", 1 << 40)?, 0, gpu],
            replicas: 1,
            zone: "openb".into(),
            arch: None,
            gpu_models,
        };
        if let Some(why) = never_held(&system, fleet) {
            return Err(format!("{file}:{n}: task {} {why}", system.name));
        }
        out.tasks.push(system);
    }
    if out.tasks.is_empty() {
        return Err(format!(
            "{file}: no task to place ({} rows{})",
            out.rows,
            if phased { ", none Running" } else { "" }
        ));
    }
    Ok(out)
}

/// Why no node of `fleet` could hold the task even empty, if none could.
fn never_held(s: &System, fleet: &[Node]) -> Option<String> {
    let model_ok = |n: &Node| s.gpu_models.is_empty() || n.gpu_model.as_ref().is_some_and(|m| s.gpu_models.contains(m));
    if !fleet.iter().any(model_ok) {
        return Some(format!("(column gpu_spec) names GPU models {} that no node has", s.gpu_models.join("|")));
    }
    let fits = |n: &Node| (0..crate::DIMS).all(|d| s.need[d] <= n.capacity[d]);
    if !fleet.iter().any(|n| model_ok(n) && fits(n)) {
        return Some(format!(
            "needs cpu_milli {}, memory_mib {} and {} GPU thousandths: more than any node{} has",
            s.need[0],
            s.need[1],
            s.need[3],
            if s.gpu_models.is_empty() { "" } else { " of its GPU models" }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,262144,0,\nn1,96000,786432,8,V100M32\n";

    #[test]
    fn every_layout_reads_by_its_header_and_gpus_are_devices() {
        let fleet = nodes("nodes.csv", NODES).unwrap();
        assert_eq!(fleet[1].capacity[3], 8000);
        assert_eq!(fleet[1].gpu_model.as_deref(), Some("V100M32"));
        assert_eq!(fleet[0].gpu_model, None);
        let phased = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase\n\
                      a,1000,1024,1,460,,LS,Running\nb,1000,1024,2,1000,V100M16|V100M32,BE,Running\n\
                      c,1000,1024,0,0,,LS,Failed\n";
        let t = tasks("pods.csv", phased, &fleet).unwrap();
        assert_eq!((t.rows, t.phased, t.tasks.len()), (3, true, 2));
        assert_eq!(t.tasks[0].need, [1000, 1024, 0, 460]);
        assert_eq!(t.tasks[1].need, [1000, 1024, 0, 2000]);
        assert_eq!(t.tasks[1].gpu_models, vec!["V100M16".to_string(), "V100M32".to_string()]);
        assert_eq!(t.tasks[1].department, "BE");
        // multigpu20's layout: no phase, every row.
        let bare = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,1000,1024,8,1000\nb,500,512,0,0\n";
        let t = tasks("multi.csv", bare, &fleet).unwrap();
        assert_eq!((t.rows, t.phased, t.tasks.len()), (2, false, 2));
    }

    #[test]
    fn bad_lists_name_the_file_line_and_column() {
        let fleet = nodes("nodes.csv", NODES).unwrap();
        let e = |csv: &str| tasks("pods.csv", csv, &fleet).unwrap_err();
        assert_eq!(
            e("name,cpu,memory\na,1,1\n"),
            "pods.csv:1: not an openb list this reader knows: no column cpu_milli, memory_mib, num_gpu, gpu_milli \
             (header: name,cpu,memory)"
        );
        let head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n";
        assert_eq!(e(&format!("{head}a,1,x,0,0\n")), "pods.csv:2: column memory_mib: 'x' is not a whole number");
        assert_eq!(e(&format!("{head}a,1,1,0\n")), "pods.csv:2: 4 fields, the header has 5");
        assert_eq!(
            e(&format!("{head}a,1,1,2,500\n")),
            "pods.csv:2: column gpu_milli: 500 with num_gpu 2 (a task on several devices takes each whole)"
        );
        assert_eq!(
            e(&format!("{head}a,1,1,16,1000\n")),
            "pods.csv:2: task a needs cpu_milli 1, memory_mib 1 and 16000 GPU thousandths: more than any node has"
        );
        assert_eq!(
            e("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\na,1,1,1,500,T4\n"),
            "pods.csv:2: task a (column gpu_spec) names GPU models T4 that no node has"
        );
        assert_eq!(
            e("name,cpu_milli,memory_mib,num_gpu,gpu_milli,pod_phase\na,1,1,0,0,Failed\n"),
            "pods.csv: no task to place (1 rows, none Running)"
        );
        assert_eq!(
            nodes("n.csv", "\u{feff}sn,cpu_milli,memory_mib,gpu,model\nn0,1000,1024,2,\n").unwrap_err(),
            "n.csv:2: column model: empty for a node with 2 GPUs"
        );
        assert_eq!(
            nodes("n.csv", "sn,cpu_milli,memory_mib\n").unwrap_err(),
            "n.csv:1: not an openb list this reader knows: no column gpu (header: sn,cpu_milli,memory_mib)"
        );
    }
}
