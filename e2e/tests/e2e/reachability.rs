//! The reachability view, checked against an independent evaluation of the same policy
//! objects written here from the Kubernetes semantics (not from zhengyun's code), on a
//! fixture of zones, tenants, a channel and hand-written policies covering the upstream
//! NetworkPolicy e2e scenarios.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun::reachability::{self, Endpoint, PodRef, Port, World};
use zhengyun_e2e::{
    Cleanup, SECONDS, apply_tenant, as_user, client, grant_channels, operator_with_webhook, operator_with_webhook_env,
    refused, run_tool, tenant, wait_for, wait_ready,
};

// ---- The independent evaluator: plain JSON in, a boolean out. ----

fn label_match(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if selector.is_null() {
        return true;
    }
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        if labels.get(k).map(String::as_str) != v.as_str() {
            return false;
        }
    }
    for e in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let vals: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let have = labels.get(key).map(String::as_str);
        let ok = match e["operator"].as_str().unwrap_or_default() {
            "In" => have.is_some_and(|h| vals.contains(&h)),
            "NotIn" => !have.is_some_and(|h| vals.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn ip_in(ip: IpAddr, cidr: &str) -> bool {
    let (base, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let bits: u32 = bits.parse().unwrap_or(32);
    match (ip, base.parse::<IpAddr>()) {
        (IpAddr::V4(a), Ok(IpAddr::V4(b))) => {
            bits == 0 || (u32::from(a) >> (32 - bits)) == (u32::from(b) >> (32 - bits))
        }
        (IpAddr::V6(a), Ok(IpAddr::V6(b))) => {
            bits == 0 || (u128::from(a) >> (128 - bits)) == (u128::from(b) >> (128 - bits))
        }
        _ => false,
    }
}

/// Does one peer of a rule in a policy of namespace `ns` match `other`?
fn peer_match(peer: &Value, ns: &str, other: &Endpoint) -> bool {
    match (other, peer.get("ipBlock")) {
        (Endpoint::External(ip), Some(block)) => {
            ip_in(*ip, block["cidr"].as_str().unwrap_or_default())
                && !block["except"].as_array().into_iter().flatten().any(|e| ip_in(*ip, e.as_str().unwrap_or_default()))
        }
        (Endpoint::External(_), None) | (Endpoint::Pod(_), Some(_)) => false,
        (Endpoint::Pod(p), None) => {
            let ns_ok = match peer.get("namespaceSelector") {
                Some(sel) => label_match(sel, &p.namespace_labels),
                None => p.namespace == ns,
            };
            ns_ok && peer.get("podSelector").is_none_or(|sel| label_match(sel, &p.labels))
        }
    }
}

fn port_match(ports: &Value, port: &Port) -> bool {
    let Some(list) = ports.as_array().filter(|l| !l.is_empty()) else { return true };
    list.iter().any(|p| {
        p["protocol"].as_str().unwrap_or("TCP") == port.protocol
            && match &p["port"] {
                Value::Null => true,
                Value::Number(n) => n.as_u64() == Some(u64::from(port.number)),
                _ => false, // named ports: our fixture pods declare none
            }
    })
}

/// NetworkPolicy alone: `Some(allowed)` when the pod is isolated in that direction.
fn np_direction(policies: &[Value], pod: &PodRef, other: &Endpoint, port: &Port, ingress: bool) -> Option<bool> {
    let (rules_key, peers_key, ty) = if ingress { ("ingress", "from", "Ingress") } else { ("egress", "to", "Egress") };
    let mut isolated = false;
    for p in policies.iter().filter(|p| p["metadata"]["namespace"] == pod.namespace.as_str()) {
        if !label_match(&p["spec"]["podSelector"], &pod.labels) {
            continue;
        }
        let types: Vec<&str> = match p["spec"]["policyTypes"].as_array() {
            Some(t) => t.iter().filter_map(Value::as_str).collect(),
            None if p["spec"]["egress"].is_array() => vec!["Ingress", "Egress"],
            None => vec!["Ingress"],
        };
        if !types.contains(&ty) {
            continue;
        }
        isolated = true;
        let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
        for rule in p["spec"][rules_key].as_array().into_iter().flatten() {
            let peers = rule[peers_key].as_array();
            let any_peer = peers.is_none_or(|l| l.is_empty())
                || peers.into_iter().flatten().any(|peer| peer_match(peer, ns, other));
            if any_peer && port_match(&rule["ports"], port) {
                return Some(true);
            }
        }
    }
    isolated.then_some(false)
}

fn cnp_peer(peer: &Value, other: &Endpoint) -> bool {
    match other {
        Endpoint::External(ip) => {
            peer["networks"].as_array().into_iter().flatten().any(|c| ip_in(*ip, c.as_str().unwrap_or_default()))
        }
        Endpoint::Pod(p) => {
            (peer.get("namespaces").is_some() && label_match(&peer["namespaces"], &p.namespace_labels))
                || (peer.get("pods").is_some()
                    && label_match(&peer["pods"]["namespaceSelector"], &p.namespace_labels)
                    && label_match(&peer["pods"]["podSelector"], &p.labels))
        }
    }
}

fn cnp_protocols(protocols: &Value, port: &Port) -> bool {
    let Some(list) = protocols.as_array().filter(|l| !l.is_empty()) else { return true };
    list.iter().any(|p| {
        let key = port.protocol.to_lowercase();
        p.get(&key).is_some_and(|x| x["destinationPort"]["number"].as_u64().is_none_or(|n| n == u64::from(port.number)))
    })
}

/// One direction at one pod: Admin tier, then NetworkPolicy, then Baseline tier, then allow.
fn direction(nps: &[Value], cnps: &[Value], pod: &PodRef, other: &Endpoint, port: &Port, ingress: bool) -> bool {
    let subject = |c: &Value| {
        let s = &c["spec"]["subject"];
        (s.get("namespaces").is_some() && label_match(&s["namespaces"], &pod.namespace_labels))
            || (s.get("pods").is_some()
                && label_match(&s["pods"]["namespaceSelector"], &pod.namespace_labels)
                && label_match(&s["pods"]["podSelector"], &pod.labels))
    };
    let tier_action = |tier: &str| -> Option<String> {
        let mut in_tier: Vec<&Value> = cnps.iter().filter(|c| c["spec"]["tier"] == tier && subject(c)).collect();
        in_tier.sort_by_key(|c| {
            (c["spec"]["priority"].as_i64().unwrap_or(0), c["metadata"]["name"].as_str().unwrap_or("").to_string())
        });
        for c in in_tier {
            let (rules, peers) = if ingress { ("ingress", "from") } else { ("egress", "to") };
            for r in c["spec"][rules].as_array().into_iter().flatten() {
                if r[peers].as_array().into_iter().flatten().any(|p| cnp_peer(p, other))
                    && cnp_protocols(&r["protocols"], port)
                {
                    return r["action"].as_str().map(String::from);
                }
            }
        }
        None
    };
    match tier_action("Admin").as_deref() {
        Some("Accept") => return true,
        Some("Deny") => return false,
        _ => {}
    }
    if let Some(v) = np_direction(nps, pod, other, port, ingress) {
        return v;
    }
    tier_action("Baseline").as_deref() != Some("Deny")
}

fn independent(nps: &[Value], cnps: &[Value], src: &Endpoint, dst: &Endpoint, port: &Port) -> bool {
    let out = match src {
        Endpoint::Pod(p) => direction(nps, cnps, p, dst, port, false),
        Endpoint::External(_) => true,
    };
    let into = match dst {
        Endpoint::Pod(p) => direction(nps, cnps, p, src, port, true),
        Endpoint::External(_) => true,
    };
    out && into
}

// ---- The fixture ----

async fn namespace(client: &Client, name: &str, team: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("team".into(), team.into())])),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await;
}

