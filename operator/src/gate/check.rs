//! What the webhook does with the gate: puts it first, and refuses any pod without it there as
//! built, or with anything added to it that could change what it runs (a volume mounted over its
//! binary would make it the tenant's code, running before isolation).

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::{CONTAINER, GATED_LABEL};

/// Fields the API server itself may add to a container the webhook wrote.
const SERVER_DEFAULTS: &[&str] = &["terminationMessagePath"];

fn as_value(c: &Container) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// How `actual` differs from `gate` as built (every field it says, and nothing else but
/// defaults), if it does: the first field that differs.
fn differs(actual: &Container, gate: &Container) -> Option<String> {
    let (a, g) = (as_value(actual), as_value(gate));
    let (Some(am), Some(gm)) = (a.as_object(), g.as_object()) else { return Some("the container".into()) };
    if let Some(k) = am.keys().find(|k| !gm.contains_key(*k) && !SERVER_DEFAULTS.contains(&k.as_str())) {
        return Some(k.clone());
    }
    gm.iter().find(|(k, gv)| !am.get(*k).is_some_and(|av| crate::apply::covers(av, gv))).map(|(k, _)| k.clone())
}

fn is_gate(actual: &Container, gate: &Container) -> bool {
    differs(actual, gate).is_none()
}

/// The JSON patch that puts `gate` first among the pod's init containers (nothing when it is
/// already there, as on the webhook's reinvocation).
pub fn inject(pod: &Pod, gate: &Container) -> Vec<Value> {
    let init = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref());
    let mut ops = match init {
        Some(list) if list.first().is_some_and(|c| is_gate(c, gate)) => Vec::new(),
        // Ours from an earlier call (the API server may call again after other webhooks):
        // made as built again; anything a tenant put there under that name is replaced too.
        Some(list) if list.first().is_some_and(|c| c.name == CONTAINER) => {
            vec![json!({"op": "replace", "path": "/spec/initContainers/0", "value": gate})]
        }
        Some(list) if !list.is_empty() => vec![json!({"op": "add", "path": "/spec/initContainers/0", "value": gate})],
        _ => vec![json!({"op": "add", "path": "/spec/initContainers", "value": [gate]})],
    };
    let labels = pod.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(GATED_LABEL)).map(String::as_str) != Some("true") {
        ops.push(match labels {
            Some(_) => json!({"op": "add", "path": format!("/metadata/labels/{}", GATED_LABEL.replace('/', "~1")), "value": "true"}),
            None => json!({"op": "add", "path": "/metadata/labels", "value": {GATED_LABEL: "true"}}),
        });
    }
    ops
}

/// A new tenant pod: the gate first and intact, and no other container with its name.
pub fn check_create(pod: &Pod, gate: &Container) -> Result<(), String> {
    let Some(spec) = pod.spec.as_ref() else { return Err("spec: missing".into()) };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    match init.first() {
        Some(first) if first.name == CONTAINER => {
            if let Some(field) = differs(first, gate) {
                return Err(format!(
                    "spec.initContainers[0].{field} ({CONTAINER}): the isolation gate is zhengyun's and may not be changed"
                ));
            }
        }
        _ => {
            return Err(format!(
                "spec.initContainers[0]: must be the isolation gate {CONTAINER}, which keeps the pod's containers from \
                 starting before its network isolation is in force"
            ));
        }
    }
    let named = |field: &str, list: &[Container], skip: usize| {
        list.iter().enumerate().skip(skip).find(|(_, c)| c.name == CONTAINER).map(|(i, _)| format!("spec.{field}[{i}]"))
    };
    let taken = named("initContainers", init, 1).or_else(|| named("containers", &spec.containers, 0)).or_else(|| {
        spec.ephemeral_containers
            .iter()
            .flatten()
            .position(|c| c.name == CONTAINER)
            .map(|i| format!("spec.ephemeralContainers[{i}]"))
    });
    match taken {
        Some(field) => Err(format!("{field}.name: {CONTAINER} is reserved for zhengyun's isolation gate")),
        None => Ok(()),
    }
}

