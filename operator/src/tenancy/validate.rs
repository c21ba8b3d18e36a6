//! The checks the CRD schema cannot make, producing the typed view the builders use.
//!
//! The API server already refuses malformed specs; this is the second line (and the one the
//! admission webhook will share), so a spec that got past an older schema still fails with a
//! message that names the field rather than producing broken objects.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    api::{Amount, ContainerLimits, DeletionPolicy, Owner, Tenant},
    quantity::{Kind, Milli},
};

/// The 等保 level and the pod security standard it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    L2,
    L3,
    L4,
}

impl SecurityLevel {
    /// The Pod Security Admission level enforced for this 等保 level.
    pub fn pod_security(self) -> &'static str {
        match self {
            SecurityLevel::L2 => "baseline",
            SecurityLevel::L3 | SecurityLevel::L4 => "restricted",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            SecurityLevel::L2 => 2,
            SecurityLevel::L3 => 3,
            SecurityLevel::L4 => 4,
        }
    }
}

/// One ResourceQuota resource of the tenant's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub total: Milli,
    pub kind: Kind,
}

/// Parsed container defaults, by LimitRange section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub default_request: BTreeMap<&'static str, Milli>,
    pub default_limit: BTreeMap<&'static str, Milli>,
    pub max: BTreeMap<&'static str, Milli>,
}

/// A tenant whose spec has been checked; everything the builders need, nothing optional
/// that could still be wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedTenant {
    pub name: String,
    pub department_code: String,
    pub zone: String,
    /// The architecture its pods need, if one.
    pub arch: Option<crate::api::Arch>,
    pub level: SecurityLevel,
    /// Full namespace names, in spec order.
    pub namespaces: Vec<String>,
    pub owners: Vec<Owner>,
    /// By ResourceQuota resource name (`requests.cpu`, `pods`, ...).
    pub quota: BTreeMap<String, Budget>,
    pub limits: Option<Limits>,
    pub deletion_policy: DeletionPolicy,
    pub confirm_data_deletion: bool,
    pub certificates: Vec<crate::api::TenantCertificate>,
    pub gateways: Vec<crate::api::TenantGateway>,
}

