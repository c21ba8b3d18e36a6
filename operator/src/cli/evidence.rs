//! `zhengyun-operator evidence`: the assessor's report of the cluster as it is.

/// Reads the cluster and writes evidence.html and evidence.json into `output`.
pub async fn write(
    output: &str,
    operator_role: &str,
    observed: Option<&str>,
    first_instant: Option<&str>,
    cluster_network_policy_enforced: bool,
) -> anyhow::Result<()> {
    let (client, world) = super::reachability::policies_in_force(cluster_network_policy_enforced).await?;
    let cluster = kube::Config::infer().await.map(|c| c.cluster_url.to_string()).unwrap_or_default();
    let observed = match observed {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("--observed {f}: {e}"))?),
        None => None,
    };
    let first_instant = match first_instant {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("--first-instant {f}: {e}"))?),
        None => None,
    };
    let inputs = crate::evidence::collect(&client, cluster, world, operator_role, observed, first_instant).await?;
    let report = crate::evidence::build(&inputs);
    let dir = std::path::Path::new(output);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("evidence.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(dir.join("evidence.html"), crate::evidence::html::render(&report))?;
    eprintln!(
        "wrote {0}/evidence.html and {0}/evidence.json: {1} pass, {2} fail, {3} not applicable",
        dir.display(),
        report.summary.get("pass").unwrap_or(&0),
        report.summary.get("fail").unwrap_or(&0),
        report.summary.get("not_applicable").unwrap_or(&0)
    );
    Ok(())
}
