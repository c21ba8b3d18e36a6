//! Computer rooms (机房) joining the shared cloud: the controller that labels and taints each
//! room's nodes (room, owning department, architecture, the zone's labels and taint), keeps
//! them consistent, lets nodes go, and reports what the room holds and what the planner says of
//! its inventory.
//!
//! A room that would put a node in two rooms, a node of another architecture or of another zone
//! labels no node at all: a condition, an Event and a metric say why, and nothing is half
//! applied.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    api::{ComputerRoom, ComputerRoomStatus, Zone},
    conditions::{self, Observed},
    context::Context,
    error::Result,
    labels,
    quantity::Milli,
};

pub mod build;
pub mod metrics;
pub mod plan;
pub mod showback;

pub const CONTROLLER: &str = "computerroom";
/// Lets a deleted room give its nodes back before it goes.
pub const FINALIZER: &str = "zhengyun.io/room-protection";

/// How often a room's status may be rewritten for what its pods request alone: a busy room's
/// pods come and go all the time. A change of condition is written at once.
const USAGE_EVERY: Duration = Duration::from_secs(5);

/// The room controller's state: the shared [`Context`], and when each room's status was last
/// written.
pub struct Rooms {
    ctx: Arc<Context>,
    own: Arc<metrics::RoomMetrics>,
    written: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl std::ops::Deref for Rooms {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// The rooms a node concerns: those that select it and the one whose label it carries.
fn rooms_of_node(
    rooms: &Store<DeserializeGuard<ComputerRoom>>,
    node: &Node,
) -> Vec<ObjectRef<DeserializeGuard<ComputerRoom>>> {
    let held = node.labels().get(labels::ROOM).cloned();
    rooms
        .state()
        .iter()
        .filter(|r| Some(r.name_any()) == held || r.0.as_ref().is_ok_and(|r| build::selects(&r.spec, node)))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The room controller, for [`crate::controller::run`].
pub fn controller(ctx: Arc<Context>, own: Arc<metrics::RoomMetrics>) -> Arc<Rooms> {
    Arc::new(Rooms { ctx, own, written: Default::default() })
}

impl crate::controller::Reconciler for Rooms {
    crate::controller::plumbing!(ComputerRoom, CONTROLLER, rooms);

    fn reads(hub: &crate::watch::Hub) -> Vec<&dyn crate::watch::Ready> {
        vec![&hub.nodes, &hub.zones, &hub.placed_pods]
    }

    fn wire(self: &Arc<Self>, c: crate::controller::Wired<ComputerRoom>) -> crate::controller::Wired<ComputerRoom> {
        let hub = self.ctx.watches.clone();
        let rooms = hub.rooms.store();
        let (for_nodes, for_zones) = (rooms.clone(), rooms);
        let hub_for_pods = hub.clone();
        // No debounce: triggers that keep coming would put a round off for ever. Pods coming and
        // going are absorbed by writing their sum at most every USAGE_EVERY instead.
        c.watches_shared_stream(hub.nodes.subscribe(), move |node: Arc<Node>| rooms_of_node(&for_nodes, &node))
            .watches_shared_stream(hub.zones.subscribe(), move |z: Arc<DeserializeGuard<Zone>>| {
                // A zone's labels, taint or nodes concern the rooms that serve it.
                let zone = z.name_any();
                for_zones
                    .state()
                    .iter()
                    .filter(|r| r.0.as_ref().is_ok_and(|r| r.spec.zone == zone))
                    .map(|r| ObjectRef::from_obj(r.as_ref()))
                    .collect::<Vec<_>>()
            })
            // A pod on a room's node changes what the room holds.
            .watches_shared_stream(hub.placed_pods.subscribe(), move |pod: Arc<Pod>| {
                let node = crate::watch::node_of(&pod);
                node.and_then(|n| hub_for_pods.nodes.get(&ObjectRef::new(&n)))
                    .and_then(|n| n.labels().get(labels::ROOM).cloned())
                    .map(|room: String| ObjectRef::<DeserializeGuard<ComputerRoom>>::new(&room))
                    .into_iter()
                    .collect::<Vec<_>>()
            })
    }

    fn error_policy(&self, _err: &crate::Error) -> Action {
        Action::requeue(Duration::from_secs(10))
    }

    async fn reconcile(&self, room: &ComputerRoom) -> Result<Action> {
        reconcile(room, self).await
    }

    fn forget(&self, _namespace: Option<&str>, name: &str) {
        self.own.forget_room(name);
    }
}

async fn publish(ctx: &Context, room: &ComputerRoom, type_: EventType, reason: &str, note: String) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &room.object_ref(&())).await {
        warn!(error = %e, "publishing an event failed");
    }
}

/// Gives back every node that carries this room's label but is not `keep`.
async fn release(ctx: &Context, name: &str, keep: &[String]) -> Result<()> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    for node in ctx.watches.nodes.state() {
        if node.labels().get(labels::ROOM).map(String::as_str) != Some(name) || keep.contains(&node.name_any()) {
            continue;
        }
        crate::apply::merge(&api, &node.name_any(), &build::release_patch(&node)).await?;
        info!(node = %node.name_any(), room = name, "node let go by its room");
    }
    Ok(())
}

