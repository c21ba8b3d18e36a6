//! 国密 certificates: `SmClusterIssuer`, `SmIssuer` and `SmCertificate`.
//!
//! Shaped like cert-manager's `ClusterIssuer`, `Issuer` and `Certificate` so that users feel at
//! home, but every key is SM2 and every signature SM2-with-SM3, and a certificate may be a TLCP
//! pair (a *sign* and an *enc* certificate with the same subject and names).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Go-style durations (`2160h`, `90m`, `1h30m`), as cert-manager and Kubernetes write them.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A namespaced SM2 certificate authority: usable by certificates in its own namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "SmIssuer",
    plural = "smissuers",
    singular = "smissuer",
    shortname = "smi",
    namespaced,
    category = "zhengyun",
    status = "SmIssuerStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.selfSigned) != has(self.ca)",
    "message": "set exactly one of spec.selfSigned (a root the operator generates) and spec.ca (a CA key and certificate in a Secret)"
}]))]
pub struct SmIssuerSpec {
    /// Where the CA comes from.
    #[serde(flatten)]
    pub source: CaSource,
}

/// A cluster-wide SM2 certificate authority, usable by certificates in any namespace (or, with
/// `department`, only in the namespaces of that department's tenants). Its Secrets live in the
/// operator's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "SmClusterIssuer",
    plural = "smclusterissuers",
    singular = "smclusterissuer",
    shortname = "smci",
    category = "zhengyun",
    status = "SmIssuerStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.selfSigned) != has(self.ca)",
    "message": "set exactly one of spec.selfSigned (a root the operator generates) and spec.ca (a CA key and certificate in a Secret)"
}]))]
pub struct SmClusterIssuerSpec {
    /// Where the CA comes from.
    #[serde(flatten)]
    pub source: CaSource,
    /// A department's own CA: only certificates in the namespaces of tenants with this
    /// department code (`spec.department.code`) may use it. Empty: every namespace may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub department: Option<String>,
    /// With `department`: the departments below it in the department tree (Department
    /// objects) may use it too, so a county's certificates chain to its city's CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signs_below: bool,
}

/// Where an issuer's CA comes from: exactly one of the two. Its Secret lives in the issuer's
/// namespace, or in the operator's for an SmClusterIssuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSource {
    /// A self-signed SM2 root CA that the operator generates and keeps in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedCa>,
    /// A CA whose SM2 key and certificate are in a Secret, for example an intermediate of the
    /// provincial CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretCa>,
}

/// A root CA the operator generates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfSignedCa {
    /// The root's common name, for example `某市政务云 SM2 根 CA`.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: String,
    /// The root's organization (O).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub organization: Option<String>,
    /// How long the root is valid, as a Go duration (default `87600h`, ten years). The operator
    /// generates a new root when a third of it is left; certificates it signed are re-issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub duration: Option<String>,
    /// The Secret that holds the root's key and certificate (created by the operator; deleting it
    /// rotates the root).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A CA from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretCa {
    /// A `kubernetes.io/tls` Secret: `tls.key` the CA's SM2 private key (PKCS#8 PEM), `tls.crt`
    /// its certificate followed by any intermediates, and optionally `ca.crt` the root. Replacing
    /// its contents rotates the CA: every certificate it signed is re-issued.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// What the operator found of an issuer's CA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmIssuerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The CA certificate's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// SM3 of the CA certificate (DER), hex: changes when the CA rotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the CA certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `Ready` when the issuer can sign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// An SM2 certificate (or TLCP sign + enc pair) kept in a Secret and renewed before it expires.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "SmCertificate",
    plural = "smcertificates",
    singular = "smcertificate",
    shortname = "smcert",
    namespaced,
    category = "zhengyun",
    status = "SmCertificateStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.commonName) || has(self.dnsNames) || has(self.ipAddresses)",
        "message": "name the certificate's subject: set spec.commonName, spec.dnsNames or spec.ipAddresses"
    },
    {
        "rule": "!has(self.duration) || duration(self.duration) >= duration('1m')",
        "message": "spec.duration must be at least 1m",
        "fieldPath": ".duration"
    },
    {
        "rule": "!has(self.renewBefore) || duration(self.renewBefore) + duration('10s') <= duration(has(self.duration) ? self.duration : '2160h')",
        "message": "spec.renewBefore must be shorter than spec.duration (default 2160h) by at least 10s: the certificate would be renewed as soon as it is issued",
        "fieldPath": ".renewBefore"
    }
]))]
pub struct SmCertificateSpec {
    /// The issuer that signs the certificate.
    pub issuer_ref: IssuerRef,
    /// The subject's common name (CN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub common_name: Option<String>,
    /// The subject's organization (O), for example the department's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub organization: Option<String>,
    /// DNS names (subjectAltName): lowercase labels separated by dots, the first may be `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("items" = {"type": "string", "maxLength": 253, "x-kubernetes-validations": [{
        "rule": "self.matches('^(\\\\*\\\\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\\\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",
        "message": "must be a DNS name: lowercase letters, digits and '-' in labels of at most 63 characters separated by '.', optionally starting with '*.' (for example portal.bigdata.gov.cn)"
    }]}))]
    pub dns_names: Vec<String>,
    /// IP addresses (subjectAltName).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), extend("items" = {"type": "string", "maxLength": 45, "x-kubernetes-validations": [{
        "rule": "isIP(self)",
        "message": "must be an IPv4 or IPv6 address such as 10.20.0.5"
    }]}))]
    pub ip_addresses: Vec<String>,
    /// What the certificate authenticates: `server`, `client` or both (default `server`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub usages: Vec<Usage>,
    /// How long each certificate is valid, as a Go duration (default `2160h`, 90 days; at least
    /// `1m`). A certificate never outlives its CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub duration: Option<String>,
    /// How long before expiry the certificate is renewed (default a third of `duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub renew_before: Option<String>,
    /// The Secret (in this namespace) that receives the certificate. The operator will not
    /// overwrite a Secret of that name that another certificate or a person made.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
    /// `Single` (one SM2 certificate, the default) or `TLCP` (a sign certificate and an enc
    /// certificate with the same subject and names, as GB/T 38636 servers and clients need).
    #[serde(default)]
    pub pair: Pair,
}

