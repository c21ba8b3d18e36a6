use serde_json::Value;

use super::*;
use crate::inventory::{self, SERVER_HEADER, SYSTEM_HEADER};

const NODES: &str = "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\n\
                     n1,intranet,amd64,10,40,1000,0\n\
                     n2,intranet,amd64,10,40,1000,0\n\
                     n3,intranet,arm64,10,40,1000,1\n";

/// A small fleet: a room of two servers that can go, a room whose one big system fits no node.
fn fleet(systems_rows: &str) -> (Vec<Node>, Vec<System>, Vec<Origin>, Vec<Server>) {
    let nodes = inventory::nodes("nodes.csv", NODES).unwrap();
    let (systems, origins) =
        inventory::systems("systems.csv", &format!("{}\n{systems_rows}", SYSTEM_HEADER.join(","))).unwrap();
    let servers = inventory::servers(
        "servers.csv",
        &format!(
            "{}\nroom-a,a1,8,32,500,0\nroom-a,a2,8,32,500,0\nroom-b,b1,32,64,500,0\nroom-b,b-idle,8,16,100,0\n",
            SERVER_HEADER.join(",")
        ),
    )
    .unwrap();
    (nodes, systems, origins, servers)
}

const ROWS: &str = "web,health,room-a,a1,intranet,amd64,2,4,10,0,2\n\
                    db,health,room-a,a2,intranet,any,4,8,100,0,1\n\
                    ai,transport,room-b,b1,intranet,arm64,2,8,10,0.5,1\n\
                    huge,transport,room-b,b1,intranet,any,20,8,10,0,1\n";

fn report(input: &Input) -> Report {
    let p = crate::plan(input.nodes, input.systems, &input.options);
    crate::pack::check(input.nodes, input.systems, &input.options, &p).unwrap();
    Report::new(input, &p)
}

fn input<'a>(f: &'a (Vec<Node>, Vec<System>, Vec<Origin>, Vec<Server>)) -> Input<'a> {
    Input {
        nodes: &f.0,
        systems: &f.1,
        origins: &f.2,
        options: Options { headroom: 0.7 },
        servers: Some(&f.3),
        prices: None,
        quotas: None,
    }
}

