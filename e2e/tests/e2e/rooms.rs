//! Computer rooms joining the shared cloud (集约化) and 信创 placement, against the real API
//! server: a room labels and taints its nodes and reports what they hold; a node in two rooms,
//! of another architecture or zone is refused without a label touched; a tenant asking for an
//! architecture its zone lacks is told so, and so are its pods, until a room of that
//! architecture joins. Nodes are Node objects created here (the real nodes stay in their zones).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun::api::{ComputerRoom, MigrationPhase, Tenant, Zone, ZoneKind, ZoneSpec};
use zhengyun_e2e::{
    Cleanup, SECONDS, apply_tenant, client, condition, events_about, node_tenant, operator_with_webhook, refused,
    restricted_pod, wait_for,
};

const ZONE: &str = "roomzone";

fn node(name: &str, arch: &str, extra: &[(&str, &str)]) -> Node {
    let mut labels: BTreeMap<String, String> = BTreeMap::from([("kubernetes.io/arch".to_string(), arch.to_string())]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    // No kubelet runs these nodes: nothing may be scheduled onto them (in the full suite, pods
    // other tests left pending were, and the room rightly counted them). Pods bound here by
    // name in this test skip the scheduler, and with it this taint.
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": NO_KUBELET, "value": "true", "effect": "NoSchedule"}]}}))
    .expect("node")
}

/// The taint that keeps the scheduler off the kubelet-less nodes made here.
const NO_KUBELET: &str = "zhengyun.io/e2e-no-kubelet";

async fn make_node(client: &Client, n: &Node) {
    let api: Api<Node> = Api::all(client.clone());
    let _ = api.delete(&n.name_any(), &DeleteParams::default()).await;
    wait_for("old node gone", SECONDS, || async { api.get_opt(&n.name_any()).await.ok()?.is_none().then_some(()) })
        .await;
    api.create(&PostParams::default(), n).await.expect("create node");
    // What a kubelet would report: 16 cores and 64 GiB allocatable.
    let status = json!({"status": {"allocatable": {"cpu": "16", "memory": "64Gi", "ephemeral-storage": "500Gi", "pods": "110"},
                                   "capacity": {"cpu": "16", "memory": "64Gi", "ephemeral-storage": "500Gi", "pods": "110"}}});
    api.patch_status(&n.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await.expect("node status");
}

fn room(name: &str, nodes: &[&str], arch: &str, inventory: Value) -> ComputerRoom {
    serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ComputerRoom",
        "metadata": {"name": name},
        "spec": {"department": "edu", "location": "Building 3, 2F", "zone": ZONE, "arch": arch,
                 "nodes": {"names": nodes}, "inventory": inventory}
    }))
    .expect("room")
}

async fn apply_room(client: &Client, r: &ComputerRoom) {
    Api::<ComputerRoom>::all(client.clone())
        .patch(&r.name_any(), &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(r))
        .await
        .expect("apply room");
}

async fn labels(client: &Client, node: &str) -> BTreeMap<String, String> {
    Api::<Node>::all(client.clone()).get(node).await.expect("node").labels().clone()
}

async fn taints(client: &Client, node: &str) -> Vec<String> {
    let n = Api::<Node>::all(client.clone()).get(node).await.expect("node");
    n.spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}={}", t.key, t.value.clone().unwrap_or_default()))
        .collect()
}

/// The room's Ready condition once it is for the room's generation: (status, reason, message).
async fn ready(client: &Client, name: &str) -> (String, String, String) {
    let api: Api<ComputerRoom> = Api::all(client.clone());
    wait_for(&format!("room {name} observed"), SECONDS, || async {
        let r = api.get(name).await.ok()?;
        let s = r.status?;
        (s.observed_generation == r.metadata.generation).then_some(())?;
        let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((c.status.clone(), c.reason.clone(), c.message.clone()))
    })
    .await
}

