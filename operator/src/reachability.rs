//! Who can reach whom: the verdict the current NetworkPolicies and ClusterNetworkPolicies imply.
//!
//! This reads the policies that exist (not the CRs' intentions), so it shows what the cluster
//! enforces. Semantics follow Kubernetes: a pod is isolated in a direction only if some policy
//! in its namespace selects it for that direction; isolated traffic needs a rule that admits
//! it; a peer's `namespaceSelector` and `podSelector` in one item are AND, separate items OR;
//! `policyTypes` defaults to Ingress (plus Egress when egress rules exist); `ipBlock` minus its
//! `except`. Admin-tier ClusterNetworkPolicies are checked first (by priority, first matching
//! rule wins: Accept and Deny decide, Pass defers to NetworkPolicy), Baseline-tier ones last,
//! for pods NetworkPolicy leaves unisolated. Pods are modelled without IP addresses, so IP
//! rules (`ipBlock`, `networks`) match only endpoints outside the cluster; named ports are
//! resolved through the destination pod's declared ports.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use crate::isolation::{ClusterNetworkPolicy, CnpPeer, CnpProtocol};

/// A pod as the policies see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub namespace_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Named container ports, for rules that name a port.
    pub named_ports: BTreeMap<String, u16>,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Pod(PodRef),
    External(IpAddr),
}

/// A destination port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub protocol: String,
    pub number: u16,
}

/// The policies in force.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub network_policies: Vec<NetworkPolicy>,
    pub cluster_policies: Vec<ClusterNetworkPolicy>,
}

/// The first connection found between two groups, with its verdict.
pub type Witness = (Endpoint, Endpoint, Port, Verdict);
/// Reachability between groups: `Some` witness when the row reaches the column.
pub type Matrix = BTreeMap<(String, String), Option<Witness>>;
type Rules = Vec<(Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>)>;

/// A verdict with the reason for each direction: the policies and rules that decided, in the
/// order they were consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub egress_steps: Vec<String>,
    pub ingress_steps: Vec<String>,
}

impl Verdict {
    /// The egress reason as one sentence.
    pub fn egress(&self) -> String {
        self.egress_steps.join(", then ")
    }

    /// The ingress reason as one sentence.
    pub fn ingress(&self) -> String {
        self.ingress_steps.join(", then ")
    }
}

/// Whether a label selector matches labels (matchLabels AND matchExpressions).
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Whether an address is in a CIDR.
pub fn in_cidr(ip: &IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else { return false };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(*a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(*a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn np_peer_matches(peer: &NetworkPolicyPeer, policy_ns: &str, other: &Endpoint) -> bool {
    if let Some(block) = &peer.ip_block {
        return match other {
            Endpoint::External(ip) => {
                in_cidr(ip, &block.cidr) && !block.except.iter().flatten().any(|e| in_cidr(ip, e))
            }
            Endpoint::Pod(_) => false,
        };
    }
    let Endpoint::Pod(p) = other else { return false };
    let ns_ok = match &peer.namespace_selector {
        Some(s) => selects(s, &p.namespace_labels),
        None => p.namespace == policy_ns,
    };
    let pod_ok = peer.pod_selector.as_ref().is_none_or(|s| selects(s, &p.labels));
    ns_ok && pod_ok
}

fn port_number(p: &IntOrString, dst: &Endpoint) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => match dst {
            Endpoint::Pod(pod) => pod.named_ports.get(name).copied(),
            Endpoint::External(_) => None,
        },
    }
}

fn np_ports_match(ports: &Option<Vec<NetworkPolicyPort>>, port: &Port, dst: &Endpoint) -> bool {
    let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| {
        let proto_ok = p.protocol.as_deref().unwrap_or("TCP") == port.protocol;
        let number_ok = match &p.port {
            None => true,
            Some(spec) => match (port_number(spec, dst), p.end_port) {
                (Some(start), Some(end)) => (start..=u16::try_from(end).unwrap_or(u16::MAX)).contains(&port.number),
                (Some(n), None) => n == port.number,
                (None, _) => false,
            },
        };
        proto_ok && number_ok
    })
}

