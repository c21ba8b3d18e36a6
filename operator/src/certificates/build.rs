//! Pure parts of the certificate controller: what a certificate's Secret should hold, and
//! whether the Secret that exists still holds it.

use std::{collections::BTreeMap, net::IpAddr};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{ResourceExt, api::ObjectMeta};

use crate::{
    api::{Pair, SmCertificate},
    labels,
    pki::{
        ca::{Ca, random_serial},
        cert::{self, Name, Profile, Request},
        keystore::{KeyStore, Sm2Key, verify},
        parse, sm,
    },
};

/// On a certificate's Secret: the SmCertificate it belongs to.
pub const CERTIFICATE_LABEL: &str = "zhengyun.io/certificate";
/// On a certificate's Secret: SM3 of the CA certificate that signed it.
pub const ISSUER_FINGERPRINT: &str = "zhengyun.io/issuer-fingerprint";
/// On a certificate's Secret: SM3 of the spec fields that shape the certificate.
pub const SPEC_HASH: &str = "zhengyun.io/spec-hash";
/// On a certificate's Secret: the certificate's revision.
pub const REVISION: &str = "zhengyun.io/revision";
/// On a certificate's Secret: why it was issued. The status is derived from the Secret, which
/// the controller reads fresh, so a stale cached status never rolls these back.
pub const ISSUED_BECAUSE: &str = "zhengyun.io/issued-because";

/// Why a certificate is (re-)issued. The label is a metric label: keep it stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    New,
    SecretMissing,
    SecretInvalid(String),
    SpecChanged,
    IssuerChanged,
    RenewalDue,
}

impl Why {
    pub fn label(&self) -> &'static str {
        match self {
            Why::New => "new",
            Why::SecretMissing => "secret_missing",
            Why::SecretInvalid(_) => "secret_invalid",
            Why::SpecChanged => "spec_changed",
            Why::IssuerChanged => "issuer_changed",
            Why::RenewalDue => "renewal_due",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Why::New => "first issuance".into(),
            Why::SecretMissing => "the Secret was missing".into(),
            Why::SecretInvalid(why) => format!("the Secret was not as issued: {why}"),
            Why::SpecChanged => "the spec changed".into(),
            Why::IssuerChanged => "the issuer's CA changed".into(),
            Why::RenewalDue => "the renewal time was reached".into(),
        }
    }
}

/// What the Secret currently holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub renewal_time: Timestamp,
    pub serial: String,
    pub enc_serial: Option<String>,
    pub revision: i64,
    /// Why this revision was issued, in words.
    pub issued_because: String,
}

/// A freshly issued Secret and what it holds.
pub struct Issued {
    pub secret: Secret,
    pub current: Current,
}

/// SM3 over the spec fields that shape the certificate (not `renewBefore`: renewing earlier or
/// later needs no new certificate).
pub fn spec_hash(c: &SmCertificate) -> String {
    let s = &c.spec;
    let shaped = serde_json::json!([
        s.issuer_ref,
        s.common_name,
        s.organization,
        s.dns_names,
        s.ip_addresses,
        s.usages(),
        s.duration,
        s.pair
    ]);
    sm::hex(&sm::sm3(shaped.to_string().as_bytes()))[..32].to_string()
}

