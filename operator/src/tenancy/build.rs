//! Pure builders: a [`ValidatedTenant`] in, the Kubernetes objects it implies out.
//!
//! Nothing here reads the cluster, so every rule about what a tenant gets is unit-tested here
//! and the reconciler only decides *when* to apply these objects.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec},
        networking::v1::{
            IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
            NetworkPolicyPort, NetworkPolicySpec,
        },
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};

use super::validate::{Limits, ValidatedTenant};
use crate::isolation::{self as cnp, ClusterNetworkPolicy, CnpPeer, CnpPods, CnpSpec, CnpSubject, TENANT_PRIORITY};
use crate::zones::ZonePlacement;
use crate::{
    api::{OwnerKind, SmCertificate},
    labels,
    quantity::{self, Kind, Milli},
};

/// Everything one round of a tenant wants to exist. Where it is applied it is destructured
/// without `..`, so a kind added here cannot be forgotten there (nor in the orphan sweep).
#[derive(Debug, Default)]
pub struct Desired {
    /// The tenant's namespaces it holds (claimed this round or before).
    pub namespaces: Vec<Namespace>,
    /// Default-deny and the allowances, per namespace.
    pub policies: Vec<NetworkPolicy>,
    /// The tenant boundary as an Admin-tier policy, where the cluster enforces those.
    pub cluster_policy: Option<ClusterNetworkPolicy>,
    /// The quotas to write; a namespace whose quota is held this round has none here.
    pub quotas: Vec<ResourceQuota>,
    pub limits: Vec<LimitRange>,
    pub certificates: Vec<SmCertificate>,
    pub gateways: Vec<crate::api::SecureGateway>,
    /// The owners' access, per namespace (applied only where isolation and quota hold).
    pub bindings: Vec<RoleBinding>,
    /// The owners' cluster-scoped reads (their Tenant, namespaces and Department).
    pub reader: Option<(ClusterRole, ClusterRoleBinding)>,
}

/// What a round knows besides the spec when it builds [`Desired`].
pub struct Inputs<'a> {
    /// The namespaces the tenant holds.
    pub owned: &'a [String],
    /// Per owned namespace, the quota this round writes; `None` keeps the one in place.
    pub quotas: &'a [Option<BTreeMap<String, Milli>>],
    pub placement: &'a ZonePlacement,
    /// The operator's namespace (the isolation canary lives there).
    pub system: &'a str,
    /// The Tenant as owner of its ClusterNetworkPolicy, when the cluster enforces those.
    pub cluster_policy_owner: Option<OwnerReference>,
    /// The Tenant's UID (owner of its reader role); none before the API server gave it one.
    pub uid: Option<&'a str>,
    /// The name of the Department object whose code the tenant names, if any.
    pub department: Option<&'a str>,
}

/// The whole desired set of a tenant: pure, from the validated spec and [`Inputs`].
pub fn desired(t: &ValidatedTenant, i: &Inputs<'_>) -> Desired {
    let per_ns = |f: &dyn Fn(&str) -> Vec<NetworkPolicy>| i.owned.iter().flat_map(|ns| f(ns)).collect();
    Desired {
        namespaces: i.owned.iter().map(|ns| namespace(t, ns)).collect(),
        policies: per_ns(&|ns| network_policies(t, ns, i.placement, i.system)),
        cluster_policy: i.cluster_policy_owner.clone().map(|o| cluster_policy(t, i.placement, o, i.system)),
        quotas: i
            .owned
            .iter()
            .zip(i.quotas)
            .filter_map(|(ns, hard)| hard.as_ref().map(|h| resource_quota(t, ns, h)))
            .collect(),
        limits: i.owned.iter().filter_map(|ns| limit_range(t, ns)).collect(),
        certificates: i.owned.iter().flat_map(|ns| certificates(t, ns)).collect(),
        gateways: i.owned.iter().flat_map(|ns| gateways(t, ns)).collect(),
        bindings: i.owned.iter().map(|ns| role_binding(t, ns)).collect(),
        reader: i.uid.map(|uid| owner_reader(t, uid, i.owned, i.department)),
    }
}

