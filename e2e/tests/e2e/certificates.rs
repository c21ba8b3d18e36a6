//! 国密 certificates as Kubernetes resources: issuers and SmCertificates reconciled by a real
//! operator against the real control plane, the Secrets they produce checked by the Tongsuo
//! command-line tool and the pure-Python gmssl package, not only by our own code.

use std::{collections::BTreeMap, path::Path, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use zhengyun::{
    api::{SmCertificate, SmClusterIssuer, SmIssuer},
    pki::{parse, sm::hex},
};
use zhengyun_e2e::{
    Operator, SECONDS, SYSTEM_NAMESPACE, apply_tenant, client, gmssl_verifies, run_tool, tenant, tongsuo, wait_for,
    wait_ready, workdir,
};

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.expect("get namespace").is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        api.create(&PostParams::default(), &ns).await.expect("create namespace");
    }
}

/// Server-Side Apply as a person would with `kubectl apply --server-side`.
async fn apply<K>(api: &Api<K>, name: &str, body: serde_json::Value) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("e2e-admin").force(), &Patch::Apply(&body)).await
}

fn cert_body(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmCertificate", "metadata": {"name": name}, "spec": spec})
}

fn ready(c: &SmCertificate) -> Option<(String, String, String)> {
    let cond = c.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((cond.status.clone(), cond.reason.clone(), cond.message.clone()))
}

/// Waits for the certificate to be Ready at a revision above `after`.
async fn wait_issued(api: &Api<SmCertificate>, name: &str, after: i64) -> SmCertificate {
    wait_for(&format!("certificate {name} issued after revision {after}"), SECONDS, || async {
        let c = api.get_opt(name).await.ok()??;
        let revision = c.status.as_ref()?.revision?;
        (ready(&c)?.0 == "True" && revision > after && c.status.as_ref()?.observed_generation == c.metadata.generation)
            .then_some(c)
    })
    .await
}

async fn wait_reason(api: &Api<SmCertificate>, name: &str, reason: &str) -> String {
    wait_for(&format!("certificate {name} not ready: {reason}"), SECONDS, || async {
        let (status, r, message) = ready(&api.get_opt(name).await.ok()??)?;
        (status == "False" && r == reason).then_some(message)
    })
    .await
}

fn field(s: &Secret, key: &str) -> String {
    s.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).into_owned()).unwrap_or_default()
}

/// Writes the Secret's fields as files for the command-line tools.
fn files(s: &Secret, dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ["tls.crt", "tls.key", "enc.crt", "enc.key", "ca.crt"] {
        let text = field(s, key);
        if !text.is_empty() {
            let p = dir.join(key);
            std::fs::write(&p, text).expect("write");
            out.insert(key.to_string(), p.display().to_string());
        }
    }
    out
}

fn leaf(s: &Secret, key: &str) -> parse::Parsed {
    let blocks = parse::pem_blocks(&field(s, key), "CERTIFICATE");
    parse::certificate(blocks.first().expect("a certificate")).expect("parses")
}

async fn issuer_ready<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    wait_for(&format!("issuer {name} ready"), SECONDS, || async {
        let v = serde_json::to_value(api.get_opt(name).await.ok()??).ok()?;
        let ready = v["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then(|| v["status"]["fingerprint"].as_str().map(String::from)).flatten()
    })
    .await
}

async fn issuer_not_ready<K>(api: &Api<K>, name: &str, reason: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    wait_for(&format!("issuer {name} not ready: {reason}"), SECONDS, || async {
        let v = serde_json::to_value(api.get_opt(name).await.ok()??).ok()?;
        let c = v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        (c["status"] == "False" && c["reason"] == reason).then(|| c["message"].as_str().unwrap_or_default().to_string())
    })
    .await
}

/// Applies a self-signed SmIssuer.
async fn self_signed_issuer_pending(issuers: &Api<SmIssuer>, name: &str, self_signed: serde_json::Value) {
    let body = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmIssuer", "metadata": {"name": name},
                      "spec": {"selfSigned": self_signed}});
    apply(issuers, name, body).await.expect("issuer");
}

/// Applies a self-signed SmIssuer and waits until it is Ready: its fingerprint.
async fn self_signed_issuer(issuers: &Api<SmIssuer>, name: &str, self_signed: serde_json::Value) -> String {
    self_signed_issuer_pending(issuers, name, self_signed).await;
    issuer_ready(issuers, name).await
}

