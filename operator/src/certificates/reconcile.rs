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
    type Kind = SmCertificate;
    const NAME: &'static str = CONTROLLER;

    fn context(&self) -> &Context {
        &self.ctx
    }

    fn primary(hub: &crate::watch::Hub) -> &crate::watch::Shared<Guarded> {
        &hub.certificates
    }

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
        Err(why) => return fail(c, ctx, m, "InvalidSpec", why, now).await,
    };
    let ca = match issuer_ca(c, ctx, now).await? {
        Ok(ca) => ca,
        Err((reason, why)) => return fail(c, ctx, m, reason, why, now).await,
    };
    let existing = ctx.secrets.get(&ctx.client, &ns, &c.spec.secret_name).await?;
    if let Some(s) = &existing
        && s.labels().get(CERTIFICATE_LABEL) != Some(&name)
    {
        let why = format!(
            "spec.secretName: Secret {ns}/{} exists and was not made for this certificate: choose another name (the operator does not overwrite it)",
            c.spec.secret_name
        );
        return fail(c, ctx, m, "SecretConflict", why, now).await;
    }
    let current = match build::inspect(existing.as_deref(), c, &ca, renew_before, now) {
        Ok(current) => current,
        Err(why) => {
            let last = c.status.as_ref().and_then(|s| s.revision).unwrap_or(0);
            let revision = last.max(build::secret_revision(existing.as_deref())) + 1;
            let issued = match build::issue(ctx.keys.as_ref(), c, &ca, (revision, &why), renew_before, now) {
                Ok(issued) => issued,
                Err(e) => return fail(c, ctx, m, "IssueFailed", e, now).await,
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
    reason: &'static str,
    why: String,
    now: Timestamp,
) -> Result<Action> {
    let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
    let previous = c.status.clone().unwrap_or_default();
    let already = previous.conditions.iter().any(|x| x.type_ == "Ready" && x.reason == reason && x.message == why);
    if !already {
        warn!(namespace = %ns, certificate = %name, %reason, problem = %why, "cannot issue");
        m.certificate_failures.with_label_values(&[reason]).inc();
    }
    let conds = [Observed::new("Ready", false, reason, why.clone()), Observed::new("Issuing", true, reason, why)];
    let merged = conditions::merge(&previous.conditions, &conds, c.metadata.generation, now);
    let same =
        previous.observed_generation == c.metadata.generation
            && previous.conditions.len() == merged.len()
            && previous.conditions.iter().zip(&merged).all(|(a, b)| {
                (&a.type_, &a.status, &a.reason, &a.message) == (&b.type_, &b.status, &b.reason, &b.message)
            });
    if !same {
        // Only the conditions: the cached status may lag behind what the Secret holds, and
        // writing its notAfter or revision back would roll the status back.
        let fields = serde_json::json!({"observedGeneration": c.metadata.generation, "conditions": merged});
        let api = Api::<SmCertificate>::namespaced(ctx.client.clone(), &ns);
        crate::status::write::<_, ()>(&ctx.metrics, CONTROLLER, &api, &name, crate::status::Body::Fields(fields))
            .await?;
    }
    // What was issued before still expires: keep reporting it.
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let times = parse(&previous.not_after).zip(parse(&previous.renewal_time));
    m.observe_certificate(&ns, &name, "Failed", times);
    Ok(Action::requeue(Duration::from_secs(30)))
}