/// Name of the per-namespace ResourceQuota, LimitRange and owners' RoleBinding.
pub const CHILD_NAME: &str = "zhengyun-tenant";
/// The ClusterRole the owners are bound to in each namespace.
pub const OWNER_ROLE: &str = "zhengyun-tenant-owner";
/// The policy that denies everything not allowed by another.
pub const DENY_POLICY: &str = "zhengyun-default-deny";
/// The policy that allows traffic inside the tenant and DNS.
pub const ALLOW_POLICY: &str = "zhengyun-allow-tenant";
/// NodeLocal DNSCache's link-local address, allowed where clusters run it.
pub const NODE_LOCAL_DNS: &str = "169.254.20.10/32";

/// Labels every object of the tenant carries.
pub fn tenant_labels(t: &ValidatedTenant) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::MANAGED_BY.into(), labels::MANAGER.into()), (labels::TENANT.into(), t.name.clone())])
}

fn meta(t: &ValidatedTenant, namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(tenant_labels(t)),
        ..Default::default()
    }
}

/// A tenant namespace: ownership, department, zone and Pod Security Admission labels.
pub fn namespace(t: &ValidatedTenant, name: &str) -> Namespace {
    let pss = t.level.pod_security();
    let mut l = tenant_labels(t);
    l.insert(labels::DEPARTMENT.into(), t.department_code.clone());
    l.insert(labels::ZONE.into(), t.zone.clone());
    l.insert(labels::SECURITY_LEVEL.into(), t.level.number().to_string());
    if let Some(arch) = t.arch {
        l.insert(labels::ARCH.into(), arch.as_str().into());
    }
    for mode in ["enforce", "audit", "warn"] {
        l.insert(format!("pod-security.kubernetes.io/{mode}"), pss.into());
        l.insert(format!("pod-security.kubernetes.io/{mode}-version"), "latest".into());
    }
    Namespace {
        metadata: ObjectMeta { name: Some(name.into()), labels: Some(l), ..Default::default() },
        ..Default::default()
    }
}

/// What a namespace of a `Retain` tenant keeps once the tenant is gone: its identity and pod
/// security stay (so its workloads keep running under the same rules), our ownership goes.
pub fn orphaned_namespace(t: &ValidatedTenant, name: &str) -> Namespace {
    let mut ns = namespace(t, name);
    if let Some(l) = ns.metadata.labels.as_mut() {
        l.remove(labels::MANAGED_BY);
        l.insert(labels::ORPHANED.into(), "true".into());
    }
    ns
}

fn resource_name(kind: Kind, v: Milli) -> Quantity {
    Quantity(quantity::format(v, kind))
}

/// The namespace's share of the tenant's quota (see [`super::quota`]).
pub fn resource_quota(t: &ValidatedTenant, namespace: &str, hard: &BTreeMap<String, Milli>) -> ResourceQuota {
    let hard =
        hard.iter().filter_map(|(res, v)| t.quota.get(res).map(|b| (res.clone(), resource_name(b.kind, *v)))).collect();
    ResourceQuota {
        metadata: meta(t, namespace, CHILD_NAME),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..Default::default() }),
        ..Default::default()
    }
}

/// Container defaults, when the tenant declares any.
pub fn limit_range(t: &ValidatedTenant, namespace: &str) -> Option<LimitRange> {
    let l: &Limits = t.limits.as_ref()?;
    let section = |m: &BTreeMap<&'static str, Milli>| -> Option<BTreeMap<String, Quantity>> {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| {
                    let kind = if *k == "cpu" { Kind::Cores } else { Kind::Bytes };
                    ((*k).to_string(), resource_name(kind, *v))
                })
                .collect()
        })
    };
    let item = LimitRangeItem {
        type_: "Container".into(),
        default_request: section(&l.default_request),
        default: section(&l.default_limit),
        max: section(&l.max),
        ..Default::default()
    };
    if item.default_request.is_none() && item.default.is_none() && item.max.is_none() {
        return None;
    }
    Some(LimitRange { metadata: meta(t, namespace, CHILD_NAME), spec: Some(LimitRangeSpec { limits: vec![item] }) })
}

fn owner_subjects(t: &ValidatedTenant) -> Vec<Subject> {
    t.owners
        .iter()
        .map(|o| Subject {
            kind: match o.kind {
                OwnerKind::User => "User".into(),
                OwnerKind::Group => "Group".into(),
            },
            name: o.name.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        })
        .collect()
}

