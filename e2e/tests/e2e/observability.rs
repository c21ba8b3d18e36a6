//! What SREs get: metrics that pass promtool, alert rules that fire when they should.

use zhengyun_e2e::{Operator, SECONDS, apply_tenant, client, repo_path, run_tool, tenant, wait_for, wait_ready};

#[tokio::test]
async fn the_metrics_endpoint_passes_promtool_and_carries_tenant_gauges() {
    let client = client().await;
    let (lease, identity) = ("lease-metrics", "op-metrics");
    let mut op = Operator::start(lease, identity).await;
    apply_tenant(&client, &tenant("metrics", &["apps"])).await;
    wait_ready(&client, "metrics").await;
    let text = op.metrics().await;
    for series in [
        "controller_runtime_reconcile_total{controller=\"tenant\",result=\"success\"}",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"tenant\",le=\"0.1\"}",
        "controller_runtime_active_workers{controller=\"tenant\"}",
        "leader_election_master_status{name=\"lease-metrics\"} 1",
        "zhengyun_build_info{version=",
        "zhengyun_tenant_conditions{status=\"True\",type=\"QuotaReady\"} ",
        "zhengyun_tenants_needing_attention{reason=\"not_ready\"} ",
        "zhengyun_tenant_oldest_successful_reconcile_timestamp_seconds ",
        "rest_client_requests_total{code=\"200\",host=\"127.0.0.1\",method=\"GET\"}",
        "zhengyun_tenants ",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // By default a tenant that is Ready, fresh and far from its quota has no series of its own
    // (the unit tests of tenancy::series show the ones that need attention do).
    assert!(!text.contains("tenant=\"metrics\""), "a healthy tenant's own series in:\n{text}");
    let (ok, out) = run_tool("promtool", &["check", "metrics"], Some(&text));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");

    // With every tenant's series, as a small cloud may want them.
    op.stop().await;
    let op = Operator::start_with(lease, identity, &[("ZHENGYUN_TENANT_SERIES", "all")]).await;
    let ready = "zhengyun_tenant_ready{tenant=\"metrics\"}";
    wait_for("the tenant's own series", SECONDS, || async { (op.metric(ready).await == Some(1.0)).then_some(()) })
        .await;
    let text = op.metrics().await;
    for series in [
        "zhengyun_tenant_quota_hard{resource=\"pods\",tenant=\"metrics\"} 10",
        "zhengyun_tenant_quota_used{resource=\"pods\",tenant=\"metrics\"} 0",
        "zhengyun_tenant_last_successful_reconcile_timestamp_seconds{tenant=\"metrics\"}",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    let (ok, out) = run_tool("promtool", &["check", "metrics"], Some(&text));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");
}

#[tokio::test]
async fn the_alert_rules_are_valid_and_fire_when_they_should() {
    let rules = repo_path("charts/zhengyun/files/alerts.yaml");
    let (ok, out) = run_tool("promtool", &["check", "rules", &rules], None);
    assert!(ok && out.contains("SUCCESS: 11 rules found"), "promtool check rules:\n{out}");
    let (ok, out) =
        run_tool("promtool", &["test", "rules", &repo_path("charts/zhengyun/files/alerts_test.yaml")], None);
    assert!(ok, "promtool test rules:\n{out}");
}
