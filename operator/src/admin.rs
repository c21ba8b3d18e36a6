//! The admin port: `/metrics`, `/healthz`, `/readyz`, and a runtime log filter at `/loglevel`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::context::Context;

/// Changes the log filter at runtime (`curl -XPUT --data debug :8080/loglevel`).
pub type LogReload = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    ctx: Arc<Context>,
    reload: LogReload,
}

pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Context>,
    reload: LogReload,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/loglevel", axum::routing::put(loglevel))
        .with_state(AdminState { ctx, reload });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.ctx.metrics.render())
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ctx.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") }
}

async fn loglevel(State(s): State<AdminState>, body: String) -> impl IntoResponse {
    match (s.reload)(body.trim()) {
        Ok(()) => (StatusCode::OK, format!("log filter set to {}\n", body.trim())),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}
