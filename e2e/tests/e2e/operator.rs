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
