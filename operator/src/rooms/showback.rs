//! Showback (以租代建: the cloud is paid per department): what each department requests, its
//! tenants' quota, and what its computer rooms brought, as Prometheus gauges refreshed from the
//! caches every half minute. Departments are admins' (Tenants and rooms name them), so their
//! number is bounded as the tenants' is.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use crate::{context::Context, labels, quantity};

/// The resources shown back: what tenants' quotas and pods' requests both speak of.
const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Per department and resource: (requested, quota, allocatable), in cores and bytes.
pub type Figures = BTreeMap<(String, String), [f64; 3]>;

/// Adds `milli` (thousandths, as parsed) to one figure.
fn add(f: &mut Figures, department: &str, resource: &str, which: usize, milli: i128) {
    if RESOURCES.contains(&resource) {
        f.entry((department.to_string(), resource.to_string())).or_default()[which] += milli as f64 / 1000.0;
    }
}

/// The figures, from the caches.
pub fn figures(ctx: &Context) -> Figures {
    let w = &ctx.watches;
    let mut f = Figures::new();
    for pod in w.placed_pods.state() {
        let ns = pod.namespace().unwrap_or_default();
        let meta = w.namespaces.get(&ObjectRef::new(&ns));
        let Some(department) = meta.as_ref().and_then(|m| m.labels().get(labels::DEPARTMENT).cloned()) else {
            continue;
        };
        for (k, v) in super::build::pod_requests(&pod) {
            add(&mut f, &department, &k, 0, v);
        }
    }
    for t in w.tenants.state() {
        let Ok(t) = &t.0 else { continue };
        let d = &t.spec.department.code;
        for (k, a) in [("cpu", &t.spec.quota.cpu), ("memory", &t.spec.quota.memory)] {
            if let Some(m) = a.as_ref().and_then(|a| a.milli().ok()) {
                add(&mut f, d, k, 1, m);
            }
        }
    }
    for r in w.rooms.state() {
        let Ok(r) = &r.0 else { continue };
        for (k, v) in r.status.iter().flat_map(|s| s.allocatable.iter()) {
            if let Ok(m) = quantity::parse(v) {
                add(&mut f, &r.spec.department, k, 2, m);
            }
        }
    }
    f
}

/// Sets the per-department gauges to `figures` (departments gone drop out).
pub fn observe(gauges: &prometheus::GaugeVec, figures: &Figures) {
    gauges.reset();
    for ((department, resource), values) in figures {
        for (kind, v) in ["requested", "quota", "allocatable"].iter().zip(values) {
            gauges.with_label_values(&[department.as_str(), resource.as_str(), kind]).set(*v);
        }
    }
}

pub async fn run(
    ctx: Arc<Context>,
    metrics: Arc<super::metrics::RoomMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let w = &ctx.watches;
    crate::watch::all_ready(&[&w.placed_pods, &w.tenants, &w.rooms]).await;
    tokio::pin!(shutdown);
    loop {
        observe(&metrics.department, &figures(&ctx));
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}