#[test]
fn the_json_says_where_each_replica_goes_what_can_be_retired_and_why() {
    let f = fleet(ROWS);
    let r = report(&input(&f));
    let j: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(j["schema"], "zhengyun.io/consolidation-plan/v1");
    assert_eq!(j["headroom"], 0.7);
    let s = &j["summary"];
    assert_eq!((s["systems"].as_u64(), s["replicas"].as_u64()), (Some(4), Some(5)));
    assert_eq!((s["replicas_placed"].as_u64(), s["replicas_unplaced"].as_u64()), (Some(4), Some(1)));
    // b-idle runs nothing and goes; b1 runs `huge`, which fits no node: room-b stays.
    assert_eq!((s["servers"].as_u64(), s["servers_retirable"].as_u64()), (Some(4), Some(3)));
    assert_eq!((s["rooms"].as_u64(), s["rooms_retirable"].as_u64()), (Some(2), Some(1)));
    assert_eq!(s["nodes_available"], 3);

    // web's two replicas on two different amd64 nodes.
    let web = j["systems"].as_array().unwrap().iter().find(|s| s["system"] == "web").unwrap();
    assert_eq!(
        (web["department"].as_str(), web["room"].as_str(), web["server"].as_str()),
        (Some("health"), Some("room-a"), Some("a1"))
    );
    assert_eq!(web["arch"], "amd64");
    assert_eq!(web["need"], serde_json::json!({"cpu_cores": 2.0, "memory_gib": 4.0, "disk_gib": 10.0, "gpus": 0.0}));
    let to: Vec<&str> = web["replicas"].as_array().unwrap().iter().map(|p| p["node"].as_str().unwrap()).collect();
    assert_eq!(to.len(), 2);
    assert_ne!(to[0], to[1]);
    assert!(to.iter().all(|n| *n == "n1" || *n == "n2"), "{to:?}");
    let ai = j["systems"].as_array().unwrap().iter().find(|s| s["system"] == "ai").unwrap();
    assert_eq!(ai["replicas"][0]["node"], "n3");

    let rooms = j["rooms"].as_array().unwrap();
    assert_eq!(rooms[0]["room"], "room-a");
    assert_eq!(rooms[0]["retirable"], true);
    assert_eq!(rooms[0]["departments"], serde_json::json!(["health"]));
    let b = &rooms[1];
    assert_eq!(
        (b["room"].as_str(), b["retirable"].as_bool(), b["servers_retirable"].as_u64()),
        (Some("room-b"), Some(false), Some(1))
    );
    let b1 = b["servers_detail"].as_array().unwrap().iter().find(|s| s["server"] == "b1").unwrap();
    assert_eq!(b1["retirable"], false);
    assert_eq!(b1["capacity"]["cpu_cores"], 32.0);
    assert_eq!(b1["blocked_by"][0]["system"], "huge");
    assert!(b1["blocked_by"][0]["reason"].as_str().unwrap().contains("larger than any node"), "{b1}");
    let idle = b["servers_detail"].as_array().unwrap().iter().find(|s| s["server"] == "b-idle").unwrap();
    assert_eq!((idle["retirable"].as_bool(), idle["systems"].as_u64()), (Some(true), Some(0)));

    let u = &j["unplaced"][0];
    assert_eq!(
        (u["system"].as_str(), u["department"].as_str(), u["server"].as_str(), u["replica"].as_u64()),
        (Some("huge"), Some("transport"), Some("b1"), Some(0))
    );

    // Before: all needs (2×2 + 4 + 2 + 20 = 30 cores) over the old servers' 56 cores.
    let before = &j["utilisation"]["before"];
    assert_eq!((before["servers"].as_u64(), before["requested"]["cpu_cores"].as_f64()), (Some(4), Some(30.0)));
    assert_eq!(before["capacity"]["cpu_cores"], 56.0);
    assert_eq!(before["ratio"]["cpu"], 0.5357);
    assert_eq!(before["ratio"]["gpu"], Value::Null, "the old servers have no GPU");
    // After: the placed replicas (10 cores) over the nodes used.
    let after = &j["utilisation"]["after"];
    let used = s["nodes_used"].as_u64().unwrap();
    assert_eq!(after["nodes"].as_u64(), Some(used));
    assert_eq!(after["requested"]["cpu_cores"], 10.0);
    assert_eq!(after["capacity"]["cpu_cores"].as_f64(), Some(10.0 * used as f64));
    assert_eq!(j["nodes_used"].as_array().unwrap().len() as u64, used);
    let n3 = j["nodes_used"].as_array().unwrap().iter().find(|n| n["node"] == "n3").unwrap();
    assert_eq!((n3["arch"].as_str(), n3["ratio"]["gpu"].as_f64()), (Some("arm64"), Some(0.5)));
    assert!(n3["departments"].as_array().unwrap().iter().any(|d| d["department"] == "transport"), "{n3}");

    // An incomplete plan states the bound but no gap.
    let lb = &j["lower_bound"];
    assert_eq!(lb["name"], BOUND_NAME);
    assert!(
        lb["statement"]
            .as_str()
            .unwrap()
            .starts_with("No plan placing every replica that fits some node can use fewer than"),
        "{lb}"
    );
    assert_eq!((lb["plan_complete"].as_bool(), &lb["gap_percent"]), (Some(false), &Value::Null));
    assert_eq!(lb["zones"][0]["zone"], "intranet");
    assert_eq!(lb["zones"][0]["lower_bound"], lb["nodes"]);

    // Showback without prices or quotas: quantities only.
    let sb = &j["showback"];
    assert_eq!((&sb["prices"], sb["unpriced"].as_array().map(Vec::len)), (&Value::Null, Some(0)));
    assert_eq!(sb["departments"][0]["department"], "health");
    assert_eq!(sb["departments"][0]["requested"]["cpu_cores"], 8.0);
    assert_eq!(sb["departments"][1]["requested"]["cpu_cores"], 22.0, "huge is requested though not placed");
    assert_eq!((&sb["departments"][0]["quota"], &sb["departments"][0]["monthly_cost"]), (&Value::Null, &Value::Null));
    assert_eq!(sb["rooms"][1]["room"], "room-b");
    assert_eq!(sb["total"]["requested"]["cpu_cores"], 30.0);
}

