//! `zhengyun-operator evidence`: the assessor's report (等保 2.0 / 密评 evidence), written from the
//! live cluster as self-contained HTML and JSON.
//!
//! [`collect`] reads the cluster once; [`build`] turns what was read into the report purely
//! (every verdict is computed from the objects listed beside it, so an assessor can check it);
//! [`html`] renders it. What the report cannot see it marks not applicable and says why.

pub mod html;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Namespace,
    networking::v1::NetworkPolicy,
    rbac::v1::ClusterRole,
};
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde::Serialize;

use crate::{
    api::{ExchangeChannel, SecureGateway, SmCertificate, SmClusterIssuer, SmIssuer, Tenant},
    reachability::{self, World},
};

/// The report's JSON schema name.
pub const SCHEMA: &str = "zhengyun.io/evidence/v1";

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotApplicable,
}

/// One requirement of a standard, with the checks that evidence it.
#[derive(Serialize, Debug, Clone)]
pub struct Requirement {
    pub standard: &'static str,
    pub clause: &'static str,
    pub title: &'static str,
    pub checks: Vec<Check>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Check {
    pub title: String,
    pub verdict: Verdict,
    pub reason: String,
    /// The report's sections that show the evidence (`tenants`, `reachability`, ...).
    pub evidence: Vec<&'static str>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub allowed: bool,
    /// Why: the rules that allowed it, or that nothing did (egress and ingress).
    pub explanation: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct TenantRow {
    pub name: String,
    pub department: String,
    pub level: u8,
    pub pod_security: BTreeMap<String, String>,
    pub quota: BTreeMap<String, String>,
    pub owners: Vec<String>,
    pub namespaces: Vec<String>,
    /// Namespaces without the operator's default-deny policy.
    pub without_default_deny: Vec<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct ChannelRow {
    pub name: String,
    pub from: String,
    pub to: String,
    pub purpose: String,
    pub phase: String,
    pub requested_by: String,
    pub approved_by: String,
    pub approved_at: String,
    pub expires: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct CertificateRow {
    pub namespace: String,
    pub name: String,
    pub issuer: String,
    pub algorithm: &'static str,
    pub not_before: String,
    pub not_after: String,
    pub renewal: String,
    pub ready: bool,
    pub state: String,
    /// Where the private keys live.
    pub key_secret: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct IssuerRow {
    pub kind: &'static str,
    pub name: String,
    pub department: String,
    pub subject: String,
    pub not_after: String,
    pub ready: bool,
    pub key_secret: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct OperatorRow {
    /// The operator's ClusterRole's rules, one line each (`verbs on group/resources`).
    pub rbac: Vec<String>,
    pub role: String,
    /// Each admission webhook and its failure policy.
    pub webhooks: Vec<(String, String)>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub schema: &'static str,
    pub generated_at: String,
    pub cluster: String,
    pub requirements: Vec<Requirement>,
    pub summary: BTreeMap<&'static str, usize>,
    pub reachability: Vec<Cell>,
    pub groups: Vec<String>,
    /// Where a traffic matrix observed on real pods was given, its text.
    pub observed_traffic: Option<String>,
    pub channels: Vec<ChannelRow>,
    pub certificates: Vec<CertificateRow>,
    pub issuers: Vec<IssuerRow>,
    pub tenants: Vec<TenantRow>,
    pub operator: OperatorRow,
    /// Objects the report could not read (stored under an older schema): its verdicts do not
    /// cover them.
    pub unreadable: Vec<String>,
}

/// Everything [`build`] needs, as read from the cluster.
pub struct Inputs {
    pub cluster: String,
    pub now: jiff::Timestamp,
    pub tenants: Vec<Tenant>,
    pub namespaces: Vec<Namespace>,
    pub world: World,
    pub channels: Vec<ExchangeChannel>,
    pub certificates: Vec<SmCertificate>,
    pub issuers: Vec<SmIssuer>,
    pub cluster_issuers: Vec<SmClusterIssuer>,
    pub gateways: Vec<SecureGateway>,
    pub operator_role: Option<ClusterRole>,
    pub operator_role_name: String,
    pub validating: Option<ValidatingWebhookConfiguration>,
    pub mutating: Option<MutatingWebhookConfiguration>,
    pub observed_traffic: Option<String>,
    /// Every live pod in a tenant namespace (`namespace/name`), and whether it started behind
    /// the isolation gate (crate::gate).
    pub tenant_pods: Vec<(String, bool)>,
    /// The first-instant test's measured result (hack/test.sh's `first_instant`), if given.
    pub first_instant: Option<String>,
    /// Objects that do not read as the current schema: named, never silently left out.
    pub unreadable: Vec<String>,
}

/// Whether a pod started behind the isolation gate: it is the pod's first init container (init
/// containers run in order, each to success, before any other; the webhook keeps it as built).
pub fn started_gated(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let first = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).and_then(|l| l.first());
    first.is_some_and(|c| c.name == crate::gate::CONTAINER)
}

/// The live pods of tenant namespaces, gated or not.
async fn tenant_pods(client: &Client, namespaces: &[Namespace]) -> anyhow::Result<Vec<(String, bool)>> {
    let tenant_ns: std::collections::BTreeSet<String> = namespaces
        .iter()
        .filter(|n| n.metadata.labels.as_ref().is_some_and(|l| l.contains_key(crate::labels::TENANT)))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    Ok(pods
        .iter()
        .filter(|p| p.metadata.namespace.as_ref().is_some_and(|n| tenant_ns.contains(n)))
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed")))
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                ),
                started_gated(p),
            )
        })
        .collect())
}

/// Every object of a kind that reads as the current schema; the others (stored under an older,
/// looser one) are named in `unreadable`, not allowed to hide the rest.
async fn readable<K>(client: &Client, unreadable: &mut Vec<String>) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let all = Api::<kube::core::DeserializeGuard<K>>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut out = Vec::new();
    for o in all {
        match o.0 {
            Ok(k) => out.push(k),
            Err(e) => unreadable.push(format!("{} {}: {}", K::kind(&()), e.metadata.name.unwrap_or_default(), e.error)),
        }
    }
    Ok(out)
}

