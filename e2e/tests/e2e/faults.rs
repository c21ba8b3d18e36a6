//! Faults while tenants converge: the operator killed again and again, the API server and etcd
//! crashing under it, and a malformed Tenant stored in etcd. Afterwards every tenant has exactly
//! its children, nothing is orphaned or deleted, and the operator recovered by itself.

use std::time::Duration;

use k8s_openapi::{
    api::{
        core::v1::{LimitRange, Namespace, ResourceQuota},
        networking::v1::NetworkPolicy,
        rbac::v1::RoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;
use zhengyun::api::{ContainerLimits, CpuMemory, Tenant};
use zhengyun_e2e::{Operator, apply_tenant, client, repo_path, run_tool, tenant, wait_for};

fn faulty_tenant(name: &str) -> Tenant {
    let mut t = tenant(name, &["apps", "data"]);
    // Deleted with its namespaces when the test is done, so the tests after it (the
    // reachability view of the whole cluster among them) do not carry hundreds of namespaces.
    t.spec.deletion_policy = zhengyun::api::DeletionPolicy::Delete;
    t.spec.limits = Some(ContainerLimits {
        default_request: Some(CpuMemory { cpu: Some("100m".into()), memory: Some("64Mi".into()) }),
        ..Default::default()
    });
    t
}

async fn labelled<K>(client: &Client, prefix: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=zhengyun"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|o| {
            o.meta().labels.as_ref().and_then(|l| l.get("zhengyun.io/tenant")).is_some_and(|t| t.starts_with(prefix))
        })
        .collect()
}

