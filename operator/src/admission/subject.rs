//! What an admission request is about, read once by its group and kind into a typed value.
//!
//! The webhook is registered fail-closed, so a body it cannot read is refused with the parse
//! error, never admitted; a kind it was not registered for is refused too (a registration
//! edited by hand must not turn into an open door).

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Service},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    Resource,
    core::{DynamicObject, admission::AdmissionRequest},
};
use serde::de::DeserializeOwned;

use crate::{
    api::{ExchangeChannel, SmCertificate, Tenant, Zone, department::Department},
    labels,
};

/// A request's object, typed.
#[derive(Debug)]
pub enum Subject {
    Pod {
        new: Box<Pod>,
        /// On UPDATE, the pod as stored.
        old: Option<Box<Pod>>,
    },
    Namespace {
        old: Box<Namespace>,
        new: Box<Namespace>,
    },
    /// A ResourceQuota, LimitRange, NetworkPolicy, RoleBinding, or a gateway's Deployment or
    /// ConfigMap: zhengyun's own when either version carries the managed label.
    Owned {
        kind: &'static str,
        managed: bool,
        /// The new NetworkPolicy, when that is what it is (not on DELETE).
        policy: Option<Box<NetworkPolicy>>,
    },
    Service(Box<Service>),
    /// A ReplicaSet labelled as a gateway's.
    ReplicaSet(Box<ReplicaSet>),
    Zone(Box<Zone>),
    Tenant {
        new: Box<Tenant>,
        old: Option<Box<Tenant>>,
    },
    Channel {
        new: Box<ExchangeChannel>,
        old: Option<Box<ExchangeChannel>>,
    },
    Certificate(Box<SmCertificate>),
    Department {
        new: Box<Department>,
        old: Option<Box<Department>>,
    },
    /// A Tenant stored malformed (under an older, looser schema) that is being deleted, whose
    /// update leaves its spec alone: an admin removing its finalizer by hand, as the operator
    /// cannot run its cleanup on a spec it cannot read.
    MalformedTenantLetGo,
}

/// Reads one version of the object as `T`; `None` when the request carries none. A refusal
/// names the field that does not read (`spec.to.port: invalid type: string "https", expected
/// i32`): the mutating webhook sees a body before the API server's schema does, so its answer is
/// the one a user gets.
fn body<T: DeserializeOwned>(obj: &Option<DynamicObject>, kind: &str) -> Result<Option<Box<T>>, String> {
    let Some(obj) = obj else { return Ok(None) };
    let value = serde_json::to_value(obj).map_err(|e| format!("the {kind} does not parse: {e}"))?;
    serde_path_to_error::deserialize(value).map(Some).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("the {kind} does not parse: {inner}")
        } else {
            format!("the {kind} does not parse: {path}: {inner}")
        }
    })
}

fn required<T>(v: Option<T>, kind: &str, which: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("the request carries no {which} {kind}"))
}

fn managed<K: Resource>(obj: &Option<Box<K>>) -> bool {
    obj.as_ref().is_some_and(|o| {
        o.meta().labels.as_ref().and_then(|l| l.get(labels::MANAGED_BY)).map(String::as_str) == Some(labels::MANAGER)
    })
}

/// Both versions of an owned kind, each of which must parse.
fn owned<K: Resource + DeserializeOwned>(
    req: &AdmissionRequest<DynamicObject>,
    kind: &'static str,
) -> Result<(bool, Option<Box<K>>), String> {
    let new: Option<Box<K>> = body(&req.object, kind)?;
    let old: Option<Box<K>> = body(&req.old_object, kind)?;
    if new.is_none() && old.is_none() {
        return Err(format!("the request carries no {kind}"));
    }
    Ok((managed(&new) || managed(&old), new))
}

