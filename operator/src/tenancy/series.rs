//! The series each tenant has (ready, quota hard and used, last success), kept as plain values
//! and turned into metric families only when scraped.
//!
//! A `GaugeVec` child keeps its label values as strings and a gauge per series: about half a
//! KiB each, eight series a tenant, 20 MiB at 5,000 tenants. One row per tenant with the
//! numbers is a tenth of that, and a scrape builds the same text.
//!
//! Which tenants a scrape shows ([`Scope`]): about 14 series a tenant made `/metrics` 2.1 MB at
//! 2,000 tenants, and every scrape paid for tenants nobody looks at. What SREs page on and what
//! the dashboard's per-tenant panels show is a tenant that needs attention: not Ready, a quota
//! resource nearly used, or no successful round for a while. By default only those have series
//! of their own, at most [`MAX_SHOWN`] of them (the most urgent first); the counts over every
//! tenant (`zhengyun_tenants`, `zhengyun_tenant_conditions`, `zhengyun_tenants_needing_attention`,
//! the oldest last success) are always there. `--tenant-series all` shows every tenant.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::metrics::{gauge_family, gauge_series};

/// Which tenants have series of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Those that need attention (see [`Attention`]), at most [`MAX_SHOWN`].
    #[default]
    Problems,
    /// Every tenant: about 14 series each, for small clouds or a closer look.
    All,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "problems" => Ok(Scope::Problems),
            "all" => Ok(Scope::All),
            other => Err(format!("--tenant-series: {other:?} is neither \"problems\" nor \"all\"")),
        }
    }
}

/// A quota resource used to this fraction of its hard limit makes a tenant need attention:
/// below the 90% of the alert, so its series are there before the alert's condition holds.
pub const NEAR_FULL: f64 = 0.8;
/// A tenant with no successful round for this long needs attention: a settled tenant has one
/// at least every resync (300 s).
pub const STALE_SECONDS: f64 = 900.0;
/// At most this many tenants have series of their own by default, so a scrape stays bounded
/// when many tenants fail at once (the counts still say how many).
pub const MAX_SHOWN: usize = 500;

/// Why a tenant needs attention; the order is urgency, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    NotReady,
    Stale,
    Quota,
}

impl Attention {
    const ALL: [Attention; 3] = [Attention::NotReady, Attention::Stale, Attention::Quota];

    fn label(self) -> &'static str {
        match self {
            Attention::NotReady => "not_ready",
            Attention::Stale => "stale",
            Attention::Quota => "quota",
        }
    }
}

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
    scope: Scope,
    descs: [Desc; 7],
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
const NEEDING: (&str, &str) = (
    "zhengyun_tenants_needing_attention",
    "Tenants not Ready, with no successful round for 15 minutes (stale), or using 80% of a quota resource",
);
const LEFT_OUT: (&str, &str) = (
    "zhengyun_tenant_series_left_out",
    "Tenants needing attention whose own series this scrape leaves out (over the 500 shown)",
);
const OLDEST: (&str, &str) = (
    "zhengyun_tenant_oldest_successful_reconcile_timestamp_seconds",
    "Unix time of the oldest last successful reconciliation over every tenant",
);

impl Row {
    /// Why the tenant needs attention at `now` (Unix seconds), most urgent first; empty when it
    /// does not (or nothing is known of it yet).
    fn attention(&self, now: f64) -> Vec<Attention> {
        let mut why = Vec::new();
        if self.flags.iter().any(|(t, ok)| *t == "Ready" && !ok) {
            why.push(Attention::NotReady);
        }
        if self.last_success.is_some_and(|t| now - t > STALE_SECONDS) {
            why.push(Attention::Stale);
        }
        if self.fullest() >= NEAR_FULL {
            why.push(Attention::Quota);
        }
        why
    }

    /// The fullest quota resource's use (anything used of a zero quota is over it).
    fn fullest(&self) -> f64 {
        let share = |h: f64, u: f64| {
            if h > 0.0 {
                u / h
            } else if u > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        };
        self.quota.iter().map(|(_, h, u)| share(*h, *u)).fold(0.0, f64::max)
    }
}

