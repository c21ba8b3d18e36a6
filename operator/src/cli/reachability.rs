//! `zhengyun-operator reachability`: who can reach whom under the policies in force.

use std::collections::BTreeMap;

use kube::{Api, api::ListParams};

/// The policies in force: NetworkPolicies, and ClusterNetworkPolicies when served and declared
/// enforced. The operator relies on them only then, and so does this view.
pub async fn policies_in_force(cnp_enforced: bool) -> anyhow::Result<(kube::Client, crate::reachability::World)> {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let client = kube::Client::try_default().await?;
    let network_policies = Api::<NetworkPolicy>::all(client.clone()).list(&ListParams::default()).await?.items;
    let served = crate::isolation::served(&client).await;
    let cluster_policies = match (served, cnp_enforced) {
        (true, true) => crate::isolation::list(&client).await?,
        (true, false) => {
            eprintln!(
                "note: ClusterNetworkPolicy is served but not declared enforced \
                 (--cluster-network-policy-enforced): left out, as the operator leaves it out"
            );
            Vec::new()
        }
        (false, _) => Vec::new(),
    };
    Ok((client, crate::reachability::World { network_policies, cluster_policies }))
}

/// Every running pod and outside address against every other, as JSON lines.
pub async fn pod_verdicts(
    (client, world): (kube::Client, crate::reachability::World),
    outside: &[std::net::IpAddr],
    ports: &[u16],
) -> anyhow::Result<()> {
    use crate::reachability::{self, Endpoint, PodRef, Port};
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| (n.metadata.name.unwrap_or_default(), n.metadata.labels.unwrap_or_default()))
        .collect();
    let mut ends: Vec<(String, Endpoint)> = Vec::new();
    for p in Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if ns.starts_with("kube-") || !running {
            continue;
        }
        let named_ports = p
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|cp| Some((cp.name.clone()?, u16::try_from(cp.container_port).ok()?)))
            .collect();
        let name = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
        let pod = PodRef {
            namespace_labels: namespaces.get(&ns).cloned().unwrap_or_default(),
            namespace: ns,
            labels: p.metadata.labels.clone().unwrap_or_default(),
            named_ports,
        };
        ends.push((name, Endpoint::Pod(pod)));
    }
    ends.extend(outside.iter().map(|ip| (ip.to_string(), Endpoint::External(*ip))));
    for (from, src) in &ends {
        for (to, dst) in ends.iter().filter(|(to, _)| to != from) {
            for port in ports {
                let v = reachability::evaluate(&world, src, dst, &Port { protocol: "TCP".into(), number: *port });
                let line = serde_json::json!({"from": from, "to": to, "port": port, "allowed": v.allowed});
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// Prints the matrix between groups (tenants, namespaces, outside), or explains one verdict.
pub async fn matrix(
    (client, world): (kube::Client, crate::reachability::World),
    explain: Option<Vec<String>>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::reachability;
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces = Api::<Namespace>::all(client.clone()).list(&ListParams::default()).await?;
    let namespaces = namespaces
        .items
        .into_iter()
        .filter(|n| !n.metadata.name.as_deref().unwrap_or("").starts_with("kube-"))
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()))
        .collect();
    let m = reachability::matrix(&world, &namespaces);
    match explain.as_deref() {
        Some([from, to]) => {
            let (src, dst, port) = match m.get(&(from.clone(), to.clone())) {
                Some(Some((src, dst, port, _))) => (src.clone(), dst.clone(), port.clone()),
                // Denied: explained for a pod with no labels on the generic port.
                Some(None) => reachability::denied_witness(&reachability::candidates(&world, &namespaces).0, from, to)
                    .ok_or_else(|| anyhow::anyhow!("no endpoint in {from} or {to} to explain"))?,
                None => anyhow::bail!("no group named {from} or {to}: use a tenant name, ns/NAME or (outside)"),
            };
            let x = reachability::explain(&world, &src, &dst, &port);
            if json {
                println!("{}", serde_json::to_string_pretty(&x)?);
            } else {
                print!("{}", reachability::render_explanation(&x));
            }
        }
        _ => print!("{}", reachability::render(&m)),
    }
    Ok(())
}