fn policy_types(np: &NetworkPolicy) -> (bool, bool) {
    let spec = np.spec.clone().unwrap_or_default();
    match &spec.policy_types {
        Some(t) => (t.iter().any(|x| x == "Ingress"), t.iter().any(|x| x == "Egress")),
        None => (true, spec.egress.is_some()),
    }
}

fn name(np: &NetworkPolicy) -> String {
    format!("{}/{}", np.metadata.namespace.as_deref().unwrap_or(""), np.metadata.name.as_deref().unwrap_or(""))
}

/// NetworkPolicy's verdict for one direction at `pod`: `None` when no policy isolates it.
fn network_policy_side(
    world: &World,
    pod: &PodRef,
    peer: &Endpoint,
    port: &Port,
    dst: &Endpoint,
    ingress: bool,
) -> Option<(bool, String)> {
    let mut isolating = Vec::new();
    for np in &world.network_policies {
        if np.metadata.namespace.as_deref() != Some(pod.namespace.as_str()) {
            continue;
        }
        let spec = np.spec.clone().unwrap_or_default();
        if !selects(&spec.pod_selector.clone().unwrap_or_default(), &pod.labels) {
            continue;
        }
        let (i, e) = policy_types(np);
        if (ingress && !i) || (!ingress && !e) {
            continue;
        }
        isolating.push(name(np));
        let rules: Rules = if ingress {
            spec.ingress.unwrap_or_default().into_iter().map(|r| (r.from, r.ports)).collect()
        } else {
            spec.egress.unwrap_or_default().into_iter().map(|r| (r.to, r.ports)).collect()
        };
        for (i, (peers, ports)) in rules.iter().enumerate() {
            let ns = np.metadata.namespace.as_deref().unwrap_or("");
            let peer_ok = match peers.as_ref().filter(|p| !p.is_empty()) {
                None => true,
                Some(peers) => peers.iter().any(|p| np_peer_matches(p, ns, peer)),
            };
            if peer_ok && np_ports_match(ports, port, dst) {
                let dir = if ingress { "ingress" } else { "egress" };
                return Some((true, format!("NetworkPolicy {} allows it (its {dir} rule {i})", name(np))));
            }
        }
    }
    if isolating.is_empty() {
        None
    } else {
        Some((false, format!("isolated by NetworkPolicy {} and no rule allows", isolating.join(", "))))
    }
}

fn cnp_peer_matches(peer: &CnpPeer, other: &Endpoint) -> bool {
    match other {
        Endpoint::Pod(p) => {
            peer.namespaces.as_ref().is_some_and(|s| selects(s, &p.namespace_labels))
                || peer.pods.as_ref().is_some_and(|s| {
                    selects(&s.namespace_selector, &p.namespace_labels) && selects(&s.pod_selector, &p.labels)
                })
        }
        Endpoint::External(ip) => peer.networks.iter().flatten().any(|c| in_cidr(ip, c)),
    }
}

fn cnp_protocols_match(protocols: &[CnpProtocol], port: &Port, dst: &Endpoint) -> bool {
    protocols.is_empty()
        || protocols.iter().any(|p| {
            let number = |x: &Option<crate::isolation::CnpPort>| {
                x.as_ref()
                    .and_then(|p| p.destination_port.number)
                    .is_none_or(|n| i64::from(n) == i64::from(port.number))
            };
            (p.tcp.is_some() && port.protocol == "TCP" && number(&p.tcp))
                || (p.udp.is_some() && port.protocol == "UDP" && number(&p.udp))
                || p.destination_named_port
                    .as_ref()
                    .is_some_and(|n| port_number(&IntOrString::String(n.clone()), dst) == Some(port.number))
        })
}

