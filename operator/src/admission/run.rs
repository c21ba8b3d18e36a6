//! Starting the webhook: who we are, which isolation API the cluster has, the certificate,
//! the server, and (on the leader) the registrations.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use k8s_openapi::api::{authentication::v1::SelfSubjectReview, rbac::v1::ClusterRole};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client, api::PostParams};

use super::{
    config::{self, Endpoint},
    server,
    tls::{self, Resolver},
    webhook::Webhook,
};
use crate::apply;

/// The user name the API server knows the operator by (SelfSubjectReview), so the webhook can
/// tell the operator's own writes from everyone else's.
pub async fn whoami(client: &Client) -> Result<String, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default())
}

/// The names the serving certificate must carry for an endpoint.
pub fn sans(endpoint: &Endpoint) -> Vec<String> {
    match endpoint {
        Endpoint::Url(url) => {
            let host = url.trim_start_matches("https://").split(['/', ':']).next().unwrap_or("127.0.0.1");
            vec![host.to_string()]
        }
        Endpoint::Service { namespace, name, .. } => {
            vec![format!("{name}.{namespace}.svc"), format!("{name}.{namespace}.svc.cluster.local")]
        }
    }
}

/// A running webhook: the current CA bundle, for registration.
pub struct Running {
    pub endpoint: Endpoint,
    pub ca_bundle: tokio::sync::watch::Receiver<String>,
    /// The operator's own user: its writes skip the webhooks at the API server.
    pub operator_user: String,
}

/// Starts the server (every replica serves) and a loop that rotates the certificate.
pub async fn start(
    ctx: &crate::context::Context,
    addr: SocketAddr,
    endpoint: Endpoint,
    secret_namespace: String,
    operator_user: String,
    gate: Option<crate::gate::Config>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let client = ctx.client.clone();
    let cluster_network_policy = ctx.uses_cluster_network_policy();
    let names = sans(&endpoint);
    let (cert, bundle) = tls::ensure(&client, &secret_namespace, &names).await?;
    let resolver = Resolver::new(&cert)?;
    let caches = super::cache::Caches::start(ctx.watches.clone());
    let webhook = Arc::new(Webhook {
        caches,
        operator_user: operator_user.clone(),
        cluster_network_policy,
        client: Some(client.clone()),
        ledger: Default::default(),
        durations: super::webhook::durations_metric(&ctx.metrics),
        gate: gate.map(|g| crate::gate::run::Gate::new(g, client.clone())),
    });
    let (resolver_for_server, stop_server) = (resolver.clone(), stop.clone());
    // Bound here, before anything is registered: an address that is taken (by the admin
    // port, say) stops the operator with that error instead of registering a URL that some
    // other server answers.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--webhook-addr {addr}: cannot listen: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, resolver_for_server, webhook, stop_server).await {
            tracing::error!(error = %e, "the admission webhook stopped serving");
        }
    });
    let (bundle_tx, bundle_rx) = tokio::sync::watch::channel(bundle);
    let mut stop_rotation = stop;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(600)) => {}
                _ = stop_rotation.changed() => return,
            }
            match tls::ensure(&client, &secret_namespace, &names).await {
                Ok((cert, bundle)) => {
                    if let Err(e) = resolver.set(&cert) {
                        tracing::warn!(error = %e, "loading the rotated webhook certificate failed");
                    }
                    bundle_tx.send_if_modified(|b| {
                        let changed = *b != bundle;
                        *b = bundle.clone();
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "checking the webhook certificate failed"),
            }
        }
    });
    Ok(Running { endpoint, ca_bundle: bundle_rx, operator_user })
}

/// The ClusterRole that owns the registrations, when the operator was installed by a chart:
/// `helm uninstall` deletes that role, and Kubernetes' garbage collector then deletes the
/// registrations, which would otherwise fail closed with no operator behind them.
pub async fn owner(client: &Client, role: &str) -> Result<Option<OwnerReference>, kube::Error> {
    let found = Api::<ClusterRole>::all(client.clone()).get_opt(role).await?;
    Ok(found.and_then(|r| {
        Some(OwnerReference {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
            uid: r.metadata.uid?,
            controller: Some(false),
            block_owner_deletion: Some(false),
        })
    }))
}

/// Keeps the webhook registrations in place with the current CA bundle (leader only). With
/// `owner_role`, they are owned by that ClusterRole, and not registered while it is gone (the
/// release is being uninstalled).
pub async fn register(
    client: Client,
    mut running: Running,
    owner_role: Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let bundle = running.ca_bundle.borrow_and_update().clone();
        let mut v = config::validating(&running.endpoint, &bundle, &running.operator_user);
        let mut m = config::mutating(&running.endpoint, &bundle, &running.operator_user);
        let result: Result<bool, kube::Error> = async {
            if let Some(role) = &owner_role {
                let Some(owner) = owner(&client, role).await? else {
                    tracing::warn!(
                        role,
                        "the ClusterRole that owns the webhook registrations is gone: not registering"
                    );
                    return Ok(false);
                };
                v.metadata.owner_references = Some(vec![owner.clone()]);
                m.metadata.owner_references = Some(vec![owner]);
            }
            let v = apply::unless_covered(&Api::all(client.clone()), &v).await?;
            Ok(apply::unless_covered(&Api::all(client.clone()), &m).await? | v)
        }
        .await;
        match result {
            Ok(true) => tracing::info!("admission webhooks registered"),
            Ok(false) => tracing::debug!("admission webhook registrations already in place"),
            Err(e) => tracing::warn!(error = %e, "registering the admission webhooks failed; retrying"),
        }
        tokio::select! {
            r = running.ca_bundle.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
            _ = stop.changed() => return,
        }
    }
}
