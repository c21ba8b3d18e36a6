//! X.509 certificates in the SM2 profile: CA certificates, and TLCP *sign* and *enc* pairs.
//!
//! Signature algorithm SM2-with-SM3 (no parameters), keys on the SM2 curve, signatures DER
//! `SEQUENCE { r, s }` with the default SM2 user ID, subject/authority key identifiers, basic
//! constraints and key usages by profile: a sign certificate has digitalSignature, an enc
//! certificate keyEncipherment + dataEncipherment (+ keyAgreement for ECDHE suites).

use std::net::IpAddr;

use base64::Engine;
use jiff::Timestamp;

use super::{
    der,
    keystore::{KeyError, KeyStore, Sm2Key},
    sm::{self, OID_EC_PUBLIC_KEY, OID_SM2_CURVE, OID_SM2_SM3},
};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A CA: keyCertSign, cRLSign, digitalSignature; `pathLen` limits the CAs below it.
    Ca { path_len: Option<u8> },
    /// A TLCP/TLS sign certificate (digitalSignature), with its extended key usages.
    Sign { server: bool, client: bool },
    /// A TLCP enc certificate (keyEncipherment, dataEncipherment, and keyAgreement for ECDHE).
    Enc { server: bool, client: bool, key_agreement: bool },
}

/// The subject of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name {
    pub common_name: String,
    pub organization: Option<String>,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct Request {
    pub subject: Name,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub profile: Profile,
    /// 16 random bytes; made positive when encoded.
    pub serial: [u8; 16],
}

/// The signer of a certificate: its subject as encoded in its own certificate (a leaf must name
/// its issuer with those exact bytes), its key identifier, and its private key.
pub struct Issuer<'a> {
    pub subject_der: &'a [u8],
    pub key_id: &'a [u8],
    pub key: &'a Sm2Key,
}

/// A DER certificate with what callers need to know about it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub der: Vec<u8>,
    pub tbs: Vec<u8>,
    pub signature: Vec<u8>,
    pub serial_hex: String,
}

impl Certificate {
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn name_der(n: &Name) -> Vec<u8> {
    let mut rdns = Vec::new();
    if let Some(o) = &n.organization {
        rdns.push(der::set(&[der::sequence(&[der::oid("2.5.4.10"), der::utf8(o)])]));
    }
    rdns.push(der::set(&[der::sequence(&[der::oid("2.5.4.3"), der::utf8(&n.common_name)])]));
    der::sequence(&rdns)
}

fn algorithm() -> Vec<u8> {
    der::sequence(&[der::oid(OID_SM2_SM3)])
}

fn spki(public_sec1: &[u8]) -> Vec<u8> {
    der::sequence(&[
        der::sequence(&[der::oid(OID_EC_PUBLIC_KEY), der::oid(OID_SM2_CURVE)]),
        der::bit_string(public_sec1),
    ])
}

/// The key identifier: the first 20 bytes of SM3 over the public key.
pub fn key_id(public_sec1: &[u8]) -> Vec<u8> {
    sm::sm3(public_sec1)[..20].to_vec()
}

fn extension(oid: &str, critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut parts = vec![der::oid(oid)];
    if critical {
        parts.push(der::boolean(true));
    }
    parts.push(der::octet_string(&value));
    der::sequence(&parts)
}

fn extensions(req: &Request, subject_public: &[u8], authority_key_id: &[u8]) -> Vec<u8> {
    let mut exts = Vec::new();
    let (basic, usage, eku): (Vec<u8>, Vec<usize>, Vec<&str>) = match req.profile {
        Profile::Ca { path_len } => {
            let mut bc = vec![der::boolean(true)];
            if let Some(n) = path_len {
                bc.push(der::small_int(u64::from(n)));
            }
            (der::sequence(&bc), vec![0, 5, 6], vec![])
        }
        Profile::Sign { server, client } => (der::sequence(&[]), vec![0], ekus(server, client)),
        Profile::Enc { server, client, key_agreement } => {
            let mut bits = vec![2, 3];
            if key_agreement {
                bits.push(4);
            }
            (der::sequence(&[]), bits, ekus(server, client))
        }
    };
    exts.push(extension("2.5.29.19", true, basic));
    exts.push(extension("2.5.29.15", true, der::named_bits(&usage)));
    if !eku.is_empty() {
        exts.push(extension("2.5.29.37", false, der::sequence(&eku.iter().map(|o| der::oid(o)).collect::<Vec<_>>())));
    }
    exts.push(extension("2.5.29.14", false, der::octet_string(&key_id(subject_public))));
    exts.push(extension("2.5.29.35", false, der::sequence(&[der::implicit(0, authority_key_id)])));
    if !req.dns_names.is_empty() || !req.ip_addresses.is_empty() {
        let mut names: Vec<Vec<u8>> = req.dns_names.iter().map(|d| der::implicit(2, d.as_bytes())).collect();
        for ip in &req.ip_addresses {
            let bytes = match ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            };
            names.push(der::implicit(7, &bytes));
        }
        exts.push(extension("2.5.29.17", false, der::sequence(&names)));
    }
    der::explicit(3, &der::sequence(&exts))
}

