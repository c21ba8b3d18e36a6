//! The operator as a process: killed mid-way it converges with no duplicates, and of two
//! replicas only the leader writes.

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{Api, Client, Resource, api::ListParams};
use serde::de::DeserializeOwned;
use zhengyun::api::Tenant;
use zhengyun_e2e::{Operator, SECONDS, SYSTEM_NAMESPACE, apply_tenant, client, tenant, wait_for, wait_ready};

async fn count<K>(client: &Client, tenant: &str) -> usize
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default().labels(&format!("zhengyun.io/tenant={tenant}")))
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test]
async fn an_operator_killed_mid_way_converges_on_restart_without_duplicates() {
    let client = client().await;
    let lease = "lease-crash";
    let mut first = Operator::start(lease, "op-crash-1").await;
    first.wait_leading(lease).await;
    let suffixes: Vec<String> = (0..8).map(|i| format!("ns{i}")).collect();
    let refs: Vec<&str> = suffixes.iter().map(String::as_str).collect();
    apply_tenant(&client, &tenant("crash", &refs)).await;
    // Kill it as soon as it has started creating namespaces, without a chance to clean up.
    wait_for("the first namespace", SECONDS, || async {
        (count::<Namespace>(&client, "crash").await >= 1).then_some(())
    })
    .await;
    first.kill().await;
    let partial = count::<Namespace>(&client, "crash").await;

    let mut second = Operator::start(lease, "op-crash-2").await;
    second.wait_leading(lease).await;
    let t = wait_ready(&client, "crash").await;
    assert_eq!(count::<Namespace>(&client, "crash").await, 8, "killed after {partial} namespaces");
    assert_eq!(count::<ResourceQuota>(&client, "crash").await, 8);
    assert_eq!(count::<RoleBinding>(&client, "crash").await, 8);
    assert_eq!(count::<NetworkPolicy>(&client, "crash").await, 16);
    let finalizers = t.metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers, vec!["zhengyun.io/tenant-protection".to_string()]);
    assert_eq!(second.stop().await.map(|s| s.success()), Some(true));
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_writes() {
    let client = client().await;
    let lease = "lease-pair";
    let mut a = Operator::start(lease, "op-pair-a").await;
    let mut b = Operator::start(lease, "op-pair-b").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let holder =
        wait_for("a lease holder", SECONDS, || async { leases.get_opt(lease).await.ok()??.spec?.holder_identity })
            .await;
    let (leader, follower) = if holder == a.identity { (&mut a, &mut b) } else { (&mut b, &mut a) };
    leader.wait_leading(lease).await;
    let master = format!("leader_election_master_status{{name=\"{lease}\"}}");
    assert_eq!(follower.metric(&master).await, Some(0.0));

    apply_tenant(&client, &tenant("pair", &["apps"])).await;
    wait_ready(&client, "pair").await;
    let reconciles = "controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"}";
    assert!(leader.metric(reconciles).await.unwrap_or(0.0) > 0.0, "the leader reconciled");
    assert_eq!(follower.metric(reconciles).await, None, "the follower never reconciled");
    assert!(follower.running());

    // The leader dies; the follower takes over once the lease expires and carries on.
    leader.kill().await;
    follower.wait_leading(lease).await;
    let holder = leases.get(lease).await.expect("lease").spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(follower.identity.as_str()));
    apply_tenant(&client, &tenant("pair-next", &["apps"])).await;
    wait_ready(&client, "pair-next").await;
    assert!(follower.metric(reconciles).await.unwrap_or(0.0) > 0.0);
    let api: Api<Tenant> = Api::all(client.clone());
    assert!(api.get_opt("pair-next").await.expect("get").is_some());
}

/// Sums every series of a metric whose labels contain `filter`.
async fn total(op: &Operator, metric: &str, filter: &str) -> f64 {
    op.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn a_settled_cluster_costs_no_writes_and_drift_costs_one() {
    let client = client().await;
    let op = Operator::start("lease-settled", "op-settled").await;
    let names: Vec<String> = (0..5).map(|i| format!("settled-{i}")).collect();
    for n in &names {
        let mut t = tenant(n, &["apps", "data"]);
        t.spec.limits = Some(zhengyun::api::ContainerLimits {
            default_request: Some(zhengyun::api::CpuMemory { cpu: Some("100m".into()), memory: Some("128Mi".into()) }),
            default_limit: None,
            max: None,
        });
        apply_tenant(&client, &t).await;
    }
    for n in &names {
        wait_ready(&client, n).await;
    }
    // Let the quota controller's status updates settle, then note the writes so far.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let writes = "zhengyun_writes_total{controller=\"tenant\"";
    let rounds = "controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"}";
    let before = total(&op, writes, "").await;
    let rounds_before = op.metric(rounds).await.unwrap_or(0.0);
    assert!(before > 0.0, "the tenants were written: {}", op.metrics().await);

    // Every tenant goes round again (an annotation wakes it) and finds nothing to write.
    let api: Api<Tenant> = Api::all(client.clone());
    for n in &names {
        let touch = serde_json::json!({"metadata": {"annotations": {"e2e/touched": "1"}}});
        api.patch(n, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&touch)).await.expect("touch");
    }
    wait_for("each touched tenant reconciled", SECONDS, || async {
        (op.metric(rounds).await.unwrap_or(0.0) >= rounds_before + names.len() as f64).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(total(&op, writes, "").await, before, "a settled cluster writes nothing:\n{}", op.metrics().await);

    // Drift: a deleted default-deny policy is written back, and nothing else is.
    let np_before = total(&op, writes, "kind=\"NetworkPolicy\"").await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "settled-0-apps");
    policies.delete("zhengyun-default-deny", &Default::default()).await.expect("delete");
    wait_for("default-deny repaired", SECONDS, || async {
        policies.get_opt("zhengyun-default-deny").await.ok()?.map(|_| ())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = total(&op, writes, "").await;
    let np_after = total(&op, writes, "kind=\"NetworkPolicy\"").await;
    assert_eq!(
        (after - before, np_after - np_before),
        (1.0, 1.0),
        "one write repairs one object:\n{}",
        op.metrics().await
    );

    // An edit, not a deletion: the operator keeps policies as metadata only, so it is the new
    // resourceVersion that gives the edit away. The rule opening the namespace goes again.
    let open = serde_json::json!({"spec": {"ingress": [{}]}});
    policies
        .patch("zhengyun-default-deny", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&open))
        .await
        .expect("open the default-deny policy");
    wait_for("the edited default-deny repaired", SECONDS, || async {
        let np = policies.get_opt("zhengyun-default-deny").await.ok()??;
        np.spec?.ingress.unwrap_or_default().is_empty().then_some(())
    })
    .await;
}