async fn reconcile(room: &ComputerRoom, ctx: &Rooms) -> Result<Action> {
    let name = room.name_any();
    let api: Api<ComputerRoom> = Api::all(ctx.client.clone());
    let finalizers = room.finalizers().to_vec();
    if room.metadata.deletion_timestamp.is_some() {
        release(ctx, &name, &[]).await?;
        if finalizers.iter().any(|f| f == FINALIZER) {
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            let patch = json!({"metadata": {"resourceVersion": room.resource_version(), "finalizers": rest}});
            crate::apply::merge(&api, &name, &patch).await?;
        }
        ctx.own.forget_room(&name);
        if let Ok(mut w) = ctx.written.lock() {
            w.remove(&name);
        }
        return Ok(Action::await_change());
    }
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut all = finalizers.clone();
        all.push(FINALIZER.into());
        let patch = json!({"metadata": {"resourceVersion": room.resource_version(), "finalizers": all}});
        crate::apply::merge(&api, &name, &patch).await?;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }

    let nodes = ctx.watches.nodes.state();
    let mut mine: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).filter(|n| build::selects(&room.spec, n)).collect();
    mine.sort_by_key(|n| n.name_any());
    let zones = ctx.watches.zones.state();
    let zones: Vec<&Zone> = zones.iter().filter_map(|z| z.0.as_ref().ok()).collect();
    let rooms = ctx.watches.rooms.state();
    let rooms: Vec<&ComputerRoom> = rooms.iter().filter_map(|r| r.0.as_ref().ok()).collect();

    // Decided before anything is written: one refusal and no node is touched.
    let verdict = build::validate(&room.spec).and_then(|()| {
        let zone = zones.iter().find(|z| z.name_any() == room.spec.zone).ok_or_else(|| build::Refusal {
            reason: "ZoneNotFound",
            message: format!("spec.zone: zone {} does not exist; no node was labelled", room.spec.zone),
        })?;
        build::check(&name, &room.spec, &mine, &rooms, zone, &zones)?;
        Ok(*zone)
    });
    let mut labelled: Vec<String> = Vec::new();
    let observed = match &verdict {
        Ok(zone) => {
            let node_api: Api<Node> = Api::all(ctx.client.clone());
            for n in &mine {
                if let Some(patch) = build::label_patch(&name, &room.spec, zone, n) {
                    crate::apply::merge(&node_api, &n.name_any(), &patch).await?;
                    ctx.metrics.child_writes.with_label_values(&[CONTROLLER, "Node"]).inc();
                    info!(node = %n.name_any(), "node labelled and tainted for its room");
                }
                labelled.push(n.name_any());
            }
            // Nodes the room no longer selects go back.
            release(ctx, &name, &labelled).await?;
            let message = format!("{} node(s) carry the room's labels and zone {}'s taint", mine.len(), room.spec.zone);
            Observed::new("Ready", true, "NodesLabelled", message)
        }
        Err(refusal) => Observed::new("Ready", false, refusal.reason, refusal.message.clone()),
    };

    // Status, from what the caches show of the room's nodes and their pods.
    let held: Vec<&Node> = if verdict.is_ok() { mine.clone() } else { Vec::new() };
    let allocatable = build::allocatable(&held);
    let mut requested: BTreeMap<String, Milli> = BTreeMap::new();
    let mut tenants = std::collections::BTreeSet::new();
    for n in &held {
        for pod in ctx.watches.placed_pods.by_key(&n.name_any()) {
            for (k, v) in build::pod_requests(&pod) {
                *requested.entry(k).or_default() += v;
            }
            let ns = pod.namespace().unwrap_or_default();
            let meta = ctx.watches.namespaces.get(&ObjectRef::new(&ns));
            if let Some(t) = meta.as_ref().and_then(|m| m.labels().get(labels::TENANT).cloned()) {
                tenants.insert(t);
            }
        }
    }
    let requested_of = |node: &str| {
        let mut sum: BTreeMap<String, Milli> = BTreeMap::new();
        for pod in ctx.watches.placed_pods.by_key(node) {
            for (k, v) in build::pod_requests(&pod) {
                *sum.entry(k).or_default() += v;
            }
        }
        sum
    };
    let shared = plan::shared_nodes(&nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(), &zones, requested_of);
    let previous = room.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let status = ComputerRoomStatus {
        observed_generation: room.metadata.generation,
        conditions: conditions::merge(
            previous,
            std::slice::from_ref(&observed),
            room.metadata.generation,
            jiff::Timestamp::now(),
        ),
        phase: Some(build::phase(!held.is_empty(), !room.spec.inventory.is_empty())),
        nodes: held.iter().map(|n| n.name_any()).collect(),
        allocatable: build::format_sums(&allocatable),
        requested: build::format_sums(&requested),
        utilisation_percent: build::utilisation(&requested, &allocatable),
        tenants: tenants.into_iter().collect(),
        inventory: build::inventory(&room.spec),
        plan: if verdict.is_ok() { plan::summary(&room.spec, &shared) } else { None },
    };
    ctx.own.observe_room(&name, &allocatable, &requested);

    let was = room.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let changed_verdict = was.is_none_or(|c| c.reason != observed.reason || c.message != observed.message);
    if let (Err(refusal), true) = (&verdict, changed_verdict) {
        ctx.own.room_problems.with_label_values(&[refusal.reason]).inc();
        publish(ctx, room, EventType::Warning, refusal.reason, refusal.message.clone()).await;
    }
    // Unchanged (condition times aside): no write, so no event and no loop.
    let unchanged = room.status.as_ref().is_some_and(|s| crate::status::same(s, &status));
    // Only what the pods request moved: written at most every USAGE_EVERY, and looked at
    // again then.
    let same_verdict = room.status.as_ref().is_some_and(|s| conditions::same(&s.conditions, &status.conditions));
    let last = ctx.written.lock().ok().and_then(|w| w.get(&name).copied());
    if let (false, true, Some(at)) = (unchanged, same_verdict, last)
        && at.elapsed() < USAGE_EVERY
    {
        return Ok(Action::requeue(USAGE_EVERY - at.elapsed()));
    }
    if !unchanged {
        crate::status::write(&ctx.metrics, CONTROLLER, &api, &name, crate::status::Body::Whole(&status)).await?;
        if let Ok(mut w) = ctx.written.lock() {
            w.insert(name.clone(), std::time::Instant::now());
        }
    }
    Ok(if verdict.is_ok() {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(30))
    })
}

