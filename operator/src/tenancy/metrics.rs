//! The tenant controller's metrics: each tenant's series (ready, quota, last success) and the
//! counts over all tenants.

use std::sync::Arc;

use prometheus::{IntGauge, IntGaugeVec, Opts};

use super::series::{Scope, TenantSeries};
use crate::metrics::{Metrics, SharedCollector, must};

pub struct TenantMetrics {
    /// Each tenant's ready, quota and last-success series, rendered at scrape.
    pub tenant_series: Arc<TenantSeries>,
    tenants: IntGauge,
    /// Tenants by condition type and status: a count, not a series per tenant and type.
    tenant_conditions: IntGaugeVec,
}

impl TenantMetrics {
    /// Defines them and registers them into `m`'s registry, with series for the tenants that
    /// need attention.
    pub fn new(m: &Metrics) -> Arc<Self> {
        Self::scoped(m, Scope::default())
    }

    /// Defines them into `m`'s registry, with series for the tenants `scope` says.
    pub fn scoped(m: &Metrics, scope: Scope) -> Arc<Self> {
        let me = Self::unregistered_scoped(scope);
        m.register(SharedCollector(me.tenant_series.clone()));
        m.register(me.tenants.clone());
        m.register(me.tenant_conditions.clone());
        Arc::new(me)
    }

    /// Defined but in no registry (the scale benchmark weighs them alone).
    pub fn unregistered() -> Self {
        Self::unregistered_scoped(Scope::default())
    }

    fn unregistered_scoped(scope: Scope) -> Self {
        let tenant_series = std::sync::Arc::new(must(TenantSeries::scoped(scope)));
        let tenants = must(IntGauge::new("zhengyun_tenants", "Number of tenants the operator manages"));
        let tenant_conditions = must(IntGaugeVec::new(
            Opts::new("zhengyun_tenant_conditions", "Tenants whose condition of this type has this status"),
            &["type", "status"],
        ));
        TenantMetrics { tenant_series, tenants, tenant_conditions }
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

    /// Forgets a deleted tenant's series so they do not linger as stale values.
    pub fn forget_tenant(&self, tenant: &str) {
        let (before, count) = self.tenant_series.forget(tenant);
        self.count_conditions(&before, -1);
        self.tenants.set(count as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_series_come_and_go_with_it() {
        let core = Metrics::new();
        let m = TenantMetrics::scoped(&core, Scope::All);
        m.tenant_series.set_quota("edu", [("pods", 10.0, 2.0)].into_iter());
        m.observe_tenant("edu", &[("Ready", true)]);
        let text = core.render();
        assert!(text.contains("zhengyun_tenant_ready{tenant=\"edu\"} 1"), "{text}");
        assert!(text.contains("zhengyun_tenant_quota_used{resource=\"pods\",tenant=\"edu\"} 2"), "{text}");
        assert!(text.contains("zhengyun_tenant_quota_hard{resource=\"pods\",tenant=\"edu\"} 10"), "{text}");
        assert!(text.contains("zhengyun_tenants 1"), "{text}");
        m.forget_tenant("edu");
        let text = core.render();
        assert!(!text.contains("tenant=\"edu\"") && text.contains("zhengyun_tenants 0"), "{text}");
    }
}
