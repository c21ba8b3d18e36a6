//! Zones and exchange channels, enforced by the API server through the operator's webhook.

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, ResourceQuota, Service, ServiceAccount},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::api::{ChannelPhase, ExchangeChannel};
use zhengyun_e2e::{
    Operator, SECONDS, apply_tenant, as_user, client, events_about, grant_channels, operator_with_webhook, refused,
    tenant, wait_for, wait_ready,
};

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["containers"] =
        json!([{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

async fn default_sa(client: &Client, ns: &str) {
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
}

#[tokio::test]
async fn zones_tenant_pods_run_only_on_their_zones_nodes() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "placement").await;
    apply_tenant(&client, &tenant("zoned", &["apps"])).await;
    wait_ready(&client, "zoned").await;
    default_sa(&client, "zoned-apps").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "zoned-apps");

    let placed = pods.create(&PostParams::default(), &pod("web", json!({}))).await.expect("a plain pod is admitted");
    let v = serde_json::to_value(&placed).expect("json");
    let expr = &v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"][0];
    assert_eq!((expr["key"].as_str(), expr["values"][0].as_str()), (Some("zhengyun.io/zone"), Some("extranet")), "{v}");
    let tolerations = v["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    assert!(tolerations.iter().any(|t| t["key"] == "zhengyun.io/zone" && t["value"] == "extranet"), "{tolerations:?}");

    // A pod that names a node of another zone would skip the scheduler and the affinity.
    let intranet_node: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(json!({"metadata": {"name": "room-c-01", "labels": {"zhengyun.io/zone": "intranet"}}}))
            .expect("node");
    let _ = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .create(&PostParams::default(), &intranet_node)
        .await;
    for (name, spec, expect) in [
        ("pinned", json!({"nodeName": "room-c-01"}), "node room-c-01 is not in zone extranet"),
        ("elsewhere", json!({"nodeSelector": {"zhengyun.io/zone": "intranet"}}), "another zone"),
        ("host-net", json!({"hostNetwork": true}), "hostNetwork"),
        ("host-pid", json!({"hostPID": true}), "hostPID"),
        ("host-path", json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}), "hostPath"),
        (
            "sneaky",
            json!({"tolerations": [{"key": "zhengyun.io/zone", "operator": "Equal", "value": "intranet", "effect": "NoSchedule"}]}),
            "zone intranet",
        ),
    ] {
        refused(pods.create(&PostParams::default(), &pod(name, spec)).await, expect);
    }
}

#[tokio::test]
async fn zones_a_zone_reports_its_nodes_capacity_and_tenants() {
    let client = client().await;
    let _op = Operator::start("lease-zone-status", "op-zone-status").await;
    // No kubelet here: register nodes the way a kubelet would, with labels and capacity.
    for (name, zone) in [("room-a-01", "extranet"), ("room-a-02", "extranet"), ("room-b-01", "intranet")] {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"zhengyun.io/zone": zone, "kubernetes.io/arch": "arm64"}},
            "spec": {"taints": [{"key": "zhengyun.io/zone", "value": zone, "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"}, "allocatable": {"cpu": "62", "memory": "250Gi", "pods": "110"}}
        }))
        .expect("node");
        let _ =
            Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()).create(&PostParams::default(), &node).await;
    }
    apply_tenant(&client, &tenant("zone-watcher", &["apps"])).await;
    wait_ready(&client, "zone-watcher").await;
    // With real nodes (hack/lib/nodes.sh) the zone's kubelet-registered node counts too.
    let real: Vec<k8s_openapi::api::core::v1::Node> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default().labels("zhengyun.io/zone=extranet"))
        .await
        .expect("nodes")
        .items
        .into_iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|n| n.starts_with("zy-")))
        .collect();
    let mut expected: Vec<String> = vec!["room-a-01".into(), "room-a-02".into()];
    expected.extend(real.iter().filter_map(|n| n.metadata.name.clone()));
    expected.sort();
    let sum = |fake: &str, res: &str| {
        let q = |s: &str| zhengyun::quantity::parse(s).expect("quantity");
        q(fake)
            + real
                .iter()
                .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get(res).map(|v| q(&v.0)))
                .sum::<zhengyun::quantity::Milli>()
    };
    let zones: Api<zhengyun::api::Zone> = Api::all(client.clone());
    let status = wait_for("extranet status", SECONDS, || async {
        let s = zones.get("extranet").await.ok()?.status?;
        (s.node_count == Some(expected.len() as i32) && s.tenants.contains(&"zone-watcher".to_string())).then_some(s)
    })
    .await;
    assert_eq!(status.nodes, expected);
    let got = |res: &str| status.allocatable.get(res).map(|v| zhengyun::quantity::parse(v).expect("quantity"));
    assert_eq!(got("cpu"), Some(sum("124", "cpu")));
    assert_eq!(got("memory"), Some(sum("500Gi", "memory")));
    assert_eq!(status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str()), Some("True"));
}

