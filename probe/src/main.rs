//! The traffic probe: the small image the e2e suite runs in tenants' pods to show isolation
//! by connections, not by reading policies.
//!
//!   probe serve PORT...                      listen on each TCP port; greet, then close
//!   probe connect [--timeout-ms N] [--for-ms M] [--parallel] [--only-ok] HOST:PORT...
//!                                            try each target (for M ms: again and again; a
//!                                            thread each); one JSON line per attempt
//!   probe dns [--timeout-ms N] SERVER:PORT NAME   ask SERVER for NAME's A record over UDP
//!   probe canary OPEN DENIED                  the isolation canary every node runs (gate.rs)
//!   probe gate CANARY-IP OPEN DENIED LISTEN MAX-WAIT-SECONDS   the isolation gate: exit 0 once
//!                                            this pod's isolation is seen in force, 1 if not
//!                                            within the wait (the reason in the termination
//!                                            message)
//!
//! A listener answers `NAME PORT\n` (NAME from `$PROBE_NAME`, else the host name), so a
//! connect proves it reached the pod it meant to, not a port that something else opened.
//! Runs as PID 1 without a signal handler (none is possible without unsafe code): pods set a
//! short termination grace period.
#![forbid(unsafe_code)]

mod gate;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn name() -> String {
    std::env::var("PROBE_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "probe".into())
}

/// Listens on every port, one thread each, until killed.
fn serve(ports: &[u16]) -> Result<(), String> {
    if ports.is_empty() {
        return Err("serve: give at least one port".into());
    }
    let me = name();
    let mut threads = Vec::new();
    for &port in ports {
        let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listen on {port}: {e}"))?;
        let greeting = format!("{me} {port}\n");
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                // A peer that went away is its business; keep serving.
                let _ = conn.write_all(greeting.as_bytes());
            }
        }));
    }
    println!("{{\"serving\":{ports:?},\"name\":{}}}", json_string(&me));
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// What one connection attempt showed.
#[derive(Debug)]
pub struct Outcome {
    pub target: String,
    pub ok: bool,
    pub millis: f64,
    /// The listener's greeting when connected, else the error.
    pub detail: String,
    /// When the attempt began, in milliseconds since the Unix epoch (pods share the host's
    /// clock, so a test can place attempts in a window it measured).
    pub at_ms: u128,
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

impl Outcome {
    fn json(&self) -> String {
        let detail = if self.ok { "peer" } else { "error" };
        format!(
            "{{\"target\":{},\"ok\":{},\"at\":{},\"ms\":{:.2},\"{detail}\":{}}}",
            json_string(&self.target),
            self.ok,
            self.at_ms,
            self.millis,
            json_string(&self.detail)
        )
    }
}

/// Connects to `target` within `timeout` and reads the greeting, if any.
pub fn connect(target: &str, timeout: Duration) -> Outcome {
    let (start, at_ms) = (Instant::now(), now_ms());
    let result = (|| -> Result<String, String> {
        let addr: SocketAddr = target
            .to_socket_addrs()
            .map_err(|e| format!("bad target: {e}"))?
            .next()
            .ok_or_else(|| "bad target: no address".to_string())?;
        let conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        let left = timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(50));
        conn.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let mut greeting = Vec::new();
        // The listener closes after its line: read to the end (bounded).
        let _ = conn.take(256).read_to_end(&mut greeting);
        Ok(String::from_utf8_lossy(&greeting).trim().to_string())
    })();
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(peer) => Outcome { target: target.into(), ok: true, millis, detail: peer, at_ms },
        Err(e) => Outcome { target: target.into(), ok: false, millis, detail: e, at_ms },
    }
}

/// A DNS query for `name`'s A record (recursion desired), with `id`.
fn dns_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// Skips a (possibly compressed) name at `at`; returns the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(at + 2);
        }
        at += 1 + len;
    }
}

