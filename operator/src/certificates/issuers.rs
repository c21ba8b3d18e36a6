//! The SmIssuer and SmClusterIssuer controllers: keep a self-signed root in its Secret (and
//! rotate it), or check a CA Secret someone provided; report the CA in the issuer's status.

use std::{collections::BTreeMap, fmt::Debug, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, PartialObjectMeta},
    core::DeserializeGuard,
    runtime::{controller::Action, reflector::ObjectRef},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, warn};

use crate::{
    api::{CaSource, SecretCa, SelfSignedCa, SmClusterIssuer, SmIssuer, SmIssuerStatus, parse_duration},
    apply,
    conditions::{self, Observed},
    context::Context,
    error::Result,
    labels,
    pki::{
        ca::{self, Ca},
        cert::Name,
        sm,
    },
};

/// On a self-signed root's Secret: the issuer it belongs to (`zhengyun.io/smissuer` or
/// `zhengyun.io/smclusterissuer`, valued with its name: both kinds may share a name).
pub fn issuer_label<K: IssuerResource>() -> String {
    format!("zhengyun.io/{}", K::KIND.to_lowercase())
}
const ROOT_HASH: &str = "zhengyun.io/root-spec-hash";

/// Why an issuer cannot sign: a condition reason and a message naming the field.
pub type Problem = (&'static str, String);

/// What the two issuer kinds have in common.
pub trait IssuerResource:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    /// The controller's name in metrics and logs.
    const CONTROLLER: &'static str;
    fn source(&self) -> &CaSource;
    fn self_signed(&self) -> Option<&SelfSignedCa> {
        self.source().self_signed.as_ref()
    }
    fn secret_ca(&self) -> Option<&SecretCa> {
        self.source().ca.as_ref()
    }
    fn issuer_status(&self) -> Option<&SmIssuerStatus>;
    /// Where the issuer's Secrets live.
    fn secret_namespace(&self, ctx: &Context) -> String;
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self>;
    /// The process's one watch of this kind.
    fn shared(hub: &crate::watch::Hub) -> &crate::watch::Shared<DeserializeGuard<Self>>;
}

impl IssuerResource for SmIssuer {
    const KIND: &'static str = "SmIssuer";
    const CONTROLLER: &'static str = "smissuer";
    fn source(&self) -> &CaSource {
        &self.spec.source
    }
    fn issuer_status(&self) -> Option<&SmIssuerStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, _: &Context) -> String {
        self.namespace().unwrap_or_default()
    }
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client.clone(), namespace.unwrap_or_default())
    }
    fn shared(hub: &crate::watch::Hub) -> &crate::watch::Shared<DeserializeGuard<Self>> {
        &hub.issuers
    }
}

impl IssuerResource for SmClusterIssuer {
    const KIND: &'static str = "SmClusterIssuer";
    const CONTROLLER: &'static str = "smclusterissuer";
    fn source(&self) -> &CaSource {
        &self.spec.source
    }
    fn issuer_status(&self) -> Option<&SmIssuerStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, ctx: &Context) -> String {
        ctx.cluster_resource_namespace.clone()
    }
    fn api(client: &Client, _: Option<&str>) -> Api<Self> {
        Api::all(client.clone())
    }
    fn shared(hub: &crate::watch::Hub) -> &crate::watch::Shared<DeserializeGuard<Self>> {
        &hub.cluster_issuers
    }
}

/// The name of the Secret an issuer reads its CA from.
pub fn secret_name<K: IssuerResource>(issuer: &K) -> Option<&str> {
    issuer.self_signed().map(|s| s.secret_name.as_str()).or_else(|| issuer.secret_ca().map(|c| c.secret_name.as_str()))
}