async fn policy(client: &Client, ns: &str, name: &str, spec: Value) {
    let np: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("np");
    let _ = Api::<NetworkPolicy>::namespaced(client.clone(), ns).create(&PostParams::default(), &np).await;
}

/// The upstream NetworkPolicy e2e scenarios, in namespaces no tenant holds.
async fn upstream_scenarios(client: &Client) {
    for (ns, team) in [("np-a", "a"), ("np-b", "b"), ("np-c", "c")] {
        namespace(client, ns, team).await;
    }
    // np-a: deny all ingress; allow server pods from client pods of np-b (namespace AND pod).
    policy(client, "np-a", "deny-all", json!({"podSelector": {}})).await;
    policy(client, "np-a", "and-peer", json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]
    })).await;
    // np-c: OR of two peers, with a NotIn expression; egress only to a CIDR minus an except.
    policy(client, "np-c", "or-peers", json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [{"from": [
            {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a", "c"]}]}},
            {"podSelector": {"matchLabels": {"app": "client"}}}
        ]}]
    })).await;
    policy(client, "np-c", "egress-cidr", json!({
        "podSelector": {"matchLabels": {"app": "client"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    })).await;
    // np-b: ingress allowed from anywhere on UDP 53 only (ports without peers).
    policy(
        client,
        "np-b",
        "udp-only",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}),
    )
    .await;
}

