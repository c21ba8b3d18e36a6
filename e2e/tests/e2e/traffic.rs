//! Isolation shown by traffic: probe pods (the `probe` image, hack/build-images.sh) in tenants of
//! both zones on the real nodes try every other pod, and every observed result must be the
//! verdict `zhengyun::reachability` (what `zhengyun-operator reachability` prints) gives for the
//! NetworkPolicies in force. kube-router enforces them on each node. Then an exchange channel
//! opens exactly its port in its direction and closes again, an allow-all policy on one side
//! opens nothing, and a deleted default-deny policy is measured while traffic runs.
//!
//! Every address tried is a pod's on this machine (10.244.0.0/16, on the nodes' bridges).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service, ServiceAccount},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun::api::{ChannelPhase, ExchangeChannel};
use zhengyun::reachability::{self, Endpoint, PodRef, Port, World};
use zhengyun_e2e::{
    SECONDS, apply_tenant, as_user, client, grant_channels, must, node_tenant, nodes_here, operator_with_webhook,
    refused, run_tool, wait_for, wait_ready, workdir,
};

const PROBE: &str = "localhost/zhengyun/probe:0.1.0";
const PORTS: [u16; 2] = [8080, 9090];
const APPROVER: &str = "director-traffic";

/// A probe pod that PSA `restricted` admits, serving both ports (named, so the model can
/// resolve a rule that names one).
fn probe_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": PROBE, "imagePullPolicy": "Never",
                "env": [{"name": "PROBE_NAME", "value": name}],
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("pod")
}

/// Where a probe runs, which says how to make it connect.
#[derive(Clone)]
enum Runs {
    /// In a pod: through the kubelet, as `kubectl exec` does.
    Pod,
    /// In the outside network's namespace (hack/lib/nodes.sh), as root here.
    Netns { netns: String, bin: String },
}

/// A running probe and what the policies see of it.
#[derive(Clone)]
struct Probe {
    name: String,
    namespace: String,
    ip: String,
    node: String,
    endpoint: Endpoint,
    runs: Runs,
}

impl Probe {
    fn label(&self) -> String {
        match self.runs {
            Runs::Pod => format!("{}/{}", self.namespace, self.name),
            Runs::Netns { .. } => format!("{} {}", self.name, self.ip),
        }
    }
}

/// The outside network hack/lib/nodes.sh makes (a network namespace standing for the external
/// network the intranet zone declares), if this run has one.
fn outside() -> Option<Probe> {
    let ip = std::env::var("ZHENGYUN_OUTSIDE_IP").ok()?;
    let netns = std::env::var("ZHENGYUN_OUTSIDE_NETNS").ok()?;
    let bin = std::env::var("ZHENGYUN_PROBE_BIN").ok()?;
    Some(Probe {
        name: "outside".into(),
        namespace: String::new(),
        endpoint: Endpoint::External(ip.parse().expect("ZHENGYUN_OUTSIDE_IP")),
        ip,
        node: "outside network".into(),
        runs: Runs::Netns { netns, bin },
    })
}

async fn start_probe(client: &Client, namespace: &str, name: &str) -> Probe {
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&PostParams::default(), &probe_pod(name)).await.expect("create a probe pod");
    let running = wait_for(&format!("probe {namespace}/{name} running"), Duration::from_secs(90), || async {
        let p = pods.get(name).await.ok()?;
        let s = p.status.as_ref()?;
        let ready = s.container_statuses.as_ref()?.iter().all(|c| c.ready);
        (s.phase.as_deref() == Some("Running") && ready && s.pod_ip.is_some()).then_some(p)
    })
    .await;
    let ns = Api::<Namespace>::all(client.clone()).get(namespace).await.expect("namespace");
    let endpoint = Endpoint::Pod(PodRef {
        namespace: namespace.into(),
        namespace_labels: ns.metadata.labels.unwrap_or_default(),
        labels: running.metadata.labels.clone().unwrap_or_default(),
        named_ports: BTreeMap::from([("http".to_string(), 8080), ("admin".to_string(), 9090)]),
    });
    Probe {
        name: name.into(),
        namespace: namespace.into(),
        ip: running.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        node: running.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        endpoint,
        runs: Runs::Pod,
    }
}

