//! The SmCertificate controller: finds the issuer's CA, checks the certificate's Secret, and
//! issues a new certificate (both halves of a TLCP pair together) when it is missing, tampered
//! with, for an old spec or CA, or due for renewal; then sleeps until the renewal time.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Resource, ResourceExt,
    api::PartialObjectMeta,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
    },
};
use tracing::{info, warn};

use super::{
    build::{self, CERTIFICATE_LABEL, Current},
    issuers::{IssuerResource, Problem, load_ca},
};
use crate::{
    api::{IssuerKind, SmCertificate, SmCertificateStatus, SmClusterIssuer, SmIssuer},
    apply,
    conditions::{self, Observed},
    context::Context,
    error::Result,
    labels,
    pki::ca::Ca,
};

pub const CONTROLLER: &str = "smcertificate";

/// Certificates as watched: one that does not deserialize must not stall the controller.
type Guarded = DeserializeGuard<SmCertificate>;

/// Certificates that name an issuer, for waking them when it changes.
fn referencing(
    store: &Store<Guarded>,
    kind: IssuerKind,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .into_iter()
        .filter(|g| {
            g.0.as_ref().is_ok_and(|c| {
                c.spec.issuer_ref.kind == kind
                    && c.spec.issuer_ref.name == name
                    && (namespace.is_none() || c.namespace().as_deref() == namespace)
            })
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The SmCertificate controller: the shared [`Context`] is all it keeps.
pub struct Certificates {
    ctx: Arc<Context>,
    metrics: Arc<super::metrics::CertificateMetrics>,
    status: crate::status::Writer,
}

/// The SmCertificate controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, metrics: Arc<super::metrics::CertificateMetrics>) -> Arc<Certificates> {
    Arc::new(Certificates { ctx, metrics, status: crate::status::Writer::new(CONTROLLER) })
}

impl crate::controller::Reconciler for Certificates {
    crate::controller::plumbing!(SmCertificate, CONTROLLER, certificates);

    fn reads(h: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![&h.issuers, &h.cluster_issuers, &h.namespaces, &h.departments]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<SmCertificate>) -> crate::controller::Wired<SmCertificate> {
        let hub = self.ctx.watches.clone();
        let store = hub.certificates.store();
        let (s1, s2) = (store.clone(), store);
        let held = self.ctx.clone();
        // A certificate Secret deleted or edited is repaired at once.
        c.watches_shared_stream(hub.secrets.subscribe(), move |s: Arc<PartialObjectMeta<Secret>>| {
            let ns = s.namespace().unwrap_or_default();
            held.secrets.forget_if_gone(&ns, &s.name_any());
            s.labels().get(CERTIFICATE_LABEL).map(|c| ObjectRef::<Guarded>::new(c).within(&ns))
        })
        // An issuer's CA rotating (its fingerprint changes) re-issues what it signed.
        .watches_shared_stream(hub.issuers.subscribe(), move |i: Arc<DeserializeGuard<SmIssuer>>| {
            referencing(&s1, IssuerKind::SmIssuer, &i.name_any(), i.namespace().as_deref())
        })
        .watches_shared_stream(
            hub.cluster_issuers.subscribe(),
            move |i: Arc<DeserializeGuard<SmClusterIssuer>>| {
                referencing(&s2, IssuerKind::SmClusterIssuer, &i.name_any(), None)
            },
        )
    }

    async fn reconcile(&self, c: &SmCertificate) -> Result<Action> {
        reconcile_inner(c, &self.ctx, &self.metrics, &self.status).await
    }

    fn forget(&self, namespace: Option<&str>, name: &str) {
        self.metrics.forget_certificate(namespace.unwrap_or_default(), name);
        self.status.forget(namespace, name);
    }
}

/// The issuer's CA, or why it cannot sign for this certificate.
async fn issuer_ca(c: &SmCertificate, ctx: &Context, now: Timestamp) -> Result<std::result::Result<Ca, Problem>> {
    let ns = c.namespace().unwrap_or_default();
    let r = &c.spec.issuer_ref;
    let hub = &ctx.watches;
    match r.kind {
        IssuerKind::SmIssuer => {
            let Some(issuer) = hub.issuers.handle().get(&ObjectRef::new(&r.name).within(&ns)) else {
                return Ok(Err((
                    "IssuerNotFound",
                    format!("spec.issuerRef: SmIssuer {:?} does not exist in namespace {ns}", r.name),
                )));
            };
            let Ok(issuer) = &issuer.0 else { return Ok(Err(malformed("SmIssuer", &r.name))) };
            Ok(not_ready_names(load_ca(&ctx.client, issuer, ctx, now).await?, issuer))
        }
        IssuerKind::SmClusterIssuer => {
            let Some(issuer) = hub.cluster_issuers.handle().get(&ObjectRef::new(&r.name)) else {
                return Ok(Err((
                    "IssuerNotFound",
                    format!("spec.issuerRef: SmClusterIssuer {:?} does not exist", r.name),
                )));
            };
            let Ok(issuer) = &issuer.0 else { return Ok(Err(malformed("SmClusterIssuer", &r.name))) };
            if issuer.spec.department.is_some() {
                let namespace = hub.namespaces.get(&ObjectRef::new(&ns));
                let theirs = namespace.as_ref().and_then(|n| n.labels().get(labels::DEPARTMENT).cloned());
                let departments = hub.departments.state();
                let departments: Vec<&crate::api::department::Department> =
                    departments.iter().filter_map(|d| d.0.as_ref().ok()).collect();
                let below = super::below(issuer.spec.department.as_deref(), issuer.spec.signs_below, &departments);
                let allowed = super::department_allows(
                    &r.name,
                    issuer.spec.department.as_deref(),
                    &below,
                    &ns,
                    theirs.as_deref(),
                );
                if let Err(why) = allowed {
                    return Ok(Err(("IssuerNotAllowed", why)));
                }
            }
            Ok(not_ready_names(load_ca(&ctx.client, issuer, ctx, now).await?, issuer))
        }
    }
}

fn malformed(kind: &str, name: &str) -> Problem {
    ("IssuerNotReady", format!("{kind} {name:?} does not match its schema; fix it (kubectl get -o yaml shows it)"))
}

/// An issuer's problem, as the certificate reports it: which issuer cannot sign, and why.
fn not_ready_names<K: IssuerResource>(
    loaded: std::result::Result<Ca, Problem>,
    issuer: &K,
) -> std::result::Result<Ca, Problem> {
    loaded.map_err(|(_, why)| ("IssuerNotReady", format!("{} {:?} cannot sign: {why}", K::KIND, issuer.name_any())))
}

async fn reconcile_inner(
    c: &SmCertificate,
    ctx: &Context,
    m: &super::metrics::CertificateMetrics,
    writer: &crate::status::Writer,
) -> Result<Action> {
    let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
    let now = Timestamp::now();
    let timing = c.spec.lifetime().and_then(|life| c.spec.renew_before(life));
    let renew_before = match timing {
        Ok(rb) => rb,
        Err(why) => return fail(c, ctx, m, writer, "InvalidSpec", why, now).await,
    };
    let ca = match issuer_ca(c, ctx, now).await? {
        Ok(ca) => ca,
        Err((reason, why)) => return fail(c, ctx, m, writer, reason, why, now).await,
    };
    let existing = ctx.secrets.get(&ctx.client, &ns, &c.spec.secret_name).await?;
    if let Some(s) = &existing
        && s.labels().get(CERTIFICATE_LABEL) != Some(&name)
    {
        let why = format!(
            "spec.secretName: Secret {ns}/{} exists and was not made for this certificate: choose another name (the operator does not overwrite it)",
            c.spec.secret_name
        );
        return fail(c, ctx, m, writer, "SecretConflict", why, now).await;
    }
    let current = match build::inspect(existing.as_deref(), c, &ca, renew_before, now) {
        Ok(current) => current,
        Err(why) => {
            let last = c.status.as_ref().and_then(|s| s.revision).unwrap_or(0);
            let revision = last.max(build::secret_revision(existing.as_deref())) + 1;
            let issued = match build::issue(ctx.keys.as_ref(), c, &ca, (revision, &why), renew_before, now) {
                Ok(issued) => issued,
                Err(e) => return fail(c, ctx, m, writer, "IssueFailed", e, now).await,
            };
            match apply::namespaced(&ctx.client, &issued.secret).await {
                Ok(written) => ctx.secrets.remember(&ns, &c.spec.secret_name, Some(Arc::new(written))),
                // The namespace is being deleted (its Secret went first): nothing to keep.
                Err(e) if apply::namespace_terminating(&e) => {
                    tracing::debug!(namespace = %ns, certificate = %name, "namespace terminating; not re-issuing");
                    return Ok(Action::await_change());
                }
                Err(e) => return Err(e.into()),
            }
            m.certificate_issuances.with_label_values(&[why.label()]).inc();
            info!(namespace = %ns, certificate = %name, revision, reason = why.label(), serial = %issued.current.serial, not_after = %issued.current.not_after, "issued");
            let note = format!("revision {revision} issued ({}), serial {}", why.describe(), issued.current.serial);
            let event = Event {
                type_: EventType::Normal,
                reason: "Issued".into(),
                note: Some(note),
                action: "Issue".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &c.object_ref(&())).await {
                tracing::debug!(error = %e, "event not recorded");
            }
            issued.current
        }
    };
    write_status(c, ctx, writer, &current, now).await?;
    m.observe_certificate(&ns, &name, "Ready", Some((current.not_after, current.renewal_time)));
    // Sleep until the renewal time (capped, so a lost event still gets noticed within the hour).
    let wait = current.renewal_time.duration_since(now).as_secs_f64().clamp(0.5, 3600.0);
    Ok(Action::requeue(Duration::from_secs_f64(wait)))
}

async fn write_status(
    c: &SmCertificate,
    ctx: &Context,
    writer: &crate::status::Writer,
    current: &Current,
    now: Timestamp,
) -> Result<()> {
    let previous = c.status.clone().unwrap_or_default();
    let revision = Some(current.revision);
    let issuing = Observed::new(
        "Issuing",
        false,
        "Issued",
        format!("revision {} issued: {}", current.revision, current.issued_because),
    );
    let ready = Observed::new(
        "Ready",
        true,
        "Ready",
        format!("valid until {}, renewed at {}", current.not_after, current.renewal_time),
    );
    let status = SmCertificateStatus {
        observed_generation: c.metadata.generation,
        not_before: Some(current.not_before.to_string()),
        not_after: Some(current.not_after.to_string()),
        renewal_time: Some(current.renewal_time.to_string()),
        serial_number: Some(current.serial.clone()),
        enc_serial_number: current.enc_serial.clone(),
        revision,
        conditions: conditions::merge(&previous.conditions, &[ready, issuing], c.metadata.generation, now),
    };
    let api = Api::<SmCertificate>::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
    writer.whole(&ctx.metrics, &api, c, c.status.as_ref(), &status).await?;
    Ok(())
}

/// Reports why the certificate cannot be issued; keeps whatever was issued before.
async fn fail(
    c: &SmCertificate,
    ctx: &Context,
    m: &super::metrics::CertificateMetrics,
    writer: &crate::status::Writer,
    reason: &'static str,
    why: String,
    now: Timestamp,
) -> Result<Action> {
    let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
    let previous = c.status.clone().unwrap_or_default();
    let already = previous.conditions.iter().any(|x| x.type_ == "Ready" && x.reason == reason && x.message == why);
    let conds =
        [Observed::new("Ready", false, reason, why.clone()), Observed::new("Issuing", true, reason, why.clone())];
    let merged = conditions::merge(&previous.conditions, &conds, c.metadata.generation, now);
    let same =
        previous.observed_generation == c.metadata.generation
            && previous.conditions.len() == merged.len()
            && previous.conditions.iter().zip(&merged).all(|(a, b)| {
                (&a.type_, &a.status, &a.reason, &a.message) == (&b.type_, &b.status, &b.reason, &b.message)
            });
    // Only the conditions: the cached status may lag behind what the Secret holds, and writing
    // its notAfter or revision back would roll the status back.
    let fields = serde_json::json!({"observedGeneration": c.metadata.generation, "conditions": merged});
    let api = Api::<SmCertificate>::namespaced(ctx.client.clone(), &ns);
    // Counted with the write that says it: not again on a cache one write behind.
    if writer.fields(&ctx.metrics, &api, c, same, fields).await? && !already {
        warn!(namespace = %ns, certificate = %name, %reason, problem = %why, "cannot issue");
        m.certificate_failures.with_label_values(&[reason]).inc();
    }
    // What was issued before still expires: keep reporting it.
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let times = parse(&previous.not_after).zip(parse(&previous.renewal_time));
    m.observe_certificate(&ns, &name, "Failed", times);
    Ok(Action::requeue(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    //! Rounds against a fake API server that keeps what it is sent: the SmIssuer ca (self-signed,
    //! its root made by the issuers' round first) and the SmCertificate web-cert it signs.
    use super::*;
    use crate::controller::Reconciler;
    use crate::fake_api::{self, writes};
    use serde_json::{Value, json};

    fn certificate(issuer: &str) -> SmCertificate {
        fake_api::object(json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "SmCertificate",
            "metadata": {"name": "web-cert", "namespace": "edu-apps", "resourceVersion": "6", "generation": 1},
            "spec": {"issuerRef": {"name": issuer}, "secretName": "web-cert", "dnsNames": ["web.edu.gov.cn"]}
        }))
    }

    /// The self-signed SmIssuer ca, as listed and as reconciled.
    fn issuer() -> Value {
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmIssuer",
            "metadata": {"name": "ca", "namespace": "edu-apps", "resourceVersion": "5", "generation": 1},
            "spec": {"selfSigned": {"commonName": "教育局 SM2 根 CA", "secretName": "ca-root"}}})
    }

    async fn cluster() -> (Arc<Certificates>, Arc<super::super::issuers::Issuers<SmIssuer>>, fake_api::Recorded) {
        let issuer = issuer();
        let cert = serde_json::to_value(certificate("ca")).unwrap_or_default();
        let (ctx, recorded) = fake_api::context(vec![
            ("/apis/zhengyun.io/v1alpha1/smissuers", vec![issuer.clone()]),
            ("/apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smissuers", vec![issuer]),
            ("/apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smcertificates", vec![cert]),
        ]);
        let own = super::super::metrics::CertificateMetrics::new(&ctx.metrics);
        let issuers = super::super::issuers::controller::<SmIssuer>(ctx.clone(), own.clone());
        let certificates = controller(ctx.clone(), own);
        let reads = Certificates::reads(&ctx.watches);
        fake_api::listed(&reads).await;
        (certificates, issuers, recorded)
    }

    #[tokio::test]
    async fn a_certificate_is_issued_once_into_its_secret_and_left_alone_while_valid() {
        let (certificates, issuers, recorded) = cluster().await;
        let ca: SmIssuer = fake_api::object(issuer());
        issuers.reconcile(&ca).await.unwrap_or_else(|e| panic!("{e}"));
        let before = writes(&recorded).len();

        let c = certificate("ca");
        certificates.reconcile(&c).await.unwrap_or_else(|e| panic!("{e}"));
        let w: Vec<String> = writes(&recorded)[before..].to_vec();
        let at = |x: &str| w.iter().position(|l| l.starts_with(x)).unwrap_or_else(|| panic!("{x} not in {w:#?}"));
        assert!(
            at("PATCH /api/v1/namespaces/edu-apps/secrets/web-cert")
                < at("PATCH /apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smcertificates/web-cert/status"),
            "the Secret before the status that describes it: {w:#?}"
        );
        assert!(w.iter().any(|l| l.contains("/events")), "Issued is an Event: {w:#?}");
        let secret =
            recorded.all().into_iter().find(|r| r.line() == "PATCH /api/v1/namespaces/edu-apps/secrets/web-cert");
        let secret = secret.map(|r| r.body).unwrap_or_default();
        assert_eq!(secret["metadata"]["labels"][CERTIFICATE_LABEL], json!("web-cert"));
        assert!(secret["data"]["tls.crt"].is_string() && secret["data"]["tls.key"].is_string());
        assert!(!secret["data"]["tls.crt"].as_str().unwrap_or_default().is_empty());

        // Again, the watch showing neither the Secret nor the status: read back, not re-issued.
        let after = writes(&recorded).len();
        certificates.reconcile(&c).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writes(&recorded).len(), after, "{:#?}", &writes(&recorded)[after..]);
        assert_eq!(certificates.metrics.certificate_issuances.with_label_values(&["new"]).get(), 1);
    }

    #[tokio::test]
    async fn a_missing_issuer_is_a_condition_counted_once() {
        let (certificates, _, recorded) = cluster().await;
        let c = certificate("nosuch");
        certificates.reconcile(&c).await.unwrap_or_else(|e| panic!("{e}"));
        certificates.reconcile(&c).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            writes(&recorded),
            ["PATCH /apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smcertificates/web-cert/status"],
            "no Secret, and one status write for two rounds on the same cache"
        );
        let status = recorded.all().last().map(|r| r.body["status"].clone()).unwrap_or_default();
        assert_eq!(status["conditions"][0]["reason"], json!("IssuerNotFound"));
        assert_eq!(certificates.metrics.certificate_failures.with_label_values(&["IssuerNotFound"]).get(), 1);
    }
}
