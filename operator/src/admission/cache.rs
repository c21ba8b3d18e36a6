//! What the webhook reads, held by watches on every replica: an admission makes no API call.
//!
//! The stores are the process's shared watches ([`Hub`]), so the leader holds one copy of each
//! kind for its controllers and its webhook. The handlers wait once for every store's first
//! list, then answer from memory. Pods are watched as metadata and indexed by namespace (the
//! webhook only counts them).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::{
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    api::{SmClusterIssuer, SmIssuer, Tenant, Zone, department::Department},
    watch::Hub,
};

/// A tenant namespace as the webhook sees it: whose it is and the zone it runs in.
pub struct InZone {
    pub tenant: String,
    pub zone_name: String,
    pub placement: crate::zones::ZonePlacement,
    pub zone: Zone,
}

/// The stores the webhook answers from.
#[derive(Clone)]
pub struct Caches {
    hub: Arc<Hub>,
    /// Through `DeserializeGuard`: a malformed Zone or Tenant in etcd must not break the watch.
    pub zones: Store<DeserializeGuard<Zone>>,
    pub tenants: Store<DeserializeGuard<Tenant>>,
    pub nodes: Store<Node>,
    pub issuers: Store<DeserializeGuard<SmIssuer>>,
    pub cluster_issuers: Store<DeserializeGuard<SmClusterIssuer>>,
    pub departments: Store<DeserializeGuard<Department>>,
}

impl Caches {
    /// Starts (or joins) one watch per kind.
    pub fn start(hub: Arc<Hub>) -> Caches {
        Caches {
            zones: hub.zones.store(),
            tenants: hub.tenants.store(),
            nodes: hub.nodes.store(),
            issuers: hub.issuers.store(),
            cluster_issuers: hub.cluster_issuers.store(),
            departments: hub.departments.store(),
            hub,
        }
    }

    /// The cached tenants of one department (its own, not those below it), from the index.
    pub fn tenants_of_department(&self, code: &str) -> Vec<Arc<DeserializeGuard<Tenant>>> {
        self.hub.tenants.by(crate::watch::TENANTS_BY_DEPARTMENT, code)
    }

    /// What department `code`'s own tenants take together, as the watch adds it up.
    pub fn tenants_tally(&self, code: &str) -> crate::api::amounts::Tally {
        self.hub.tenants.tally(code)
    }

    /// What tenant `name` takes of department `code`'s budget, as cached (none if it counts
    /// elsewhere or nowhere).
    pub fn tenant_part(&self, name: &str, code: &str) -> Option<crate::api::amounts::Amounts> {
        self.hub
            .tenants
            .part(&kube::runtime::reflector::ObjectRef::new(name))
            .filter(|(k, _)| k == code)
            .map(|(_, a)| a)
    }

    /// The zone a tenant namespace runs in, or `None` for namespaces we do not manage.
    pub fn namespace_zone(&self, namespace: &str) -> Result<Option<InZone>, String> {
        use crate::labels;
        use kube::ResourceExt;
        let Some(ns) = self.namespace(namespace) else { return Ok(None) };
        let l = ns.labels();
        let (Some(tenant), Some(zone_name)) = (l.get(labels::TENANT), l.get(labels::ZONE)) else { return Ok(None) };
        let Some(zone) = self.zone(zone_name) else {
            return Err(format!("zone {zone_name} of tenant {tenant} does not exist: pods cannot be placed"));
        };
        let mut placement = crate::zones::placement(&zone);
        placement.arch = l.get(labels::ARCH).cloned();
        Ok(Some(InZone { tenant: tenant.clone(), zone_name: zone_name.clone(), placement, zone }))
    }

    /// Waits until each store has its first list.
    pub async fn ready(&self) {
        let h = &self.hub;
        crate::watch::all_ready(&[
            &h.namespaces,
            &h.zones,
            &h.tenants,
            &h.nodes,
            &h.pods,
            &h.issuers,
            &h.cluster_issuers,
            &h.gateway_deployments,
            &h.departments,
        ])
        .await;
    }

    /// A gateway's Deployment, as the gateway controller's watch holds it.
    pub fn gateway_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<k8s_openapi::api::apps::v1::Deployment>> {
        self.hub.gateway_deployments.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn namespace(&self, name: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        self.hub.namespaces.get(&ObjectRef::new(name))
    }

    /// A zone that deserializes (a malformed one is as good as missing here).
    pub fn zone(&self, name: &str) -> Option<Zone> {
        self.zones.get(&ObjectRef::new(name)).and_then(|z| z.0.as_ref().ok().cloned())
    }

    /// Every zone that deserializes.
    pub fn all_zones(&self) -> Vec<Zone> {
        self.zones.state().iter().filter_map(|z| z.0.as_ref().ok().cloned()).collect()
    }

    pub fn tenant(&self, name: &str) -> Option<Tenant> {
        self.tenants.get(&ObjectRef::new(name)).and_then(|t| t.0.as_ref().ok().cloned())
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    /// An issuer, if it exists (a malformed one exists, it just cannot sign yet).
    pub fn issuer_exists(&self, namespace: &str, name: &str) -> bool {
        self.issuers.get(&ObjectRef::new(name).within(namespace)).is_some()
    }

    /// Whether a cluster issuer exists, and the department it is restricted to with the
    /// departments below it that may use it too. One that does not deserialize counts as
    /// unrestricted: it cannot sign anything until it is fixed, and the certificate controller
    /// says so.
    pub fn cluster_issuer_department(&self, name: &str) -> Option<Option<(String, Vec<String>)>> {
        let issuer = self.cluster_issuers.get(&ObjectRef::new(name))?;
        let Ok(i) = issuer.0.as_ref() else { return Some(None) };
        let departments = self.departments.state();
        let departments: Vec<&Department> = departments.iter().filter_map(|d| d.0.as_ref().ok()).collect();
        let below = crate::certificates::below(i.spec.department.as_deref(), i.spec.signs_below, &departments);
        Some(i.spec.department.clone().map(|d| (d, below)))
    }

    /// How many pods a namespace holds.
    pub fn pods_in(&self, namespace: &str) -> usize {
        self.hub.pods.count(namespace)
    }
}
