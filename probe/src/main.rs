//! The traffic probe: the small image the e2e suite runs in tenants' pods to show isolation
//! by connections, not by reading policies.
//!
//!   probe serve PORT...                      listen on each TCP port; greet, then close
//!   probe connect [--timeout-ms N] HOST:PORT...   try each target; one JSON line per target
//!
//! A listener answers `NAME PORT\n` (NAME from `$PROBE_NAME`, else the host name), so a
//! connect proves it reached the pod it meant to, not a port that something else opened.
//! Runs as PID 1 without a signal handler (none is possible without unsafe code): pods set a
//! short termination grace period.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
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
}

impl Outcome {
    fn json(&self) -> String {
        let detail = if self.ok { "peer" } else { "error" };
        format!(
            "{{\"target\":{},\"ok\":{},\"ms\":{:.2},\"{detail}\":{}}}",
            json_string(&self.target),
            self.ok,
            self.millis,
            json_string(&self.detail)
        )
    }
}

/// Connects to `target` within `timeout` and reads the greeting, if any.
pub fn connect(target: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
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
        Ok(peer) => Outcome { target: target.into(), ok: true, millis, detail: peer },
        Err(e) => Outcome { target: target.into(), ok: false, millis, detail: e },
    }
}

fn json_string(s: &str) -> String {
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
            let mut timeout = Duration::from_millis(1000);
            let mut targets = &args[1..];
            if targets.first().map(String::as_str) == Some("--timeout-ms") {
                let ms = targets.get(1).ok_or("connect: --timeout-ms needs a value")?;
                timeout = Duration::from_millis(ms.parse().map_err(|e| format!("connect: --timeout-ms {ms}: {e}"))?);
                targets = &targets[2..];
            }
            if targets.is_empty() {
                return Err("connect: give at least one HOST:PORT".into());
            }
            for t in targets {
                println!("{}", connect(t, timeout).json());
            }
            Ok(())
        }
        _ => Err("usage: probe serve PORT... | probe connect [--timeout-ms N] HOST:PORT...".into()),
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
    fn bad_arguments_name_what_is_wrong() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(run(&args(&["serve", "http"])).unwrap_err().contains("port http"));
        assert!(run(&args(&["connect"])).unwrap_err().contains("HOST:PORT"));
        assert!(run(&args(&["connect", "--timeout-ms", "x", "a:1"])).unwrap_err().contains("--timeout-ms x"));
        assert!(json_string("a\"b\n").contains("\\\"") && json_string("a\n").contains("\\u000a"));
    }
}