/// The policies in force and the namespaces whose names start with one of `prefixes` (the
/// suite shares one cluster; other tests' namespaces would only slow the comparison down).
async fn load(client: &Client, prefixes: &[&str]) -> (World, Vec<Value>, BTreeMap<String, BTreeMap<String, String>>) {
    let nps = Api::<NetworkPolicy>::all(client.clone()).list(&ListParams::default()).await.expect("policies").items;
    let cnps = if run_tool("kubectl", &["get", "crd", "clusternetworkpolicies.policy.networking.k8s.io"], None).0 {
        zhengyun::isolation::list(client).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("namespaces")
        .items
        .into_iter()
        .filter(|n| prefixes.iter().any(|p| n.metadata.name.as_deref().unwrap_or("").starts_with(p)))
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()))
        .collect();
    let cnp_json: Vec<Value> = cnps.iter().map(|c| serde_json::to_value(c).expect("json")).collect();
    (World { network_policies: nps, cluster_policies: cnps }, cnp_json, namespaces)
}

/// Compares every candidate verdict, and the matrix, with the independent evaluation.
fn compare(
    world: &World,
    cnp_json: &[Value],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<(String, String), bool> {
    let nps: Vec<Value> = world.network_policies.iter().map(|p| serde_json::to_value(p).expect("json")).collect();
    let (mut endpoints, mut ports) = reachability::candidates(world, namespaces);
    let (base_endpoints, base_ports) = (endpoints.clone(), ports.clone());
    // Our own extra candidates, so the comparison does not rest on zhengyun's choice alone.
    for ip in ["10.2.3.4", "10.1.3.4", "8.8.8.8"] {
        endpoints.push(Endpoint::External(ip.parse().expect("ip")));
    }
    for (proto, n) in [("TCP", 80), ("TCP", 443), ("UDP", 53), ("TCP", 8443)] {
        ports.push(Port { protocol: proto.into(), number: n });
    }
    let (mut allowed, mut denied, mut mismatches) = (0, 0, Vec::new());
    let mut groups: BTreeMap<(String, String), bool> = BTreeMap::new();
    for src in &endpoints {
        for dst in &endpoints {
            if matches!((src, dst), (Endpoint::External(_), Endpoint::External(_))) {
                continue;
            }
            for port in &ports {
                let ours = reachability::evaluate(world, src, dst, port).allowed;
                let theirs = independent(&nps, cnp_json, src, dst, port);
                if ours != theirs && mismatches.len() < 5 {
                    mismatches.push(format!("{src:?} -> {dst:?} {port:?}: zhengyun {ours}, independent {theirs}"));
                }
                if theirs {
                    allowed += 1
                } else {
                    denied += 1
                }
                // The matrix is built from zhengyun's candidates: compare it on those.
                if base_endpoints.contains(src) && base_endpoints.contains(dst) && base_ports.contains(port) {
                    let g = groups.entry((reachability::group_of(src), reachability::group_of(dst))).or_default();
                    *g |= theirs;
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "verdicts differ:\n{}", mismatches.join("\n"));
    assert!(allowed > 0 && denied > 0, "{allowed} allowed, {denied} denied: the fixture must exercise both");
    let m = reachability::matrix(world, namespaces);
    for ((a, b), reach) in &m {
        assert_eq!(
            reach.is_some(),
            groups.get(&(a.clone(), b.clone())).copied().unwrap_or(false),
            "matrix cell {a} -> {b}"
        );
    }
    groups
}

#[tokio::test]
async fn reachability_the_matrix_matches_an_independent_evaluation() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "reach").await;
    upstream_scenarios(&client).await;
    apply_tenant(&client, &tenant("rx-a", &["ingest"])).await;
    apply_tenant(&client, &tenant("rx-b", &["apps"])).await;
    let mut c = tenant("rx-c", &["apps"]);
    c.spec.zone = "intranet".into();
    c.spec.security_level = 3;
    apply_tenant(&client, &c).await;
    for t in ["rx-a", "rx-b", "rx-c"] {
        wait_ready(&client, t).await;
    }
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 443, "targetPort": 8443}]}})).expect("svc");
    Api::<Service>::namespaced(client.clone(), "rx-a-ingest").create(&PostParams::default(), &svc).await.expect("svc");
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let ch: zhengyun::api::ExchangeChannel = serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel", "metadata": {"name": "rx-b-to-a"},
        "spec": {"from": {"tenant": "rx-b", "podLabels": {"app": "export"}}, "to": {"tenant": "rx-a", "namespace": "ingest", "service": "api", "port": 443},
                 "purpose": "test", "approver": "director-li", "expires": later}
    })).expect("channel");
    let channels: Api<zhengyun::api::ExchangeChannel> = Api::all(client.clone());
    channels.create(&PostParams::default(), &ch).await.expect("channel");
    grant_channels("director-li");
    Api::<zhengyun::api::ExchangeChannel>::all(as_user("director-li", &[]).await)
        .patch("rx-b-to-a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"approved": true}})))
        .await
        .expect("approved");
    wait_for("channel active", SECONDS, || async {
        (channels.get("rx-b-to-a").await.ok()?.status?.phase == Some(zhengyun::api::ChannelPhase::Active)).then_some(())
    })
    .await;

    let (world, cnp_json, namespaces) = load(&client, &["rx-", "np-"]).await;
    let groups = compare(&world, &cnp_json, &namespaces);
    let reach = |a: &str, b: &str| groups.get(&(a.to_string(), b.to_string())).copied().unwrap_or(false);
    assert!(reach("rx-a", "rx-a"), "a tenant reaches itself");
    assert!(reach("rx-b", "rx-a"), "through the channel");
    assert!(!reach("rx-a", "rx-b"), "a channel is one way");
    assert!(!reach("rx-a", "rx-c") && !reach("rx-c", "rx-a"), "no channel, no flow");
    assert!(!reach("(outside)", "rx-a"), "nothing outside reaches a tenant");
    assert!(reach("ns/np-b", "ns/np-a"), "upstream AND scenario: np-b clients reach np-a servers");

    // The same view from the command line, with an explanation.
    let bin = std::env::var("ZHENGYUN_OPERATOR_BIN").unwrap_or_else(|_| "zhengyun-operator".into());
    let (ok, out) = run_tool(&bin, &["reachability"], None);
    assert!(ok && out.contains("rx-a") && out.contains("✓"), "{out}");
    let (ok, out) = run_tool(&bin, &["reachability", "--explain", "rx-b", "rx-a"], None);
    assert!(ok && out.contains("rx-b can reach rx-a") && out.contains("zhengyun-channel-rx-b-to-a"), "{out}");
    assert!(
        out.contains("  From: a pod in namespace") && !out.contains("PodRef"),
        "sentences, not a Debug dump: {out}"
    );
    let (ok, out) = run_tool(&bin, &["reachability", "--explain", "rx-a", "rx-b"], None);
    assert!(ok && out.contains("cannot reach") && out.contains("zhengyun-default-deny"), "{out}");
    let (ok, out) = run_tool(&bin, &["reachability", "--explain", "rx-a", "rx-b", "--output", "json"], None);
    // stderr may carry a note on ClusterNetworkPolicy before the JSON.
    let x: serde_json::Value = out.find('{').and_then(|i| serde_json::from_str(&out[i..]).ok()).unwrap_or_default();
    assert!(ok && x["allowed"] == false && x["from"]["group"] == "rx-a" && x["to"]["group"] == "rx-b", "{out}");
    assert!(x["ingress"].as_array().is_some_and(|s| !s.is_empty()), "{out}");
}