#[tokio::test]
async fn certificates_tlcp_pairs_from_a_self_signed_root_verify_with_tongsuo_and_gmssl() {
    let client = client().await;
    let op = Operator::start("lease-certs-issue", "op-certs-issue").await;
    let ns = "pki-issue";
    namespace(&client, ns).await;
    let issuers: Api<SmIssuer> = Api::namespaced(client.clone(), ns);
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let fingerprint = self_signed_issuer(
        &issuers,
        "root",
        json!({"commonName": "市政务云 SM2 根 CA", "organization": "市大数据局", "secretName": "root-ca"}),
    )
    .await;
    let issuer = issuers.get("root").await.expect("issuer");
    let status = issuer.status.expect("status");
    assert_eq!(status.subject.as_deref(), Some("O=市大数据局, CN=市政务云 SM2 根 CA"));
    assert!(status.not_after.is_some() && fingerprint.len() == 64);

    apply(
        &certs,
        "portal",
        cert_body(
            "portal",
            json!({"issuerRef": {"name": "root"}, "commonName": "portal.bigdata.gov.cn", "organization": "市大数据局",
                   "dnsNames": ["portal.bigdata.gov.cn", "*.portal.bigdata.gov.cn"], "ipAddresses": ["10.20.0.5"],
                   "usages": ["server", "client"], "secretName": "portal-tls", "pair": "TLCP"}),
        ),
    )
    .await
    .expect("certificate");
    let c = wait_issued(&certs, "portal", 0).await;
    let st = c.status.clone().expect("status");
    let secret = secrets.get("portal-tls").await.expect("the Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"), "ordinary tools read the sign pair");
    let keys: Vec<String> = secret.data.as_ref().map(|d| d.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(keys, ["ca.crt", "enc.crt", "enc.key", "tls.crt", "tls.key"]);
    for k in ["tls.key", "enc.key"] {
        assert!(field(&secret, k).starts_with("-----BEGIN PRIVATE KEY-----"), "{k} is PKCS#8 PEM");
    }

    let dir = workdir("certs-issue");
    let f = files(&secret, &dir);
    // Tongsuo verifies both certificates against the root...
    let (ok, out) = tongsuo(&["verify", "-CAfile", &f["ca.crt"], &f["tls.crt"], &f["enc.crt"]]);
    assert!(ok && out.contains("tls.crt: OK") && out.contains("enc.crt: OK"), "tongsuo verify:\n{out}");
    // ...reads the profiles we asked for...
    let (_, sign_text) = tongsuo(&["x509", "-in", &f["tls.crt"], "-noout", "-text"]);
    let (_, enc_text) = tongsuo(&["x509", "-in", &f["enc.crt"], "-noout", "-text"]);
    for text in [&sign_text, &enc_text] {
        for want in [
            "SM2-with-SM3",
            "DNS:portal.bigdata.gov.cn, DNS:*.portal.bigdata.gov.cn, IP Address:10.20.0.5",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CA:FALSE",
        ] {
            assert!(text.contains(want), "lacks {want:?}:\n{text}");
        }
    }
    assert!(sign_text.contains("Digital Signature") && !sign_text.contains("Key Encipherment"), "{sign_text}");
    assert!(enc_text.contains("Key Encipherment, Data Encipherment, Key Agreement"), "{enc_text}");
    let subject = |t: &str| t.lines().find(|l| l.trim_start().starts_with("Subject:")).map(str::to_string);
    assert_eq!(subject(&sign_text), subject(&enc_text), "sign and enc name the same subject");
    // ...matches each key to its certificate...
    for (crt, key) in [("tls.crt", "tls.key"), ("enc.crt", "enc.key")] {
        let (_, from_key) = tongsuo(&["pkey", "-in", &f[key], "-pubout"]);
        let (_, from_cert) = tongsuo(&["x509", "-in", &f[crt], "-noout", "-pubkey"]);
        assert!(from_key.contains("BEGIN PUBLIC KEY") && from_key == from_cert, "{key} is not {crt}'s key");
    }
    // ...and reports the serial numbers the status reports.
    let (_, serial) = tongsuo(&["x509", "-in", &f["tls.crt"], "-noout", "-serial"]);
    assert_eq!(serial.trim().strip_prefix("serial=").map(str::to_lowercase), st.serial_number.clone());
    let (_, enc_serial) = tongsuo(&["x509", "-in", &f["enc.crt"], "-noout", "-serial"]);
    assert_eq!(enc_serial.trim().strip_prefix("serial=").map(str::to_lowercase), st.enc_serial_number.clone());
    assert_eq!(st.revision, Some(1));
    let (nb, na) = (leaf(&secret, "tls.crt").not_before, leaf(&secret, "tls.crt").not_after);
    assert_eq!(
        (st.not_before.as_deref(), st.not_after.as_deref()),
        (Some(nb.to_string().as_str()), Some(na.to_string().as_str()))
    );
    assert_eq!(na.duration_since(nb), jiff::SignedDuration::from_hours(2160), "the default duration is 90 days");

    // gmssl, a separate implementation, checks both signatures with the root's key.
    let root = secrets.get("root-ca").await.expect("root Secret");
    let root_public = leaf(&root, "tls.crt").sm2_public.expect("SM2 root key");
    for key in ["tls.crt", "enc.crt"] {
        let p = leaf(&secret, key);
        assert!(gmssl_verifies(&root_public, &p.tbs, &p.signature), "gmssl refused {key}");
    }

    // The pair works for TLCP: a Tongsuo server presents it, and Tongsuo clients complete the
    // handshake verifying it against ca.crt, with ECC (enc key decrypts) and with ECDHE (mutual,
    // the same pair as client certificate: usages server and client, enc keyAgreement).
    let port = zhengyun_e2e::free_port().to_string();
    let bin = std::env::var("ZHENGYUN_TONGSUO").expect("ZHENGYUN_TONGSUO");
    let pair = |args: &mut Vec<String>| {
        for (flag, key) in
            [("-sign_cert", "tls.crt"), ("-sign_key", "tls.key"), ("-enc_cert", "enc.crt"), ("-enc_key", "enc.key")]
        {
            args.extend([flag.to_string(), f[key].clone()]);
        }
    };
    let mut server_args: Vec<String> = [
        "s_server",
        "-accept",
        &format!("127.0.0.1:{port}"),
        "-enable_ntls",
        "-www",
        "-Verify",
        "1",
        "-CAfile",
        &f["ca.crt"],
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    pair(&mut server_args);
    let mut server = std::process::Command::new(&bin)
        .args(&server_args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tongsuo s_server");
    wait_for("the TLCP server", SECONDS, || async {
        tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.ok().map(|_| ())
    })
    .await;
    for cipher in ["ECC-SM2-SM4-GCM-SM3", "ECDHE-SM2-SM4-GCM-SM3"] {
        let mut args: Vec<String> = [
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-enable_ntls",
            "-ntls",
            "-cipher",
            cipher,
            "-CAfile",
            &f["ca.crt"],
            "-verify_return_error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        pair(&mut args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, out) = run_tool(&bin, &args, Some("GET / HTTP/1.0\r\n\r\n"));
        assert!(
            out.contains(&format!("New, NTLSv1.1, Cipher is {cipher}")) && out.contains("Verify return code: 0 (ok)"),
            "TLCP handshake with {cipher}:\n{out}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();

    // Each issuance leaves an Event on the certificate.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let issued = wait_for("an Issued event", SECONDS, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("Issued")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("portal")
        })
    })
    .await;
    assert!(issued.note.unwrap_or_default().contains("revision 1 issued (first issuance)"));

    // SREs see the certificate's expiry and state.
    let series = format!("zhengyun_certificate_expiry_seconds{{name=\"portal\",namespace=\"{ns}\"}}");
    let expiry = wait_for("the expiry metric", SECONDS, || async { op.metric(&series).await }).await;
    assert!((expiry - 2160.0 * 3600.0).abs() < 120.0, "expiry {expiry}");
    assert!(op.metric("zhengyun_certificates{state=\"Ready\"}").await.unwrap_or(0.0) >= 1.0);
    assert!(op.metric("zhengyun_certificate_issuances_total{reason=\"new\"}").await.unwrap_or(0.0) >= 1.0);
    let renewal = format!("zhengyun_certificate_renewal_seconds{{name=\"portal\",namespace=\"{ns}\"}}");
    let to_renewal = op.metric(&renewal).await.expect("renewal metric");
    assert!((expiry - to_renewal - 720.0 * 3600.0).abs() < 5.0, "renewal a third of 90 days before expiry");
    let issuer_series = format!("zhengyun_issuer_expiry_seconds{{kind=\"SmIssuer\",name=\"root\",namespace=\"{ns}\"}}");
    let root_left = op.metric(&issuer_series).await.expect("issuer expiry metric");
    assert!((root_left - 87600.0 * 3600.0).abs() < 300.0, "a ten-year root: {root_left}");
    let (ok, out) = run_tool("promtool", &["check", "metrics"], Some(&op.metrics().await));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(
        !log.contains("BEGIN PRIVATE KEY") && !log.contains(&field(&secret, "tls.key")[30..60]),
        "a key was logged"
    );
}

#[tokio::test]
async fn certificates_renew_and_repair_their_secrets() {
    let client = client().await;
    let op = Operator::start("lease-certs-renew", "op-certs-renew").await;
    let ns = "pki-renew";
    namespace(&client, ns).await;
    let issuers: Api<SmIssuer> = Api::namespaced(client.clone(), ns);
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    self_signed_issuer(&issuers, "root", json!({"commonName": "renewal test root", "secretName": "root-ca"})).await;

    // A one-minute certificate renewed 45 s before expiry: a new one every 15 s, sign and enc together.
    let spec = json!({"issuerRef": {"name": "root"}, "dnsNames": ["short.pki-renew.svc"], "duration": "1m",
                      "renewBefore": "45s", "secretName": "short-tls", "pair": "TLCP"});
    apply(&certs, "short", cert_body("short", spec)).await.expect("certificate");
    let first = wait_issued(&certs, "short", 0).await;
    let before = secrets.get("short-tls").await.expect("secret");
    let renewed = wait_for("a renewal", Duration::from_secs(60), || async {
        let c = certs.get_opt("short").await.ok()??;
        (c.status.as_ref()?.revision? >= 2).then_some(c)
    })
    .await;
    let after = secrets.get("short-tls").await.expect("secret");
    let (s0, s1) = (first.status.expect("status"), renewed.status.clone().expect("status"));
    assert_ne!(s0.serial_number, s1.serial_number);
    assert_ne!(s0.enc_serial_number, s1.enc_serial_number, "the enc certificate rotates with the sign certificate");
    assert_ne!(field(&before, "tls.key"), field(&after, "tls.key"), "a renewal makes a new key");
    assert_ne!(field(&before, "enc.key"), field(&after, "enc.key"));
    let issuing = s1.conditions.iter().find(|c| c.type_ == "Issuing").expect("Issuing condition");
    assert!(issuing.message.contains("renewal time"), "{issuing:?}");
    assert_eq!(leaf(&after, "tls.crt").not_before, leaf(&after, "enc.crt").not_before);
    certs.delete("short", &DeleteParams::default()).await.expect("delete");

    // A steady certificate: its Secret deleted, tampered with or its spec changed → re-issued.
    let steady =
        json!({"issuerRef": {"name": "root"}, "dnsNames": ["steady.pki-renew.svc"], "secretName": "steady-tls"});
    apply(&certs, "steady", cert_body("steady", steady.clone())).await.expect("certificate");
    let c1 = wait_issued(&certs, "steady", 0).await;
    secrets.delete("steady-tls", &DeleteParams::default()).await.expect("delete the Secret");
    let c2 = wait_issued(&certs, "steady", 1).await;
    assert!(secrets.get_opt("steady-tls").await.expect("get").is_some(), "the Secret is back");
    assert_ne!(
        c1.status.as_ref().and_then(|s| s.serial_number.clone()),
        c2.status.as_ref().and_then(|s| s.serial_number.clone())
    );
    let issuing = |c: &SmCertificate| {
        c.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Issuing")).map(|c| c.message.clone())
    };
    assert!(issuing(&c2).unwrap_or_default().contains("Secret was missing"), "{:?}", issuing(&c2));

    // Someone swaps the key for one of their own: the certificate no longer matches it.
    let other = secrets.get("short-tls").await.expect("another Secret");
    let patch = json!({"data": {"tls.key": k8s_openapi::ByteString(field(&other, "tls.key").into_bytes())}});
    secrets.patch("steady-tls", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("tamper");
    let c3 = wait_issued(&certs, "steady", 2).await;
    assert!(issuing(&c3).unwrap_or_default().contains("does not match its key"), "{:?}", issuing(&c3));

    // A new DNS name and a TLCP pair: a new certificate that Tongsuo reads.
    let mut changed = steady.clone();
    changed["dnsNames"] = json!(["steady.pki-renew.svc", "www.steady.gov.cn"]);
    changed["pair"] = json!("TLCP");
    apply(&certs, "steady", cert_body("steady", changed)).await.expect("change");
    let c4 = wait_issued(&certs, "steady", 3).await;
    assert!(issuing(&c4).unwrap_or_default().contains("spec changed"), "{:?}", issuing(&c4));
    let secret = secrets.get("steady-tls").await.expect("secret");
    let f = files(&secret, &workdir("certs-renew"));
    let (ok, out) = tongsuo(&["verify", "-CAfile", &f["ca.crt"], &f["tls.crt"], &f["enc.crt"]]);
    assert!(ok && out.contains("enc.crt: OK"), "{out}");
    let (_, text) = tongsuo(&["x509", "-in", &f["tls.crt"], "-noout", "-ext", "subjectAltName"]);
    assert!(text.contains("DNS:www.steady.gov.cn"), "{text}");
    // Renewing earlier needs no new certificate.
    let mut earlier = json!({"issuerRef": {"name": "root"}, "dnsNames": ["steady.pki-renew.svc", "www.steady.gov.cn"],
                             "secretName": "steady-tls", "pair": "TLCP"});
    earlier["renewBefore"] = json!("700h");
    apply(&certs, "steady", cert_body("steady", earlier)).await.expect("renewBefore");
    let c5 = wait_for("renewBefore observed", SECONDS, || async {
        let c = certs.get_opt("steady").await.ok()??;
        (c.status.as_ref()?.observed_generation == c.metadata.generation).then_some(c)
    })
    .await;
    assert_eq!(c5.status.as_ref().and_then(|s| s.revision), Some(4));
    let renewal: jiff::Timestamp =
        c5.status.as_ref().and_then(|s| s.renewal_time.clone()).expect("renewal").parse().expect("time");
    let not_after: jiff::Timestamp =
        c5.status.as_ref().and_then(|s| s.not_after.clone()).expect("notAfter").parse().expect("time");
    assert_eq!(not_after.duration_since(renewal), jiff::SignedDuration::from_hours(700));

    for reason in ["renewal_due", "secret_missing", "secret_invalid", "spec_changed"] {
        let series = format!("zhengyun_certificate_issuances_total{{reason=\"{reason}\"}}");
        assert!(op.metric(&series).await.unwrap_or(0.0) >= 1.0, "{series}");
    }
}

fn tongsuo_ca(dir: &Path, name: &str, curve: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key")).display().to_string();
    let crt = dir.join(format!("{name}.crt")).display().to_string();
    let cnf = dir.join("req.cnf");
    std::fs::write(&cnf, "[req]\ndistinguished_name = dn\n[dn]\n").expect("cnf");
    let (ok, out) =
        tongsuo(&["genpkey", "-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}"), "-out", &key]);
    assert!(ok, "{out}");
    let digest = if curve == "SM2" { "-sm3" } else { "-sha256" };
    let (ok, out) = tongsuo(&[
        "req",
        "-config",
        &cnf.display().to_string(),
        "-new",
        "-x509",
        "-key",
        &key,
        digest,
        "-subj",
        &format!("/C=CN/O=Provincial CA/CN={name}"),
        "-days",
        "365",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        &crt,
    ]);
    assert!(ok, "{out}");
    (std::fs::read_to_string(&crt).expect("crt"), std::fs::read_to_string(&key).expect("key"))
}

fn ca_secret(name: &str, crt: &str, key: &str) -> serde_json::Value {
    let b = |s: &str| serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).expect("base64");
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": b(crt), "tls.key": b(key)}})
}