#[test]
fn a_complete_plan_states_its_gap_to_the_bound_and_before_is_unknown_without_servers() {
    let f = fleet("a,d1,r1,s1,intranet,any,6,4,10,0,1\nb,d1,r1,s1,intranet,any,6,4,10,0,1\n");
    let mut i = input(&f);
    i.servers = None;
    let r = report(&i);
    // 6 cores each, 7 cores usable per node: two nodes, and the bound says two.
    assert_eq!((r.summary.nodes_used, r.lower_bound.nodes, r.lower_bound.gap_percent), (2, 2, Some(0.0)));
    assert!(r.lower_bound.plan_complete);
    let j: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(j["utilisation"]["before"], Value::Null);
    assert_eq!(j["summary"]["servers"], 1, "servers named by systems.csv only");
    let md = markdown(&r);
    assert!(md.contains("Lower bound: **2 nodes**; this plan is at most 0.0% above the fewest possible."), "{md}");
    assert!(md.contains("not known (no servers.csv)"), "{md}");
}

#[test]
fn names_from_the_input_cannot_inject_markup() {
    let evil_dept = "<script>alert(1)</script>";
    let evil_sys = "\"><img src=x onerror=alert(1)>";
    let rows = format!(
        "{evil_sys},{evil_dept},room'&<b>,srv|1,intranet,any,2,4,10,0,1\nhuge,{evil_dept},room'&<b>,srv|1,intranet,any,99,4,10,0,1\n"
    );
    let nodes = inventory::nodes("nodes.csv", NODES).unwrap();
    let (systems, origins) =
        inventory::systems("systems.csv", &format!("{}\n{rows}", SYSTEM_HEADER.join(","))).unwrap();
    let quotas = crate::showback::quotas(
        "quotas.csv",
        &format!("department,cpu_cores,memory_gib,disk_gib,gpus\n{evil_dept},1,1,1,0\n"),
    )
    .unwrap();
    let i = Input {
        nodes: &nodes,
        systems: &systems,
        origins: &origins,
        options: Options { headroom: 0.7 },
        servers: None,
        prices: None,
        quotas: Some(&quotas),
    };
    let r = report(&i);
    let page = html(&r);
    for bad in ["<script", "<img", "'&<b>", "onerror=alert(1)>"] {
        assert!(!page.contains(bad), "{bad} reached the page");
    }
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("room&#39;&amp;&lt;b&gt;"));
    // Self-contained: nothing fetched. The only URL is the SVG namespace, which is a name.
    for fetch in ["<link", "src=\"", "url(", "@import", "<iframe", "<object"] {
        assert!(!page.contains(fetch), "{fetch} in the page");
    }
    assert_eq!(page.matches("http").count(), page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());

    let md = markdown(&r);
    assert!(!md.contains("<script") && !md.contains("<img") && !md.contains("<b>"), "{md}");
    assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{md}");
    assert!(md.contains("srv\\|1"), "a pipe must not split a table cell: {md}");
    // JSON escapes by construction; the names come back intact.
    let j: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(j["showback"]["departments"][0]["department"], evil_dept);
}

#[test]
fn without_a_prices_file_no_money_appears_anywhere() {
    let f = fleet(ROWS);
    let r = report(&input(&f));
    let (md, page, json) = (markdown(&r), html(&r), r.to_json());
    for text in [&md, &page] {
        let lower = text.to_lowercase();
        for money in ["cost", "price", "¥", "￥", "元", "cny", "$", "€"] {
            assert!(!lower.contains(money), "'{money}' without prices");
        }
    }
    let j: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["showback"]["prices"], Value::Null);
    assert_eq!(j["showback"]["total"]["monthly_cost"], Value::Null);
    assert!(j["showback"]["departments"].as_array().unwrap().iter().all(|d| d["monthly_cost"].is_null()));
}

#[test]
fn with_prices_each_department_gets_a_monthly_cost_and_unpriced_resources_are_named() {
    let f = fleet(ROWS);
    let prices =
        crate::showback::prices("prices.csv", "resource,unit,price_per_month\ncpu,core,30\nmemory,GiB,5\n").unwrap();
    let mut i = input(&f);
    i.prices = Some(&prices);
    let r = report(&i);
    // health: 8 cores and 16 GiB → 240 + 80.
    let health = &r.showback.departments[0];
    assert_eq!(
        health.monthly_cost.map(|c| (c.cpu, c.memory, c.disk, c.total)),
        Some((Some(240.0), Some(80.0), None, 320.0))
    );
    // Requested disk and GPU have no price: named, not invented.
    assert_eq!(r.showback.unpriced, ["disk", "gpu"]);
    let md = markdown(&r);
    assert!(md.contains("| health | 2 | 3 | 8 | 16 | 120 | 0 | 320.00 |"), "{md}");
    assert!(md.contains("Not priced, so not in the cost: disk, gpu."), "{md}");
    assert!(html(&r).contains("<th class=\"n\">monthly cost</th>"));
}