/// An update: a gate the pod was created with stays as it was (the API server lets an init
/// container's image change; a changed gate image would run the tenant's code first the next
/// time the pod's sandbox is made again).
pub fn check_update(old: &Pod, new: &Pod) -> Result<(), String> {
    let first = |p: &Pod| p.spec.as_ref().and_then(|s| s.init_containers.as_ref()).and_then(|l| l.first().cloned());
    match (first(old), first(new)) {
        (Some(o), n) if o.name == CONTAINER => {
            if n.as_ref().map(as_value) != Some(as_value(&o)) {
                return Err(format!(
                    "spec.initContainers[0] ({CONTAINER}): the isolation gate is zhengyun's and may not be changed"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Config, build::gate_container};

    fn gate() -> Container {
        gate_container(
            &Config { image: "localhost/zhengyun/probe:0.1.0".into(), namespace: "zhengyun-system".into() },
            "10.0.0.77",
        )
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn app() -> Value {
        json!({"name": "app", "image": "app:1"})
    }

    /// The pod as the validating webhook sees it: the patch applied, and the API server's
    /// defaults added.
    fn patched(p: &Pod) -> Pod {
        let mut v = serde_json::to_value(p).expect("json");
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(inject(p, &gate()))).expect("patch");
        json_patch::patch(&mut v, &patch).expect("applies");
        if let Some(init) = v["spec"]["initContainers"].as_array_mut() {
            for c in init {
                c["terminationMessagePath"] = json!("/dev/termination-log");
            }
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn the_gate_goes_first_once() {
        let bare = pod(json!({"spec": {"containers": [app()]}}));
        let with = patched(&bare);
        assert_eq!(with.spec.as_ref().and_then(|s| s.init_containers.as_ref()).map(Vec::len), Some(1));
        assert_eq!(check_create(&with, &gate()), Ok(()));
        assert!(inject(&with, &gate()).is_empty(), "reinvoked, the webhook adds no second gate");
        assert_eq!(with.metadata.labels.as_ref().and_then(|l| l.get(GATED_LABEL)).map(String::as_str), Some("true"));
        let theirs =
            pod(json!({"spec": {"initContainers": [{"name": "migrate", "image": "m:1"}], "containers": [app()]}}));
        let with = patched(&theirs);
        let names: Vec<String> =
            with.spec.and_then(|s| s.init_containers).unwrap_or_default().into_iter().map(|c| c.name).collect();
        assert_eq!(names, [CONTAINER, "migrate"]);
    }

    #[test]
    fn a_tenant_cannot_replace_move_or_subvert_the_gate() {
        let mut g = serde_json::to_value(gate()).expect("json");
        // A volume over the gate's binary would run the tenant's code before isolation.
        g["volumeMounts"] = json!([{"name": "x", "mountPath": "/probe", "subPath": "probe"}]);
        let mounted = pod(json!({"spec": {"initContainers": [g], "containers": [app()]}}));
        assert!(check_create(&mounted, &gate()).unwrap_err().contains("may not be changed"));
        let mut other = serde_json::to_value(gate()).expect("json");
        other["image"] = json!("evil:1");
        assert!(
            check_create(&pod(json!({"spec": {"initContainers": [other], "containers": [app()]}})), &gate()).is_err()
        );
        let second =
            pod(json!({"spec": {"initContainers": [{"name": "first", "image": "x"}, gate()], "containers": [app()]}}));
        assert!(check_create(&second, &gate()).unwrap_err().starts_with("spec.initContainers[0]"));
        let twice =
            pod(json!({"spec": {"initContainers": [gate()], "containers": [{"name": CONTAINER, "image": "x"}]}}));
        assert!(check_create(&twice, &gate()).unwrap_err().starts_with("spec.containers[0].name"));
        let none = pod(json!({"spec": {"containers": [app()]}}));
        assert!(check_create(&none, &gate()).is_err());
    }

    #[test]
    fn an_update_keeps_the_gate_as_created() {
        let old = patched(&pod(json!({"spec": {"containers": [app()]}})));
        assert_eq!(check_update(&old, &old.clone()), Ok(()));
        let mut new = serde_json::to_value(&old).expect("json");
        new["spec"]["initContainers"][0]["image"] = json!("evil:1");
        let new: Pod = serde_json::from_value(new).expect("pod");
        assert!(check_update(&old, &new).unwrap_err().contains("may not be changed"));
        // A pod made before the gate existed is left alone.
        let before = pod(json!({"spec": {"containers": [app()]}}));
        assert_eq!(check_update(&before, &before.clone()), Ok(()));
    }
}