fn cnp_subject(p: &ClusterNetworkPolicy, pod: &PodRef) -> bool {
    let s = &p.spec.subject;
    s.namespaces.as_ref().is_some_and(|n| selects(n, &pod.namespace_labels))
        || s.pods.as_ref().is_some_and(|x| {
            selects(&x.namespace_selector, &pod.namespace_labels) && selects(&x.pod_selector, &pod.labels)
        })
}

/// The first matching rule of a tier: `Some((action, reason))`.
fn cnp_tier(
    world: &World,
    tier: &str,
    pod: &PodRef,
    peer: &Endpoint,
    port: &Port,
    dst: &Endpoint,
    ingress: bool,
) -> Option<(String, String)> {
    let mut policies: Vec<&ClusterNetworkPolicy> =
        world.cluster_policies.iter().filter(|p| p.spec.tier == tier).collect();
    policies.sort_by_key(|p| (p.spec.priority, p.metadata.name.clone()));
    for p in policies {
        if !cnp_subject(p, pod) {
            continue;
        }
        let rules = if ingress { &p.spec.ingress } else { &p.spec.egress };
        for (i, r) in rules.iter().enumerate() {
            let peers = if ingress { &r.from } else { &r.to };
            if peers.iter().any(|x| cnp_peer_matches(x, peer)) && cnp_protocols_match(&r.protocols, port, dst) {
                let rule_name = r.name.clone().unwrap_or_else(|| i.to_string());
                return Some((
                    r.action.clone(),
                    format!(
                        "{tier} ClusterNetworkPolicy {} rule {rule_name}: {}",
                        p.metadata.name.as_deref().unwrap_or(""),
                        r.action
                    ),
                ));
            }
        }
    }
    None
}

/// One direction's verdict at `pod`, with each policy or rule that took part, in order.
fn side(
    world: &World,
    pod: &PodRef,
    peer: &Endpoint,
    port: &Port,
    dst: &Endpoint,
    ingress: bool,
) -> (bool, Vec<String>) {
    let mut steps = Vec::new();
    if let Some((action, why)) = cnp_tier(world, "Admin", pod, peer, port, dst, ingress) {
        steps.push(why);
        match action.as_str() {
            "Accept" => return (true, steps),
            "Deny" => return (false, steps),
            _ => {}
        }
    }
    if let Some((ok, why)) = network_policy_side(world, pod, peer, port, dst, ingress) {
        steps.push(why);
        return (ok, steps);
    }
    if let Some((action, why)) = cnp_tier(world, "Baseline", pod, peer, port, dst, ingress) {
        steps.push(why);
        return (action != "Deny", steps);
    }
    steps.push("not isolated".to_string());
    (true, steps)
}

/// Whether `src` can open a connection to `dst` on `port`, and why.
pub fn evaluate(world: &World, src: &Endpoint, dst: &Endpoint, port: &Port) -> Verdict {
    let outside = || (true, vec!["outside the cluster".to_string()]);
    let (e_ok, egress_steps) = match src {
        Endpoint::Pod(p) => side(world, p, dst, port, dst, false),
        Endpoint::External(_) => outside(),
    };
    let (i_ok, ingress_steps) = match dst {
        Endpoint::Pod(p) => side(world, p, src, port, dst, true),
        Endpoint::External(_) => outside(),
    };
    Verdict { allowed: e_ok && i_ok, egress_steps, ingress_steps }
}