/// Reads the cluster once.
pub async fn collect(
    client: &Client,
    cluster: String,
    world: World,
    operator_role: &str,
    observed_traffic: Option<String>,
    first_instant: Option<String>,
) -> anyhow::Result<Inputs> {
    let lp = ListParams::default();
    let mut unreadable = Vec::new();
    let namespaces = Api::<Namespace>::all(client.clone()).list(&lp).await?.items;
    Ok(Inputs {
        cluster,
        now: jiff::Timestamp::now(),
        tenants: readable::<Tenant>(client, &mut unreadable).await?,
        tenant_pods: tenant_pods(client, &namespaces).await?,
        namespaces,
        world,
        channels: readable::<ExchangeChannel>(client, &mut unreadable).await?,
        certificates: readable::<SmCertificate>(client, &mut unreadable).await?,
        issuers: readable::<SmIssuer>(client, &mut unreadable).await?,
        cluster_issuers: readable::<SmClusterIssuer>(client, &mut unreadable).await?,
        gateways: readable::<SecureGateway>(client, &mut unreadable).await?,
        unreadable,
        operator_role: Api::<ClusterRole>::all(client.clone()).get_opt(operator_role).await?,
        operator_role_name: operator_role.to_string(),
        validating: Api::<ValidatingWebhookConfiguration>::all(client.clone()).get_opt("zhengyun").await?,
        mutating: Api::<MutatingWebhookConfiguration>::all(client.clone()).get_opt("zhengyun").await?,
        observed_traffic,
        first_instant,
    })
}

