//! A tenant's life: created, changed, drifted, conflicting, deleted with Retain and Delete.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota},
    events::v1::Event,
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::{
    api::{ContainerLimits, CpuMemory, DeletionPolicy, Tenant, TenantNamespace, amount::Count},
    quantity,
};
use zhengyun_e2e::{
    Operator, SECONDS, SYSTEM_NAMESPACE, apply_tenant, as_user, client, condition, tenant, wait_for, wait_ready,
};

fn quota_sum(quotas: &[ResourceQuota], resource: &str, enforced: bool) -> i128 {
    quotas
        .iter()
        .filter_map(|q| {
            let m = if enforced { q.status.as_ref()?.hard.as_ref()? } else { q.spec.as_ref()?.hard.as_ref()? };
            m.get(resource).and_then(|v| quantity::parse(&v.0).ok())
        })
        .sum()
}

async fn tenant_quotas(client: &Client, tenant: &str) -> Vec<ResourceQuota> {
    Api::<ResourceQuota>::all(client.clone())
        .list(&ListParams::default().labels(&format!("zhengyun.io/tenant={tenant}")))
        .await
        .expect("listing quotas")
        .items
}

fn labels_of(ns: &Namespace) -> BTreeMap<String, String> {
    ns.metadata.labels.clone().unwrap_or_default()
}

async fn create_configmap(client: &Client, ns: &str, name: &str) {
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(BTreeMap::from([("record".into(), "a department's data".into())])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("creating a configmap");
}

async fn create_pvc(client: &Client, ns: &str, name: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("creating a PVC");
}

#[tokio::test]
async fn a_new_tenant_gets_everything_it_needs_and_follows_its_spec() {
    let client = client().await;
    let mut op = Operator::start("lease-lifecycle", "op-lifecycle").await;
    let mut t = tenant("edu", &["apps", "data"]);
    t.spec.security_level = 3;
    t.spec.limits = Some(ContainerLimits {
        default_request: Some(CpuMemory { cpu: Some("100m".into()), memory: Some("128Mi".into()) }),
        default_limit: Some(CpuMemory { cpu: Some("500m".into()), memory: Some("512Mi".into()) }),
        max: None,
    });
    apply_tenant(&client, &t).await;
    let ready = wait_ready(&client, "edu").await;
    let status = ready.status.clone().unwrap_or_default();
    assert_eq!(status.namespaces, vec!["edu-apps", "edu-data"]);
    assert_eq!(status.quota.as_ref().map(|q| q.hard["pods"].clone()).as_deref(), Some("10"));
    for c in ["NamespacesReady", "QuotaReady", "AccessReady", "NetworkReady"] {
        assert_eq!(condition(&ready, c).map(|c| c.0).as_deref(), Some("True"), "{c}");
    }

    let nsapi: Api<Namespace> = Api::all(client.clone());
    for ns in ["edu-apps", "edu-data"] {
        let l = labels_of(&nsapi.get(ns).await.expect("namespace exists"));
        assert_eq!(l["zhengyun.io/tenant"], "edu");
        assert_eq!(l["zhengyun.io/department"], "DEPT-edu");
        assert_eq!(l["zhengyun.io/zone"], "extranet");
        assert_eq!(l["pod-security.kubernetes.io/enforce"], "restricted", "等保 level 3 enforces restricted");
        let lr = Api::<LimitRange>::namespaced(client.clone(), ns).get("zhengyun-tenant").await.expect("limit range");
        let item = &lr.spec.expect("spec").limits[0];
        assert_eq!(item.default_request.as_ref().map(|m| m["cpu"].0.clone()).as_deref(), Some("100m"));
        let nps =
            Api::<NetworkPolicy>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("policies");
        let mut names: Vec<_> = nps.items.iter().map(|p| p.name_any()).collect();
        names.sort();
        assert_eq!(names, vec!["zhengyun-allow-tenant", "zhengyun-default-deny"]);
        let rb = Api::<RoleBinding>::namespaced(client.clone(), ns).get("zhengyun-tenant").await.expect("binding");
        assert_eq!(rb.subjects.expect("subjects")[0].name, "edu-owner");
    }
    // SREs count it Ready on the admin port; a healthy tenant has no series of its own by
    // default (tenancy::series).
    assert!(op.metric("zhengyun_tenant_conditions{status=\"True\",type=\"Ready\"}").await >= Some(1.0));
    assert_eq!(op.metric("zhengyun_tenant_ready{tenant=\"edu\"}").await, None);
    assert!(op.get("/readyz").await.contains("ready"));

    // One budget over both namespaces, enforced by the API server.
    let quotas = tenant_quotas(&client, "edu").await;
    assert_eq!(quotas.len(), 2);
    assert!(quota_sum(&quotas, "pods", false) <= 10_000 && quota_sum(&quotas, "pods", true) <= 10_000);
    wait_for("the whole budget split and enforced", SECONDS, || async {
        let q = tenant_quotas(&client, "edu").await;
        (quota_sum(&q, "pods", false) == 10_000
            && quota_sum(&q, "pods", true) == 10_000
            && quota_sum(&q, "requests.cpu", true) == 4_000)
            .then_some(())
    })
    .await;

    // Pod security for level 3 holds for everyone, the cloud admin included.
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}
    }))
    .expect("pod");
    let err = Api::<Pod>::namespaced(client.clone(), "edu-apps")
        .create(&PostParams::default(), &privileged)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("PodSecurity"), "{err}");

    // The quota follows the spec.
    t.spec.quota.pods = Some(Count::from(20));
    t.spec.namespaces.push(TenantNamespace { suffix: "web".into() });
    apply_tenant(&client, &t).await;
    wait_for("quota of 20 pods over three namespaces", SECONDS, || async {
        let q = tenant_quotas(&client, "edu").await;
        (q.len() == 3 && quota_sum(&q, "pods", true) == 20_000 && quota_sum(&q, "pods", false) == 20_000).then_some(())
    })
    .await;
    let ready = wait_ready(&client, "edu").await;
    assert_eq!(ready.status.map(|s| s.namespaces.len()), Some(3));
    assert_eq!(op.stop().await.map(|s| s.success()), Some(true), "the operator stops cleanly on SIGTERM");
    // ...and gives its Lease up, so another replica can lead at once instead of waiting.
    let lease = Api::<Lease>::namespaced(client.clone(), SYSTEM_NAMESPACE).get("lease-lifecycle").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None, "the Lease is released");
}

