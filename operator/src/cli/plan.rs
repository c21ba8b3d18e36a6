//! `zhengyun-operator plan`: the consolidation plan of the cluster's computer rooms.

use std::collections::BTreeMap;

use kube::{Api, api::ListParams};

/// Reads the rooms, zones, nodes, their pods and the tenants from the cluster and writes the
/// planner's report.
pub async fn plan(format: &str, output: Option<&str>, headroom: f64, prices: Option<&str>) -> anyhow::Result<()> {
    use crate::{
        api::{ComputerRoom, Tenant, Zone},
        rooms::{build, plan},
    };
    use k8s_openapi::api::core::v1::{Node, Pod};
    use zhengyun_planner::{Options, report};
    anyhow::ensure!((0.05..=1.0).contains(&headroom), "--headroom must be between 0.05 and 1");
    let client = kube::Client::try_default().await?;
    let lp = ListParams::default();
    let rooms = Api::<ComputerRoom>::all(client.clone()).list(&lp).await?.items;
    let zones = Api::<Zone>::all(client.clone()).list(&lp).await?.items;
    let nodes = Api::<Node>::all(client.clone()).list(&lp).await?.items;
    let tenants = Api::<Tenant>::all(client.clone()).list(&lp).await?.items;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields("spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"))
        .await?
        .items;
    let mut requested: BTreeMap<String, BTreeMap<String, i128>> = BTreeMap::new();
    for p in &pods {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let e = requested.entry(node).or_default();
        for (k, v) in build::pod_requests(p) {
            *e.entry(k).or_default() += v;
        }
    }
    let shared = plan::shared_nodes(&nodes.iter().collect::<Vec<_>>(), &zones.iter().collect::<Vec<_>>(), |n| {
        requested.get(n).cloned().unwrap_or_default()
    });
    let (systems, origins, servers) = plan::inventories(&rooms.iter().collect::<Vec<_>>());
    let quotas = plan::department_quotas(&tenants.iter().collect::<Vec<_>>());
    let prices = match prices {
        Some(f) => Some(
            zhengyun_planner::showback::prices(f, &std::fs::read_to_string(f)?).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
    let options = Options { headroom };
    let p = zhengyun_planner::plan(&shared, &systems, &options);
    zhengyun_planner::pack::check(&shared, &systems, &options, &p)
        .map_err(|e| anyhow::anyhow!("the plan does not hold: {e}"))?;
    let input = report::Input {
        nodes: &shared,
        systems: &systems,
        origins: &origins,
        options,
        servers: Some(&servers),
        prices: prices.as_ref(),
        quotas: Some(&quotas),
    };
    let r = report::Report::new(&input, &p);
    let text = match format {
        "markdown" => report::markdown(&r),
        "json" => r.to_json(),
        "html" => report::html(&r),
        other => anyhow::bail!("--format {other}: use markdown, json or html"),
    };
    match output {
        Some(f) => std::fs::write(f, text)?,
        None => print!("{text}"),
    }
    Ok(())
}
