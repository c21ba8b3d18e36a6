//! The one seam for key material: generation and signing.
//!
//! zhengyun generates SM2 keys itself (including the TLCP *enc* keys that GB/T 38636 expects a
//! key-management centre to generate) and keeps them in Kubernetes Secrets as PKCS#8 PEM. A
//! deployment that must pass 密评 with a certified cipher machine implements [`KeyStore`] over
//! its GM/T 0018 interface; nothing else in the PKI changes.

use signature::{Signer, Verifier};
use sm2::{
    SecretKey,
    dsa::{Signature, SigningKey, VerifyingKey},
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
};

use super::{der, sm::DEFAULT_ID};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("SM2 key: {0}")]
    Key(String),
    #[error("SM2 signature: {0}")]
    Sign(String),
}

/// An SM2 key pair held by a key store.
#[derive(Clone)]
pub struct Sm2Key {
    secret: SecretKey,
}

impl std::fmt::Debug for Sm2Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug output.
        f.write_str("Sm2Key(<secret>)")
    }
}

impl Sm2Key {
    /// The public key, SEC1 uncompressed (`04 || X || Y`).
    pub fn public_sec1(&self) -> Vec<u8> {
        self.secret.public_key().to_sec1_bytes().to_vec()
    }

    /// PKCS#8 PEM of the private key, for the Secret.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        self.secret.to_pkcs8_pem(LineEnding::LF).map(|z| z.to_string()).map_err(|e| KeyError::Key(e.to_string()))
    }

    /// Reads a PKCS#8 PEM SM2 private key (refusing other curves).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        SecretKey::from_pkcs8_pem(pem)
            .map(|secret| Sm2Key { secret })
            .map_err(|e| KeyError::Key(format!("not an SM2 private key: {e}")))
    }
}

/// Where keys are made and used.
pub trait KeyStore: Send + Sync {
    fn generate(&self) -> Result<Sm2Key, KeyError>;
    /// An SM2-with-SM3 signature (default user ID) as DER `SEQUENCE { r, s }`.
    fn sign(&self, key: &Sm2Key, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// Keys in process memory, randomness from the operating system.
pub struct SoftwareKeyStore;

impl KeyStore for SoftwareKeyStore {
    fn generate(&self) -> Result<Sm2Key, KeyError> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        for _ in 0..16 {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes).map_err(|_| KeyError::Key("the system random source failed".into()))?;
            // A scalar outside [1, n-1] is refused: draw again.
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                return Ok(Sm2Key { secret });
            }
        }
        Err(KeyError::Key("could not draw a valid SM2 scalar".into()))
    }

    fn sign(&self, key: &Sm2Key, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signer = SigningKey::new(DEFAULT_ID, &key.secret).map_err(|e| KeyError::Sign(e.to_string()))?;
        let sig: Signature = signer.try_sign(message).map_err(|e| KeyError::Sign(e.to_string()))?;
        let raw = sig.to_bytes();
        Ok(der::sequence(&[der::uint(&raw[..32]), der::uint(&raw[32..])]))
    }
}

/// Verifies a DER SM2 signature against a SEC1 public key (used by tests and by the CA Secret
/// check that a certificate matches its key).
pub fn verify(public_sec1: &[u8], message: &[u8], der_signature: &[u8]) -> bool {
    let Ok(public) = sm2::PublicKey::from_sec1_bytes(public_sec1) else { return false };
    let Ok(vk) = VerifyingKey::new(DEFAULT_ID, public) else { return false };
    let Some(raw) = der_to_raw(der_signature) else { return false };
    let Ok(sig) = Signature::from_slice(&raw) else { return false };
    vk.verify(message, &sig).is_ok()
}

/// Signs and verifies a 32-byte message for `each` of the two, on this thread: (signs/s,
/// verifies/s). A benchmark helper, run side by side with `tongsuo speed sm2`.
pub fn bench(each: std::time::Duration) -> Result<(f64, f64), KeyError> {
    let store = SoftwareKeyStore;
    let key = store.generate()?;
    let msg = [0x5au8; 32];
    let start = std::time::Instant::now();
    let mut signs = 0u64;
    let mut sig = Vec::new();
    while start.elapsed() < each {
        sig = store.sign(&key, &msg)?;
        signs += 1;
    }
    let sign_rate = signs as f64 / start.elapsed().as_secs_f64();
    let public = key.public_sec1();
    let start = std::time::Instant::now();
    let mut verifies = 0u64;
    while start.elapsed() < each {
        if !verify(&public, &msg, &sig) {
            return Err(KeyError::Sign("a fresh signature did not verify".into()));
        }
        verifies += 1;
    }
    Ok((sign_rate, verifies as f64 / start.elapsed().as_secs_f64()))
}

/// `SEQUENCE { r, s }` to the 64-byte `r || s`.
pub fn der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (seq, _) = der::expect(der, 0x30)?;
    let (r, rest) = der::expect(seq, 0x02)?;
    let (s, _) = der::expect(rest, 0x02)?;
    let mut out = [0u8; 64];
    for (i, v) in [(0usize, r), (32, s)] {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if v.len() > 32 {
            return None;
        }
        out[i + 32 - v.len()..i + 32].copy_from_slice(&v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let store = SoftwareKeyStore;
        let key = store.generate().expect("key");
        assert_eq!(key.public_sec1().len(), 65);
        let sig = store.sign(&key, b"tbs").expect("sign");
        assert_eq!(sig[0], 0x30, "DER SEQUENCE, not raw r||s");
        assert!(verify(&key.public_sec1(), b"tbs", &sig));
        assert!(!verify(&key.public_sec1(), b"tbS", &sig));
        let other = store.generate().expect("key");
        assert!(!verify(&other.public_sec1(), b"tbs", &sig));
    }

    #[test]
    fn keys_round_trip_through_pkcs8_and_never_print() {
        let key = SoftwareKeyStore.generate().expect("key");
        let pem = key.to_pkcs8_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(Sm2Key::from_pkcs8_pem(&pem).expect("read").public_sec1(), key.public_sec1());
        assert_eq!(format!("{key:?}"), "Sm2Key(<secret>)");
    }
}

#[cfg(test)]
mod known_answer {
    use super::*;
    use crate::sm::unhex;

    /// The signature example of GB/T 32918.2 (GM/T 0003.2) on the recommended curve: the key pair,
    /// and the published (r, s) over "message digest" with the default ID, which our verifier must
    /// accept (SM2 signing is randomised, so the fixed k of the example cannot be replayed).
    #[test]
    fn the_standard_sm2_example_verifies() {
        let d = unhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8");
        let key = Sm2Key { secret: SecretKey::from_slice(&d).expect("private key") };
        let mut public = vec![0x04];
        public.extend(unhex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"));
        public.extend(unhex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"));
        assert_eq!(key.public_sec1(), public, "public key from the private key");
        let r = unhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3");
        let s = unhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA");
        let sig = der::sequence(&[der::uint(&r), der::uint(&s)]);
        assert!(verify(&public, b"message digest", &sig), "the standard's signature");
        assert!(!verify(&public, b"message digesT", &sig));
    }
}