/// One connection attempt, as the probe reported it.
#[derive(Debug, Clone)]
struct Tried {
    ok: bool,
    millis: f64,
    /// The greeting (the pod that answered) or the error.
    detail: String,
    /// When it began, in milliseconds since the Unix epoch (pods share this machine's clock).
    at_ms: u128,
}

/// Runs `probe connect` where `from` runs (in a pod through the kubelet, as `kubectl exec`
/// does, or in the outside network's namespace) against `targets`; one result per target, in
/// order.
fn connect(from: &Probe, targets: &[String], timeout_ms: u32) -> Vec<Tried> {
    let timeout = timeout_ms.to_string();
    let mut args = vec!["connect", "--timeout-ms", &timeout];
    args.extend(targets.iter().map(String::as_str));
    let tried = parse(&run_probe(from, &args));
    assert_eq!(tried.len(), targets.len(), "one result per target from {}: {tried:?}", from.label());
    tried
}

/// Runs the probe binary where `from` runs (in a pod through the kubelet, as `kubectl exec`
/// does, or in the outside network's namespace) with `args`; what it printed.
fn run_probe(from: &Probe, args: &[&str]) -> String {
    let (ok, out) = match &from.runs {
        Runs::Pod => {
            let mut all = vec!["exec", "-n", &from.namespace, &from.name, "--", "/probe"];
            all.extend(args);
            run_tool("kubectl", &all, None)
        }
        Runs::Netns { netns, bin } => {
            let net = format!("--net={netns}");
            let mut all = vec![net.as_str(), "--", bin];
            all.extend(args);
            run_tool("nsenter", &all, None)
        }
    };
    assert!(ok, "probe {args:?} from {}: {out}", from.label());
    out
}

/// The probe's JSON lines.
fn parse(out: &str) -> Vec<Tried> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Tried {
            ok: v["ok"].as_bool().unwrap_or(false),
            millis: v["ms"].as_f64().unwrap_or(0.0),
            detail: v["peer"].as_str().or(v["error"].as_str()).unwrap_or_default().to_string(),
            at_ms: v["at"].as_u64().map(u128::from).unwrap_or(0),
        })
        .collect()
}

/// The NetworkPolicies in force, as the model reads them (kube-router enforces
/// NetworkPolicy only; no ClusterNetworkPolicy API is served in this test).
async fn world(client: &Client) -> World {
    let nps = Api::<NetworkPolicy>::all(client.clone()).list(&ListParams::default()).await.expect("policies").items;
    World { network_policies: nps, cluster_policies: vec![] }
}

/// What `zhengyun-operator reachability --pods` says of every pair of running pods and the
/// outside address: the command a cloud admin runs, beside the library the test calls.
fn cli_verdicts(probes: &[Probe]) -> BTreeMap<(String, String, u16), bool> {
    let bin = std::env::var("ZHENGYUN_OPERATOR_BIN").expect("ZHENGYUN_OPERATOR_BIN (hack/test.sh sets it)");
    let outside: Vec<String> =
        probes.iter().filter(|p| matches!(p.runs, Runs::Netns { .. })).map(|p| p.ip.clone()).collect();
    let ports = PORTS.map(|p| p.to_string()).join(",");
    let mut args = vec!["reachability", "--pods", "--ports", &ports];
    let outside = outside.join(",");
    if !outside.is_empty() {
        args.extend(["--outside", &outside]);
    }
    let out = must("zhengyun-operator reachability --pods", run_tool(&bin, &args, None));
    // The command names pods `namespace/name` and outside addresses by IP; the test by name.
    let name_of = |key: &str| {
        probes
            .iter()
            .find(|p| if p.namespace.is_empty() { p.ip == key } else { format!("{}/{}", p.namespace, p.name) == key })
            .map(|p| p.name.clone())
    };
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let from = name_of(v["from"].as_str()?)?;
            let to = name_of(v["to"].as_str()?)?;
            Some(((from, to, u16::try_from(v["port"].as_u64()?).ok()?), v["allowed"].as_bool()?))
        })
        .collect()
}

/// Every probe against every other probe on both ports: observed beside the model's verdict.
struct Matrix {
    /// (from, to, port) -> (observed, predicted, latency in ms)
    cells: BTreeMap<(String, String, u16), (Tried, bool)>,
    /// The same cells as `zhengyun-operator reachability --pods` judged them.
    cli: BTreeMap<(String, String, u16), bool>,
}

