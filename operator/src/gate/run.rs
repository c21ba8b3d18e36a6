//! The gate at run time: the leader keeps the canary in place; every replica's webhook reads
//! the canary's address to build the gate it injects.

use std::time::{Duration, Instant};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Container, core::v1::Service, networking::v1::NetworkPolicy};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

use super::{CANARY, Config, build};
use crate::apply;

/// How long a read canary address is trusted: a Service deleted and made again gets another.
const ADDRESS_TTL: Duration = Duration::from_secs(30);

/// The webhook's view of the gate.
pub struct Gate {
    pub config: Config,
    client: Client,
    address: Mutex<Option<(String, Instant)>>,
}

impl Gate {
    pub fn new(config: Config, client: Client) -> Self {
        Self { config, client, address: Mutex::new(None) }
    }

    /// The canary Service's cluster address, read at most every [`ADDRESS_TTL`].
    async fn canary_address(&self) -> Result<String, String> {
        let mut held = self.address.lock().await;
        if let Some((ip, at)) = held.as_ref()
            && at.elapsed() < ADDRESS_TTL
        {
            return Ok(ip.clone());
        }
        let ns = &self.config.namespace;
        let svc = Api::<Service>::namespaced(self.client.clone(), ns)
            .get_opt(CANARY)
            .await
            .map_err(|e| format!("reading the isolation canary's Service {ns}/{CANARY} failed: {e}; retry"))?;
        let ip = svc.and_then(|s| s.spec?.cluster_ip).filter(|ip| !ip.is_empty() && ip != "None").ok_or_else(|| {
            format!(
                "the isolation canary's Service {ns}/{CANARY} has no address yet (the operator makes it): tenant pods \
                 cannot start isolated until it does; retry"
            )
        })?;
        *held = Some((ip.clone(), Instant::now()));
        Ok(ip)
    }

    /// The gate container as the webhook injects it now.
    pub async fn container(&self) -> Result<Container, String> {
        Ok(build::gate_container(&self.config, &self.canary_address().await?))
    }
}

/// Applies `desired` unless what is stored already says all of it.
async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let actual = api.get_opt(&desired.name_any()).await?;
    let in_place = actual.is_some_and(|a| match (serde_json::to_value(&a), serde_json::to_value(desired)) {
        (Ok(a), Ok(d)) => apply::covers(&a, &d),
        _ => false,
    });
    if !in_place {
        api.patch(
            &desired.name_any(),
            &kube::api::PatchParams::apply(crate::labels::FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(desired),
        )
        .await?;
    }
    Ok(!in_place)
}

/// Keeps the canary's DaemonSet, Service and policy in place (leader only), owned by
/// `owner` when the chart installed the operator, so `helm uninstall` takes them away too.
pub async fn keep_canary(
    ctx: std::sync::Arc<crate::context::Context>,
    config: Config,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
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
            let p = ensure(&Api::<NetworkPolicy>::namespaced(client.clone(), &ns), &policy).await?;
            let s = ensure(&Api::<Service>::namespaced(client.clone(), &ns), &service).await?;
            let d = ensure(&Api::<DaemonSet>::namespaced(client.clone(), &ns), &daemonset).await?;
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
