//! Owners run workloads in their own namespaces, and nothing more.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, ResourceQuota},
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::api::Tenant;
use zhengyun_e2e::{
    Operator, SECONDS, allowed, apply_tenant, as_user, client, must, run_tool, tenant, wait_for, wait_ready,
};

#[tokio::test]
async fn owners_run_workloads_but_cannot_change_the_rules_set_for_them() {
    let client = client().await;
    let _op = Operator::start("lease-access", "op-access").await;
    apply_tenant(&client, &tenant("acc-a", &["apps"])).await;
    apply_tenant(&client, &tenant("acc-b", &["apps"])).await;
    wait_ready(&client, "acc-a").await;
    wait_ready(&client, "acc-b").await;
    let owner = "acc-a-owner";

    // What SubjectAccessReview says.
    assert!(allowed(&client, owner, "create", "apps", "deployments", "acc-a-apps", None).await);
    assert!(allowed(&client, owner, "create", "", "pods", "acc-a-apps", None).await);
    assert!(
        allowed(&client, owner, "get", "", "resourcequotas", "acc-a-apps", None).await,
        "owners may read their quota"
    );
    assert!(
        !allowed(&client, owner, "create", "apps", "deployments", "acc-b-apps", None).await,
        "not in another tenant"
    );
    // 国密 certificates and CAs of their own; the cloud's cluster-wide CAs are the admins'.
    assert!(allowed(&client, owner, "create", "zhengyun.io", "smcertificates", "acc-a-apps", None).await);
    assert!(allowed(&client, owner, "create", "zhengyun.io", "smissuers", "acc-a-apps", None).await);
    assert!(!allowed(&client, owner, "create", "zhengyun.io", "smcertificates", "acc-b-apps", None).await);
    assert!(!allowed(&client, owner, "create", "zhengyun.io", "smclusterissuers", "", None).await);
    // Their own NetworkPolicies, inside the tenant (the webhook keeps them there and guards ours).
    assert!(allowed(&client, owner, "create", "networking.k8s.io", "networkpolicies", "acc-a-apps", None).await);
    for (verb, group, resource) in [
        ("update", "", "resourcequotas"),
        ("patch", "", "resourcequotas"),
        ("delete", "", "resourcequotas"),
        ("update", "", "limitranges"),
        ("update", "rbac.authorization.k8s.io", "rolebindings"),
        ("create", "", "endpoints"),
        ("create", "discovery.k8s.io", "endpointslices"),
    ] {
        assert!(
            !allowed(&client, owner, verb, group, resource, "acc-a-apps", None).await,
            "owner may {verb} {resource}"
        );
    }
    assert!(
        !allowed(&client, owner, "patch", "", "namespaces", "acc-a-apps", Some("acc-a-apps")).await,
        "owner may relabel its namespace"
    );
    assert!(!allowed(&client, owner, "update", "", "namespaces", "acc-a-apps", Some("acc-a-apps")).await);

    // And what really happens when the owner tries.
    let as_owner = as_user(owner, &[]).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "portal"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "portal"}},
            "template": {"metadata": {"labels": {"app": "portal"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(as_owner.clone(), "acc-a-apps")
        .create(&PostParams::default(), &deployment)
        .await
        .expect("owner deploys");
    let err = Api::<Deployment>::namespaced(as_owner.clone(), "acc-b-apps")
        .create(&PostParams::default(), &deployment)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("forbidden"), "{err}");
    let err = Api::<ResourceQuota>::namespaced(as_owner.clone(), "acc-a-apps")
        .patch("zhengyun-tenant", &PatchParams::default(), &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}})))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("forbidden"), "{err}");

    // Owners see their own tenant and its namespaces without a proxy: by name, and nothing else
    // cluster-wide.
    let tenants: Api<Tenant> = Api::all(as_owner.clone());
    let namespaces: Api<Namespace> = Api::all(as_owner.clone());
    let mine = wait_for("the owner reads its Tenant", SECONDS, || async { tenants.get("acc-a").await.ok() }).await;
    assert_eq!(mine.status.map(|s| s.namespaces), Some(vec!["acc-a-apps".to_string()]));
    wait_for("the owner reads its namespace", SECONDS, || async { namespaces.get("acc-a-apps").await.ok() }).await;
    for err in [
        tenants.get("acc-b").await.map(|_| ()).expect_err("another tenant"),
        tenants.list(&Default::default()).await.map(|_| ()).expect_err("every tenant"),
        namespaces.get("acc-b-apps").await.map(|_| ()).expect_err("another tenant's namespace"),
        namespaces.list(&Default::default()).await.map(|_| ()).expect_err("every namespace"),
    ] {
        assert!(err.to_string().contains("forbidden"), "{err}");
    }
    // What the owner guide says to run.
    let out = must(
        "kubectl get tenant -o wide as the owner",
        run_tool("kubectl", &["get", "tenant", "acc-a", "-o", "wide", "--as", owner], None),
    );
    assert!(out.contains("acc-a-apps"), "the namespaces are listed:\n{out}");
    // Read only: the owner cannot change the tenant it can now see.
    let err = tenants
        .patch("acc-a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"securityLevel": 2}})))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("forbidden"), "{err}");
}
