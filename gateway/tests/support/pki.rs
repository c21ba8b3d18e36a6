//! Certificates from our own PKI for the gateway's tests and benchmark, written as mounted
//! Secrets are.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use jiff::{SignedDuration, Timestamp};
use zhengyun_pki::{
    ca,
    cert::{self, Name, Profile, Request},
    keystore::{KeyStore, SoftwareKeyStore},
};

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// A root CA and what it issues, written as Secrets are mounted.
pub struct Pki {
    pub dir: PathBuf,
    ca: ca::Ca,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let (crt, key) = ca::self_signed(
            &SoftwareKeyStore,
            Name { common_name: name.into(), organization: None },
            SignedDuration::from_hours(24),
            Timestamp::now(),
        )
        .expect("root");
        write(&dir.join("ca.crt"), &crt);
        let data =
            BTreeMap::from([("tls.crt".to_string(), crt.into_bytes()), ("tls.key".to_string(), key.into_bytes())]);
        let ca = ca::load(&data, Timestamp::now()).expect("load root");
        Pki { dir: dir.to_path_buf(), ca }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn one(&self, cn: &str, profile: Profile) -> (String, String) {
        let key = SoftwareKeyStore.generate().expect("key");
        let now = Timestamp::from_second(Timestamp::now().as_second() - 60).expect("now");
        let req = Request {
            subject: Name { common_name: cn.into(), organization: Some("zhengyun tests".into()) },
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
            not_before: now,
            not_after: now.saturating_add(SignedDuration::from_hours(12)).expect("later"),
            profile,
            serial: ca::random_serial().expect("serial"),
        };
        let c = cert::issue(&SoftwareKeyStore, &req, &key.public_sec1(), Some(self.ca.issuer()), None).expect("issue");
        (c.pem(), key.to_pkcs8_pem().expect("pem"))
    }

    /// A TLCP pair in `dir` (tls.crt, tls.key, enc.crt, enc.key, ca.crt), as an SmCertificate's
    /// Secret holds it; `server` or client usages. Returns the sign certificate's PEM.
    pub fn pair(&self, dir: &Path, cn: &str, server: bool) -> String {
        let (sign, sign_key) = self.one(cn, Profile::Sign { server, client: !server });
        let (enc, enc_key) = self.one(cn, Profile::Enc { server, client: !server, key_agreement: true });
        // Replaced as kubelet does it: new files, then one rename, so a reader never sees a mix.
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        write(&tmp.join("tls.crt"), &(sign.clone() + &self.ca.chain_pem));
        write(&tmp.join("tls.key"), &sign_key);
        write(&tmp.join("enc.crt"), &enc);
        write(&tmp.join("enc.key"), &enc_key);
        write(&tmp.join("ca.crt"), &self.ca.root_pem);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).expect("rename");
        sign
    }
}
