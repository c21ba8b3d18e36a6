//! A certificate authority's material: loaded from a Secret and checked, or generated as a
//! self-signed root.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::{
    cert::{self, Issuer, Name, Profile, Request},
    keystore::{KeyError, KeyStore, Sm2Key},
    parse::{self, Parsed},
    sm,
};

/// A CA ready to sign.
#[derive(Debug, Clone)]
pub struct Ca {
    pub cert: Parsed,
    pub key: Sm2Key,
    /// The CA certificate and any intermediates above it, PEM: appended to issued chains.
    pub chain_pem: String,
    /// What relying parties trust (`ca.crt`): the Secret's `ca.crt`, else the last certificate
    /// of the chain.
    pub root_pem: String,
    /// SM3 of the CA certificate, hex.
    pub fingerprint: String,
    /// What a leaf's authority key identifier carries: the CA's own subject key identifier when
    /// it has one (an external CA may use another method than ours), else ours.
    key_id: Vec<u8>,
}

impl Ca {
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer { subject_der: &self.cert.subject_der, key_id: &self.key_id, key: &self.key }
    }

    pub fn public_sec1(&self) -> Vec<u8> {
        self.key.public_sec1()
    }
}

/// Reads and checks a CA Secret's data: `tls.key` must be an SM2 PKCS#8 key, `tls.crt` must start
/// with an SM2 CA certificate for that key, signed with SM2-with-SM3, valid now.
pub fn load(data: &BTreeMap<String, Vec<u8>>, now: Timestamp) -> Result<Ca, String> {
    let text = |field: &str| {
        data.get(field)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("the Secret has no {field}"))
    };
    let key = Sm2Key::from_pkcs8_pem(&text("tls.key")?)
        .map_err(|e| format!("tls.key is not an SM2 private key (PKCS#8 PEM on the SM2 curve): {e}"))?;
    let chain_text = text("tls.crt")?;
    let blocks = parse::pem_blocks(&chain_text, "CERTIFICATE");
    let Some(first) = blocks.first() else { return Err("tls.crt holds no PEM certificate".into()) };
    let ca = parse::certificate(first).map_err(|e| format!("tls.crt: {e}"))?;
    let Some(public) = &ca.sm2_public else {
        return Err("tls.crt is not an SM2 certificate (its key is not on the SM2 curve)".into());
    };
    if !ca.signed_sm2_sm3 {
        return Err("tls.crt is not signed with SM2-with-SM3".into());
    }
    if *public != key.public_sec1() {
        return Err("tls.crt does not match tls.key: the certificate is for another key".into());
    }
    if !ca.is_ca {
        return Err("tls.crt is not a CA certificate (basicConstraints CA:TRUE is missing)".into());
    }
    if now >= ca.not_after {
        return Err(format!("tls.crt expired at {}", ca.not_after));
    }
    let mut rest = Vec::new();
    for (i, b) in blocks.iter().enumerate().skip(1) {
        parse::certificate(b).map_err(|e| format!("tls.crt certificate {}: {e}", i + 1))?;
        rest.push(cert::pem("CERTIFICATE", b));
    }
    let chain_pem = std::iter::once(cert::pem("CERTIFICATE", &ca.der)).chain(rest).collect::<String>();
    let root_pem = match data.get("ca.crt").map(|b| String::from_utf8_lossy(b).into_owned()) {
        Some(r) if !parse::pem_blocks(&r, "CERTIFICATE").is_empty() => r,
        _ => blocks.last().map(|b| cert::pem("CERTIFICATE", b)).unwrap_or_default(),
    };
    let fingerprint = sm::hex(&sm::sm3(&ca.der));
    let key_id = ca.subject_key_id.clone().unwrap_or_else(|| cert::key_id(public));
    Ok(Ca { cert: ca, key, chain_pem, root_pem, fingerprint, key_id })
}

/// A new self-signed SM2 root: `(certificate PEM, PKCS#8 key PEM)`.
pub fn self_signed(
    store: &dyn KeyStore,
    subject: Name,
    lifetime: SignedDuration,
    now: Timestamp,
) -> Result<(String, String), KeyError> {
    let key = store.generate()?;
    let public = key.public_sec1();
    let c = cert::issue(
        store,
        &Request {
            subject,
            dns_names: vec![],
            ip_addresses: vec![],
            not_before: now,
            not_after: now.saturating_add(lifetime).map_err(|e| KeyError::Key(e.to_string()))?,
            profile: Profile::Ca { path_len: Some(0) },
            serial: random_serial()?,
        },
        &public,
        None,
        Some(&key),
    )?;
    Ok((c.pem(), key.to_pkcs8_pem()?))
}

/// 16 random bytes for a serial number.
pub fn random_serial() -> Result<[u8; 16], KeyError> {
    use ring::rand::SecureRandom;
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| KeyError::Key("the system random source failed".into()))?;
    Ok(serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::SoftwareKeyStore;

    fn data(pairs: &[(&str, String)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_ca_secret_must_hold_a_matching_sm2_ca() {
        let store = SoftwareKeyStore;
        let now = Timestamp::now();
        let name = Name { common_name: "test CA".into(), organization: None };
        let (crt, key) = self_signed(&store, name.clone(), SignedDuration::from_hours(24), now).expect("root");
        let ca = load(&data(&[("tls.crt", crt.clone()), ("tls.key", key.clone())]), now).expect("valid");
        assert_eq!(ca.cert.subject(), "CN=test CA");
        assert_eq!(ca.root_pem, crt);
        assert_eq!(ca.fingerprint.len(), 64);

        let (other_crt, other_key) = self_signed(&store, name, SignedDuration::from_hours(24), now).expect("root");
        let mismatch = load(&data(&[("tls.crt", crt.clone()), ("tls.key", other_key)]), now);
        assert!(mismatch.is_err_and(|e| e.contains("does not match")));
        // A P-256 key (what Go's crypto or plain OpenSSL make) is refused as not SM2.
        let rng = ring::rand::SystemRandom::new();
        let p256 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .expect("P-256 key");
        let p256 = cert::pem("PRIVATE KEY", p256.as_ref());
        let not_sm2 = load(&data(&[("tls.crt", other_crt), ("tls.key", p256)]), now);
        assert!(not_sm2.is_err_and(|e| e.contains("not an SM2 private key")));
        assert!(load(&data(&[("tls.key", key.clone())]), now).is_err_and(|e| e.contains("no tls.crt")));
        let expired = load(&data(&[("tls.crt", crt), ("tls.key", key)]), now + SignedDuration::from_hours(25));
        assert!(expired.is_err_and(|e| e.contains("expired")));
    }
}