/// The response's code and its first A record, if the response answers query `id`.
fn dns_answer(id: u16, msg: &[u8]) -> Result<(u8, Option<Ipv4Addr>), String> {
    if msg.len() < 12 || msg[0..2] != id.to_be_bytes() {
        return Err("not an answer to the query".into());
    }
    let rcode = msg[3] & 0x0F;
    let questions = u16::from_be_bytes([msg[4], msg[5]]);
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at).ok_or("truncated question")? + 4;
    }
    for _ in 0..answers {
        at = skip_name(msg, at).ok_or("truncated answer")?;
        let head = msg.get(at..at + 10).ok_or("truncated answer")?;
        let (rtype, len) = (u16::from_be_bytes([head[0], head[1]]), u16::from_be_bytes([head[8], head[9]]) as usize);
        let data = msg.get(at + 10..at + 10 + len).ok_or("truncated answer")?;
        if rtype == 1 && len == 4 {
            return Ok((rcode, Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]))));
        }
        at += 10 + len;
    }
    Ok((rcode, None))
}

/// Asks `server` for `name`'s A record over UDP within `timeout`.
pub fn dns(server: &str, name: &str, timeout: Duration) -> Outcome {
    let (start, at_ms) = (Instant::now(), now_ms());
    let target = format!("dns {server} {name}");
    let result = (|| -> Result<String, String> {
        let addr: SocketAddr = server
            .to_socket_addrs()
            .map_err(|e| format!("bad server: {e}"))?
            .next()
            .ok_or_else(|| "bad server: no address".to_string())?;
        let id =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7)
                & 0xFFFF) as u16;
        let socket = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
        socket.connect(addr).map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        socket.send(&dns_query(id, name)?).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let n = socket.recv(&mut buf).map_err(|e| e.to_string())?;
        match dns_answer(id, &buf[..n])? {
            (0, Some(ip)) => Ok(format!("A {ip}")),
            (0, None) => Err("no A record".into()),
            (rcode, _) => Err(format!("rcode {rcode}")),
        }
    })();
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(answer) => Outcome { target, ok: true, millis, detail: answer, at_ms },
        Err(e) => Outcome { target, ok: false, millis, detail: e, at_ms },
    }
}

/// The options at the head of `args`, and the rest.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// `--timeout-ms N`, default 1000.
    timeout: Duration,
    /// `--for-ms M`: again and again for M ms; default one attempt per target.
    repeat: Option<Duration>,
    /// `--parallel`: a thread per target, so a slow target does not space out the others.
    parallel: bool,
    /// `--only-ok`: print successes only (a prober that tries many addresses for long).
    only_ok: bool,
}

fn options<'a>(what: &str, mut args: &'a [String]) -> Result<(Options, &'a [String]), String> {
    let mut o = Options { timeout: Duration::from_millis(1000), repeat: None, parallel: false, only_ok: false };
    while let Some(flag) = args.first().filter(|a| a.starts_with("--")) {
        match flag.as_str() {
            "--parallel" | "--only-ok" => {
                let on = if flag == "--parallel" { &mut o.parallel } else { &mut o.only_ok };
                *on = true;
                args = &args[1..];
                continue;
            }
            "--timeout-ms" | "--for-ms" => {}
            _ => return Err(format!("{what}: unknown option {flag}")),
        }
        let value = args.get(1).ok_or_else(|| format!("{what}: {flag} needs a value"))?;
        let ms: u64 = value.parse().map_err(|e| format!("{what}: {flag} {value}: {e}"))?;
        if flag == "--timeout-ms" {
            o.timeout = Duration::from_millis(ms);
        } else {
            o.repeat = Some(Duration::from_millis(ms));
        }
        args = &args[2..];
    }
    Ok((o, args))
}