#[tokio::test]
async fn certificates_follow_their_ca_when_it_rotates() {
    let client = client().await;
    let _op = Operator::start("lease-certs-rotate", "op-certs-rotate").await;
    let dir = workdir("certs-rotate");
    let ns = "pki-rotate";
    namespace(&client, ns).await;
    let system: Api<Secret> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let cluster_issuers: Api<SmClusterIssuer> = Api::all(client.clone());
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);

    // The provincial CA's intermediate, made by Tongsuo (another implementation's key encoding,
    // name encoding and key identifiers), handed over in a Secret.
    let (crt1, key1) = tongsuo_ca(&dir, "provincial-2026", "SM2");
    apply(&system, "provincial-ca", ca_secret("provincial-ca", &crt1, &key1)).await.expect("CA Secret");
    apply(
        &cluster_issuers,
        "provincial",
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmClusterIssuer", "metadata": {"name": "provincial"},
               "spec": {"ca": {"secretName": "provincial-ca"}}}),
    )
    .await
    .expect("issuer");
    let fp1 = issuer_ready(&cluster_issuers, "provincial").await;
    apply(
        &certs,
        "gateway",
        cert_body(
            "gateway",
            json!({"issuerRef": {"name": "provincial", "kind": "SmClusterIssuer"}, "dnsNames": ["gw.gov.cn"],
                   "secretName": "gateway-tls", "pair": "TLCP"}),
        ),
    )
    .await
    .expect("certificate");
    wait_issued(&certs, "gateway", 0).await;
    let ca1 = dir.join("provincial-2026.crt").display().to_string();
    let check = |secret: &Secret, ca: &str| {
        let f = files(secret, &dir);
        tongsuo(&["verify", "-CAfile", ca, &f["tls.crt"], &f["enc.crt"]])
    };
    let (ok, out) = check(&secrets.get("gateway-tls").await.expect("secret"), &ca1);
    assert!(ok && out.contains("tls.crt: OK") && out.contains("enc.crt: OK"), "{out}");

    // The province rotates its intermediate: every certificate it signed is re-issued.
    let (crt2, key2) = tongsuo_ca(&dir, "provincial-2027", "SM2");
    apply(&system, "provincial-ca", ca_secret("provincial-ca", &crt2, &key2)).await.expect("rotate");
    let fp2 = wait_for("the issuer's new fingerprint", SECONDS, || async {
        let fp = cluster_issuers.get_opt("provincial").await.ok()??.status?.fingerprint?;
        (fp != fp1).then_some(fp)
    })
    .await;
    assert_ne!(fp1, fp2);
    let c = wait_issued(&certs, "gateway", 1).await;
    let issuing =
        c.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Issuing")).map(|c| c.message.clone());
    assert!(issuing.clone().unwrap_or_default().contains("the issuer's CA changed"), "{issuing:?}");
    let rotated = secrets.get("gateway-tls").await.expect("secret");
    let ca2 = dir.join("provincial-2027.crt").display().to_string();
    let (ok, out) = check(&rotated, &ca2);
    assert!(ok && out.contains("enc.crt: OK"), "verifies with the new CA: {out}");
    let (ok, out) = check(&rotated, &ca1);
    assert!(!ok || !out.contains("tls.crt: OK"), "still verifies with the old CA: {out}");

    // A self-signed root rotates when its Secret is deleted; its certificates follow.
    let issuers: Api<SmIssuer> = Api::namespaced(client.clone(), ns);
    let root1 =
        self_signed_issuer(&issuers, "local", json!({"commonName": "local root", "secretName": "local-root"})).await;
    apply(
        &certs,
        "internal",
        cert_body(
            "internal",
            json!({"issuerRef": {"name": "local"}, "commonName": "internal", "secretName": "internal-tls"}),
        ),
    )
    .await
    .expect("cert");
    wait_issued(&certs, "internal", 0).await;
    secrets.delete("local-root", &DeleteParams::default()).await.expect("delete the root");
    let root2 = wait_for("a new root", SECONDS, || async {
        let fp = issuers.get_opt("local").await.ok()??.status?.fingerprint?;
        (fp != root1).then_some(fp)
    })
    .await;
    wait_issued(&certs, "internal", 1).await;
    let internal = secrets.get("internal-tls").await.expect("secret");
    let root_secret = secrets.get("local-root").await.expect("root");
    assert_eq!(hex(&zhengyun::pki::sm::sm3(&leaf(&root_secret, "tls.crt").der)), root2);
    let f = files(&internal, &dir);
    let (ok, out) = tongsuo(&["verify", "-CAfile", &f["ca.crt"], &f["tls.crt"]]);
    assert!(ok && out.contains("OK"), "{out}");
    assert_eq!(field(&internal, "ca.crt"), field(&root_secret, "tls.crt"), "ca.crt is the new root");
}