/// An update of a Tenant being deleted that was already stored malformed and whose spec it
/// leaves as it was (only metadata, such as finalizers, changes).
fn letting_go_of_malformed(req: &AdmissionRequest<DynamicObject>) -> bool {
    let (Some(new), Some(old)) = (&req.object, &req.old_object) else { return false };
    new.metadata.deletion_timestamp.is_some()
        && body::<Tenant>(&req.old_object, "Tenant").is_err()
        && new.data.get("spec") == old.data.get("spec")
}

/// Who asks: user name and groups.
pub fn caller(req: &AdmissionRequest<DynamicObject>) -> (String, Vec<String>) {
    (req.user_info.username.clone().unwrap_or_default(), req.user_info.groups.clone().unwrap_or_default())
}

/// The typed subject of a request, or why it cannot be read.
pub fn parse(req: &AdmissionRequest<DynamicObject>) -> Result<Subject, String> {
    let (group, kind) = (req.kind.group.as_str(), req.kind.kind.as_str());
    // The registrations ask for these versions (the API server converts others to them): a
    // body of another version would be read into the wrong type.
    let expected = if group == "zhengyun.io" { "v1alpha1" } else { "v1" };
    if req.kind.version != expected {
        return Err(format!(
            "zhengyun's webhook reads {group}/{expected} {kind}, not {}: check its registration",
            req.kind.version
        ));
    }
    let new = &req.object;
    Ok(match (group, kind) {
        ("", "Pod") => {
            Subject::Pod { new: required(body(new, kind)?, kind, "new")?, old: body(&req.old_object, kind)? }
        }
        ("", "Namespace") => Subject::Namespace {
            old: required(body(&req.old_object, kind)?, kind, "old")?,
            new: required(body(new, kind)?, kind, "new")?,
        },
        ("", "Service") => Subject::Service(required(body(new, kind)?, kind, "new")?),
        ("", "ResourceQuota") => {
            let (managed, _) = owned::<ResourceQuota>(req, "ResourceQuota")?;
            Subject::Owned { kind: "ResourceQuota", managed, policy: None }
        }
        ("", "LimitRange") => {
            let (managed, _) = owned::<LimitRange>(req, "LimitRange")?;
            Subject::Owned { kind: "LimitRange", managed, policy: None }
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            let (managed, policy) = owned::<NetworkPolicy>(req, "NetworkPolicy")?;
            Subject::Owned { kind: "NetworkPolicy", managed, policy }
        }
        // A gateway's workload and its client CA: a tenant that could edit them could run
        // another image with the department's keys, or trust client certificates of its own.
        ("apps", "ReplicaSet") => Subject::ReplicaSet(required(body(new, kind)?, kind, "new")?),
        ("apps", "Deployment") => {
            let (managed, _) = owned::<Deployment>(req, "Deployment")?;
            Subject::Owned { kind: "Deployment", managed, policy: None }
        }
        ("", "ConfigMap") => {
            let (managed, _) = owned::<ConfigMap>(req, "ConfigMap")?;
            Subject::Owned { kind: "ConfigMap", managed, policy: None }
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            let (managed, _) = owned::<RoleBinding>(req, "RoleBinding")?;
            Subject::Owned { kind: "RoleBinding", managed, policy: None }
        }
        ("zhengyun.io", "Zone") => Subject::Zone(required(body(new, kind)?, kind, "new")?),
        ("zhengyun.io", "Tenant") => match body::<Tenant>(new, kind) {
            Ok(parsed) => Subject::Tenant { new: required(parsed, kind, "new")?, old: body(&req.old_object, kind)? },
            Err(_) if letting_go_of_malformed(req) => Subject::MalformedTenantLetGo,
            Err(why) => return Err(why),
        },
        ("zhengyun.io", "ExchangeChannel") => {
            Subject::Channel { new: required(body(new, kind)?, kind, "new")?, old: body(&req.old_object, kind)? }
        }
        ("zhengyun.io", "SmCertificate") => Subject::Certificate(required(body(new, kind)?, kind, "new")?),
        ("zhengyun.io", "Department") => {
            Subject::Department { new: required(body(new, kind)?, kind, "new")?, old: body(&req.old_object, kind)? }
        }
        _ => return Err(format!("zhengyun's webhook does not handle {group}/{kind}: check its registration")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        group: &str,
        kind: &str,
        object: serde_json::Value,
        old: Option<serde_json::Value>,
    ) -> AdmissionRequest<DynamicObject> {
        let version = if group == "zhengyun.io" { "v1alpha1" } else { "v1" };
        let resource = format!("{}s", kind.to_lowercase());
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": resource},
                "name": "x",
                "namespace": "ns",
                "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": {"username": "someone"},
                "object": object,
                "oldObject": old,
                "dryRun": false
            }
        });
        let review: kube::core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_value(review).expect("review");
        review.try_into().expect("request")
    }

    #[test]
    fn a_body_that_does_not_parse_is_refused_with_the_error() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "not a list"}});
        let err = parse(&request("", "Pod", pod, None)).expect_err("refused");
        assert!(err.starts_with("the Pod does not parse"), "{err}");
        let tenant = serde_json::json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "x"}, "spec": {"namespaces": 7}});
        assert!(parse(&request("zhengyun.io", "Tenant", tenant, None)).is_err());
    }

    /// Every kind the webhooks read: a body with one field of the wrong type is refused with
    /// that field's path, as a user who wrote `port: https` needs to be told.
    #[test]
    fn every_kind_refuses_an_unreadable_body_naming_the_field() {
        let z = "zhengyun.io/v1alpha1";
        let cases: Vec<(&str, &str, &str, serde_json::Value, &str)> = vec![
            ("", "v1", "Pod", serde_json::json!({"spec": {"containers": "not a list"}}), "spec.containers"),
            ("", "v1", "Namespace", serde_json::json!({"spec": {"finalizers": "kubernetes"}}), "spec.finalizers"),
            ("", "v1", "Service", serde_json::json!({"spec": {"ports": [{"port": "https"}]}}), "spec.ports[0].port"),
            ("", "v1", "ResourceQuota", serde_json::json!({"spec": {"hard": "lots"}}), "spec.hard"),
            ("", "v1", "LimitRange", serde_json::json!({"spec": {"limits": {}}}), "spec.limits"),
            (
                "networking.k8s.io",
                "networking.k8s.io/v1",
                "NetworkPolicy",
                serde_json::json!({"spec": {"podSelector": "all"}}),
                "spec.podSelector",
            ),
            (
                "apps",
                "apps/v1",
                "ReplicaSet",
                serde_json::json!({"spec": {"replicas": "two", "selector": {}}}),
                "spec.replicas",
            ),
            (
                "apps",
                "apps/v1",
                "Deployment",
                serde_json::json!({"spec": {"replicas": "two", "selector": {}}}),
                "spec.replicas",
            ),
            ("", "v1", "ConfigMap", serde_json::json!({"data": [1]}), "data"),
            (
                "rbac.authorization.k8s.io",
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                serde_json::json!({"roleRef": "admin"}),
                "roleRef",
            ),
            (
                "zhengyun.io",
                z,
                "Zone",
                serde_json::json!({"spec": {"kind": "Intranet", "nodeSelector": ["a"]}}),
                "spec.nodeSelector",
            ),
            ("zhengyun.io", z, "Tenant", serde_json::json!({"spec": {"namespaces": 7}}), "spec.namespaces"),
            (
                "zhengyun.io",
                z,
                "ExchangeChannel",
                serde_json::json!({"spec": {"from": {"tenant": "a"}, "to": {"tenant": "b", "port": "https"}, "purpose": "p"}}),
                "spec.to.port",
            ),
            (
                "zhengyun.io",
                z,
                "SmCertificate",
                serde_json::json!({"spec": {"issuerRef": {"name": "ca"}, "dnsNames": "a.example"}}),
                "spec.dnsNames",
            ),
            ("zhengyun.io", z, "Department", serde_json::json!({"spec": {"code": 12, "nameZh": "某局"}}), "spec.code"),
        ];
        for (group, api_version, kind, mut object, path) in cases {
            let obj = object.as_object_mut().expect("an object");
            obj.insert("apiVersion".into(), api_version.into());
            obj.insert("kind".into(), kind.into());
            obj.entry("metadata").or_insert_with(|| serde_json::json!({"name": "x"}));
            // Namespaces are read in both versions; the old one is the same body.
            let old = (kind == "Namespace").then(|| object.clone());
            let err = parse(&request(group, kind, object, old)).expect_err(kind);
            assert!(err.starts_with(&format!("the {kind} does not parse: {path}: ")), "{kind}: {err}");
        }
    }

    #[test]
    fn a_malformed_tenant_being_deleted_may_lose_its_finalizer_and_nothing_else() {
        let stored = serde_json::json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "x", "finalizers": ["zhengyun.io/tenant-protection"], "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"namespaces": 7}});
        let mut let_go = stored.clone();
        let_go["metadata"]["finalizers"] = serde_json::json!([]);
        assert!(matches!(
            parse(&request("zhengyun.io", "Tenant", let_go.clone(), Some(stored.clone()))),
            Ok(Subject::MalformedTenantLetGo)
        ));
        // The spec changed: still refused with the parse error.
        let mut edited = let_go.clone();
        edited["spec"]["namespaces"] = serde_json::json!(8);
        assert!(parse(&request("zhengyun.io", "Tenant", edited, Some(stored.clone()))).is_err());
        // Not being deleted: refused.
        let mut live = let_go;
        live["metadata"].as_object_mut().map(|m| m.remove("deletionTimestamp"));
        assert!(parse(&request("zhengyun.io", "Tenant", live, Some(stored))).is_err());
    }

    #[test]
    fn a_version_the_webhook_does_not_read_is_refused_naming_it() {
        let zone = serde_json::json!({"apiVersion": "zhengyun.io/v1beta1", "kind": "Zone", "metadata": {"name": "x"}, "spec": {}});
        let mut req = request("zhengyun.io", "Zone", zone, None);
        req.kind.version = "v1beta1".into();
        let err = parse(&req).expect_err("refused");
        assert!(err.contains("zhengyun.io/v1alpha1 Zone, not v1beta1"), "{err}");
    }

    #[test]
    fn an_unregistered_kind_is_refused() {
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
        let err = parse(&request("", "Secret", secret, None)).expect_err("refused");
        assert!(err.contains("does not handle /Secret"), "{err}");
    }

    #[test]
    fn a_gateways_deployment_and_client_ca_are_owned() {
        let dep = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sgw-a", "labels": {labels::MANAGED_BY: labels::MANAGER}}});
        let s = parse(&request("apps", "Deployment", dep, None)).expect("parses");
        assert!(matches!(s, Subject::Owned { kind: "Deployment", managed: true, .. }), "{s:?}");
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "own"}});
        let s = parse(&request("", "ConfigMap", cm, None)).expect("parses");
        assert!(matches!(s, Subject::Owned { kind: "ConfigMap", managed: false, .. }), "{s:?}");
    }

    #[test]
    fn owned_kinds_are_ours_when_either_version_is_labelled() {
        let ours = serde_json::json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "x", "labels": {labels::MANAGED_BY: labels::MANAGER}}});
        let theirs = serde_json::json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "x"}});
        let s = parse(&request("", "LimitRange", theirs.clone(), Some(ours))).expect("parses");
        assert!(matches!(s, Subject::Owned { kind: "LimitRange", managed: true, .. }), "{s:?}");
        let s = parse(&request("", "LimitRange", theirs, None)).expect("parses");
        assert!(matches!(s, Subject::Owned { managed: false, .. }), "{s:?}");
    }
}
