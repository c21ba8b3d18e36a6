//! `zhengyun-operator evidence` against the real control plane: the assessor's report is
//! written from what the cluster holds, and its verdicts follow from it.

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use zhengyun::api::SmClusterIssuer;
use zhengyun_e2e::{
    Cleanup, apply_tenant, client, must, operator_with_webhook, repo_path, run_tool, tenant, wait_for, wait_ready,
};

/// The operator's ClusterRole as the chart names it for the release `zhengyun-evidence`.
const ROLE: &str = "zhengyun-evidence-zhengyun-operator";

fn check<'a>(report: &'a Value, title: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["checks"].as_array().into_iter().flatten())
        .find(|c| c["title"] == title)
        .unwrap_or_else(|| panic!("no check {title:?}"))
}

#[tokio::test]
async fn the_evidence_report_is_written_from_the_live_cluster() {
    let client = client().await;
    let (_op, _hooks) = operator_with_webhook(&client, "evidence").await;
    let steps = || {
        vec![
            vec!["delete", "tenant", "ev-a", "ev-b", "--ignore-not-found", "--timeout=60s"],
            vec!["delete", "smclusterissuer", "ev-ca", "--ignore-not-found"],
            vec!["delete", "clusterrole", ROLE, "--ignore-not-found"],
        ]
    };
    drop(Cleanup(steps()));
    let _cleanup = Cleanup(steps());

    // The operator's ClusterRole as the chart renders it, so its rights are what is reported.
    let rendered = must(
        "helm template",
        run_tool(
            "helm",
            &[
                "template",
                "zhengyun-evidence",
                &repo_path("charts/zhengyun"),
                "--show-only",
                "templates/rbac.yaml",
                // The chart requires Kubernetes 1.33 or later; helm template alone assumes an older one.
                "--kube-version",
                "v1.34.4",
            ],
            None,
        ),
    );
    let role =
        rendered.split("\n---").find(|d| d.lines().any(|l| l == "kind: ClusterRole")).expect("the chart's ClusterRole");
    must("kubectl apply the operator's ClusterRole", run_tool("kubectl", &["apply", "-f", "-"], Some(role)));

    let issuers: Api<SmClusterIssuer> = Api::all(client.clone());
    let ca: SmClusterIssuer = serde_json::from_value(json!({
        "apiVersion": "zhengyun.io/v1alpha1", "kind": "SmClusterIssuer", "metadata": {"name": "ev-ca"},
        "spec": {"selfSigned": {"commonName": "ev SM2 CA", "secretName": "ev-ca"}}
    }))
    .expect("issuer");
    issuers.patch("ev-ca", &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&ca)).await.expect("issuer");
    let mut a = tenant("ev-a", &["apps"]);
    a.spec.certificates = serde_json::from_value(json!([
        {"name": "web-tls", "namespace": "apps", "issuerRef": {"kind": "SmClusterIssuer", "name": "ev-ca"},
         "dnsNames": ["web.ev.gov.cn"], "secretName": "web-tls"}
    ]))
    .expect("certificates");
    apply_tenant(&client, &a).await;
    apply_tenant(&client, &tenant("ev-b", &["apps"])).await;
    wait_ready(&client, "ev-a").await;
    wait_ready(&client, "ev-b").await;
    let certs: Api<zhengyun::api::SmCertificate> = Api::namespaced(client.clone(), "ev-a-apps");
    wait_for("the certificate issued", std::time::Duration::from_secs(60), || async {
        let c = certs.get_opt("web-tls").await.ok()??;
        c.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;

    let dir = std::env::var_os("ZHENGYUN_E2E_LOGS").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let out = dir.join("evidence");
    let bin = std::env::var("ZHENGYUN_OPERATOR_BIN").expect("ZHENGYUN_OPERATOR_BIN");
    let said = must(
        "zhengyun-operator evidence",
        run_tool(&bin, &["evidence", "--output", &out.to_string_lossy(), "--operator-role", ROLE], None),
    );
    assert!(said.contains("evidence.html"), "{said}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).expect("evidence.json"))
            .expect("JSON");
    assert_eq!(report["schema"], "zhengyun.io/evidence/v1");

    // Our tenants, as the report read them: default-deny in place, restricted or baseline by level.
    let row = |name: &str| {
        report["tenants"].as_array().into_iter().flatten().find(|t| t["name"] == name).cloned().expect(name)
    };
    let a = row("ev-a");
    assert_eq!(a["without_default_deny"], json!([]), "{a}");
    assert_eq!(a["pod_security"]["ev-a-apps"], "baseline", "{a}");
    assert!(a["owners"].to_string().contains("ev-a-owner"), "{a}");
    // Whatever else the cluster holds, nothing is reported against them.
    for title in
        ["Default-deny in every tenant namespace", "Tenants reach each other only through open exchange channels"]
    {
        let c = check(&report, title);
        let reason = c["reason"].as_str().unwrap_or("");
        assert!(!reason.contains("tenant ev-a:") && !reason.contains("tenant ev-b:"), "{title}: {c}");
        assert!(!reason.contains("ev-a can reach ev-b") && !reason.contains("ev-b can reach ev-a"), "{title}: {c}");
    }
    // The two tenants cannot reach each other, with the reason.
    let cell = report["reachability"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["from"] == "ev-a" && c["to"] == "ev-b")
        .cloned()
        .expect("ev-a -> ev-b");
    assert_eq!(cell["allowed"], false, "{cell}");
    assert!(cell["explanation"].as_str().is_some_and(|e| e.starts_with("denied")), "{cell}");
    // The webhooks the operator registered fail closed; its rights have no wildcard.
    assert_eq!(check(&report, "Admission control fails closed")["verdict"], "pass");
    let rights = check(&report, "The operator's own rights are listed, without wildcards");
    assert_eq!(rights["verdict"], "pass", "{rights}");
    assert!(report["operator"]["rbac"].to_string().contains("tenants/finalizers"), "{}", report["operator"]);
    // The certificate and its CA, with where their keys are.
    let cert = report["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["namespace"] == "ev-a-apps" && c["name"] == "web-tls")
        .cloned()
        .expect("the certificate");
    assert_eq!((cert["ready"].clone(), cert["key_secret"].clone()), (json!(true), json!("Secret ev-a-apps/web-tls")));
    assert!(report["issuers"].to_string().contains("ev SM2 CA"), "{}", report["issuers"]);
    // Audit is not visible through the API: said so, not passed.
    assert_eq!(check(&report, "API server audit log")["verdict"], "not_applicable");

    let page = std::fs::read_to_string(out.join("evidence.html")).expect("evidence.html");
    assert!(page.contains("PASS 符合") && page.contains("ev-a-apps") && page.contains("id=\"reachability\""));
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://fonts"),
        "self-contained"
    );
}