/// The owners' access: the [`OWNER_ROLE`] ClusterRole, bound in this namespace.
pub fn role_binding(t: &ValidatedTenant, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(t, namespace, CHILD_NAME),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: OWNER_ROLE.into(),
        },
        subjects: Some(owner_subjects(t)),
    }
}

/// The name of the ClusterRole, and of its ClusterRoleBinding, that let a tenant's owners read
/// the tenant.
pub fn reader_name(tenant: &str) -> String {
    format!("zhengyun-tenant-reader:{tenant}")
}

/// What a tenant's owners may read outside their namespaces, by name: the Tenant itself, the
/// Namespace objects it holds, and its Department (`department`: that object's name). A RoleBinding cannot grant a cluster-scoped read, so this is
/// a ClusterRole and a ClusterRoleBinding of the tenant's own, owned by the Tenant (they go
/// with it).
pub fn owner_reader(
    t: &ValidatedTenant,
    uid: &str,
    namespaces: &[String],
    department: Option<&str>,
) -> (ClusterRole, ClusterRoleBinding) {
    const READ: &[&str] = &["get", "list", "watch"];
    let name = reader_name(&t.name);
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        labels: Some(tenant_labels(t)),
        owner_references: Some(vec![OwnerReference {
            api_version: "zhengyun.io/v1alpha1".into(),
            kind: "Tenant".into(),
            name: t.name.clone(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        ..Default::default()
    };
    let by_name = |group: &str, resource: &str, names: &[String]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: Some(names.to_vec()),
        verbs: READ.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    };
    let mut rules = vec![by_name("zhengyun.io", "tenants", std::slice::from_ref(&t.name))];
    // An empty resourceNames would mean every namespace: no rule until it holds one.
    if !namespaces.is_empty() {
        rules.push(by_name("", "namespaces", namespaces));
    }
    // Their Department (the object whose code the tenant names), where the cloud keeps a tree.
    if let Some(d) = department {
        rules.push(by_name("zhengyun.io", "departments", &[d.to_string()]));
    }
    let role = ClusterRole { metadata: metadata.clone(), rules: Some(rules), aggregation_rule: None };
    let binding = ClusterRoleBinding {
        metadata,
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name },
        subjects: Some(owner_subjects(t)),
    };
    (role, binding)
}

fn tenant_peer(t: &ValidatedTenant) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(labels::TENANT.into(), t.name.clone())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn dns_ports() -> Vec<NetworkPolicyPort> {
    ["UDP", "TCP"]
        .into_iter()
        .map(|p| NetworkPolicyPort { protocol: Some(p.into()), port: Some(IntOrString::Int(53)), end_port: None })
        .collect()
}

/// Default-deny in both directions, then allow: the tenant to itself, DNS, the outside networks
/// its zone declares, and the isolation canary's open port in `system` (the operator's
/// namespace; the gate's proof that the rest is closed, crate::gate).
pub fn network_policies(
    t: &ValidatedTenant,
    namespace: &str,
    zone: &ZonePlacement,
    system: &str,
) -> Vec<NetworkPolicy> {
    let both = Some(vec!["Ingress".to_string(), "Egress".to_string()]);
    let deny = NetworkPolicy {
        metadata: meta(t, namespace, DENY_POLICY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: both.clone(),
            // Empty, not absent: applied, the operator owns both lists, so a rule someone else
            // adds to them is taken out again on the next round instead of left as another
            // manager's field.
            ingress: Some(Vec::new()),
            egress: Some(Vec::new()),
        }),
    };
    // kube-dns in kube-system: namespace AND pod selector in one peer.
    let kube_dns = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "kube-system".into())])),
            ..Default::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cidr_peer = |cidr: &str| NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.into(), except: None }),
        ..Default::default()
    };
    let mut ingress = vec![NetworkPolicyIngressRule { from: Some(vec![tenant_peer(t)]), ports: None }];
    if !zone.ingress.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(zone.ingress.iter().map(|c| cidr_peer(c)).collect()),
            ports: None,
        });
    }
    let mut egress = vec![
        NetworkPolicyEgressRule { to: Some(vec![tenant_peer(t)]), ports: None },
        NetworkPolicyEgressRule { to: Some(vec![kube_dns, cidr_peer(NODE_LOCAL_DNS)]), ports: Some(dns_ports()) },
        NetworkPolicyEgressRule {
            to: Some(vec![crate::gate::build::canary_peer(system)]),
            ports: Some(vec![NetworkPolicyPort {
                protocol: Some("TCP".into()),
                port: Some(IntOrString::Int(crate::gate::OPEN_PORT.into())),
                end_port: None,
            }]),
        },
    ];
    if !zone.egress.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(zone.egress.iter().map(|c| cidr_peer(c)).collect()),
            ports: None,
        });
    }
    let allow = NetworkPolicy {
        metadata: meta(t, namespace, ALLOW_POLICY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: both,
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    };
    vec![deny, allow]
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect());
    PolicyRule {
        api_groups: s(groups),
        resources: s(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..Default::default()
    }
}

