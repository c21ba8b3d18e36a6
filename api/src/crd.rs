//! The CustomResourceDefinitions as the API server receives them.
//!
//! `kube`'s derive produces the schema from the Rust types; here we add what the derive cannot
//! express: rules over the whole object (they need `metadata.name`) and printer columns. The
//! YAML under `crds/` is this module's output, committed, and a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, ValidationRule,
};
use kube::CustomResourceExt;

use super::{ComputerRoom, ExchangeChannel, SecureGateway, SmCertificate, SmClusterIssuer, SmIssuer, Tenant, Zone};

/// Every CRD the operator serves, in the order `crds/` lists them.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        tenant(),
        zone(),
        exchange_channel(),
        sm_cluster_issuer(),
        sm_issuer(),
        sm_certificate(),
        secure_gateway(),
        computer_room(),
        department(),
    ]
}

fn issuer_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status", "Whether the issuer can sign", 0),
        column("Subject", "string", ".status.subject", "The CA certificate's subject", 0),
        column("Not-After", "string", ".status.notAfter", "When the CA certificate expires", 0),
        column("Fingerprint", "string", ".status.fingerprint", "SM3 of the CA certificate", 1),
        column(
            "Reason",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].message",
            "Why the issuer is or is not ready",
            1,
        ),
        column("Age", "date", ".metadata.creationTimestamp", "", 0),
    ]
}

/// The `smclusterissuers.zhengyun.io` CRD.
pub fn sm_cluster_issuer() -> CustomResourceDefinition {
    issuer(
        SmClusterIssuer::crd(),
        "A cluster-wide SM2 certificate authority (国密 CA): a self-signed root, or a CA from a Secret.",
    )
}

/// The `smissuers.zhengyun.io` CRD.
pub fn sm_issuer() -> CustomResourceDefinition {
    issuer(
        SmIssuer::crd(),
        "An SM2 certificate authority (国密 CA) for one namespace: a self-signed root, or a CA from a Secret.",
    )
}

/// What the two issuer kinds share: columns, the name rule and a description.
fn issuer(mut crd: CustomResourceDefinition, description: &str) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(issuer_columns());
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.x_kubernetes_validations = Some(vec![short_name(63)]);
            schema.description = Some(description.into());
        }
    }
    reflow(crd)
}

/// The `smcertificates.zhengyun.io` CRD.
pub fn sm_certificate() -> CustomResourceDefinition {
    let mut crd = SmCertificate::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether the Secret holds a valid, current certificate",
                0,
            ),
            column("Secret", "string", ".spec.secretName", "The Secret that holds the certificate", 0),
            column("Pair", "string", ".spec.pair", "Single or TLCP", 0),
            column("Issuer", "string", ".spec.issuerRef.name", "The issuer", 1),
            column("Not-After", "string", ".status.notAfter", "When the certificate expires", 0),
            column("Renewal", "string", ".status.renewalTime", "When it is renewed", 1),
            column("Revision", "integer", ".status.revision", "How many times it was issued", 1),
            column(
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].message",
                "Why the certificate is or is not ready",
                1,
            ),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.x_kubernetes_validations = Some(vec![short_name(63)]);
            schema.description = Some(
                "An SM2 certificate or TLCP sign + enc pair (国密证书), issued into a Secret and renewed before it expires."
                    .into(),
            );
        }
    }
    reflow(crd)
}

/// The `securegateways.zhengyun.io` CRD.
pub fn secure_gateway() -> CustomResourceDefinition {
    let mut crd = SecureGateway::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether every replica serves the current certificate",
                0,
            ),
            column("Protocols", "string", ".status.protocols", "What the gateway speaks", 0),
            column("Backend", "string", ".spec.backend.service", "The Service behind the gateway", 0),
            column("Port", "integer", ".spec.port", "Where clients connect", 0),
            column("Certificate", "string", ".spec.certificate.name", "The SmCertificate served", 1),
            column("Not-After", "string", ".status.notAfter", "When the served certificate expires", 1),
            column(
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].message",
                "Why the gateway is or is not ready",
                1,
            ),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            // Names go into the names of the Deployment, Service and policies with a prefix.
            let mut rules = schema.x_kubernetes_validations.take().unwrap_or_default();
            rules.push(rule(
                "size(self.metadata.name) <= 48",
                "metadata.name must be at most 48 characters: it names the gateway's Deployment, Service and policies",
                None,
            ));
            schema.x_kubernetes_validations = Some(rules);
            schema.description = Some(
                "A department service exposed with 国密 TLS (TLCP, TLS 1.3 with SM suites) and, where allowed, standard TLS, by zhengyun-gateway."
                    .into(),
            );
        }
    }
    reflow(crd)
}

