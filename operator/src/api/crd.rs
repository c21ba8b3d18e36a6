//! The CustomResourceDefinitions as the API server receives them.
//!
//! `kube`'s derive produces the schema from the Rust types; here we add what the derive cannot
//! express: rules over the whole object (they need `metadata.name`) and printer columns. The
//! YAML under `crds/` is this module's output, committed, and a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, ValidationRule,
};
use kube::CustomResourceExt;

use super::Tenant;

/// Every CRD the operator serves, in the order `crds/` lists them.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![tenant()]
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

/// The CRDs as one multi-document YAML stream, as `zhengyun-operator crd` prints them.
pub fn yaml() -> Result<String, serde_yaml::Error> {
    let mut out =
        String::from("# Generated by `zhengyun-operator crd`. Do not edit: change operator/src/api and regenerate.\n");
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

    #[test]
    fn every_field_has_a_description() {
        let crd = serde_json::to_value(tenant()).unwrap_or_default();
        let mut missing = Vec::new();
        walk(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"], "spec", &mut missing);
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
