//! The admission gaps and the half-built tenant an outside audit found, each as the story that
//! failed: now refused with a message naming the field, or applied whole.

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{Endpoints, Service},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::api::{Tenant, Zone};
use zhengyun_e2e::{
    Cleanup, Operator, SECONDS, apply_tenant, as_user, client, condition, events_about, operator_with_webhook, refused,
    run_tool, tenant, wait_for, wait_ready,
};

fn zone(name: &str, spec: serde_json::Value) -> Zone {
    serde_json::from_value(
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "Zone", "metadata": {"name": name}, "spec": spec}),
    )
    .expect("zone")
}

#[tokio::test]
async fn hardening_a_zone_must_select_its_nodes_and_an_intranet_reaches_no_internet_in_pieces() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "zone-checks").await;
    let zones: Api<Zone> = Api::all(client.clone());
    let pp = PostParams::default();
    refused(
        zones.create(&pp, &zone("hz-empty", json!({"kind": "Extranet", "nodeSelector": {}}))).await,
        "spec.nodeSelector",
    );
    refused(
        zones.create(&pp, &zone("hz-badkey", json!({"kind": "Extranet", "nodeSelector": {"bad key": "x"}}))).await,
        "spec.nodeSelector: label key 'bad key'",
    );
    refused(
        zones
            .create(
                &pp,
                &zone(
                    "hz-halves",
                    json!({"kind": "Intranet", "nodeSelector": {"zone": "hz"}, "egress": ["0.0.0.0/1", "128.0.0.0/1"]}),
                ),
            )
            .await,
        "cover the whole IPv4 address space",
    );
    refused(
        zones
            .create(
                &pp,
                &zone(
                    "hz-public",
                    json!({"kind": "Intranet", "nodeSelector": {"zone": "hz"}, "ingress": ["59.255.0.0/16"]}),
                ),
            )
            .await,
        "spec.ingress[0]: 59.255.0.0/16 is outside private address space",
    );
    let _gone = Cleanup(vec![vec!["delete", "zone", "hz-public", "--ignore-not-found"]]);
    zones
        .create(
            &pp,
            &zone(
                "hz-public",
                json!({"kind": "Intranet", "nodeSelector": {"zone": "hz"}, "ingress": ["59.255.0.0/16"], "allowPublicRanges": true}),
            ),
        )
        .await
        .expect("explicitly allowed");
}

#[tokio::test]
async fn hardening_tenant_owners_cannot_claim_outside_addresses_or_write_endpoints() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "services").await;
    apply_tenant(&client, &tenant("svc-a", &["apps"])).await;
    wait_ready(&client, "svc-a").await;
    let owner = as_user("svc-a-owner", &[]).await;
    let services: Api<Service> = Api::namespaced(owner.clone(), "svc-a-apps");
    let svc = |name: &str, spec: serde_json::Value| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("svc")
    };
    let pp = PostParams::default();
    refused(
        services.create(&pp, &svc("hijack", json!({"ports": [{"port": 80}], "externalIPs": ["10.96.0.10"]}))).await,
        "spec.externalIPs",
    );
    refused(
        services.create(&pp, &svc("np", json!({"type": "NodePort", "ports": [{"port": 80}]}))).await,
        "zone extranet allows ClusterIP only",
    );
    refused(
        services.create(&pp, &svc("lb", json!({"type": "LoadBalancer", "ports": [{"port": 80}]}))).await,
        "not LoadBalancer",
    );
    services
        .create(&pp, &svc("web", json!({"ports": [{"port": 80}], "selector": {"app": "web"}})))
        .await
        .expect("ClusterIP");
    // A Service without a selector, and Endpoints pointing anywhere (CVE-2021-25740): refused.
    let ep: Endpoints = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
    )
    .expect("ep");
    refused(Api::<Endpoints>::namespaced(owner.clone(), "svc-a-apps").create(&pp, &ep).await, "forbidden");
}