/// When to renew a certificate valid from `not_before` to `not_after`: `renew_before` ahead of
/// expiry, but never sooner than 10 s after issuance (the schema keeps that margin; this holds it
/// for certificates the CA's expiry cut short). A certificate that ends with its CA (`capped`) is
/// not renewed: a new one could not last longer; it is re-issued when the CA rotates.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: SignedDuration,
    capped: bool,
) -> Timestamp {
    if capped {
        return not_after;
    }
    let floor = not_before.saturating_add(SignedDuration::from_secs(10)).unwrap_or(not_before).min(not_after);
    not_after.saturating_sub(renew_before).unwrap_or(not_before).max(floor)
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Checks one certificate/key pair of the Secret against the CA: returns the parsed certificate.
fn check_pair(secret: &Secret, crt: &str, key: &str, ca: &Ca, chain: bool) -> Result<parse::Parsed, String> {
    let text = field(secret, crt).ok_or_else(|| format!("{crt} is missing"))?;
    let blocks = parse::pem_blocks(&text, "CERTIFICATE");
    let leaf = blocks.first().ok_or_else(|| format!("{crt} holds no certificate"))?;
    let parsed = parse::certificate(leaf).map_err(|e| format!("{crt}: {e}"))?;
    let key = Sm2Key::from_pkcs8_pem(&field(secret, key).ok_or_else(|| format!("{key} is missing"))?)
        .map_err(|e| format!("{key}: {e}"))?;
    if parsed.sm2_public.as_deref() != Some(key.public_sec1().as_slice()) {
        return Err(format!("{crt} does not match its key"));
    }
    if parsed.issuer_der != ca.cert.subject_der || !verify(&ca.public_sec1(), &parsed.tbs, &parsed.signature) {
        return Err(format!("{crt} is not signed by the issuer's CA"));
    }
    let expected = if chain { cert::pem("CERTIFICATE", leaf) + &ca.chain_pem } else { cert::pem("CERTIFICATE", leaf) };
    if text != expected {
        return Err(format!("{crt} is not the certificate followed by the CA chain"));
    }
    Ok(parsed)
}

/// What the Secret holds, or why a new certificate is due.
pub fn inspect(
    secret: Option<&Secret>,
    c: &SmCertificate,
    ca: &Ca,
    renew_before: SignedDuration,
    now: Timestamp,
) -> Result<Current, Why> {
    let Some(secret) = secret else {
        let issued_before = c.status.as_ref().and_then(|s| s.revision).is_some();
        return Err(if issued_before { Why::SecretMissing } else { Why::New });
    };
    let annotation = |k: &str| secret.annotations().get(k).cloned().unwrap_or_default();
    // A new CA or spec first: every check below would fail too, and the reason should say what
    // happened.
    if annotation(ISSUER_FINGERPRINT) != ca.fingerprint {
        return Err(Why::IssuerChanged);
    }
    if annotation(SPEC_HASH) != spec_hash(c) {
        return Err(Why::SpecChanged);
    }
    let sign = check_pair(secret, "tls.crt", "tls.key", ca, true).map_err(Why::SecretInvalid)?;
    let enc = match c.spec.pair {
        Pair::Tlcp => {
            let enc = check_pair(secret, "enc.crt", "enc.key", ca, false).map_err(Why::SecretInvalid)?;
            if enc.subject_der != sign.subject_der {
                return Err(Why::SecretInvalid("enc.crt and tls.crt name different subjects".into()));
            }
            Some(enc)
        }
        Pair::Single => None,
    };
    if field(secret, "ca.crt").as_deref() != Some(ca.root_pem.as_str()) {
        return Err(Why::SecretInvalid("ca.crt is not the issuer's CA".into()));
    }
    let capped = sign.not_after >= ca.cert.not_after;
    let renewal = renewal_time(sign.not_before, sign.not_after, renew_before, capped);
    if !capped && now >= renewal {
        return Err(Why::RenewalDue);
    }
    Ok(Current {
        not_before: sign.not_before,
        not_after: sign.not_after,
        renewal_time: renewal,
        serial: sign.serial_hex,
        enc_serial: enc.map(|e| e.serial_hex),
        revision: annotation(REVISION).parse().unwrap_or(0),
        issued_because: annotation(ISSUED_BECAUSE),
    })
}

/// The revision the Secret says it holds (0 when there is none).
pub fn secret_revision(secret: Option<&Secret>) -> i64 {
    secret.and_then(|s| s.annotations().get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Issues the certificate (both halves of a TLCP pair, always together) and builds its Secret.
pub fn issue(
    store: &dyn KeyStore,
    c: &SmCertificate,
    ca: &Ca,
    (revision, why): (i64, &Why),
    renew_before: SignedDuration,
    now: Timestamp,
) -> Result<Issued, String> {
    let spec = &c.spec;
    let lifetime = spec.lifetime()?;
    // Whole seconds: X.509 times have no fractions, and the status should match the certificate.
    let not_before = Timestamp::from_second(now.as_second()).map_err(|e| e.to_string())?;
    let not_after = not_before.saturating_add(lifetime).map_err(|e| e.to_string())?.min(ca.cert.not_after);
    if not_after <= not_before {
        return Err("the issuer's CA expires before the certificate could be valid".into());
    }
    let ip_addresses = spec
        .ip_addresses
        .iter()
        .map(|ip| ip.parse::<IpAddr>().map_err(|_| format!("spec.ipAddresses: {ip} is not an IP address")))
        .collect::<Result<Vec<_>, _>>()?;
    let (server, client) = spec.usages();
    let subject = Name {
        common_name: spec
            .common_name
            .clone()
            .or_else(|| spec.dns_names.first().cloned())
            .or_else(|| spec.ip_addresses.first().cloned())
            .unwrap_or_default(),
        organization: spec.organization.clone(),
    };
    let one = |profile: Profile| -> Result<(cert::Certificate, Sm2Key), String> {
        let key = store.generate().map_err(|e| e.to_string())?;
        let request = Request {
            subject: subject.clone(),
            dns_names: spec.dns_names.clone(),
            ip_addresses: ip_addresses.clone(),
            not_before,
            not_after,
            profile,
            serial: random_serial().map_err(|e| e.to_string())?,
        };
        let issued =
            cert::issue(store, &request, &key.public_sec1(), Some(ca.issuer()), None).map_err(|e| e.to_string())?;
        Ok((issued, key))
    };
    let (sign, sign_key) = one(Profile::Sign { server, client })?;
    let mut data = BTreeMap::from([
        ("tls.crt".to_string(), sign.pem() + &ca.chain_pem),
        ("tls.key".to_string(), sign_key.to_pkcs8_pem().map_err(|e| e.to_string())?),
        ("ca.crt".to_string(), ca.root_pem.clone()),
    ]);
    let mut enc_serial = None;
    if spec.pair == Pair::Tlcp {
        // keyAgreement too: ECDHE suites use the enc key for the key exchange.
        let (enc, enc_key) = one(Profile::Enc { server, client, key_agreement: true })?;
        data.insert("enc.crt".into(), enc.pem());
        data.insert("enc.key".into(), enc_key.to_pkcs8_pem().map_err(|e| e.to_string())?);
        enc_serial = Some(enc.serial_hex);
    }
    let name = c.name_any();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(spec.secret_name.clone()),
            namespace: c.namespace(),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (CERTIFICATE_LABEL.into(), name),
            ])),
            annotations: Some(BTreeMap::from([
                (ISSUER_FINGERPRINT.into(), ca.fingerprint.clone()),
                (SPEC_HASH.into(), spec_hash(c)),
                (REVISION.into(), revision.to_string()),
                (ISSUED_BECAUSE.into(), why.describe()),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        ..Default::default()
    };
    Ok(Issued {
        secret,
        current: Current {
            not_before,
            not_after,
            renewal_time: renewal_time(not_before, not_after, renew_before, not_after >= ca.cert.not_after),
            serial: sign.serial_hex,
            enc_serial,
            revision,
            issued_because: why.describe(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ca, keystore::SoftwareKeyStore};

    fn certificate(pair: &str) -> SmCertificate {
        let mut c = SmCertificate::new(
            "portal",
            serde_json::from_value(serde_json::json!({
                "issuerRef": {"name": "ca"}, "commonName": "portal.bigdata.gov.cn",
                "dnsNames": ["portal.bigdata.gov.cn"], "ipAddresses": ["10.20.0.5"],
                "usages": ["server", "client"], "duration": "24h", "secretName": "portal-tls", "pair": pair
            }))
            .expect("spec"),
        );
        c.metadata.namespace = Some("bigdata-prod".into());
        c
    }

    fn a_ca(now: Timestamp) -> Ca {
        let name = Name { common_name: "CA".into(), organization: None };
        let (crt, key) = ca::self_signed(&SoftwareKeyStore, name, SignedDuration::from_hours(100), now).expect("root");
        let data =
            BTreeMap::from([("tls.crt".to_string(), crt.into_bytes()), ("tls.key".to_string(), key.into_bytes())]);
        ca::load(&data, now).expect("ca")
    }

    #[test]
    fn an_issued_tlcp_secret_inspects_clean_until_renewal_and_catches_changes() {
        let now = Timestamp::now();
        let ca = a_ca(now);
        let mut c = certificate("TLCP");
        let rb = SignedDuration::from_hours(8);
        let issued = issue(&SoftwareKeyStore, &c, &ca, (1, &Why::New), rb, now).expect("issue");
        let secret = issued.secret;
        let keys: Vec<&String> = secret.data.as_ref().map(|d| d.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["ca.crt", "enc.crt", "enc.key", "tls.crt", "tls.key"]);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let current = inspect(Some(&secret), &c, &ca, rb, now).expect("clean");
        assert_eq!(current, issued.current);
        assert_eq!(current.not_after.duration_since(current.not_before), SignedDuration::from_hours(24));
        assert_eq!(current.renewal_time, current.not_after - rb);

        assert_eq!(inspect(Some(&secret), &c, &ca, rb, current.renewal_time), Err(Why::RenewalDue));
        assert_eq!(inspect(None, &c, &ca, rb, now), Err(Why::New));
        c.status = Some(crate::api::SmCertificateStatus { revision: Some(1), ..Default::default() });
        assert_eq!(inspect(None, &c, &ca, rb, now), Err(Why::SecretMissing));
        assert_eq!(inspect(Some(&secret), &c, &a_ca(now), rb, now), Err(Why::IssuerChanged), "another CA");

        // Swap the enc key for the sign key: caught.
        let mut swapped = secret.clone();
        if let Some(d) = swapped.data.as_mut() {
            let sign_key = d.get("tls.key").cloned().expect("tls.key");
            d.insert("enc.key".into(), sign_key);
        }
        let why = inspect(Some(&swapped), &c, &ca, rb, now);
        assert_eq!(why, Err(Why::SecretInvalid("enc.crt does not match its key".into())));

        let mut changed = c.clone();
        changed.spec.dns_names.push("www.bigdata.gov.cn".into());
        assert_eq!(inspect(Some(&secret), &changed, &ca, rb, now), Err(Why::SpecChanged));
        changed = c.clone();
        changed.spec.renew_before = Some("1h".into());
        assert!(inspect(Some(&secret), &changed, &ca, rb, now).is_ok(), "renewBefore alone needs no new certificate");
    }

    #[test]
    fn a_certificate_never_outlives_its_ca() {
        let now = Timestamp::now();
        let ca = a_ca(now);
        let mut c = certificate("Single");
        c.spec.duration = Some("1000h".into());
        let issued =
            issue(&SoftwareKeyStore, &c, &ca, (1, &Why::New), SignedDuration::from_hours(300), now).expect("issue");
        assert_eq!(issued.current.not_after, ca.cert.not_after);
        assert!(issued.current.enc_serial.is_none());
        // A longer life is impossible until the CA rotates: no renewal loop before then.
        assert_eq!(issued.current.renewal_time, issued.current.not_after);
        let late = issued.current.not_after - SignedDuration::from_mins(1);
        assert!(inspect(Some(&issued.secret), &c, &ca, SignedDuration::from_hours(300), late).is_ok());
    }

    #[test]
    fn renewal_never_comes_sooner_than_ten_seconds_after_issuance() {
        let t0 = Timestamp::from_second(1_800_000_000).expect("time");
        let t1 = t0 + SignedDuration::from_mins(1);
        let almost = SignedDuration::from_millis(59_900);
        assert_eq!(renewal_time(t0, t1, almost, false), t0 + SignedDuration::from_secs(10));
        assert_eq!(renewal_time(t0, t1, SignedDuration::from_secs(45), false), t0 + SignedDuration::from_secs(15));
    }
}
