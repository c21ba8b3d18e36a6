//! What a computer room asks of its nodes, decided purely from what the caches show: which
//! nodes are its, whether it may label them at all (one refusal and no node is touched), the
//! patch each node needs, the patch that lets a node go, and the room's status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    api::{ComputerRoom, ComputerRoomSpec, InventorySummary, MigrationPhase, Zone, ZoneTaint},
    labels,
    quantity::{self, Milli},
};

/// Why a room labels none of its nodes this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: String) -> Self {
        Refusal { reason, message }
    }
}

/// Checks what the schema cannot (or could not, for a room stored under an older one).
pub fn validate(spec: &ComputerRoomSpec) -> Result<(), Refusal> {
    let bad = |m: String| Err(Refusal::new("InvalidSpec", m));
    if spec.nodes.selector.is_empty() && spec.nodes.names.is_empty() && spec.inventory.is_empty() {
        return bad("spec: a room needs nodes (spec.nodes.selector or spec.nodes.names) or an inventory".into());
    }
    let mut servers = BTreeSet::new();
    for (i, s) in spec.inventory.iter().enumerate() {
        let at = format!("spec.inventory[{i}]");
        if !servers.insert(s.name.as_str()) {
            return bad(format!("{at}.name: server {} is listed twice", s.name));
        }
        if s.cores == 0 || s.cores > 1024 {
            return bad(format!("{at}.cores: {} is not between 1 and 1024", s.cores));
        }
        if s.memory_gib == 0 || s.memory_gib > 65536 {
            return bad(format!("{at}.memoryGib: {} is not between 1 and 65536", s.memory_gib));
        }
        if s.disk_gib > 10_000_000 || s.gpus > 64 || s.peak_utilisation_percent.is_some_and(|p| p > 100) {
            return bad(format!("{at}: disk over 10,000,000 GiB, over 64 GPUs or a peak over 100%"));
        }
        for (j, y) in s.systems.iter().enumerate() {
            let at = format!("{at}.systems[{j}]");
            let sizes = [("cpuCores", y.cpu_cores, 1024.0), ("memoryGib", y.memory_gib, 65536.0)];
            for (field, v, max) in sizes {
                if !(v.is_finite() && v > 0.0 && v <= max) {
                    return bad(format!("{at}.{field}: {v} is not above 0 and at most {max}"));
                }
            }
            if !(y.disk_gib.is_finite() && (0.0..=10_000_000.0).contains(&y.disk_gib)) {
                return bad(format!("{at}.diskGib: {} is negative or absurd", y.disk_gib));
            }
            if y.replicas == 0 || y.replicas > 100 || y.gpus > 64 {
                return bad(format!("{at}: replicas must be 1 to 100 and GPUs at most 64"));
            }
        }
    }
    Ok(())
}

/// Whether a room's spec selects a node: named, or carrying every label of a non-empty selector.
pub fn selects(spec: &ComputerRoomSpec, node: &Node) -> bool {
    let name = node.name_any();
    spec.nodes.names.contains(&name)
        || (!spec.nodes.selector.is_empty() && crate::zones::selects(&spec.nodes.selector, node.labels()))
}

/// The architecture a node's kubelet reports.
pub fn arch_of(node: &Node) -> Option<&str> {
    node.labels().get(labels::KUBE_ARCH).map(String::as_str)
}