fn ca_secret(s: &crate::api::CaSource) -> String {
    match (&s.self_signed, &s.ca) {
        (Some(x), _) => x.secret_name.clone(),
        (None, Some(x)) => x.secret_name.clone(),
        (None, None) => String::new(),
    }
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn check(title: impl Into<String>, verdict: Verdict, reason: impl Into<String>, evidence: &[&'static str]) -> Check {
    Check { title: title.into(), verdict, reason: reason.into(), evidence: evidence.to_vec() }
}

fn pass_or_fail(problems: &[String], ok: &str) -> (Verdict, String) {
    if problems.is_empty() { (Verdict::Pass, ok.to_string()) } else { (Verdict::Fail, problems.join("; ")) }
}

/// The report, from what was read.
pub fn build(i: &Inputs) -> Report {
    let ns_labels: BTreeMap<String, BTreeMap<String, String>> =
        i.namespaces.iter().map(|n| (n.name_any(), n.labels().clone())).collect();
    let deny: BTreeSet<String> = i
        .world
        .network_policies
        .iter()
        .filter(|p| p.name_any() == crate::tenancy::build::DENY_POLICY)
        .filter_map(|p: &NetworkPolicy| p.namespace())
        .collect();

    let tenants: Vec<TenantRow> = i
        .tenants
        .iter()
        .map(|t| {
            let namespaces = t.status.as_ref().map(|s| s.namespaces.clone()).unwrap_or_default();
            let pod_security = namespaces
                .iter()
                .map(|n| {
                    let enforce = ns_labels
                        .get(n)
                        .and_then(|l| l.get("pod-security.kubernetes.io/enforce").cloned())
                        .unwrap_or_else(|| "(none)".into());
                    (n.clone(), enforce)
                })
                .collect();
            TenantRow {
                name: t.name_any(),
                department: t.spec.department.code.clone(),
                level: t.spec.security_level,
                pod_security,
                quota: t.status.as_ref().and_then(|s| s.quota.as_ref()).map(|q| q.hard.clone()).unwrap_or_default(),
                owners: t.spec.owners.iter().map(|o| format!("{:?} {}", o.kind, o.name)).collect(),
                without_default_deny: namespaces.iter().filter(|n| !deny.contains(*n)).cloned().collect(),
                namespaces,
            }
        })
        .collect();

    // Reachability between groups, every pair with its reason.
    let visible: BTreeMap<String, BTreeMap<String, String>> =
        ns_labels.iter().filter(|(n, _)| !n.starts_with("kube-")).map(|(n, l)| (n.clone(), l.clone())).collect();
    let m = reachability::matrix(&i.world, &visible);
    let (endpoints, _) = reachability::candidates(&i.world, &visible);
    let mut groups: BTreeSet<String> = BTreeSet::new();
    let mut cells = Vec::new();
    for ((from, to), verdict) in &m {
        groups.insert(from.clone());
        groups.insert(to.clone());
        let explanation = match verdict {
            Some((_, _, p, v)) => {
                format!("allowed on {}/{}: egress: {}; ingress: {}", p.protocol, p.number, v.egress(), v.ingress())
            }
            None => match reachability::denied_witness(&endpoints, from, to) {
                Some((s, d, port)) => {
                    let v = reachability::evaluate(&i.world, &s, &d, &port);
                    format!(
                        "denied ({} {}, a pod with no labels): egress: {}; ingress: {}",
                        port.protocol,
                        port.number,
                        v.egress(),
                        v.ingress()
                    )
                }
                None => "denied".into(),
            },
        };
        cells.push(Cell { from: from.clone(), to: to.clone(), allowed: verdict.is_some(), explanation });
    }

    // Channels: approved and open ones are the declared exceptions between tenants.
    let channels: Vec<ChannelRow> = i
        .channels
        .iter()
        .map(|c| {
            let s = c.status.clone().unwrap_or_default();
            ChannelRow {
                name: c.name_any(),
                from: c.spec.from.tenant.clone(),
                to: format!("{}/{}:{}", c.spec.to.namespace, c.spec.to.service, c.spec.to.port),
                purpose: c.spec.purpose.clone(),
                phase: s.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "(unknown)".into()),
                requested_by: s.requested_by.unwrap_or_default(),
                approved_by: s.approved_by.unwrap_or_default(),
                approved_at: s.approved_at.unwrap_or_default(),
                expires: c.spec.expires.clone(),
            }
        })
        .collect();
    let open: BTreeSet<(String, String)> = i
        .channels
        .iter()
        .filter(|c| {
            c.status.as_ref().and_then(|s| s.phase.as_ref()).is_some_and(|p| *p == crate::api::ChannelPhase::Active)
        })
        .map(|c| (c.spec.from.tenant.clone(), c.spec.to.tenant.clone()))
        .collect();
    let tenant_names: BTreeSet<String> = i.tenants.iter().map(|t| t.name_any()).collect();
    let cross: Vec<String> = cells
        .iter()
        .filter(|c| c.allowed && c.from != c.to && tenant_names.contains(&c.from) && tenant_names.contains(&c.to))
        .filter(|c| !open.contains(&(c.from.clone(), c.to.clone())))
        .map(|c| format!("{} can reach {} without an open exchange channel", c.from, c.to))
        .collect();

    let certificates: Vec<CertificateRow> = i
        .certificates
        .iter()
        .map(|c| {
            let s = c.status.clone().unwrap_or_default();
            let state = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            CertificateRow {
                namespace: c.namespace().unwrap_or_default(),
                name: c.name_any(),
                issuer: format!("{:?}/{}", c.spec.issuer_ref.kind, c.spec.issuer_ref.name),
                // Not read from the certificate: zhengyun's issuers sign nothing else.
                algorithm: "SM2 with SM3 (the only algorithm zhengyun issues)",
                not_before: s.not_before.unwrap_or_default(),
                not_after: s.not_after.clone().unwrap_or_default(),
                renewal: s.renewal_time.unwrap_or_default(),
                ready: ready(&s.conditions),
                state,
                key_secret: format!("Secret {}/{}", c.namespace().unwrap_or_default(), c.spec.secret_name),
            }
        })
        .collect();
    let mut issuers: Vec<IssuerRow> = Vec::new();
    for x in &i.cluster_issuers {
        let s = x.status.clone().unwrap_or_default();
        issuers.push(IssuerRow {
            kind: "SmClusterIssuer",
            name: x.name_any(),
            department: x.spec.department.clone().unwrap_or_default(),
            subject: s.subject.unwrap_or_default(),
            not_after: s.not_after.unwrap_or_default(),
            ready: ready(&s.conditions),
            key_secret: format!("Secret (operator namespace)/{}", ca_secret(&x.spec.source)),
        });
    }
    for x in &i.issuers {
        let s = x.status.clone().unwrap_or_default();
        issuers.push(IssuerRow {
            kind: "SmIssuer",
            name: format!("{}/{}", x.namespace().unwrap_or_default(), x.name_any()),
            department: String::new(),
            subject: s.subject.unwrap_or_default(),
            not_after: s.not_after.unwrap_or_default(),
            ready: ready(&s.conditions),
            key_secret: format!("Secret {}/{}", x.namespace().unwrap_or_default(), ca_secret(&x.spec.source)),
        });
    }

    let operator = OperatorRow {
        role: i.operator_role_name.clone(),
        rbac: i
            .operator_role
            .iter()
            .flat_map(|r| r.rules.iter().flatten())
            .map(|r| {
                let groups = r.api_groups.clone().unwrap_or_default().join(",");
                let names = r.resource_names.as_ref().map(|n| format!(" named {}", n.join(","))).unwrap_or_default();
                format!(
                    "{} on {}/{}{names}",
                    r.verbs.join(","),
                    if groups.is_empty() { "core".into() } else { groups },
                    r.resources.clone().unwrap_or_default().join(",")
                )
            })
            .collect(),
        webhooks: i
            .validating
            .iter()
            .flat_map(|v| v.webhooks.iter().flatten())
            .map(|w| (format!("validating {}", w.name), w.failure_policy.clone().unwrap_or_else(|| "Fail".into())))
            .chain(
                i.mutating.iter().flat_map(|v| v.webhooks.iter().flatten()).map(|w| {
                    (format!("mutating {}", w.name), w.failure_policy.clone().unwrap_or_else(|| "Fail".into()))
                }),
            )
            .collect(),
    };

    let requirements = requirements(i, &tenants, &cells, &cross, &certificates, &issuers, &operator);
    let mut summary = BTreeMap::new();
    for c in requirements.iter().flat_map(|r| r.checks.iter()) {
        let k = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => "not_applicable",
        };
        *summary.entry(k).or_default() += 1;
    }
    Report {
        schema: SCHEMA,
        generated_at: i.now.to_string(),
        cluster: i.cluster.clone(),
        requirements,
        summary,
        reachability: cells,
        groups: groups.into_iter().collect(),
        observed_traffic: i.observed_traffic.clone(),
        channels,
        certificates,
        issuers,
        tenants,
        operator,
        unreadable: i.unreadable.clone(),
    }
}