/// Representative endpoints and ports for a set of namespaces: per namespace, a pod with no
/// labels and one for each label set the policies select; one address per CIDR the policies
/// name, plus an Internet address; the ports the policies name plus a generic one.
pub fn candidates(
    world: &World,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> (Vec<Endpoint>, Vec<Port>) {
    let mut label_sets: BTreeSet<BTreeMap<String, String>> = BTreeSet::from([BTreeMap::new()]);
    let mut cidrs: BTreeSet<String> = BTreeSet::new();
    let mut ports: BTreeSet<Port> =
        BTreeSet::from([Port { protocol: "TCP".into(), number: 8080 }, Port { protocol: "UDP".into(), number: 53 }]);
    let mut add_sel = |s: &Option<LabelSelector>| {
        if let Some(m) = s.as_ref().and_then(|s| s.match_labels.clone()).filter(|m| !m.is_empty()) {
            label_sets.insert(m);
        }
    };
    for np in &world.network_policies {
        let spec = np.spec.clone().unwrap_or_default();
        add_sel(&spec.pod_selector);
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.clone().unwrap_or_default())
            .chain(spec.egress.iter().flatten().flat_map(|r| r.to.clone().unwrap_or_default()));
        for p in peers {
            add_sel(&p.pod_selector);
            if let Some(b) = p.ip_block {
                cidrs.insert(b.cidr);
                cidrs.extend(b.except.unwrap_or_default());
            }
        }
        let rule_ports = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.ports.clone().unwrap_or_default())
            .chain(spec.egress.iter().flatten().flat_map(|r| r.ports.clone().unwrap_or_default()));
        for p in rule_ports {
            if let Some(IntOrString::Int(n)) = p.port {
                ports.insert(Port {
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                    number: u16::try_from(n).unwrap_or(0),
                });
            }
        }
    }
    for p in &world.cluster_policies {
        add_sel(&p.spec.subject.pods.as_ref().map(|x| x.pod_selector.clone()));
        for r in p.spec.ingress.iter().chain(&p.spec.egress) {
            for peer in r.from.iter().chain(&r.to) {
                add_sel(&peer.pods.as_ref().map(|x| x.pod_selector.clone()));
                cidrs.extend(peer.networks.clone().unwrap_or_default());
            }
            for proto in &r.protocols {
                for (name, x) in [("TCP", &proto.tcp), ("UDP", &proto.udp)] {
                    if let Some(n) = x.as_ref().and_then(|x| x.destination_port.number) {
                        ports.insert(Port { protocol: name.into(), number: u16::try_from(n).unwrap_or(0) });
                    }
                }
            }
        }
    }
    let mut endpoints = Vec::new();
    for (ns, ns_labels) in namespaces {
        for labels in &label_sets {
            endpoints.push(Endpoint::Pod(PodRef {
                namespace: ns.clone(),
                namespace_labels: ns_labels.clone(),
                labels: labels.clone(),
                named_ports: BTreeMap::new(),
            }));
        }
    }
    let mut addresses: BTreeSet<IpAddr> = BTreeSet::new();
    for c in &cidrs {
        if let Some(ip) = c.split_once('/').and_then(|(ip, _)| ip.parse().ok()) {
            addresses.insert(ip);
        }
    }
    addresses.insert(IpAddr::from([203, 0, 113, 7]));
    endpoints.extend(addresses.into_iter().map(Endpoint::External));
    (endpoints, ports.into_iter().collect())
}

/// A group of endpoints in the matrix: a tenant (by its namespaces), `(outside)`, or a
/// namespace no tenant holds.
pub fn group_of(e: &Endpoint) -> String {
    match e {
        Endpoint::External(_) => "(outside)".into(),
        Endpoint::Pod(p) => {
            p.namespace_labels.get(crate::labels::TENANT).cloned().unwrap_or_else(|| format!("ns/{}", p.namespace))
        }
    }
}

/// The reachability matrix: for every ordered pair of groups, the first allowed connection
/// found (or none).
/// What a denied cell of the [`matrix`] is explained with: of the [`candidates`], a pod with
/// no labels of each group, on the generic port (TCP 8080); `None` when a group has none.
pub fn denied_witness(endpoints: &[Endpoint], from: &str, to: &str) -> Option<(Endpoint, Endpoint, Port)> {
    let pick = |g: &str| endpoints.iter().find(|e| group_of(e) == g).cloned();
    Some((pick(from)?, pick(to)?, Port { protocol: "TCP".into(), number: 8080 }))
}