impl Matrix {
    fn observed(&self, from: &str, to: &str, port: u16) -> bool {
        self.cells.get(&(from.into(), to.into(), port)).map(|(t, _)| t.ok).unwrap_or(false)
    }

    /// Markdown: rows are sources, columns destination:port; ✅ connected (latency), ⛔ refused
    /// or timed out; a cell the model predicted otherwise is marked ❗.
    fn markdown(&self, probes: &[Probe]) -> String {
        let mut s = String::from("| from \\ to |");
        for p in probes {
            for port in PORTS {
                let _ = write!(s, " {}:{port} |", p.label());
            }
        }
        s.push_str("\n|---|");
        for _ in 0..probes.len() * PORTS.len() {
            s.push_str("---|");
        }
        s.push('\n');
        for from in probes {
            let _ = write!(s, "| {} ({}) |", from.label(), from.node);
            for to in probes {
                for port in PORTS {
                    match self.cells.get(&(from.name.clone(), to.name.clone(), port)) {
                        None => s.push_str(" · |"),
                        Some((t, predicted)) => {
                            let mark = if t.ok == *predicted { "" } else { " ❗" };
                            if t.ok {
                                let _ = write!(s, " ✅ {:.1} ms{mark} |", t.millis);
                            } else {
                                let _ = write!(s, " ⛔{mark} |");
                            }
                        }
                    }
                }
            }
            s.push('\n');
        }
        s
    }

    /// The same as JSON, for hack/render-matrix.py (the heatmap in docs/).
    fn json(&self, probes: &[Probe], stage: &str) -> Value {
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|((from, to, port), (t, predicted))| {
                json!({"from": from, "to": to, "port": port, "ok": t.ok, "ms": t.millis, "predicted": predicted})
            })
            .collect();
        let pods: Vec<Value> = probes
            .iter()
            .map(|p| json!({"name": p.name, "namespace": p.namespace, "node": p.node, "ip": p.ip}))
            .collect();
        json!({"stage": stage, "ports": PORTS, "pods": pods, "cells": cells})
    }

    fn mismatches(&self) -> Vec<String> {
        let observed = self.cells.iter().filter(|(_, (t, predicted))| t.ok != *predicted).map(
            |((f, to, port), (t, predicted))| {
                format!("{f} -> {to}:{port}: observed {} ({}), model says {}", t.ok, t.detail, predicted)
            },
        );
        let cli = self.cells.iter().filter(|(k, (_, predicted))| self.cli.get(*k) != Some(predicted)).map(
            |((f, to, port), (_, predicted))| {
                let said = self.cli.get(&(f.clone(), to.clone(), *port));
                format!(
                    "{f} -> {to}:{port}: `zhengyun-operator reachability --pods` says {said:?}, the model {predicted}"
                )
            },
        );
        observed.chain(cli).collect()
    }
}

/// Tries every pair and compares each result with the model.
async fn measure(client: &Client, probes: &[Probe]) -> Matrix {
    let world = world(client).await;
    let mut cells = BTreeMap::new();
    for from in probes {
        let others: Vec<&Probe> = probes.iter().filter(|p| p.name != from.name).collect();
        let targets: Vec<String> =
            others.iter().flat_map(|p| PORTS.iter().map(move |port| format!("{}:{port}", p.ip))).collect();
        let tried = connect(from, &targets, 1000);
        let mut tried = tried.into_iter();
        for to in &others {
            for port in PORTS {
                let t = tried.next().expect("a result per target");
                if t.ok {
                    // Reached the pod it meant to, not something else on that address.
                    assert_eq!(t.detail, format!("{} {port}", to.name), "{} -> {}:{port}", from.name, to.name);
                }
                let verdict = reachability::evaluate(
                    &world,
                    &from.endpoint,
                    &to.endpoint,
                    &Port { protocol: "TCP".into(), number: port },
                );
                cells.insert((from.name.clone(), to.name.clone(), port), (t, verdict.allowed));
            }
        }
    }
    let cli = cli_verdicts(probes);
    Matrix { cells, cli }
}