/// What owners may do in their namespaces: run workloads, read (not change) the rules the
/// cloud sets for them. Written out instead of reusing `admin`, which can edit NetworkPolicies.
/// The tenant's gateways that go to `namespace` (a full namespace name).
pub fn gateways(t: &ValidatedTenant, namespace: &str) -> Vec<crate::api::SecureGateway> {
    t.gateways
        .iter()
        .filter(|g| format!("{}-{}", t.name, g.namespace) == namespace)
        .map(|g| crate::api::SecureGateway {
            metadata: ObjectMeta {
                name: Some(g.name.clone()),
                namespace: Some(namespace.into()),
                labels: Some(tenant_labels(t)),
                ..Default::default()
            },
            spec: g.gateway.clone(),
            status: None,
        })
        .collect()
}

/// The tenant's certificates that go to `namespace` (a full namespace name).
pub fn certificates(t: &ValidatedTenant, namespace: &str) -> Vec<SmCertificate> {
    t.certificates
        .iter()
        .filter(|c| format!("{}-{}", t.name, c.namespace) == namespace)
        .map(|c| SmCertificate {
            metadata: ObjectMeta {
                name: Some(c.name.clone()),
                namespace: Some(namespace.into()),
                labels: Some(tenant_labels(t)),
                ..Default::default()
            },
            spec: c.certificate.clone(),
            status: None,
        })
        .collect()
}

pub fn owner_cluster_role() -> ClusterRole {
    const ALL: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
    const READ: &[&str] = &["get", "list", "watch"];
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(OWNER_ROLE.into()),
            labels: Some(BTreeMap::from([(labels::MANAGED_BY.into(), labels::MANAGER.into())])),
            ..Default::default()
        },
        rules: Some(vec![
            rule(
                &[""],
                &[
                    "pods",
                    "pods/log",
                    "pods/exec",
                    "pods/attach",
                    "pods/portforward",
                    "services",
                    "configmaps",
                    "secrets",
                    "persistentvolumeclaims",
                    "serviceaccounts",
                    "replicationcontrollers",
                ],
                ALL,
            ),
            rule(
                &["apps"],
                &[
                    "deployments",
                    "statefulsets",
                    "daemonsets",
                    "replicasets",
                    "deployments/scale",
                    "statefulsets/scale",
                ],
                ALL,
            ),
            rule(&["batch"], &["jobs", "cronjobs"], ALL),
            rule(&["autoscaling"], &["horizontalpodautoscalers"], ALL),
            rule(&["policy"], &["poddisruptionbudgets"], ALL),
            rule(&["networking.k8s.io"], &["ingresses"], ALL),
            // Endpoints are written by the cluster's controllers only: an owner who could write
            // them could point a Service anywhere (CVE-2021-25740).
            rule(&["discovery.k8s.io"], &["endpointslices"], READ),
            rule(&[""], &["endpoints", "resourcequotas", "limitranges", "events", "namespaces"], READ),
            // Their own policies, inside the tenant: the webhook (or the Admin-tier cluster
            // policy) keeps them from reaching other tenants, and guards the operator's own.
            rule(&["networking.k8s.io"], &["networkpolicies"], ALL),
            rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], READ),
            // 国密 certificates of their own, from their namespace's or their department's CA.
            rule(&["zhengyun.io"], &["smcertificates", "smissuers", "securegateways"], ALL),
        ]),
        ..Default::default()
    }
}