#[tokio::test]
async fn certificates_refuse_bad_input_with_clear_errors() {
    let client = client().await;
    let _op = Operator::start("lease-certs-bad", "op-certs-bad").await;
    let dir = workdir("certs-bad");
    let ns = "pki-bad";
    namespace(&client, ns).await;
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    let issuers: Api<SmIssuer> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);

    // The API server refuses malformed specs, naming the field.
    let base = json!({"issuerRef": {"name": "root"}, "dnsNames": ["ok.gov.cn"], "secretName": "x-tls"});
    let refused = |r: Result<SmCertificate, kube::Error>, want: &str| match r {
        Ok(_) => panic!("accepted, expected {want:?}"),
        Err(e) => assert!(e.to_string().contains(want), "expected {want:?} in {e}"),
    };
    let with = |k: &str, v: serde_json::Value| {
        let mut s = base.clone();
        s[k] = v;
        cert_body("bad", s)
    };
    refused(apply(&certs, "bad", with("dnsNames", json!(["Bad_Name.gov.cn"]))).await, "must be a DNS name");
    refused(apply(&certs, "bad", with("dnsNames", json!(["a..b"]))).await, "must be a DNS name");
    refused(apply(&certs, "bad", with("ipAddresses", json!(["10.0.0.300"]))).await, "must be an IPv4 or IPv6 address");
    let mut short = base.clone();
    short["duration"] = json!("1h");
    short["renewBefore"] = json!("2h");
    refused(apply(&certs, "bad", cert_body("bad", short)).await, "spec.renewBefore must be shorter than spec.duration");
    refused(apply(&certs, "bad", with("duration", json!("30s"))).await, "spec.duration must be at least 1m");
    let mut tight = base.clone();
    tight["duration"] = json!("1m");
    tight["renewBefore"] = json!("55s");
    refused(apply(&certs, "bad", cert_body("bad", tight)).await, "by at least 10s");
    let long = "n".repeat(64);
    refused(apply(&certs, &long, cert_body(&long, base.clone())).await, "metadata.name must be at most 63 characters");
    refused(apply(&certs, "bad", with("duration", json!("90d"))).await, "spec.duration");
    refused(apply(&certs, "bad", with("pair", json!("Double"))).await, "spec.pair");
    refused(
        apply(&certs, "bad", cert_body("bad", json!({"issuerRef": {"name": "root"}, "secretName": "x"}))).await,
        "spec.commonName, spec.dnsNames or spec.ipAddresses",
    );
    let both = json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmIssuer", "metadata": {"name": "both"},
                      "spec": {"selfSigned": {"commonName": "x", "secretName": "a"}, "ca": {"secretName": "b"}}});
    match apply(&issuers, "both", both).await {
        Ok(_) => panic!("an issuer with two sources was accepted"),
        Err(e) => assert!(e.to_string().contains("set exactly one of spec.selfSigned"), "{e}"),
    }

    // An unknown issuer: the certificate says so and waits.
    apply(
        &certs,
        "orphan",
        cert_body("orphan", json!({"issuerRef": {"name": "nobody"}, "commonName": "x", "secretName": "orphan-tls"})),
    )
    .await
    .expect("certificate");
    let msg = wait_reason(&certs, "orphan", "IssuerNotFound").await;
    assert!(msg.contains("spec.issuerRef") && msg.contains("nobody"), "{msg}");

    // CA Secrets that cannot sign: a P-256 key, and a certificate for another key.
    let (p256_crt, p256_key) = tongsuo_ca(&dir, "not-sm2", "P-256");
    apply(&secrets, "p256-ca", ca_secret("p256-ca", &p256_crt, &p256_key)).await.expect("secret");
    let (sm2_crt, _) = tongsuo_ca(&dir, "sm2-a", "SM2");
    let (_, other_key) = tongsuo_ca(&dir, "sm2-b", "SM2");
    apply(&secrets, "mismatch-ca", ca_secret("mismatch-ca", &sm2_crt, &other_key)).await.expect("secret");
    for (issuer, secret, want) in [
        ("p256", "p256-ca", "not an SM2 private key"),
        ("mismatch", "mismatch-ca", "does not match tls.key"),
        ("missing", "no-such-secret", "does not exist"),
    ] {
        apply(&issuers, issuer, json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmIssuer", "metadata": {"name": issuer}, "spec": {"ca": {"secretName": secret}}})).await.expect("issuer");
        let reason = if secret == "no-such-secret" { "SecretNotFound" } else { "InvalidCA" };
        let msg = issuer_not_ready(&issuers, issuer, reason).await;
        assert!(msg.contains("spec.ca.secretName") && msg.contains(want), "{issuer}: {msg}");
    }
    apply(
        &certs,
        "from-p256",
        cert_body(
            "from-p256",
            json!({"issuerRef": {"name": "p256"}, "commonName": "x", "secretName": "from-p256-tls"}),
        ),
    )
    .await
    .expect("certificate");
    let msg = wait_reason(&certs, "from-p256", "IssuerNotReady").await;
    assert!(msg.contains("not an SM2 private key"), "{msg}");

    // A Secret the certificate did not make is never overwritten.
    self_signed_issuer(&issuers, "root", json!({"commonName": "root", "secretName": "root-ca"})).await;
    let note = serde_json::to_value(k8s_openapi::ByteString(b"a department's data".to_vec())).expect("base64");
    let mine = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "precious"}, "data": {"note": note}});
    apply(&secrets, "precious", mine).await.expect("secret");
    apply(
        &certs,
        "clash",
        cert_body("clash", json!({"issuerRef": {"name": "root"}, "commonName": "x", "secretName": "precious"})),
    )
    .await
    .expect("certificate");
    let msg = wait_reason(&certs, "clash", "SecretConflict").await;
    assert!(msg.contains("spec.secretName") && msg.contains("precious"), "{msg}");
    // Nor does a self-signed issuer sign with a Secret of that name that it did not make.
    self_signed_issuer_pending(&issuers, "squatter", json!({"commonName": "x", "secretName": "precious"})).await;
    let msg = issuer_not_ready(&issuers, "squatter", "SecretConflict").await;
    assert!(msg.contains("spec.selfSigned.secretName"), "{msg}");
    apply(
        &certs,
        "via-squatter",
        cert_body(
            "via-squatter",
            json!({"issuerRef": {"name": "squatter"}, "commonName": "x", "secretName": "via-squatter-tls"}),
        ),
    )
    .await
    .expect("certificate");
    let msg = wait_reason(&certs, "via-squatter", "IssuerNotReady").await;
    assert!(msg.contains("was not made for this issuer"), "{msg}");
    let kept = secrets.get("precious").await.expect("secret");
    assert_eq!(field(&kept, "note"), "a department's data");
    assert_eq!(kept.data.map(|d| d.len()), Some(1));
}