impl TenantSeries {
    /// The series, for the tenants `scope` says.
    pub fn scoped(scope: Scope) -> prometheus::Result<Self> {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(name.into(), help.into(), labels.iter().map(|l| l.to_string()).collect(), HashMap::new())
        };
        Ok(TenantSeries {
            rows: Mutex::new(Rows::default()),
            scope,
            descs: [
                desc(READY, &["tenant"])?,
                desc(HARD, &["tenant", "resource"])?,
                desc(USED, &["tenant", "resource"])?,
                desc(LAST, &["tenant"])?,
                desc(NEEDING, &["reason"])?,
                desc(OLDEST, &[])?,
                desc(LEFT_OUT, &[])?,
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
        self.families(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0)
    }
}

impl TenantSeries {
    /// The families a scrape at `now` (Unix seconds) shows.
    fn families(&self, now: f64) -> Vec<MetricFamily> {
        let Ok(rows) = self.rows.lock() else { return Vec::new() };
        let mut needing = [0usize; Attention::ALL.len()];
        let mut oldest: Option<f64> = None;
        // The tenants shown, with their urgency: the most urgent reason, then the fullest quota.
        let mut shown: Vec<(Option<Attention>, f64, &str, &Row)> = Vec::new();
        for (tenant, row) in rows.by_tenant.iter() {
            if let Some(t) = row.last_success {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
            let why = row.attention(now);
            for a in &why {
                needing[*a as usize] += 1;
            }
            if self.scope == Scope::All || !why.is_empty() {
                // Tenants not Ready or stale in name order, so the same ones stay shown while
                // their alerts' `for` runs; those only near a quota limit by how full.
                let fullest = if why.first() == Some(&Attention::Quota) { row.fullest() } else { 0.0 };
                shown.push((why.first().copied(), fullest, tenant, row));
            }
        }
        let left_out = if self.scope == Scope::Problems { shown.len().saturating_sub(MAX_SHOWN) } else { 0 };
        if left_out > 0 {
            // Partial sort: only the shown ones need to be found, not ordered.
            shown.select_nth_unstable_by(MAX_SHOWN - 1, |a, b| {
                a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2))
            });
            shown.truncate(MAX_SHOWN);
        }
        let (mut ready, mut hard, mut used, mut last) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (_, _, tenant, row) in shown {
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
        let needing =
            Attention::ALL.iter().map(|a| gauge_series(&[("reason", a.label())], needing[*a as usize] as f64));
        let oldest: Vec<_> = oldest.map(|t| gauge_series(&[], t)).into_iter().collect();
        let left_out = vec![gauge_series(&[], left_out as f64)];
        [
            (READY, ready),
            (HARD, hard),
            (USED, used),
            (LAST, last),
            (NEEDING, needing.collect()),
            (OLDEST, oldest),
            (LEFT_OUT, left_out),
        ]
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|((name, help), m)| gauge_family(name, help, m))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A family's series as `name=value,...` (their labels) with their values.
    fn series(families: &[MetricFamily], family: &str) -> Vec<(String, f64)> {
        families
            .iter()
            .filter(|f| f.name() == family)
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                let labels: Vec<String> = m.get_label().iter().map(|l| format!("{}={}", l.name(), l.value())).collect();
                (labels.join(","), m.get_gauge().get_value())
            })
            .collect()
    }

    fn names(families: &[MetricFamily], family: &str) -> Vec<String> {
        let mut v: Vec<String> = series(families, family).into_iter().map(|(l, _)| l).collect();
        v.sort();
        v
    }

    fn value(families: &[MetricFamily], family: &str, label: &str) -> Option<f64> {
        series(families, family).into_iter().find(|(l, _)| l == label).map(|(_, v)| v)
    }

    /// A healthy tenant, one not Ready, one stale, one nearly out of pods, one over a zero quota.
    fn fleet(scope: Scope) -> TenantSeries {
        let s = TenantSeries::scoped(scope).expect("descs");
        let now = 10_000.0;
        for (tenant, ready, last, pods) in [
            ("fine", true, now - 60.0, (10.0, 2.0)),
            ("down", false, now - 60.0, (10.0, 0.0)),
            ("stale", true, now - STALE_SECONDS - 1.0, (10.0, 0.0)),
            ("full", true, now - 60.0, (10.0, 8.0)),
            ("zero", true, now - 60.0, (0.0, 1.0)),
        ] {
            s.observe(tenant, &[("Ready", ready)]);
            s.set_last_success(tenant, last);
            s.set_quota(tenant, [("pods", pods.0, pods.1), ("requests.cpu", 4.0, 0.0)].into_iter());
        }
        s
    }

