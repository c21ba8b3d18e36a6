//! A gate that gives up is an Event on its pod and a metric, not only a termination message:
//! the leader watches the pods the webhook labelled as gated (no store: each change is looked
//! at once) and reports every failed run of a gate once.

use std::{collections::HashSet, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        events::{Event, EventType},
        watcher,
    },
};

use super::{CONTAINER, GATED_LABEL};
use crate::context::Context;

/// A failed run of the gate: which run (the restart count) and what it said.
pub fn failure(pod: &Pod) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?.init_container_statuses.as_ref()?.iter().find(|c| c.name == CONTAINER)?;
    let failed = |t: Option<&ContainerStateTerminated>| t.filter(|t| t.exit_code != 0).cloned();
    // The current state when the pod is done with it (restartPolicy Never); the last state
    // when the kubelet already runs it again.
    let (run, t) = match failed(status.state.as_ref().and_then(|s| s.terminated.as_ref())) {
        Some(t) => (status.restart_count, t),
        None => (status.restart_count - 1, failed(status.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?),
    };
    let message = t.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| format!("exit code {}", t.exit_code));
    Some((run, message.chars().take(512).collect()))
}

/// Watches gated pods until `stop` (leader only).
pub async fn run(
    ctx: Arc<Context>,
    failures: prometheus::IntCounter,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api = Api::<Pod>::all(ctx.client.clone());
    let cfg = watcher::Config::default().labels(GATED_LABEL);
    let mut reported: HashSet<(String, i32)> = HashSet::new();
    let stream = watcher(api, cfg).default_backoff().applied_objects().take_until(stop);
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let pod = match item {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "watching gated pods");
                continue;
            }
        };
        let Some((run, message)) = failure(&pod) else { continue };
        let key = (pod.uid().unwrap_or_default(), run);
        if !reported.insert(key) {
            continue;
        }
        // Bounded: a key forgotten only means one more Event for a run seen again.
        if reported.len() > 100_000 {
            reported.clear();
        }
        failures.inc();
        let ev = Event {
            type_: EventType::Warning,
            reason: "IsolationNotConfirmed".into(),
            note: Some(format!(
                "the isolation gate gave up and the pod's containers did not start: {message} (docs/security.md)"
            )),
            action: "Start".into(),
            secondary: None,
        };
        tracing::warn!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), %message, "isolation gate gave up");
        if let Err(e) = ctx.recorder.publish(&ev, &pod.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}

/// `zhengyun_isolation_gate_failures_total`, registered into `m`'s registry.
pub fn failures_metric(m: &crate::metrics::Metrics) -> prometheus::IntCounter {
    let isolation_gate_failures = crate::metrics::must(prometheus::IntCounter::new(
        "zhengyun_isolation_gate_failures_total",
        "Runs of the isolation gate that gave up: a tenant pod whose network isolation was not seen in force within the gate's wait, so its containers did not start",
    ));
    m.register(isolation_gate_failures.clone());
    isolation_gate_failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_run_is_found_in_the_current_or_the_last_state() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"status": {"initContainerStatuses": [status]}})).expect("pod")
        };
        let never = pod(json!({"name": CONTAINER, "restartCount": 0, "ready": false, "image": "p", "imageID": "",
            "state": {"terminated": {"exitCode": 2, "message": "not confirmed within 60 s: canary down"}}}));
        assert_eq!(failure(&never), Some((0, "not confirmed within 60 s: canary down".into())));
        let again = pod(json!({"name": CONTAINER, "restartCount": 3, "ready": false, "image": "p", "imageID": "",
            "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}));
        assert_eq!(failure(&again), Some((2, "exit code 1".into())));
        let passed = pod(json!({"name": CONTAINER, "restartCount": 0, "ready": true, "image": "p", "imageID": "",
            "state": {"terminated": {"exitCode": 0}}}));
        assert_eq!(failure(&passed), None);
    }
}
