//! The series each tenant has (ready, quota hard and used, last success), kept as plain values
//! and turned into metric families only when scraped.
//!
//! A `GaugeVec` child keeps its label values as strings and a gauge per series: about half a
//! KiB each, eight series a tenant, 20 MiB at 5,000 tenants. One row per tenant with the
//! numbers is a tenth of that, and a scrape builds the same text.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::metrics::{gauge_family, gauge_series};

/// What one tenant's series say.
#[derive(Default)]
struct Row {
    /// The conditions last observed (type, status); empty until the first round's status.
    flags: Vec<(&'static str, bool)>,
    /// Unix seconds of the last successful round.
    last_success: Option<f64>,
    /// Per ResourceQuota resource: (hard, used), over all the tenant's namespaces.
    quota: Vec<(Box<str>, f64, f64)>,
}

#[derive(Default)]
struct Rows {
    by_tenant: HashMap<Box<str>, Row>,
    /// How many rows have conditions, kept as they change: a round must not count them all.
    observed: usize,
}

/// The per-tenant series (`zhengyun_tenant_ready`, `zhengyun_tenant_quota_hard`/`_used`,
/// `zhengyun_tenant_last_successful_reconcile_timestamp_seconds`), registered as one collector.
pub struct TenantSeries {
    rows: Mutex<Rows>,
    descs: [Desc; 4],
}

const READY: (&str, &str) = ("zhengyun_tenant_ready", "1 when the tenant's Ready condition is True");
const HARD: (&str, &str) = (
    "zhengyun_tenant_quota_hard",
    "A tenant's quota over all its namespaces, by ResourceQuota resource (cores, bytes or count)",
);
const USED: (&str, &str) = (
    "zhengyun_tenant_quota_used",
    "What a tenant's namespaces use together, by ResourceQuota resource (cores, bytes or count)",
);
const LAST: (&str, &str) = (
    "zhengyun_tenant_last_successful_reconcile_timestamp_seconds",
    "Unix time of the tenant's last successful reconciliation",
);

impl TenantSeries {
    pub fn new() -> prometheus::Result<Self> {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(name.into(), help.into(), labels.iter().map(|l| l.to_string()).collect(), HashMap::new())
        };
        Ok(TenantSeries {
            rows: Mutex::new(Rows::default()),
            descs: [
                desc(READY, &["tenant"])?,
                desc(HARD, &["tenant", "resource"])?,
                desc(USED, &["tenant", "resource"])?,
                desc(LAST, &["tenant"])?,
            ],
        })
    }

    fn with_row(&self, tenant: &str, f: impl FnOnce(&mut Row)) {
        let Ok(mut rows) = self.rows.lock() else { return };
        match rows.by_tenant.get_mut(tenant) {
            Some(row) => f(row),
            None => f(rows.by_tenant.entry(tenant.into()).or_default()),
        }
    }

    /// Records the tenant's conditions. Returns the ones they replace when they differ (empty
    /// for a tenant seen the first time), and how many tenants have conditions now.
    pub fn observe(&self, tenant: &str, flags: &[(&'static str, bool)]) -> (Option<Vec<(&'static str, bool)>>, usize) {
        let Ok(mut rows) = self.rows.lock() else { return (None, 0) };
        let rows = &mut *rows;
        let row = match rows.by_tenant.get_mut(tenant) {
            Some(row) => row,
            None => rows.by_tenant.entry(tenant.into()).or_default(),
        };
        let before = (row.flags != flags).then(|| std::mem::replace(&mut row.flags, flags.to_vec()));
        match &before {
            Some(b) if b.is_empty() && !flags.is_empty() => rows.observed += 1,
            Some(b) if !b.is_empty() && flags.is_empty() => rows.observed -= 1,
            _ => {}
        }
        (before, rows.observed)
    }

    pub fn set_last_success(&self, tenant: &str, unix_seconds: f64) {
        self.with_row(tenant, |r| r.last_success = Some(unix_seconds));
    }

    /// The tenant's quota: (resource, hard, used) for every resource it declares; a resource
    /// no longer declared loses its series.
    pub fn set_quota<'a>(&self, tenant: &str, quota: impl Iterator<Item = (&'a str, f64, f64)>) {
        let quota: Vec<(Box<str>, f64, f64)> = quota.map(|(r, h, u)| (r.into(), h, u)).collect();
        self.with_row(tenant, |r| r.quota = quota);
    }

    /// Drops the tenant's series; returns its last conditions, and how many tenants have
    /// conditions now.
    pub fn forget(&self, tenant: &str) -> (Vec<(&'static str, bool)>, usize) {
        let Ok(mut rows) = self.rows.lock() else { return (Vec::new(), 0) };
        let flags = rows.by_tenant.remove(tenant).map(|r| r.flags).unwrap_or_default();
        if !flags.is_empty() {
            rows.observed -= 1;
        }
        (flags, rows.observed)
    }
}

impl Collector for TenantSeries {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(rows) = self.rows.lock() else { return Vec::new() };
        let (mut ready, mut hard, mut used, mut last) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (tenant, row) in rows.by_tenant.iter() {
            if let Some((_, ok)) = row.flags.iter().find(|(t, _)| *t == "Ready") {
                ready.push(gauge_series(&[("tenant", tenant)], if *ok { 1.0 } else { 0.0 }));
            }
            if let Some(t) = row.last_success {
                last.push(gauge_series(&[("tenant", tenant)], t));
            }
            for (resource, h, u) in &row.quota {
                // Labels in name order, as the text format's readers expect them.
                hard.push(gauge_series(&[("resource", resource), ("tenant", tenant)], *h));
                used.push(gauge_series(&[("resource", resource), ("tenant", tenant)], *u));
            }
        }
        drop(rows);
        [(READY, ready), (HARD, hard), (USED, used), (LAST, last)]
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|((name, help), m)| gauge_family(name, help, m))
            .collect()
    }
}
