//! Our own audit suite: the checks of the Kubernetes multi-tenancy benchmarks (kubernetes-sigs
//! `multi-tenancy/benchmarks`, profile level 1 and the level-2 operations checks), run as a
//! tenant owner by impersonation against the real API server with the operator's webhook. Each
//! check does the real request (and, for RBAC, asks a SubjectAccessReview too) and asserts the
//! outcome; the results table is printed and mirrored in docs/security.md.

use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod, ResourceQuota, Secret},
    networking::v1::NetworkPolicy,
    rbac::v1::RoleBinding,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun_e2e::{apply_tenant, as_user, client, operator_with_webhook, tenant, wait_ready};

/// What the owner may do, by SubjectAccessReview.
async fn may(client: &Client, user: &str, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
    zhengyun_e2e::allowed(client, user, verb, group, resource, namespace, None).await
}

/// A pod that meets the `restricted` standard; each check changes one thing about it.
fn compliant(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": "registry.local/app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    })
}

/// Creates a pod as the owner; `Err` carries the refusal.
async fn create_pod(owner: &Client, ns: &str, pod: Value) -> Result<(), String> {
    let pod: Pod = serde_json::from_value(pod).map_err(|e| e.to_string())?;
    let api: Api<Pod> = Api::namespaced(owner.clone(), ns);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let r = api.create(&PostParams::default(), &pod).await.map(|_| ()).map_err(message);
    if r.is_ok() {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    r
}

/// The API server's own words for a refusal.
fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}

/// One benchmark check's outcome.
struct Row {
    benchmark: &'static str,
    check: &'static str,
    outcome: &'static str,
    how: String,
}

/// Expects a refusal whose message contains `because`.
fn refused(r: Result<(), String>, because: &str) -> Result<String, String> {
    match r {
        Ok(()) => Err(format!("admitted; expected a refusal mentioning {because:?}")),
        Err(e) if e.contains(because) => Ok(e),
        Err(e) => Err(format!("refused for another reason: {e}")),
    }
}

