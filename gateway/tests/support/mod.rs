//! What the gateway's tests share: certificates from our PKI, a backend, the gateway binary
//! running on free ports, and the command-line peers (Tongsuo 8.4, OpenSSL 4, Debian's
//! OpenSSL and curl) that play clients.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

mod pki;
pub use pki::Pki;

pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => panic!("{var} is not set: hack/test.sh builds the tool and sets it"),
    }
}

pub fn tongsuo() -> PathBuf {
    tool("ZHENGYUN_TONGSUO")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A standard ECDSA P-256 certificate for localhost, made by Debian's OpenSSL.
pub fn standard_cert(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl req");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
}

/// A backend that answers each line with `echo: <line>` and then closes, unless the line
/// starts with `keep`; or, with `stream`, echoes bytes as they come until the client closes.
pub fn backend(stream: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 65536];
                let mut line = Vec::new();
                loop {
                    let n = match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        continue;
                    }
                    line.extend_from_slice(&buf[..n]);
                    while let Some(end) = line.iter().position(|&b| b == b'\n') {
                        let this: Vec<u8> = line.drain(..=end).collect();
                        let mut reply = b"echo: ".to_vec();
                        reply.extend_from_slice(&this);
                        if conn.write_all(&reply).is_err() || !this.starts_with(b"keep") {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The gateway binary under test: the one that ships (hack/build-gateway.sh, static, with the
/// Tongsuo the image carries), which hack/test.sh names in ZHENGYUN_GATEWAY_BIN. A debug build
/// links another Tongsuo: set the variable to it only for a quick look.
pub fn gateway_bin() -> PathBuf {
    tool("ZHENGYUN_GATEWAY_BIN")
}

/// Worker threads every gateway under test runs, whatever the machine: the shipped build once
/// crashed only with more than one (issue 28).
pub const WORKERS: usize = 4;

/// A running gateway; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub admin: u16,
    pub log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    pub fn start(args: &[&str], log: &Path) -> Gateway {
        let (port, admin) = (free_port(), free_port());
        let file = std::fs::File::create(log).expect("log file");
        let child = Command::new(gateway_bin())
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--admin=127.0.0.1:{admin}"))
            .arg(format!("--worker-threads={WORKERS}"))
            .args(args)
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start the gateway");
        let gw = Gateway { child, port, admin, log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", admin)).is_err() || !gw.logs().contains("\"serving\"") {
            assert!(Instant::now() < deadline, "gateway did not start: {}", gw.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        let logs = gw.logs();
        assert!(
            logs.contains(&format!("\"workers\":{WORKERS}")),
            "the gateway does not say it runs {WORKERS} workers:\n{logs}"
        );
        gw
    }

    /// Whether the process is still running (not exited, not killed by a signal).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, when it has: a crash is a signal here.
    pub fn ended(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The logs once `ready` holds of them, or after 10 s: a connection's access line is
    /// written when the gateway is done with it, which may be after its client is.
    pub fn logs_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if ready(&logs) || std::time::Instant::now() > until {
                return logs;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).expect("admin");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    /// The value of one series (summed over label sets that contain every `labels` pair).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b'{') || l.as_bytes().get(name.len()) == Some(&b' '))
            })
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Runs a client with `input` on stdin; returns its output (killed after 20 s).
pub fn client(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("client");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("client output")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An HTTP/1.1 backend that answers every request with the request's head as its body, so a
/// test sees what the gateway forwarded. Keeps connections alive.
pub fn http_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    let head: Vec<u8> = buf.drain(..end).collect();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                        head.len()
                    );
                    if conn.write_all(reply.as_bytes()).and_then(|()| conn.write_all(&head)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A backend that greets each connection and closes it at once, reading nothing.
pub fn greeter_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let _ = conn.write_all(b"hello from the backend\n");
        }
    });
    addr
}
