//! 国密 certificates as Kubernetes resources: the issuer controllers (SmIssuer,
//! SmClusterIssuer) and the SmCertificate controller. Key generation and signing go through
//! the context's [`crate::pki::keystore::KeyStore`], the seam a GM/T 0018 cipher machine fills.

pub mod build;
pub mod issuers;
pub mod reconcile;