/// Which issuer signs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `SmIssuer` (in the certificate's namespace, the default) or `SmClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

/// The kinds of issuer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    #[default]
    SmIssuer,
    SmClusterIssuer,
}

/// What a certificate authenticates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// TLS/TLCP server authentication.
    Server,
    /// TLS/TLCP client authentication.
    Client,
}

/// One certificate or a TLCP pair.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Pair {
    #[default]
    Single,
    #[serde(rename = "TLCP")]
    Tlcp,
}

/// What the operator issued.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmCertificateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the current certificate became valid (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// When the current certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the operator will renew it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// The serial number (hex) of the certificate, or of the sign certificate of a TLCP pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The serial number (hex) of the enc certificate of a TLCP pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_serial_number: Option<String>,
    /// How many times the certificate has been issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// `Ready` when the Secret holds a valid, current certificate; `Issuing` while a new one is
    /// due and not yet written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl SmCertificateSpec {
    /// The lifetime asked for (default 90 days).
    pub fn lifetime(&self) -> Result<jiff::SignedDuration, String> {
        parse_duration(self.duration.as_deref().unwrap_or("2160h")).map_err(|e| format!("spec.duration: {e}"))
    }

    /// How long before expiry to renew (default a third of the lifetime).
    pub fn renew_before(&self, lifetime: jiff::SignedDuration) -> Result<jiff::SignedDuration, String> {
        match &self.renew_before {
            Some(d) => parse_duration(d).map_err(|e| format!("spec.renewBefore: {e}")),
            None => Ok(lifetime / 3),
        }
    }

    pub fn usages(&self) -> (bool, bool) {
        if self.usages.is_empty() {
            return (true, false);
        }
        (self.usages.contains(&Usage::Server), self.usages.contains(&Usage::Client))
    }
}

/// Parses a Go duration (`2160h`, `1h30m`, `1.5h`, `90s`) as the schema's pattern admits.
pub fn parse_duration(s: &str) -> Result<jiff::SignedDuration, String> {
    let bad = || format!("{s:?} is not a duration such as 2160h, 90m or 1h30m");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_nanos += value * nanos_per;
    }
    // Certificates are valid for at most a few decades: nanoseconds in an i64 hold 292 years.
    if !total_nanos.is_finite() || total_nanos > 200.0 * 365.0 * 86400e9 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(jiff::SignedDuration::from_nanos(total_nanos as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let h = jiff::SignedDuration::from_hours;
        assert_eq!(parse_duration("2160h"), Ok(h(2160)));
        assert_eq!(parse_duration("1h30m"), Ok(jiff::SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("1.5h"), Ok(jiff::SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("90s"), Ok(jiff::SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(jiff::SignedDuration::from_millis(250)));
        for bad in ["", "5", "h", "5d", "1h-2m", "1..5h", "9999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn renewal_defaults_to_a_third_of_the_lifetime() {
        let spec: SmCertificateSpec = serde_json::from_value(serde_json::json!({
            "issuerRef": {"name": "ca"}, "commonName": "x", "secretName": "x-tls", "duration": "90h"
        }))
        .expect("spec");
        let life = spec.lifetime().expect("lifetime");
        assert_eq!(spec.renew_before(life), Ok(jiff::SignedDuration::from_hours(30)));
        assert_eq!(spec.usages(), (true, false));
        assert_eq!(spec.pair, Pair::Single);
        assert_eq!(spec.issuer_ref.kind, IssuerKind::SmIssuer);
    }
}
