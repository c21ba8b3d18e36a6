//! Reads X.509 certificates back: enough to check a CA Secret (an SM2 key that matches an SM2
//! CA certificate) and to inspect the certificates the operator wrote, without trusting them.

use base64::Engine;
use jiff::Timestamp;

use super::{
    der::{self, next},
    sm::{OID_EC_PUBLIC_KEY, OID_SM2_CURVE, OID_SM2_SM3},
};

/// The parts of a certificate the operator looks at.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub der: Vec<u8>,
    pub tbs: Vec<u8>,
    pub signature: Vec<u8>,
    pub serial_hex: String,
    /// The issuer and subject names as encoded (a leaf names its issuer with these exact bytes).
    pub issuer_der: Vec<u8>,
    pub subject_der: Vec<u8>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// The public key, SEC1 uncompressed, when the key is on the SM2 curve.
    pub sm2_public: Option<Vec<u8>>,
    /// Whether the signature algorithm is SM2-with-SM3.
    pub signed_sm2_sm3: bool,
    pub is_ca: bool,
    pub subject_key_id: Option<Vec<u8>>,
}

impl Parsed {
    pub fn subject(&self) -> String {
        describe_name(&self.subject_der)
    }
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(what: &str) -> Result<T, ParseError> {
    Err(ParseError(format!("malformed certificate: {what}")))
}

/// A TLV: tag, the whole encoding, the contents, and what follows.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one TLV and also returns it whole (header included).
fn whole(buf: &[u8]) -> Option<Tlv<'_>> {
    let (tag, body, rest) = next(buf)?;
    Some((tag, &buf[..buf.len() - rest.len()], body, rest))
}

/// Parses one DER certificate.
pub fn certificate(input: &[u8]) -> Result<Parsed, ParseError> {
    let Some((body, _)) = der::expect(input, 0x30) else { return err("not a SEQUENCE") };
    let Some((0x30, tbs_whole, tbs, rest)) = whole(body) else { return err("no TBSCertificate") };
    let Some((0x30, alg_whole, _, rest)) = whole(rest) else { return err("no signature algorithm") };
    let Some((sig_bits, _)) = der::expect(rest, 0x03) else { return err("no signature") };
    let signed_sm2_sm3 = alg_whole == der::sequence(&[der::oid(OID_SM2_SM3)]).as_slice()
        || alg_whole == der::sequence(&[der::oid(OID_SM2_SM3), vec![0x05, 0x00]]).as_slice();

    let mut cur = tbs;
    if cur.first() == Some(&0xa0) {
        let Some((_, _, r)) = next(cur) else { return err("version") };
        cur = r;
    }
    let Some((serial, r)) = der::expect(cur, 0x02) else { return err("serial number") };
    let Some((_, r)) = der::expect(r, 0x30) else { return err("TBS signature algorithm") };
    let Some((0x30, issuer_der, _, r)) = whole(r) else { return err("issuer") };
    let Some((validity, r)) = der::expect(r, 0x30) else { return err("validity") };
    let Some((0x30, subject_der, _, r)) = whole(r) else { return err("subject") };
    let Some((spki, mut r)) = der::expect(r, 0x30) else { return err("subject public key info") };
    let (not_before, not_after) = {
        let Some((t1, b1, v)) = next(validity) else { return err("notBefore") };
        let Some((t2, b2, _)) = next(v) else { return err("notAfter") };
        (time(t1, b1)?, time(t2, b2)?)
    };
    let sm2_public = {
        let Some((0x30, alg_whole, _, key)) = whole(spki) else { return err("key algorithm") };
        let Some((bits, _)) = der::expect(key, 0x03) else { return err("public key") };
        let sm2 = der::sequence(&[der::oid(OID_EC_PUBLIC_KEY), der::oid(OID_SM2_CURVE)]);
        (alg_whole == sm2.as_slice() && bits.len() == 66).then(|| bits[1..].to_vec())
    };
    let (mut is_ca, mut subject_key_id) = (false, None);
    while let Some((tag, body, rest)) = next(r) {
        if tag == 0xa3 {
            let Some((exts, _)) = der::expect(body, 0x30) else { return err("extensions") };
            let mut e = exts;
            while let Some((ext, more)) = der::expect(e, 0x30) {
                let Some((0x06, oid_whole, _, after)) = whole(ext) else { return err("extension id") };
                let value = match next(after) {
                    Some((0x01, _, after)) => der::expect(after, 0x04).map(|(v, _)| v),
                    _ => der::expect(after, 0x04).map(|(v, _)| v),
                };
                let Some(value) = value else { return err("extension value") };
                if oid_whole == der::oid("2.5.29.19").as_slice() {
                    is_ca = der::expect(value, 0x30)
                        .and_then(|(bc, _)| der::expect(bc, 0x01))
                        .is_some_and(|(b, _)| b.first().is_some_and(|v| *v != 0));
                } else if oid_whole == der::oid("2.5.29.14").as_slice() {
                    subject_key_id = der::expect(value, 0x04).map(|(v, _)| v.to_vec());
                }
                e = more;
            }
        }
        r = rest;
    }
    Ok(Parsed {
        der: input[..input.len() - der::next(input).map_or(0, |(_, _, rest)| rest.len())].to_vec(),
        tbs: tbs_whole.to_vec(),
        signature: sig_bits.get(1..).unwrap_or_default().to_vec(),
        serial_hex: super::sm::hex(serial.iter().copied().skip_while(|b| *b == 0).collect::<Vec<_>>().as_slice()),
        issuer_der: issuer_der.to_vec(),
        subject_der: subject_der.to_vec(),
        not_before,
        not_after,
        sm2_public,
        signed_sm2_sm3,
        is_ca,
        subject_key_id,
    })
}

