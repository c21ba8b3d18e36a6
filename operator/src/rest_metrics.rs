//! `rest_client_requests_total`: every request the operator makes to the API server, counted
//! the way client-go does, so dashboards built for Go controllers work unchanged. And the one
//! place an API server that stops answering is logged: one WARN when it stops, one INFO with
//! the count of failed requests when it answers again (each failed round says why once more,
//! at WARN; kube's own per-request ERROR lines are off by default, see `main.rs`).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use prometheus::IntCounterVec;
use tower::{Layer, Service};

/// Whether the API server is answering, as the requests show it.
#[derive(Default)]
pub struct Outage {
    /// Whether `down` holds an outage: every answered request reads it, and only a request
    /// answered during an outage takes the lock.
    is_down: AtomicBool,
    down: Mutex<Option<Down>>,
}

struct Down {
    since: std::time::Instant,
    last_failure: std::time::Instant,
    failed: u64,
}

/// How long requests must have stopped failing before an outage counts as over: a service that
/// fails every other request is one outage, not a WARN and an INFO per request.
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

impl Outage {
    /// A request the API server did not answer (no connection, or 503): WARN on the first;
    /// whether it logged.
    pub fn failed(&self, why: &dyn std::fmt::Display) -> bool {
        let Ok(mut d) = self.down.lock() else { return false };
        let now = std::time::Instant::now();
        match d.as_mut() {
            Some(down) => {
                down.failed += 1;
                down.last_failure = now;
                false
            }
            None => {
                *d = Some(Down { since: now, last_failure: now, failed: 1 });
                self.is_down.store(true, Ordering::Release);
                tracing::warn!(error = %why, "the API server does not answer; requests failing meanwhile are counted, not logged");
                true
            }
        }
    }

    /// A request it answered: INFO once when that ends an outage (no failure for [`QUIET`]);
    /// how many requests failed in it.
    pub fn answered(&self) -> Option<u64> {
        self.answered_at(std::time::Instant::now())
    }

    fn answered_at(&self, now: std::time::Instant) -> Option<u64> {
        if !self.is_down.load(Ordering::Acquire) {
            return None;
        }
        let mut d = self.down.lock().ok()?;
        if now.saturating_duration_since(d.as_ref()?.last_failure) < QUIET {
            return None;
        }
        let down = d.take()?;
        self.is_down.store(false, Ordering::Release);
        tracing::info!(
            seconds = now.saturating_duration_since(down.since).as_secs_f64(),
            failed = down.failed,
            "the API server answers again"
        );
        Some(down.failed)
    }
}

/// Wraps the kube client's HTTP service.
#[derive(Clone)]
pub struct RestMetricsLayer {
    pub requests: IntCounterVec,
    pub host: String,
    pub outage: Arc<Outage>,
    /// A test's crash point (inert unless armed).
    pub crash: crate::crash_point::CrashPoint,
}

impl<S> Layer<S> for RestMetricsLayer {
    type Service = RestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestMetrics {
            inner,
            requests: self.requests.clone(),
            host: self.host.clone(),
            outage: self.outage.clone(),
            crash: self.crash.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RestMetrics<S> {
    inner: S,
    requests: IntCounterVec,
    host: String,
    outage: Arc<Outage>,
    crash: crate::crash_point::CrashPoint,
}

impl<S, B, RB> Service<http::Request<B>> for RestMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        let requests = self.requests.clone();
        let host = self.host.clone();
        let outage = self.outage.clone();
        let counted = self.crash.watch(req.method(), req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let Some(c) = counted {
                c.answered(res.as_ref().is_ok_and(|r| r.status().is_success()));
            }
            let code = match &res {
                Ok(r) if r.status() == http::StatusCode::SERVICE_UNAVAILABLE => {
                    let _ = outage.failed(&r.status());
                    r.status().as_u16().to_string()
                }
                Ok(r) => {
                    let _ = outage.answered();
                    r.status().as_u16().to_string()
                }
                Err(e) => {
                    let _ = outage.failed(e);
                    "<error>".to_string()
                }
            };
            requests.with_label_values(&[code.as_str(), method.as_str(), host.as_str()]).inc();
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_warning_and_one_summary_however_many_requests_fail() {
        let o = Outage::default();
        let later = || std::time::Instant::now() + QUIET * 2;
        assert_eq!(o.answered_at(later()), None, "no outage, nothing to say");
        let logged: Vec<bool> = (0..500).map(|_| o.failed(&"connection refused")).collect();
        assert_eq!(logged.iter().filter(|l| **l).count(), 1);
        assert_eq!(o.answered(), None, "answers between failures do not end it");
        assert!(!o.failed(&"503"), "still the same outage");
        assert_eq!(o.answered_at(later()), Some(501));
        assert_eq!(o.answered_at(later()), None, "said once");
        assert!(o.failed(&"connection refused"), "a new outage is told again");
    }
}
