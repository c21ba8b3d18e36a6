//! The isolation gate where a window would open (issue 22), on the real nodes:
//!
//! - **a node whose enforcer stops**: kube-router on the extranet node is stopped (SIGTERM, as a
//!   rollout would) while a prober in the outside network hammers an old pod's port and an old
//!   pod keeps trying another tenant's pod. The old pods stay filtered (kube-router leaves its
//!   rules in place). New pods there cannot confirm their isolation: their gates hold them, the
//!   one that may not retry gives up after the gate's bounded wait with an `IsolationNotConfirmed`
//!   Event and the operator's metric, and the one that retries starts only once kube-router is
//!   back, unreachable from the prober throughout;
//! - **pods of every controller**: a Deployment's, a StatefulSet's, a Job's and a CronJob's pods
//!   each start behind a gate that passed (the webhook sees pods, whoever creates them).
//!
//! The SecureGateway's pods are checked in gateway.rs, container restarts need no gate (a
//! restarted container keeps its pod's address and rules), and the first-instant loops are in
//! first_instant.rs.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, ListParams, LogParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun_e2e::{
    SECONDS, client, events_about, gate_passed, nodes_here, operator_with_webhook, probe_run_pod, repo_path, run_tool,
    wait_for,
};

/// A node's kube-router, stopped and started as hack/lib/cluster.sh does; started again when
/// dropped, so a failing test leaves the node as it found it.
struct Enforcer {
    dir: String,
    name: String,
    down: bool,
}

impl Enforcer {
    fn new(zone: &str) -> Self {
        let dir = std::env::var("ZHENGYUN_CLUSTER_DIR").expect("hack/test.sh sets ZHENGYUN_CLUSTER_DIR");
        Enforcer { dir, name: format!("kube-router-{zone}"), down: false }
    }

    fn run(&self, function: &str) -> (bool, String) {
        let script =
            format!("source '{}' && {function} '{}' '{}'", repo_path("hack/lib/cluster.sh"), self.dir, self.name);
        run_tool("bash", &["-c", &script], None)
    }

    fn stop(&mut self) {
        let (ok, out) = self.run("component_stop");
        assert!(ok, "stopping {}: {out}", self.name);
        self.down = true;
    }

    fn start(&mut self) {
        let (ok, out) = self.run("component_start");
        assert!(ok, "starting {}: {out}", self.name);
        self.down = false;
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        if self.down {
            let _ = self.run("component_start");
        }
    }
}

/// Creates a pod and waits until it runs: its address and node.
async fn running(pods: &Api<Pod>, pod: &Pod) -> (String, String) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pods.create(&PostParams::default(), pod).await.expect("create a pod");
    wait_for(&format!("{name} running"), Duration::from_secs(120), || async {
        let p = pods.get(&name).await.ok()?;
        let s = p.status?;
        let up = s.container_statuses?.iter().all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()));
        (up && s.phase.as_deref() == Some("Running")).then_some((s.pod_ip?, p.spec?.node_name?))
    })
    .await
}

/// A serving probe pod that the kubelet restarts (restartPolicy Always).
fn restarting(name: &str) -> Pod {
    let mut p = probe_run_pod(name, &["serve", "8080"].map(String::from));
    if let Some(s) = p.spec.as_mut() {
        s.restart_policy = Some("Always".into());
    }
    p
}

/// Whether the pod's own container has ever started.
fn started(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|l| {
        l.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
    })
}

/// The targets each line of a probe's `--only-ok` output reached.
fn reached(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["target"].as_str().map(String::from))
        .collect()
}

/// The pod template every controller below runs: the probe, once, admitted by PSA restricted.
fn template(app: &str, restart: &str) -> Value {
    let mut pod =
        serde_json::to_value(probe_run_pod(app, &["connect", "--for-ms", "1", "127.0.0.1:9"].map(String::from)))
            .unwrap_or_default();
    pod["spec"]["restartPolicy"] = json!(restart);
    if restart == "Always" {
        pod["spec"]["containers"][0]["args"] = json!(["serve", "8080"]);
    }
    json!({"metadata": {"labels": {"app": app}}, "spec": pod["spec"]})
}

fn apply(object: Value) {
    let manifest = object.to_string();
    zhengyun_e2e::must("kubectl apply", run_tool("kubectl", &["apply", "-f", "-"], Some(&manifest)));
}

