//! Zones: keeps each `Zone`'s status (nodes, allocatable capacity, tenants) up to date.
//!
//! Placement itself (node affinity, tolerations) is the admission webhook's job, and a zone's
//! networks reach tenants through the tenant controller; this module only observes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use tracing::warn;

use crate::{
    api::{Tenant, Zone, ZoneStatus},
    conditions::{self, Observed},
    context::Context,
    error::Result,
    quantity::{self, Kind, Milli},
};

pub(crate) mod validate;

/// What a tenant gets from its zone: where its pods run and which outside networks it reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZonePlacement {
    pub node_selector: BTreeMap<String, String>,
    pub taint: Option<crate::api::ZoneTaint>,
    pub egress: Vec<String>,
    pub ingress: Vec<String>,
    /// The architecture the tenant's pods need (信创), from its namespace's label.
    pub arch: Option<String>,
}

/// Where a zone puts its tenants' pods and which outside networks they reach.
pub fn placement(zone: &Zone) -> ZonePlacement {
    ZonePlacement {
        node_selector: zone.spec.node_selector.clone(),
        taint: Some(zone.effective_taint()),
        egress: zone.spec.egress.clone(),
        ingress: zone.spec.ingress.clone(),
        arch: None,
    }
}

pub const CONTROLLER: &str = "zone";

/// Whether a node carries every label of a selector.
pub fn selects(selector: &BTreeMap<String, String>, node_labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| node_labels.get(k) == Some(v))
}

/// Sums allocatable capacity over nodes, by resource, in thousandths (as parsed).
pub fn allocatable_milli(nodes: &[&Node]) -> BTreeMap<String, Milli> {
    let mut sum: BTreeMap<String, Milli> = BTreeMap::new();
    for n in nodes {
        for (k, v) in n.status.as_ref().and_then(|s| s.allocatable.as_ref()).into_iter().flatten() {
            if let Ok(m) = quantity::parse(&v.0) {
                *sum.entry(k.clone()).or_default() += m;
            }
        }
    }
    sum
}

/// A resource's quantity kind, for formatting.
pub fn kind_of(resource: &str) -> Kind {
    match resource {
        "cpu" => Kind::Cores,
        "memory" | "ephemeral-storage" => Kind::Bytes,
        _ => Kind::Count,
    }
}

/// Quantities by resource, formatted as Kubernetes writes them.
pub fn format_sums(sums: &BTreeMap<String, Milli>) -> BTreeMap<String, String> {
    sums.iter().map(|(k, v)| (k.clone(), quantity::format(*v, kind_of(k)))).collect()
}

/// Sums allocatable capacity over nodes, by resource.
pub fn allocatable(nodes: &[&Node]) -> BTreeMap<String, String> {
    format_sums(&allocatable_milli(nodes))
}

/// The zone controller's state: the shared [`Context`], whose watches it reads.
pub struct Zones {
    ctx: Arc<Context>,
    status: crate::status::Writer,
}

impl std::ops::Deref for Zones {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// The zones a node or tenant event concerns: those that select the node (or list it), or the
/// tenant's zone (or a zone that lists it, when it moved away).
fn zones_of_node(zones: &Store<DeserializeGuard<Zone>>, node: &Node) -> Vec<ObjectRef<DeserializeGuard<Zone>>> {
    let name = node.name_any();
    zones
        .state()
        .iter()
        .filter(|z| {
            z.0.as_ref().is_ok_and(|z| {
                selects(&z.spec.node_selector, node.labels())
                    || z.status.as_ref().is_some_and(|s| s.nodes.contains(&name))
            })
        })
        .map(|z| ObjectRef::from_obj(z.as_ref()))
        .collect()
}

fn zones_of_tenant(
    zones: &Store<DeserializeGuard<Zone>>,
    tenant: &DeserializeGuard<Tenant>,
) -> Vec<ObjectRef<DeserializeGuard<Zone>>> {
    let name = tenant.name_any();
    let own = tenant.0.as_ref().ok().map(|t| t.spec.zone.clone());
    zones
        .state()
        .iter()
        .filter(|z| {
            Some(z.name_any()) == own
                || z.0.as_ref().is_ok_and(|z| z.status.as_ref().is_some_and(|s| s.tenants.contains(&name)))
        })
        .map(|z| ObjectRef::from_obj(z.as_ref()))
        .collect()
}

/// The zone controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>) -> Arc<Zones> {
    Arc::new(Zones { ctx, status: crate::status::Writer::new(CONTROLLER) })
}

