//! SecureGateways: a tenant's Service exposed by zhengyun-gateway with TLCP, TLS 1.3 SM and,
//! where allowed, standard TLS.
//!
//! `build` turns a gateway and what it refers to (resolved by `reconcile`) into a Deployment, a
//! Service, a NetworkPolicy and, for client certificates, a ConfigMap with the CA, without I/O;
//! `reconcile` resolves the references, applies what changed and keeps the status. A rotated
//! certificate reaches running replicas through their Secret volume: the controller touches an
//! annotation on each gateway pod, which makes the kubelet refresh the pod's volumes at once
//! instead of at its next periodic sync, and the gateway reloads the files it watches.

pub(crate) mod build;
pub mod reconcile;

/// Labels every object of a gateway with its name.
pub use crate::labels::SECURE_GATEWAY as GATEWAY_LABEL;
/// On gateway pods: the certificate Secret versions they were last told about.
pub const SECRETS_ANNOTATION: &str = "zhengyun.io/secret-versions";
