//! 国密 PKI: SM2 keys, SM3 hashes, and X.509 certificates in the SM2 profile.
//!
//! Every key is generated and every signature made behind [`keystore::KeyStore`], the seam
//! where a certified cipher machine (a GM/T 0018 HSM) replaces the software store. Certificates
//! are encoded here (`der`, `cert`) so their signatures are DER `SEQUENCE { r, s }` as Tongsuo,
//! OpenSSL and gmssl expect, and are checked in tests by those independent implementations.

#![forbid(unsafe_code)]

pub mod ca;
pub mod cert;
pub mod der;
pub mod keystore;
pub mod parse;
pub mod sm;
