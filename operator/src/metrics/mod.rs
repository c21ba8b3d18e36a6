//! Prometheus metrics, in the classic text format that `promtool check metrics` reads.
//!
//! Controller metrics keep controller-runtime's names so existing dashboards work; ours carry
//! the `zhengyun_` prefix and are labelled by controller, kind, reason, tenant and resource.
//! Only the expiry gauges of certificates, issuers and channels name their object, because an
//! SRE acts on that name; those objects are declared by admins, few, and their series go with
//! them (docs/operations.md).

mod heap;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics every controller shares (rounds, writes, requests, leadership, build), and the
/// one registry each concern registers its own into (`tenancy::metrics`, `certificates::metrics`,
/// ...): this module knows no concern.
pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_error_categories: IntCounterVec,
    pub child_apply_failures: IntCounterVec,
    pub child_writes: IntCounterVec,
    pub child_deletes: IntCounterVec,
    pub lease_writes: prometheus::IntCounter,
    pub reconcile_time: HistogramVec,
    pub active_workers: IntGaugeVec,
    pub leader: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub up_since: Gauge,
    pub rest_requests: IntCounterVec,
}

pub(crate) fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error caught by tests.
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconcile_total = must(IntCounterVec::new(
            Opts::new("controller_runtime_reconcile_total", "Total number of reconciliations per controller"),
            &["controller", "result"],
        ));
        let reconcile_errors = must(IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
            ),
            &["controller"],
        ));
        let reconcile_error_categories = must(IntCounterVec::new(
            Opts::new("zhengyun_reconcile_errors_total", "Reconciliation errors by controller and error category"),
            &["controller", "category"],
        ));
        let child_apply_failures = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_child_apply_failures_total",
                "Child objects (NetworkPolicy, ResourceQuota, LimitRange, RoleBinding, ...) the API server refused, by controller and kind",
            ),
            &["controller", "kind"],
        ));
        let child_writes = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_writes_total",
                "Objects the operator wrote because they differed from what it wants (unchanged ones are not written), by controller and kind",
            ),
            &["controller", "kind"],
        ));
        let child_deletes = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_deletes_total",
                "Owned objects the operator deleted because its desired set no longer names them (orphans), by controller and kind",
            ),
            &["controller", "kind"],
        ));
        let lease_writes = must(prometheus::IntCounter::new(
            "zhengyun_lease_writes_total",
            "Writes to the leader-election Lease (creating, renewing or taking it over)",
        ));
        let reconcile_time = must(HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        ));
        let active_workers = must(IntGaugeVec::new(
            Opts::new("controller_runtime_active_workers", "Number of currently used workers per controller"),
            &["controller"],
        ));
        let leader = must(IntGaugeVec::new(
            Opts::new(
                "leader_election_master_status",
                "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
            ),
            &["name"],
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new("zhengyun_build_info", "Build information of the running operator"),
            &["version"],
        ));
        let up_since = must(Gauge::new("zhengyun_start_time_seconds", "Unix time the operator started"));
        let rest_requests = must(IntCounterVec::new(
            Opts::new(
                "rest_client_requests_total",
                "Number of HTTP requests, partitioned by status code, method, and host",
            ),
            &["code", "method", "host"],
        ));
        for c in [
            Box::new(reconcile_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_error_categories.clone()),
            Box::new(child_apply_failures.clone()),
            Box::new(child_writes.clone()),
            Box::new(child_deletes.clone()),
            Box::new(lease_writes.clone()),
            Box::new(reconcile_time.clone()),
            Box::new(active_workers.clone()),
            Box::new(leader.clone()),
            Box::new(build_info.clone()),
            Box::new(up_since.clone()),
            Box::new(rest_requests.clone()),
            Box::new(must(heap::Heap::new())),
        ] {
            must(registry.register(c));
        }
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        up_since.set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
        Metrics {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_error_categories,
            child_apply_failures,
            child_writes,
            child_deletes,
            lease_writes,
            reconcile_time,
            active_workers,
            leader,
            build_info,
            up_since,
            rest_requests,
        }
    }

    /// Registers a concern's own metric into the one registry (a definition that clashes with
    /// another is a programming error, caught by the tests).
    pub fn register(&self, c: impl prometheus::core::Collector + 'static) {
        must(self.registry.register(Box::new(c)));
    }

    /// The metrics in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One gauge series (labels in name order), for collectors that build their families at scrape.
pub(crate) fn gauge_series(labels: &[(&str, &str)], value: f64) -> prometheus::proto::Metric {
    let mut g = prometheus::proto::Gauge::default();
    g.set_value(value);
    let mut m = prometheus::proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut l = prometheus::proto::LabelPair::default();
                l.set_name(name.to_string());
                l.set_value(value.to_string());
                l
            })
            .collect(),
    );
    m.set_gauge(g);
    m
}

/// A gauge family of `metrics`; the registry sorts its series, so scrapes are stable.
pub(crate) fn gauge_family(
    name: &str,
    help: &str,
    metrics: Vec<prometheus::proto::Metric>,
) -> prometheus::proto::MetricFamily {
    let mut f = prometheus::proto::MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(prometheus::proto::MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

/// A collector the registry owns a handle to, while `Metrics` keeps another to update it.
pub struct SharedCollector<C>(pub std::sync::Arc<C>);

impl<C: prometheus::core::Collector> prometheus::core::Collector for SharedCollector<C> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs one reconcile round of `controller` inside `span`, recording what every controller
/// records: time, rounds in flight, the result, and the error's category (logged once, here).
pub async fn instrumented<T>(
    metrics: &Metrics,
    controller: &str,
    span: tracing::Span,
    round: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    use tracing::Instrument;
    let timer = metrics.reconcile_time.with_label_values(&[controller]).start_timer();
    metrics.active_workers.with_label_values(&[controller]).inc();
    let result = round.instrument(span.clone()).await;
    metrics.active_workers.with_label_values(&[controller]).dec();
    timer.observe_duration();
    match &result {
        Ok(_) => metrics.reconcile_total.with_label_values(&[controller, "success"]).inc(),
        Err(e) => {
            metrics.reconcile_total.with_label_values(&[controller, "error"]).inc();
            metrics.reconcile_errors.with_label_values(&[controller]).inc();
            metrics.reconcile_error_categories.with_label_values(&[controller, e.category()]).inc();
            span.in_scope(|| tracing::warn!(controller, category = e.category(), error = %e, "reconcile failed"));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_controller_runtime_names() {
        let m = Metrics::new();
        m.reconcile_total.with_label_values(&["tenant", "success"]).inc();
        let text = m.render();
        assert!(
            text.contains("controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("zhengyun_build_info{version="), "{text}");
    }
}
