//! Real nodes (hack/lib/nodes.sh): a tenant's pods run, on their zone's node and no other, under
//! the Pod Security level the tenant's 等保 level sets. `hack/test.sh` brings the nodes up and
//! exports `ZHENGYUN_NODES=1`; without them these tests say so and pass nothing else.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, Pod, ResourceQuota, ServiceAccount},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;
use zhengyun_e2e::{
    apply_tenant, client, node_tenant, nodes_here, operator_with_webhook, refused, restricted_pod, wait_for, wait_ready,
};

/// The pause image the nodes hold (hack/build-images.sh): it runs as 65535 and needs nothing.
const IMAGE: &str = "localhost/zhengyun/pause:0.1.0";

#[tokio::test]
async fn nodes_a_tenants_pods_run_on_its_zones_node_under_its_pod_security_level() {
    if !nodes_here() {
        return;
    }
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_of = |n: &Node| n.metadata.labels.as_ref().and_then(|l| l.get("zhengyun.io/zone").cloned());
    let listed = nodes.list(&ListParams::default()).await.expect("nodes").items;
    // Other tests register kubelet-less Node objects; the real ones are hack/'s `zy-` nodes.
    let real = listed.iter().filter(|n| n.metadata.name.as_deref().is_some_and(|n| n.starts_with("zy-")));
    let mut zones: Vec<String> = real.filter_map(zone_of).collect();
    zones.sort();
    assert_eq!(zones, ["extranet", "intranet"], "one node per zone");

    let (_op, _hooks) = operator_with_webhook(&client, "nodes").await;
    apply_tenant(&client, &node_tenant("onnode", &["apps"], "intranet", 3)).await;
    wait_ready(&client, "onnode").await;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "onnode-apps");
    wait_for("default service account", Duration::from_secs(30), || async { sa.get_opt("default").await.ok()? }).await;

    // Level 3 means PSA restricted: a root pod is refused before it reaches a node.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "onnode-apps");
    let root: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never"}]}
    }))
    .expect("pod");
    refused(pods.create(&PostParams::default(), &root).await, "violates PodSecurity \"restricted");

    // A pod that asks for no placement runs, and on the intranet node: the webhook placed it.
    pods.create(&PostParams::default(), &restricted_pod("runs", IMAGE)).await.expect("create a restricted pod");
    let running = wait_for("the pod to run", Duration::from_secs(90), || async {
        let p = pods.get("runs").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let spec = running.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some("zy-intranet"), "scheduled on its zone's node");
    let v = serde_json::to_value(&running).expect("json");
    let expr = &v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"][0];
    assert_eq!(
        (expr["key"].as_str(), expr["values"][0].as_str()),
        (Some("zhengyun.io/zone"), Some("intranet")),
        "placed by the webhook: {v}"
    );
    let ip = running.status.and_then(|s| s.pod_ip).unwrap_or_default();
    assert!(ip.starts_with("10.244.1."), "an address from the intranet node's pod range: {ip}");

    // Asking for the other zone's node is refused by the webhook, not left Pending.
    let mut elsewhere = restricted_pod("elsewhere", IMAGE);
    if let Some(s) = elsewhere.spec.as_mut() {
        s.node_selector = Some([("zhengyun.io/zone".to_string(), "extranet".to_string())].into());
    }
    refused(pods.create(&PostParams::default(), &elsewhere).await, "zone");

    // A Deployment becomes Available under PSA restricted, its pods on the intranet node, and
    // the tenant's ResourceQuota counts the pods that run (the one above and the three here).
    let template = serde_json::to_value(restricted_pod("unused", IMAGE)).expect("json");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]}
        }
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "onnode-apps");
    deployments.create(&PostParams::default(), &deployment).await.expect("create a Deployment");
    wait_for("the Deployment Available with 3 replicas", Duration::from_secs(120), || async {
        let d = deployments.get("web").await.ok()?;
        let status = d.status?;
        let available = status.conditions?.iter().any(|c| c.type_ == "Available" && c.status == "True");
        (available && status.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let web = pods.list(&ListParams::default().labels("app=web")).await.expect("the Deployment's pods").items;
    assert!(
        web.iter().all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("zy-intranet")),
        "every replica on the intranet node"
    );
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "onnode-apps");
    wait_for("the quota counts the 4 running pods", Duration::from_secs(60), || async {
        let used = quotas.get("zhengyun-tenant").await.ok()?.status?.used?;
        (used.get("pods").map(|q| q.0.as_str()) == Some("4")).then_some(())
    })
    .await;
}