/// Why a spec cannot be reconciled. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("metadata.name '{0}' must be a lowercase DNS label of at most 61 characters")]
    Name(String),
    #[error("spec.securityLevel must be 2, 3 or 4, not {0}")]
    SecurityLevel(u8),
    #[error("spec.owners must name at least one user or group")]
    NoOwners,
    #[error("spec.owners[{index}].name: {reason}")]
    Owner { index: usize, reason: String },
    #[error("spec.namespaces must list at least one namespace")]
    NoNamespaces,
    #[error("spec.namespaces[{index}].suffix '{suffix}' is not a DNS label")]
    Suffix { index: usize, suffix: String },
    #[error("spec.namespaces[{index}].suffix makes namespace '{name}' longer than 63 characters")]
    NamespaceTooLong { index: usize, name: String },
    #[error("spec.namespaces[{index}].suffix '{suffix}' is listed twice")]
    DuplicateSuffix { index: usize, suffix: String },
    #[error("{field}: {reason}")]
    Quantity { field: String, reason: String },
    #[error("spec.zone: zone '{0}' does not exist")]
    ZoneMissing(String),
    #[error("spec.securityLevel: zone '{zone}' accepts tenants of 等保 level {min} and above, not {level}")]
    ZoneLevel { zone: String, min: u8, level: u8 },
    #[error(
        "spec.arch: zone '{zone}' has no {arch} node, so the tenant's pods cannot run: add {arch} nodes to the zone (a ComputerRoom of {arch} servers) or change spec.arch"
    )]
    NoNodesForArch { zone: String, arch: &'static str },
    #[error("spec.gateways[{index}].{field}: {reason}")]
    Gateway { index: usize, field: &'static str, reason: String },
}

impl ValidationError {
    /// A short, stable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::ZoneMissing(_) => "ZoneMissing",
            ValidationError::ZoneLevel { .. } => "ZoneLevelTooLow",
            ValidationError::NoNodesForArch { .. } => "NoNodesForArch",
            _ => "InvalidSpec",
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a tenant and derives everything the builders need from it.
pub fn validate(tenant: &Tenant) -> Result<ValidatedTenant, ValidationError> {
    let name = tenant.metadata.name.clone().unwrap_or_default();
    if !is_dns_label(&name) || name.len() > 61 {
        return Err(ValidationError::Name(name));
    }
    let spec = &tenant.spec;
    let level = match spec.security_level {
        2 => SecurityLevel::L2,
        3 => SecurityLevel::L3,
        4 => SecurityLevel::L4,
        other => return Err(ValidationError::SecurityLevel(other)),
    };
    if spec.owners.is_empty() {
        return Err(ValidationError::NoOwners);
    }
    for (index, o) in spec.owners.iter().enumerate() {
        if let Some(reason) = owner_problem(o) {
            return Err(ValidationError::Owner { index, reason });
        }
    }
    if spec.namespaces.is_empty() {
        return Err(ValidationError::NoNamespaces);
    }
    let mut seen = BTreeSet::new();
    let mut namespaces = Vec::with_capacity(spec.namespaces.len());
    for (index, ns) in spec.namespaces.iter().enumerate() {
        if !is_dns_label(&ns.suffix) {
            return Err(ValidationError::Suffix { index, suffix: ns.suffix.clone() });
        }
        if !seen.insert(ns.suffix.as_str()) {
            return Err(ValidationError::DuplicateSuffix { index, suffix: ns.suffix.clone() });
        }
        let full = format!("{name}-{}", ns.suffix);
        if full.len() > 63 {
            return Err(ValidationError::NamespaceTooLong { index, name: full });
        }
        namespaces.push(full);
    }

    let q = &spec.quota;
    let gpu_name = q.gpu_resource_name.as_deref().unwrap_or("nvidia.com/gpu");
    let entries: [(&str, String, Option<&Amount>, Kind); 8] = [
        ("spec.quota.cpu", "requests.cpu".into(), q.cpu.as_ref(), Kind::Cores),
        ("spec.quota.memory", "requests.memory".into(), q.memory.as_ref(), Kind::Bytes),
        ("spec.quota.storage", "requests.storage".into(), q.storage.as_ref(), Kind::Bytes),
        (
            "spec.quota.persistentVolumeClaims",
            "persistentvolumeclaims".into(),
            q.persistent_volume_claims.as_ref().map(|c| &c.0),
            Kind::Count,
        ),
        ("spec.quota.pods", "pods".into(), q.pods.as_ref().map(|c| &c.0), Kind::Count),
        ("spec.quota.services", "services".into(), q.services.as_ref().map(|c| &c.0), Kind::Count),
        (
            "spec.quota.loadBalancers",
            "services.loadbalancers".into(),
            q.load_balancers.as_ref().map(|c| &c.0),
            Kind::Count,
        ),
        ("spec.quota.gpu", format!("requests.{gpu_name}"), q.gpu.as_ref().map(|c| &c.0), Kind::Count),
    ];
    let mut quota = BTreeMap::new();
    for (field, resource, amount, kind) in entries {
        let Some(amount) = amount else { continue };
        let total = non_negative(field, amount)?;
        if kind == Kind::Count && total % crate::quantity::UNIT != 0 {
            return Err(ValidationError::Quantity {
                field: field.into(),
                reason: format!("'{amount}' is not a whole number"),
            });
        }
        quota.insert(resource, Budget { total, kind });
    }

    let limits = spec.limits.as_ref().map(parse_limits).transpose()?;
    gateways(spec, level)?;

    Ok(ValidatedTenant {
        name,
        department_code: spec.department.code.clone(),
        zone: spec.zone.clone(),
        arch: spec.arch,
        level,
        namespaces,
        owners: spec.owners.clone(),
        quota,
        limits,
        deletion_policy: spec.deletion_policy,
        confirm_data_deletion: spec.confirm_data_deletion,
        certificates: spec.certificates.clone(),
        gateways: spec.gateways.clone(),
    })
}

/// What a gateway may not say: a namespace the tenant does not have, standard TLS at level 4
/// or without its certificate (the same rules the SecureGateway CRD and policy enforce, checked
/// here so a Tenant never half-applies).
fn gateways(spec: &crate::api::TenantSpec, level: SecurityLevel) -> Result<(), ValidationError> {
    use crate::api::gateway::GatewayProtocol;
    for (index, g) in spec.gateways.iter().enumerate() {
        let bad = |field: &'static str, reason: String| ValidationError::Gateway { index, field, reason };
        if !spec.namespaces.iter().any(|n| n.suffix == g.namespace) {
            return Err(bad("namespace", format!("'{}' is not one of spec.namespaces", g.namespace)));
        }
        if g.gateway.protocols.is_empty() {
            return Err(bad("protocols", "name at least one of TLCP, TLS13-SM, TLS".into()));
        }
        let standard = g.gateway.protocols.contains(&GatewayProtocol::Tls);
        if standard && level == SecurityLevel::L4 {
            return Err(bad(
                "protocols",
                "standard TLS is not allowed at 等保 level 4; serve TLCP or TLS13-SM only".into(),
            ));
        }
        if standard != g.gateway.standard_certificate.is_some() {
            return Err(bad("standardCertificate", "is set exactly when protocols includes TLS".into()));
        }
        if g.gateway.client_auth_mode() != crate::api::gateway::ClientAuthMode::None
            && g.gateway.client_auth.as_ref().and_then(|c| c.ca_issuer.as_ref()).is_none()
        {
            return Err(bad("clientAuth.caIssuer", "is required when clients present certificates".into()));
        }
    }
    Ok(())
}

/// Owners that would hand the tenant to everyone: `system:` groups hold every authenticated
/// user, every service account or every node; `system:anonymous` is every unauthenticated call.
fn owner_problem(o: &Owner) -> Option<String> {
    match o.kind {
        crate::api::OwnerKind::Group if o.name.starts_with("system:") => Some(format!(
            "group {} holds users of the whole cluster, not of one department: name the department's own group",
            o.name
        )),
        crate::api::OwnerKind::User if o.name == "system:anonymous" => {
            Some("system:anonymous is every unauthenticated request: name a real user".into())
        }
        _ => None,
    }
}

/// Checks that the tenant's zone exists and admits its 等保 level. Shared by the reconciler
/// and the admission webhook, so the two never disagree.
pub fn check_zone(
    level: u8,
    zone_name: &str,
    zone: Option<&crate::api::Zone>,
) -> Result<crate::zones::ZonePlacement, ValidationError> {
    let zone = zone.ok_or_else(|| ValidationError::ZoneMissing(zone_name.into()))?;
    if level < zone.spec.min_security_level {
        return Err(ValidationError::ZoneLevel { zone: zone_name.into(), min: zone.spec.min_security_level, level });
    }
    Ok(crate::zones::placement(zone))
}

/// Whether the zone has a node of the architecture a tenant asks for (信创).
pub fn check_arch(
    arch: Option<crate::api::Arch>,
    zone: &crate::api::Zone,
    nodes: &[&k8s_openapi::api::core::v1::Node],
) -> Result<(), ValidationError> {
    let Some(arch) = arch else { return Ok(()) };
    let has = nodes.iter().any(|n| {
        use kube::ResourceExt;
        crate::zones::selects(&zone.spec.node_selector, n.labels())
            && n.labels().get(crate::labels::KUBE_ARCH).map(String::as_str) == Some(arch.as_str())
    });
    if has {
        Ok(())
    } else {
        Err(ValidationError::NoNodesForArch {
            zone: zone.metadata.name.clone().unwrap_or_default(),
            arch: arch.as_str(),
        })
    }
}

fn non_negative(field: &str, amount: &Amount) -> Result<Milli, ValidationError> {
    let v = amount.milli().map_err(|e| ValidationError::Quantity { field: field.into(), reason: e.to_string() })?;
    if v < 0 {
        return Err(ValidationError::Quantity { field: field.into(), reason: format!("'{amount}' is negative") });
    }
    Ok(v)
}

fn parse_limits(l: &ContainerLimits) -> Result<Limits, ValidationError> {
    let section =
        |name: &str, cm: &Option<crate::api::CpuMemory>| -> Result<BTreeMap<&'static str, Milli>, ValidationError> {
            let mut out = BTreeMap::new();
            if let Some(cm) = cm {
                if let Some(cpu) = &cm.cpu {
                    out.insert("cpu", non_negative(&format!("spec.limits.{name}.cpu"), cpu)?);
                }
                if let Some(mem) = &cm.memory {
                    out.insert("memory", non_negative(&format!("spec.limits.{name}.memory"), mem)?);
                }
            }
            Ok(out)
        };
    let limits = Limits {
        default_request: section("defaultRequest", &l.default_request)?,
        default_limit: section("defaultLimit", &l.default_limit)?,
        max: section("max", &l.max)?,
    };
    // The API server refuses a LimitRange whose defaults break its own bounds (and a default
    // request above the default limit would make every defaulted pod invalid): say so here,
    // naming the field, instead of failing half-way through applying the tenant.
    let pairs = [
        ("defaultRequest", &limits.default_request, "defaultLimit", &limits.default_limit),
        ("defaultRequest", &limits.default_request, "max", &limits.max),
        ("defaultLimit", &limits.default_limit, "max", &limits.max),
    ];
    for (small_name, small, big_name, big) in pairs {
        for (res, v) in small {
            if let Some(bound) = big.get(res)
                && v > bound
            {
                return Err(ValidationError::Quantity {
                    field: format!("spec.limits.{small_name}.{res}"),
                    reason: format!("is larger than spec.limits.{big_name}.{res}"),
                });
            }
        }
    }
    Ok(limits)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::amount::Count;
    use crate::api::{Department, OwnerKind, TenantNamespace, TenantQuota, TenantSpec};

    pub(crate) fn sample() -> Tenant {
        Tenant::new(
            "edu",
            TenantSpec {
                department: Department {
                    code: "EDU-001".into(),
                    name: "Education Bureau".into(),
                    name_zh: Some("市教育局".into()),
                },
                zone: "extranet".into(),
                arch: None,
                owners: vec![Owner { kind: OwnerKind::User, name: "alice".into() }],
                namespaces: vec![TenantNamespace { suffix: "apps".into() }, TenantNamespace { suffix: "data".into() }],
                quota: TenantQuota {
                    cpu: Some("4".into()),
                    memory: Some("8Gi".into()),
                    pods: Some(Count::from(10)),
                    ..Default::default()
                },
                limits: None,
                security_level: 3,
                deletion_policy: DeletionPolicy::Retain,
                confirm_data_deletion: false,
                certificates: vec![],
                gateways: vec![],
            },
        )
    }

    #[test]
    fn a_good_tenant_validates() {
        let v = validate(&sample()).expect("valid");
        assert_eq!(v.namespaces, vec!["edu-apps", "edu-data"]);
        assert_eq!(v.level.pod_security(), "restricted");
        assert_eq!(v.quota["requests.cpu"].total, 4000);
        assert_eq!(v.quota["pods"].total, 10_000);
        assert!(!v.quota.contains_key("requests.storage"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut t = sample();
        t.spec.security_level = 5;
        assert!(validate(&t).unwrap_err().to_string().contains("spec.securityLevel"));

        let mut t = sample();
        t.spec.namespaces.push(TenantNamespace { suffix: "apps".into() });
        assert!(validate(&t).unwrap_err().to_string().contains("spec.namespaces[2].suffix"));

        let mut t = sample();
        t.spec.namespaces[0].suffix = "x".repeat(60);
        assert!(matches!(validate(&t), Err(ValidationError::NamespaceTooLong { index: 0, .. })));

        let mut t = sample();
        t.spec.quota.cpu = Some("-1".into());
        assert!(validate(&t).unwrap_err().to_string().contains("spec.quota.cpu"));

        let mut t = sample();
        t.spec.quota.memory = Some("lots".into());
        assert!(validate(&t).unwrap_err().to_string().contains("spec.quota.memory"));

        let mut t = sample();
        t.spec.quota.pods = Some(Count("1500m".into()));
        assert!(validate(&t).unwrap_err().to_string().contains("spec.quota.pods"));

        let mut t = sample();
        t.spec.owners.clear();
        assert_eq!(validate(&t), Err(ValidationError::NoOwners));

        let mut t = sample();
        t.metadata.name = Some("Edu".into());
        assert!(matches!(validate(&t), Err(ValidationError::Name(_))));
    }

    #[test]
    fn a_tenant_needs_an_existing_zone_that_admits_its_level() {
        use crate::api::{Zone, ZoneKind, ZoneSpec};
        let zone = Zone::new(
            "intranet",
            ZoneSpec {
                kind: ZoneKind::Intranet,
                node_selector: BTreeMap::from([("zone".into(), "in".into())]),
                taint: None,
                egress: vec!["10.0.0.0/8".into()],
                ingress: vec![],
                allow_public_ranges: false,
                allowed_service_types: vec![],
                min_security_level: 3,
            },
        );
        assert_eq!(check_zone(3, "nowhere", None), Err(ValidationError::ZoneMissing("nowhere".into())));
        let err = check_zone(2, "intranet", Some(&zone)).unwrap_err();
        assert!(err.to_string().contains("level 3 and above, not 2"), "{err}");
        let placement = check_zone(3, "intranet", Some(&zone)).expect("admitted");
        assert_eq!(placement.egress, vec!["10.0.0.0/8"]);
        assert_eq!(placement.taint.map(|t| (t.key, t.value)), Some(("zhengyun.io/zone".into(), "intranet".into())));
    }

    #[test]
    fn a_default_request_above_the_limit_is_refused() {
        let mut t = sample();
        t.spec.limits = Some(ContainerLimits {
            default_request: Some(crate::api::CpuMemory { cpu: Some("2".into()), memory: None }),
            default_limit: Some(crate::api::CpuMemory { cpu: Some("1".into()), memory: None }),
            max: None,
        });
        assert!(validate(&t).unwrap_err().to_string().contains("spec.limits.defaultRequest.cpu"));
    }

    #[test]
    fn defaults_above_the_maximum_are_refused() {
        let cm = |cpu: &str| Some(crate::api::CpuMemory { cpu: Some(cpu.into()), memory: None });
        let mut t = sample();
        t.spec.limits = Some(ContainerLimits { default_request: None, default_limit: cm("4"), max: cm("2") });
        let err = validate(&t).unwrap_err().to_string();
        assert_eq!(err, "spec.limits.defaultLimit.cpu: is larger than spec.limits.max.cpu");
        t.spec.limits = Some(ContainerLimits { default_request: cm("3"), default_limit: None, max: cm("2") });
        assert!(validate(&t).unwrap_err().to_string().starts_with("spec.limits.defaultRequest.cpu"));
        t.spec.limits = Some(ContainerLimits { default_request: cm("500m"), default_limit: cm("1"), max: cm("2") });
        assert!(validate(&t).is_ok());
    }

    #[test]
    fn owners_may_not_be_everyone() {
        for (kind, name) in [
            (OwnerKind::Group, "system:authenticated"),
            (OwnerKind::Group, "system:unauthenticated"),
            (OwnerKind::Group, "system:serviceaccounts"),
            (OwnerKind::Group, "system:serviceaccounts:kube-system"),
            (OwnerKind::User, "system:anonymous"),
        ] {
            let mut t = sample();
            t.spec.owners.push(Owner { kind, name: name.into() });
            let err = validate(&t).unwrap_err().to_string();
            assert!(err.starts_with("spec.owners[1].name"), "{name}: {err}");
        }
        let mut t = sample();
        t.spec.owners.push(Owner { kind: OwnerKind::Group, name: "edu-admins".into() });
        t.spec.owners.push(Owner { kind: OwnerKind::User, name: "system:serviceaccount:ci:deployer".into() });
        assert!(validate(&t).is_ok(), "a department group and a pipeline's service account are fine");
    }
}