#[cfg(test)]
mod tests {
    //! Rounds against a fake API server: node n1 (unlabelled), n2 (another room's), n3 (this
    //! room's once, no longer selected); zone extranet.
    use super::*;
    use crate::fake_api::{self, writes};
    use serde_json::{Value, json};

    fn room(nodes: &[&str], finalizer: bool, deleting: bool) -> ComputerRoom {
        let mut v = json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "ComputerRoom",
            "metadata": {"name": "hq", "resourceVersion": "5", "generation": 1},
            "spec": {"department": "GZ", "zone": "extranet", "nodes": {"names": nodes}}
        });
        if finalizer {
            v["metadata"]["finalizers"] = json!([FINALIZER, "example.com/keep"]);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        }
        fake_api::object(v)
    }

    async fn rooms_over(r: &ComputerRoom, n1_room: Option<&str>) -> (Arc<Rooms>, fake_api::Recorded) {
        let node = |name: &str, labels: Value| {
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "resourceVersion": "2", "labels": labels},
                   "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}})
        };
        let n1 = match n1_room {
            Some(room) => json!({"kubernetes.io/arch": "amd64", (labels::ROOM): room}),
            None => json!({"kubernetes.io/arch": "amd64"}),
        };
        let zone = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone",
            "metadata": {"name": "extranet", "resourceVersion": "3"},
            "spec": {"kind": "Extranet", "nodeSelector": {"zone": "extranet"}}});
        let (ctx, recorded) = fake_api::context(vec![
            ("/apis/zhengyun.io/v1alpha1/computerrooms", vec![serde_json::to_value(r).unwrap_or_default()]),
            ("/apis/zhengyun.io/v1alpha1/zones", vec![zone]),
            (
                "/api/v1/nodes",
                vec![
                    node("n1", n1),
                    node("n2", json!({(labels::ROOM): "other"})),
                    node("n3", json!({(labels::ROOM): "hq", "zone": "extranet"})),
                ],
            ),
        ]);
        let own = metrics::RoomMetrics::new(&ctx.metrics);
        let rooms = controller(ctx.clone(), own);
        let hub = &ctx.watches;
        let mut reads = <Rooms as crate::controller::Reconciler>::reads(hub);
        reads.extend([&hub.rooms as &dyn crate::watch::Ready, &hub.namespaces]);
        fake_api::listed(&reads).await;
        (rooms, recorded)
    }

    fn without_events(recorded: &fake_api::Recorded) -> Vec<String> {
        writes(recorded).into_iter().filter(|w| !w.contains("/events")).collect()
    }

    #[tokio::test]
    async fn a_room_takes_its_finalizer_first_then_labels_its_nodes_and_lets_go_of_the_rest() {
        let fresh = room(&["n1"], false, false);
        let (rooms, recorded) = rooms_over(&fresh, None).await;
        reconcile(&fresh, &rooms).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writes(&recorded), ["PATCH /apis/zhengyun.io/v1alpha1/computerrooms/hq"], "no node before it");

        let held = room(&["n1"], true, false);
        let (rooms, recorded) = rooms_over(&held, None).await;
        reconcile(&held, &rooms).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            without_events(&recorded),
            [
                "PATCH /api/v1/nodes/n1",
                "PATCH /api/v1/nodes/n3",
                "PATCH /apis/zhengyun.io/v1alpha1/computerrooms/hq/status"
            ]
        );
        let body = |node: &str| recorded.all().into_iter().find(|r| r.uri.contains(node)).map(|r| r.body);
        let labelled = body("/nodes/n1").unwrap_or_default();
        assert_eq!(labelled["metadata"]["labels"][labels::ROOM], json!("hq"));
        assert_eq!(labelled["metadata"]["labels"]["zone"], json!("extranet"), "the zone's selector");
        let released = body("/nodes/n3").unwrap_or_default();
        assert_eq!(released["metadata"]["labels"][labels::ROOM], Value::Null);
        assert!(!writes(&recorded).iter().any(|w| w.contains("/nodes/n2")), "another room's node is not touched");
    }

    #[tokio::test]
    async fn a_node_of_another_room_refuses_the_whole_room_and_touches_no_node() {
        let greedy = room(&["n1", "n2"], true, false);
        let (rooms, recorded) = rooms_over(&greedy, None).await;
        reconcile(&greedy, &rooms).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!writes(&recorded).iter().any(|w| w.contains("/nodes/")), "{:#?}", writes(&recorded));
        let status =
            recorded.all().into_iter().rfind(|r| r.line().ends_with("/status")).map(|r| r.body["status"].clone());
        let ready = status.map(|s| s["conditions"][0].clone()).unwrap_or_default();
        assert_eq!((ready["status"].clone(), ready["reason"].clone()), (json!("False"), json!("NodeInTwoRooms")));
    }

    #[tokio::test]
    async fn a_deleted_room_gives_its_nodes_back_then_only_its_own_finalizer_goes() {
        let going = room(&["n1"], true, true);
        let (rooms, recorded) = rooms_over(&going, Some("hq")).await;
        reconcile(&going, &rooms).await.unwrap_or_else(|e| panic!("{e}"));
        let w = writes(&recorded);
        let at = |x: &str| w.iter().position(|l| l == x).unwrap_or_else(|| panic!("{x} not in {w:#?}"));
        let room_patch = at("PATCH /apis/zhengyun.io/v1alpha1/computerrooms/hq");
        assert!(at("PATCH /api/v1/nodes/n1") < room_patch && at("PATCH /api/v1/nodes/n3") < room_patch, "{w:#?}");
        assert!(!w.iter().any(|l| l.contains("/nodes/n2")), "{w:#?}");
        let body = recorded.all().into_iter().find(|r| r.uri.contains("/computerrooms/hq")).map(|r| r.body);
        assert_eq!(body.map(|b| b["metadata"]["finalizers"].clone()), Some(json!(["example.com/keep"])));
    }
}