#[tokio::test]
async fn certificates_tenants_get_theirs_from_their_departments_ca() {
    let client = client().await;
    let _op = Operator::start("lease-certs-tenant", "op-certs-tenant").await;
    let cluster_issuers: Api<SmClusterIssuer> = Api::all(client.clone());
    let mut t = tenant("sjj", &["portal"]);
    let code = t.spec.department.code.clone();
    apply(
        &cluster_issuers,
        "sjj-ca",
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmClusterIssuer", "metadata": {"name": "sjj-ca"},
               "spec": {"selfSigned": {"commonName": "市大数据局 SM2 CA", "secretName": "sjj-ca"}, "department": code}}),
    )
    .await
    .expect("issuer");
    issuer_ready(&cluster_issuers, "sjj-ca").await;
    t.spec.certificates = serde_json::from_value(json!([
        {"name": "portal-tls", "namespace": "portal", "issuerRef": {"kind": "SmClusterIssuer", "name": "sjj-ca"},
         "dnsNames": ["portal.sjj.gov.cn"], "secretName": "portal-tls", "pair": "TLCP"}
    ]))
    .expect("certificates");
    apply_tenant(&client, &t).await;
    wait_ready(&client, "sjj").await;
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), "sjj-portal");
    wait_issued(&certs, "portal-tls", 0).await;
    let secret: Secret = Api::namespaced(client.clone(), "sjj-portal").get("portal-tls").await.expect("secret");
    let f = files(&secret, &workdir("certs-tenant"));
    let (ok, out) = tongsuo(&["verify", "-CAfile", &f["ca.crt"], &f["tls.crt"], &f["enc.crt"]]);
    assert!(ok && out.contains("enc.crt: OK"), "{out}");

    // Another department may not use it.
    let other = tenant("jyj", &["web"]);
    assert_ne!(other.spec.department.code, code, "the helper gives each tenant its own department");
    apply_tenant(&client, &other).await;
    wait_ready(&client, "jyj").await;
    let theirs: Api<SmCertificate> = Api::namespaced(client.clone(), "jyj-web");
    apply(&theirs, "borrowed", cert_body("borrowed", json!({"issuerRef": {"kind": "SmClusterIssuer", "name": "sjj-ca"}, "commonName": "x", "secretName": "borrowed-tls"}))).await.expect("certificate");
    let msg = wait_reason(&theirs, "borrowed", "IssuerNotAllowed").await;
    assert!(msg.contains(&code), "{msg}");

    // A certificate dropped from the tenant goes; its Secret stays.
    let mut t2 = t.clone();
    t2.spec.certificates.clear();
    apply_tenant(&client, &t2).await;
    wait_for("the SmCertificate removed", SECONDS, || async {
        certs.get_opt("portal-tls").await.ok()?.is_none().then_some(())
    })
    .await;
    let kept: Api<Secret> = Api::namespaced(client.clone(), "sjj-portal");
    assert!(kept.get_opt("portal-tls").await.expect("get").is_some(), "the keys are kept");
    // A certificate for a namespace the tenant does not have is refused by the API server.
    let mut bad = t.clone();
    bad.spec.certificates[0].namespace = "nowhere".into();
    let r = Api::<zhengyun::api::Tenant>::all(client.clone())
        .patch("sjj", &PatchParams::apply("e2e-admin").force(), &Patch::Apply(&bad))
        .await;
    assert!(
        r.is_err_and(|e| e.to_string().contains("spec.certificates[].namespace")),
        "a certificate outside the tenant"
    );
}