#[tokio::test]
async fn zones_a_tenant_needs_a_zone_that_admits_it_and_keeps_it_while_it_runs() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "tenant-zone").await;
    let api: Api<zhengyun::api::Tenant> = Api::all(client.clone());
    let mut low = tenant("lowly", &["apps"]);
    low.spec.zone = "intranet".into();
    refused(api.create(&PostParams::default(), &low).await, "accepts tenants of 等保 level 3 and above, not 2");
    let mut lost = tenant("lost", &["apps"]);
    lost.spec.zone = "nowhere".into();
    refused(api.create(&PostParams::default(), &lost).await, "zone 'nowhere' does not exist");

    apply_tenant(&client, &tenant("mover", &["apps"])).await;
    wait_ready(&client, "mover").await;
    default_sa(&client, "mover-apps").await;
    Api::<Pod>::namespaced(client.clone(), "mover-apps")
        .create(&PostParams::default(), &pod("job", json!({})))
        .await
        .expect("pod");
    let moved = json!({"spec": {"zone": "intranet", "securityLevel": 3}});
    refused(
        api.patch("mover", &PatchParams::default(), &Patch::Merge(moved)).await,
        "still has 1 pods in zone extranet",
    );
}

#[tokio::test]
async fn zones_nobody_but_the_operator_changes_what_it_owns() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "guard").await;
    let mut t = tenant("guarded", &["apps"]);
    apply_tenant(&client, &t).await;
    wait_ready(&client, "guarded").await;
    let ns = "guarded-apps";
    let merge = PatchParams::default();
    let nsapi: Api<Namespace> = Api::all(client.clone());
    refused(
        nsapi.patch(ns, &merge, &Patch::Merge(json!({"metadata": {"labels": {"zhengyun.io/zone": "intranet"}}}))).await,
        "managed by zhengyun",
    );
    refused(
        nsapi.patch(ns, &merge, &Patch::Merge(json!({"metadata": {"labels": {"zhengyun.io/tenant": "other"}}}))).await,
        "zhengyun.io/tenant",
    );
    nsapi
        .patch(ns, &merge, &Patch::Merge(json!({"metadata": {"labels": {"team": "web"}}})))
        .await
        .expect("other labels are free");
    refused(
        Api::<ResourceQuota>::namespaced(client.clone(), ns).delete("zhengyun-tenant", &DeleteParams::default()).await,
        "managed by zhengyun",
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    refused(
        policies
            .patch("zhengyun-default-deny", &merge, &Patch::Merge(json!({"spec": {"policyTypes": ["Egress"]}})))
            .await,
        "managed by zhengyun",
    );
    let fake: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "looks-official", "labels": {"app.kubernetes.io/managed-by": "zhengyun"}},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    }))
    .expect("np");
    refused(policies.create(&PostParams::default(), &fake).await, "managed by zhengyun");
    // The operator itself still changes what it owns.
    t.spec.namespaces.push(zhengyun::api::TenantNamespace { suffix: "web".into() });
    apply_tenant(&client, &t).await;
    let ready = wait_ready(&client, "guarded").await;
    assert_eq!(ready.status.map(|s| s.namespaces.len()), Some(2));
}