pub fn matrix(world: &World, namespaces: &BTreeMap<String, BTreeMap<String, String>>) -> Matrix {
    let (endpoints, ports) = candidates(world, namespaces);
    let mut out: Matrix = BTreeMap::new();
    for src in &endpoints {
        for dst in &endpoints {
            if matches!((src, dst), (Endpoint::External(_), Endpoint::External(_))) {
                continue;
            }
            let key = (group_of(src), group_of(dst));
            if matches!(out.get(&key), Some(Some(_))) {
                continue;
            }
            let found = ports.iter().find_map(|port| {
                let v = evaluate(world, src, dst, port);
                v.allowed.then(|| (src.clone(), dst.clone(), port.clone(), v))
            });
            out.insert(key, found);
        }
    }
    out
}

/// One end of an explained connection, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct End {
    /// `pod` or `address`.
    pub kind: &'static str,
    pub namespace: Option<String>,
    /// The group the matrix shows it in: a tenant, `ns/NAME` or `(outside)`.
    pub group: String,
    pub labels: BTreeMap<String, String>,
    /// The namespace's labels that some policy selects on.
    pub namespace_labels: BTreeMap<String, String>,
    pub address: Option<String>,
}

/// One verdict explained: the two ends, the port, and each policy and rule that decided, in
/// the order they were consulted, per direction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    pub from: End,
    pub to: End,
    pub protocol: String,
    pub port: u16,
    pub allowed: bool,
    /// Leaving the source (egress), then entering the destination (ingress).
    pub egress: Vec<String>,
    pub ingress: Vec<String>,
}

/// Label keys some namespace selector in the policies names: the namespace labels that matter.
fn namespace_keys(world: &World) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut add = |sel: &LabelSelector| {
        keys.extend(sel.match_labels.iter().flatten().map(|(k, _)| k.clone()));
        keys.extend(sel.match_expressions.iter().flatten().map(|e| e.key.clone()));
    };
    for np in &world.network_policies {
        let spec = np.spec.clone().unwrap_or_default();
        let peers = spec.ingress.iter().flatten().flat_map(|r| r.from.iter().flatten());
        let peers = peers.chain(spec.egress.iter().flatten().flat_map(|r| r.to.iter().flatten()));
        for p in peers {
            if let Some(sel) = &p.namespace_selector {
                add(sel);
            }
        }
    }
    for cnp in &world.cluster_policies {
        let subject = &cnp.spec.subject;
        let peers = cnp.spec.ingress.iter().flat_map(|r| r.from.iter());
        let peers = peers.chain(cnp.spec.egress.iter().flat_map(|r| r.to.iter()));
        let selectors = peers.flat_map(|p| {
            p.namespaces.iter().chain(p.pods.iter().map(|x| &x.namespace_selector)).cloned().collect::<Vec<_>>()
        });
        let own = subject.namespaces.iter().chain(subject.pods.iter().map(|x| &x.namespace_selector)).cloned();
        for sel in selectors.chain(own).collect::<Vec<_>>() {
            add(&sel);
        }
    }
    keys
}

/// Explains the verdict of one connection.
pub fn explain(world: &World, src: &Endpoint, dst: &Endpoint, port: &Port) -> Explanation {
    let keys = namespace_keys(world);
    let end = |e: &Endpoint| match e {
        Endpoint::Pod(p) => End {
            kind: "pod",
            namespace: Some(p.namespace.clone()),
            group: group_of(e),
            labels: p.labels.clone(),
            namespace_labels: p
                .namespace_labels
                .iter()
                .filter(|(k, _)| keys.contains(*k) || k.as_str() == crate::labels::TENANT)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            address: None,
        },
        Endpoint::External(ip) => End {
            kind: "address",
            namespace: None,
            group: group_of(e),
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            address: Some(ip.to_string()),
        },
    };
    let v = evaluate(world, src, dst, port);
    Explanation {
        from: end(src),
        to: end(dst),
        protocol: port.protocol.clone(),
        port: port.number,
        allowed: v.allowed,
        egress: v.egress_steps,
        ingress: v.ingress_steps,
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        "none".to_string()
    } else {
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }
}

