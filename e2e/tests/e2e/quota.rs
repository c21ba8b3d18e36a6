//! One budget over all of a tenant's namespaces, enforced at admission even under a burst.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;
use zhengyun::api::{ContainerLimits, CpuMemory, amount::Count};
use zhengyun_e2e::{Cleanup, Operator, apply_tenant, client, tenant, wait_for, wait_ready};

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod")
}

/// The tenant's pods the quota counts: with real nodes a kubelet may refuse a pod (it is then
/// `Failed`), and a terminal pod no longer holds quota.
async fn count_pods(client: &Client) -> usize {
    Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref().is_some_and(|n| n.starts_with("burst-")))
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded")))
        .count()
}

async fn try_create(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    match Api::<Pod>::namespaced(client.clone(), ns).create(&PostParams::default(), &pod(name)).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn concurrent_pods_never_push_a_tenant_over_its_quota() {
    let client = client().await;
    let _op = Operator::start("lease-quota", "op-quota").await;
    // Its pods, with no webhook to place them, would be scheduled onto any node later tests add:
    // they go with the test (dropped before the operator, which runs the tenant's finalizer).
    let _cleanup = Cleanup(vec![
        vec!["delete", "tenant", "burst", "--ignore-not-found", "--timeout=60s"],
        vec!["delete", "namespace", "burst-a", "burst-b", "--ignore-not-found", "--wait=false"],
    ]);
    let mut t = tenant("burst", &["a", "b"]);
    t.spec.quota.pods = Some(Count::from(4));
    t.spec.quota.cpu = Some("1".into());
    t.spec.quota.memory = None;
    t.spec.limits = Some(ContainerLimits {
        default_request: Some(CpuMemory { cpu: Some("100m".into()), memory: Some("64Mi".into()) }),
        ..Default::default()
    });
    apply_tenant(&client, &t).await;
    wait_ready(&client, "burst").await;
    for ns in ["burst-a", "burst-b"] {
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        wait_for("default service account", Duration::from_secs(30), || async { sa.get_opt("default").await.ok()? })
            .await;
    }

    // Twelve pods at once, six in each namespace, against a budget of four.
    let attempts = (0..12).map(|i| {
        let client = client.clone();
        async move { try_create(&client, if i % 2 == 0 { "burst-a" } else { "burst-b" }, &format!("burst-{i}")).await }
    });
    let results = join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        // A create racing others on the same quota may also be told to retry (409): the API
        // server's quota admission gives up after a few optimistic attempts. Either way the pod
        // is not admitted, which is what counts here.
        assert!(
            r.contains("exceeded quota") || r.contains("the object has been modified"),
            "refused for another reason: {r}"
        );
    }
    assert!((1..=4).contains(&created), "{created} pods admitted against a budget of 4");
    assert_eq!(count_pods(&client).await, created);

    // The free budget moves to where pods are asked for: keep asking (in turn in each
    // namespace) until the tenant's whole budget is used.
    let mut n = 100;
    wait_for("the rest of the budget to be usable", Duration::from_secs(60), || {
        n += 1;
        let client = client.clone();
        let name = format!("burst-{n}");
        let ns = if n % 2 == 0 { "burst-a" } else { "burst-b" };
        async move {
            let _ = try_create(&client, ns, &name).await;
            (count_pods(&client).await >= 4).then_some(())
        }
    })
    .await;
    assert_eq!(count_pods(&client).await, 4);
    // Whatever we try now, the total stays at four.
    let more =
        join_all(
            (0..6).map(|i| {
                let client = client.clone();
                async move {
                    try_create(&client, if i % 2 == 0 { "burst-a" } else { "burst-b" }, &format!("extra-{i}")).await
                }
            }),
        )
        .await;
    assert!(more.iter().all(|r| r.is_err()));
    assert_eq!(count_pods(&client).await, 4);

    // Pods leave burst-a; burst-b can now use the whole budget.
    Api::<Pod>::namespaced(client.clone(), "burst-a")
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete");
    wait_for("burst-b to hold all four", Duration::from_secs(60), || {
        n += 1;
        let client = client.clone();
        let name = format!("burst-{n}");
        async move {
            let _ = try_create(&client, "burst-b", &name).await;
            let b =
                Api::<Pod>::namespaced(client.clone(), "burst-b").list(&ListParams::default()).await.ok()?.items.len();
            (b == 4).then_some(())
        }
    })
    .await;
    assert_eq!(count_pods(&client).await, 4, "never more than the tenant's budget");
}