impl crate::controller::Reconciler for Zones {
    crate::controller::plumbing!(Zone, CONTROLLER, zones);

    fn reads(hub: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![&hub.nodes, &hub.tenants]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<Zone>) -> crate::controller::Wired<Zone> {
        let hub = self.ctx.watches.clone();
        let zones = hub.zones.store();
        let tenants = hub.tenants.store();
        let (for_nodes, for_tenants) = (zones.clone(), zones);
        // A tenant concerns its zone when it appears, goes or moves; its status updates do not.
        let tenant_zones: std::sync::Mutex<std::collections::HashMap<String, Option<String>>> = Default::default();
        // A zone goes round only when its own nodes or tenants change.
        // A zone's status lists its tenants: while thousands join, one write a second, not one
        // per tenant (each would carry the whole list).
        c.with_config(kube::runtime::controller::Config::default().debounce(Duration::from_secs(1)))
            .watches_shared_stream(hub.nodes.subscribe(), move |node: Arc<Node>| zones_of_node(&for_nodes, &node))
            .watches_shared_stream(hub.tenants.subscribe(), move |t: Arc<DeserializeGuard<Tenant>>| {
                let name = t.name_any();
                let present = tenants.get(&ObjectRef::new(&name)).is_some();
                let zone = t.0.as_ref().ok().map(|t| t.spec.zone.clone()).filter(|_| present);
                let before = tenant_zones.lock().ok().and_then(|mut m| m.insert(name, zone.clone()));
                if before == Some(zone) {
                    return Vec::new();
                }
                zones_of_tenant(&for_tenants, &t)
            })
    }

    fn error_policy(&self, _err: &crate::Error) -> Action {
        Action::requeue(Duration::from_secs(10))
    }

    async fn reconcile(&self, zone: &Zone) -> Result<Action> {
        reconcile(zone, self).await
    }
}