/// Loads an issuer's CA from its Secret, or says why it cannot sign.
pub async fn load_ca<K: IssuerResource>(
    client: &Client,
    issuer: &K,
    ctx: &Context,
    now: Timestamp,
) -> Result<std::result::Result<Ca, Problem>> {
    let namespace = issuer.secret_namespace(ctx);
    let Some(name) = secret_name(issuer) else {
        return Ok(Err(("InvalidSpec", "set spec.selfSigned or spec.ca".into())));
    };
    let field = if issuer.self_signed().is_some() { "spec.selfSigned.secretName" } else { "spec.ca.secretName" };
    let Some(secret) = ctx.secrets.get(client, &namespace, name).await? else {
        return Ok(Err(("SecretNotFound", format!("{field}: Secret {namespace}/{name} does not exist"))));
    };
    // A self-signed issuer signs only with the root it made, never with a Secret that happens to
    // carry the name.
    if issuer.self_signed().is_some() && secret.labels().get(&issuer_label::<K>()) != Some(&issuer.name_any()) {
        return Ok(Err(("SecretConflict", format!("{field}: Secret {namespace}/{name} was not made for this issuer"))));
    }
    let data: BTreeMap<String, Vec<u8>> =
        secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    Ok(ca::load(&data, now).map_err(|e| ("InvalidCA", format!("{field}: Secret {namespace}/{name}: {e}"))))
}

/// An issuer controller (one per kind), for [`crate::controller::run`].
pub struct Issuers<K> {
    ctx: Arc<Context>,
    metrics: Arc<super::metrics::CertificateMetrics>,
    status: crate::status::Writer,
    kind: std::marker::PhantomData<fn() -> K>,
}

/// The controller of issuers of kind `K`.
pub fn controller<K: IssuerResource>(
    ctx: Arc<Context>,
    metrics: Arc<super::metrics::CertificateMetrics>,
) -> Arc<Issuers<K>> {
    let status = crate::status::Writer::new(&K::KIND.to_lowercase());
    Arc::new(Issuers { ctx, metrics, status, kind: std::marker::PhantomData })
}

impl<K: IssuerResource> crate::controller::Reconciler for Issuers<K> {
    type Kind = K;
    const NAME: &'static str = K::CONTROLLER;

    fn context(&self) -> &Context {
        &self.ctx
    }

    fn primary(hub: &crate::watch::Hub) -> &crate::watch::Shared<DeserializeGuard<K>> {
        K::shared(hub)
    }

    fn reads(_hub: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        Vec::new()
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<K>) -> crate::controller::Wired<K> {
        let hub = self.ctx.watches.clone();
        let by_secret_store = K::shared(&hub).store();
        let ns_for_cluster = self.ctx.cluster_resource_namespace.clone();
        // An issuer's Secret edited or deleted: the issuers that read it go round.
        let by_secret = move |s: Arc<PartialObjectMeta<Secret>>| {
            let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
            by_secret_store
                .state()
                .into_iter()
                .filter(|i| {
                    let home = i.meta().namespace.clone().unwrap_or_else(|| ns_for_cluster.clone());
                    home == ns && i.0.as_ref().is_ok_and(|i| secret_name(i) == Some(name.as_str()))
                })
                .map(|i| ObjectRef::from_obj(i.as_ref()))
                .collect::<Vec<_>>()
        };
        c.watches_shared_stream(hub.secrets.subscribe(), by_secret)
    }

    async fn reconcile(&self, issuer: &K) -> Result<Action> {
        reconcile_inner(issuer, &self.ctx, &self.metrics, &self.status).await
    }

    fn forget(&self, namespace: Option<&str>, name: &str) {
        self.metrics.observe_issuer(K::KIND, namespace, name, None);
        self.status.forget(namespace, name);
    }
}

fn root_rotation(ca: &Ca) -> Timestamp {
    let life = ca.cert.not_after.duration_since(ca.cert.not_before);
    ca.cert.not_before.saturating_add(life * 2 / 3).unwrap_or(ca.cert.not_before)
}

fn root_hash(ss: &SelfSignedCa) -> String {
    let shaped = serde_json::json!([ss.common_name, ss.organization, ss.duration]);
    sm::hex(&sm::sm3(shaped.to_string().as_bytes()))[..32].to_string()
}