#[tokio::test]
async fn audit_the_multi_tenancy_benchmark_as_a_tenant_owner() {
    let admin = client().await;
    let (_op, _hooks) = operator_with_webhook(&admin, "audit").await;
    let mut l3 = tenant("mtb-l3", &["apps"]);
    l3.spec.security_level = 3;
    l3.spec.quota.services = Some(zhengyun::api::amount::Count::from(10));
    apply_tenant(&admin, &l3).await;
    apply_tenant(&admin, &tenant("mtb-l2", &["apps"])).await;
    apply_tenant(&admin, &tenant("mtb-other", &["apps"])).await;
    for t in ["mtb-l3", "mtb-l2", "mtb-other"] {
        wait_ready(&admin, t).await;
    }
    let user = "mtb-l3-owner";
    let owner = as_user(user, &[]).await;
    let l2_owner = as_user("mtb-l2-owner", &[]).await;
    let ns = "mtb-l3-apps";
    let mut rows: Vec<Row> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut record =
        |benchmark: &'static str, check: &'static str, outcome: &'static str, r: Result<String, String>| match r {
            Ok(how) => rows.push(Row { benchmark, check, outcome, how }),
            Err(why) => failures.push(format!("{benchmark} ({check}): {why}")),
        };

    // The control: a compliant pod is admitted, so each refusal below is for the one change.
    record(
        "(control)",
        "a pod meeting restricted",
        "pass",
        create_pod(&owner, ns, compliant("ok")).await.map(|()| "admitted".into()),
    );

    // Block access to cluster resources.
    let mut cluster = Vec::new();
    for (verb, group, resource) in [
        ("list", "", "nodes"),
        ("list", "", "namespaces"),
        ("create", "", "namespaces"),
        ("create", "", "persistentvolumes"),
        ("get", "rbac.authorization.k8s.io", "clusterroles"),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
        ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
        ("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        ("create", "zhengyun.io", "tenants"),
        ("update", "zhengyun.io", "zones"),
        ("create", "zhengyun.io", "exchangechannels"),
        ("create", "zhengyun.io", "smclusterissuers"),
    ] {
        if may(&admin, user, verb, group, resource, "").await {
            cluster.push(format!("{verb} {resource}"));
        }
    }
    let nodes = Api::<Node>::all(owner.clone()).list(&ListParams::default()).await;
    record(
        "Block access to cluster resources",
        "cluster-scoped reads and writes",
        "pass",
        match (cluster.is_empty(), nodes) {
            (true, Err(e)) if e.to_string().contains("forbidden") => {
                Ok("12 cluster-scoped verbs denied; listing nodes is forbidden".into())
            }
            (false, _) => Err(format!("allowed: {cluster:?}")),
            (_, r) => Err(format!("listing nodes: {r:?}")),
        },
    );

    // Block access to other tenants' resources.
    let mut other = Vec::new();
    for (verb, resource) in [("get", "pods"), ("list", "secrets"), ("create", "pods"), ("delete", "configmaps")] {
        if may(&admin, user, verb, "", resource, "mtb-other-apps").await {
            other.push(format!("{verb} {resource}"));
        }
    }
    let secrets = Api::<Secret>::namespaced(owner.clone(), "mtb-other-apps").list(&ListParams::default()).await;
    record(
        "Block access to other tenant resources",
        "another tenant's namespace",
        "pass",
        match (other.is_empty(), secrets) {
            (true, Err(e)) if e.to_string().contains("forbidden") => {
                Ok("another tenant's pods, secrets, configmaps denied".into())
            }
            (false, _) => Err(format!("allowed in mtb-other-apps: {other:?}")),
            (_, r) => Err(format!("listing the other tenant's secrets: {r:?}")),
        },
    );

    // Block access to multitenant resources: the tenant's own guard rails.
    let quota = Api::<ResourceQuota>::namespaced(owner.clone(), ns)
        .patch("zhengyun-tenant", &PatchParams::default(), &Patch::Merge(json!({"spec": {"hard": {"pods": "9999"}}})))
        .await;
    let binding =
        Api::<RoleBinding>::namespaced(owner.clone(), ns).delete("zhengyun-tenant", &DeleteParams::default()).await;
    let deny = Api::<NetworkPolicy>::namespaced(owner.clone(), ns)
        .delete("zhengyun-default-deny", &DeleteParams::default())
        .await;
    let relabel = Api::<Namespace>::all(owner.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"zhengyun.io/tenant": "mtb-other"}}})),
        )
        .await;
    record(
        "Block access to multitenant resources",
        "quota, owners' binding, default-deny policy, namespace labels",
        "pass",
        match (&quota, &binding, &deny, &relabel) {
            (Err(q), Err(b), Err(d), Err(l))
                if q.to_string().contains("forbidden")
                    && b.to_string().contains("forbidden")
                    && d.to_string().contains("managed by zhengyun")
                    && l.to_string().contains("forbidden") =>
            {
                Ok("quota and binding: RBAC; default-deny: webhook; namespace labels: RBAC".into())
            }
            _ => Err(format!("quota {quota:?}; binding {binding:?}; default-deny {deny:?}; relabel {relabel:?}")),
        },
    );

    // Pod security, by 等保 level (PSA baseline at 2, restricted at 3 and 4).
    let mut caps = compliant("caps");
    caps["spec"]["containers"][0]["securityContext"]["capabilities"] = json!({"drop": ["ALL"], "add": ["NET_ADMIN"]});
    record(
        "Block add capabilities",
        "level 3: add NET_ADMIN",
        "pass",
        refused(create_pod(&owner, ns, caps.clone()).await, "NET_ADMIN"),
    );
    let mut l2caps = caps.clone();
    l2caps["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"add": ["NET_ADMIN"]}});
    record(
        "Block add capabilities",
        "level 2: add NET_ADMIN",
        "pass",
        refused(create_pod(&l2_owner, "mtb-l2-apps", l2caps).await, "NET_ADMIN"),
    );
    let mut root = compliant("root");
    root["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    record(
        "Require run as non-root user",
        "level 3: no runAsNonRoot",
        "pass",
        refused(create_pod(&owner, ns, root.clone()).await, "runAsNonRoot"),
    );
    let mut l2root = root.clone();
    l2root["spec"]["containers"][0]["securityContext"] = json!({});
    record(
        "Require run as non-root user",
        "level 2: run as root",
        "admitted by design",
        match create_pod(&l2_owner, "mtb-l2-apps", l2root).await {
            Ok(()) => Ok("baseline allows root; level 3 and 4 enforce restricted".into()),
            Err(e) => Err(format!("level 2 refused a root pod: {e}")),
        },
    );
    let mut privileged = compliant("priv");
    privileged["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true, "capabilities": {"drop": ["ALL"]}});
    record(
        "Block privileged containers",
        "level 3: privileged",
        "pass",
        refused(create_pod(&owner, ns, privileged.clone()).await, "privileged"),
    );
    record(
        "Block privileged containers",
        "level 2: privileged",
        "pass",
        refused(create_pod(&l2_owner, "mtb-l2-apps", json!({"metadata": {"name": "priv"}, "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}})).await, "privileged"),
    );
    let mut escalate = compliant("escalate");
    escalate["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    record(
        "Block privilege escalation",
        "level 3: allowPrivilegeEscalation",
        "pass",
        refused(create_pod(&owner, ns, escalate).await, "allowPrivilegeEscalation"),
    );

    // Host isolation: Pod Security Admission and the webhook both refuse these; whichever
    // answers first gives the message.
    let mut host_path = compliant("hostpath");
    host_path["spec"]["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}]);
    record(
        "Block use of host path volumes",
        "hostPath /",
        "pass",
        refused(create_pod(&owner, ns, host_path).await, "hostPath"),
    );
    let mut host_net = compliant("hostnet");
    host_net["spec"]["hostNetwork"] = json!(true);
    record(
        "Block use of host networking and ports",
        "hostNetwork",
        "pass",
        refused(create_pod(&owner, ns, host_net).await, "hostNetwork"),
    );
    let mut host_port = compliant("hostport");
    host_port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}]);
    record(
        "Block use of host networking and ports",
        "hostPort 80",
        "pass",
        refused(create_pod(&owner, ns, host_port).await, "hostPort"),
    );
    let mut host_pid = compliant("hostpid");
    host_pid["spec"]["hostPID"] = json!(true);
    record("Block use of host PID", "hostPID", "pass", refused(create_pod(&owner, ns, host_pid).await, "hostPID"));
    let mut host_ipc = compliant("hostipc");
    host_ipc["spec"]["hostIPC"] = json!(true);
    record("Block use of host IPC", "hostIPC", "pass", refused(create_pod(&owner, ns, host_ipc).await, "hostIPC"));

    // Services: NodePort by zone policy; outside addresses never.
    let svc = |spec: Value| -> Result<k8s_openapi::api::core::v1::Service, String> {
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).map_err(|e| e.to_string())
    };
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(owner.clone(), ns);
    let nodeport = match svc(json!({"type": "NodePort", "ports": [{"port": 80}]})) {
        Ok(s) => services.create(&PostParams::default(), &s).await.map(|_| ()).map_err(message),
        Err(e) => Err(e),
    };
    record(
        "Block use of NodePort services",
        "type NodePort in a zone that does not allow it",
        "pass",
        refused(nodeport, "allows ClusterIP only"),
    );
    let external = match svc(json!({"ports": [{"port": 80}], "externalIPs": ["10.96.0.10"]})) {
        Ok(s) => services.create(&PostParams::default(), &s).await.map(|_| ()).map_err(message),
        Err(e) => Err(e),
    };
    record("(ours) CVE-2020-8554", "Service externalIPs", "pass", refused(external, "spec.externalIPs"));
    record(
        "(ours) CVE-2021-25740",
        "write Endpoints or EndpointSlices",
        "pass",
        if !may(&admin, user, "create", "", "endpoints", ns).await
            && !may(&admin, user, "update", "discovery.k8s.io", "endpointslices", ns).await
        {
            Ok("RBAC: owners read Endpoints only".into())
        } else {
            Err("owners may write endpoints".into())
        },
    );
    record(
        "Block use of existing PVs",
        "read or create PersistentVolumes",
        "pass",
        if !may(&admin, user, "get", "", "persistentvolumes", "").await
            && !may(&admin, user, "create", "", "persistentvolumes", "").await
        {
            Ok("owners can neither read nor create PersistentVolumes".into())
        } else {
            Err("owners may read or create PersistentVolumes".into())
        },
    );

    // Quotas on every namespace.
    let q = Api::<ResourceQuota>::namespaced(admin.clone(), ns).get("zhengyun-tenant").await;
    let hard = q.ok().and_then(|q| q.spec).and_then(|s| s.hard).unwrap_or_default();
    record(
        "Configure namespace resource quotas",
        "ResourceQuota in the namespace",
        "pass",
        if hard.contains_key("requests.cpu") && hard.contains_key("requests.memory") {
            Ok("ResourceQuota zhengyun-tenant with requests.cpu and requests.memory".into())
        } else {
            Err(format!("hard: {hard:?}"))
        },
    );
    record(
        "Configure namespace object quotas",
        "pods and services counted",
        "pass",
        if hard.contains_key("pods") && hard.contains_key("services") {
            Ok("pods and services counted when the tenant sets them".into())
        } else {
            Err(format!("hard: {hard:?}"))
        },
    );

    // Network isolation: default-deny in place, and the owner's own policies stay inside.
    let deny = Api::<NetworkPolicy>::namespaced(admin.clone(), ns).get("zhengyun-default-deny").await;
    let deny_types = deny.ok().and_then(|p| p.spec).and_then(|s| s.policy_types).unwrap_or_default();
    record(
        "(ours) Default-deny networking",
        "policy in every tenant namespace",
        "pass",
        if deny_types.contains(&"Ingress".to_string()) && deny_types.contains(&"Egress".to_string()) {
            Ok("zhengyun-default-deny denies ingress and egress".into())
        } else {
            Err(format!("policy types {deny_types:?}"))
        },
    );
    let np = |name: &str, peer: Value| -> NetworkPolicy {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"podSelector": {}, "ingress": [{"from": [peer]}]}}),
        )
        .unwrap_or_default()
    };
    let policies: Api<NetworkPolicy> = Api::namespaced(owner.clone(), ns);
    let _ = policies.delete("own", &DeleteParams::default()).await;
    let own = policies
        .create(&PostParams::default(), &np("own", json!({"podSelector": {"matchLabels": {"app": "web"}}})))
        .await;
    let across = policies
        .create(
            &PostParams::default(),
            &np("across", json!({"namespaceSelector": {"matchLabels": {"zhengyun.io/tenant": "mtb-other"}}})),
        )
        .await;
    record(
        "Create Network Policies",
        "own policy; one reaching another tenant",
        "pass",
        match (&own, &across) {
            (Ok(_), Err(e)) if e.to_string().contains("may not reach other tenants") => {
                Ok("own policy created; a policy reaching another tenant refused by the webhook".into())
            }
            _ => Err(format!("own {own:?}; across {across:?}")),
        },
    );

    // Deliberate deviations: owners do not delegate access; the Tenant's owners list is the one
    // place that says who administers a department's namespaces.
    record(
        "Create Role Bindings",
        "create a RoleBinding",
        "refused by design",
        if !may(&admin, user, "create", "rbac.authorization.k8s.io", "rolebindings", ns).await {
            Ok("owners are listed in the Tenant; they cannot grant access themselves".into())
        } else {
            Err("owners may create RoleBindings".into())
        },
    );
    record(
        "Create Roles",
        "create a Role",
        "refused by design",
        if !may(&admin, user, "create", "rbac.authorization.k8s.io", "roles", ns).await {
            Ok("owners use the zhengyun-tenant-owner role".into())
        } else {
            Err("owners may create Roles".into())
        },
    );

    println!("\n| benchmark check | tried as the owner | outcome | what answered |\n|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.benchmark, r.check, r.outcome, r.how.replace('|', "/"));
    }
    assert!(failures.is_empty(), "benchmark checks failed:\n{}", failures.join("\n"));
}