async fn reconcile(zone: &Zone, ctx: &Zones) -> Result<Action> {
    let name = zone.name_any();
    let nodes = ctx.watches.nodes.state();
    let mut mine: Vec<&Node> =
        nodes.iter().map(|n| n.as_ref()).filter(|n| selects(&zone.spec.node_selector, n.labels())).collect();
    // A store has no order; the status lists nodes by name, so it changes only when they do.
    mine.sort_by_key(|n| n.name_any());
    let mut in_zone: Vec<String> =
        ctx.watches.tenants.by(crate::watch::TENANTS_BY_ZONE, &name).iter().map(|t| t.name_any()).collect();
    in_zone.sort();
    let has_nodes = !mine.is_empty();
    let invalid = validate::validate(&zone.spec).err();
    let observed = [match &invalid {
        // A zone that got past an older schema: say so rather than place pods by it.
        Some(why) => Observed::new("Ready", false, "InvalidSpec", why.clone()),
        None => Observed::new(
            "Ready",
            has_nodes,
            if has_nodes { "NodesFound" } else { "NoNodes" },
            if has_nodes {
                format!("{} nodes match the zone's node selector", mine.len())
            } else {
                "no node matches the zone's node selector: its pods cannot be scheduled".to_string()
            },
        ),
    }];
    let was_invalid = zone
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.reason == "InvalidSpec" && Some(&c.message) == invalid.as_ref());
    if let (Some(why), false) = (&invalid, was_invalid) {
        let ev = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: "InvalidSpec".into(),
            note: Some(why.clone()),
            action: "Validate".into(),
            secondary: None,
        };
        use kube::Resource;
        if let Err(e) = ctx.recorder.publish(&ev, &zone.object_ref(&())).await {
            warn!(error = %e, "publishing an event failed");
        }
    }
    let previous = zone.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let status = ZoneStatus {
        observed_generation: zone.metadata.generation,
        conditions: conditions::merge(previous, &observed, zone.metadata.generation, jiff::Timestamp::now()),
        node_count: Some(mine.len() as i32),
        nodes: mine.iter().map(|n| n.name_any()).collect(),
        allocatable: allocatable(&mine),
        tenants: in_zone,
    };
    // Unchanged status: no write, so no event and no loop.
    {
        let api = Api::<Zone>::all(ctx.client.clone());
        ctx.status.whole(&ctx.metrics, &api, zone, zone.status.as_ref(), &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_belongs_to_a_zone_when_it_has_every_selector_label() {
        let sel = BTreeMap::from([("zone".to_string(), "in".to_string()), ("arch".to_string(), "arm64".to_string())]);
        let mut labels = BTreeMap::from([("zone".to_string(), "in".to_string())]);
        assert!(!selects(&sel, &labels));
        labels.insert("arch".into(), "arm64".into());
        assert!(selects(&sel, &labels));
    }

    /// Rounds against a fake API server listing nodes n1 (in the zone) and n2 (not), and
    /// tenant edu placed in the zone.
    mod rounds {
        use super::*;
        use crate::fake_api::{self, writes};
        use serde_json::{Value, json};

        fn zone(selector: Value) -> Zone {
            fake_api::object(json!({
                "apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
                "metadata": {"name": "extranet", "resourceVersion": "3", "generation": 1},
                "spec": {"kind": "Extranet", "nodeSelector": selector}
            }))
        }

        async fn zones_over(z: &Zone) -> (Arc<Zones>, fake_api::Recorded) {
            let node = |name: &str, zone: &str| {
                json!({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": name, "resourceVersion": "2", "labels": {"zone": zone}},
                       "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}})
            };
            let edu = json!({
                "apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": "edu", "resourceVersion": "4"},
                "spec": {"department": {"code": "GZ", "name": "GZ"}, "zone": "extranet",
                         "owners": [{"kind": "User", "name": "a"}], "namespaces": [{"suffix": "a"}],
                         "quota": {}, "securityLevel": 2}
            });
            let (ctx, recorded) = fake_api::context(vec![
                ("/apis/zhengyun.io/v1alpha1/zones", vec![serde_json::to_value(z).unwrap_or_default()]),
                ("/api/v1/nodes", vec![node("n1", "extranet"), node("n2", "intranet")]),
                ("/apis/zhengyun.io/v1alpha1/tenants", vec![edu]),
            ]);
            let zones = controller(ctx.clone());
            let reads = <Zones as crate::controller::Reconciler>::reads(&ctx.watches);
            fake_api::listed(&reads).await;
            (zones, recorded)
        }

        #[tokio::test]
        async fn a_zone_reports_its_nodes_and_tenants_once_and_nothing_when_settled() {
            let z = zone(json!({"zone": "extranet"}));
            let (zones, recorded) = zones_over(&z).await;
            reconcile(&z, &zones).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(writes(&recorded), ["PATCH /apis/zhengyun.io/v1alpha1/zones/extranet/status"]);
            let status = recorded.all().last().map(|r| r.body["status"].clone()).unwrap_or_default();
            assert_eq!(status["nodes"], json!(["n1"]));
            assert_eq!(status["tenants"], json!(["edu"]));
            assert_eq!(status["allocatable"]["cpu"], json!("8"));
            assert_eq!(status["conditions"][0]["reason"], json!("NodesFound"));
            // Again, a second later, on the same cached copy: written already.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            reconcile(&z, &zones).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(writes(&recorded).len(), 1, "{:#?}", writes(&recorded));
        }

        #[tokio::test]
        async fn a_zone_without_nodes_or_past_the_schema_says_so_and_an_invalid_one_is_an_event() {
            let empty = zone(json!({"zone": "nowhere"}));
            let (zones, recorded) = zones_over(&empty).await;
            reconcile(&empty, &zones).await.unwrap_or_else(|e| panic!("{e}"));
            let status = recorded.all().last().map(|r| r.body["status"].clone()).unwrap_or_default();
            assert_eq!(status["conditions"][0]["reason"], json!("NoNodes"));
            assert!(!writes(&recorded).iter().any(|w| w.contains("/events")), "no nodes is no Event");

            let invalid = zone(json!({}));
            let (zones, recorded) = zones_over(&invalid).await;
            reconcile(&invalid, &zones).await.unwrap_or_else(|e| panic!("{e}"));
            let status = recorded.all().last().map(|r| r.body["status"].clone()).unwrap_or_default();
            assert_eq!(status["conditions"][0]["reason"], json!("InvalidSpec"));
            assert_eq!(status["conditions"][0]["status"], json!("False"));
            assert!(writes(&recorded).iter().any(|w| w.contains("/events")), "{:#?}", writes(&recorded));
        }
    }
}
