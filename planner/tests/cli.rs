//! zhengyun-plan as a cloud office runs it, on the example city (docs/examples/consolidation/).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::PathBuf;
use std::process::{Command, Output};

fn example(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/consolidation")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zhengyun-plan")).args(args).output().unwrap()
}

/// A file of its own in the temporary directory, removed when dropped.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str, text: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("zhengyun-plan-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        Temp(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_headroom_can_be_given_as_a_flag_or_positionally_and_the_json_goes_to_a_file() {
    let (nodes, systems) = (example("nodes.csv"), example("systems.csv"));
    let flag = plan(&[&nodes, &systems, "--headroom", "0.6", "--format", "json"]);
    let positional = plan(&[&nodes, &systems, "0.6", "--format=json"]);
    assert!(flag.status.success(), "{}", String::from_utf8_lossy(&flag.stderr));
    assert_eq!(flag.stdout, positional.stdout);
    let j: serde_json::Value = serde_json::from_slice(&flag.stdout).unwrap();
    assert_eq!((j["schema"].as_str(), j["headroom"].as_f64()), (Some("zhengyun.io/consolidation-plan/v1"), Some(0.6)));

    let out = Temp::new("plan.html", "");
    let o = plan(&[&nodes, &systems, "--format", "html", "-o", out.path()]);
    assert!(o.status.success() && o.stdout.is_empty());
    assert!(std::fs::read_to_string(out.path()).unwrap().starts_with("<!DOCTYPE html>"));

    let o = plan(&[&nodes, &systems, "--headroom", "0.6", "0.7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("headroom given twice (0.6 and 0.7)"));
    let o = plan(&[&nodes, &systems, "--colour"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option --colour"));
    let o = plan(&[&nodes, &systems, "--format", "pdf"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_price_quota_and_server_files_are_refused_naming_the_file_line_and_column() {
    let (nodes, systems) = (example("nodes.csv"), example("systems.csv"));
    let prices = Temp::new("prices.csv", "resource,unit,price_per_month\ncpu,core,60\nmemory,GB,8\n");
    let o = plan(&[&nodes, &systems, "--prices", prices.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        format!("{}:3: unit 'GB' for memory must be GiB", prices.path())
    );

    let quotas = Temp::new("quotas.csv", "department,cpu_cores,memory_gib,disk_gib,gpus\ndept-01,16,64,1000,-1\n");
    let o = plan(&[&nodes, &systems, "--quotas", quotas.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with(&format!("{}:2: gpus -1 is out of range", quotas.path())),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let servers = Temp::new(
        "servers.csv",
        "room,server,cpu_cores,memory_gib,disk_gib,gpus\ndept-01-room,dept-01-room-srv01,48,128,1200,0\n",
    );
    let o = plan(&[&nodes, &systems, "--servers", servers.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no line for server 'dept-01-room-srv02' of room 'dept-01-room'")
    );
}

#[test]
fn the_committed_example_reports_are_what_the_planner_writes_today() {
    let args = [
        example("nodes.csv"),
        example("systems.csv"),
        "--headroom".into(),
        "0.7".into(),
        "--servers".into(),
        example("servers.csv"),
        "--prices".into(),
        example("prices.csv"),
        "--quotas".into(),
        example("quotas.csv"),
        "--format".into(),
    ];
    for (format, file) in [("markdown", "plan.md"), ("json", "plan.json"), ("html", "plan.html")] {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push(format);
        let o = plan(&a);
        assert!(o.status.success());
        let committed = std::fs::read_to_string(example(file)).unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout) == committed,
            "docs/examples/consolidation/{file} is stale: run hack/render-plan-example.sh"
        );
    }
}

/// An inventory of its own: `nodes` as (name, cores, GPUs) in zone intranet, amd64, 4 GiB a
/// core and 100 GiB of disk; `systems` as (name, department, GPUs), each 1 core, 1 GiB, 1 GiB
/// of disk, either architecture, one replica.
fn inventory(tag: &str, nodes: &[(&str, u32, &str)], systems: &[(&str, &str, &str)]) -> (Temp, Temp) {
    let mut n = String::from("name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\n");
    for (name, cores, gpus) in nodes {
        n += &format!("{name},intranet,amd64,{cores},{},100,{gpus}\n", cores * 4);
    }
    let mut s = String::from("name,department,room,server,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,replicas\n");
    for (name, dept, gpus) in systems {
        s += &format!("{name},{dept},r,s,intranet,any,1,1,1,{gpus},1\n");
    }
    (Temp::new(&format!("{tag}-nodes.csv"), &n), Temp::new(&format!("{tag}-systems.csv"), &s))
}

#[test]
fn check_mode_fails_a_plan_that_cannot_place_everything_and_says_what_is_short() {
    // Three shares of 0.6 GPU: 1.8 GPUs asked in all, and the one device holds only one of them.
    let (nodes, systems) = inventory(
        "short",
        &[("n1", 8, "1"), ("n2", 8, "0")],
        &[("a", "health", "0.6"), ("b", "health", "0.6"), ("c", "transport", "0.6")],
    );
    let o = plan(&[nodes.path(), systems.path(), "--headroom", "1", "--check"]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 replicas unplaced (by department: "), "{err}");
    assert!(
        err.contains("zone intranet, all replicas: gpu asks 1800 thousandths of a GPU, the nodes they may use have 1000 (short by 800)"),
        "{err}"
    );
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("## Demand the nodes cannot hold"), "{md}");
    assert!(md.contains("| intranet | all | gpu | 1.8 | 1 | 0.8 |"), "{md}");
    assert!(md.contains("No gap is stated"), "{md}");
    // Without --check the same report is written and the exit is 0.
    assert!(plan(&[nodes.path(), systems.path(), "--headroom", "1"]).status.success());
}

#[test]
fn a_share_of_a_gpu_is_of_one_device_and_no_device_is_shared_past_whole() {
    // Two nodes with two devices each; four shares of 0.6: each device holds one, so two nodes,
    // where pooled GPUs (2 × 1000 per node) would have put three on the first.
    let shares: Vec<(&str, &str, &str)> = ["a", "b", "c", "d"].iter().map(|n| (*n, "health", "0.6")).collect();
    let (nodes, systems) = inventory("dev", &[("n1", 64, "2"), ("n2", 64, "2")], &shares);
    let o = plan(&[nodes.path(), systems.path(), "--headroom", "1", "--check", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["summary"]["nodes_used"], 2, "{r}");
    assert_eq!(r["summary"]["replicas_unplaced"], 0);
    // 1.5 GPUs is neither a share of one device nor whole devices.
    let bad = Temp::new(
        "dev-bad.csv",
        "name,department,room,server,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,replicas\na,health,r,s,intranet,any,1,1,1,1.5,1\n",
    );
    let o = plan(&[nodes.path(), bad.path()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(":2: gpus '1.5' must be a share of one device (0.001 to 0.999) or a whole number of devices"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