fn end_text(e: &End) -> String {
    match (&e.namespace, &e.address) {
        (Some(ns), _) => format!(
            "a pod in namespace {ns} ({}), pod labels: {}; namespace labels the policies select on: {}",
            e.group,
            labels_text(&e.labels),
            labels_text(&e.namespace_labels)
        ),
        (None, Some(ip)) => format!("the address {ip}, outside the cluster"),
        (None, None) => e.group.clone(),
    }
}

/// An explanation as sentences, one line for each end and each policy or rule that decided.
pub fn render_explanation(x: &Explanation) -> String {
    let verdict = if x.allowed { "can reach" } else { "cannot reach" };
    let mut s = format!(
        "{} {verdict} {} on {} port {}.
",
        x.from.group, x.to.group, x.protocol, x.port
    );
    s.push_str(&format!(
        "  From: {}.
",
        end_text(&x.from)
    ));
    s.push_str(&format!(
        "  To:   {}.
",
        end_text(&x.to)
    ));
    s.push_str(
        "  Leaving the source (egress):
",
    );
    for step in &x.egress {
        s.push_str(&format!(
            "    - {step}.
"
        ));
    }
    s.push_str(
        "  Entering the destination (ingress):
",
    );
    for step in &x.ingress {
        s.push_str(&format!(
            "    - {step}.
"
        ));
    }
    s
}