/// Whether the room may label `mine` (its nodes) at all: no node of another room, none of
/// another architecture, none of another zone. `rooms` are all rooms (this one included),
/// `zones` all zones. The first problem found is the reason; the message names every node.
pub fn check(
    name: &str,
    spec: &ComputerRoomSpec,
    mine: &[&Node],
    rooms: &[&ComputerRoom],
    zone: &Zone,
    zones: &[&Zone],
) -> Result<(), Refusal> {
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for node in mine {
        let n = node.name_any();
        let holder = node.labels().get(labels::ROOM).filter(|h| h.as_str() != name);
        let others: Vec<String> =
            rooms.iter().filter(|r| r.name_any() != name && selects(&r.spec, node)).map(|r| r.name_any()).collect();
        if let Some(h) = holder {
            problems.push(("NodeInTwoRooms", format!("node {n} is a server of room {h}: a node belongs to one room")));
        } else if !others.is_empty() && node.labels().get(labels::ROOM).map(String::as_str) != Some(name) {
            problems.push((
                "NodeInTwoRooms",
                format!("node {n} is also selected by room(s) {}: a node belongs to one room", others.join(", ")),
            ));
        }
        match (spec.arch, arch_of(node)) {
            (Some(want), Some(have)) if have != want.as_str() => problems.push((
                "ArchMismatch",
                format!("node {n} is {have} (kubernetes.io/arch) but the room's servers are {}", want.as_str()),
            )),
            (_, None) => problems.push(("ArchMismatch", format!("node {n} has no kubernetes.io/arch label"))),
            _ => {}
        }
        let labels_of = node.labels();
        for (k, v) in &zone.spec.node_selector {
            if let Some(have) = labels_of.get(k).filter(|have| *have != v) {
                problems.push((
                    "ZoneMismatch",
                    format!("node {n} has {k}={have}, but zone {} puts {k}={v} on its nodes", spec.zone),
                ));
            }
        }
        for other in zones.iter().filter(|z| z.name_any() != spec.zone) {
            let taint = other.effective_taint();
            let tainted = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|ts| {
                ts.iter().any(|t| t.key == taint.key && t.value.as_deref().unwrap_or("") == taint.value)
            });
            if crate::zones::selects(&other.spec.node_selector, labels_of) || tainted {
                problems.push((
                    "ZoneMismatch",
                    format!("node {n} belongs to zone {}, not to the room's zone {}", other.name_any(), spec.zone),
                ));
            }
        }
    }
    match problems.first() {
        None => Ok(()),
        Some((reason, _)) => {
            let all: Vec<String> = problems.iter().map(|(_, m)| m.clone()).collect();
            Err(Refusal::new(reason, format!("{}; no node was labelled", all.join("; "))))
        }
    }
}

/// What a room added to a node beyond its own labels, so that letting the node go removes
/// exactly that (a zone label or taint the admin had put there stays).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<String>,
}

impl Added {
    pub fn of(node: &Node) -> Added {
        node.annotations().get(labels::ROOM_ADDED).and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default()
    }
}

fn same_taint(t: &Taint, z: &ZoneTaint) -> bool {
    t.key == z.key && t.value.as_deref().unwrap_or("") == z.value && t.effect == z.effect
}

/// The merge patch that gives `node` the room's labels and the zone's labels and taint, or
/// `None` when it has them all. Carries the node's `resourceVersion`: a node changed since the
/// cache saw it is patched next round, never half-overwritten.
pub fn label_patch(name: &str, spec: &ComputerRoomSpec, zone: &Zone, node: &Node) -> Option<Value> {
    let have = node.labels();
    let mut added = Added::of(node);
    let mut want: BTreeMap<String, String> = BTreeMap::from([
        (labels::ROOM.to_string(), name.to_string()),
        (labels::ROOM_DEPARTMENT.to_string(), spec.department.clone()),
    ]);
    if let Some(a) = arch_of(node) {
        want.insert(labels::ARCH.to_string(), a.to_string());
    }
    for (k, v) in &zone.spec.node_selector {
        if have.get(k) != Some(v) {
            want.insert(k.clone(), v.clone());
            if !added.labels.contains(k) {
                added.labels.push(k.clone());
            }
        }
    }
    let missing: BTreeMap<String, String> = want.into_iter().filter(|(k, v)| have.get(k) != Some(v)).collect();
    let taint = zone.effective_taint();
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let needs_taint = !taints.iter().any(|t| same_taint(t, &taint));
    if missing.is_empty() && !needs_taint {
        return None;
    }
    let mut patch = json!({"metadata": {"resourceVersion": node.resource_version(), "labels": missing}});
    if needs_taint {
        // A zone taint under the same key with another value would have been refused by
        // [`check`]; one with another effect is replaced.
        let mut new: Vec<Taint> = taints.into_iter().filter(|t| t.key != taint.key).collect();
        new.push(Taint {
            key: taint.key.clone(),
            value: Some(taint.value.clone()),
            effect: taint.effect.clone(),
            time_added: None,
        });
        added.taint = Some(taint.key.clone());
        patch["spec"] = json!({"taints": new});
    }
    patch["metadata"]["annotations"] = json!({labels::ROOM_ADDED: serde_json::to_string(&added).unwrap_or_default()});
    Some(patch)
}