#[tokio::test]
async fn certificates_the_webhook_refuses_another_departments_ca_and_warns_of_a_missing_issuer() {
    let client = client().await;
    let (_op, _hooks) = zhengyun_e2e::operator_with_webhook(&client, "certs").await;
    let (a, b) = (tenant("wha", &["web"]), tenant("whb", &["web"]));
    apply_tenant(&client, &a).await;
    apply_tenant(&client, &b).await;
    wait_ready(&client, "wha").await;
    wait_ready(&client, "whb").await;
    let cluster_issuers: Api<SmClusterIssuer> = Api::all(client.clone());
    let code = a.spec.department.code.clone();
    apply(
        &cluster_issuers,
        "wha-ca",
        json!({"apiVersion": "zhengyun.io/v1alpha1", "kind": "SmClusterIssuer", "metadata": {"name": "wha-ca"},
               "spec": {"selfSigned": {"commonName": "wha CA", "secretName": "wha-ca"}, "department": code}}),
    )
    .await
    .expect("issuer");
    issuer_ready(&cluster_issuers, "wha-ca").await;
    let manifest = |ns: &str, kind: &str, issuer: &str| {
        format!(
            "apiVersion: zhengyun.io/v1alpha1\nkind: SmCertificate\nmetadata: {{name: web-tls, namespace: {ns}}}\n\
             spec: {{issuerRef: {{kind: {kind}, name: {issuer}}}, dnsNames: [web.gov.cn], secretName: web-tls}}\n"
        )
    };
    // Another department's CA: refused by the API server, naming the field.
    let (ok, out) = run_tool("kubectl", &["apply", "-f", "-"], Some(&manifest("whb-web", "SmClusterIssuer", "wha-ca")));
    assert!(!ok && out.contains("spec.issuerRef") && out.contains(&format!("department {code}'s CA")), "{out}");
    // The department's own namespace: admitted and issued.
    let (ok, out) = run_tool("kubectl", &["apply", "-f", "-"], Some(&manifest("wha-web", "SmClusterIssuer", "wha-ca")));
    assert!(ok && !out.contains("Warning"), "{out}");
    wait_issued(&Api::namespaced(client.clone(), "wha-web"), "web-tls", 0).await;
    // An issuer that does not exist yet: admitted, with a warning kubectl prints.
    let (ok, out) = run_tool("kubectl", &["apply", "-f", "-"], Some(&manifest("whb-web", "SmIssuer", "later")));
    assert!(
        ok && out.contains("Warning: spec.issuerRef: SmIssuer \"later\" does not exist in namespace whb-web"),
        "{out}"
    );
    // A tenant asking for a certificate from another department's CA is refused too.
    let mut t = b.clone();
    t.spec.certificates = serde_json::from_value(json!([
        {"name": "x", "namespace": "web", "issuerRef": {"kind": "SmClusterIssuer", "name": "wha-ca"}, "commonName": "x", "secretName": "x"}
    ]))
    .expect("certificates");
    let r = Api::<zhengyun::api::Tenant>::all(client.clone())
        .patch("whb", &PatchParams::apply("zhengyun-e2e").force(), &Patch::Apply(&t))
        .await;
    assert!(r.is_err_and(|e| e.to_string().contains("spec.certificates[0].issuerRef")), "refused");
}

