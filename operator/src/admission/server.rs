//! The webhook's HTTPS server and the I/O around the pure checks.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use kube::{
    ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    },
};
use tokio_rustls::TlsAcceptor;

use super::{
    checks,
    subject::{self, Subject},
    tls::Resolver,
    webhook::Webhook,
};
use crate::{api::IssuerKind, certificates::department_allows, channels::approval, labels};

/// Serves `/mutate` and `/validate` over TLS until `stop` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    resolver: Arc<Resolver>,
    webhook: Arc<Webhook>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app =
        Router::new().route("/mutate", post(mutate)).route("/validate", post(validate_handler)).with_state(webhook);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admission webhook listening");
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return Ok(()),
        };
        // An accept that fails (out of file descriptors, a connection reset before it was
        // taken) must not end the server: the webhook is registered fail-closed.
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an admission connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let service = TowerToHyperService::new(app);
                    if let Err(e) =
                        Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
                    {
                        tracing::debug!(%peer, error = %e, "webhook connection");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "webhook TLS handshake"),
            }
        });
    }
}

fn respond(req: &AdmissionRequest<DynamicObject>, verdict: Result<(), String>) -> Json<AdmissionReview<DynamicObject>> {
    respond_warning(req, verdict, Vec::new())
}

/// A verdict with warnings, which kubectl prints (`Warning: …`) even when the request passes.
fn respond_warning(
    req: &AdmissionRequest<DynamicObject>,
    verdict: Result<(), String>,
    warnings: Vec<String>,
) -> Json<AdmissionReview<DynamicObject>> {
    let mut res = AdmissionResponse::from(req);
    if !warnings.is_empty() {
        res.warnings = Some(warnings);
    }
    let res = match verdict {
        Ok(()) => res,
        Err(msg) => {
            tracing::info!(kind = %req.kind.kind, name = %req.name, user = ?req.user_info.username, reason = %msg, "admission refused");
            res.deny(msg)
        }
    };
    Json(res.into_review())
}

fn parse(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review.try_into().map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
        Box::new(Json(AdmissionResponse::invalid(e.to_string()).into_review()))
    })
}

/// A JSON-patch response, or a refusal when the patch cannot be made.
fn patched(
    req: &AdmissionRequest<DynamicObject>,
    ops: Vec<serde_json::Value>,
    warnings: Vec<String>,
) -> Json<AdmissionReview<DynamicObject>> {
    if ops.is_empty() {
        return respond_warning(req, Ok(()), warnings);
    }
    let patch: Result<json_patch::Patch, _> = serde_json::from_value(serde_json::Value::Array(ops));
    match patch
        .map_err(|e| e.to_string())
        .and_then(|p| AdmissionResponse::from(req).with_patch(p).map_err(|e| e.to_string()))
    {
        Ok(mut res) => {
            if !warnings.is_empty() {
                res.warnings = Some(warnings);
            }
            Json(res.into_review())
        }
        Err(e) => respond(req, Err(format!("mutating the object failed: {e}"))),
    }
}

/// Records or drops a channel's approval ([`approval::admit`]) in what the API server stores.
/// A body the mutating webhook cannot read: admitted unchanged. The API server's schema and the
/// validating webhook (which reads it the same way and refuses it, naming the field) decide.
fn unreadable(req: &AdmissionRequest<DynamicObject>, why: &str) -> Json<AdmissionReview<DynamicObject>> {
    tracing::debug!(kind = %req.kind.kind, name = %req.name, %why, "left to the schema and the validating webhook");
    respond(req, Ok(()))
}

