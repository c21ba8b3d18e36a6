//! What the webhook's handlers share: its caches, whom it trusts, and its settings.

use super::cache::Caches;

/// What the handlers need. No client: every lookup is answered from [`Caches`].
pub struct Webhook {
    pub caches: Caches,
    /// The operator's own user name: the only one allowed to change what it owns.
    pub operator_user: String,
    /// A ClusterNetworkPolicy API enforces the tenant boundary, so tenant NetworkPolicies
    /// need not be restricted here.
    pub cluster_network_policy: bool,
    /// For the one write an admission makes: a reservation against a department's budget
    /// ([`crate::departments::ledger`]).
    pub client: Option<kube::Client>,
    /// This replica's reservations, one department at a time.
    pub ledger: crate::departments::ledger::Ledger,
    /// How long each admission took (`zhengyun_admission_duration_seconds`).
    pub durations: prometheus::HistogramVec,
    /// The isolation gate every new tenant pod starts with (`--isolation-gate-image`).
    pub gate: Option<crate::gate::run::Gate>,
}

impl Webhook {
    /// Whether `name` in `namespace` is the zhengyun-managed Deployment of gateway `gateway`.
    pub fn gateway_deployment(&self, namespace: &str, name: &str, gateway: &str) -> bool {
        use kube::ResourceExt;
        self.caches.gateway_deployment(namespace, name).is_some_and(|d| {
            let l = d.labels();
            l.get(crate::labels::MANAGED_BY).map(String::as_str) == Some(crate::labels::MANAGER)
                && l.get(crate::gateways::GATEWAY_LABEL).map(String::as_str) == Some(gateway)
        })
    }
}

/// How long the webhook took to answer, by hook (`mutate`, `validate`), kind and verdict: the
/// API server's own histogram starts at 5 ms and counts the network and TLS too.
pub fn durations_metric(m: &crate::metrics::Metrics) -> prometheus::HistogramVec {
    let h = crate::metrics::must(prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "zhengyun_admission_duration_seconds",
            "Time the webhook took to decide an admission request, by hook, kind and verdict",
        )
        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        &["hook", "kind", "verdict"],
    ));
    m.register(h.clone());
    h
}
