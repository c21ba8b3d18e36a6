//! Prometheus metrics, in the classic text format that `promtool check metrics` reads.
//!
//! Controller metrics keep controller-runtime's names so existing dashboards work; ours carry
//! the `zhengyun_` prefix and are labelled by controller, kind, reason, tenant and resource.
//! Only the expiry gauges of certificates, issuers and channels name their object, because an
//! SRE acts on that name; those objects are declared by admins, few, and their series go with
//! them (docs/operations.md).

mod heap;
mod tenants;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the operator exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_error_categories: IntCounterVec,
    pub child_apply_failures: IntCounterVec,
    pub child_writes: IntCounterVec,
    pub lease_writes: prometheus::IntCounter,
    pub reconcile_time: HistogramVec,
    pub active_workers: IntGaugeVec,
    pub leader: IntGaugeVec,
    /// Each tenant's ready, quota and last-success series, rendered at scrape.
    pub tenant_series: std::sync::Arc<tenants::TenantSeries>,
    pub build_info: IntGaugeVec,
    pub up_since: Gauge,
    pub tenants: IntGauge,
    /// Tenants by condition type and status: a count, not a series per tenant and type.
    pub tenant_conditions: IntGaugeVec,
    pub rest_requests: IntCounterVec,
    pub channels: IntGaugeVec,
    pub channel_expiry: GaugeVec,
    channel_phases: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    pub certificates: IntGaugeVec,
    /// Every certificate whose renewal is overdue, and every one expired: the alerts' totals,
    /// which the name-capped series beside them cannot give.
    pub certificates_overdue: IntGauge,
    /// Computer rooms refused (two rooms, another architecture or zone, ...), by reason.
    pub room_problems: IntCounterVec,
    /// Departments found broken (a parent missing, a budget exceeded anyway), by reason.
    pub department_problems: IntCounterVec,
    /// Runs of the isolation gate that gave up (the gate's events watch).
    pub isolation_gate_failures: prometheus::IntCounter,
    /// Per room and resource: allocatable and requested on its nodes (showback, 以租代建).
    pub room_allocatable: GaugeVec,
    pub room_requested: GaugeVec,
    /// Per department and resource: requested by its pods, its tenants' quota, and what its
    /// computer rooms brought (showback).
    pub department: GaugeVec,
    pub certificates_expired: IntGauge,
    pub certificate_expiry: GaugeVec,
    pub certificate_renewal: GaugeVec,
    pub issuer_expiry: GaugeVec,
    /// Per issuer (kind, namespace, name): its CA's notAfter as Unix seconds.
    issuer_times: std::sync::Mutex<std::collections::BTreeMap<(String, String, String), f64>>,
    pub certificate_issuances: IntCounterVec,
    pub certificate_failures: IntCounterVec,
    /// SecureGateways that cannot be served, by reason.
    pub gateway_problems: IntCounterVec,
    certificate_states: std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>,
    /// Per certificate: (notAfter, renewal time) as Unix seconds; the gauges are computed from
    /// them at every scrape, so they are exact between reconciles.
    certificate_times: std::sync::Mutex<std::collections::BTreeMap<(String, String), (f64, f64)>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
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
        let tenant_series = std::sync::Arc::new(must(tenants::TenantSeries::new()));
        let build_info = must(IntGaugeVec::new(
            Opts::new("zhengyun_build_info", "Build information of the running operator"),
            &["version"],
        ));
        let up_since = must(Gauge::new("zhengyun_start_time_seconds", "Unix time the operator started"));
        let tenants = must(IntGauge::new("zhengyun_tenants", "Number of tenants the operator manages"));
        let tenant_conditions = must(IntGaugeVec::new(
            Opts::new("zhengyun_tenant_conditions", "Tenants whose condition of this type has this status"),
            &["type", "status"],
        ));
        let channels = must(IntGaugeVec::new(
            Opts::new("zhengyun_exchange_channels", "Exchange channels by phase (Pending, Active, Expired, Invalid)"),
            &["phase"],
        ));
        let channel_expiry = must(GaugeVec::new(
            Opts::new(
                "zhengyun_exchange_channel_expiry_seconds",
                "Seconds until an exchange channel expires (0 once expired)",
            ),
            &["channel"],
        ));
        let certificates = must(IntGaugeVec::new(
            Opts::new("zhengyun_certificates", "SM2 certificates (SmCertificate) by state: Ready or Failed"),
            &["state"],
        ));
        let room_problems = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_computer_room_problems_total",
                "Times a computer room labelled none of its nodes, by reason (NodeInTwoRooms, ArchMismatch, ZoneMismatch, ZoneNotFound, InvalidSpec)",
            ),
            &["reason"],
        ));
        let isolation_gate_failures = must(prometheus::IntCounter::new(
            "zhengyun_isolation_gate_failures_total",
            "Runs of the isolation gate that gave up: a tenant pod whose network isolation was not seen in force within the gate's wait, so its containers did not start",
        ));
        let department_problems = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_department_problems_total",
                "Times a department was found broken, by reason (ParentNotFound, OverBudget, DuplicateCode)",
            ),
            &["reason"],
        ));
        let room_allocatable = must(GaugeVec::new(
            Opts::new(
                "zhengyun_room_allocatable",
                "Allocatable capacity of a computer room's nodes (cores, bytes, count)",
            ),
            &["room", "resource"],
        ));
        let room_requested = must(GaugeVec::new(
            Opts::new(
                "zhengyun_room_requested",
                "Requests of the pods on a computer room's nodes (cores, bytes, count)",
            ),
            &["room", "resource"],
        ));
        let department = must(GaugeVec::new(
            Opts::new(
                "zhengyun_department_resources",
                "Per department (its code) and resource (cpu in cores, memory in bytes): what its pods request, its tenants' quota, and the allocatable capacity of the computer rooms it owns",
            ),
            &["department", "resource", "kind"],
        ));
        let certificates_overdue = must(IntGauge::new(
            "zhengyun_certificates_renewal_overdue",
            "Certificates whose renewal is overdue (all of them; the named series show the most urgent)",
        ));
        let certificates_expired = must(IntGauge::new(
            "zhengyun_certificates_expired",
            "Certificates whose Secret holds an expired certificate (all of them)",
        ));
        let certificate_expiry = must(GaugeVec::new(
            Opts::new(
                "zhengyun_certificate_expiry_seconds",
                "Seconds until a certificate in its Secret expires (negative once expired)",
            ),
            &["namespace", "name"],
        ));
        let certificate_renewal = must(GaugeVec::new(
            Opts::new(
                "zhengyun_certificate_renewal_seconds",
                "Seconds until a certificate is due for renewal (negative while a renewal is overdue)",
            ),
            &["namespace", "name"],
        ));
        let issuer_expiry = must(GaugeVec::new(
            Opts::new(
                "zhengyun_issuer_expiry_seconds",
                "Seconds until an issuer's CA certificate expires: no certificate it signs outlives it",
            ),
            &["kind", "namespace", "name"],
        ));
        let certificate_issuances = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_certificate_issuances_total",
                "Certificates issued, by why: new, renewal_due, spec_changed, issuer_changed, secret_missing, secret_invalid",
            ),
            &["reason"],
        ));
        let certificate_failures = must(IntCounterVec::new(
            Opts::new("zhengyun_certificate_failures_total", "Times a certificate could not be issued, by reason"),
            &["reason"],
        ));
        let rest_requests = must(IntCounterVec::new(
            Opts::new(
                "rest_client_requests_total",
                "Number of HTTP requests, partitioned by status code, method, and host",
            ),
            &["code", "method", "host"],
        ));
        let gateway_problems = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_securegateway_problems_total",
                "SecureGateways found unservable (a reference missing or not ready, a forbidden protocol), by reason",
            ),
            &["reason"],
        ));
        for c in [
            Box::new(gateway_problems.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_total.clone()),
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_error_categories.clone()),
            Box::new(child_apply_failures.clone()),
            Box::new(child_writes.clone()),
            Box::new(lease_writes.clone()),
            Box::new(reconcile_time.clone()),
            Box::new(active_workers.clone()),
            Box::new(leader.clone()),
            Box::new(SharedCollector(tenant_series.clone())),
            Box::new(must(heap::Heap::new())),
            Box::new(build_info.clone()),
            Box::new(up_since.clone()),
            Box::new(tenants.clone()),
            Box::new(tenant_conditions.clone()),
            Box::new(rest_requests.clone()),
            Box::new(channels.clone()),
            Box::new(channel_expiry.clone()),
            Box::new(certificates.clone()),
            Box::new(certificates_overdue.clone()),
            Box::new(room_problems.clone()),
            Box::new(department_problems.clone()),
            Box::new(isolation_gate_failures.clone()),
            Box::new(room_allocatable.clone()),
            Box::new(room_requested.clone()),
            Box::new(department.clone()),
            Box::new(certificates_expired.clone()),
            Box::new(certificate_expiry.clone()),
            Box::new(certificate_renewal.clone()),
            Box::new(issuer_expiry.clone()),
            Box::new(certificate_issuances.clone()),
            Box::new(certificate_failures.clone()),
        ] {
            must(registry.register(c));
        }
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        up_since.set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
        Metrics {
            gateway_problems,
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_error_categories,
            child_apply_failures,
            child_writes,
            lease_writes,
            reconcile_time,
            active_workers,
            leader,
            tenant_series,
            build_info,
            up_since,
            tenants,
            tenant_conditions,
            rest_requests,
            channels,
            channel_expiry,
            channel_phases: Default::default(),
            certificates,
            certificates_overdue,
            room_problems,
            department_problems,
            isolation_gate_failures,
            room_allocatable,
            room_requested,
            department,
            certificates_expired,
            certificate_expiry,
            certificate_renewal,
            issuer_expiry,
            issuer_times: Default::default(),
            certificate_issuances,
            certificate_failures,
            certificate_states: Default::default(),
            certificate_times: Default::default(),
        }
    }

    /// The metrics in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        self.refresh_certificate_times();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records a tenant's readiness and conditions, and the number of tenants. Constant time:
    /// it runs on every tenant round.
    pub fn observe_tenant(&self, tenant: &str, conditions: &[(&'static str, bool)]) {
        let (before, count) = self.tenant_series.observe(tenant, conditions);
        if let Some(before) = before {
            self.count_conditions(&before, -1);
            self.count_conditions(conditions, 1);
        }
        self.tenants.set(count as i64);
    }

    fn count_conditions(&self, conditions: &[(&'static str, bool)], by: i64) {
        for (type_, ok) in conditions {
            self.tenant_conditions.with_label_values(&[*type_, if *ok { "True" } else { "False" }]).add(by);
        }
    }

    /// Records a channel's phase and time to expiry.
    pub fn observe_channel(&self, channel: &str, phase: &str, seconds_to_expiry: f64) {
        self.channel_expiry.with_label_values(&[channel]).set(seconds_to_expiry);
        if let Ok(mut phases) = self.channel_phases.lock() {
            phases.insert(channel.to_string(), phase.to_string());
            self.count_channels(&phases);
        }
    }

    /// Forgets a deleted channel.
    pub fn forget_channel(&self, channel: &str) {
        let _ = self.channel_expiry.remove_label_values(&[channel]);
        if let Ok(mut phases) = self.channel_phases.lock() {
            phases.remove(channel);
            self.count_channels(&phases);
        }
    }

    fn count_channels(&self, phases: &std::collections::BTreeMap<String, String>) {
        for phase in ["Pending", "Active", "Expired", "Invalid"] {
            self.channels.with_label_values(&[phase]).set(phases.values().filter(|p| *p == phase).count() as i64);
        }
    }

    /// Records a certificate's state and, when it has one, its expiry and renewal time.
    pub fn observe_certificate(
        &self,
        namespace: &str,
        name: &str,
        state: &str,
        times: Option<(jiff::Timestamp, jiff::Timestamp)>,
    ) {
        let key = (namespace.to_string(), name.to_string());
        if let Ok(mut all) = self.certificate_times.lock() {
            match times {
                Some((not_after, renewal)) => {
                    let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
                    all.insert(key.clone(), (secs(not_after), secs(renewal)));
                }
                None => {
                    all.remove(&key);
                    let _ = self.certificate_expiry.remove_label_values(&[namespace, name]);
                    let _ = self.certificate_renewal.remove_label_values(&[namespace, name]);
                }
            }
        }
        if let Ok(mut states) = self.certificate_states.lock() {
            states.insert(key, state.to_string());
            self.count_certificates(&states);
        }
    }

    /// Forgets a deleted certificate.
    pub fn forget_certificate(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Ok(mut all) = self.certificate_times.lock() {
            all.remove(&key);
        }
        let _ = self.certificate_expiry.remove_label_values(&[namespace, name]);
        let _ = self.certificate_renewal.remove_label_values(&[namespace, name]);
        if let Ok(mut states) = self.certificate_states.lock() {
            states.remove(&key);
            self.count_certificates(&states);
        }
    }

    /// Records an issuer's CA expiry (`None`: it has no usable CA, or is gone).
    pub fn observe_issuer(&self, kind: &str, namespace: Option<&str>, name: &str, not_after: Option<jiff::Timestamp>) {
        let key = (kind.to_string(), namespace.unwrap_or_default().to_string(), name.to_string());
        if let Ok(mut all) = self.issuer_times.lock() {
            match not_after {
                Some(t) => {
                    all.insert(key, t.as_millisecond() as f64 / 1000.0);
                }
                None => {
                    let _ = self.issuer_expiry.remove_label_values(&[&key.0, &key.1, &key.2]);
                    all.remove(&key);
                }
            }
        }
    }

    /// Sets the name-labelled expiry series, at scrape. Tenant owners create certificates and
    /// issuers in their own namespaces, so their number is theirs to choose: only the
    /// [`NAMED_SERIES`] most urgent of each family carry a name (what an SRE acts on first), and
    /// the totals below them count every one.
    fn refresh_certificate_times(&self) {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        if let Ok(all) = self.issuer_times.lock() {
            self.issuer_expiry.reset();
            for ((kind, ns, name), not_after) in most_urgent(all.iter().map(|(k, v)| (k, *v))) {
                self.issuer_expiry.with_label_values(&[kind, ns, name]).set((not_after - now).round());
            }
        }
        if let Ok(all) = self.certificate_times.lock() {
            self.certificate_expiry.reset();
            self.certificate_renewal.reset();
            for ((ns, name), not_after) in most_urgent(all.iter().map(|(k, v)| (k, v.0))) {
                self.certificate_expiry.with_label_values(&[ns, name]).set((not_after - now).round());
            }
            for ((ns, name), renewal) in most_urgent(all.iter().map(|(k, v)| (k, v.1))) {
                self.certificate_renewal.with_label_values(&[ns, name]).set((renewal - now).round());
            }
            self.certificates_overdue.set(all.values().filter(|(_, renewal)| *renewal < now).count() as i64);
            self.certificates_expired.set(all.values().filter(|(not_after, _)| *not_after < now).count() as i64);
        }
    }

    fn count_certificates(&self, states: &std::collections::BTreeMap<(String, String), String>) {
        for state in ["Ready", "Failed"] {
            self.certificates.with_label_values(&[state]).set(states.values().filter(|s| *s == state).count() as i64);
        }
    }

    /// Records what a room's nodes hold, by resource (quantities in thousandths, as parsed).
    pub fn observe_room(
        &self,
        room: &str,
        allocatable: &std::collections::BTreeMap<String, i128>,
        requested: &std::collections::BTreeMap<String, i128>,
    ) {
        self.forget_room(room);
        for (k, v) in allocatable {
            self.room_allocatable.with_label_values(&[room, k]).set(*v as f64 / 1000.0);
            let r = requested.get(k).copied().unwrap_or(0);
            self.room_requested.with_label_values(&[room, k]).set(r as f64 / 1000.0);
        }
    }

    /// Forgets a deleted room's series.
    pub fn forget_room(&self, room: &str) {
        use prometheus::core::Collector;
        for g in [&self.room_allocatable, &self.room_requested] {
            let stale: Vec<String> = Collector::collect(g)
                .iter()
                .flat_map(|f| f.get_metric().iter())
                .filter(|m| m.get_label().iter().any(|l| l.name() == "room" && l.value() == room))
                .filter_map(|m| m.get_label().iter().find(|l| l.name() == "resource").map(|l| l.value().to_string()))
                .collect();
            for resource in stale {
                let _ = g.remove_label_values(&[room, &resource]);
            }
        }
    }

    /// Forgets a deleted tenant's series so they do not linger as stale values.
    pub fn forget_tenant(&self, tenant: &str) {
        let (before, count) = self.tenant_series.forget(tenant);
        self.count_conditions(&before, -1);
        self.tenants.set(count as i64);
    }
}

/// How many certificates (and issuers) carry their names in the expiry series.
pub const NAMED_SERIES: usize = 100;

/// The [`NAMED_SERIES`] entries due soonest.
fn most_urgent<K>(all: impl Iterator<Item = (K, f64)>) -> Vec<(K, f64)> {
    let mut v: Vec<(K, f64)> = all.collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v.truncate(NAMED_SERIES);
    v
}

/// One gauge series (labels in name order), for collectors that build their families at scrape.
fn gauge_series(labels: &[(&str, &str)], value: f64) -> prometheus::proto::Metric {
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
fn gauge_family(name: &str, help: &str, metrics: Vec<prometheus::proto::Metric>) -> prometheus::proto::MetricFamily {
    let mut f = prometheus::proto::MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(prometheus::proto::MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

/// A collector the registry owns a handle to, while `Metrics` keeps another to update it.
struct SharedCollector<C>(std::sync::Arc<C>);

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
    fn a_tenant_with_many_certificates_adds_at_most_the_capped_named_series() {
        let m = Metrics::new();
        let now = jiff::Timestamp::now();
        // 250 certificates, one an hour apart; the first 10 overdue and 3 expired.
        for i in 0..250i64 {
            let half = jiff::SignedDuration::from_mins(30);
            let renewal = now + jiff::SignedDuration::from_hours(i - 10) + half;
            let not_after = now + jiff::SignedDuration::from_hours(i - 3) + half;
            m.observe_certificate("flood", &format!("c{i:03}"), "Ready", Some((not_after, renewal)));
        }
        let text = m.render();
        let named = |family: &str| text.lines().filter(|l| l.starts_with(&format!("{family}{{"))).count();
        assert_eq!(named("zhengyun_certificate_expiry_seconds"), NAMED_SERIES);
        assert_eq!(named("zhengyun_certificate_renewal_seconds"), NAMED_SERIES);
        // The most urgent are the ones named; the totals count all.
        assert!(text.contains("name=\"c000\""), "{text}");
        assert!(!text.contains("name=\"c249\""));
        assert!(text.contains("zhengyun_certificates_renewal_overdue 10"), "{text}");
        assert!(text.contains("zhengyun_certificates_expired 3"), "{text}");
    }

    #[test]
    fn renders_controller_runtime_names() {
        let m = Metrics::new();
        m.reconcile_total.with_label_values(&["tenant", "success"]).inc();
        m.tenant_series.set_quota("edu", [("pods", 10.0, 2.0)].into_iter());
        m.observe_tenant("edu", &[("Ready", true)]);
        let text = m.render();
        assert!(text.contains("zhengyun_tenant_ready{tenant=\"edu\"} 1"), "{text}");
        assert!(text.contains("zhengyun_tenant_quota_used{resource=\"pods\",tenant=\"edu\"} 2"), "{text}");
        assert!(text.contains("controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"} 1"));
        assert!(text.contains("zhengyun_tenant_quota_hard{resource=\"pods\",tenant=\"edu\"} 10"));
        m.forget_tenant("edu");
        assert!(!m.render().contains("tenant=\"edu\""));
        let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        m.observe_certificate("edu-web", "web-tls", "Ready", Some((t, t)));
        let text = m.render();
        assert!(text.contains("zhengyun_certificates{state=\"Ready\"} 1"), "{text}");
        assert!(
            text.contains("zhengyun_certificate_expiry_seconds{name=\"web-tls\",namespace=\"edu-web\"} 3600")
                || text.contains("zhengyun_certificate_expiry_seconds{name=\"web-tls\",namespace=\"edu-web\"} 3599"),
            "{text}"
        );
        m.forget_certificate("edu-web", "web-tls");
        let text = m.render();
        assert!(!text.contains("web-tls") && text.contains("zhengyun_certificates{state=\"Ready\"} 0"), "{text}");
    }
}
