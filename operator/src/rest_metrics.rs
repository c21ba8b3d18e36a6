//! `rest_client_requests_total`: every request the operator makes to the API server, counted
//! the way client-go does, so dashboards built for Go controllers work unchanged.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use prometheus::IntCounterVec;
use tower::{Layer, Service};

/// Wraps the kube client's HTTP service.
#[derive(Clone)]
pub struct RestMetricsLayer {
    pub requests: IntCounterVec,
    pub host: String,
}

impl<S> Layer<S> for RestMetricsLayer {
    type Service = RestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestMetrics { inner, requests: self.requests.clone(), host: self.host.clone() }
    }
}

#[derive(Clone)]
pub struct RestMetrics<S> {
    inner: S,
    requests: IntCounterVec,
    host: String,
}

impl<S, B, RB> Service<http::Request<B>> for RestMetrics<S>
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
        let method = req.method().as_str().to_string();
        let requests = self.requests.clone();
        let host = self.host.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            requests.with_label_values(&[code.as_str(), method.as_str(), host.as_str()]).inc();
            res
        })
    }
}