fn mutate_channel(req: &AdmissionRequest<DynamicObject>) -> Json<AdmissionReview<DynamicObject>> {
    let (new, old) = match subject::parse(req) {
        Ok(Subject::Channel { new, old }) => (new, old),
        Ok(_) => return respond(req, Err(format!("expected an ExchangeChannel, got {}", req.kind.kind))),
        // Left to the API server's schema, which names the field, and to the validating
        // webhook, which refuses what it cannot read (naming the field too): no patch here.
        Err(why) => return unreadable(req, &why),
    };
    let (user, groups) = subject::caller(req);
    let who = approval::Caller { user: &user, groups: &groups };
    let decision = match approval::admit(old.as_deref(), &new, who, jiff::Timestamp::now()) {
        Ok(d) => d,
        Err(why) => return respond(req, Err(why)),
    };
    let mut ops = Vec::new();
    if new.spec.approved != decision.approved {
        ops.push(serde_json::json!({"op": "add", "path": "/spec/approved", "value": decision.approved}));
    }
    let mut annotations = new.metadata.annotations.clone().unwrap_or_default();
    for k in approval::ANNOTATIONS {
        annotations.remove(k);
    }
    for (k, v) in &decision.annotations {
        annotations.insert(k.to_string(), v.clone());
    }
    if Some(&annotations) != new.metadata.annotations.as_ref() {
        ops.push(serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": annotations}));
    }
    patched(req, ops, decision.warnings)
}

/// Answers `review` with `answer`, recording how long that took.
async fn timed(
    w: &Webhook,
    hook: &str,
    review: AdmissionReview<DynamicObject>,
    answer: impl AsyncFnOnce(AdmissionReview<DynamicObject>) -> Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let start = std::time::Instant::now();
    let kind = review.request.as_ref().map(|r| r.kind.kind.clone()).unwrap_or_default();
    let out = answer(review).await;
    let verdict = match out.0.response.as_ref() {
        Some(r) if r.allowed => "allowed",
        _ => "denied",
    };
    w.durations.with_label_values(&[hook, kind.as_str(), verdict]).observe(start.elapsed().as_secs_f64());
    out
}

async fn mutate(
    State(w): State<Arc<Webhook>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    timed(&w, "mutate", review, async |r| mutate_review(&w, r).await).await
}

async fn mutate_review(w: &Webhook, review: AdmissionReview<DynamicObject>) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match req.kind.kind.as_str() {
        "ExchangeChannel" => return mutate_channel(&req),
        "Tenant" => {
            let ops = req
                .object
                .as_ref()
                .and_then(|o| serde_json::to_value(o).ok())
                .map(|v| checks::normalize_amounts(&v))
                .unwrap_or_default();
            return patched(&req, ops, Vec::new());
        }
        _ => {}
    }
    let pod = match subject::parse(&req) {
        Ok(Subject::Pod { new, .. }) => new,
        Ok(_) => return respond(&req, Err(format!("/mutate does not handle {}", req.kind.kind))),
        Err(why) => return unreadable(&req, &why),
    };
    let ns = req.namespace.clone().unwrap_or_default();
    w.caches.ready().await;
    match w.caches.namespace_zone(&ns) {
        Ok(Some(z)) => {
            let mut ops = checks::placement_patch(&pod, &z.placement);
            if let Some(gate) = &w.gate {
                match gate.container().await {
                    Ok(c) => ops.extend(crate::gate::check::inject(&pod, &c)),
                    Err(e) => return respond(&req, Err(e)),
                }
            }
            patched(&req, ops, Vec::new())
        }
        Ok(None) => respond(&req, Ok(())),
        Err(e) => respond(&req, Err(e)),
    }
}

async fn validate_handler(
    State(w): State<Arc<Webhook>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    timed(&w, "validate", review, async |r| validate_review(&w, r).await).await
}

async fn validate_review(w: &Webhook, review: AdmissionReview<DynamicObject>) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if req.kind.kind == "SmCertificate" {
        let (verdict, warnings) = certificate(w, &req).await;
        return respond_warning(&req, verdict, warnings);
    }
    let verdict = super::decide::decide(w, &req).await;
    respond(&req, verdict)
}

/// An SmCertificate may not name another department's CA (refused); naming an issuer that does
/// not exist yet is allowed, with a warning, since the issuer may be applied next.
async fn certificate(w: &Webhook, req: &AdmissionRequest<DynamicObject>) -> (Result<(), String>, Vec<String>) {
    let c = match subject::parse(req) {
        Ok(Subject::Certificate(c)) => c,
        Ok(_) => return (Err(format!("expected an SmCertificate, got {}", req.kind.kind)), Vec::new()),
        Err(why) => return (Err(why), Vec::new()),
    };
    let ns = req.namespace.clone().unwrap_or_default();
    // The operator writes a tenant's certificates, already checked with the Tenant; should the
    // issuer's department change later, the certificate says so in its status.
    if req.user_info.username.as_deref() == Some(w.operator_user.as_str()) {
        return (Ok(()), Vec::new());
    }
    let r = &c.spec.issuer_ref;
    w.caches.ready().await;
    let found = match r.kind {
        IssuerKind::SmIssuer => w.caches.issuer_exists(&ns, &r.name).then_some(None),
        IssuerKind::SmClusterIssuer => w.caches.cluster_issuer_department(&r.name),
    };
    match found {
        None => {
            let kind = format!("{:?}", r.kind);
            let warning = format!(
                "spec.issuerRef: {kind} {:?} does not exist{}: the certificate waits for it",
                r.name,
                if r.kind == IssuerKind::SmIssuer { format!(" in namespace {ns}") } else { String::new() }
            );
            (Ok(()), vec![warning])
        }
        Some(None) => (Ok(()), Vec::new()),
        Some(Some((department, below))) => {
            let theirs = w.caches.namespace(&ns).and_then(|n| n.labels().get(labels::DEPARTMENT).cloned());
            (department_allows(&r.name, Some(&department), &below, &ns, theirs.as_deref()), Vec::new())
        }
    }
}
