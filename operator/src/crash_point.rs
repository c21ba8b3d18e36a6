//! A crash point for tests: the process exits right after its N-th write (a mutating request
//! the API server accepted) whose path contains a given text, as `kill -9` would stop it there.
//! The crash-point test (e2e `crash_points.rs`) walks N over every write of a flow and checks
//! that a fresh operator finishes what the dead one left.
//!
//! Set by two environment variables, read once at start; without them it does nothing. The
//! client's request layer (`rest_metrics`) asks it about each request. Whoever sets an
//! operator's environment can stop it anyway.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// How many matching writes to let through; the process exits once the last of them is
/// answered.
pub const AFTER_WRITES: &str = "ZHENGYUN_CRASH_AFTER_WRITES";
/// Which writes count: those whose request path contains this text (every write when empty),
/// and every Namespace create (a create names its object in the body, not the path); never an
/// Event (whose path may hold the text too).
pub const MATCHING: &str = "ZHENGYUN_CRASH_WRITES_MATCHING";

/// The crash point, if armed; the client's request layer ([`crate::rest_metrics`]) asks it
/// about every request.
#[derive(Clone, Default)]
pub struct CrashPoint {
    at: Option<Arc<Point>>,
}

struct Point {
    after: usize,
    matching: String,
    seen: AtomicUsize,
}

/// A request that counts, waiting for its answer.
pub struct Counted {
    point: Arc<Point>,
    what: String,
}

impl CrashPoint {
    /// From the environment: inert unless [`AFTER_WRITES`] holds a number.
    pub fn from_env() -> Self {
        let after = std::env::var(AFTER_WRITES).ok().and_then(|v| v.trim().parse::<usize>().ok());
        let matching = std::env::var(MATCHING).unwrap_or_default();
        CrashPoint { at: after.map(|after| Arc::new(Point { after, matching, seen: AtomicUsize::new(0) })) }
    }

    pub fn armed(&self) -> Option<(usize, &str)> {
        self.at.as_ref().map(|p| (p.after, p.matching.as_str()))
    }

    /// Whether a request counts (`None` when unarmed or when it does not).
    pub fn watch(&self, method: &http::Method, path: &str) -> Option<Counted> {
        let point = self.at.as_ref().filter(|p| counts(method, path, &p.matching))?;
        Some(Counted { point: point.clone(), what: format!("{method} {path}") })
    }
}

impl Counted {
    /// The API server answered it: the process exits if that was the last write let through.
    pub fn answered(self, success: bool) {
        if !success {
            return;
        }
        let n = self.point.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.point.after {
            // No destructor, no graceful step (the lease is not released): as after
            // `kill -9`, and no core file.
            eprintln!("crash point: stopping after write {n}: {}", self.what);
            std::process::exit(137);
        }
    }
}

fn counts(method: &http::Method, path: &str, matching: &str) -> bool {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => false,
        _ if path.contains("/events") => false,
        http::Method::POST => path == "/api/v1/namespaces" || path.contains(matching),
        _ => path.contains(matching),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_naming_the_text_and_creates_count_reads_and_events_do_not() {
        let m = "crashc01";
        assert!(counts(&http::Method::PATCH, "/api/v1/namespaces/crashc01-apps/resourcequotas/zhengyun-tenant", m));
        assert!(counts(&http::Method::DELETE, "/apis/zhengyun.io/v1alpha1/tenants/crashc01", m));
        assert!(counts(&http::Method::POST, "/api/v1/namespaces", m));
        assert!(!counts(&http::Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events", m));
        assert!(!counts(&http::Method::PATCH, "/apis/events.k8s.io/v1/namespaces/default/events/crashc01.1a2b", m));
        assert!(!counts(&http::Method::POST, "/api/v1/namespaces/other-apps/configmaps", m));
        assert!(!counts(&http::Method::PATCH, "/api/v1/namespaces/other-apps/resourcequotas/zhengyun-tenant", m));
        assert!(!counts(&http::Method::GET, "/apis/zhengyun.io/v1alpha1/tenants/crashc01", m));
    }
}