fn time(tag: u8, body: &[u8]) -> Result<Timestamp, ParseError> {
    let s = std::str::from_utf8(body).map_err(|_| ParseError("malformed certificate: time".into()))?;
    let digits = s.strip_suffix('Z').filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let (year, rest) = match (tag, digits) {
        (0x17, Some(d)) if d.len() == 12 => {
            let yy: i16 = d[..2].parse().unwrap_or(0);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &d[2..])
        }
        (0x18, Some(d)) if d.len() == 14 => (d[..4].parse().unwrap_or(0), &d[4..]),
        _ => return err("time is neither UTCTime nor GeneralizedTime in UTC"),
    };
    let n = |i: usize| rest[i..i + 2].parse::<i8>().unwrap_or(-1);
    let dt = jiff::civil::DateTime::new(year, n(0), n(2), n(4), n(6), n(8), 0)
        .map_err(|e| ParseError(format!("malformed certificate: time {s}: {e}")))?;
    match dt.to_zoned(jiff::tz::TimeZone::UTC) {
        Ok(z) => Ok(z.timestamp()),
        // RFC 5280's "no well-defined expiration" (99991231235959Z) lies just past what a
        // timestamp holds: it means as late as can be.
        Err(_) if year == 9999 => Ok(Timestamp::MAX),
        Err(e) => Err(ParseError(format!("malformed certificate: time {s}: {e}"))),
    }
}

/// The blocks of one PEM label in a text, decoded.
pub fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let b64: String = after[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(bytes);
        }
        rest = &after[stop + end.len()..];
    }
    out
}

/// A readable form of an X.509 name, for status fields (`CN=…, O=…`).
pub fn describe_name(name_der: &[u8]) -> String {
    let mut parts = Vec::new();
    let Some((mut rdns, _)) = der::expect(name_der, 0x30) else { return String::new() };
    while let Some((set, more)) = der::expect(rdns, 0x31) {
        let mut atvs = set;
        while let Some((atv, next_atv)) = der::expect(atvs, 0x30) {
            if let Some((0x06, oid, _, value)) = whole(atv) {
                let key = [
                    ("2.5.4.3", "CN"),
                    ("2.5.4.10", "O"),
                    ("2.5.4.11", "OU"),
                    ("2.5.4.6", "C"),
                    ("2.5.4.8", "ST"),
                    ("2.5.4.7", "L"),
                ]
                .iter()
                .find(|(o, _)| der::oid(o).as_slice() == oid)
                .map_or("?", |(_, k)| k);
                if let Some((_, v, _)) = next(value) {
                    parts.push(format!("{key}={}", String::from_utf8_lossy(v)));
                }
            }
            atvs = next_atv;
        }
        rdns = more;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cert::{self, Name, Profile, Request},
        keystore::{KeyStore, SoftwareKeyStore},
    };

    #[test]
    fn reads_back_what_cert_writes() {
        let store = SoftwareKeyStore;
        let key = store.generate().expect("key");
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let later = Timestamp::from_second(2_600_000_000).expect("time"); // after 2050: GeneralizedTime
        let name = Name { common_name: "根 CA".into(), organization: Some("市大数据局".into()) };
        let c = cert::issue(
            &store,
            &Request {
                subject: name.clone(),
                dns_names: vec![],
                ip_addresses: vec![],
                not_before: now,
                not_after: later,
                profile: Profile::Ca { path_len: None },
                serial: [0x11; 16],
            },
            &key.public_sec1(),
            None,
            Some(&key),
        )
        .expect("cert");
        let p = certificate(&c.der).expect("parse");
        assert_eq!((p.not_before, p.not_after), (now, later));
        assert_eq!(p.sm2_public.as_deref(), Some(key.public_sec1().as_slice()));
        assert!(p.signed_sm2_sm3 && p.is_ca);
        assert_eq!(p.subject_key_id, Some(cert::key_id(&key.public_sec1())));
        assert_eq!(p.subject(), "O=市大数据局, CN=根 CA");
        assert_eq!(p.issuer_der, p.subject_der);
        assert_eq!(p.tbs, c.tbs);
        assert_eq!(p.serial_hex, c.serial_hex);
        assert_eq!(pem_blocks(&format!("junk\n{}{}", c.pem(), c.pem()), "CERTIFICATE"), vec![c.der.clone(), c.der]);
        assert!(certificate(&p.tbs).is_err(), "a TBS is not a certificate");
        assert!(certificate(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert_eq!(time(0x18, b"99991231235959Z"), Ok(Timestamp::MAX), "RFC 5280's no-expiry date");
        assert!(time(0x17, b"991331000000Z").is_err(), "month 13");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// CA Secrets come from users: every prefix and every single-byte change of a certificate
    /// must parse or be refused, never panic.
    #[test]
    fn truncated_or_mangled_certificates_never_panic() {
        use crate::{ca, cert::Name, keystore::SoftwareKeyStore};
        let now = Timestamp::now();
        let name = Name { common_name: "x".into(), organization: None };
        let (pem, _) =
            ca::self_signed(&SoftwareKeyStore, name, jiff::SignedDuration::from_hours(1), now).expect("root");
        let der = pem_blocks(&pem, "CERTIFICATE").remove(0);
        for cut in 0..der.len() {
            let _ = certificate(&der[..cut]);
        }
        for i in 0..der.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut m = der.clone();
                m[i] ^= flip;
                let _ = certificate(&m);
            }
        }
        assert!(certificate(&der).is_ok());
    }
}