#[tokio::test]
async fn zones_a_tenants_own_policy_cannot_open_another_tenant() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "own-policy").await;
    apply_tenant(&client, &tenant("open", &["apps"])).await;
    wait_ready(&client, "open").await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "open-apps");
    let np = |name: &str, spec: serde_json::Value| -> NetworkPolicy {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("np")
    };
    refused(
        policies
            .create(
                &PostParams::default(),
                &np("all-in", json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})),
            )
            .await,
        "may not reach other tenants",
    );
    refused(
        policies.create(&PostParams::default(), &np("anyone", json!({"podSelector": {}, "ingress": [{}]}))).await,
        "admits every source",
    );
    refused(
        policies
            .create(
                &PostParams::default(),
                &np("out", json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})),
            )
            .await,
        "outside addresses",
    );
    let inside = np(
        "web-from-api",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"zhengyun.io/tenant": "open"}}, "podSelector": {"matchLabels": {"app": "api"}}}]}]}),
    );
    policies.create(&PostParams::default(), &inside).await.expect("a policy inside the tenant is fine");
}

async fn service(client: &Client, ns: &str) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}
    }))
    .expect("svc");
    Api::<Service>::namespaced(client.clone(), ns).create(&PostParams::default(), &svc).await.expect("service");
}

fn channel(name: &str, from: &str, to: &str, expires: &str, gateway: Option<&str>) -> ExchangeChannel {
    let mut v = json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "ExchangeChannel",
        "metadata": {"name": name},
        "spec": {
            "from": {"tenant": from, "podLabels": {"app": "export"}},
            "to": {"tenant": to, "namespace": "ingest", "service": "api", "port": 443},
            "purpose": "月度统计数据报送 (monthly statistics)",
            "approver": "director-li",
            "expires": expires
        }
    });
    if let Some(g) = gateway {
        v["spec"]["gateway"] = json!({"cidr": g});
    }
    serde_json::from_value(v).expect("channel")
}

async fn phase(api: &Api<ExchangeChannel>, name: &str, want: ChannelPhase) -> ExchangeChannel {
    wait_for(&format!("channel {name} {want:?}"), SECONDS, || async {
        let c = api.get(name).await.ok()?;
        (c.status.as_ref()?.phase == Some(want)).then_some(c)
    })
    .await
}

async fn channel_policies(client: &Client, name: &str) -> Vec<NetworkPolicy> {
    Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default().labels(&format!("zhengyun.io/channel={name}")))
        .await
        .expect("list")
        .items
}