#[tokio::test]
async fn reachability_with_cluster_network_policy_a_tenants_open_policy_opens_nothing() {
    let client = client().await;
    let crd = std::env::var("ZHENGYUN_CNP_CRD").expect("hack/test.sh sets ZHENGYUN_CNP_CRD");
    let _crd =
        Cleanup(vec![vec!["delete", "crd", "clusternetworkpolicies.policy.networking.k8s.io", "--ignore-not-found"]]);
    let (ok, out) = run_tool("kubectl", &["apply", "--server-side", "-f", &crd], None);
    assert!(ok, "{out}");
    let _ = run_tool(
        "kubectl",
        &[
            "wait",
            "--for=condition=established",
            "crd/clusternetworkpolicies.policy.networking.k8s.io",
            "--timeout=30s",
        ],
        None,
    );
    let open: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "open-to-all"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}})).expect("np");
    {
        // Served but not declared enforced (as on the local nodes, whose kube-router enforces
        // NetworkPolicy only): the operator does not rely on it, says so, and the webhook keeps
        // refusing a tenant's policy that reaches past the tenant.
        let (op, _hooks) = operator_with_webhook(&client, "cnp-unenforced").await;
        apply_tenant(&client, &tenant("cn-a", &["apps"])).await;
        wait_ready(&client, "cn-a").await;
        let log = std::fs::read_to_string(&op.log).unwrap_or_default();
        assert!(log.contains("not relied on") && log.contains("NetworkPolicy + webhook"), "{log}");
        refused(
            Api::<NetworkPolicy>::namespaced(client.clone(), "cn-a-apps").create(&PostParams::default(), &open).await,
            "spec.ingress[0].from[0].namespaceSelector",
        );
    }
    let (op, _hooks) =
        operator_with_webhook_env(&client, "cnp", &[("ZHENGYUN_CLUSTER_NETWORK_POLICY_ENFORCED", "true")]).await;
    apply_tenant(&client, &tenant("cn-a", &["apps"])).await;
    apply_tenant(&client, &tenant("cn-b", &["apps"])).await;
    wait_ready(&client, "cn-a").await;
    wait_ready(&client, "cn-b").await;
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("ClusterNetworkPolicy (Admin tier)"), "the operator detected the API");
    // cn-a was Ready before this operator started (the part above): its cluster policy comes
    // with this operator's first round of it, which may be a moment after.
    let mut names = BTreeSet::new();
    for _ in 0..120 {
        let policies = zhengyun::isolation::list(&client).await.expect("cluster policies");
        names = policies.iter().filter_map(|p| p.metadata.name.clone()).collect();
        if names.contains("zhengyun-tenant-cn-a") && names.contains("zhengyun-tenant-cn-b") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(names.contains("zhengyun-tenant-cn-a") && names.contains("zhengyun-tenant-cn-b"), "{names:?}");

    // With the Admin tier in force the webhook lets a tenant write any policy, even one that
    // admits every namespace: it cannot open what the cluster policy closes.
    Api::<NetworkPolicy>::namespaced(client.clone(), "cn-a-apps")
        .create(&PostParams::default(), &open)
        .await
        .expect("admitted");
    // And the other tenant colludes, opening its egress to every namespace.
    let out: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "out-to-all"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}}]}]}})).expect("np");
    Api::<NetworkPolicy>::namespaced(client.clone(), "cn-b-apps")
        .create(&PostParams::default(), &out)
        .await
        .expect("admitted");

    let (world, cnp_json, namespaces) = load(&client, &["cn-"]).await;
    let groups = compare(&world, &cnp_json, &namespaces);
    let reach = |g: &BTreeMap<(String, String), bool>, a: &str, b: &str| {
        g.get(&(a.to_string(), b.to_string())).copied().unwrap_or(false)
    };
    assert!(!reach(&groups, "cn-b", "cn-a"), "the Admin tier denies what the tenant's policy admits");
    assert!(reach(&groups, "cn-a", "cn-a"));
    // Without the cluster policies, the same NetworkPolicies would let cn-b in: the Admin tier
    // is what holds the boundary.
    let bare = World { network_policies: world.network_policies.clone(), cluster_policies: Vec::new() };
    let groups = compare(&bare, &[], &namespaces);
    assert!(reach(&groups, "cn-b", "cn-a"));
}