#[tokio::test]
async fn hardening_a_zone_may_allow_nodeport_services() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "nodeport").await;
    let _gone = Cleanup(vec![vec!["delete", "zone", "np-zone", "--ignore-not-found"]]);
    Api::<Zone>::all(client.clone())
        .create(
            &PostParams::default(),
            &zone("np-zone", json!({"kind": "Extranet", "nodeSelector": {"zhengyun.io/zone": "np-zone"}, "allowedServiceTypes": ["NodePort"]})),
        )
        .await
        .expect("zone");
    let mut t = tenant("np-a", &["apps"]);
    t.spec.zone = "np-zone".into();
    // The webhook knows the new zone once its watch has seen it: a moment after the create.
    let tenants: Api<Tenant> = Api::all(client.clone());
    zhengyun_e2e::wait_for("the webhook to know the new zone", Duration::from_secs(30), || {
        let (tenants, t) = (tenants.clone(), t.clone());
        async move {
            tenants.patch("np-a", &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&t)).await.ok().map(|_| ())
        }
    })
    .await;
    wait_ready(&client, "np-a").await;
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "web"}}})).expect("svc");
    Api::<Service>::namespaced(as_user("np-a-owner", &[]).await, "np-a-apps")
        .create(&PostParams::default(), &svc)
        .await
        .expect("NodePort where the zone allows it");
    // What the zone does not list stays refused, in this zone and in one that lists nothing.
    let mut lb = svc.clone();
    lb.metadata.name = Some("lb".into());
    if let Some(spec) = lb.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
    }
    let owner = as_user("np-a-owner", &[]).await;
    refused(Api::<Service>::namespaced(owner, "np-a-apps").create(&PostParams::default(), &lb).await, "spec.type");
    let plain = tenant("np-b", &["apps"]);
    apply_tenant(&client, &plain).await;
    wait_ready(&client, "np-b").await;
    let owner = as_user("np-b-owner", &[]).await;
    refused(Api::<Service>::namespaced(owner, "np-b-apps").create(&PostParams::default(), &svc).await, "spec.type");
    Api::<Tenant>::all(client.clone()).delete("np-a", &DeleteParams::default()).await.expect("delete");
    Api::<Tenant>::all(client.clone()).delete("np-b", &DeleteParams::default()).await.expect("delete");
}

#[tokio::test]
async fn hardening_owners_may_not_be_everyone_and_bad_limits_are_refused_up_front() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "tenant-checks").await;
    let api: Api<Tenant> = Api::all(client.clone());
    let pp = PostParams::default();
    for (kind, name) in
        [("Group", "system:authenticated"), ("Group", "system:serviceaccounts"), ("User", "system:anonymous")]
    {
        let mut t = serde_json::to_value(tenant("own-all", &["apps"])).expect("json");
        t["spec"]["owners"] = json!([{"kind": kind, "name": name}]);
        let t: Tenant = serde_json::from_value(t).expect("tenant");
        refused(api.create(&pp, &t).await, "spec.owners[0].name");
    }
    // defaultLimit above max: the LimitRange would fail on the API server half-way through.
    let mut t = serde_json::to_value(tenant("lim-bad", &["apps"])).expect("json");
    t["spec"]["limits"] = json!({"defaultLimit": {"cpu": 4}, "max": {"cpu": 2}});
    let t: Tenant = serde_json::from_value(t).expect("tenant");
    refused(api.create(&pp, &t).await, "spec.limits.defaultLimit.cpu: is larger than spec.limits.max.cpu");
}

#[tokio::test]
async fn hardening_a_fractional_cpu_written_as_a_yaml_number_is_a_quantity() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "numbers").await;
    let dir = zhengyun_e2e::workdir("numbers");
    let file = dir.join("tenant.yaml");
    std::fs::write(
        &file,
        "apiVersion: zhengyun.io/v1alpha1\nkind: Tenant\nmetadata: {name: frac}\nspec:\n  department: {code: FRAC, name: Fractions}\n  zone: extranet\n  securityLevel: 2\n  owners: [{kind: User, name: frac-owner}]\n  namespaces: [{suffix: apps}]\n  quota: {cpu: 0.5, memory: 1Gi}\n  limits: {defaultRequest: {cpu: 0.25}, max: {cpu: 0.5}}\n",
    )
    .expect("write");
    let (ok, out) = run_tool("kubectl", &["apply", "-f", &file.display().to_string()], None);
    assert!(ok, "{out}");
    let t = wait_ready(&client, "frac").await;
    let status = t.status.unwrap_or_default();
    assert_eq!(status.quota.map(|q| q.hard.get("requests.cpu").cloned()), Some(Some("500m".into())));
    Api::<Tenant>::all(client.clone()).delete("frac", &DeleteParams::default()).await.expect("delete");
}

