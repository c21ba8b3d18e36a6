//! `SecureGateway`: a tenant's service exposed with 国密 TLS — TLCP (GB/T 38636), TLS 1.3 with the
//! RFC 8998 SM suites, and, where the tenant's level allows, standard TLS — by zhengyun-gateway.
//!
//! Contradictions inside the spec are refused by the CRD's CEL rules; those that need the
//! namespace (its 等保 level, or a reference to another namespace) by the operator chart's
//! ValidatingAdmissionPolicy `zhengyun-securegateway`, which reads the namespace's labels.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lowercase RFC 1123 labels: a Kubernetes object name.
const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Service name: one RFC 1035 label.
const LABEL_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A department service behind TLCP / TLS 1.3 SM / standard TLS.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "zhengyun.io",
    version = "v1alpha1",
    kind = "SecureGateway",
    plural = "securegateways",
    singular = "securegateway",
    shortname = "sgw",
    namespaced,
    category = "zhengyun",
    status = "SecureGatewayStatus",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!('TLS' in self.protocols) || has(self.standardCertificate)",
        "message": "spec.protocols includes TLS: set spec.standardCertificate (a kubernetes.io/tls Secret with an ECDSA or RSA certificate)"
    },
    {
        "rule": "'TLS' in self.protocols || !has(self.standardCertificate)",
        "message": "spec.standardCertificate is set but spec.protocols does not include TLS"
    },
    {
        "rule": "!has(self.clientAuth) || self.clientAuth.mode == 'None' || has(self.clientAuth.caIssuer)",
        "message": "spec.clientAuth.mode Optional or Required needs spec.clientAuth.caIssuer (the SmIssuer whose CA signs client certificates)"
    }
]))]
pub struct SecureGatewaySpec {
    /// The Service (in this namespace) the gateway forwards to.
    pub backend: GatewayBackend,
    /// The port clients connect to on the gateway's Service (default 443).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// What the gateway speaks to clients: `TLCP`, `TLS13-SM` (TLS 1.3, RFC 8998) and `TLS`
    /// (standard TLS 1.2/1.3 for ordinary browsers and tools; refused at 等保 level 4).
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub protocols: Vec<GatewayProtocol>,
    /// The SmCertificate served for TLCP and TLS 1.3 SM: a `TLCP` pair with the `server` usage.
    pub certificate: CertificateRef,
    /// A `kubernetes.io/tls` Secret (this namespace) with an ECDSA or RSA certificate, for `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_certificate: Option<SecretRef>,
    /// Client certificates: none (the default), optional or required, verified against an
    /// SmIssuer's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Gateway replicas (default 2).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
}

fn default_port() -> u16 {
    443
}

fn default_replicas() -> i32 {
    2
}

/// A backend Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackend {
    /// The Service's name, in the gateway's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_PATTERN))]
    pub service: String,
    /// The Service's port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `TCP` (bytes relayed, the default) or `HTTP` (HTTP/1.1 with X-Forwarded-For and
    /// X-Forwarded-Proto set, and X-Client-Subject carrying a verified client certificate's
    /// subject; values clients send in those headers are dropped).
    #[serde(default)]
    pub protocol: BackendProtocol,
}

/// How the backend is spoken to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackendProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "HTTP")]
    Http,
}

/// A protocol a gateway serves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum GatewayProtocol {
    /// TLCP (GB/T 38636-2020): ECC_SM4_GCM_SM3 and ECC_SM4_CBC_SM3, plus the ECDHE suites when
    /// clients present certificates.
    #[serde(rename = "TLCP")]
    Tlcp,
    /// TLS 1.3 with TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3, curveSM2, sm2sig_sm3 (RFC 8998).
    #[serde(rename = "TLS13-SM")]
    Tls13Sm,
    /// Standard TLS 1.2/1.3 with an ECDSA or RSA certificate.
    #[serde(rename = "TLS")]
    Tls,
}

impl GatewayProtocol {
    /// The gateway's command-line name.
    pub fn flag(self) -> &'static str {
        match self {
            GatewayProtocol::Tlcp => "tlcp",
            GatewayProtocol::Tls13Sm => "tls13-sm",
            GatewayProtocol::Tls => "tls",
        }
    }

    /// The suites a gateway serves for this protocol.
    pub fn suites(self, client_certificates: bool) -> Vec<&'static str> {
        match self {
            GatewayProtocol::Tlcp if client_certificates => {
                vec!["ECC-SM2-SM4-GCM-SM3", "ECC-SM2-SM4-CBC-SM3", "ECDHE-SM2-SM4-GCM-SM3", "ECDHE-SM2-SM4-CBC-SM3"]
            }
            GatewayProtocol::Tlcp => vec!["ECC-SM2-SM4-GCM-SM3", "ECC-SM2-SM4-CBC-SM3"],
            GatewayProtocol::Tls13Sm => vec!["TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3"],
            GatewayProtocol::Tls => vec![
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "ECDHE-ECDSA/RSA-AES-GCM",
                "ECDHE-ECDSA/RSA-CHACHA20-POLY1305",
            ],
        }
    }
}

/// The SmCertificate served.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRef {
    /// The SmCertificate's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Must be the gateway's own namespace if set: a gateway never serves another namespace's
    /// key (refused at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A Secret in the gateway's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub secret_name: String,
}

/// Client certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    pub mode: ClientAuthMode,
    /// The SmIssuer (this namespace) whose CA certificate verifies client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub ca_issuer: Option<String>,
}

/// Whether clients present certificates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClientAuthMode {
    #[default]
    None,
    Optional,
    Required,
}

impl SecureGatewaySpec {
    pub fn client_auth_mode(&self) -> ClientAuthMode {
        self.client_auth.as_ref().map(|c| c.mode).unwrap_or_default()
    }
}

/// What the operator rendered and observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecureGatewayStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The protocols served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// The suites served, by their OpenSSL/Tongsuo names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<String>,
    /// The SM2 sign certificate's serial (hex), from the SmCertificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_serial: Option<String>,
    /// The enc certificate's serial (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_serial: Option<String>,
    /// When the served SM2 certificates expire (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Where clients connect: the gateway Service's `name.namespace.svc:port` and cluster IP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Gateway replicas ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// `Ready` when the certificate is ready and every replica serves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