/// Keeps a self-signed root in its Secret: generates it when missing, unreadable, changed in
/// spec or two thirds through its life.
async fn ensure_root<K: IssuerResource>(
    issuer: &K,
    ss: &SelfSignedCa,
    ctx: &Context,
    now: Timestamp,
) -> Result<std::result::Result<Ca, Problem>> {
    let namespace = issuer.secret_namespace(ctx);
    let owner = issuer.name_any();
    let label = issuer_label::<K>();
    let existing = ctx.secrets.get(&ctx.client, &namespace, &ss.secret_name).await?;
    if let Some(s) = &existing
        && s.labels().get(&label) != Some(&owner)
    {
        return Ok(Err((
            "SecretConflict",
            format!(
                "spec.selfSigned.secretName: Secret {namespace}/{} exists and was not made for this issuer: choose another name",
                ss.secret_name
            ),
        )));
    }
    let hash = root_hash(ss);
    if let Some(s) = &existing {
        let data: BTreeMap<String, Vec<u8>> =
            s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let same_spec = s.annotations().get(ROOT_HASH) == Some(&hash);
        match ca::load(&data, now) {
            Ok(ca) if same_spec && now < root_rotation(&ca) => return Ok(Ok(ca)),
            Ok(_) if same_spec => info!(issuer = %owner, "rotating the root: two thirds of its life are over"),
            Ok(_) => info!(issuer = %owner, "rotating the root: its subject or duration changed"),
            Err(e) => warn!(issuer = %owner, problem = %e, "regenerating an unreadable root"),
        }
    }
    let lifetime = match parse_duration(ss.duration.as_deref().unwrap_or("87600h")) {
        Ok(d) if d >= SignedDuration::from_mins(1) => d,
        Ok(_) => return Ok(Err(("InvalidSpec", "spec.selfSigned.duration must be at least 1m".into()))),
        Err(e) => return Ok(Err(("InvalidSpec", format!("spec.selfSigned.duration: {e}")))),
    };
    let subject = Name { common_name: ss.common_name.clone(), organization: ss.organization.clone() };
    let (crt, key) = match ca::self_signed(ctx.keys.as_ref(), subject, lifetime, now) {
        Ok(pair) => pair,
        Err(e) => return Ok(Err(("KeyStoreFailed", e.to_string()))),
    };
    let data = BTreeMap::from([
        ("tls.crt".to_string(), crt.clone()),
        ("tls.key".to_string(), key),
        ("ca.crt".to_string(), crt),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(ss.secret_name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (label.clone(), owner.clone()),
            ])),
            annotations: Some(BTreeMap::from([(ROOT_HASH.into(), hash)])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes()))).collect()),
        ..Default::default()
    };
    match apply::namespaced(&ctx.client, &secret).await {
        Ok(written) => ctx.secrets.remember(&namespace, &ss.secret_name, Some(Arc::new(written))),
        Err(e) if apply::namespace_terminating(&e) => {
            return Ok(Err(("NamespaceTerminating", format!("namespace {namespace} is being deleted"))));
        }
        Err(e) => return Err(e.into()),
    }
    let bytes = data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    let loaded = ca::load(&bytes, now).map_err(|e| ("KeyStoreFailed", e));
    if let Ok(ca) = &loaded {
        info!(issuer = %owner, fingerprint = %ca.fingerprint, not_after = %ca.cert.not_after, "generated a self-signed SM2 root");
    }
    Ok(loaded)
}

async fn reconcile_inner<K: IssuerResource>(
    issuer: &K,
    ctx: &Context,
    m: &super::metrics::CertificateMetrics,
    writer: &crate::status::Writer,
) -> Result<Action> {
    let now = Timestamp::now();
    let outcome = match issuer.self_signed() {
        Some(ss) => ensure_root(issuer, ss, ctx, now).await?,
        None => load_ca(&ctx.client, issuer, ctx, now).await?,
    };
    let previous = issuer.issuer_status().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let generation = issuer.meta().generation;
    let (status, next) = match &outcome {
        Ok(ca) => {
            let rotation = if issuer.self_signed().is_some() { root_rotation(ca) } else { ca.cert.not_after };
            let ready = Observed::new("Ready", true, "CAReady", format!("signing as {}", ca.cert.subject()));
            let status = SmIssuerStatus {
                observed_generation: generation,
                subject: Some(ca.cert.subject()),
                fingerprint: Some(ca.fingerprint.clone()),
                not_after: Some(ca.cert.not_after.to_string()),
                conditions: conditions::merge(previous, &[ready], generation, now),
            };
            let wait = rotation.duration_since(now).as_secs_f64().clamp(1.0, 3600.0);
            let namespace = issuer.meta().namespace.as_deref();
            m.observe_issuer(K::KIND, namespace, &issuer.name_any(), Some(ca.cert.not_after));
            (status, Duration::from_secs_f64(wait))
        }
        Err((reason, message)) => {
            m.observe_issuer(K::KIND, issuer.meta().namespace.as_deref(), &issuer.name_any(), None);
            let not_ready = Observed::new("Ready", false, *reason, message.clone());
            let status = SmIssuerStatus {
                observed_generation: generation,
                conditions: conditions::merge(previous, &[not_ready], generation, now),
                ..Default::default()
            };
            (status, Duration::from_secs(30))
        }
    };
    let api = K::api(&ctx.client, issuer.meta().namespace.as_deref());
    if writer.whole(&ctx.metrics, &api, issuer, issuer.issuer_status(), &status).await?
        && let Err((reason, message)) = &outcome
    {
        warn!(issuer = %issuer.name_any(), %reason, problem = %message, "issuer cannot sign");
    }
    Ok(Action::requeue(next))
}