    #[test]
    fn by_default_only_tenants_that_need_attention_have_series_of_their_own() {
        let f = fleet(Scope::Problems).families(10_000.0);
        assert_eq!(
            names(&f, READY.0),
            ["tenant=down", "tenant=full", "tenant=stale", "tenant=zero"],
            "a healthy tenant has none"
        );
        assert_eq!(value(&f, READY.0, "tenant=down"), Some(0.0));
        // A shown tenant shows all its series: the alert divides used by hard per resource.
        assert_eq!(value(&f, USED.0, "resource=pods,tenant=full"), Some(8.0));
        assert_eq!(value(&f, HARD.0, "resource=requests.cpu,tenant=full"), Some(4.0));
        assert_eq!(value(&f, NEEDING.0, "reason=not_ready"), Some(1.0));
        assert_eq!(value(&f, NEEDING.0, "reason=stale"), Some(1.0));
        assert_eq!(value(&f, NEEDING.0, "reason=quota"), Some(2.0));
        assert_eq!(value(&f, OLDEST.0, ""), Some(10_000.0 - STALE_SECONDS - 1.0));
    }

    #[test]
    fn an_unused_zero_quota_is_not_full() {
        let s = TenantSeries::scoped(Scope::default()).expect("descs");
        s.observe("lb", &[("Ready", true)]);
        s.set_last_success("lb", 10_000.0);
        s.set_quota("lb", [("services.loadbalancers", 0.0, 0.0), ("pods", 10.0, 1.0)].into_iter());
        let f = s.families(10_000.0);
        assert!(names(&f, READY.0).is_empty());
        assert_eq!(value(&f, LEFT_OUT.0, ""), Some(0.0));
    }

    #[test]
    fn with_scope_all_every_tenant_has_its_series() {
        let f = fleet(Scope::All).families(10_000.0);
        assert_eq!(names(&f, READY.0).len(), 5);
        assert_eq!(value(&f, READY.0, "tenant=fine"), Some(1.0));
        assert_eq!(names(&f, USED.0).len(), 10);
    }

    #[test]
    fn a_scrape_shows_at_most_the_most_urgent_tenants() {
        let s = TenantSeries::scoped(Scope::default()).expect("descs");
        let now = 10_000.0;
        // More nearly-full tenants than are shown, and a few not Ready after them by name.
        for i in 0..MAX_SHOWN + 20 {
            let t = format!("q{i:04}");
            s.observe(&t, &[("Ready", true)]);
            s.set_last_success(&t, now);
            s.set_quota(&t, [("pods", 100.0, 80.0 + (i % 20) as f64)].into_iter());
        }
        for i in 0..3 {
            s.observe(&format!("z{i}"), &[("Ready", false)]);
        }
        let f = s.families(now);
        let ready = names(&f, READY.0);
        assert_eq!(ready.len(), MAX_SHOWN);
        assert!(
            ["tenant=z0", "tenant=z1", "tenant=z2"].iter().all(|t| ready.contains(&t.to_string())),
            "not Ready first"
        );
        // Of the nearly full, the fullest are shown: none at 80% is left in while one at 99% is out.
        let shown_at = |pct: usize| {
            (0..MAX_SHOWN + 20).filter(|i| 80 + i % 20 == pct).any(|i| ready.contains(&format!("tenant=q{i:04}")))
        };
        assert!(shown_at(99));
        assert_eq!(value(&f, NEEDING.0, "reason=quota"), Some((MAX_SHOWN + 20) as f64), "the count is of every tenant");
    }

    #[test]
    fn the_scope_flag_names_its_values() {
        assert_eq!("all".parse::<Scope>(), Ok(Scope::All));
        assert_eq!("problems".parse::<Scope>(), Ok(Scope::Problems));
        assert!("some".parse::<Scope>().unwrap_err().contains("--tenant-series"));
    }
}