/// The `zones.zhengyun.io` CRD.
pub fn zone() -> CustomResourceDefinition {
    let mut crd = Zone::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Kind", "string", ".spec.kind", "Intranet (政务内网), Extranet (政务外网) or InternetAccess", 0),
            column("Min-Level", "integer", ".spec.minSecurityLevel", "Lowest 等保 level accepted", 0),
            column("Nodes", "integer", ".status.nodeCount", "Nodes in the zone", 0),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether the zone has nodes",
                0,
            ),
            column("Tenants", "string", ".status.tenants", "Tenants in the zone", 1),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.description =
                Some("A security zone (安全区域): its nodes, taint, outside networks and lowest 等保 level.".into());
        }
    }
    reflow(crd)
}

/// The `computerrooms.zhengyun.io` CRD.
/// The `departments.zhengyun.io` CRD.
pub fn department() -> CustomResourceDefinition {
    let mut crd = super::department::Department::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Path", "string", ".status.path", "The codes from the top of the tree down to this one", 0),
            column("Name", "string", ".spec.nameZh", "The department's Chinese name", 0),
            column("Budget", "string", ".status.budgetSummary", "Handed down / budget, per budgeted resource", 0),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether the parent exists and the budget holds what was handed down",
                0,
            ),
            column("Tenants", "string", ".status.tenants", "The department's own tenants", 1),
            column(
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].message",
                "Why the department is or is not ready",
                1,
            ),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.description = Some(
                "A department (部门) in the government's tree, with the budget handed down to it: its children's budgets and its own tenants' quotas stay within it.".into(),
            );
            schema.x_kubernetes_validations = Some(vec![
                rule(
                    "!has(oldSelf.spec) || self.spec.code == oldSelf.spec.code",
                    "spec.code is immutable: tenants name the department by it",
                    Some(".spec.code"),
                ),
                rule(
                    "!has(self.spec.adminGroup) || !self.spec.adminGroup.startsWith('system:')",
                    "spec.adminGroup: a system: group holds users of the whole cluster: name the department's own group",
                    Some(".spec.adminGroup"),
                ),
                rule(
                    "!has(self.spec.parent) || self.spec.parent != self.spec.code",
                    "spec.parent: a department cannot be its own parent",
                    Some(".spec.parent"),
                ),
            ]);
        }
    }
    crd
}

pub fn computer_room() -> CustomResourceDefinition {
    let mut crd = ComputerRoom::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Department", "string", ".spec.department", "The department that owns the room", 0),
            column("Zone", "string", ".spec.zone", "The zone its servers serve", 0),
            column("Phase", "string", ".status.phase", "Planned, Migrating, Consolidated or Retired", 0),
            column("Nodes", "string", ".status.nodes", "The room's nodes", 0),
            column("CPU-%", "integer", ".status.utilisationPercent.cpu", "Requested over allocatable CPU", 0),
            column("Memory-%", "integer", ".status.utilisationPercent.memory", "Requested over allocatable memory", 0),
            column("Servers-Left", "integer", ".status.inventory.servers", "Servers still to migrate", 0),
            column(
                "Retirable",
                "integer",
                ".status.plan.retirableServers",
                "Servers whose systems fit on the shared nodes now",
                0,
            ),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether the room's nodes carry its labels and taint",
                0,
            ),
            column(
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].message",
                "Why the room is or is not ready",
                1,
            ),
            column("Tenants", "string", ".status.tenants", "Tenants with pods on the room's nodes", 1),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.description = Some(
                "A department's computer room (机房) joining the shared cloud: its nodes, its zone, and the servers still to migrate.".into(),
            );
        }
    }
    reflow(crd)
}

