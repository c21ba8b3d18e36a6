//! The certificate and issuer controllers' metrics: certificates by state, issuances and
//! failures by reason, and the expiry and renewal times of the most urgent, computed at each
//! scrape so they are exact between rounds.

use std::sync::Arc;

use prometheus::{
    GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::metrics::{Metrics, SharedCollector, must};

pub struct CertificateMetrics {
    certificates: IntGaugeVec,
    /// Every certificate whose renewal is overdue, and every one expired: the alerts' totals,
    /// which the name-capped series beside them cannot give.
    certificates_overdue: IntGauge,
    certificates_expired: IntGauge,
    certificate_expiry: GaugeVec,
    certificate_renewal: GaugeVec,
    issuer_expiry: GaugeVec,
    pub certificate_issuances: IntCounterVec,
    pub certificate_failures: IntCounterVec,
    /// Per issuer (kind, namespace, name): its CA's notAfter as Unix seconds.
    issuer_times: std::sync::Mutex<std::collections::BTreeMap<(String, String, String), f64>>,
    certificate_states: std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>,
    /// Per certificate: (notAfter, renewal time) as Unix seconds; the gauges are computed from
    /// them at every scrape, so they are exact between reconciles.
    certificate_times: std::sync::Mutex<std::collections::BTreeMap<(String, String), (f64, f64)>>,
}

impl CertificateMetrics {
    /// Defines them and registers them (as one collector) into `m`'s registry.
    pub fn new(m: &Metrics) -> Arc<Self> {
        let me = Arc::new(Self::unregistered());
        m.register(SharedCollector(me.clone()));
        me
    }

    fn unregistered() -> Self {
        let certificates = must(IntGaugeVec::new(
            Opts::new("zhengyun_certificates", "SM2 certificates (SmCertificate) by state: Ready or Failed"),
            &["state"],
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
        CertificateMetrics {
            certificates,
            certificates_overdue,
            certificates_expired,
            certificate_expiry,
            certificate_renewal,
            issuer_expiry,
            certificate_issuances,
            certificate_failures,
            issuer_times: Default::default(),
            certificate_states: Default::default(),
            certificate_times: Default::default(),
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
}

impl CertificateMetrics {
    fn parts(&self) -> [&dyn Collector; 8] {
        [
            &self.certificates,
            &self.certificates_overdue,
            &self.certificates_expired,
            &self.certificate_expiry,
            &self.certificate_renewal,
            &self.issuer_expiry,
            &self.certificate_issuances,
            &self.certificate_failures,
        ]
    }
}

impl Collector for CertificateMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh_certificate_times();
        self.parts().into_iter().flat_map(|c| c.collect()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_with_many_certificates_adds_at_most_the_capped_named_series() {
        let core = Metrics::new();
        let m = CertificateMetrics::new(&core);
        let now = jiff::Timestamp::now();
        // 250 certificates, one an hour apart; the first 10 overdue and 3 expired.
        for i in 0..250i64 {
            let half = jiff::SignedDuration::from_mins(30);
            let renewal = now + jiff::SignedDuration::from_hours(i - 10) + half;
            let not_after = now + jiff::SignedDuration::from_hours(i - 3) + half;
            m.observe_certificate("flood", &format!("c{i:03}"), "Ready", Some((not_after, renewal)));
        }
        let text = core.render();
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
    fn a_certificate_forgotten_leaves_no_series() {
        let core = Metrics::new();
        let m = CertificateMetrics::new(&core);
        let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        m.observe_certificate("edu-web", "web-tls", "Ready", Some((t, t)));
        let text = core.render();
        assert!(text.contains("zhengyun_certificates{state=\"Ready\"} 1"), "{text}");
        assert!(
            text.contains("zhengyun_certificate_expiry_seconds{name=\"web-tls\",namespace=\"edu-web\"} 3600")
                || text.contains("zhengyun_certificate_expiry_seconds{name=\"web-tls\",namespace=\"edu-web\"} 3599"),
            "{text}"
        );
        m.forget_certificate("edu-web", "web-tls");
        let text = core.render();
        assert!(!text.contains("web-tls") && text.contains("zhengyun_certificates{state=\"Ready\"} 0"), "{text}");
    }
}
