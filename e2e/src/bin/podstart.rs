//! The pod start benchmark's driver (run by `bench/pod-start.sh`, which brings up the control
//! plane and the real nodes): how long a tenant pod takes from its create request to the first
//! instant of its own container, with the isolation gate and without it.
//!
//! The container is the probe, whose first line says when it began (milliseconds since the
//! epoch, the host's clock, shared with this process), so the figure is create → first
//! instant, not create → a status the kubelet reports later. Rounds alternate (gate, none,
//! gate, none, ...) so that drift on a noisy machine falls on both sides; pods start one at a
//! time. Prints `key value` lines.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::{
    Api,
    api::{DeleteParams, LogParams, PostParams},
};
use serde_json::Value;
use zhengyun_e2e::{SECONDS, apply_tenant, client, node_tenant, operator_with_webhook_gate, wait_for, wait_ready};

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn pod(name: &str) -> Pod {
    let args = ["connect", "--timeout-ms", "100", "127.0.0.1:1"].map(String::from);
    zhengyun_e2e::probe_run_pod(name, &args)
}

/// One pod: create → the `at` of its first line, in ms; and how long its gate waited, if it
/// had one (the gate's last line says).
async fn one(pods: &Api<Pod>, name: &str) -> (f64, Option<f64>) {
    let created = now_ms();
    pods.create(&PostParams::default(), &pod(name)).await.expect("create");
    wait_for(&format!("{name} done"), Duration::from_secs(180), || async {
        let p = pods.get(name).await.ok()?;
        matches!(p.status?.phase.as_deref(), Some("Succeeded") | Some("Failed")).then_some(())
    })
    .await;
    let logs =
        pods.logs(name, &LogParams { container: Some("probe".into()), ..Default::default() }).await.expect("logs");
    let gate = pods
        .logs(name, &LogParams { container: Some(zhengyun::gate::CONTAINER.into()), ..Default::default() })
        .await
        .ok()
        .and_then(|l| l.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["gate"] == "isolated"))
        .and_then(|v| v["ms"].as_f64());
    let _ = pods.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
    let first: Value = logs.lines().find_map(|l| serde_json::from_str(l).ok()).expect("the probe's first line");
    let at = first["at"].as_u64().expect("at") as u128;
    ((at.saturating_sub(created)) as f64, gate)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let per_round: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let client = client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "podstart-apps");
    let (mut with, mut without, mut waits) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        let gate = round % 2 == 0;
        let (op, hooks) = operator_with_webhook_gate(&client, &format!("podstart-{round}"), &[], gate).await;
        if round == 0 {
            apply_tenant(&client, &node_tenant("podstart", &["apps"], "intranet", 3)).await;
            wait_ready(&client, "podstart").await;
            let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "podstart-apps");
            wait_for("default service account", SECONDS, || async { sa.get_opt("default").await.ok()? }).await;
        }
        // A first pod the round does not count: the webhook's first admission and the
        // operator's caches warming are not what is measured.
        one(&pods, &format!("warm-{round}")).await;
        for i in 0..per_round {
            let (ms, waited) = one(&pods, &format!("p-{round}-{i}")).await;
            if gate {
                with.push(ms);
                waits.extend(waited);
            } else {
                without.push(ms)
            }
        }
        drop(hooks);
        drop(op);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for v in [&mut with, &mut without, &mut waits] {
        v.sort_by(f64::total_cmp);
    }
    let (m_with, m_without) = (quantile(&with, 0.5), quantile(&without, 0.5));
    println!("pods_each {}", with.len());
    println!("without_median_ms {m_without:.0}");
    println!("without_p90_ms {:.0}", quantile(&without, 0.9));
    println!("with_median_ms {m_with:.0}");
    println!("with_p90_ms {:.0}", quantile(&with, 0.9));
    println!("median_ratio {:.2}", m_with / m_without);
    println!("median_added_ms {:.0}", m_with - m_without);
    // The gate's own wait (until two looks found both directions closed): the enforcer's
    // delay; the rest of what it adds is the kubelet running one more container in turn.
    if !waits.is_empty() {
        println!("gate_wait_median_ms {:.0}", quantile(&waits, 0.5));
        println!("gate_wait_p90_ms {:.0}", quantile(&waits, 0.9));
    }
}