/// The tenant boundary as an Admin-tier policy.
pub fn cluster_policy(
    t: &ValidatedTenant,
    zone: &ZonePlacement,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    system: &str,
) -> ClusterNetworkPolicy {
    let own = cnp::sel(&[(labels::TENANT, &t.name)]);
    let dns = CnpPeer {
        pods: Some(CnpPods {
            namespace_selector: cnp::sel(&[("kubernetes.io/metadata.name", "kube-system")]),
            pod_selector: cnp::sel(&[("k8s-app", "kube-dns")]),
        }),
        ..Default::default()
    };
    let mut egress = vec![
        cnp::rule("same-tenant", "Pass", vec![cnp::namespaces(own.clone())], vec![], false),
        cnp::rule(
            "dns",
            "Pass",
            vec![dns],
            vec![cnp::port(&IntOrString::Int(53), true), cnp::port(&IntOrString::Int(53), false)],
            false,
        ),
        cnp::rule(
            "isolation-canary",
            "Pass",
            vec![CnpPeer {
                pods: Some(CnpPods {
                    namespace_selector: cnp::sel(&[("kubernetes.io/metadata.name", system)]),
                    pod_selector: cnp::sel(&[(crate::gate::CANARY_LABEL, crate::gate::CANARY)]),
                }),
                ..Default::default()
            }],
            vec![cnp::port(&IntOrString::Int(crate::gate::OPEN_PORT.into()), false)],
            false,
        ),
    ];
    if !zone.egress.is_empty() {
        egress.push(cnp::rule(
            "zone-networks",
            "Pass",
            vec![CnpPeer { networks: Some(zone.egress.clone()), ..Default::default() }],
            vec![],
            false,
        ));
    }
    egress.push(cnp::rule("other-tenants", "Deny", vec![cnp::namespaces(LabelSelector::default())], vec![], false));
    egress.push(cnp::rule(
        "outside",
        "Deny",
        vec![CnpPeer { networks: Some(vec!["0.0.0.0/0".into(), "::/0".into()]), ..Default::default() }],
        vec![],
        false,
    ));
    ClusterNetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("zhengyun-tenant-{}", t.name)),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (labels::TENANT.into(), t.name.clone()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: CnpSpec {
            tier: "Admin".into(),
            priority: TENANT_PRIORITY,
            subject: CnpSubject { namespaces: Some(own.clone()), pods: None },
            ingress: vec![
                cnp::rule("same-tenant", "Pass", vec![cnp::namespaces(own)], vec![], true),
                cnp::rule("other-tenants", "Deny", vec![cnp::namespaces(LabelSelector::default())], vec![], true),
            ],
            egress,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::validate;
    use crate::tenancy::validate::tests::sample;

    fn vt() -> ValidatedTenant {
        validate(&sample()).expect("valid")
    }

    #[test]
    fn namespaces_carry_identity_and_pod_security() {
        let ns = namespace(&vt(), "edu-apps");
        let l = ns.metadata.labels.unwrap_or_default();
        assert_eq!(l[labels::TENANT], "edu");
        assert_eq!(l[labels::DEPARTMENT], "EDU-001");
        assert_eq!(l[labels::ZONE], "extranet");
        assert_eq!(l["pod-security.kubernetes.io/enforce"], "restricted");
        let mut t = vt();
        t.level = crate::tenancy::validate::SecurityLevel::L2;
        let l = namespace(&t, "edu-apps").metadata.labels.unwrap_or_default();
        assert_eq!(l["pod-security.kubernetes.io/enforce"], "baseline");
    }

    #[test]
    fn orphaned_namespaces_lose_our_ownership_but_keep_identity() {
        let l = orphaned_namespace(&vt(), "edu-apps").metadata.labels.unwrap_or_default();
        assert!(!l.contains_key(labels::MANAGED_BY));
        assert_eq!(l[labels::ORPHANED], "true");
        assert_eq!(l[labels::TENANT], "edu");
    }

    #[test]
    fn quota_lists_only_budgeted_resources_in_readable_units() {
        let hard = BTreeMap::from([
            ("requests.cpu".to_string(), 1500),
            ("requests.memory".to_string(), 4 * (1i128 << 30) * 1000),
            ("pods".to_string(), 5000),
            ("requests.storage".to_string(), 7),
        ]);
        let q = resource_quota(&vt(), "edu-apps", &hard);
        let h = q.spec.and_then(|s| s.hard).unwrap_or_default();
        assert_eq!(h["requests.cpu"].0, "1500m");
        assert_eq!(h["requests.memory"].0, "4Gi");
        assert_eq!(h["pods"].0, "5");
        assert!(!h.contains_key("requests.storage"));
    }

    #[test]
    fn network_policy_denies_by_default_and_allows_the_tenant_and_dns() {
        let zone = ZonePlacement { egress: vec!["10.1.0.0/16".into()], ..Default::default() };
        let p = network_policies(&vt(), "edu-apps", &zone, "zhengyun-system");
        assert_eq!(p.len(), 2);
        let deny = p[0].spec.clone().unwrap_or_default();
        assert_eq!(deny.policy_types, Some(vec!["Ingress".into(), "Egress".into()]));
        // Both lists present and empty: no rule lets anything through, and applying them makes
        // the operator their owner, so a rule added by anyone else is taken out again.
        assert_eq!((deny.ingress, deny.egress), (Some(vec![]), Some(vec![])));
        let allow = p[1].spec.clone().unwrap_or_default();
        let egress = allow.egress.unwrap_or_default();
        let dns = &egress[1];
        let peers = dns.to.clone().unwrap_or_default();
        let peer = &peers[0];
        // One peer with both selectors: kube-dns pods *in* kube-system, not either.
        assert!(peer.namespace_selector.is_some() && peer.pod_selector.is_some());
        assert_eq!(dns.ports.as_ref().map(Vec::len), Some(2));
        // The isolation canary's open port, in the operator's namespace only.
        let canary = &egress[2];
        let to = canary.to.clone().unwrap_or_default();
        let ns = to[0].namespace_selector.as_ref().and_then(|s| s.match_labels.as_ref());
        assert_eq!(ns.and_then(|l| l.get("kubernetes.io/metadata.name")).map(String::as_str), Some("zhengyun-system"));
        let ports = canary.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, Some(IntOrString::Int(crate::gate::OPEN_PORT.into())));
        // The zone's outside network, and nothing else outside.
        let outside = egress[3].to.clone().unwrap_or_default();
        assert_eq!(outside[0].ip_block.as_ref().map(|b| b.cidr.as_str()), Some("10.1.0.0/16"));
        assert_eq!(egress.len(), 4);
        assert_eq!(allow.ingress.map(|i| i.len()), Some(1), "no zone ingress declared");
    }

    #[test]
    fn owners_cannot_edit_the_rules_set_for_them() {
        let role = owner_cluster_role();
        for r in role.rules.unwrap_or_default() {
            let res = r.resources.unwrap_or_default();
            let writes = r.verbs.iter().any(|v| !["get", "list", "watch"].contains(&v.as_str()));
            // Their own NetworkPolicies they may write; the webhook guards ours.
            for forbidden in
                ["resourcequotas", "limitranges", "namespaces", "rolebindings", "endpoints", "endpointslices"]
            {
                assert!(!(writes && res.iter().any(|x| x == forbidden)), "owners may write {forbidden}");
            }
        }
    }

    #[test]
    fn owners_are_bound_in_each_namespace() {
        let rb = role_binding(&vt(), "edu-apps");
        assert_eq!(rb.role_ref.name, OWNER_ROLE);
        assert_eq!(rb.subjects.unwrap_or_default()[0].name, "alice");
    }

    #[test]
    fn owners_read_their_tenant_and_namespaces_by_name_and_nothing_else() {
        let (role, binding) = owner_reader(&vt(), "uid-1", &["edu-apps".into()], Some("edu-dept"));
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].resource_names, Some(vec!["edu-dept".to_string()]));
        for r in &rules {
            assert!(r.verbs.iter().all(|v| ["get", "list", "watch"].contains(&v.as_str())), "read only: {r:?}");
            assert!(r.resource_names.as_ref().is_some_and(|n| !n.is_empty()), "by name only: {r:?}");
        }
        assert_eq!(rules[0].resource_names, Some(vec![vt().name.clone()]));
        assert_eq!(rules[1].resource_names, Some(vec!["edu-apps".to_string()]));
        assert_eq!(binding.role_ref.name, reader_name(&vt().name));
        assert_eq!(binding.subjects.unwrap_or_default()[0].name, "alice");
        let owner = &role.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Tenant", "uid-1"));

        // No namespace yet: no namespace rule at all (empty resourceNames would grant them all).
        let (role, _) = owner_reader(&vt(), "uid-1", &[], None);
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert!(rules.iter().all(|r| r.resources.as_deref() != Some(&["namespaces".to_string()][..])));
    }
}
