//! The gateway against peers that are not ours: Tongsuo 8.4's and OpenSSL 4's command-line
//! tools, Debian's OpenSSL and curl.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::{path::Path, process::Command};

use support::*;

struct Setup {
    _tmp: tempdir::Dir,
    pki: Pki,
    client: std::path::PathBuf,
    standard: std::path::PathBuf,
    gw: Gateway,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("zhengyun-gateway-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("tmp");
        Dir(p)
    }
}

fn setup(tag: &str, protocols: &str, client_auth: &str, stream: bool) -> Setup {
    let tmp = tempdir::new(tag);
    let pki = Pki::new(&tmp.0.join("ca"), "zhengyun test root");
    let server = tmp.0.join("server");
    let client = tmp.0.join("client");
    let standard = tmp.0.join("standard");
    pki.pair(&server, "localhost", true);
    pki.pair(&client, "department-a client", false);
    standard_cert(&standard);
    let backend = backend(stream);
    let mut args = vec![
        format!("--backend={backend}"),
        format!("--protocols={protocols}"),
        format!("--sm-cert-dir={}", server.display()),
        format!("--client-auth={client_auth}"),
        format!("--client-ca={}", pki.ca_file().display()),
        "--reload-ms=200".to_string(),
    ];
    if protocols.contains("tls,") || protocols.ends_with("tls") {
        args.push(format!("--standard-cert-dir={}", standard.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start(&args, &tmp.0.join("gateway.log"));
    Setup { pki, client, standard, gw, _tmp: tmp }
}

fn tlcp_client(s: &Setup, suite: &str, with_cert: bool) -> Command {
    let mut c = Command::new(tongsuo());
    c.args(["s_client", "-quiet", "-ign_eof", "-enable_ntls", "-ntls", "-cipher", suite]);
    c.arg("-connect").arg(format!("127.0.0.1:{}", s.gw.port));
    c.arg("-CAfile").arg(s.pki.ca_file()).args(["-verify_return_error", "-verify", "4"]);
    if with_cert {
        let f = |n: &str| s.client.join(n);
        c.arg("-sign_cert").arg(f("tls.crt")).arg("-sign_key").arg(f("tls.key"));
        c.arg("-enc_cert").arg(f("enc.crt")).arg("-enc_key").arg(f("enc.key"));
    }
    c
}

fn echoed(out: &std::process::Output, line: &str) -> bool {
    String::from_utf8_lossy(&out.stdout).contains(&format!("echo: {line}"))
}

#[test]
fn tlcp_every_suite_with_tongsuo() {
    let s = setup("tlcp", "tlcp,tls13-sm", "optional", false);
    for (suite, cert) in [
        ("ECC-SM2-SM4-GCM-SM3", false),
        ("ECC-SM2-SM4-CBC-SM3", false),
        ("ECDHE-SM2-SM4-GCM-SM3", true),
        ("ECDHE-SM2-SM4-CBC-SM3", true),
    ] {
        let line = format!("hello over {suite}");
        let out = client(&mut tlcp_client(&s, suite, cert), format!("{line}\n").as_bytes());
        assert!(echoed(&out, &line), "{suite}: {}\ngateway:\n{}", text(&out), s.gw.logs());
        assert!(
            s.gw.metric(
                "zhengyun_gateway_handshakes_total",
                &[("protocol", "tlcp"), ("suite", suite), ("result", "ok")]
            ) >= 1.0
        );
    }
    let access_lines = |l: &str| l.lines().filter(|l| l.contains("\"target\":\"access\"")).count();
    let logs = s.gw.logs_when(|l| access_lines(l) >= 4);
    assert!(logs.contains("CN=department-a client"), "the client subject is logged:\n{logs}");
    // One JSON access line per connection, with what an auditor asks.
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 4, "{logs}");
    for a in &access {
        let f = &a["fields"];
        assert_eq!(f["protocol"], "tlcp");
        assert!(f["bytes_in"].as_u64() > Some(0) && f["bytes_out"].as_u64() > Some(0), "{a}");
        assert!(f["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{a}");
    }
    // The metrics pass promtool's lint, like the operator's.
    let metrics = s.gw.metrics();
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    let mut lint = Command::new("promtool");
    lint.args(["check", "metrics"]);
    let out = client(&mut lint, body.as_bytes());
    assert!(out.status.success(), "{}", text(&out));
}

fn tls13_sm_client(tool: &Path, s: &Setup, suite: &str) -> Command {
    let mut c = Command::new(tool);
    c.args(["s_client", "-quiet", "-ign_eof", "-tls1_3", "-ciphersuites", suite, "-groups", "curveSM2"]);
    c.args(["-sigalgs", "sm2sig_sm3", "-verify_return_error", "-verify", "4"]);
    c.arg("-connect").arg(format!("127.0.0.1:{}", s.gw.port)).arg("-CAfile").arg(s.pki.ca_file());
    c
}

#[test]
fn tls13_sm_suites_with_tongsuo() {
    let s = setup("tls13sm", "tlcp,tls13-sm,tls", "none", false);
    for suite in ["TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3"] {
        let line = format!("hello over {suite}");
        let out = client(&mut tls13_sm_client(&tongsuo(), &s, suite), format!("{line}\n").as_bytes());
        assert!(echoed(&out, &line), "{suite}: {}\ngateway:\n{}", text(&out), s.gw.logs());
        let ok = s.gw.metric(
            "zhengyun_gateway_handshakes_total",
            &[("protocol", "tls13-sm"), ("suite", suite), ("result", "ok")],
        );
        assert_eq!(ok, 1.0, "{}", s.gw.metrics());
    }
}

fn standard_client(s: &Setup) -> Command {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-quiet", "-ign_eof", "-verify_return_error", "-verify", "4"]);
    c.arg("-connect").arg(format!("127.0.0.1:{}", s.gw.port)).arg("-CAfile").arg(s.standard.join("tls.crt"));
    c
}

#[test]
fn standard_tls_with_debian_openssl_and_curl() {
    let s = setup("standard", "tlcp,tls13-sm,tls", "none", false);
    for version in ["-tls1_2", "-tls1_3"] {
        let line = format!("hello over standard {version}");
        let out = client(standard_client(&s).arg(version), format!("{line}\n").as_bytes());
        assert!(echoed(&out, &line), "{version}: {}\ngateway:\n{}", text(&out), s.gw.logs());
    }
    assert_eq!(s.gw.metric("zhengyun_gateway_handshakes_total", &[("protocol", "tls"), ("result", "ok")]), 2.0);
    // curl sends an HTTP request; the line backend answers its first line, which curl reads
    // as an HTTP/0.9 body.
    let out = client(
        Command::new("curl")
            .args(["-sS", "--http0.9", "--cacert"])
            .arg(s.standard.join("tls.crt"))
            .arg(format!("https://localhost:{}/", s.gw.port)),
        b"",
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("echo: GET / HTTP/1.1"), "{}", text(&out));
}

#[test]
fn without_standard_tls_ordinary_clients_are_refused() {
    let s = setup("level3", "tlcp,tls13-sm", "none", false);
    let out = client(standard_client(&s).arg("-tls1_3"), b"hello\n");
    assert!(!out.status.success() && !echoed(&out, "hello"), "{}", text(&out));
    let out = client(standard_client(&s).arg("-tls1_2"), b"hello\n");
    assert!(!out.status.success() && !echoed(&out, "hello"), "{}", text(&out));
    let out = client(Command::new("curl").args(["-sS", "-k"]).arg(format!("https://localhost:{}/", s.gw.port)), b"");
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(s.gw.metric("zhengyun_gateway_handshakes_total", &[("protocol", "tls"), ("result", "ok")]), 0.0);
    assert!(s.gw.metric("zhengyun_gateway_handshakes_total", &[("protocol", "tls13-sm"), ("result", "failed")]) >= 3.0);
    // The SM clients still get through.
    let out = client(&mut tls13_sm_client(&tongsuo(), &s, "TLS_SM4_GCM_SM3"), b"still here\n");
    assert!(echoed(&out, "still here"), "{}", text(&out));
}

#[test]
fn required_client_certificates_are_required_and_verified() {
    let s = setup("mtls", "tlcp,tls13-sm", "required", false);
    let out = client(&mut tlcp_client(&s, "ECC-SM2-SM4-GCM-SM3", false), b"no cert\n");
    assert!(!echoed(&out, "no cert"), "{}", text(&out));
    let out = client(&mut tlcp_client(&s, "ECC-SM2-SM4-GCM-SM3", true), b"with cert\n");
    assert!(echoed(&out, "with cert"), "{}\n{}", text(&out), s.gw.logs());
    // A certificate from another CA is refused.
    let other = Pki::new(&s._tmp.0.join("other-ca"), "another root");
    let stranger = s._tmp.0.join("stranger");
    other.pair(&stranger, "stranger", false);
    let mut c = tlcp_client(&s, "ECC-SM2-SM4-GCM-SM3", false);
    let f = |n: &str| stranger.join(n);
    c.arg("-sign_cert").arg(f("tls.crt")).arg("-sign_key").arg(f("tls.key"));
    c.arg("-enc_cert").arg(f("enc.crt")).arg("-enc_key").arg(f("enc.key"));
    let out = client(&mut c, b"stranger\n");
    assert!(!echoed(&out, "stranger"), "{}", text(&out));
    // TLS 1.3 SM with the client's sign certificate.
    let mut c = tls13_sm_client(&tongsuo(), &s, "TLS_SM4_GCM_SM3");
    c.arg("-cert").arg(s.client.join("tls.crt")).arg("-key").arg(s.client.join("tls.key"));
    let out = client(&mut c, b"tls13 with cert\n");
    assert!(echoed(&out, "tls13 with cert"), "{}\n{}", text(&out), s.gw.logs());
    let logs = s.gw.logs_when(|l| l.matches("CN=department-a client").count() >= 2);
    assert!(logs.matches("CN=department-a client").count() >= 2, "both clients' subjects logged: {logs}");
}

#[test]
fn http_backends_get_forwarded_headers_that_clients_cannot_forge() {
    let tmp = tempdir::new("http");
    let pki = Pki::new(&tmp.0.join("ca"), "http test root");
    let (server, client_dir, standard) = (tmp.0.join("server"), tmp.0.join("client"), tmp.0.join("standard"));
    pki.pair(&server, "localhost", true);
    pki.pair(&client_dir, "department-b app", false);
    standard_cert(&standard);
    let args = [
        format!("--backend={}", http_backend()),
        "--backend-protocol=http".to_string(),
        "--protocols=tlcp,tls13-sm,tls".to_string(),
        format!("--sm-cert-dir={}", server.display()),
        format!("--standard-cert-dir={}", standard.display()),
        "--client-auth=optional".to_string(),
        format!("--client-ca={}", pki.ca_file().display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start(&args, &tmp.0.join("gateway.log"));
    // curl over standard TLS, two requests on one connection, forging every header we set.
    let url = format!("https://localhost:{}/a", gw.port);
    let out = client(
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(standard.join("tls.crt"))
            .args([
                "-H",
                "X-Forwarded-For: 10.9.9.9",
                "-H",
                "X-Client-Subject: CN=admin",
                "-H",
                "X-Forwarded-Proto: http",
            ])
            .args([&url, &url.replace("/a", "/b")]),
        b"",
    );
    let body = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(body.contains("get /a http/1.1") && body.contains("get /b http/1.1"), "{}", text(&out));
    assert_eq!(body.matches("x-forwarded-for: 127.0.0.1").count(), 2, "{body}");
    assert_eq!(body.matches("x-forwarded-proto: https").count(), 2, "{body}");
    assert!(!body.contains("10.9.9.9") && !body.contains("cn=admin") && !body.contains("x-client-subject"), "{body}");
    // TLCP with a client certificate: its verified subject reaches the backend.
    let mut c = Command::new(tongsuo());
    c.args(["s_client", "-quiet", "-ign_eof", "-enable_ntls", "-ntls", "-cipher", "ECDHE-SM2-SM4-GCM-SM3"]);
    c.arg("-connect").arg(format!("127.0.0.1:{}", gw.port)).arg("-CAfile").arg(pki.ca_file());
    let f = |n: &str| client_dir.join(n);
    c.arg("-sign_cert").arg(f("tls.crt")).arg("-sign_key").arg(f("tls.key"));
    c.arg("-enc_cert").arg(f("enc.crt")).arg("-enc_key").arg(f("enc.key"));
    let out =
        client(&mut c, b"GET /tlcp HTTP/1.1\r\nHost: x\r\nX-Client-Subject: CN=admin\r\nConnection: close\r\n\r\n");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(body.contains("GET /tlcp HTTP/1.1"), "{}\n{}", text(&out), gw.logs());
    let subject = body.lines().find_map(|l| l.strip_prefix("x-client-subject: ")).unwrap_or_default();
    assert!(subject.contains("CN=department-b app") && subject.contains("O=zhengyun tests"), "{body}");
    assert!(!body.contains("CN=admin"), "{body}");
}

#[test]
fn tls13_sm_suites_with_openssl4() {
    let s = setup("openssl4", "tlcp,tls13-sm", "none", false);
    let openssl4 = tool("ZHENGYUN_OPENSSL4");
    let version = Command::new(&openssl4).arg("version").output().expect("openssl4 version");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("OpenSSL 4."), "{}", text(&version));
    for suite in ["TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3"] {
        let line = format!("hello from OpenSSL 4 over {suite}");
        let out = client(&mut tls13_sm_client(&openssl4, &s, suite), format!("{line}\n").as_bytes());
        assert!(echoed(&out, &line), "{suite}: {}\ngateway:\n{}", text(&out), s.gw.logs());
    }
    assert_eq!(s.gw.metric("zhengyun_gateway_handshakes_total", &[("protocol", "tls13-sm"), ("result", "ok")]), 2.0);
}

#[test]
fn a_backend_that_closes_first_still_gets_its_answer_closed_with_close_notify() {
    let tmp = tempdir::new("greeter");
    let pki = Pki::new(&tmp.0.join("ca"), "greeter test root");
    let server = tmp.0.join("server");
    pki.pair(&server, "localhost", true);
    let args = [
        format!("--backend={}", greeter_backend()),
        "--protocols=tlcp,tls13-sm".to_string(),
        format!("--sm-cert-dir={}", server.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start(&args, &tmp.0.join("gateway.log"));
    // The client keeps sending after the backend has gone: its copy to the backend fails, the
    // answer still arrives, and the TLS session ends cleanly (no "unexpected eof").
    for _ in 0..10 {
        let mut c = Command::new(tongsuo());
        c.args(["s_client", "-quiet", "-ign_eof", "-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"]);
        c.arg("-connect").arg(format!("127.0.0.1:{}", gw.port));
        let out = client(&mut c, b"one\ntwo\nthree\n");
        let text_out = text(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("hello from the backend"), "{text_out}");
        assert!(!text_out.contains("unexpected eof"), "closed without close_notify: {text_out}");
    }
}

/// Certificates an `s_client -showcerts` saw, in the order sent.
fn shown_certificates(out: &std::process::Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    stdout
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|rest| rest.split("-----END CERTIFICATE-----").next())
        .map(|body| format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----"))
        .collect()
}

/// A client holding certificates from several CAs learns from the CertificateRequest which one
/// the gateway trusts; and the server's chain stops below the root (which the Secret's `tls.crt`
/// carries, as cert-manager's do): a client that trusts the root has it already.
#[test]
fn the_certificate_request_names_the_client_ca_and_the_chain_leaves_out_the_root() {
    let s = setup("canames", "tlcp,tls13-sm,tls", "optional", false);
    let root = std::fs::read_to_string(s.pki.ca_file()).expect("root");
    let root_body: String = root.lines().filter(|l| !l.starts_with("-----")).collect();
    let served = std::fs::read_to_string(s._tmp.0.join("server/tls.crt")).expect("tls.crt");
    assert!(served.contains(root.trim()), "the test's tls.crt carries the root, as the operator's Secrets do");
    let connect = format!("127.0.0.1:{}", s.gw.port);
    // Without -quiet, which would hide what the client saw.
    let shown = |tool: &Path, args: &[&str], ca: &Path| {
        let mut c = Command::new(tool);
        c.args(["s_client", "-showcerts", "-ign_eof", "-verify_return_error", "-verify", "4"]).args(args);
        c.arg("-connect").arg(&connect).arg("-CAfile").arg(ca);
        c
    };
    let sm = ["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3"];
    for (name, mut cmd, certs) in [
        ("TLCP", shown(&tongsuo(), &["-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"], &s.pki.ca_file()), 2),
        ("TLS 1.3 SM", shown(&tongsuo(), &sm, &s.pki.ca_file()), 1),
        ("TLS", shown(Path::new("openssl"), &["-tls1_3"], &s.standard.join("tls.crt")), 1),
    ] {
        let out = client(&mut cmd, b"hello\n");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let names = stdout.split("Acceptable client certificate CA names").nth(1).unwrap_or_default();
        let first = names.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
        assert!(first.contains("zhengyun test root"), "{name}: the CA names: {first:?}\n{}", text(&out));
        let shown = shown_certificates(&out);
        assert_eq!(shown.len(), certs, "{name}: certificates sent\n{}", text(&out));
        for c in &shown {
            let body: String = c.lines().filter(|l| !l.starts_with("-----")).collect();
            assert_ne!(body, root_body, "{name}: the root was sent");
        }
    }
}