#[tokio::test]
async fn drift_is_repaired_within_seconds() {
    let client = client().await;
    let _op = Operator::start("lease-drift", "op-drift").await;
    apply_tenant(&client, &tenant("drift", &["apps"])).await;
    wait_ready(&client, "drift").await;
    let ns = "drift-apps";
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let nsapi: Api<Namespace> = Api::all(client.clone());

    quotas.delete("zhengyun-tenant", &DeleteParams::default()).await.expect("delete quota");
    policies.delete("zhengyun-default-deny", &DeleteParams::default()).await.expect("delete policy");
    let merge = PatchParams::default();
    bindings
        .patch(
            "zhengyun-tenant",
            &merge,
            &Patch::Merge(
                json!({"subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]}),
            ),
        )
        .await
        .expect("edit binding");
    nsapi
        .patch(ns, &merge, &Patch::Merge(json!({"metadata": {"labels": {"zhengyun.io/zone": "intranet", "pod-security.kubernetes.io/enforce": "privileged"}}})))
        .await
        .expect("edit labels");

    wait_for("every child repaired", SECONDS, || async {
        let q = quotas.get_opt("zhengyun-tenant").await.ok()??;
        let pods = q.spec?.hard?.get("pods")?.0.clone();
        policies.get_opt("zhengyun-default-deny").await.ok()??;
        let b = bindings.get("zhengyun-tenant").await.ok()?;
        let owner_back =
            b.subjects?.iter().map(|s| s.name.clone()).collect::<Vec<_>>() == vec!["drift-owner".to_string()];
        let l = labels_of(&nsapi.get(ns).await.ok()?);
        let labels_back = l.get("zhengyun.io/zone").map(String::as_str) == Some("extranet")
            && l.get("pod-security.kubernetes.io/enforce").map(String::as_str) == Some("baseline");
        (pods == "10" && owner_back && labels_back).then_some(())
    })
    .await;

    // An admin raising one namespace's share by hand cannot grow the tenant's total.
    quotas
        .patch("zhengyun-tenant", &merge, &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}})))
        .await
        .expect("edit quota");
    wait_for("quota back within the tenant's budget", SECONDS, || async {
        let q = tenant_quotas(&client, "drift").await;
        (quota_sum(&q, "pods", false) == 10_000 && quota_sum(&q, "pods", true) == 10_000).then_some(())
    })
    .await;
}

