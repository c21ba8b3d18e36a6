//! The gateway's Prometheus metrics, in the classic text format (`promtool check metrics`).
//! Labels are bounded: protocol, suite and result come from fixed sets, never from a peer.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// By protocol (`tlcp`, `tls13-sm`, `tls`, `none` before routing), suite, and result.
    pub handshakes: IntCounterVec,
    pub handshake_seconds: HistogramVec,
    pub active: IntGauge,
    /// Connections refused before a handshake: `cap` (the connection limit) or a `hello` reason.
    pub refused: IntCounterVec,
    /// Bytes by direction: `in` from clients to the backend, `out` back.
    pub bytes: IntCounterVec,
    pub backend_errors: IntCounter,
    /// Certificate reloads by result (`ok`, `failed`).
    pub reloads: IntCounterVec,
    /// Each served certificate's notAfter (Unix seconds), by role and serial.
    pub certificate_expiry: GaugeVec,
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
        let handshakes = must(IntCounterVec::new(
            Opts::new("zhengyun_gateway_handshakes_total", "Handshakes by protocol, suite and result."),
            &["protocol", "suite", "result"],
        ));
        let handshake_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "zhengyun_gateway_handshake_duration_seconds",
                "Time from accepting a connection to a finished (or failed) handshake.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["protocol"],
        ));
        let active = must(IntGauge::new("zhengyun_gateway_connections_active", "Client connections open now."));
        let refused = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_gateway_connections_refused_total",
                "Connections refused before a handshake, by reason.",
            ),
            &["reason"],
        ));
        let bytes = must(IntCounterVec::new(
            Opts::new(
                "zhengyun_gateway_bytes_total",
                "Application bytes relayed, by direction (in: client to backend).",
            ),
            &["direction"],
        ));
        let backend_errors = must(IntCounter::new(
            "zhengyun_gateway_backend_errors_total",
            "Connections whose backend could not be reached.",
        ));
        let reloads = must(IntCounterVec::new(
            Opts::new("zhengyun_gateway_certificate_reloads_total", "Certificate reloads by result."),
            &["result"],
        ));
        let certificate_expiry = must(GaugeVec::new(
            Opts::new(
                "zhengyun_gateway_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate served, by role (sign, enc, standard) and serial.",
            ),
            &["role", "serial"],
        ));
        for c in [&handshakes, &refused, &bytes, &reloads] {
            must(registry.register(Box::new(c.clone())));
        }
        must(registry.register(Box::new(handshake_seconds.clone())));
        must(registry.register(Box::new(active.clone())));
        must(registry.register(Box::new(backend_errors.clone())));
        must(registry.register(Box::new(certificate_expiry.clone())));
        Metrics {
            registry,
            handshakes,
            handshake_seconds,
            active,
            refused,
            bytes,
            backend_errors,
            reloads,
            certificate_expiry,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