/// Measures, prints and keeps the matrix (under the e2e logs), and requires it to equal the
/// model verdict for verdict. The enforcer applies a policy change a moment after it is
/// stored, so a differing matrix is measured again for up to 30 s (and how long it took said).
async fn measure_and_compare(client: &Client, probes: &[Probe], stage: &str) -> Matrix {
    let start = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let m = measure(client, probes).await;
        let table = m.markdown(probes);
        let bad = m.mismatches();
        if bad.is_empty() || start.elapsed() > Duration::from_secs(30) {
            println!(
                "traffic matrix, {stage} (measured {rounds} time(s) over {:.1} s):\n{table}",
                start.elapsed().as_secs_f64()
            );
            let dir = workdir("traffic");
            std::fs::write(dir.join(format!("matrix-{stage}.md")), &table).expect("write the matrix");
            let json = serde_json::to_string_pretty(&m.json(probes, stage)).expect("json");
            std::fs::write(dir.join(format!("matrix-{stage}.json")), json).expect("write the matrix");
            assert!(
                bad.is_empty(),
                "{stage}: observed traffic differs from the policies' verdict:\n{}",
                bad.join("\n")
            );
            return m;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn channel(name: &str, expires: &str) -> ExchangeChannel {
    serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel",
        "metadata": {"name": name},
        "spec": {
            "from": {"tenant": "traffic-a"},
            "to": {"tenant": "traffic-b", "namespace": "apps", "service": "api", "port": 443},
            "purpose": "流量矩阵测试 (traffic matrix test)",
            "approver": APPROVER,
            "expires": expires
        }
    }))
    .expect("channel")
}

/// Requests a channel as the admin and approves it as its approver; waits until it is Active.
async fn open_channel(client: &Client, name: &str, expires: &str) {
    let api: Api<ExchangeChannel> = Api::all(client.clone());
    api.create(&PostParams::default(), &channel(name, expires)).await.expect("request a channel");
    let director: Api<ExchangeChannel> = Api::all(as_user(APPROVER, &[]).await);
    director
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"approved": true}})))
        .await
        .expect("the approver approves");
    wait_for(&format!("channel {name} Active"), SECONDS, || async {
        let c = api.get(name).await.ok()?;
        (c.status?.phase == Some(ChannelPhase::Active)).then_some(())
    })
    .await;
}

