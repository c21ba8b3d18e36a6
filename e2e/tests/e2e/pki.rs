//! 国密 certificates, checked by implementations that are not ours: the Tongsuo command-line
//! tool (built by hack/build-tongsuo.sh) and the pure-Python gmssl package.

use std::path::Path;

use zhengyun::pki::{
    cert::{self, Issuer, Name, Profile, Request},
    keystore::{KeyStore, SoftwareKeyStore},
};
use zhengyun_e2e::{gmssl_verifies, tongsuo, workdir};

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    p.display().to_string()
}

#[test]
fn pki_a_tlcp_pair_verifies_with_tongsuo_and_its_signatures_with_gmssl() {
    let store = SoftwareKeyStore;
    let dir = workdir("pki");
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let ca_name = Name { common_name: "市政务云 SM2 根 CA".into(), organization: Some("zhengyun".into()) };
    let ca_key = store.generate().expect("CA key");
    let ca_public = ca_key.public_sec1();
    let ca = cert::issue(
        &store,
        &Request {
            subject: ca_name.clone(),
            dns_names: vec![],
            ip_addresses: vec![],
            not_before: now - day,
            not_after: now + day * 365,
            profile: Profile::Ca { path_len: Some(0) },
            serial: [7; 16],
        },
        &ca_public,
        None,
        Some(&ca_key),
    )
    .expect("CA");
    let leaf = |profile: Profile, serial: u8| {
        let key = store.generate().expect("key");
        let c = cert::issue(
            &store,
            &Request {
                subject: Name {
                    common_name: "portal.bigdata.gov.cn".into(), organization: Some("市大数据局".into())
                },
                dns_names: vec!["portal.bigdata.gov.cn".into()],
                ip_addresses: vec!["10.20.0.5".parse().expect("ip")],
                not_before: now - day,
                not_after: now + day * 90,
                profile,
                serial: [serial; 16],
            },
            &key.public_sec1(),
            Some(Issuer { subject_der: &cert::name_der(&ca_name), key_id: &cert::key_id(&ca_public), key: &ca_key }),
            None,
        )
        .expect("leaf");
        (key, c)
    };
    let (sign_key, sign) = leaf(Profile::Sign { server: true, client: true }, 1);
    let (_enc_key, enc) = leaf(Profile::Enc { server: true, client: true, key_agreement: true }, 2);
    let ca_pem = write(&dir, "ca.crt", &ca.pem());
    let sign_pem = write(&dir, "sign.crt", &sign.pem());
    let enc_pem = write(&dir, "enc.crt", &enc.pem());
    let sign_key_pem = write(&dir, "sign.key", &sign_key.to_pkcs8_pem().expect("pem"));

    // Tongsuo verifies the chain of both certificates...
    let (ok, out) = tongsuo(&["verify", "-CAfile", &ca_pem, &sign_pem, &enc_pem]);
    assert!(ok && out.contains("sign.crt: OK") && out.contains("enc.crt: OK"), "tongsuo verify:\n{out}");
    // ...reads the SM2 profile we meant...
    let (ok, text) = tongsuo(&["x509", "-in", &sign_pem, "-noout", "-text"]);
    assert!(ok, "{text}");
    for want in [
        "SM2-with-SM3",
        "Digital Signature",
        "DNS:portal.bigdata.gov.cn",
        "IP Address:10.20.0.5",
        "CA:FALSE",
        "TLS Web Server Authentication",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(want), "sign certificate lacks {want:?}:\n{text}");
    }
    let (_, enc_text) = tongsuo(&["x509", "-in", &enc_pem, "-noout", "-text"]);
    assert!(enc_text.contains("Key Encipherment, Data Encipherment, Key Agreement"), "{enc_text}");
    let (_, ca_text) = tongsuo(&["x509", "-in", &ca_pem, "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE, pathlen:0") && ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
    // ...finds that the PKCS#8 key is the certificate's key...
    let (_, from_key) = tongsuo(&["pkey", "-in", &sign_key_pem, "-pubout"]);
    let (_, from_cert) = tongsuo(&["x509", "-in", &sign_pem, "-noout", "-pubkey"]);
    assert!(from_key.contains("BEGIN PUBLIC KEY") && from_key == from_cert, "key and certificate disagree");
    // ...and refuses a certificate whose signature was tampered with.
    let mut bad = sign.der.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x01;
    let bad_pem = write(&dir, "bad.crt", &cert::pem("CERTIFICATE", &bad));
    let (ok, out) = tongsuo(&["verify", "-CAfile", &ca_pem, &bad_pem]);
    assert!(!ok || !out.contains("bad.crt: OK"), "a tampered certificate verified:\n{out}");

    // gmssl, a separate implementation, checks the signatures over the TBS bytes.
    assert!(gmssl_verifies(&ca_public, &sign.tbs, &sign.signature));
    assert!(gmssl_verifies(&ca_public, &ca.tbs, &ca.signature));
    let mut tbs = sign.tbs.clone();
    tbs[10] ^= 0x01;
    assert!(!gmssl_verifies(&ca_public, &tbs, &sign.signature), "gmssl accepted a changed TBS");
}