/// The `exchangechannels.zhengyun.io` CRD.
pub fn exchange_channel() -> CustomResourceDefinition {
    let mut crd = ExchangeChannel::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("From", "string", ".spec.from.tenant", "Source tenant", 0),
            column("To", "string", ".spec.to.tenant", "Target tenant", 0),
            column("Service", "string", ".spec.to.service", "Target Service", 0),
            column("Port", "integer", ".spec.to.port", "Target port", 0),
            column("Phase", "string", ".status.phase", "Pending, Active, Expired or Invalid", 0),
            column("Expires", "string", ".spec.expires", "When the channel closes", 0),
            column("Approver", "string", ".spec.approver", "Who approves", 1),
            column("Approver-Group", "string", ".spec.approverGroup", "Which group approves", 1),
            column("Approved-By", "string", ".status.approvedBy", "Who approved what the channel now says", 1),
            column("Purpose", "string", ".spec.purpose", "Why the data is exchanged", 1),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.description = Some(
                "A declared, approved and expiring data exchange (数据共享交换) from one tenant to a Service of another.".into(),
            );
            schema.x_kubernetes_validations = Some(vec![rule(
                "!has(oldSelf.spec) || !oldSelf.spec.approved || self.spec.from == oldSelf.spec.from && self.spec.to == oldSelf.spec.to",
                "spec.from and spec.to (the ends, Service and port) cannot change once the channel is approved: declare a new channel",
                Some(".spec"),
            )]);
        }
    }
    reflow(crd)
}

/// The `tenants.zhengyun.io` CRD.
pub fn tenant() -> CustomResourceDefinition {
    let mut crd = Tenant::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Department", "string", ".spec.department.code", "The department's code", 0),
            column("Zone", "string", ".spec.zone", "The zone the tenant runs in", 0),
            column("Level", "integer", ".spec.securityLevel", "等保 level", 0),
            column("Namespaces", "integer", ".status.namespaceCount", "Namespaces the tenant holds", 0),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                "Whether everything the tenant needs is in place",
                0,
            ),
            column("Quota", "string", ".status.quotaSummary", "Quota used/hard over all namespaces", 1),
            column("Name", "string", ".spec.department.nameZh", "The department's Chinese name", 1),
            column("Namespace-List", "string", ".status.namespaces", "The namespaces the tenant holds", 1),
            column(
                "Reason",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].reason",
                "Why the tenant is or is not ready",
                1,
            ),
            column("Age", "date", ".metadata.creationTimestamp", "", 0),
        ]);
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.description = Some(
                "A department's tenant (租户): its namespaces, one quota over all of them, owner access, \
                 pod security for its 等保 level and default-deny networking."
                    .into(),
            );
            schema.x_kubernetes_validations = Some(vec![
                rule(
                    "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 61",
                    "metadata.name must be a lowercase DNS label of at most 61 characters: it prefixes the tenant's namespace names",
                    None,
                ),
                rule(
                    "self.spec.namespaces.all(n, size(self.metadata.name) + 1 + size(n.suffix) <= 63)",
                    "spec.namespaces[].suffix is too long: '<tenant name>-<suffix>' must be at most 63 characters",
                    Some(".spec.namespaces"),
                ),
                rule(
                    "!has(self.spec.certificates) || self.spec.certificates.all(c, self.spec.namespaces.exists(n, n.suffix == c.namespace))",
                    "spec.certificates[].namespace must be the suffix of one of spec.namespaces",
                    Some(".spec.certificates"),
                ),
            ]);
        }
    }
    reflow(crd)
}

/// Doc comments wrap at 100 columns; `kubectl explain` wraps again, so join the lines of each
/// paragraph to keep the help readable.
fn reflow(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(s) if k == "description" => {
                            *s = s
                                .split("\n\n")
                                .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                                .collect::<Vec<_>>()
                                .join("\n\n");
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn column(name: &str, ty: &str, path: &str, description: &str, priority: i32) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.into(),
        type_: ty.into(),
        json_path: path.into(),
        description: (!description.is_empty()).then(|| description.into()),
        priority: (priority > 0).then_some(priority),
        format: None,
    }
}

/// The name goes into a label value on the Secrets the operator writes: at most 63 characters.
fn short_name(max: usize) -> ValidationRule {
    rule(
        &format!("size(self.metadata.name) <= {max}"),
        &format!("metadata.name must be at most {max} characters: it labels the Secrets the operator writes"),
        None,
    )
}

fn rule(rule: &str, message: &str, field_path: Option<&str>) -> ValidationRule {
    ValidationRule {
        rule: rule.into(),
        message: Some(message.into()),
        field_path: field_path.map(Into::into),
        reason: Some("FieldValueInvalid".into()),
        message_expression: None,
        optional_old_self: None,
    }
}

const QUANTITY_PATTERN: &str = r"^[+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+]?[0-9]+))?$";
const COUNT_PATTERN: &str = r"^[+]?[0-9]+$";

