//! The webhook registrations. The operator applies them itself (with the CA bundle it made),
//! so the registration and the serving certificate never disagree.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::admissionregistration::v1::{
        MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
        ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use crate::labels;

/// Name of both webhook configurations.
pub const NAME: &str = "zhengyun";

/// Where the API server reaches the webhook.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A URL (the local control plane: `https://127.0.0.1:PORT`).
    Url(String),
    /// A Service in the cluster.
    Service { namespace: String, name: String, port: i32 },
}

fn client(endpoint: &Endpoint, path: &str, ca_bundle: &str) -> WebhookClientConfig {
    let ca = Some(ByteString(ca_bundle.as_bytes().to_vec()));
    match endpoint {
        Endpoint::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            ca_bundle: ca,
            service: None,
        },
        Endpoint::Service { namespace, name, port } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.into()),
                port: Some(*port),
            }),
            ca_bundle: ca,
            url: None,
        },
    }
}

fn rule(groups: &[&str], resources: &[&str], ops: &[&str]) -> RuleWithOperations {
    let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect());
    RuleWithOperations {
        api_groups: v(groups),
        // The versions the webhook reads (`subject::parse` checks them); with `Equivalent`
        // matching, the API server converts a request in any other version to these.
        api_versions: v(&[if groups == ["zhengyun.io"] { "v1alpha1" } else { "v1" }]),
        resources: v(resources),
        operations: v(ops),
        scope: None,
    }
}

fn managed() -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(BTreeMap::from([(labels::MANAGED_BY.into(), labels::MANAGER.into())])),
        ..Default::default()
    })
}

/// The operator's own writes skip the webhooks at the API server: a no-op apply of a child
/// never costs a webhook call, and the webhook cannot starve users' requests with the operator's.
/// The handlers let the operator through as well, so both say the same.
fn not_the_operator(operator_user: &str) -> Option<Vec<MatchCondition>> {
    if operator_user.is_empty() {
        return None;
    }
    let quoted = operator_user.replace('\\', "\\\\").replace('\'', "\\'");
    Some(vec![MatchCondition {
        name: "not-the-operator".into(),
        expression: format!("request.userInfo.username != '{quoted}'"),
    }])
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(NAME.into()),
        labels: Some(BTreeMap::from([(labels::MANAGED_BY.into(), labels::MANAGER.into())])),
        ..Default::default()
    }
}

/// The validating webhooks. All fail closed: while no replica answers, guarded changes are
/// refused rather than let through unchecked.
pub fn validating(endpoint: &Endpoint, ca_bundle: &str, operator_user: &str) -> ValidatingWebhookConfiguration {
    let hook = |name: &str, rules: Vec<RuleWithOperations>, ns: Option<LabelSelector>, obj: Option<LabelSelector>| {
        ValidatingWebhook {
            name: format!("{name}.zhengyun.io"),
            client_config: client(endpoint, "/validate", ca_bundle),
            rules: Some(rules),
            namespace_selector: ns,
            object_selector: obj,
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(10),
            match_policy: Some("Equivalent".into()),
            match_conditions: not_the_operator(operator_user),
        }
    };
    ValidatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![
            hook("pods", vec![rule(&[""], &["pods"], &["CREATE", "UPDATE"])], managed(), None),
            hook("namespaces", vec![rule(&[""], &["namespaces"], &["UPDATE"])], None, managed()),
            hook("services", vec![rule(&[""], &["services"], &["CREATE", "UPDATE"])], managed(), None),
            hook("zones", vec![rule(&["zhengyun.io"], &["zones"], &["CREATE", "UPDATE"])], None, None),
            hook(
                "owned",
                vec![
                    rule(&[""], &["resourcequotas", "limitranges"], &["CREATE", "UPDATE", "DELETE"]),
                    rule(&["networking.k8s.io"], &["networkpolicies"], &["CREATE", "UPDATE", "DELETE"]),
                    rule(&["rbac.authorization.k8s.io"], &["rolebindings"], &["CREATE", "UPDATE", "DELETE"]),
                ],
                managed(),
                None,
            ),
            // A gateway's Deployment and client-CA ConfigMap: only objects that carry (or would
            // carry) the managed label are sent, so tenants' own workloads never wait on us.
            hook(
                "gateway-owned",
                vec![
                    rule(&[""], &["configmaps"], &["CREATE", "UPDATE", "DELETE"]),
                    rule(&["apps"], &["deployments"], &["CREATE", "UPDATE", "DELETE"]),
                ],
                managed(),
                managed(),
            ),
            // ReplicaSets labelled as a gateway's: only the gateway Deployment's controller
            // makes them (pods with the label go through the pods hook above).
            hook(
                "gateway-workloads",
                vec![rule(&["apps"], &["replicasets"], &["CREATE", "UPDATE"])],
                managed(),
                Some(LabelSelector {
                    match_expressions: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: crate::gateways::GATEWAY_LABEL.into(),
                            operator: "Exists".into(),
                            values: None,
                        },
                    ]),
                    ..Default::default()
                }),
            ),
            // Tenants and departments take from departments' budgets: the webhook records a
            // reservation (never on a dry run), hence NoneOnDryRun.
            ValidatingWebhook {
                side_effects: "NoneOnDryRun".into(),
                ..hook(
                    "tenants",
                    vec![
                        rule(&["zhengyun.io"], &["tenants"], &["CREATE", "UPDATE"]),
                        rule(&["zhengyun.io"], &["departments"], &["CREATE", "UPDATE"]),
                    ],
                    None,
                    None,
                )
            },
            hook(
                "smcertificates",
                vec![rule(&["zhengyun.io"], &["smcertificates"], &["CREATE", "UPDATE"])],
                None,
                None,
            ),
            hook(
                "exchangechannels",
                vec![rule(&["zhengyun.io"], &["exchangechannels"], &["CREATE", "UPDATE"])],
                None,
                None,
            ),
        ]),
    }
}

/// The mutating webhooks: zone placement of tenant pods, and the approval record of exchange
/// channels (who requested, who approved what and until when).
pub fn mutating(endpoint: &Endpoint, ca_bundle: &str, operator_user: &str) -> MutatingWebhookConfiguration {
    let hook = |name: &str, rules: Vec<RuleWithOperations>, ns: Option<LabelSelector>| MutatingWebhook {
        name: format!("{name}.zhengyun.io"),
        client_config: client(endpoint, "/mutate", ca_bundle),
        rules: Some(rules),
        namespace_selector: ns,
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
        timeout_seconds: Some(10),
        reinvocation_policy: Some("IfNeeded".into()),
        match_policy: Some("Equivalent".into()),
        object_selector: None,
        match_conditions: not_the_operator(operator_user),
    };
    MutatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![
            hook("placement", vec![rule(&[""], &["pods"], &["CREATE"])], managed()),
            hook("approval", vec![rule(&["zhengyun.io"], &["exchangechannels"], &["CREATE", "UPDATE"])], None),
            hook("quantities", vec![rule(&["zhengyun.io"], &["tenants"], &["CREATE", "UPDATE"])], None),
        ]),
    }
}
