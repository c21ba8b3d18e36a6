//! The department tree (部门树), against the real API server and the operator's webhook: budgets
//! handed down a province → city → county tree, refused with the numbers when they would not
//! hold, held against admins racing for the last share, and reported as status, as a printer
//! column and by `zhengyun-operator tree`.

use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use zhengyun::api::{Tenant, department::Department};
use zhengyun_e2e::{
    Cleanup, SECONDS, apply_tenant, client, condition, must, operator_with_webhook, refused, run_tool, tenant,
    wait_for, wait_ready,
};

fn dept(name: &str, code: &str, parent: Option<&str>, cpu: &str, pods: u32) -> Department {
    serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "Department",
        "metadata": {"name": name},
        "spec": {"code": code, "nameZh": format!("{code}局"), "parent": parent, "budget": {"cpu": cpu, "pods": pods}}
    }))
    .expect("department")
}

async fn create(client: &Client, d: &Department) -> Result<Department, kube::Error> {
    Api::<Department>::all(client.clone()).create(&PostParams::default(), d).await
}

fn in_dept(name: &str, code: &str, cpu: &str) -> Tenant {
    let mut t = tenant(name, &["apps"]);
    t.spec.department.code = code.into();
    t.spec.quota.cpu = Some(cpu.into());
    t
}