fn ekus(server: bool, client: bool) -> Vec<&'static str> {
    let mut v = Vec::new();
    if server {
        v.push("1.3.6.1.5.5.7.3.1");
    }
    if client {
        v.push("1.3.6.1.5.5.7.3.2");
    }
    v
}

/// Issues a certificate for `subject_public`, signed by `issuer` (or self-signed with
/// `subject_key` when there is no issuer, for a root CA).
pub fn issue(
    store: &dyn KeyStore,
    req: &Request,
    subject_public: &[u8],
    issuer: Option<Issuer<'_>>,
    subject_key: Option<&Sm2Key>,
) -> Result<Certificate, KeyError> {
    let (issuer_name, authority_key_id, signing_key) = match &issuer {
        Some(i) => (i.subject_der.to_vec(), i.key_id.to_vec(), i.key),
        None => (
            name_der(&req.subject),
            key_id(subject_public),
            subject_key.ok_or_else(|| KeyError::Key("a self-signed certificate needs its own key".into()))?,
        ),
    };
    let mut serial = req.serial;
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01 << 6; // and of full length
    let tbs = der::sequence(&[
        der::explicit(0, &der::small_int(2)),
        der::uint(&serial),
        algorithm(),
        issuer_name,
        der::sequence(&[der::time(req.not_before), der::time(req.not_after)]),
        name_der(&req.subject),
        spki(subject_public),
        extensions(req, subject_public, &authority_key_id),
    ]);
    let signature = store.sign(signing_key, &tbs)?;
    let der = der::sequence(&[tbs.clone(), algorithm(), der::bit_string(&signature)]);
    Ok(Certificate { der, tbs, signature, serial_hex: sm::hex(&serial) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::{SoftwareKeyStore, verify};

    fn request(profile: Profile) -> Request {
        let now = Timestamp::now();
        Request {
            subject: Name { common_name: "portal.bigdata.gov.cn".into(), organization: Some("市大数据局".into()) },
            dns_names: vec!["portal.bigdata.gov.cn".into()],
            ip_addresses: vec!["10.20.0.5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))],
            not_before: now,
            not_after: now + jiff::SignedDuration::from_hours(24),
            profile,
            serial: [0x9a; 16],
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_tlcp_pair_has_the_sm2_profile_and_verifies_against_its_ca() {
        let store = SoftwareKeyStore;
        let ca_key = store.generate().expect("key");
        let ca_name = Name { common_name: "zhengyun test CA".into(), organization: None };
        let ca = issue(
            &store,
            &Request {
                subject: ca_name.clone(),
                dns_names: vec![],
                ip_addresses: vec![],
                ..request(Profile::Ca { path_len: Some(0) })
            },
            &ca_key.public_sec1(),
            None,
            Some(&ca_key),
        )
        .expect("ca");
        assert!(verify(&ca_key.public_sec1(), &ca.tbs, &ca.signature), "self-signed");
        let ca_public = ca_key.public_sec1();
        for profile in [
            Profile::Sign { server: true, client: false },
            Profile::Enc { server: true, client: false, key_agreement: true },
        ] {
            let key = store.generate().expect("key");
            let cert = issue(
                &store,
                &request(profile),
                &key.public_sec1(),
                Some(Issuer { subject_der: &name_der(&ca_name), key_id: &key_id(&ca_public), key: &ca_key }),
                None,
            )
            .expect("leaf");
            assert!(verify(&ca_public, &cert.tbs, &cert.signature));
            assert!(contains(&cert.der, &der::oid(OID_SM2_SM3)) && contains(&cert.der, &der::oid(OID_SM2_CURVE)));
            assert!(contains(&cert.der, &key_id(&ca_public)), "authority key identifier");
            let usage = match profile {
                Profile::Sign { .. } => der::named_bits(&[0]),
                _ => der::named_bits(&[2, 3, 4]),
            };
            assert!(contains(&cert.der, &usage), "{profile:?} key usage");
            assert!(cert.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        }
    }
}
