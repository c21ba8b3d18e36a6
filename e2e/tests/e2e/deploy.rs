//! The operator as docs/admin-guide.md installs it: its image (built as the Containerfile says,
//! hack/build-operator-image.sh) on the real nodes, `helm install charts/zhengyun`, replicas
//! electing a leader across pods, the webhook reached through its Service, `helm upgrade` to a
//! new image while the webhook keeps answering, and `helm uninstall` taking the webhook
//! registrations with it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    coordination::v1::Lease,
    core::v1::{Pod, ServiceAccount},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use zhengyun::api::Tenant;
use zhengyun_e2e::{
    Cleanup, REMOVE_WEBHOOKS, SECONDS, adopt_crds, apply_tenant, client, must, node_tenant, restricted_pod, run_tool,
    wait_for, wait_ready,
};

const NS: &str = "zhengyun-system";
/// The pods sent through admission (with `dryRun: All`: they go through both webhooks and are
/// never stored).
const PAUSE: &str = "localhost/zhengyun/pause:0.1.0";

fn helm(args: &[&str]) -> (bool, String) {
    run_tool("helm", args, None)
}

#[tokio::test]
async fn deploy_the_operator_runs_from_its_chart_on_the_nodes_and_an_upgrade_keeps_the_webhook_answering() {
    let Ok(image) = std::env::var("ZHENGYUN_OPERATOR_IMAGE") else {
        eprintln!("no operator image on real nodes in this run (hack/test.sh builds it when nodes are up)");
        return;
    };
    let client = client().await;
    let version = env!("CARGO_PKG_VERSION");
    // Whatever happens, in this order (guards drop last first): the tenant while its operator
    // runs, the release, then the webhook registrations its leader made (they fail closed, and
    // would refuse every later test's changes in tenant namespaces).
    let _hooks = Cleanup(vec![REMOVE_WEBHOOKS.to_vec()]);
    let _uninstall = HelmUninstall;
    let _tenant = Cleanup(vec![vec!["delete", "tenant", "deployed", "--ignore-not-found", "--timeout=60s"]]);

    // The suite installed the CRDs already; the release adopts them as the guide says.
    adopt_crds(&client, "zhengyun", NS).await;

    // Install, as the guide says, with this machine's image and the nodes' zone taints.
    let chart = zhengyun_e2e::repo_path("charts/zhengyun");
    let repository = format!("image.repository={image}");
    let tag = format!("image.tag={version}");
    must(
        "helm install",
        helm(&[
            "install",
            "zhengyun",
            &chart,
            "-n",
            NS,
            "--create-namespace",
            "--set",
            &repository,
            "--set",
            &tag,
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "isolationGate.image.repository=localhost/zhengyun/probe,isolationGate.image.tag=0.1.0",
            "--set",
            "tolerations[0].key=zhengyun.io/zone,tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule",
            "--wait",
            "--timeout",
            "180s",
        ]),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let selector =
        ListParams::default().labels("app.kubernetes.io/name=zhengyun-operator,app.kubernetes.io/instance=zhengyun");
    let running = pods.list(&selector).await.expect("operator pods").items;
    let on: Vec<String> = running.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    assert_eq!(running.len(), 2, "two replicas");
    assert!(on.iter().all(|n| n.starts_with("zy-")), "on the real nodes: {on:?}");
    let names: Vec<String> = running.iter().filter_map(|p| p.metadata.name.clone()).collect();

    // One replica leads (the Lease names a pod), and the leader registers the webhook at the
    // chart's Service.
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = wait_for("a pod holds the Lease", Duration::from_secs(60), || async {
        let h = leases.get_opt("zhengyun-operator").await.ok()??.spec?.holder_identity?;
        names.contains(&h).then_some(h)
    })
    .await;
    println!("leader: {holder} of {names:?} on {on:?}");
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    wait_for("the webhook registered at the Service", Duration::from_secs(60), || async {
        let h = hooks.get_opt("zhengyun").await.ok()??;
        let all_service = h.webhooks?.iter().all(|w| {
            w.client_config.service.as_ref().is_some_and(|s| s.name == "zhengyun-operator-webhook" && s.namespace == NS)
        });
        all_service.then_some(())
    })
    .await;
    // The chart's RBAC lets the leader run the isolation canary on every node.
    zhengyun_e2e::wait_canary(&client, NS).await;

    // A department's tenant becomes Ready: the operator in its pod reads and writes through the
    // API server's Service.
    apply_tenant(&client, &node_tenant("deployed", &["apps"], "intranet", 3)).await;
    wait_ready(&client, "deployed").await;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "deployed-apps");
    wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;

    // A pod through both webhooks, by way of the Service: placed on the intranet's nodes.
    let tenant_pods: Api<Pod> = Api::namespaced(client.clone(), "deployed-apps");
    let dry = PostParams { dry_run: true, ..Default::default() };
    let admitted = tenant_pods.create(&dry, &restricted_pod("through-the-service", PAUSE)).await.expect("admitted");
    let placed = serde_json::to_string(&admitted.spec).unwrap_or_default();
    assert!(placed.contains("zhengyun.io/zone") && placed.contains("intranet"), "placed by the webhook: {placed}");
    let first_init = admitted.spec.as_ref().and_then(|s| s.init_containers.as_ref()).and_then(|l| l.first());
    assert_eq!(
        first_init.map(|c| c.name.as_str()),
        Some(zhengyun::gate::CONTAINER),
        "the isolation gate goes first: {placed}"
    );

    // Upgrade to a new image while admissions keep coming: none may fail.
    let (tried, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let stop = Arc::new(AtomicBool::new(false));
    let admitting = {
        let (tried, failed, stop, api) = (tried.clone(), failed.clone(), stop.clone(), tenant_pods.clone());
        tokio::spawn(async move {
            let dry = PostParams { dry_run: true, ..Default::default() };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if let Err(e) = api.create(&dry, &restricted_pod(&format!("during-upgrade-{i}"), PAUSE)).await
                    && let Ok(mut f) = failed.lock()
                {
                    f.push(e.to_string());
                }
                tried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let new_tag = format!("image.tag={version}-upgrade");
    // Helm runs off the runtime's thread, so the admissions above keep going while it waits for
    // the rollout (a blocking call here would have paused them for exactly that time).
    let before = tried.load(Ordering::Relaxed);
    let upgrade = {
        let chart = chart.clone();
        tokio::task::spawn_blocking(move || {
            helm(&[
                "upgrade",
                "zhengyun",
                &chart,
                "-n",
                NS,
                "--reuse-values",
                "--set",
                &new_tag,
                "--wait",
                "--timeout",
                "180s",
            ])
        })
    };
    must("helm upgrade", upgrade.await.expect("the helm task"));
    let during = tried.load(Ordering::Relaxed) - before;
    // The old replicas are gone and the new ones serve.
    let upgraded = format!("{image}:{version}-upgrade");
    wait_for("only upgraded replicas", Duration::from_secs(120), || async {
        let now = pods.list(&selector).await.ok()?.items;
        let images: Vec<String> = now
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter().filter_map(|c| c.image.clone())))
            .collect();
        (now.len() == 2 && images.iter().all(|i| *i == upgraded)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    admitting.await.expect("the admitting task");
    let failures = failed.lock().map(|f| f.clone()).unwrap_or_default();
    let tried = tried.load(Ordering::Relaxed);
    println!("admissions: {tried}, {during} of them while helm upgraded; failed: {}", failures.len());
    assert!(during >= 5, "admissions kept coming while the replicas were replaced ({during})");
    assert!(failures.is_empty(), "the webhook stopped answering during the upgrade: {failures:?}");
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    assert!(mutating.get_opt("zhengyun").await.expect("get").is_some(), "still registered");

    // Done: the tenant goes while its operator runs (the guide's order), then the release.
    Api::<Tenant>::all(client.clone()).delete("deployed", &DeleteParams::default()).await.expect("delete tenant");
    wait_for("tenant deployed gone", Duration::from_secs(60), || async {
        Api::<Tenant>::all(client.clone()).get_opt("deployed").await.ok()?.is_none().then_some(())
    })
    .await;

    // Uninstall, as the guide says: the registrations go with the release (they are owned by
    // its ClusterRole), so nothing is left failing closed with no operator behind it.
    must("helm uninstall", helm(&["uninstall", "zhengyun", "-n", NS, "--wait", "--timeout", "120s"]));
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    wait_for("the webhook registrations gone with the release", Duration::from_secs(60), || async {
        let v = validating.get_opt("zhengyun").await.ok()?;
        let m = mutating.get_opt("zhengyun").await.ok()?;
        (v.is_none() && m.is_none()).then_some(())
    })
    .await;
    let canary: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), NS);
    wait_for("the isolation canary gone with the release", Duration::from_secs(60), || async {
        canary.get_opt(zhengyun::gate::CANARY).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Uninstalls the release when dropped (the CRDs stay, as the chart keeps them).
struct HelmUninstall;

impl Drop for HelmUninstall {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", "zhengyun", "-n", NS, "--wait", "--timeout", "120s"]);
    }
}
