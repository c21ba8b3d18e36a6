//! The operator as a process: killed mid-way it converges with no duplicates; of two replicas
//! only the leader writes, and the other takes over within the lease; told to stop under load,
//! it exits within ten seconds.

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, ResourceQuota},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use std::time::Duration;

use kube::{Api, Client, Resource, api::ListParams};
use serde::de::DeserializeOwned;
use zhengyun::api::Tenant;
use zhengyun_e2e::{
    AuditedWrite, LEASE_DURATION, LEASE_RETRY, Operator, SECONDS, SYSTEM_NAMESPACE, apply_tenant, audited_kubeconfig,
    audited_writes, client, create_tenants, must, remove_tenants, run_tool, tenant, tenants_ready, wait_for,
    wait_ready, wait_tenants_ready,
};

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

/// A tenant of the load the tests below put on the operator, deleted with its namespace.
fn load_tenant(name: &str) -> Tenant {
    let mut t = tenant(name, &["apps"]);
    t.spec.deletion_policy = zhengyun::api::DeletionPolicy::Delete;
    t
}

/// Waits until the operator is busy with the load: `at_least` `prefix*` tenants Ready, not all.
async fn converging(client: &Client, prefix: &str, n: usize, at_least: usize) -> usize {
    let ready = wait_for(&format!("{at_least} tenants Ready"), SECONDS, || async {
        let r = tenants_ready(client, prefix).await;
        (r >= at_least).then_some(r)
    })
    .await;
    assert!(ready < n, "all {n} tenants were Ready before the operator could be stopped mid-way");
    ready
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_writes_and_the_other_takes_over_within_the_lease() {
    let client = client().await;
    let since = jiff::Timestamp::now();
    let lease = "lease-pair";
    // Both replicas write as the ServiceAccount the API server audits; their user agents name
    // them. New names each run, so an earlier run's records are not taken for this one's.
    let kubeconfig = audited_kubeconfig();
    let env = [("KUBECONFIG", kubeconfig.as_str())];
    let run = std::process::id();
    let mut a = Operator::start_with(lease, &format!("op-pair-a-{run}"), &env).await;
    let mut b = Operator::start_with(lease, &format!("op-pair-b-{run}"), &env).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let holder = wait_for("a lease holder", SECONDS, || async {
        let h = leases.get_opt(lease).await.ok()??.spec?.holder_identity?;
        (h == a.identity || h == b.identity).then_some(h)
    })
    .await;
    let (leader, follower) = if holder == a.identity { (&mut a, &mut b) } else { (&mut b, &mut a) };
    leader.wait_leading(lease).await;
    let master = format!("leader_election_master_status{{name=\"{lease}\"}}");
    // The follower reports it follows once it has started (the leader may be there first).
    wait_for("the follower to report it follows", SECONDS, || async {
        (follower.metric(&master).await == Some(0.0)).then_some(())
    })
    .await;

    // Hundreds of tenants converging: the leader is killed while it writes.
    let (prefix, n) = ("pair-", 200);
    create_tenants(&client, n, |i| load_tenant(&format!("{prefix}{i:03}"))).await;
    let ready = converging(&client, prefix, n, 10).await;
    let reconciles = "controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"}";
    assert!(leader.metric(reconciles).await.unwrap_or(0.0) > 0.0, "the leader reconciled");
    assert_eq!(follower.metric(reconciles).await, None, "the follower never reconciled");
    let killed_at = jiff::Timestamp::now();
    let killed = std::time::Instant::now();
    leader.kill().await;

    // The follower holds the lease once it has run out: at most the lease and one retry after
    // the leader's last renewal, which came before the kill.
    let bound = LEASE_DURATION + LEASE_RETRY + Duration::from_millis(1500);
    wait_for("the follower to hold the lease", bound + SECONDS, || async {
        let h = leases.get(lease).await.ok()?.spec?.holder_identity?;
        (h == follower.identity).then_some(())
    })
    .await;
    let took = killed.elapsed();
    println!("killed with {ready} of {n} Ready; the follower held the lease {took:?} later");
    assert!(took <= bound, "the follower took the lease {took:?} after the kill, more than {bound:?}");
    follower.wait_leading(lease).await;
    wait_tenants_ready(&client, prefix, n, Duration::from_secs(120)).await;
    assert!(follower.metric(reconciles).await.unwrap_or(0.0) > 0.0);

    // Nothing was written by both: the old leader's last write was answered before the new one
    // took the lease, and the new one wrote nothing before that.
    let writes = audited_writes(since);
    let by = |op: &Operator| -> Vec<AuditedWrite> {
        let agent = format!("({})", op.identity);
        writes.iter().filter(|w| w.user_agent.ends_with(&agent)).cloned().collect()
    };
    let (old, new) = (by(leader), by(follower));
    let lease_object = format!("leases/{SYSTEM_NAMESPACE}/{lease}");
    let takeover = new
        .iter()
        .find(|w| w.object == lease_object && w.code < 300)
        .unwrap_or_else(|| panic!("no Lease write by the new leader in the audit log ({} of its writes)", new.len()));
    let old_objects: Vec<&AuditedWrite> = old.iter().filter(|w| w.resource != "leases").collect();
    let new_objects: Vec<&AuditedWrite> = new.iter().filter(|w| w.resource != "leases").collect();
    assert!(
        !old_objects.is_empty() && !new_objects.is_empty(),
        "both replicas wrote: {} and {}",
        old_objects.len(),
        new_objects.len()
    );
    let last_old = old.last().expect("the old leader's writes");
    assert!(
        last_old.completed < takeover.received,
        "the old leader wrote until {} (answered), the new one took the lease at {}: {last_old:?}",
        last_old.completed,
        takeover.received
    );
    let early: Vec<&AuditedWrite> = new.iter().filter(|w| w.received < takeover.received).collect();
    assert!(early.is_empty(), "the follower wrote before it led: {early:#?}");
    // The kill came while the leader wrote: its last write of a tenant's objects was that recent.
    let last_object = old_objects.last().expect("written");
    // Negative when a request in flight reached the API server after the kill was sent.
    let gap = killed_at.duration_since(last_object.received).as_secs_f64();
    assert!(gap < 2.0, "the leader's last object write came {gap:.3} s before the kill");
    println!(
        "audit: the old leader wrote {} objects (last {gap:.3} s before the kill), the new one {} after taking over",
        old_objects.len(),
        new_objects.len()
    );

    remove_tenants(&client, prefix, &[]).await;
    assert_eq!(follower.stop().await.map(|s| s.success()), Some(true));
}

