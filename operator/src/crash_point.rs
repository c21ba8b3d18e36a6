//! A crash point for tests: the process exits right after its N-th write (a mutating request
//! the API server accepted) whose path contains a given text, as `kill -9` would stop it there.
//! The crash-point test (e2e `crash_points.rs`) walks N over every write of a flow and checks
//! that a fresh operator finishes what the dead one left.
//!
//! Set by two environment variables, read once at start; without them the layer only passes
//! requests through. Whoever sets an operator's environment can stop it anyway.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use tower::{Layer, Service};

/// How many matching writes to let through; the process exits once the last of them is
/// answered.
pub const AFTER_WRITES: &str = "ZHENGYUN_CRASH_AFTER_WRITES";
/// Which writes count: those whose request path contains this text (every write when empty),
/// and every Namespace create (a create names its object in the body, not the path); never an
/// Event (whose path may hold the text too).
pub const MATCHING: &str = "ZHENGYUN_CRASH_WRITES_MATCHING";

#[derive(Clone, Default)]
pub struct CrashPointLayer {
    at: Option<Arc<Point>>,
}

struct Point {
    after: usize,
    matching: String,
    seen: AtomicUsize,
}

impl CrashPointLayer {
    /// From the environment: inert unless [`AFTER_WRITES`] holds a number.
    pub fn from_env() -> Self {
        let after = std::env::var(AFTER_WRITES).ok().and_then(|v| v.trim().parse::<usize>().ok());
        let matching = std::env::var(MATCHING).unwrap_or_default();
        CrashPointLayer { at: after.map(|after| Arc::new(Point { after, matching, seen: AtomicUsize::new(0) })) }
    }

    pub fn armed(&self) -> Option<(usize, &str)> {
        self.at.as_ref().map(|p| (p.after, p.matching.as_str()))
    }
}

impl<S> Layer<S> for CrashPointLayer {
    type Service = CrashPoint<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrashPoint { inner, at: self.at.clone() }
    }
}

#[derive(Clone)]
pub struct CrashPoint<S> {
    inner: S,
    at: Option<Arc<Point>>,
}

fn counts(method: &http::Method, path: &str, matching: &str) -> bool {
    match *method {
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => false,
        _ if path.contains("/events") => false,
        http::Method::POST => path == "/api/v1/namespaces" || path.contains(matching),
        _ => path.contains(matching),
    }
}

impl<S, B, RB> Service<http::Request<B>> for CrashPoint<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counted = self
            .at
            .clone()
            .filter(|p| counts(req.method(), req.uri().path(), &p.matching))
            .map(|p| (p, format!("{} {}", req.method(), req.uri().path())));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let (Some((p, what)), Ok(r)) = (counted, &res)
                && r.status().is_success()
            {
                let n = p.seen.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= p.after {
                    // No destructor, no graceful step (the lease is not released): as after
                    // `kill -9`, and no core file.
                    eprintln!("crash point: stopping after write {n}: {what}");
                    std::process::exit(137);
                }
            }
            res
        })
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