#[tokio::test]
async fn budgets_are_handed_down_the_tree_and_hold_against_racing_admins() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "departments").await;
    let steps = || {
        vec![
            vec!["delete", "tenant", "-l", "e2e=departments", "--ignore-not-found", "--timeout=60s"],
            vec!["delete", "tenant", "dp-edu", "dp-lost", "--ignore-not-found", "--timeout=60s"],
            vec!["delete", "smclusterissuer", "dp-gz-ca", "--ignore-not-found"],
            vec!["delete", "department", "dp-gd", "dp-gz", "dp-th", "dp-sz", "gd", "gz", "gz-th", "--ignore-not-found"],
        ]
    };
    drop(Cleanup(steps()));
    let _cleanup = Cleanup(steps());
    let depts: Api<Department> = Api::all(client.clone());
    let tenants: Api<Tenant> = Api::all(client.clone());

    // Province 20 cores, city 8, county 2.
    create(&client, &dept("dp-gd", "E-GD", None, "20", 200)).await.expect("province");
    create(&client, &dept("dp-gz", "E-GZ", Some("E-GD"), "8", 100)).await.expect("city");
    create(&client, &dept("dp-th", "E-TH", Some("E-GZ"), "2", 20)).await.expect("county");

    // The schema and the webhook name the field.
    let msg = refused(create(&client, &dept("dp-sz", "E-SZ", Some("NOWHERE"), "1", 1)).await, "spec.parent");
    assert!(msg.contains("NOWHERE") && msg.contains("does not exist"), "{msg}");
    refused(create(&client, &dept("dp-sz", "E-GZ", Some("E-GD"), "1", 1)).await, "spec.code");
    // A city asking more than the province has left: refused with the numbers.
    let msg = refused(create(&client, &dept("dp-sz", "E-SZ", Some("E-GD"), "13", 50)).await, "spec.budget");
    assert!(msg.contains("budget is 20") && msg.contains("21") && msg.contains("1 over"), "{msg}");
    assert!(msg.contains("department E-GZ 8") && msg.contains("department E-SZ 13"), "{msg}");
    create(&client, &dept("dp-sz", "E-SZ", Some("E-GD"), "12", 50)).await.expect("what is left fits");
    // A cycle, and a budget cut below what is handed down.
    let patch = |v: Value| Patch::Merge(v);
    let msg = refused(
        depts.patch("dp-gd", &PatchParams::default(), &patch(json!({"spec": {"parent": "E-TH"}}))).await,
        "cycle",
    );
    assert!(msg.contains("spec.parent"), "{msg}");
    let msg = refused(
        depts.patch("dp-gz", &PatchParams::default(), &patch(json!({"spec": {"budget": {"cpu": "1"}}}))).await,
        "spec.budget",
    );
    assert!(msg.contains("department E-TH 2"), "{msg}");

    // A tenant of the city takes from its budget: 8 - 2 (the county) = 6 left.
    apply_tenant(&client, &in_dept("dp-edu", "E-GZ", "4")).await;
    wait_ready(&client, "dp-edu").await;
    // Its owners read their Department by name, and no other.
    let as_owner: Api<Department> = Api::all(zhengyun_e2e::as_user("dp-edu-owner", &[]).await);
    let theirs =
        wait_for("the owner reads its department", SECONDS, || async { as_owner.get("dp-gz").await.ok() }).await;
    assert_eq!(theirs.spec.code, "E-GZ");
    refused(as_owner.get("dp-gd").await, "forbidden");
    let msg = refused(tenants.create(&PostParams::default(), &in_dept("dp-extra", "E-GZ", "3")).await, "spec.quota");
    assert!(msg.contains("budget is 8") && msg.contains("tenant dp-edu 4") && msg.contains("1 over"), "{msg}");
    // A tenant that leaves a budgeted resource unstated would be unbounded there.
    let mut unbounded = in_dept("dp-extra", "E-GZ", "1");
    unbounded.spec.quota.pods = None;
    refused(tenants.create(&PostParams::default(), &unbounded).await, "must state its pods");
    // A dry run decides and records nothing.
    let before = depts.get("dp-gz").await.expect("city").annotations().get("zhengyun.io/budget-reservations").cloned();
    tenants
        .create(&PostParams { dry_run: true, ..Default::default() }, &in_dept("dp-dry", "E-GZ", "2"))
        .await
        .expect("a dry run that fits");
    let after = depts.get("dp-gz").await.expect("city").annotations().get("zhengyun.io/budget-reservations").cloned();
    assert_eq!(before, after, "a dry run reserved nothing");

    // Eight admins race for the city's last 2 cores, each asking for all of it: one wins.
    let mut racers = Vec::new();
    for i in 0..8 {
        let api = tenants.clone();
        let mut t = in_dept(&format!("dp-race-{i}"), "E-GZ", "2");
        t.metadata.labels = Some([("e2e".to_string(), "departments".to_string())].into());
        racers.push(tokio::spawn(async move { api.create(&PostParams::default(), &t).await.map(|_| ()) }));
    }
    let mut admitted = 0;
    let mut why = Vec::new();
    for r in racers {
        match r.await.expect("task") {
            Ok(()) => admitted += 1,
            Err(e) => why.push(e.to_string()),
        }
    }
    assert_eq!(admitted, 1, "exactly one of the racers fits: {why:?}");
    assert!(why.iter().all(|w| w.contains("budget is 8") || w.contains("retry")), "{why:?}");

    // The tree as status: path, what is handed down, the city at its limit and still Ready.
    let status = wait_for("the city's status", SECONDS, || async {
        let s = depts.get("dp-gz").await.ok()?.status?;
        (s.budget_summary.as_deref()?.contains("cpu 8/8") && s.tenants.len() == 2).then_some(s)
    })
    .await;
    assert_eq!(status.path.as_deref(), Some("E-GD/E-GZ"));
    assert_eq!(status.children, vec!["E-TH".to_string()]);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "WithinBudget"), "{ready:?}");
    let county = wait_for("the county's path", SECONDS, || async { depts.get("dp-th").await.ok()?.status?.path }).await;
    assert_eq!(county, "E-GD/E-GZ/E-TH");
    let out = must("kubectl get departments", run_tool("kubectl", &["get", "departments"], None));
    assert!(out.contains("E-GD/E-GZ/E-TH") && out.contains("cpu 8/8"), "{out}");

    // The tenant's Department condition; one whose department does not exist is told so, and
    // is still Ready (the tree informs, it does not hold a department's tenant back).
    let edu = tenants.get("dp-edu").await.expect("tenant");
    assert_eq!(condition(&edu, "Department").map(|c| c.1), Some("WithinBudget".into()));
    apply_tenant(&client, &in_dept("dp-lost", "NOSUCH", "1")).await;
    let lost = wait_ready(&client, "dp-lost").await;
    let (ok, reason, message) = condition(&lost, "Department").expect("a Department condition");
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "DepartmentNotFound"), "{message}");
    assert!(message.contains("NOSUCH"), "{message}");

    // The city's admins (a group) manage the tenants of the city and the county below it, and
    // no others: RBAC lets them write tenants, the webhook keeps them to their subtree.
    depts
        .patch("dp-gz", &PatchParams::default(), &Patch::Merge(json!({"spec": {"adminGroup": "e2e-gz-admins"}})))
        .await
        .expect("the city's admin group");
    let admin = zhengyun_e2e::as_user("gz-admin", &["e2e-gz-admins"]).await;
    let as_admin: Api<Tenant> = Api::all(admin);
    let mut county_tenant = in_dept("dp-county", "E-TH", "1");
    county_tenant.metadata.labels = Some([("e2e".to_string(), "departments".to_string())].into());
    wait_for("the city admin creates a county tenant", SECONDS, || async {
        as_admin.create(&PostParams::default(), &county_tenant).await.ok()
    })
    .await;
    for (code, name) in [("E-SZ", "dp-beside"), ("E-GD", "dp-above")] {
        let msg =
            refused(as_admin.create(&PostParams::default(), &in_dept(name, code, "1")).await, "spec.department.code");
        assert!(msg.contains("E-GZ") && msg.contains(code), "{msg}");
    }
    // They edit a tenant of theirs, but deleting one (and perhaps its data) stays with the
    // cloud's admins.
    as_admin
        .patch("dp-county", &PatchParams::default(), &Patch::Merge(json!({"spec": {"securityLevel": 3}})))
        .await
        .expect("the city admin edits a county tenant");
    refused(as_admin.delete("dp-county", &Default::default()).await, "forbidden");
    // The group leaves the spec: its members lose the role.
    depts
        .patch("dp-gz", &PatchParams::default(), &Patch::Merge(json!({"spec": {"adminGroup": null}})))
        .await
        .expect("no admin group");
    wait_for("the former admins lose the role", SECONDS, || async {
        as_admin.get("dp-county").await.is_err().then_some(())
    })
    .await;

    // The city's CA signs for the county below it (signsBelow), and for no one beside.
    let issuers: Api<zhengyun::api::SmClusterIssuer> = Api::all(client.clone());
    let ca: zhengyun::api::SmClusterIssuer = serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "SmClusterIssuer", "metadata": {"name": "dp-gz-ca"},
        "spec": {"selfSigned": {"commonName": "E-GZ SM2 CA", "secretName": "dp-gz-ca"}, "department": "E-GZ", "signsBelow": true}
    }))
    .expect("issuer");
    issuers.create(&PostParams::default(), &ca).await.expect("the city's CA");
    let with_cert = |t: &mut Tenant| {
        t.spec.certificates = serde_json::from_value(json!([
            {"name": "web-tls", "namespace": "apps", "issuerRef": {"kind": "SmClusterIssuer", "name": "dp-gz-ca"},
             "dnsNames": ["web.th.gov.cn"], "secretName": "web-tls"}
        ]))
        .expect("certificates");
    };
    let mut county = in_dept("dp-county", "E-TH", "1");
    county.metadata.labels = Some([("e2e".to_string(), "departments".to_string())].into());
    with_cert(&mut county);
    apply_tenant(&client, &county).await;
    let certs: Api<zhengyun::api::SmCertificate> = Api::namespaced(client.clone(), "dp-county-apps");
    wait_for("the county's certificate from the city's CA", std::time::Duration::from_secs(60), || async {
        let c = certs.get_opt("web-tls").await.ok()??;
        c.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
    let mut beside = in_dept("dp-beside", "E-SZ", "1");
    with_cert(&mut beside);
    let msg = refused(tenants.create(&PostParams::default(), &beside).await, "spec.certificates[0].issuerRef");
    assert!(msg.contains("(and E-TH's)") && msg.contains("department E-SZ"), "{msg}");

    // The tree, as a cloud office reads it.
    let bin = std::env::var("ZHENGYUN_OPERATOR_BIN").expect("ZHENGYUN_OPERATOR_BIN");
    let tree = must("zhengyun-operator tree", run_tool(&bin, &["tree"], None));
    let lines: Vec<&str> = tree.lines().collect();
    let gd = lines.iter().position(|l| l.starts_with("E-GD E-GD局")).expect("the province at the top");
    assert!(lines[gd + 1..].iter().any(|l| l.starts_with("  E-GZ E-GZ局  budget: cpu 8/8")), "{tree}");
    assert!(lines.iter().any(|l| l.starts_with("    E-TH E-TH局")), "{tree}");
    assert!(lines.iter().any(|l| l.starts_with("    - tenant dp-edu  quota: cpu 4")), "{tree}");

    // The admin guide's example tree is accepted as written.
    let example = zhengyun_e2e::repo_path("docs/examples/departments/tree.yaml");
    must("kubectl apply the example tree", run_tool("kubectl", &["apply", "-f", &example], None));
    let path =
        wait_for("the example county's path", SECONDS, || async { depts.get("gz-th").await.ok()?.status?.path }).await;
    assert_eq!(path, "GD/GZ/GZ-TH");
}