async fn events_for(client: &Client, tenant: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(tenant) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test]
async fn a_namespace_of_someone_else_is_never_taken_over() {
    let client = client().await;
    let _op = Operator::start("lease-conflict", "op-conflict").await;
    let nsapi: Api<Namespace> = Api::all(client.clone());
    // A namespace a department created by hand, with data in it.
    let manual = Namespace {
        metadata: ObjectMeta { name: Some("taken-apps".into()), ..Default::default() },
        ..Default::default()
    };
    nsapi.create(&PostParams::default(), &manual).await.expect("manual namespace");
    create_configmap(&client, "taken-apps", "records").await;
    // A tenant whose namespace name another tenant's spec also produces.
    apply_tenant(&client, &tenant("share-a", &["b"])).await;
    wait_ready(&client, "share-a").await;

    apply_tenant(&client, &tenant("taken", &["apps", "web"])).await;
    apply_tenant(&client, &tenant("share", &["a-b"])).await;
    let api: Api<Tenant> = Api::all(client.clone());
    for (name, ns, why) in
        [("taken", "taken-apps", "not created by zhengyun"), ("share", "share-a-b", "belongs to tenant share-a")]
    {
        let t = wait_for(&format!("{name} reports a conflict"), SECONDS, || async {
            let t = api.get(name).await.ok()?;
            (condition(&t, "Conflict").map(|c| c.0).as_deref() == Some("True")).then_some(t)
        })
        .await;
        let (status, reason, message) = condition(&t, "Ready").expect("Ready condition");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflict"));
        assert!(message.contains(ns) && message.contains(why), "{message}");
        wait_for(&format!("a NamespaceConflict event on {name}"), SECONDS, || async {
            (!events_for(&client, name, "NamespaceConflict").await.is_empty()).then_some(())
        })
        .await;
    }
    // The others' namespaces are untouched; the free one was created.
    let l = labels_of(&nsapi.get("taken-apps").await.expect("still there"));
    assert!(!l.contains_key("zhengyun.io/tenant"), "{l:?}");
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "taken-apps").get_opt("records").await.expect("get").is_some()
    );
    assert!(
        Api::<ResourceQuota>::namespaced(client.clone(), "taken-apps")
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert_eq!(
        labels_of(&nsapi.get("taken-web").await.expect("created")).get("zhengyun.io/tenant").map(String::as_str),
        Some("taken")
    );
    assert_eq!(
        labels_of(&nsapi.get("share-a-b").await.expect("exists")).get("zhengyun.io/tenant").map(String::as_str),
        Some("share-a")
    );
}

