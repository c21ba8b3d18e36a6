//! Cloud admins install the operator with Helm; departments request tenants with Helm values.

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::{Api, Client, api::ListParams};
use zhengyun::{
    api::{SmCertificate, Tenant},
    quantity,
};
use zhengyun_e2e::{
    Operator, SECONDS, adopt_crds, client, kubeconfig_for_service_account, must, repo_path, run_tool, wait_for,
    wait_ready,
};

/// The version of the local control plane, for commands that do not ask the cluster.
const KUBE_VERSION: &str = "v1.34.4";

fn helm(args: &[&str]) -> (bool, String) {
    let mut args = args.to_vec();
    if matches!(args.first(), Some(&"template") | Some(&"lint")) {
        args.extend_from_slice(&["--kube-version", KUBE_VERSION]);
    }
    run_tool("helm", &args, None)
}

#[tokio::test]
async fn both_charts_lint_and_render_objects_the_api_server_accepts() {
    let _client = client().await;
    let operator = repo_path("charts/zhengyun");
    let tenant = repo_path("charts/tenant");
    let extranet = repo_path("docs/examples/helm/extranet-bureau.yaml");
    let intranet = repo_path("docs/examples/helm/intranet-bureau.yaml");
    must("helm lint operator chart", helm(&["lint", "--strict", &operator]));
    let all_on = "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,networkPolicy.enabled=true,networkPolicy.apiServerCIDRs={10.0.0.1/32}";
    must("helm lint operator chart with every option", helm(&["lint", "--strict", &operator, "--set", all_on]));
    for values in [&extranet, &intranet] {
        must("helm lint tenant chart", helm(&["lint", "--strict", &tenant, "-f", values]));
    }
    // Server-side dry runs: the real API server validates every rendered object.
    let rendered = must("helm template operator", helm(&["template", "zhengyun", &operator, "-n", "zhengyun-system"]));
    for kind in ["CustomResourceDefinition", "ClusterRole", "Deployment", "PodDisruptionBudget", "Service"] {
        assert!(rendered.contains(&format!("kind: {kind}")), "the operator chart renders a {kind}");
    }
    let without_crds = must(
        "helm template operator without CRDs",
        helm(&["template", "zhengyun", &operator, "-n", "zhengyun-system", "--set", "crds.install=false"]),
    );
    must(
        "server dry-run of the operator chart",
        run_tool("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&without_crds)),
    );
    for (name, values) in [("bigdata", &extranet), ("finance", &intranet)] {
        let t = must("helm template tenant", helm(&["template", name, &tenant, "-f", values]));
        let out = must(
            "server dry-run of a tenant",
            run_tool("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&t)),
        );
        assert!(out.contains(&format!("tenant.zhengyun.io/{name}")), "{out}");
    }
    // The chart's CRD is the one in crds/ (plus Helm's keep policy).
    let chart_crd: serde_yaml::Value = rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .find(|d| d["kind"].as_str() == Some("CustomResourceDefinition"))
        .expect("a CRD in the operator chart");
    assert_eq!(chart_crd["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(), Some("keep"));
    let ours = serde_json::to_value(zhengyun::api::crd::tenant()).expect("crd");
    let theirs = serde_json::to_value(&chart_crd["spec"]).expect("json");
    assert!(
        normalize(theirs) == normalize(ours["spec"].clone()),
        "the chart's CRD differs from crds/: run hack/generate.sh"
    );
}

/// YAML round trips turn `255.0` into `255`; compare numbers by value.
fn normalize(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[tokio::test]
async fn a_department_with_bad_values_is_told_before_anything_reaches_the_cluster() {
    let tenant = repo_path("charts/tenant");
    let extranet = repo_path("docs/examples/helm/extranet-bureau.yaml");
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["department", "owners", "namespaces"]),
        (&["-f", &extranet, "--set", "securityLevel=5"], &["securityLevel"]),
        (&["-f", &extranet, "--set", "quota.cpu=-1"], &["quota", "cpu"]),
        (&["-f", &extranet, "--set-string", "quota.memory=lots"], &["quota", "memory"]),
        (&["-f", &extranet, "--set", "namespaces[0].suffix=Bad_Suffix"], &["suffix"]),
        (&["-f", &extranet, "--set", "zone=Intra Net"], &["zone"]),
        (&["-f", &extranet, "--set", "quotas.cpu=4"], &["quotas"]),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["template", "t", tenant.as_str()];
        args.extend_from_slice(extra);
        let (ok, out) = helm(&args);
        assert!(!ok, "helm accepted {extra:?}:\n{out}");
        assert!(out.contains("values don't meet the specifications of the schema"), "{out}");
        for e in *expected {
            assert!(out.contains(e), "{extra:?}: expected {e:?} in:\n{out}");
        }
    }
}

async fn pods_quota(client: &Client, tenant: &str) -> i128 {
    Api::<ResourceQuota>::all(client.clone())
        .list(&ListParams::default().labels(&format!("zhengyun.io/tenant={tenant}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter_map(|q| q.status.as_ref()?.hard.as_ref()?.get("pods").and_then(|v| quantity::parse(&v.0).ok()))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_admin_installs_the_operator_and_departments_request_tenants_with_helm() {
    let client = client().await;
    let ns = "zhengyun-helm";
    // The suite installed the CRD already; let the release adopt it as Helm documents.
    adopt_crds(&client, "zhengyun", ns).await;
    must(
        "helm install operator",
        helm(&["install", "zhengyun", &repo_path("charts/zhengyun"), "-n", ns, "--create-namespace"]),
    );

    // No kubelet here, so run the operator binary with the chart's ServiceAccount: the tenants
    // only become Ready if the chart's least-privilege RBAC is enough.
    let dir = std::env::var_os("ZHENGYUN_E2E_LOGS").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = kubeconfig_for_service_account(ns, "zhengyun-operator", &dir);
    let op =
        Operator::start_with("zhengyun-operator", "op-helm", &[("KUBECONFIG", &kubeconfig), ("POD_NAMESPACE", ns)])
            .await;
    op.wait_leading("zhengyun-operator").await;

    // The department's SM2 CA, for the certificates its values request.
    must(
        "kubectl apply department CA",
        run_tool("kubectl", &["apply", "-f", &repo_path("docs/examples/pki/department-ca.yaml")], None),
    );
    let tenant_chart = repo_path("charts/tenant");
    let out = must(
        "helm install bigdata",
        helm(&["install", "bigdata", &tenant_chart, "-f", &repo_path("docs/examples/helm/extranet-bureau.yaml")]),
    );
    assert!(
        out.contains("bigdata-portal") && out.contains("kubectl get tenant bigdata"),
        "NOTES tell the department what it got:\n{out}"
    );
    must(
        "helm install finance",
        helm(&["install", "finance", &tenant_chart, "-f", &repo_path("docs/examples/helm/intranet-bureau.yaml")]),
    );
    wait_ready(&client, "bigdata").await;
    wait_ready(&client, "finance").await;
    assert_eq!(pods_quota(&client, "bigdata").await, 200_000);
    // The certificate from the values is issued, with the chart's RBAC, into the portal.
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), "bigdata-portal");
    wait_for("the values' certificate issued", SECONDS, || async {
        let c = certs.get_opt("portal-tls").await.ok()??;
        c.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
    let secret: k8s_openapi::api::core::v1::Secret =
        Api::namespaced(client.clone(), "bigdata-portal").get("portal-tls").await.expect("the certificate's Secret");
    assert!(secret.data.is_some_and(|d| d.contains_key("enc.key")), "a TLCP pair");

    // A department raises its quota with helm upgrade.
    let extranet = repo_path("docs/examples/helm/extranet-bureau.yaml");
    let upgrade = |set: &str| {
        must(
            &format!("helm upgrade --set {set}"),
            helm(&["upgrade", "bigdata", &tenant_chart, "-f", &extranet, "--set", set]),
        )
    };
    upgrade("quota.pods=250");
    wait_for("pods quota 250", SECONDS, || async { (pods_quota(&client, "bigdata").await == 250_000).then_some(()) })
        .await;

    // Uninstall follows the deletion policy: Retain keeps, Delete removes.
    let tenants: Api<Tenant> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    must("helm uninstall finance", helm(&["uninstall", "finance", "--wait"]));
    wait_for("tenant finance gone", SECONDS, || async {
        tenants.get_opt("finance").await.ok()?.is_none().then_some(())
    })
    .await;
    let kept = namespaces.get("finance-budget").await.expect("namespace retained");
    assert_eq!(kept.metadata.labels.unwrap_or_default().get("zhengyun.io/orphaned").map(String::as_str), Some("true"));

    upgrade("deletionPolicy=Delete");
    must("helm uninstall bigdata", helm(&["uninstall", "bigdata", "--wait"]));
    wait_for("namespaces of bigdata deleted", std::time::Duration::from_secs(60), || async {
        for n in ["bigdata-portal", "bigdata-exchange"] {
            if namespaces.get_opt(n).await.ok()?.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;

    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let forbidden: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).collect();
    assert!(
        forbidden.is_empty(),
        "the operator hit RBAC denials with the chart's ClusterRole ({}):\n{}",
        op.log.display(),
        forbidden.iter().take(3).copied().collect::<Vec<_>>().join("\n")
    );
}