/// Waits until the channel's policies are gone from the cluster.
async fn channel_closed(client: &Client, name: &str) {
    let nps: Api<NetworkPolicy> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("zhengyun.io/channel={name}"));
    wait_for(&format!("channel {name}'s policies gone"), Duration::from_secs(60), || async {
        nps.list(&lp).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn traffic_the_observed_matrix_equals_the_policies_verdict_channels_open_and_close_it() {
    if !nodes_here() {
        return;
    }
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "traffic").await;
    // Two tenants of the intranet (one with two namespaces) and one of the extranet.
    for (name, zone, level, suffixes) in [
        ("traffic-a", "intranet", 3, &["apps", "data"][..]),
        ("traffic-b", "intranet", 3, &["apps"][..]),
        ("traffic-c", "extranet", 2, &["apps"][..]),
    ] {
        apply_tenant(&client, &node_tenant(name, suffixes, zone, level)).await;
    }
    for name in ["traffic-a", "traffic-b", "traffic-c"] {
        wait_ready(&client, name).await;
    }
    let mut probes = vec![
        start_probe(&client, "traffic-a-apps", "a1").await,
        start_probe(&client, "traffic-a-apps", "a2").await,
        start_probe(&client, "traffic-a-data", "a3").await,
        start_probe(&client, "traffic-b-apps", "b1").await,
        start_probe(&client, "traffic-c-apps", "c1").await,
    ];
    assert_eq!(
        probes.iter().map(|p| p.node.as_str()).collect::<Vec<_>>(),
        ["zy-intranet", "zy-intranet", "zy-intranet", "zy-intranet", "zy-extranet"]
    );
    let outside = outside();
    match &outside {
        Some(o) => probes.push(o.clone()),
        None => eprintln!("no outside network in this run (hack/lib/nodes.sh makes it): pods only"),
    }

    // 1. The tenant boundary: inside a tenant (also across its namespaces) allowed, across
    //    tenants denied, across zones denied, and all of it what the model says.
    let m = measure_and_compare(&client, &probes, "1-tenants").await;
    assert!(m.observed("a1", "a2", 8080) && m.observed("a1", "a3", 9090) && m.observed("a3", "a1", 8080));
    for (from, to) in [("a1", "b1"), ("b1", "a1"), ("a1", "c1"), ("c1", "a1"), ("b1", "c1"), ("c1", "b1")] {
        for port in PORTS {
            assert!(!m.observed(from, to, port), "{from} -> {to}:{port} must be denied");
        }
    }
    // The outside network the intranet declares: its tenants reach it, the extranet's do not,
    // and nothing outside reaches a tenant's pod (no zone declares it for ingress).
    if outside.is_some() {
        assert!(m.observed("a1", "outside", 8080) && m.observed("b1", "outside", 9090), "the intranet's network");
        assert!(!m.observed("c1", "outside", 8080), "not the extranet's");
        for to in ["a1", "b1", "c1"] {
            assert!(!m.observed("outside", to, 8080), "outside -> {to}");
        }
    }

    // DNS: every tenant's pods resolve through the cluster DNS (CoreDNS behind 10.0.0.10,
    // kube-proxy taking the Service to its pod), as the policies' DNS rule says they may.
    let world_now = world(&client).await;
    let dns_pod = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await
        .expect("the cluster DNS pod")
        .items
        .into_iter()
        .next()
        .expect("hack/lib/nodes.sh runs CoreDNS");
    let kube_system = Api::<Namespace>::all(client.clone()).get("kube-system").await.expect("kube-system");
    let dns_endpoint = Endpoint::Pod(PodRef {
        namespace: "kube-system".into(),
        namespace_labels: kube_system.metadata.labels.unwrap_or_default(),
        labels: dns_pod.metadata.labels.unwrap_or_default(),
        named_ports: BTreeMap::from([("dns".to_string(), 53)]),
    });
    for p in probes.iter().filter(|p| matches!(p.runs, Runs::Pod)) {
        let asked = parse(&run_probe(
            p,
            &["dns", "--timeout-ms", "2000", "10.0.0.10:53", "kubernetes.default.svc.cluster.local"],
        ));
        let verdict = reachability::evaluate(
            &world_now,
            &p.endpoint,
            &dns_endpoint,
            &Port { protocol: "UDP".into(), number: 53 },
        );
        println!("DNS from {}: {:?}", p.label(), asked);
        assert!(verdict.allowed, "the model allows DNS from {}: {verdict:?}", p.label());
        assert!(
            asked.first().is_some_and(|t| t.ok && t.detail == "A 10.0.0.1"),
            "{} resolves the API server's Service: {asked:?}",
            p.label()
        );
    }

    // 2. An exchange channel from traffic-a to traffic-b's Service `api` (443 -> the pods' 8080)
    //    opens exactly that: a's pods to b1 on 8080, not 9090, not back, not c.
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "b1"}, "ports": [{"port": 443, "targetPort": 8080}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(client.clone(), "traffic-b-apps")
        .create(&PostParams::default(), &svc)
        .await
        .expect("the target Service");
    grant_channels(APPROVER);
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    open_channel(&client, "traffic-a-to-b", &later).await;
    let m = measure_and_compare(&client, &probes, "2-channel-open").await;
    assert!(m.observed("a1", "b1", 8080) && m.observed("a3", "b1", 8080), "the channel opens 8080 from a's pods");
    assert!(!m.observed("a1", "b1", 9090), "only the declared port");
    assert!(!m.observed("b1", "a1", 8080), "only the declared direction");
    assert!(!m.observed("c1", "b1", 8080), "only the declared source");

    // 3. Deleting the channel closes it (its policies go with it).
    Api::<ExchangeChannel>::all(client.clone())
        .delete("traffic-a-to-b", &DeleteParams::default())
        .await
        .expect("delete the channel");
    channel_closed(&client, "traffic-a-to-b").await;
    let m = measure_and_compare(&client, &probes, "3-channel-deleted").await;
    assert!(!m.observed("a1", "b1", 8080), "closed after deletion");

    // 4. A channel that expires closes by itself.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(40)).to_string();
    open_channel(&client, "traffic-a-to-b-brief", &soon).await;
    let m = measure_and_compare(&client, &probes, "4-brief-channel-open").await;
    assert!(m.observed("a1", "b1", 8080), "open until it expires");
    wait_for("the brief channel Expired", Duration::from_secs(90), || async {
        let c = Api::<ExchangeChannel>::all(client.clone()).get("traffic-a-to-b-brief").await.ok()?;
        (c.status?.phase == Some(ChannelPhase::Expired)).then_some(())
    })
    .await;
    channel_closed(&client, "traffic-a-to-b-brief").await;
    let m = measure_and_compare(&client, &probes, "4-channel-expired").await;
    assert!(!m.observed("a1", "b1", 8080), "closed after expiry");

    // 5. An allow-all policy in traffic-b: refused at admission; and one the webhook never saw
    //    (written as the operator, whose writes skip it) still opens no path to another
    //    tenant, because traffic-a's own policies deny the other direction of each flow.
    let allow_all: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "allow-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]}
    }))
    .expect("policy");
    let owner: Api<NetworkPolicy> = Api::namespaced(client.clone(), "traffic-b-apps");
    refused(owner.create(&PostParams::default(), &allow_all).await, "spec.ingress[0].from");
    let operator_user = operator_user(&client).await;
    let as_operator: Api<NetworkPolicy> =
        Api::namespaced(as_user(&operator_user, &["system:authenticated"]).await, "traffic-b-apps");
    as_operator.create(&PostParams::default(), &allow_all).await.expect("an allow-all policy past the webhook");
    let m = measure_and_compare(&client, &probes, "5-allow-all-in-b").await;
    for port in PORTS {
        assert!(!m.observed("a1", "b1", port) && !m.observed("b1", "a1", port) && !m.observed("b1", "c1", port));
    }
    as_operator.delete("allow-all", &DeleteParams::default()).await.expect("remove it");

    // 6. Drift under traffic: traffic-b's default-deny policy deleted (as Kubernetes' garbage
    //    collector, the only other party the webhook lets delete it) while a1 keeps trying b1.
    //    The operator puts it back; no connection gets through meanwhile (the tenant's allow
    //    policy still selects every pod), and the window is measured.
    let gc = as_user("system:serviceaccount:kube-system:generic-garbage-collector", &[]).await;
    let deny: Api<NetworkPolicy> = Api::namespaced(gc, "traffic-b-apps");
    let watch: Api<NetworkPolicy> = Api::namespaced(client.clone(), "traffic-b-apps");
    // a1 tries b1 again and again for five seconds; the deletion falls in the middle. The repair
    // can take less than one attempt's 50 ms, so four probers start 15 ms apart and an attempt
    // counts for the window when its time on the wire overlaps it.
    let probers: Vec<_> = (0..4u64)
        .map(|i| {
            let (from, target) = (probes[0].clone(), format!("{}:8080", probes[3].ip));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(15 * i));
                parse(&run_probe(&from, &["connect", "--timeout-ms", "50", "--for-ms", "5000", &target]))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let unix_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let (t0, deleted_at) = (Instant::now(), unix_ms());
    deny.delete("zhengyun-default-deny", &DeleteParams::default()).await.expect("delete default-deny");
    wait_for("default-deny back", SECONDS, || async {
        let p = watch.get_opt("zhengyun-default-deny").await.ok()??;
        p.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    let (window, back_at) = (t0.elapsed(), unix_ms());
    let tried: Vec<_> = probers.into_iter().flat_map(|p| p.join().expect("a prober")).collect();
    let through = tried.iter().filter(|t| t.ok).count();
    let in_window =
        tried.iter().filter(|t| t.at_ms <= back_at && t.at_ms + (t.millis.ceil() as u128) >= deleted_at).count();
    println!(
        "drift under traffic: default-deny back after {:.3} s; {through} of {} connections got through, {in_window} of them on the wire while it was missing",
        window.as_secs_f64(),
        tried.len()
    );
    assert!(in_window > 0, "the probers tried while the policy was missing: {tried:?}");
    assert_eq!(through, 0, "no connection crosses the tenant boundary while default-deny is repaired: {tried:?}");
}

/// The user the operator runs as: its webhook registration exempts it by name.
async fn operator_user(client: &Client) -> String {
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    let h = hooks.get("zhengyun").await.expect("the webhook registration");
    let expr = h
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .flat_map(|w| w.match_conditions.unwrap_or_default())
        .map(|c| c.expression)
        .next()
        .expect("a match condition naming the operator");
    expr.split('\'').nth(1).expect("the operator's user in quotes").to_string()
}