#[tokio::test]
async fn deleting_a_retain_tenant_keeps_the_departments_data() {
    let client = client().await;
    let _op = Operator::start("lease-retain", "op-retain").await;
    apply_tenant(&client, &tenant("keep", &["apps", "data"])).await;
    wait_ready(&client, "keep").await;
    create_configmap(&client, "keep-apps", "records").await;
    create_pvc(&client, "keep-data", "archive").await;

    let api: Api<Tenant> = Api::all(client.clone());
    api.delete("keep", &DeleteParams::default()).await.expect("delete tenant");
    wait_for("tenant keep gone", SECONDS, || async { api.get_opt("keep").await.ok()?.is_none().then_some(()) }).await;

    let nsapi: Api<Namespace> = Api::all(client.clone());
    for ns in ["keep-apps", "keep-data"] {
        let n = nsapi.get(ns).await.expect("namespace retained");
        assert!(n.metadata.deletion_timestamp.is_none());
        let l = labels_of(&n);
        assert_eq!(l.get("zhengyun.io/orphaned").map(String::as_str), Some("true"), "{l:?}");
        assert!(!l.contains_key("app.kubernetes.io/managed-by"), "{l:?}");
        let q = Api::<ResourceQuota>::namespaced(client.clone(), ns).get("zhengyun-tenant").await.expect("quota kept");
        assert!(!q.labels().contains_key("app.kubernetes.io/managed-by"));
        // No longer guarded by the webhook, so no longer the former owners' to change: their
        // binding is gone, and with it their rights there.
        let bindings =
            Api::<RoleBinding>::namespaced(client.clone(), ns).list(&Default::default()).await.expect("list");
        assert!(
            bindings.items.is_empty(),
            "{ns}: {:?}",
            bindings.items.iter().map(|b| b.name_any()).collect::<Vec<_>>()
        );
    }
    let owner = as_user("keep-owner", &[]).await;
    let denied = Api::<NetworkPolicy>::namespaced(owner, "keep-apps")
        .delete("zhengyun-default-deny", &DeleteParams::default())
        .await;
    assert!(
        matches!(denied, Err(kube::Error::Api(ref s)) if s.code == 403),
        "a former owner may not lift the isolation: {denied:?}"
    );
    assert!(Api::<ConfigMap>::namespaced(client.clone(), "keep-apps").get_opt("records").await.expect("get").is_some());
    assert!(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "keep-data")
            .get_opt("archive")
            .await
            .expect("get")
            .is_some()
    );

    // The same department re-creating its tenant adopts what it left.
    apply_tenant(&client, &tenant("keep", &["apps", "data"])).await;
    wait_ready(&client, "keep").await;
    let l = labels_of(&nsapi.get("keep-apps").await.expect("exists"));
    assert!(!l.contains_key("zhengyun.io/orphaned"), "{l:?}");
    assert_eq!(l.get("app.kubernetes.io/managed-by").map(String::as_str), Some("zhengyun"));
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), "keep-apps");
    wait_for("the owners bound again", SECONDS, || async {
        (!bindings.list(&Default::default()).await.ok()?.items.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_delete_tenant_removes_its_namespaces_but_guards_volumes() {
    let client = client().await;
    let _op = Operator::start("lease-delete", "op-delete").await;
    let api: Api<Tenant> = Api::all(client.clone());
    let nsapi: Api<Namespace> = Api::all(client.clone());
    let gone = |names: &'static [&'static str]| {
        let nsapi = nsapi.clone();
        async move {
            for n in names {
                if nsapi.get_opt(n).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        }
    };

    // Without volumes: the namespaces go with the tenant.
    let mut t = tenant("brief", &["apps", "web"]);
    t.spec.deletion_policy = DeletionPolicy::Delete;
    apply_tenant(&client, &t).await;
    wait_ready(&client, "brief").await;
    create_configmap(&client, "brief-apps", "scratch").await;
    api.delete("brief", &DeleteParams::default()).await.expect("delete");
    wait_for("namespaces of brief deleted", Duration::from_secs(60), || gone(&["brief-apps", "brief-web"])).await;
    wait_for("tenant brief gone", SECONDS, || async { api.get_opt("brief").await.ok()?.is_none().then_some(()) }).await;

    // With a volume: blocked until the deletion of data is confirmed.
    let mut t = tenant("vault", &["apps", "data"]);
    t.spec.deletion_policy = DeletionPolicy::Delete;
    apply_tenant(&client, &t).await;
    wait_ready(&client, "vault").await;
    create_pvc(&client, "vault-data", "ledger").await;
    api.delete("vault", &DeleteParams::default()).await.expect("delete");
    let blocked = wait_for("vault blocked", SECONDS, || async {
        let t = api.get_opt("vault").await.ok()??;
        let (status, reason, message) = condition(&t, "Ready")?;
        (status == "False" && reason == "DeletionBlocked").then_some(message)
    })
    .await;
    assert!(blocked.contains("vault-data") && blocked.contains("confirmDataDeletion"), "{blocked}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for ns in ["vault-apps", "vault-data"] {
        let n = nsapi.get(ns).await.expect("still there");
        assert!(n.metadata.deletion_timestamp.is_none(), "{ns} must not be deleted before confirmation");
    }
    wait_for("a DeletionBlocked event", SECONDS, || async {
        (!events_for(&client, "vault", "DeletionBlocked").await.is_empty()).then_some(())
    })
    .await;

    api.patch("vault", &PatchParams::default(), &Patch::Merge(json!({"spec": {"confirmDataDeletion": true}})))
        .await
        .expect("confirm");
    wait_for("tenant vault gone", SECONDS, || async { api.get_opt("vault").await.ok()?.is_none().then_some(()) }).await;
    wait_for("namespaces of vault deleted", Duration::from_secs(60), || gone(&["vault-apps", "vault-data"])).await;
}