/// The JSON Schema of the `tenant` Helm chart's values, derived from the Tenant CRD so the two
/// cannot disagree: the spec's fields at the top level, plus the tenant's `name`. Helm checks
/// it before anything reaches the cluster, so CEL-only checks become patterns here, and unknown
/// keys (typos) are refused.
pub fn tenant_values_schema() -> serde_json::Value {
    use serde_json::{Value, json};
    fn convert(v: &mut Value) {
        let Value::Object(map) = v else { return };
        if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            let whole = map.get("x-kubernetes-validations").is_some_and(|r| r.to_string().contains("isInteger"));
            let description = map.get("description").cloned();
            let pattern = if whole { COUNT_PATTERN } else { QUANTITY_PATTERN };
            let example = if whole { "a whole number such as 10" } else { "a quantity such as 500m, 4 or 16Gi" };
            // Fractions (`cpu: 0.5`) are quantities too; object counts are whole.
            let number = if whole { "integer" } else { "number" };
            *v = json!({
                "anyOf": [{"type": number, "minimum": 0}, {"type": "string", "pattern": pattern}],
                "description": format!("{} ({example})", description.and_then(|d| d.as_str().map(String::from)).unwrap_or_default()),
            });
            return;
        }
        // Kubernetes-only keywords mean nothing to Helm's validator.
        map.retain(|k, _| !k.starts_with("x-kubernetes-") && k != "nullable");
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.values_mut().for_each(convert);
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        if let Some(items) = map.get_mut("items") {
            convert(items);
        }
        if let Some(Value::Array(alternatives)) = map.get_mut("anyOf") {
            alternatives.iter_mut().for_each(convert);
        }
        if let Some(extra @ Value::Object(_)) = map.get_mut("additionalProperties") {
            convert(extra);
        }
    }
    let crd = serde_json::to_value(tenant()).unwrap_or_default();
    let mut spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
    convert(&mut spec);
    let mut properties = spec["properties"].as_object().cloned().unwrap_or_default();
    properties.insert(
        "name".into(),
        json!({
            "type": "string",
            "description": "The tenant's name (defaults to the release name): a lowercase DNS label that prefixes its namespaces.",
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "maxLength": 61
        }),
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "A department's tenant request (zhengyun Tenant)",
        "type": "object",
        "additionalProperties": false,
        "required": spec["required"].clone(),
        "properties": properties,
    })
}

/// The CRDs as one multi-document YAML stream, as `zhengyun-operator crd` prints them.
pub fn yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from("# Generated by `zhengyun-operator crd`. Do not edit: change api/src and regenerate.\n");
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed YAML is what cloud admins and the chart install: it must match the types.
    #[test]
    fn committed_crds_match_the_rust_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/zhengyun.io_crds.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let fresh = yaml().unwrap_or_default();
        assert!(
            committed == fresh,
            "crds/zhengyun.io_crds.yaml is stale: run `cargo run -p zhengyun-operator -- crd > crds/zhengyun.io_crds.yaml`"
        );
    }

    /// The chart installs the same CRDs, and the tenant chart's values schema is derived from them.
    #[test]
    fn the_charts_carry_the_current_crds_and_values_schema() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let chart_crds = std::fs::read_to_string(format!("{root}/charts/zhengyun/files/crds/zhengyun.io_crds.yaml"));
        assert!(
            chart_crds.unwrap_or_default() == yaml().unwrap_or_default(),
            "charts/zhengyun/files/crds is stale: run hack/generate.sh"
        );
        let schema = std::fs::read_to_string(format!("{root}/charts/tenant/values.schema.json")).unwrap_or_default();
        let fresh = serde_json::to_string_pretty(&tenant_values_schema()).unwrap_or_default() + "\n";
        assert!(schema == fresh, "charts/tenant/values.schema.json is stale: run hack/generate.sh");
    }

    #[test]
    fn every_field_has_a_description() {
        let mut missing = Vec::new();
        for crd in all() {
            let kind = crd.spec.names.kind.clone();
            let crd = serde_json::to_value(crd).unwrap_or_default();
            let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
            walk(spec, &format!("{kind}.spec"), &mut missing);
        }
        assert!(missing.is_empty(), "fields without a description: {missing:?}");
    }

    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, child) in props {
                let p = format!("{path}.{k}");
                if child.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(child, &p, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
}