#[test]
fn a_department_over_its_quota_is_flagged_and_one_with_a_quota_but_no_system_is_listed() {
    let f = fleet(ROWS);
    let quotas = crate::showback::quotas(
        "quotas.csv",
        "department,cpu_cores,memory_gib,disk_gib,gpus\nhealth,16,64,1000,0\ntransport,16,64,1000,1\nculture,4,8,100,0\n",
    )
    .unwrap();
    let mut i = input(&f);
    i.quotas = Some(&quotas);
    let r = report(&i);
    let by: BTreeMap<&str, &DepartmentShowback> =
        r.showback.departments.iter().map(|d| (d.department.as_str(), d)).collect();
    assert!(by["health"].over_quota.is_empty());
    // transport asks for 22 cores against 16.
    assert_eq!(by["transport"].over_quota, ["cpu"]);
    assert_eq!(by["transport"].quota.map(|q| q.cpu_cores), Some(16.0));
    assert_eq!((by["culture"].systems, by["culture"].requested.cpu_cores), (0, 0.0));
    let md = markdown(&r);
    assert!(md.contains("| transport | 2 | 2 | 22 / 16 **over** | 16 / 64 | 20 / 1,000 | 0.5 / 1 |"), "{md}");
    assert!(html(&r).contains("<td class=\"n over\">22 / 16</td>"));
}

const PRICED_NODES: &str = "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,price_per_month\n\
                            n1,intranet,amd64,10,40,1000,0,500\n\
                            n2,intranet,amd64,10,40,1000,0,500\n\
                            n3,intranet,arm64,10,40,1000,1,900\n";

#[test]
fn with_node_prices_the_report_gives_the_cost_of_the_nodes_used_and_its_bound() {
    let mut f = fleet("a,d1,r1,s1,intranet,any,6,4,10,0,1\nb,d1,r1,s1,intranet,any,6,4,10,0,1\n");
    f.0 = inventory::nodes("nodes.csv", PRICED_NODES).unwrap();
    let r = report(&input(&f));
    // 6 cores each, 7 usable per node: two nodes, the two amd64 ones at 500.
    let c = r.node_cost.as_ref().unwrap();
    assert_eq!((c.monthly, c.lower_bound, c.gap_percent), (Some(1000.0), Some(1000.0), Some(0.0)));
    assert_eq!((c.nodes_priced, c.nodes_available), (3, 3));
    assert!(
        c.statement
            .starts_with("No plan placing every replica that fits some node can cost less than 1,000.00 a month")
    );
    let j: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(j["node_cost"]["zones"][0]["least_cost"], true);
    assert_eq!(j["node_cost"]["zones"][0]["monthly"], 1000.0);
    assert!(j["nodes_used"].as_array().unwrap().iter().all(|n| n["price_per_month"] == 500.0));
    let md = markdown(&r);
    assert!(
        md.contains(
            "Node prices (from nodes.csv, in its currency): the nodes used cost **1,000.00 a month**; no plan costs \
             less than **1,000.00**, so this one is at most 0.0% above the cheapest possible."
        ),
        "{md}"
    );
    assert!(md.contains("| intranet | 3 | 2 | 2 | least cost | 1,000.00 | 1,000.00 |"), "{md}");
    let page = html(&r);
    assert!(page.contains("<div class=\"v\">1,000.00</div><div class=\"k\">monthly cost of the nodes used"), "{page}");
    assert!(page.contains("<b>Cost bound</b>"));

    // One node without a price: the zone is planned for fewest nodes, and no bound is claimed.
    f.0[2].price = None;
    let r = report(&input(&f));
    let c = r.node_cost.as_ref().unwrap();
    assert_eq!((c.lower_bound, c.gap_percent, c.nodes_priced), (None, None, 2));
    assert!(c.statement.starts_with("No bound on cost: zone intranet has replicas and a node without a price"));
    assert!(markdown(&r).contains("| intranet | 3 | 2 | 2 | fewest nodes |"));
}

#[test]
fn without_node_prices_the_json_has_no_node_cost_at_all() {
    let f = fleet(ROWS);
    let j: Value = serde_json::from_str(&report(&input(&f)).to_json()).unwrap();
    assert!(j.get("node_cost").is_none());
    assert!(j["nodes_used"].as_array().unwrap().iter().all(|n| n.get("price_per_month").is_none()));
}