#[tokio::test]
async fn gate_holds_new_pods_while_the_enforcer_is_down_and_every_controllers_pods_pass_it() {
    if !nodes_here() {
        return;
    }
    let client = client().await;
    let (op, _hooks) = operator_with_webhook(&client, "gate-enforcer").await;
    zhengyun_e2e::ready_node_tenants(
        &client,
        &[("ge-a", "extranet", 2), ("ge-c", "extranet", 2), ("ge-b", "intranet", 3)],
    )
    .await;
    let pods_a: Api<Pod> = Api::namespaced(client.clone(), "ge-a-apps");
    let pods_b: Api<Pod> = Api::namespaced(client.clone(), "ge-b-apps");
    let pods_c: Api<Pod> = Api::namespaced(client.clone(), "ge-c-apps");
    let (old_ip, node) = running(&pods_a, &restarting("ge-old")).await;
    let (other_ip, other_node) = running(&pods_c, &restarting("ge-other")).await;
    assert_eq!((node.as_str(), other_node.as_str()), ("zy-extranet", "zy-extranet"));
    // An old pod that keeps trying another tenant's pod (denied) and its own (the control).
    let talker_args = ["connect", "--for-ms", "900000", "--timeout-ms", "150", "--only-ok"]
        .into_iter()
        .map(String::from)
        .chain([format!("{other_ip}:8080"), format!("{old_ip}:8080")])
        .collect::<Vec<_>>();
    running(&pods_a, &probe_run_pod("ge-talker", &talker_args)).await;
    let canary = Api::<Pod>::namespaced(client.clone(), zhengyun_e2e::SYSTEM_NAMESPACE)
        .list(&ListParams::default().labels(&format!("{}={}", zhengyun::gate::CANARY_LABEL, zhengyun::gate::CANARY)))
        .await
        .expect("canary pods")
        .items
        .into_iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("zy-extranet"))
        .and_then(|p| p.status?.pod_ip)
        .expect("the extranet node's canary");
    // The canary's port that admits anyone: the prober's control.
    let control = format!("{canary}:{}", zhengyun::gate::DENIED_PORT);
    let (mut prober_old, read_old) = zhengyun_e2e::outside_prober(&[format!("{old_ip}:8080"), control.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut enforcer = Enforcer::new("extranet");
    enforcer.stop();
    println!("kube-router on zy-extranet stopped");
    // New pods on that node: one that may not retry, one that the kubelet restarts.
    pods_a
        .create(&PostParams::default(), &probe_run_pod("ge-never", &["serve", "8080"].map(String::from)))
        .await
        .expect("create");
    pods_a.create(&PostParams::default(), &restarting("ge-always")).await.expect("create");
    // Meanwhile, on the intranet node, the pods of every controller.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ge-deploy", "namespace": "ge-b-apps"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ge-deploy"}}, "template": template("ge-deploy", "Always")}});
    let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "ge-sts", "namespace": "ge-b-apps"},
        "spec": {"replicas": 1, "serviceName": "ge-sts", "selector": {"matchLabels": {"app": "ge-sts"}}, "template": template("ge-sts", "Always")}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ge-job", "namespace": "ge-b-apps"},
        "spec": {"backoffLimit": 0, "template": template("ge-job", "Never")}});
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "ge-cron", "namespace": "ge-b-apps"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
                 "jobTemplate": {"spec": {"backoffLimit": 0, "template": template("ge-cron", "Never")}}}});
    for object in [deployment, statefulset, job, cronjob] {
        apply(object);
    }

    // The new pod's address, known from its sandbox while its gate waits: hammered too.
    let always_ip = wait_for("ge-always has an address", Duration::from_secs(60), || async {
        pods_a.get("ge-always").await.ok()?.status?.pod_ip
    })
    .await;
    let (mut prober_new, read_new) = zhengyun_e2e::outside_prober(&[format!("{always_ip}:8080"), control.clone()]);

    // The pod that may not retry: its gate gives up after its bounded wait, its container
    // never starts, and the operator says so.
    let never =
        wait_for("ge-never failed", Duration::from_secs(u64::from(zhengyun::gate::MAX_WAIT_SECONDS) + 90), || async {
            let p = pods_a.get("ge-never").await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
        })
        .await;
    assert!(!started(&never), "ge-never's container started without its isolation: {:?}", never.status);
    let reason = wait_for("the IsolationNotConfirmed Event", SECONDS, || async {
        events_about(&client, "Pod", "ge-never").await.into_iter().find(|e| e.starts_with("IsolationNotConfirmed"))
    })
    .await;
    println!("ge-never: {reason}");
    assert!(reason.contains("not confirmed"), "the Event says why: {reason}");
    let failures = op.metric("zhengyun_isolation_gate_failures_total").await.unwrap_or(0.0);
    assert!(failures >= 1.0, "the operator counts the gate that gave up: {failures}");
    let always = pods_a.get("ge-always").await.expect("ge-always");
    assert!(!started(&always), "ge-always's container started while the enforcer was down: {:?}", always.status);

    enforcer.start();
    let back = jiff::Timestamp::now();
    println!("kube-router on zy-extranet started again");
    // The gate runs again (the kubelet's back-off) and passes once kube-router has the pod's rules.
    let always = wait_for("ge-always running", Duration::from_secs(240), || async {
        let p = pods_a.get("ge-always").await.ok()?;
        let running = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        running.then_some(p)
    })
    .await;
    assert!(gate_passed(&always), "ge-always started behind a gate that passed: {:?}", always.status);
    let since = always
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref()?.first()?.state.as_ref()?.running.as_ref()?.started_at.clone())
        .expect("ge-always's start");
    // The kubelet's times are whole seconds.
    assert!(
        since.0.as_second() >= back.as_second(),
        "ge-always started at {} before kube-router was back at {back}",
        since.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = prober_old.kill().await;
    let _ = prober_new.kill().await;
    let (old_seen, new_seen) =
        (reached(&read_old.await.unwrap_or_default()), reached(&read_new.await.unwrap_or_default()));
    let talker = pods_a
        .logs("ge-talker", &LogParams { container: Some("probe".into()), ..Default::default() })
        .await
        .unwrap_or_default();
    let talker_seen = reached(&talker);
    let count = |seen: &[String], t: &str| seen.iter().filter(|s| *s == t).count();
    let line = format!(
        "enforcer down: the outside prober reached an old pod {} and the new pod {} times (the canary's open port \
         {} and {} times); an old pod reached another tenant's pod {} times (its own tenant's {} times); the gate \
         that could not retry gave up ({failures} counted), the one that could started after kube-router was back",
        count(&old_seen, &format!("{old_ip}:8080")),
        count(&new_seen, &format!("{always_ip}:8080")),
        count(&old_seen, &control),
        count(&new_seen, &control),
        count(&talker_seen, &format!("{other_ip}:8080")),
        count(&talker_seen, &format!("{old_ip}:8080")),
    );
    println!("{line}");
    assert_eq!(count(&old_seen, &format!("{old_ip}:8080")), 0, "{line}");
    assert_eq!(count(&new_seen, &format!("{always_ip}:8080")), 0, "{line}");
    assert_eq!(count(&talker_seen, &format!("{other_ip}:8080")), 0, "{line}");
    // The controls: the probers and the talker were at work throughout.
    assert!(count(&old_seen, &control) > 0 && count(&new_seen, &control) > 0, "{line}");
    assert!(count(&talker_seen, &format!("{old_ip}:8080")) > 0, "{line}");

    // Every controller's pod started behind a gate that passed.
    let mut seen = Vec::new();
    for app in ["ge-deploy", "ge-sts", "ge-job", "ge-cron"] {
        let p = wait_for(&format!("a pod of {app} past its gate"), Duration::from_secs(150), || async {
            let l = pods_b.list(&ListParams::default().labels(&format!("app={app}"))).await.ok()?;
            l.items.into_iter().find(gate_passed)
        })
        .await;
        seen.push(format!("{app}: {}", p.metadata.name.unwrap_or_default()));
    }
    println!("gated and passed: {}", seen.join(", "));

    for object in ["deployment/ge-deploy", "statefulset/ge-sts", "job/ge-job", "cronjob/ge-cron"] {
        let _ = run_tool("kubectl", &["delete", "-n", "ge-b-apps", object, "--ignore-not-found", "--wait=false"], None);
    }
    let dp = DeleteParams::default();
    let _ = join_all(["ge-old", "ge-talker", "ge-never", "ge-always"].iter().map(|n| pods_a.delete(n, &dp))).await;
    let _ = pods_c.delete("ge-other", &dp).await;
}