/// The matrix as text: `✓` reachable, `·` not.
pub fn render(m: &Matrix) -> String {
    let groups: BTreeSet<&String> = m.keys().flat_map(|(a, b)| [a, b]).collect();
    let width = groups.iter().map(|g| g.chars().count()).max().unwrap_or(4).max(8);
    let mut s = format!("{:width$}  (rows reach columns)\n", "from \\ to");
    s.push_str(&format!("{:width$}", ""));
    for g in &groups {
        s.push_str(&format!(" {:>width$}", g));
    }
    s.push('\n');
    for a in &groups {
        s.push_str(&format!("{:width$}", a));
        for b in &groups {
            let mark = match m.get(&((*a).clone(), (*b).clone())) {
                Some(Some(_)) => "✓",
                Some(None) => "·",
                None => "-",
            };
            s.push_str(&format!(" {:>width$}", mark));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn np(ns: &str, v: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": ns}, "spec": v})).unwrap_or_default()
    }

    fn pod(ns: &str, labels: &[(&str, &str)]) -> Endpoint {
        Endpoint::Pod(PodRef {
            namespace: ns.into(),
            namespace_labels: BTreeMap::from([
                ("kubernetes.io/metadata.name".to_string(), ns.to_string()),
                ("team".to_string(), ns.to_string()),
            ]),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            named_ports: BTreeMap::new(),
        })
    }

    fn tcp(n: u16) -> Port {
        Port { protocol: "TCP".into(), number: n }
    }

    #[test]
    fn and_versus_or_in_peers() {
        let and = World {
            network_policies: vec![np(
                "a",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            )],
            ..Default::default()
        };
        let or = World {
            network_policies: vec![np(
                "a",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}, {"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            )],
            ..Default::default()
        };
        let server = pod("a", &[]);
        assert!(evaluate(&and, &pod("b", &[("app", "client")]), &server, &tcp(80)).allowed);
        assert!(!evaluate(&and, &pod("b", &[]), &server, &tcp(80)).allowed, "AND needs both");
        assert!(!evaluate(&and, &pod("a", &[("app", "client")]), &server, &tcp(80)).allowed);
        assert!(evaluate(&or, &pod("b", &[]), &server, &tcp(80)).allowed, "OR: the namespace alone");
        assert!(
            evaluate(&or, &pod("a", &[("app", "client")]), &server, &tcp(80)).allowed,
            "OR: a pod of the same namespace"
        );
        assert!(
            !evaluate(&or, &pod("c", &[("app", "client")]), &server, &tcp(80)).allowed,
            "podSelector alone is the policy's namespace"
        );
    }

    #[test]
    fn policy_types_and_ip_blocks() {
        // Without policyTypes and without egress rules, egress is not isolated.
        let w = World { network_policies: vec![np("a", json!({"podSelector": {}}))], ..Default::default() };
        assert!(
            evaluate(
                &w,
                &pod("a", &[]),
                &Endpoint::External("8.8.8.8".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                &tcp(443)
            )
            .allowed
        );
        assert!(!evaluate(&w, &pod("b", &[]), &pod("a", &[]), &tcp(80)).allowed);
        let w = World {
            network_policies: vec![np(
                "a",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 443}]}]}),
            )],
            ..Default::default()
        };
        let ext = |s: &str| Endpoint::External(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert!(evaluate(&w, &pod("a", &[]), &ext("10.2.3.4"), &tcp(443)).allowed);
        assert!(!evaluate(&w, &pod("a", &[]), &ext("10.1.3.4"), &tcp(443)).allowed, "except");
        assert!(!evaluate(&w, &pod("a", &[]), &ext("10.2.3.4"), &tcp(80)).allowed, "port");
        assert!(evaluate(&w, &pod("b", &[]), &pod("a", &[]), &tcp(80)).allowed, "ingress not isolated");
    }

    #[test]
    fn the_admin_tier_overrides_network_policy() {
        let deny: ClusterNetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "t"},
            "spec": {"tier": "Admin", "priority": 100, "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                "ingress": [{"action": "Pass", "from": [{"namespaces": {"matchLabels": {"team": "a"}}}]}, {"action": "Deny", "from": [{"namespaces": {}}]}]}
        })).unwrap_or_default();
        let open = np("a", json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}));
        let w = World { network_policies: vec![open], cluster_policies: vec![deny] };
        assert!(
            !evaluate(&w, &pod("b", &[]), &pod("a", &[]), &tcp(80)).allowed,
            "a tenant's open policy cannot beat the admin tier"
        );
        assert!(
            evaluate(&w, &pod("a", &[]), &pod("a", &[]), &tcp(80)).allowed,
            "passed to NetworkPolicy, which allows"
        );
    }

    #[test]
    fn an_explanation_reads_as_sentences_with_each_deciding_rule_on_its_own_line() {
        let cnp: ClusterNetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "zones"},
            "spec": {"tier": "Admin", "priority": 100, "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                "ingress": [{"name": "same-team", "action": "Pass", "from": [{"namespaces": {"matchLabels": {"team": "a"}}}]}]}
        }))
        .unwrap_or_default();
        let allow = np(
            "a",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        let w = World { network_policies: vec![allow], cluster_policies: vec![cnp] };
        let x = explain(&w, &pod("a", &[]), &pod("a", &[("app", "web")]), &tcp(8080));
        assert!(x.allowed);
        let text = render_explanation(&x);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ns/a can reach ns/a on TCP port 8080.", "{text}");
        assert!(lines[2].contains("pod labels: app=web") && lines[2].contains("team=a"), "{text}");
        assert!(!lines[2].contains("kubernetes.io/metadata.name"), "only the labels a policy selects on: {text}");
        assert!(text.contains("    - Admin ClusterNetworkPolicy zones rule same-team: Pass.\n"), "{text}");
        assert!(text.contains("    - NetworkPolicy a/p allows it (its ingress rule 0).\n"), "{text}");
        assert!(!text.contains("PodRef") && !text.contains('{'), "no Debug structure: {text}");
        let json = serde_json::to_value(&x).unwrap_or_default();
        assert_eq!(json["to"]["labels"]["app"], "web");
        assert_eq!(json["ingress"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn cidr_matching() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(in_cidr(&ip("10.200.0.10"), "10.200.0.10/32"));
        assert!(!in_cidr(&ip("10.200.0.11"), "10.200.0.10/32"));
        assert!(in_cidr(&ip("1.2.3.4"), "0.0.0.0/0"));
        assert!(in_cidr(&ip("fd00::1"), "fd00::/8"));
        assert!(!in_cidr(&ip("fd00::1"), "10.0.0.0/8"));
    }
}
