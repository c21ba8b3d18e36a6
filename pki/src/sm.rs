//! The national algorithms we use: SM3 (hash), SM4 (block cipher, known-answer checked), and
//! the SM2 object identifiers.

use sm3::Digest;

/// SM2-with-SM3 signature algorithm (GM/T 0006): no parameters.
pub const OID_SM2_SM3: &str = "1.2.156.10197.1.501";
/// The SM2 curve, as the named curve of `id-ecPublicKey`.
pub const OID_SM2_CURVE: &str = "1.2.156.10197.1.301";
/// `id-ecPublicKey`.
pub const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The default SM2 user ID (GM/T 0009).
pub const DEFAULT_ID: &str = "1234567812345678";

/// SM3 of a message.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    let mut h = sm3::Sm3::new();
    h.update(data);
    h.finalize().into()
}

/// SM4 encryption of one 16-byte block (for known-answer tests of the primitive).
pub fn sm4_encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    use sm4::cipher::{BlockCipherEncrypt, KeyInit};
    let cipher = sm4::Sm4::new(key.into());
    let mut b = (*block).into();
    cipher.encrypt_block(&mut b);
    b.into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex to bytes, for the known-answer tests.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm3_known_answer() {
        assert_eq!(hex(&sm3(b"abc")), "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
    }

    #[test]
    fn sm4_known_answer() {
        let k: [u8; 16] = unhex("0123456789abcdeffedcba9876543210").try_into().unwrap_or([0; 16]);
        assert_eq!(hex(&sm4_encrypt_block(&k, &k)), "681edf34d206965e86b3e94f536e4246");
    }
}