/// A child the API server itself refuses (here by a ValidatingAdmissionPolicy, independent of
/// zhengyun): the tenant's isolation and access are still applied, and the failure is a
/// condition, an Event and a metric.
#[tokio::test]
async fn hardening_a_refused_child_never_leaves_a_tenant_without_isolation() {
    let client = client().await;
    let _cleanup = Cleanup(vec![
        vec!["delete", "validatingadmissionpolicybinding", "zhengyun-e2e-refuse-limits", "--ignore-not-found"],
        vec!["delete", "validatingadmissionpolicy", "zhengyun-e2e-refuse-limits", "--ignore-not-found"],
    ]);
    let dir = zhengyun_e2e::workdir("vap");
    let file = dir.join("vap.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: zhengyun-e2e-refuse-limits}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["limitranges"]}
  validations:
  - expression: "false"
    message: "LimitRanges are refused here (an injected failure)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: zhengyun-e2e-refuse-limits}
spec:
  policyName: zhengyun-e2e-refuse-limits
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {zhengyun.io/tenant: half}
"#,
    )
    .expect("write");
    let (ok, out) = run_tool("kubectl", &["apply", "-f", &file.display().to_string()], None);
    assert!(ok, "{out}");
    // The binding takes a moment to be in force.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let op = Operator::start("lease-half", "op-half").await;
    let mut t = serde_json::to_value(tenant("half", &["apps", "data"])).expect("json");
    t["spec"]["limits"] = json!({"defaultRequest": {"cpu": "100m"}, "max": {"cpu": "2"}});
    let t: Tenant = serde_json::from_value(t).expect("tenant");
    apply_tenant(&client, &t).await;
    let failed = wait_for("Ready=False ApplyFailed", SECONDS, || async {
        let t = Api::<Tenant>::all(client.clone()).get("half").await.ok()?;
        let (status, reason, message) = condition(&t, "Ready")?;
        (status == "False" && reason == "ApplyFailed").then_some(message)
    })
    .await;
    assert!(failed.contains("LimitRange half-apps/zhengyun-tenant") && failed.contains("injected failure"), "{failed}");
    for ns in ["half-apps", "half-data"] {
        let policies: Vec<String> = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert!(policies.contains(&"zhengyun-default-deny".to_string()), "{ns}: {policies:?}");
        Api::<RoleBinding>::namespaced(client.clone(), ns).get("zhengyun-tenant").await.expect("owners bound");
    }
    let events = events_about(&client, "Tenant", "half").await;
    assert!(events.iter().any(|e| e.starts_with("ApplyFailed: LimitRange")), "{events:?}");
    assert_eq!(op.metric("zhengyun_tenant_ready{tenant=\"half\"}").await, Some(0.0), "{}", op.metrics().await);
    assert!(
        op.metric("zhengyun_child_apply_failures_total{controller=\"tenant\",kind=\"LimitRange\"}").await >= Some(1.0),
        "{}",
        op.metrics().await
    );

    // Lift the refusal: the tenant completes by itself.
    drop(_cleanup);
    wait_ready(&client, "half").await;
    Api::<Tenant>::all(client.clone()).delete("half", &DeleteParams::default()).await.expect("delete");
}

#[tokio::test]
async fn hardening_creating_and_deleting_tenants_logs_no_finalizer_errors() {
    let client = client().await;
    let op = Operator::start("lease-finalizers", "op-finalizers").await;
    let api: Api<Tenant> = Api::all(client.clone());
    let names: Vec<String> = (0..6).map(|i| format!("fin-{i}")).collect();
    for n in &names {
        apply_tenant(&client, &tenant(n, &["apps"])).await;
    }
    for n in &names {
        wait_ready(&client, n).await;
    }
    for n in &names {
        api.delete(n, &DeleteParams::default()).await.expect("delete");
    }
    for n in &names {
        wait_for(&format!("{n} gone"), SECONDS, || async { api.get_opt(n).await.ok()?.is_none().then_some(()) }).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = op.metrics().await;
    assert!(!metrics.contains("category=\"finalizer\""), "finalizer outcomes counted as errors:\n{metrics}");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("failed to remove finalizer") && !log.contains("failed to add finalizer"), "{log}");
}