/// Tries `targets` as `o` says, printing one JSON line per attempt.
fn connect_all(targets: &[String], o: Options) {
    let start = Instant::now();
    let attempt = |t: &str| {
        let outcome = connect(t, o.timeout);
        if outcome.ok || !o.only_ok {
            println!("{}", outcome.json());
        }
    };
    let more = || matches!(o.repeat, Some(d) if start.elapsed() < d);
    if o.parallel {
        std::thread::scope(|s| {
            for t in targets {
                s.spawn(move || {
                    loop {
                        attempt(t);
                        if !more() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
            }
        });
        return;
    }
    loop {
        for t in targets {
            attempt(t);
        }
        if !more() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("serve") => {
            let ports = args[1..]
                .iter()
                .map(|p| p.parse::<u16>().map_err(|e| format!("serve: port {p}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            serve(&ports)
        }
        Some("connect") => {
            let (o, targets) = options("connect", &args[1..])?;
            if targets.is_empty() {
                return Err("connect: give at least one HOST:PORT".into());
            }
            connect_all(targets, o);
            Ok(())
        }
        Some("dns") => {
            let (o, rest) = options("dns", &args[1..])?;
            let [server, name] = rest else { return Err("dns: give SERVER:PORT and a NAME".into()) };
            println!("{}", dns(server, name, o.timeout).json());
            Ok(())
        }
        Some("canary") => {
            let [open, denied] = &args[1..] else { return Err("canary: give OPEN-PORT DENIED-PORT".into()) };
            let port = |v: &str| v.parse::<u16>().map_err(|e| format!("canary: port {v}: {e}"));
            gate::canary(port(open)?, port(denied)?)
        }
        Some("gate") => {
            let args = gate::parse_gate(&args[1..])?;
            match gate::gate(&args) {
                Ok((ms, looks)) => {
                    println!("{{\"gate\":\"isolated\",\"ms\":{ms},\"looks\":{looks}}}");
                    Ok(())
                }
                Err(why) => {
                    // The kubelet shows this file as the container's termination message.
                    let _ = std::fs::write("/dev/termination-log", &why);
                    Err(why)
                }
            }
        }
        _ => Err(
            "usage: probe serve PORT... | probe connect [--timeout-ms N] HOST:PORT... | probe dns [--timeout-ms N] SERVER:PORT NAME | probe canary OPEN DENIED | probe gate CANARY-IP OPEN DENIED LISTEN MAX-WAIT-SECONDS"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_reads_the_greeting_and_a_closed_port_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                let _ = c.write_all(b"pod-a 8080\n");
            }
        });
        let o = connect(&addr.to_string(), Duration::from_secs(2));
        assert!(o.ok, "{o:?}");
        assert_eq!(o.detail, "pod-a 8080");
        assert!(o.json().contains("\"ok\":true") && o.json().contains("\"peer\":\"pod-a 8080\""));
        // A port nobody listens on: refused, reported as an error.
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let o = connect(&closed.to_string(), Duration::from_secs(2));
        assert!(!o.ok && o.json().contains("\"error\""), "{o:?}");
    }

    #[test]
    fn a_dns_answer_is_read_past_compressed_names() {
        let q = dns_query(0x1234, "kubernetes.default.svc.cluster.local").expect("query");
        assert_eq!(&q[0..2], &[0x12, 0x34]);
        // The query echoed as the question, then one answer whose name points at it.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
        assert_eq!(dns_answer(0x1234, &r), Ok((0, Some(Ipv4Addr::new(10, 0, 0, 1)))));
        assert!(dns_answer(0x9999, &r).is_err(), "another query's answer");
        let mut nx = q.clone();
        nx[3] = 0x83;
        assert_eq!(dns_answer(0x1234, &nx), Ok((3, None)));
        assert!(dns_answer(0x1234, &r[..r.len() - 2]).is_err(), "truncated");
        assert!(dns_query(1, "a..b").is_err());
        // A server that never answers: an error within the timeout, not a hang.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let o = dns(&silent.local_addr().expect("addr").to_string(), "x.cluster.local", Duration::from_millis(200));
        assert!(!o.ok && o.millis < 2000.0, "{o:?}");
    }

    #[test]
    fn bad_arguments_name_what_is_wrong() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(run(&args(&["serve", "http"])).unwrap_err().contains("port http"));
        assert!(run(&args(&["connect"])).unwrap_err().contains("HOST:PORT"));
        assert!(run(&args(&["connect", "--timeout-ms", "x", "a:1"])).unwrap_err().contains("--timeout-ms x"));
        assert!(run(&args(&["dns", "10.0.0.10:53"])).unwrap_err().contains("NAME"));
        assert!(run(&args(&["connect", "--every", "5", "a:1"])).unwrap_err().contains("unknown option --every"));
        assert!(json_string("a\"b\n").contains("\\\"") && json_string("a\n").contains("\\u000a"));
        let given = args(&["--parallel", "--only-ok", "--for-ms", "5", "a:1"]);
        let (o, rest) = options("connect", &given).expect("options");
        assert!(o.parallel && o.only_ok && o.repeat == Some(Duration::from_millis(5)) && rest == ["a:1"]);
    }
}