/// The local control plane's API server, stopped (SIGSTOP) until this is dropped: requests
/// sent to it hang, as with an API server that stops answering.
struct FrozenApiServer(String);

impl FrozenApiServer {
    fn freeze() -> Self {
        let dir = std::env::var("ZHENGYUN_CLUSTER_DIR").expect("hack/test.sh sets ZHENGYUN_CLUSTER_DIR");
        let pid = std::fs::read_to_string(format!("{dir}/pids/kube-apiserver")).expect("the API server's pid");
        let pid = pid.trim().to_string();
        must("kill -STOP", run_tool("kill", &["-STOP", &pid], None));
        FrozenApiServer(pid)
    }
}

impl Drop for FrozenApiServer {
    fn drop(&mut self) {
        let _ = run_tool("kill", &["-CONT", &self.0], None);
    }
}

/// SIGTERM to a leader; asserts that it exits with success within ten seconds (the e2e
/// operators run with no --shutdown-delay, so the ten seconds are all the operator's).
async fn stops_within_ten_seconds(op: &mut Operator, what: &str) {
    let asked = std::time::Instant::now();
    let status = op.stop().await;
    let took = asked.elapsed();
    println!("{what}: exited {took:?} after SIGTERM, {status:?}");
    assert_eq!(status.map(|s| s.success()), Some(true), "{what}: exit status");
    assert!(took < Duration::from_secs(10), "{what}: exited {took:?} after SIGTERM");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("shut down cleanly"), "{what}:\n{log}");
}

#[tokio::test]
async fn a_leader_under_load_stops_in_time_when_told_to_and_when_the_api_server_hangs() {
    let client = client().await;
    let started = std::time::Instant::now();
    let lease = "lease-sigterm";
    let mut op = Operator::start(lease, "op-sigterm").await;
    op.wait_leading(lease).await;
    let (prefix, n) = ("sigterm-", 200);
    create_tenants(&client, n, |i| load_tenant(&format!("{prefix}{i:03}"))).await;
    let ready = converging(&client, prefix, n, 10).await;
    stops_within_ten_seconds(&mut op, &format!("converging ({ready} of {n} Ready)")).await;

    // Again, with the API server hanging with the rounds in flight: they are given up on.
    let mut op = Operator::start(lease, "op-sigterm-hung").await;
    op.wait_leading(lease).await;
    let ready = converging(&client, prefix, n, ready + 10).await;
    let frozen = FrozenApiServer::freeze();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stops_within_ten_seconds(&mut op, &format!("converging ({ready} of {n} Ready), API server hung")).await;
    drop(frozen);
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("rounds still running after the drain time"), "rounds were in flight:\n{log}");

    // The API server hangs under a leader, its renewals with it: the leader stops writing and
    // exits (to be restarted as a follower) before its lease runs out, counted from its last
    // renewal, which came before the freeze.
    let mut op = Operator::start(lease, "op-sigterm-cut-off").await;
    op.wait_leading(lease).await;
    let ready = converging(&client, prefix, n, ready + 10).await;
    let frozen = FrozenApiServer::freeze();
    let cut_off = std::time::Instant::now();
    while op.running() && cut_off.elapsed() < LEASE_DURATION + SECONDS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = cut_off.elapsed();
    drop(frozen);
    println!("converging ({ready} of {n} Ready), API server hung: the leader exited {took:?} later");
    assert!(
        took < LEASE_DURATION,
        "the leader went on for {took:?} with its lease unrenewed, lease {LEASE_DURATION:?}"
    );
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("could not renew the lease in time: stepping down"), "{log}");
    assert!(log.contains("lost leadership"), "{log}");

    // What they left half done, the next leader finishes.
    let mut op = Operator::start(lease, "op-sigterm-next").await;
    wait_tenants_ready(&client, prefix, n, Duration::from_secs(180)).await;
    println!("all {n} Ready {:?} after the start", started.elapsed());
    remove_tenants(&client, prefix, &[]).await;
    println!("cleaned up {:?} after the start", started.elapsed());
    assert_eq!(op.stop().await.map(|s| s.success()), Some(true));
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