#[tokio::test]
async fn certificates_a_root_rotates_itself_and_what_it_cut_short_is_reissued() {
    let client = client().await;
    let op = Operator::start("lease-certs-autorotate", "op-certs-autorotate").await;
    let ns = "pki-autorotate";
    namespace(&client, ns).await;
    let issuers: Api<SmIssuer> = Api::namespaced(client.clone(), ns);
    let certs: Api<SmCertificate> = Api::namespaced(client.clone(), ns);
    // A one-minute root: replaced when two thirds of it (40 s) are over.
    let first = self_signed_issuer(
        &issuers,
        "brief",
        json!({"commonName": "brief root", "duration": "1m", "secretName": "brief-root"}),
    )
    .await;
    apply(
        &certs,
        "capped",
        cert_body(
            "capped",
            json!({"issuerRef": {"name": "brief"}, "commonName": "capped", "secretName": "capped-tls"}),
        ),
    )
    .await
    .expect("certificate");
    let c1 = wait_issued(&certs, "capped", 0).await;
    let s1 = c1.status.clone().expect("status");
    let root_not_after =
        issuers.get("brief").await.expect("issuer").status.and_then(|s| s.not_after).expect("notAfter");
    // The certificate ends with its root and waits for the root's rotation instead of renewing.
    assert_eq!(s1.not_after.as_deref(), Some(root_not_after.as_str()), "cut short by the root");
    assert_eq!(s1.renewal_time, s1.not_after);
    let second = wait_for("the root's own rotation", Duration::from_secs(60), || async {
        let fp = issuers.get_opt("brief").await.ok()??.status?.fingerprint?;
        (fp != first).then_some(fp)
    })
    .await;
    assert_ne!(first, second);
    let c2 = wait_issued(&certs, "capped", 1).await;
    let issuing =
        c2.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Issuing")).map(|c| c.message.clone());
    assert!(issuing.clone().unwrap_or_default().contains("the issuer's CA changed"), "{issuing:?}");
    assert_eq!(c2.status.as_ref().and_then(|s| s.revision), Some(2), "re-issued once per rotation, not in a loop");
    let series = "zhengyun_certificate_issuances_total{reason=\"renewal_due\"}";
    assert_eq!(op.metric(series).await.unwrap_or(0.0), 0.0, "no renewal of a certificate its root cut short");
}
