//! The gate at run time: the leader keeps the canary in place; every replica's webhook reads
//! the canary's address to build the gate it injects.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Container, core::v1::Service, networking::v1::NetworkPolicy};
use kube::{Api, Client, runtime::watcher};

use super::{CANARY, Config, build};
use crate::{apply, watch::Shared};

/// The webhook's view of the gate.
pub struct Gate {
    pub config: Config,
    /// The canary's Service alone (a watch of one object): its address, as it is now.
    canary: Shared<Service>,
}

impl Gate {
    pub fn new(config: Config, client: Client) -> Self {
        let api = Api::<Service>::namespaced(client, &config.namespace);
        let canary = Shared::new(api, watcher::Config::default().fields(&format!("metadata.name={CANARY}")), None);
        Self { config, canary }
    }

    /// The canary Service's cluster address.
    async fn canary_address(&self) -> Result<String, String> {
        self.canary.ready().await;
        let ns = &self.config.namespace;
        let ip = self.canary.state().into_iter().find_map(|s| s.spec.as_ref()?.cluster_ip.clone());
        ip.filter(|ip| !ip.is_empty() && ip != "None").ok_or_else(|| {
            format!(
                "the isolation canary's Service {ns}/{CANARY} has no address yet (the operator makes it): tenant pods \
                 cannot start isolated until it does; retry"
            )
        })
    }

    /// The gate container as the webhook injects it now.
    pub async fn container(&self) -> Result<Container, String> {
        Ok(build::gate_container(&self.config, &self.canary_address().await?))
    }
}

/// Keeps the canary's DaemonSet, Service and policy in place (leader only), owned by
/// `owner` when the chart installed the operator, so `helm uninstall` takes them away too.
pub async fn keep_canary(
    client: Client,
    config: Config,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let ns = config.namespace.clone();
    let with_owner = |mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references = owner.clone().map(|o| vec![o]);
        meta
    };
    let mut policy = build::canary_policy(&config);
    policy.metadata = with_owner(policy.metadata);
    let mut service = build::canary_service(&config);
    service.metadata = with_owner(service.metadata);
    let mut daemonset = build::canary_daemonset(&config);
    daemonset.metadata = with_owner(daemonset.metadata);
    loop {
        // The policy first: a canary that its namespace's policies kept unreachable would make
        // every gate wait out its time.
        let result: Result<bool, kube::Error> = async {
            let p = apply::unless_covered(&Api::<NetworkPolicy>::namespaced(client.clone(), &ns), &policy).await?;
            let s = apply::unless_covered(&Api::<Service>::namespaced(client.clone(), &ns), &service).await?;
            let d = apply::unless_covered(&Api::<DaemonSet>::namespaced(client.clone(), &ns), &daemonset).await?;
            Ok(p | s | d)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(namespace = %ns, "isolation canary applied"),
            Ok(false) => tracing::debug!("isolation canary in place"),
            Err(e) => tracing::warn!(error = %e, "applying the isolation canary failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.changed() => return,
        }
    }
}