fn requirements(
    i: &Inputs,
    tenants: &[TenantRow],
    cells: &[Cell],
    cross: &[String],
    certificates: &[CertificateRow],
    issuers: &[IssuerRow],
    operator: &OperatorRow,
) -> Vec<Requirement> {
    const DJ: &str = "GB/T 22239-2019 (等保 2.0), level 3";
    const MP: &str = "GB/T 39786-2021 (密评), level 3";
    let no_tenants = tenants.is_empty();
    let na = |what: &str| (Verdict::NotApplicable, format!("no {what} in this cluster"));

    // Boundary protection: every tenant namespace denies by default.
    let missing: Vec<String> = tenants
        .iter()
        .filter(|t| !t.without_default_deny.is_empty())
        .map(|t| format!("tenant {}: no default-deny in {}", t.name, t.without_default_deny.join(", ")))
        .collect();
    let (v1, r1) = if no_tenants {
        na("tenants")
    } else {
        pass_or_fail(&missing, &format!("all {} tenants' namespaces deny by default in both directions", tenants.len()))
    };
    // From a pod's first instant: policies the enforcer has not yet programmed deny nothing, so
    // default-deny holds from the start only for pods that waited behind the gate.
    let ungated: Vec<&str> = i.tenant_pods.iter().filter(|(_, g)| !g).map(|(p, _)| p.as_str()).collect();
    let measured = match &i.first_instant {
        Some(m) => format!(" Measured (hack/test.sh, first_instant): {}", m.trim()),
        None => " Not measured for this report (pass --first-instant with the e2e suite's result).".to_string(),
    };
    let (v0, r0) = if i.tenant_pods.is_empty() {
        (Verdict::NotApplicable, format!("no tenant pods run in this cluster.{measured}"))
    } else if ungated.is_empty() {
        (
            Verdict::Pass,
            format!(
                "all {} tenant pods started behind the isolation gate: an init container that let their containers \
                 start only once a connection to the node's canary on a port every tenant policy denies was refused, \
                 and the canary's connection back to the pod was too.{measured}",
                i.tenant_pods.len()
            ),
        )
    } else {
        let shown: Vec<&str> = ungated.iter().take(10).copied().collect();
        (
            Verdict::Fail,
            format!(
                "{} of {} tenant pods started without the isolation gate, open until the network plugin programmed \
                 their policies: {}{}",
                ungated.len(),
                i.tenant_pods.len(),
                shown.join(", "),
                if ungated.len() > shown.len() { ", ..." } else { "" }
            ),
        )
    };
    // Access control at the boundary: tenants reach each other only through open channels.
    let allowed = cells.iter().filter(|c| c.allowed).count();
    let (v2, r2) = if no_tenants {
        na("tenants")
    } else {
        pass_or_fail(
            cross,
            &format!(
                "of {} pairs of groups, {allowed} may talk; none of them joins two tenants without an open, approved channel",
                cells.len()
            ),
        )
    };
    let unapproved: Vec<String> = i
        .channels
        .iter()
        .filter(|c| {
            c.status.as_ref().and_then(|s| s.phase.as_ref()).is_some_and(|p| *p == crate::api::ChannelPhase::Active)
                && c.status.as_ref().and_then(|s| s.approved_by.as_ref()).is_none_or(String::is_empty)
        })
        .map(|c| format!("channel {} is open with no approver recorded", c.name_any()))
        .collect();
    let (v3, r3) = if i.channels.is_empty() {
        na("exchange channels")
    } else {
        pass_or_fail(&unapproved, "every open channel records who approved it, when, and until when")
    };

    // Identity and access: named owners, no system groups; least privilege for the operator.
    let system: Vec<String> = tenants
        .iter()
        .flat_map(|t| t.owners.iter().filter(|o| o.contains("system:")).map(move |o| format!("tenant {}: {o}", t.name)))
        .collect();
    let (v4, r4) = if no_tenants {
        na("tenants")
    } else {
        pass_or_fail(&system, "every tenant names its owners (users or the department's own groups, no system: group)")
    };
    let wildcards: Vec<String> = operator.rbac.iter().filter(|r| r.contains('*')).cloned().collect();
    let (v5, r5) = if i.operator_role.is_none() {
        (Verdict::NotApplicable, format!("ClusterRole {} not found (pass --operator-role)", operator.role))
    } else {
        pass_or_fail(&wildcards, &format!("ClusterRole {}: {} rules, no wildcard", operator.role, operator.rbac.len()))
    };
    let open_hooks: Vec<String> =
        operator.webhooks.iter().filter(|(_, p)| p != "Fail").map(|(n, p)| format!("{n}: {p}")).collect();
    let (v6, r6) = if operator.webhooks.is_empty() {
        (Verdict::Fail, "no zhengyun admission webhook is registered: nothing enforces what the schema cannot".into())
    } else {
        pass_or_fail(&open_hooks, &format!("all {} admission webhooks fail closed", operator.webhooks.len()))
    };
    // Pod security by level.
    let weak: Vec<String> = tenants
        .iter()
        .flat_map(|t| {
            let want = if t.level >= 3 { "restricted" } else { "baseline" };
            t.pod_security
                .iter()
                .filter(move |(_, e)| e.as_str() != want)
                .map(move |(n, e)| format!("{n} enforces {e}, level {} needs {want}", t.level))
        })
        .collect();
    let (v7, r7) = if no_tenants {
        na("tenants")
    } else {
        pass_or_fail(&weak, "level 2 namespaces enforce baseline, levels 3 and 4 restricted")
    };

    // 密评: certificates and keys.
    let gateways_ready = i.gateways.iter().filter(|g| g.status.as_ref().is_some_and(|s| ready(&s.conditions))).count();
    let (v8, r8) = if i.gateways.is_empty() {
        na("SecureGateway (no service is exposed through zhengyun-gateway)")
    } else if gateways_ready == i.gateways.len() {
        (
            Verdict::Pass,
            format!(
                "{} SecureGateways serve with SM2 certificates (TLCP and TLS 1.3 with SM suites); peers authenticate by SM2 certificates",
                i.gateways.len()
            ),
        )
    } else {
        (
            Verdict::Fail,
            format!("{} of {} SecureGateways are not ready", i.gateways.len() - gateways_ready, i.gateways.len()),
        )
    };
    let (v9, r9) = if i.gateways.is_empty() {
        na("SecureGateway")
    } else {
        (
            Verdict::Pass,
            "transit through zhengyun-gateway uses SM4 (GCM/CBC with SM3 HMAC in TLCP, SM4-GCM/CCM in TLS 1.3)".into(),
        )
    };
    let bad_certs: Vec<String> = certificates
        .iter()
        .filter(|c| !c.ready)
        .map(|c| format!("{}/{}: {}", c.namespace, c.name, c.state))
        .chain(issuers.iter().filter(|x| !x.ready).map(|x| format!("{} {} not ready", x.kind, x.name)))
        .collect();
    let (v10, r10) = if certificates.is_empty() && issuers.is_empty() {
        na("certificates or issuers")
    } else {
        pass_or_fail(
            &bad_certs,
            &format!(
                "{} certificates and {} CAs, all SM2, all valid and renewed before expiry; each private key in the Secret listed",
                certificates.len(),
                issuers.len()
            ),
        )
    };

    vec![
        Requirement {
            standard: DJ,
            clause: "安全区域边界 · 边界防护 (boundary protection)",
            title: "Traffic crosses a boundary only through controlled interfaces",
            checks: vec![
                check("Default-deny in every tenant namespace", v1, r1, &["tenants", "reachability"]),
                check("Default-deny holds from each pod's first instant", v0, r0, &["tenants"]),
            ],
        },
        Requirement {
            standard: DJ,
            clause: "安全区域边界 · 访问控制 (access control)",
            title: "Access between zones and tenants is denied unless a rule allows it",
            checks: vec![
                check(
                    "Tenants reach each other only through open exchange channels",
                    v2,
                    r2,
                    &["reachability", "channels"],
                ),
                check("Every open channel was approved, and expires", v3, r3, &["channels"]),
            ],
        },
        Requirement {
            standard: DJ,
            clause: "安全计算环境 · 身份鉴别与访问控制 (identity and access control)",
            title: "Users are identified, and each has only the rights it needs",
            checks: vec![
                check("Tenants name their owners", v4, r4, &["tenants"]),
                check("The operator's own rights are listed, without wildcards", v5, r5, &["operator"]),
                check("Admission control fails closed", v6, r6, &["operator"]),
            ],
        },
        Requirement {
            standard: DJ,
            clause: "安全计算环境 · 入侵防范 (intrusion prevention)",
            title: "Workloads run with the least privilege their level allows",
            checks: vec![check("Pod security enforced by 等保 level", v7, r7, &["tenants"])],
        },
        Requirement {
            standard: DJ,
            clause: "安全计算环境 · 安全审计 (security audit)",
            title: "Security-relevant actions are recorded",
            checks: vec![check(
                "API server audit log",
                Verdict::NotApplicable,
                "the API server's audit policy and log are not visible through its API: show its --audit-policy-file and --audit-log-path; the operator's writes appear there under its own service account",
                &[],
            )],
        },
        Requirement {
            standard: MP,
            clause: "网络和通信安全 · 身份鉴别 (identity authentication)",
            title: "Communicating entities authenticate with approved algorithms",
            checks: vec![check("SecureGateways serve SM2 certificates", v8, r8, &["certificates"])],
        },
        Requirement {
            standard: MP,
            clause: "网络和通信安全 · 通信数据机密性和完整性 (transit confidentiality and integrity)",
            title: "Data in transit is protected with approved algorithms",
            checks: vec![check("SM4 on the wire through zhengyun-gateway", v9, r9, &["certificates"])],
        },
        Requirement {
            standard: MP,
            clause: "设备和计算安全 · 密钥管理 (key management)",
            title: "Keys are generated, stored, renewed and retired under control",
            checks: vec![check("Certificate and key inventory", v10, r10, &["certificates"])],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, level: u8, namespaces: &[&str]) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "zhengyun.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"department": {"code": "D", "name": "D"}, "zone": "z", "owners": [{"kind": "User", "name": "alice"}],
                     "namespaces": [{"suffix": "a"}], "quota": {}, "securityLevel": level}
        }))
        .expect("tenant");
        t.status = Some(crate::api::TenantStatus {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
        t
    }

    fn namespace(name: &str, enforce: &str) -> Namespace {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": enforce}}}),
        )
        .expect("namespace")
    }

    fn deny(ns: &str) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": crate::tenancy::build::DENY_POLICY, "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }))
        .expect("policy")
    }

    fn inputs() -> Inputs {
        Inputs {
            cluster: "https://127.0.0.1:6443".into(),
            now: jiff::Timestamp::UNIX_EPOCH,
            tenants: vec![tenant("edu", 3, &["edu-a", "edu-b"])],
            namespaces: vec![namespace("edu-a", "restricted"), namespace("edu-b", "baseline")],
            world: World { network_policies: vec![deny("edu-a")], cluster_policies: vec![] },
            channels: vec![],
            certificates: vec![],
            issuers: vec![],
            cluster_issuers: vec![],
            gateways: vec![],
            operator_role: None,
            operator_role_name: "zhengyun-operator".into(),
            validating: serde_json::from_value(serde_json::json!({"metadata": {"name": "zhengyun"}, "webhooks": [
                {"name": "pods.zhengyun.io", "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {}},
                {"name": "tenants.zhengyun.io", "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {}}
            ]}))
            .ok(),
            mutating: None,
            observed_traffic: None,
            tenant_pods: Vec::new(),
            first_instant: None,
            unreadable: vec![],
        }
    }

    fn verdict(r: &Report, title: &str) -> (Verdict, String) {
        let c = r.requirements.iter().flat_map(|q| q.checks.iter()).find(|c| c.title == title).expect(title);
        (c.verdict, c.reason.clone())
    }

    #[test]
    fn each_verdict_follows_from_the_objects_and_says_why() {
        let r = build(&inputs());
        let (v, why) = verdict(&r, "Default-deny in every tenant namespace");
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("edu-b") && !why.contains("edu-a"), "{why}");
        let (v, why) = verdict(&r, "Pod security enforced by 等保 level");
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("edu-b enforces baseline, level 3 needs restricted"), "{why}");
        let (v, why) = verdict(&r, "Admission control fails closed");
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("tenants.zhengyun.io: Ignore"), "{why}");
        assert_eq!(verdict(&r, "Every open channel was approved, and expires").0, Verdict::NotApplicable);
        assert_eq!(verdict(&r, "The operator's own rights are listed, without wildcards").0, Verdict::NotApplicable);
        assert_eq!(r.summary.values().sum::<usize>(), r.requirements.iter().map(|q| q.checks.len()).sum::<usize>());

        // Mended: the same checks pass.
        let mut i = inputs();
        i.world.network_policies.push(deny("edu-b"));
        i.namespaces[1] = namespace("edu-b", "restricted");
        let r = build(&i);
        assert_eq!(verdict(&r, "Default-deny in every tenant namespace").0, Verdict::Pass);
        assert_eq!(verdict(&r, "Pod security enforced by 等保 level").0, Verdict::Pass);
        // And the page shows them, escaped.
        let page = html::render(&r);
        assert!(page.contains("PASS 符合") && page.contains("FAIL 不符合") && page.contains("edu-b"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_pod_that_started_without_the_gate_fails_the_first_instant_check() {
        let title = "Default-deny holds from each pod's first instant";
        assert_eq!(verdict(&build(&inputs()), title).0, Verdict::NotApplicable);
        let mut i = inputs();
        i.tenant_pods = vec![("edu-a/web".into(), true), ("edu-b/cron-1".into(), false)];
        let (v, why) = verdict(&build(&i), title);
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("1 of 2 tenant pods") && why.contains("edu-b/cron-1") && !why.contains("edu-a/web"),
            "{why}"
        );
        i.tenant_pods[1].1 = true;
        i.first_instant = Some("100 pod starts, 0 denied connections got through\n".into());
        let (v, why) = verdict(&build(&i), title);
        assert_eq!(v, Verdict::Pass);
        assert!(why.contains("all 2 tenant pods started behind the isolation gate"), "{why}");
        assert!(
            why.ends_with("Measured (hack/test.sh, first_instant): 100 pod starts, 0 denied connections got through"),
            "{why}"
        );
    }
}