#[tokio::test]
async fn zones_an_exchange_channel_opens_when_approved_and_closes_when_it_expires() {
    let client = client().await;
    let (op, _hooks) = operator_with_webhook(&client, "channel").await;
    apply_tenant(&client, &tenant("tax", &["apps"])).await;
    apply_tenant(&client, &tenant("stats", &["ingest"])).await;
    wait_ready(&client, "tax").await;
    wait_ready(&client, "stats").await;
    service(&client, "stats-ingest").await;
    grant_channels("director-li");

    let api: Api<ExchangeChannel> = Api::all(client.clone());
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    api.create(&PostParams::default(), &channel("tax-to-stats", "tax", "stats", &later, None)).await.expect("declare");
    let pending = phase(&api, "tax-to-stats", ChannelPhase::Pending).await;
    assert!(pending.status.and_then(|s| s.message).unwrap_or_default().contains("director-li"));
    assert!(channel_policies(&client, "tax-to-stats").await.is_empty(), "a pending channel opens nothing");

    let approve = Patch::Merge(json!({"spec": {"approved": true}}));
    refused(api.patch("tax-to-stats", &PatchParams::default(), &approve).await, "only director-li may approve");
    Api::<ExchangeChannel>::all(as_user("director-li", &[]).await)
        .patch("tax-to-stats", &PatchParams::default(), &approve)
        .await
        .expect("approved");
    let active = phase(&api, "tax-to-stats", ChannelPhase::Active).await;
    let listed = active.status.map(|s| s.policies).unwrap_or_default();
    assert_eq!(listed, vec!["tax-apps/zhengyun-channel-tax-to-stats", "stats-ingest/zhengyun-channel-tax-to-stats"]);
    let policies = channel_policies(&client, "tax-to-stats").await;
    assert_eq!(policies.len(), 2);
    let ingress =
        policies.iter().find(|p| p.metadata.namespace.as_deref() == Some("stats-ingest")).expect("ingress policy");
    let rule = serde_json::to_value(ingress).expect("json");
    assert_eq!(rule["spec"]["podSelector"]["matchLabels"]["app"], "api");
    assert_eq!(rule["spec"]["ingress"][0]["ports"][0]["port"], 8443, "the pods' port behind the Service");
    assert_eq!(rule["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["zhengyun.io/tenant"], "tax");
    assert!(op.metric("zhengyun_exchange_channels{phase=\"Active\"}").await >= Some(1.0), "{}", op.metrics().await);

    // It expires: the flow closes within seconds, without anyone touching it.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6)).to_string();
    api.patch("tax-to-stats", &PatchParams::default(), &Patch::Merge(json!({"spec": {"expires": soon}})))
        .await
        .expect("shorten");
    phase(&api, "tax-to-stats", ChannelPhase::Expired).await;
    let events = events_about(&client, "ExchangeChannel", "tax-to-stats").await;
    assert!(events.iter().any(|e| e.starts_with("Approved: approved by director-li")), "{events:?}");
    assert!(events.iter().any(|e| e.starts_with("Expired: ")), "{events:?}");
    wait_for("expired channel's policies gone", SECONDS, || async {
        channel_policies(&client, "tax-to-stats").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(op.metric("zhengyun_exchange_channel_expiry_seconds{channel=\"tax-to-stats\"}").await, Some(0.0));
    assert!(op.metric("zhengyun_exchange_channels{phase=\"Expired\"}").await >= Some(1.0), "{}", op.metrics().await);

    // Deleting an active channel closes it too (its policies are owned by it).
    api.create(&PostParams::default(), &channel("tax-to-stats-2", "tax", "stats", &later, None))
        .await
        .expect("declare");
    Api::<ExchangeChannel>::all(as_user("director-li", &[]).await)
        .patch("tax-to-stats-2", &PatchParams::default(), &approve)
        .await
        .expect("approved");
    phase(&api, "tax-to-stats-2", ChannelPhase::Active).await;
    api.delete("tax-to-stats-2", &DeleteParams::default()).await.expect("delete");
    wait_for("deleted channel's policies gone", Duration::from_secs(60), || async {
        channel_policies(&client, "tax-to-stats-2").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn zones_a_channel_across_zones_must_go_through_the_gateway() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "cross-zone").await;
    let mut police = tenant("police", &["ingest"]);
    police.spec.zone = "intranet".into();
    police.spec.security_level = 3;
    apply_tenant(&client, &police).await;
    apply_tenant(&client, &tenant("census", &["apps"])).await;
    wait_ready(&client, "police").await;
    wait_ready(&client, "census").await;
    service(&client, "police-ingest").await;
    let api: Api<ExchangeChannel> = Api::all(client.clone());
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    refused(
        api.create(&PostParams::default(), &channel("census-to-police", "census", "police", &later, None)).await,
        "are in different zones",
    );
    api.create(
        &PostParams::default(),
        &channel("census-to-police", "census", "police", &later, Some("10.200.0.10/32")),
    )
    .await
    .expect("with a gateway");
    grant_channels("director-li");
    Api::<ExchangeChannel>::all(as_user("director-li", &[]).await)
        .patch("census-to-police", &PatchParams::default(), &Patch::Merge(json!({"spec": {"approved": true}})))
        .await
        .expect("approved");
    phase(&api, "census-to-police", ChannelPhase::Active).await;
    for np in channel_policies(&client, "census-to-police").await {
        let v = serde_json::to_value(&np).expect("json");
        let peers = if v["spec"]["egress"].is_array() {
            &v["spec"]["egress"][0]["to"]
        } else {
            &v["spec"]["ingress"][0]["from"]
        };
        assert_eq!(peers[0]["ipBlock"]["cidr"], "10.200.0.10/32", "{v}");
        assert!(peers[0].get("namespaceSelector").is_none());
    }
}