async fn ready(client: &Client, prefix: &str) -> usize {
    // Through DeserializeGuard: a malformed Tenant must not hide the others from the test either.
    Api::<kube::core::DeserializeGuard<Tenant>>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter_map(|t| t.0.as_ref().ok())
                .filter(|t| t.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
                .filter(|t| {
                    t.status.as_ref().is_some_and(|s| {
                        s.observed_generation == t.metadata.generation
                            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Every tenant has exactly its children: two namespaces, each with one quota, one limit
/// range, two policies and one binding, and nothing else labelled as its.
async fn exactly_its_children(client: &Client, prefix: &str, n: usize) {
    assert_eq!(labelled::<Namespace>(client, prefix).await.len(), 2 * n, "namespaces");
    assert_eq!(labelled::<ResourceQuota>(client, prefix).await.len(), 2 * n, "quotas");
    assert_eq!(labelled::<LimitRange>(client, prefix).await.len(), 2 * n, "limit ranges");
    assert_eq!(labelled::<NetworkPolicy>(client, prefix).await.len(), 4 * n, "policies");
    assert_eq!(labelled::<RoleBinding>(client, prefix).await.len(), 2 * n, "bindings");
    let terminating =
        labelled::<Namespace>(client, prefix).await.iter().filter(|n| n.metadata.deletion_timestamp.is_some()).count();
    assert_eq!(terminating, 0, "no namespace is ever deleted");
}

/// Deletes the tenants (policy Delete) and waits until their namespaces are gone.
async fn remove(client: &Client, prefix: &str) {
    let api: Api<Tenant> = Api::all(client.clone());
    let names: Vec<String> = Api::<kube::core::DeserializeGuard<Tenant>>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().filter_map(|t| t.0.as_ref().ok()).filter_map(|t| t.metadata.name.clone()).collect())
        .unwrap_or_default();
    for n in names.iter().filter(|n| n.starts_with(prefix)) {
        let _ = api.delete(n, &Default::default()).await;
    }
    wait_for(&format!("{prefix}* namespaces gone"), Duration::from_secs(300), || async {
        let left = Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .filter(|n| n.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
            .count();
        (left == 0).then_some(())
    })
    .await;
}

async fn create(client: &Client, prefix: &str, n: usize) {
    let api: Api<Tenant> = Api::all(client.clone());
    let pp = PostParams::default();
    for i in 0..n {
        api.create(&pp, &faulty_tenant(&format!("{prefix}{i:03}"))).await.expect("create");
    }
}

async fn all_ready(client: &Client, prefix: &str, n: usize, within: Duration) {
    wait_for(&format!("{n} {prefix}* tenants Ready"), within, || async {
        (ready(client, prefix).await >= n).then_some(())
    })
    .await;
}

fn restart(component: &str) {
    let dir = std::env::var("ZHENGYUN_CLUSTER_DIR").expect("hack/test.sh sets ZHENGYUN_CLUSTER_DIR");
    let script = format!("source '{}' && cluster_restart '{dir}' {component} 3", repo_path("hack/lib/cluster.sh"));
    let (ok, out) = run_tool("bash", &["-c", &script], None);
    assert!(ok, "restarting {component}: {out}");
}

async fn api_back(client: &Client) {
    wait_for("the API server answers again", Duration::from_secs(90), || async {
        Api::<Namespace>::all(client.clone()).list(&ListParams::default().limit(1)).await.ok().map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn faults_an_operator_killed_again_and_again_converges_with_nothing_duplicated_or_lost() {
    let client = client().await;
    let n = 100;
    create(&client, "kill-", n).await;
    let lease = "lease-kill";
    for round in 0..4u64 {
        let mut op = Operator::start(lease, &format!("op-kill-{round}")).await;
        op.wait_leading(lease).await;
        tokio::time::sleep(Duration::from_millis(1500 + 700 * round)).await;
        op.kill().await;
    }
    let mut op = Operator::start(lease, "op-kill-last").await;
    all_ready(&client, "kill-", n, Duration::from_secs(240)).await;
    exactly_its_children(&client, "kill-", n).await;
    assert!(op.running());
    remove(&client, "kill-").await;
    assert_eq!(op.stop().await.map(|s| s.success()), Some(true));
}

/// Waits until `n` tenants are Ready, restarting the operator whenever it exits, as its
/// Deployment would. Returns how many times it had to.
async fn supervised_until_ready(client: &Client, op: &mut Operator, lease: &str, prefix: &str, n: usize) -> usize {
    let mut restarts = 0;
    let start = std::time::Instant::now();
    while ready(client, prefix).await < n {
        assert!(start.elapsed() < Duration::from_secs(240), "{prefix}* tenants not all Ready after 240 s");
        if !op.running() {
            let log = std::fs::read_to_string(&op.log).unwrap_or_default();
            assert!(log.contains("lost leadership"), "the operator exited only for losing its lease:\n{log}");
            restarts += 1;
            *op = Operator::start(lease, &format!("op-crashes-{restarts}")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    restarts
}

/// When the API server or etcd is gone longer than the lease allows, the leader cannot renew
/// and cannot know whether another replica took over: it stops writing and exits, and its
/// Deployment starts it again (a follower until it wins the lease). Shorter outages it rides out
/// without a restart. Either way every tenant converges with exactly its children.
#[tokio::test]
async fn faults_the_api_server_and_etcd_crash_mid_convergence_and_every_tenant_converges() {
    let client = client().await;
    let lease = "lease-crashes";
    let mut op = Operator::start(lease, "op-crashes").await;
    let n = 40;
    for (prefix, component) in [("crash-api-", "kube-apiserver"), ("crash-etcd-", "etcd")] {
        create(&client, prefix, n).await;
        wait_for("some tenants Ready", Duration::from_secs(60), || async {
            (ready(&client, prefix).await >= 5).then_some(())
        })
        .await;
        restart(component);
        api_back(&client).await;
        let restarts = supervised_until_ready(&client, &mut op, lease, prefix, n).await;
        println!("{component} crashed: the operator was restarted {restarts} times");
        exactly_its_children(&client, prefix, n).await;
    }
    assert!(op.running());
    remove(&client, "crash-").await;
    assert_eq!(op.stop().await.map(|s| s.success()), Some(true));
}

#[tokio::test]
async fn faults_a_malformed_tenant_in_etcd_stalls_nothing_else() {
    let client = client().await;
    // Store a Tenant through an older, looser schema, then put today's back: etcd keeps it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let strict = crds.get("tenants.zhengyun.io").await.expect("crd");
    let mut loose = serde_json::to_value(&strict).expect("json");
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    loose["spec"]["versions"][0]["additionalPrinterColumns"] = json!([]);
    let loose: CustomResourceDefinition = serde_json::from_value(loose).expect("crd");
    crds.replace("tenants.zhengyun.io", &PostParams::default(), &loose).await.expect("looser schema");
    // The API server takes the looser schema once it has rebuilt the CRD's handler: a few
    // seconds under load. Until then the strict schema refuses the object; keep trying.
    let malformed = "apiVersion: zhengyun.io/v1alpha1\nkind: Tenant\nmetadata: {name: malformed}\nspec: {securityLevel: three, owners: nobody}\n";
    let start = std::time::Instant::now();
    loop {
        let (ok, out) = run_tool("kubectl", &["apply", "-f", "-"], Some(malformed));
        if ok {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the looser schema never took the Tenant: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Today's schema again (the suite's client() applies it).
    let client = zhengyun_e2e::client().await;
    let op = Operator::start("lease-malformed", "op-malformed").await;
    apply_tenant(&client, &tenant("after-malformed", &["apps"])).await;
    all_ready(&client, "after-malformed", 1, Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("does not deserialize"), "the malformed tenant was noticed and skipped:\n{log}");
    let (_, _) = run_tool("kubectl", &["delete", "tenant", "malformed", "--wait=false"], None);
    let _ = Api::<Tenant>::all(client.clone())
        .patch("malformed", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await;
}
