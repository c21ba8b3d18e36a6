//! What every reconciler and the admin server share.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::{
    metrics::Metrics,
    pki::keystore::{KeyStore, SoftwareKeyStore},
};

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Set once start-up checks pass; `/readyz` reports it.
    pub ready: AtomicBool,
    /// The cluster serves ClusterNetworkPolicy: tenant isolation and channels are also written
    /// as Admin-tier cluster policies, which tenants' own NetworkPolicies cannot override.
    pub cluster_network_policy: AtomicBool,
    /// Where cluster-scoped issuers keep their Secrets: the operator's namespace.
    pub cluster_resource_namespace: String,
    /// Where SM2 keys are generated and used: the one seam for a certified cipher machine.
    pub keys: Arc<dyn KeyStore>,
    /// One watch per kind for the whole process: controllers and the webhook read from it.
    pub watches: Arc<crate::watch::Hub>,
    /// Secret contents for the certificate and issuer controllers, read once per change.
    pub secrets: crate::watch::secrets::Secrets,
    /// The zhengyun-gateway image SecureGateways run (`--gateway-image`); unset, none is served.
    pub gateway_image: std::sync::OnceLock<String>,
}

impl Context {
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>, cluster_resource_namespace: &str) -> Arc<Self> {
        let reporter = Reporter { controller: "zhengyun-operator".into(), instance: Some(identity.into()) };
        let watches = Arc::new(crate::watch::Hub::new(&client));
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client: client.clone(),
            metrics,
            ready: AtomicBool::new(false),
            cluster_network_policy: AtomicBool::new(false),
            cluster_resource_namespace: cluster_resource_namespace.into(),
            keys: Arc::new(SoftwareKeyStore),
            watches: watches.clone(),
            secrets: crate::watch::secrets::Secrets::new(watches.secrets.handle()),
            gateway_image: std::sync::OnceLock::new(),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn uses_cluster_network_policy(&self) -> bool {
        self.cluster_network_policy.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// On the way out: the Service stops sending this replica requests.
    pub fn set_unready(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}