#[tokio::test]
async fn rooms_label_their_nodes_refuse_conflicts_and_arch_aware_tenants_land_on_their_arch() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "rooms").await;
    // Dropped before the operator stops: rooms and tenants have finalizers it must run.
    let steps = || {
        vec![
            vec!["delete", "computerroom", "--all", "--ignore-not-found", "--timeout=60s"],
            vec!["delete", "tenant", "roomt", "roomarm", "--ignore-not-found", "--timeout=60s"],
            vec!["delete", "node", "room-n1", "room-n2", "room-x86", "room-ext", "room-arm1", "--ignore-not-found"],
            vec!["delete", "zone", ZONE, "--ignore-not-found"],
        ]
    };
    // Whatever an interrupted run left goes first.
    drop(Cleanup(steps()));
    let _cleanup = Cleanup(steps());
    let zone = Zone::new(
        ZONE,
        ZoneSpec {
            kind: ZoneKind::Extranet,
            node_selector: BTreeMap::from([("zhengyun.io/zone".to_string(), ZONE.to_string())]),
            taint: None,
            egress: vec![],
            ingress: vec![],
            allow_public_ranges: false,
            allowed_service_types: vec![],
            min_security_level: 2,
        },
    );
    Api::<Zone>::all(client.clone())
        .patch(ZONE, &PatchParams::apply("zhengyun-e2e"), &Patch::Apply(&zone))
        .await
        .expect("zone");
    for n in [
        node("room-n1", "amd64", &[("team", "ops")]),
        node("room-n2", "amd64", &[]),
        node("room-x86", "amd64", &[]),
        node("room-ext", "amd64", &[("zhengyun.io/zone", "extranet")]),
        node("room-arm1", "arm64", &[]),
    ] {
        make_node(&client, &n).await;
    }

    // Bad input never reaches the controller: the API server names the field.
    let mut bad = room(
        "edu-room",
        &["room-n1"],
        "amd64",
        json!([{"name": "s1", "cores": 8, "memoryGib": 32, "arch": "amd64",
        "systems": [{"name": "web", "cpuCores": -1, "memoryGib": 4}]}]),
    );
    let err = Api::<ComputerRoom>::all(client.clone())
        .create(&PostParams::default(), &bad)
        .await
        .map(|_| ())
        .expect_err("a negative size is refused");
    assert!(err.to_string().contains("cpuCores"), "{err}");
    bad.spec.inventory[0].systems[0].cpu_cores = 2.0;
    bad.spec.inventory[0].cores = 100_000;
    let err = Api::<ComputerRoom>::all(client.clone())
        .create(&PostParams::default(), &bad)
        .await
        .map(|_| ())
        .expect_err("absurd");
    assert!(err.to_string().contains("cores"), "{err}");

    // A room of two amd64 servers that joined, and two still to migrate.
    let inventory = json!([
        {"name": "old-1", "cores": 16, "memoryGib": 64, "diskGib": 500, "arch": "amd64", "peakUtilisationPercent": 12,
         "systems": [{"name": "portal", "cpuCores": 2, "memoryGib": 4, "replicas": 2}, {"name": "db", "cpuCores": 4, "memoryGib": 16}]},
        {"name": "old-2", "cores": 64, "memoryGib": 256, "arch": "amd64",
         "systems": [{"name": "huge", "cpuCores": 60, "memoryGib": 200}]}
    ]);
    apply_room(&client, &room("edu-room", &["room-n1", "room-n2"], "amd64", inventory)).await;
    let (ok, reason, message) = ready(&client, "edu-room").await;
    assert_eq!((ok.as_str(), reason.as_str()), ("True", "NodesLabelled"), "{message}");
    for n in ["room-n1", "room-n2"] {
        let l = labels(&client, n).await;
        assert_eq!(l.get("zhengyun.io/room").map(String::as_str), Some("edu-room"), "{n}: {l:?}");
        assert_eq!(l.get("zhengyun.io/room-department").map(String::as_str), Some("edu"));
        assert_eq!(l.get("zhengyun.io/arch").map(String::as_str), Some("amd64"));
        assert_eq!(l.get("zhengyun.io/zone").map(String::as_str), Some(ZONE));
        assert!(taints(&client, n).await.contains(&format!("zhengyun.io/zone={ZONE}")), "{n} tainted");
    }
    let rooms: Api<ComputerRoom> = Api::all(client.clone());
    // The plan is made on the zone's nodes as the cache shows them: once the labels are seen.
    let status = wait_for("the room's plan on its labelled nodes", SECONDS, || async {
        let s = rooms.get("edu-room").await.ok()?.status?;
        (s.plan.as_ref()?.nodes_used > 0).then_some(s)
    })
    .await;
    assert_eq!(status.phase, Some(MigrationPhase::Migrating));
    assert_eq!(status.nodes, vec!["room-n1", "room-n2"]);
    assert_eq!(status.allocatable.get("cpu").map(String::as_str), Some("32"), "{status:?}");
    let plan = status.plan.expect("the planner's summary");
    // 70% of the two nodes' 32 cores hold portal x2 and db, not the 60-core system.
    assert_eq!((plan.placeable_replicas, plan.unplaced_replicas, plan.retirable_servers), (3, 1, 1), "{plan:?}");
    assert!(plan.unplaced_reason.as_deref().is_some_and(|r| r.starts_with("old-2/huge")), "{plan:?}");
    assert_eq!(status.inventory.map(|i| (i.servers, i.systems)), Some((2, 3)));

    // The cloud office's report, read from the cluster (the planner's JSON schema).
    let bin = std::env::var("ZHENGYUN_OPERATOR_BIN").expect("ZHENGYUN_OPERATOR_BIN");
    let out =
        zhengyun_e2e::must("zhengyun-operator plan", zhengyun_e2e::run_tool(&bin, &["plan", "--format", "json"], None));
    let report: Value = serde_json::from_str(&out).expect("the plan as JSON");
    assert_eq!(report["schema"], "zhengyun.io/consolidation-plan/v1", "{report}");
    assert_eq!(report["summary"]["servers"], 2, "{}", report["summary"]);
    assert_eq!(report["summary"]["servers_retirable"], 1, "{}", report["summary"]);
    assert!(report["showback"].to_string().contains("\"edu\""), "{}", report["showback"]);

    // Showback: what the department's rooms brought, as a Prometheus gauge.
    let series = "zhengyun_department_resources{department=\"edu\",kind=\"allocatable\",resource=\"cpu\"}";
    wait_for("the department's allocatable cores shown back", Duration::from_secs(60), || async {
        (_op.metric(series).await? == 32.0).then_some(())
    })
    .await;

    // A tenant's pod bound to a room node counts in what the room holds.
    apply_tenant(&client, &node_tenant("roomt", &["apps"], ZONE, 3)).await;
    zhengyun_e2e::wait_ready(&client, "roomt").await;
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "roomt-apps");
    wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
    let mut p = restricted_pod("bound", "localhost/zhengyun/pause:0.1.0");
    if let Some(s) = p.spec.as_mut() {
        s.node_name = Some("room-n1".into());
        // These nodes have no kubelet: once the node lifecycle controller marks them
        // unreachable, a pod that does not tolerate it is evicted at once (this control plane
        // has no DefaultTolerationSeconds).
        s.tolerations = serde_json::from_value(json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
        ]))
        .ok();
        s.containers[0].resources = serde_json::from_value(
            json!({"requests": {"cpu": "4", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "1Gi"}}),
        )
        .ok();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "roomt-apps");
    pods.create(&PostParams::default(), &p).await.expect("bound pod");
    let counted = |s: &zhengyun::api::ComputerRoomStatus| {
        s.requested.get("cpu").map(String::as_str) == Some("4")
            && s.utilisation_percent.get("cpu") == Some(&13)
            && s.tenants == vec!["roomt".to_string()]
    };
    let start = std::time::Instant::now();
    loop {
        let status = rooms.get("edu-room").await.ok().and_then(|r| r.status);
        if status.as_ref().is_some_and(counted) {
            break;
        }
        if start.elapsed() > SECONDS {
            // What was seen, for whoever reads a failure: the room, the pod, the node, and
            // what the operator said.
            let pod = pods.get_opt("bound").await.ok().flatten();
            let node = Api::<Node>::all(client.clone()).get_opt("room-n1").await.ok().flatten();
            let log = std::fs::read_to_string(&_op.log).unwrap_or_default();
            let said: Vec<&str> =
                log.lines().filter(|l| l.contains("room") || l.contains("panic") || l.contains("ERROR")).collect();
            panic!(
                "the room did not count the pod within {SECONDS:?}\nstatus: {status:?}\npod: {:?} {:?}\nnode: {:?} {:?}\n\
                 operator ({} lines) said:\n{}",
                pod.as_ref().and_then(|p| p.spec.as_ref()?.node_name.clone()),
                pod.as_ref().and_then(|p| p.status.as_ref()?.phase.clone()),
                node.as_ref().map(|n| n.labels().clone()),
                node.as_ref().and_then(|n| n.spec.as_ref()?.taints.clone()),
                said.len(),
                said[said.len().saturating_sub(40)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A second room naming room-n2: refused, nothing of it applied, and room-n2 stays edu-room's.
    apply_room(&client, &room("other-room", &["room-n2", "room-x86"], "amd64", json!([]))).await;
    let (ok, reason, message) = ready(&client, "other-room").await;
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "NodeInTwoRooms"), "{message}");
    assert!(message.contains("room-n2") && message.contains("no node was labelled"), "{message}");
    assert!(!labels(&client, "room-x86").await.contains_key("zhengyun.io/room"), "not half applied");
    assert_eq!(labels(&client, "room-n2").await.get("zhengyun.io/room").map(String::as_str), Some("edu-room"));
    let events = events_about(&client, "ComputerRoom", "other-room").await;
    assert!(events.iter().any(|e| e.starts_with("NodeInTwoRooms:")), "{events:?}");

    rooms.delete("other-room", &DeleteParams::default()).await.expect("delete other-room");
    wait_for("other-room gone", SECONDS, || async { rooms.get_opt("other-room").await.ok()?.is_none().then_some(()) })
        .await;

    // Another architecture, another zone: refused the same way.
    apply_room(&client, &room("wrong-arch", &["room-x86"], "arm64", json!([]))).await;
    let (_, reason, message) = ready(&client, "wrong-arch").await;
    assert_eq!(reason, "ArchMismatch", "{message}");
    apply_room(&client, &room("wrong-zone", &["room-ext"], "amd64", json!([]))).await;
    let (_, reason, message) = ready(&client, "wrong-zone").await;
    assert_eq!(reason, "ZoneMismatch", "{message}");
    for n in ["room-x86", "room-ext"] {
        let l = labels(&client, n).await;
        assert!(!l.contains_key("zhengyun.io/room"), "{n}: {l:?}");
    }
    assert_eq!(labels(&client, "room-ext").await.get("zhengyun.io/zone").map(String::as_str), Some("extranet"));

    // 信创: an arm64 tenant in a zone with no arm64 node is told so, and so are its pods.
    let mut arm = node_tenant("roomarm", &["apps"], ZONE, 3);
    arm.spec.arch = Some(zhengyun::api::Arch::Arm64);
    apply_tenant(&client, &arm).await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    wait_for("roomarm says it has no arm64 node", SECONDS, || async {
        let t = tenants.get("roomarm").await.ok()?;
        let (status, reason, _) = condition(&t, "Ready")?;
        (status == "False" && reason == "NoNodesForArch").then_some(())
    })
    .await;
    let ns = Api::<Namespace>::all(client.clone()).get("roomarm-apps").await.expect("namespace");
    assert_eq!(ns.labels().get("zhengyun.io/arch").map(String::as_str), Some("arm64"));
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "roomarm-apps");
    wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
    let arm_pods: Api<Pod> = Api::namespaced(client.clone(), "roomarm-apps");
    let dry = PostParams { dry_run: true, ..Default::default() };
    let why = refused(
        arm_pods.create(&dry, &restricted_pod("a", "localhost/zhengyun/pause:0.1.0")).await,
        "has no arm64 node",
    );
    assert!(why.contains("spec.arch"), "{why}");

    // An arm64 room joins the zone: the tenant becomes Ready and its pods are pinned to arm64.
    apply_room(&client, &room("arm-room", &["room-arm1"], "arm64", json!([]))).await;
    assert_eq!(ready(&client, "arm-room").await.0, "True");
    wait_for("roomarm Ready once the zone has an arm64 node", Duration::from_secs(90), || async {
        let t = tenants.get("roomarm").await.ok()?;
        (condition(&t, "Ready")?.0 == "True").then_some(())
    })
    .await;
    let admitted =
        arm_pods.create(&dry, &restricted_pod("a", "localhost/zhengyun/pause:0.1.0")).await.expect("admitted");
    let terms = serde_json::to_value(admitted.spec.and_then(|s| s.affinity)).expect("affinity");
    let exprs = terms["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"].clone();
    assert!(
        exprs
            .as_array()
            .is_some_and(|e| e.contains(&json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}))),
        "{exprs}"
    );
    let mut x86 = restricted_pod("b", "localhost/zhengyun/pause:0.1.0");
    if let Some(s) = x86.spec.as_mut() {
        s.node_selector = Some(BTreeMap::from([("kubernetes.io/arch".to_string(), "amd64".to_string())]));
    }
    refused(arm_pods.create(&dry, &x86).await, "arm64");

    // A node leaves the room: what the room added goes, what was there stays.
    apply_room(&client, &room("edu-room", &["room-n1"], "amd64", json!([]))).await;
    wait_for("room-n2 let go", SECONDS, || async {
        let l = labels(&client, "room-n2").await;
        (!l.contains_key("zhengyun.io/room") && !l.contains_key("zhengyun.io/zone")).then_some(())
    })
    .await;
    let left = taints(&client, "room-n2").await;
    assert!(!left.iter().any(|t| t.starts_with("zhengyun.io/zone")), "{left:?}");
    assert!(left.contains(&format!("{NO_KUBELET}=true")), "a taint the room did not add stays: {left:?}");
    let s = rooms.get("edu-room").await.expect("room").status.expect("status");
    assert_eq!(s.phase, Some(MigrationPhase::Consolidated), "no server left to migrate");

    // The room deleted: its nodes are let go before it disappears.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .expect("delete pod");
    rooms.delete("edu-room", &DeleteParams::default()).await.expect("delete room");
    wait_for("edu-room gone", SECONDS, || async { rooms.get_opt("edu-room").await.ok()?.is_none().then_some(()) })
        .await;
    let l = labels(&client, "room-n1").await;
    assert!(!l.contains_key("zhengyun.io/room") && !l.contains_key("zhengyun.io/zone"), "{l:?}");
    assert_eq!(l.get("team").map(String::as_str), Some("ops"), "the admin's own label stays");
}