#[cfg(test)]
mod tests {
    //! Rounds of the SmIssuer controller against a fake API server that keeps what it is sent.
    use super::*;
    use crate::api::SmIssuer;
    use crate::fake_api::{self, writes};
    use serde_json::{Value, json};

    fn issuer() -> SmIssuer {
        fake_api::object(json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "SmIssuer",
            "metadata": {"name": "ca", "namespace": "edu-apps", "resourceVersion": "5", "generation": 1},
            "spec": {"selfSigned": {"commonName": "教育局 SM2 根 CA", "secretName": "ca-root"}}
        }))
    }

    async fn issuers_over(secrets: Vec<Value>) -> (Arc<Issuers<SmIssuer>>, fake_api::Recorded) {
        let i = serde_json::to_value(issuer()).unwrap_or_default();
        let (ctx, recorded) = fake_api::context(vec![
            ("/apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smissuers", vec![i]),
            ("/api/v1/namespaces/edu-apps/secrets", secrets),
        ]);
        let own = super::super::metrics::CertificateMetrics::new(&ctx.metrics);
        (controller::<SmIssuer>(ctx, own), recorded)
    }

    async fn round(issuers: &Issuers<SmIssuer>) {
        let i = issuer();
        reconcile_inner(&i, &issuers.ctx, &issuers.metrics, &issuers.status).await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_self_signed_issuer_makes_its_root_once_and_signs_with_it() {
        let (issuers, recorded) = issuers_over(vec![]).await;
        round(&issuers).await;
        assert_eq!(
            writes(&recorded),
            [
                "PATCH /api/v1/namespaces/edu-apps/secrets/ca-root",
                "PATCH /apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smissuers/ca/status"
            ]
        );
        let all = recorded.all();
        let secret = all
            .iter()
            .find(|r| r.line() == "PATCH /api/v1/namespaces/edu-apps/secrets/ca-root")
            .map(|r| r.body.clone());
        let secret = secret.unwrap_or_default();
        assert_eq!(secret["metadata"]["labels"][issuer_label::<SmIssuer>()], json!("ca"));
        assert!(secret["data"]["tls.key"].is_string() && secret["data"]["tls.crt"].is_string());
        let status = all.iter().rfind(|r| r.line().ends_with("/status")).map(|r| r.body["status"].clone());
        let status = status.unwrap_or_default();
        assert_eq!(status["conditions"][0]["reason"], json!("CAReady"));
        assert!(status["subject"].as_str().is_some_and(|s| s.contains("教育局")), "{status}");
        // Again, the watch not showing the Secret yet: it is read back, not made again.
        round(&issuers).await;
        assert_eq!(writes(&recorded).len(), 2, "{:#?}", writes(&recorded));
    }

    #[tokio::test]
    async fn a_secret_not_made_for_the_issuer_is_never_overwritten() {
        let theirs = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "ca-root", "namespace": "edu-apps", "resourceVersion": "3"},
            "data": {"tls.crt": "c29tZW9uZSBlbHNlJ3M="}});
        let (issuers, recorded) = issuers_over(vec![theirs]).await;
        round(&issuers).await;
        assert_eq!(
            writes(&recorded),
            ["PATCH /apis/zhengyun.io/v1alpha1/namespaces/edu-apps/smissuers/ca/status"],
            "the Secret is left as it is"
        );
        let status = recorded.all().last().map(|r| r.body["status"].clone()).unwrap_or_default();
        assert_eq!(status["conditions"][0]["reason"], json!("SecretConflict"));
        assert_eq!(status["conditions"][0]["status"], json!("False"));
    }
}