/// The merge patch that lets a node go from its room: the room's labels, and the zone labels
/// and taint the room added, removed.
pub fn release_patch(node: &Node) -> Value {
    let added = Added::of(node);
    let mut remove: BTreeMap<String, Value> = [labels::ROOM, labels::ROOM_DEPARTMENT, labels::ARCH]
        .into_iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    for k in &added.labels {
        remove.insert(k.clone(), Value::Null);
    }
    let mut patch = json!({"metadata": {
        "resourceVersion": node.resource_version(),
        "labels": remove,
        "annotations": {labels::ROOM_ADDED: null},
    }});
    if let Some(key) = &added.taint {
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| &t.key != key)
            .collect();
        patch["spec"] = json!({"taints": taints});
    }
    patch
}

/// What a pod requests: its containers' requests summed, or its largest init container's
/// where that is more, plus its overhead (as the scheduler counts it).
pub fn pod_requests(pod: &Pod) -> BTreeMap<String, Milli> {
    let mut sum: BTreeMap<String, Milli> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else { return sum };
    let requests = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| quantity::parse(&v.0).ok().map(|m| (k, m)))
            .collect::<BTreeMap<String, Milli>>()
    };
    for c in &spec.containers {
        for (k, v) in requests(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in requests(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, v) in spec.overhead.iter().flatten() {
        if let Ok(m) = quantity::parse(&v.0) {
            *sum.entry(k.clone()).or_default() += m;
        }
    }
    sum
}

pub use crate::zones::{allocatable_milli as allocatable, format_sums};

/// Requested over allocatable, in whole percent, for the resources both have.
pub fn utilisation(
    requested: &BTreeMap<String, Milli>,
    allocatable: &BTreeMap<String, Milli>,
) -> BTreeMap<String, i32> {
    requested
        .iter()
        .filter_map(|(k, r)| {
            let a = *allocatable.get(k)?;
            (a > 0).then(|| (k.clone(), ((r * 100 + a / 2) / a).clamp(0, i32::MAX as i128) as i32))
        })
        .collect()
}

/// Where the room is: by whether it has nodes and servers still to migrate.
pub fn phase(has_nodes: bool, has_inventory: bool) -> MigrationPhase {
    match (has_nodes, has_inventory) {
        (false, true) => MigrationPhase::Planned,
        (true, true) => MigrationPhase::Migrating,
        (true, false) => MigrationPhase::Consolidated,
        (false, false) => MigrationPhase::Retired,
    }
}

/// The inventory, counted.
pub fn inventory(spec: &ComputerRoomSpec) -> Option<InventorySummary> {
    (!spec.inventory.is_empty()).then(|| InventorySummary {
        servers: spec.inventory.len() as i32,
        systems: spec.inventory.iter().map(|s| s.systems.len() as i32).sum(),
        cores: spec.inventory.iter().map(|s| i64::from(s.cores)).sum(),
        memory_gib: spec.inventory.iter().map(|s| i64::from(s.memory_gib)).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Arch, RoomNodes, RoomServer, RoomSystem, ZoneKind, ZoneSpec};

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.resource_version = Some("7".into());
        n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, v)| Taint {
                        key: k.to_string(),
                        value: Some(v.to_string()),
                        effect: "NoSchedule".into(),
                        time_added: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    fn zone(name: &str) -> Zone {
        let mut z = Zone::new(
            name,
            ZoneSpec {
                kind: ZoneKind::Intranet,
                node_selector: BTreeMap::from([("zhengyun.io/zone".to_string(), name.to_string())]),
                taint: None,
                egress: vec![],
                ingress: vec![],
                allow_public_ranges: false,
                allowed_service_types: vec![],
                min_security_level: 2,
            },
        );
        z.metadata.name = Some(name.into());
        z
    }

    fn room(name: &str, names: &[&str], arch: Option<Arch>) -> ComputerRoom {
        let mut r = ComputerRoom::new(
            name,
            ComputerRoomSpec {
                department: "edu".into(),
                location: "2F".into(),
                zone: "intranet".into(),
                arch,
                nodes: RoomNodes { selector: BTreeMap::new(), names: names.iter().map(|s| s.to_string()).collect() },
                inventory: vec![],
            },
        );
        r.metadata.name = Some(name.into());
        r
    }

    #[test]
    fn a_free_node_of_the_right_arch_gets_room_and_zone_labels_and_the_taint_and_lets_go_of_only_those() {
        let (z, other) = (zone("intranet"), zone("extranet"));
        let r = room("edu-room", &["n1"], Some(Arch::Arm64));
        let n = node("n1", &[("kubernetes.io/arch", "arm64"), ("team", "x")], &[]);
        assert_eq!(check("edu-room", &r.spec, &[&n], &[&r], &z, &[&z, &other]), Ok(()));
        let p = label_patch("edu-room", &r.spec, &z, &n).expect("a patch");
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["labels"]["zhengyun.io/room"], "edu-room");
        assert_eq!(p["metadata"]["labels"]["zhengyun.io/room-department"], "edu");
        assert_eq!(p["metadata"]["labels"]["zhengyun.io/arch"], "arm64");
        assert_eq!(p["metadata"]["labels"]["zhengyun.io/zone"], "intranet");
        assert_eq!(p["spec"]["taints"][0]["key"], "zhengyun.io/zone");
        // Applied: nothing more to do.
        let mut applied = n.clone();
        let mut l = applied.metadata.labels.clone().unwrap_or_default();
        for (k, v) in p["metadata"]["labels"].as_object().into_iter().flatten() {
            l.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
        applied.metadata.labels = Some(l);
        applied.metadata.annotations = Some(BTreeMap::from([(
            labels::ROOM_ADDED.to_string(),
            p["metadata"]["annotations"][labels::ROOM_ADDED].as_str().unwrap_or_default().to_string(),
        )]));
        applied.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: serde_json::from_value(p["spec"]["taints"].clone()).ok(),
            ..Default::default()
        });
        assert_eq!(label_patch("edu-room", &r.spec, &z, &applied), None);
        let back = release_patch(&applied);
        for k in ["zhengyun.io/room", "zhengyun.io/room-department", "zhengyun.io/arch", "zhengyun.io/zone"] {
            assert_eq!(back["metadata"]["labels"][k], Value::Null, "{k}");
        }
        assert!(back["metadata"]["labels"].get("team").is_none(), "other labels are left alone");
        assert_eq!(back["spec"]["taints"], json!([]));
    }

    #[test]
    fn a_zone_label_and_taint_the_admin_put_there_stay_when_the_node_goes() {
        let z = zone("intranet");
        let r = room("edu-room", &["n1"], None);
        let n = node(
            "n1",
            &[("kubernetes.io/arch", "amd64"), ("zhengyun.io/zone", "intranet")],
            &[("zhengyun.io/zone", "intranet")],
        );
        let p = label_patch("edu-room", &r.spec, &z, &n).expect("room labels");
        assert!(p.get("spec").is_none(), "the taint is there already");
        assert!(p["metadata"]["labels"].get("zhengyun.io/zone").is_none());
        let mut applied = n.clone();
        applied.metadata.annotations = Some(BTreeMap::from([(
            labels::ROOM_ADDED.to_string(),
            p["metadata"]["annotations"][labels::ROOM_ADDED].as_str().unwrap_or_default().to_string(),
        )]));
        let back = release_patch(&applied);
        assert!(back["metadata"]["labels"].get("zhengyun.io/zone").is_none());
        assert!(back.get("spec").is_none());
    }

    #[test]
    fn two_rooms_another_arch_or_another_zone_are_refused_for_every_node() {
        let (z, other) = (zone("intranet"), zone("extranet"));
        let a = room("a", &["n1", "n2"], Some(Arch::Amd64));
        let b = room("b", &["n2"], None);
        let (n1, n2) =
            (node("n1", &[("kubernetes.io/arch", "amd64")], &[]), node("n2", &[("kubernetes.io/arch", "amd64")], &[]));
        let e = check("a", &a.spec, &[&n1, &n2], &[&a, &b], &z, &[&z, &other]).expect_err("two rooms");
        assert_eq!(e.reason, "NodeInTwoRooms");
        assert!(e.message.contains("n2") && e.message.contains("no node was labelled"), "{}", e.message);
        // Once a holds n2 (its label), b is the one refused.
        let held = node("n2", &[("kubernetes.io/arch", "amd64"), ("zhengyun.io/room", "a")], &[]);
        assert_eq!(check("a", &a.spec, &[&n1, &held], &[&a, &b], &z, &[&z, &other]), Ok(()));
        assert_eq!(
            check("b", &b.spec, &[&held], &[&a, &b], &z, &[&z, &other]).map_err(|e| e.reason),
            Err("NodeInTwoRooms")
        );
        let arm = node("n3", &[("kubernetes.io/arch", "arm64")], &[]);
        let e = check("a", &a.spec, &[&arm], &[&a], &z, &[&z]).expect_err("arch");
        assert_eq!(e.reason, "ArchMismatch");
        let ext = node("n4", &[("kubernetes.io/arch", "amd64"), ("zhengyun.io/zone", "extranet")], &[]);
        assert_eq!(check("a", &a.spec, &[&ext], &[&a], &z, &[&z, &other]).map_err(|e| e.reason), Err("ZoneMismatch"));
        let tainted = node("n5", &[("kubernetes.io/arch", "amd64")], &[("zhengyun.io/zone", "extranet")]);
        assert_eq!(
            check("a", &a.spec, &[&tainted], &[&a], &z, &[&z, &other]).map_err(|e| e.reason),
            Err("ZoneMismatch")
        );
    }

    #[test]
    fn absurd_inventories_are_refused_naming_the_field() {
        let mut r = room("a", &["n1"], None);
        let system = RoomSystem {
            name: "web".into(),
            department: None,
            cpu_cores: -2.0,
            memory_gib: 4.0,
            disk_gib: 10.0,
            gpus: 0,
            replicas: 1,
            zone: None,
            arch: None,
        };
        r.spec.inventory = vec![RoomServer {
            name: "s1".into(),
            cores: 8,
            memory_gib: 32,
            disk_gib: 100,
            gpus: 0,
            arch: Arch::Amd64,
            peak_utilisation_percent: Some(20),
            systems: vec![system],
        }];
        let e = validate(&r.spec).expect_err("negative cpu");
        assert!(e.message.starts_with("spec.inventory[0].systems[0].cpuCores"), "{}", e.message);
        r.spec.inventory[0].systems[0].cpu_cores = 1.0;
        assert_eq!(validate(&r.spec), Ok(()));
        r.spec.inventory[0].cores = 100_000;
        assert!(validate(&r.spec).expect_err("absurd").message.starts_with("spec.inventory[0].cores"));
    }

    #[test]
    fn pods_count_as_the_scheduler_counts_them_and_utilisation_is_rounded() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "250m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"}
        }}))
        .expect("pod");
        let r = pod_requests(&pod);
        assert_eq!(r["cpu"], 1010);
        assert_eq!(r["memory"], 64 * 1024 * 1024 * 1000);
        let alloc = BTreeMap::from([("cpu".to_string(), 4000), ("memory".to_string(), 0)]);
        assert_eq!(utilisation(&r, &alloc), BTreeMap::from([("cpu".to_string(), 25)]));
        assert_eq!(phase(false, true), MigrationPhase::Planned);
        assert_eq!(phase(true, false), MigrationPhase::Consolidated);
    }
}
