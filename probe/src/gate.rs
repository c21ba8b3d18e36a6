//! The isolation gate and its canary: how a pod learns, by packets, that the NetworkPolicies
//! that isolate it are in force before any of the tenant's containers starts.
//!
//! A NetworkPolicy enforcer programs a new pod's rules some time after the pod has its address
//! (kube-router: after it sees the address in the pod's status). Until then the pod is open.
//! The webhook puts [`gate`] first among a tenant pod's init containers; it exits only once it
//! sees both directions closed, against a canary zhengyun runs on every node:
//!
//! - the canary's *open* port, which every tenant's policies allow (egress, TCP): it proves the
//!   canary is up and reachable, so that a refusal on the other port means something;
//! - the canary's *denied* port, which no tenant policy allows: while it answers, this pod's
//!   egress is not yet filtered;
//! - the canary, asked on the open port, connects back to the asking address on the gate's own
//!   port, which no tenant policy admits from the canary: while that succeeds, ingress is not
//!   yet filtered.
//!
//! The canary only ever connects back to the address that asked, so it can be used to probe
//! nothing but the asker itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the canary waits to connect back, and a gate to connect at all.
const CONNECT: Duration = Duration::from_millis(400);
/// Connections the canary handles at once; beyond that it answers `busy` (a tenant that floods
/// it slows only gates, which then wait, never pass).
const MAX_IN_FLIGHT: usize = 64;

/// What the canary's open port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The canary reached the asker's port: the asker admits traffic it should not.
    Open,
    /// The canary could not connect back.
    Closed,
    Busy,
    /// The address the asker says it has is not the one the canary sees: something translates
    /// addresses between them, so the connection back would not test the asker.
    Translated,
}

/// Runs the canary: `open` answers `ingress PORT` requests, `denied` greets and closes.
pub fn canary(open: u16, denied: u16) -> Result<(), String> {
    let open_l = TcpListener::bind(("0.0.0.0", open)).map_err(|e| format!("canary: listen on {open}: {e}"))?;
    let denied_l = TcpListener::bind(("0.0.0.0", denied)).map_err(|e| format!("canary: listen on {denied}: {e}"))?;
    let greeting = format!("zhengyun-canary denied {denied}\n");
    std::thread::spawn(move || {
        for conn in denied_l.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.write_all(greeting.as_bytes());
        }
    });
    println!("{{\"canary\":{{\"open\":{open},\"denied\":{denied}}}}}");
    let in_flight = Arc::new(AtomicUsize::new(0));
    for conn in open_l.incoming().flatten() {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut conn = conn;
            let _ = conn.write_all(b"busy\n");
            continue;
        }
        let counter = in_flight.clone();
        std::thread::spawn(move || {
            let _ = answer(conn);
            counter.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// One request on the open port: `ingress PORT ADDRESS\n` (the asker's own address as it sees
/// it), answered `open\n`, `closed\n` or `translated\n`.
fn answer(conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let peer = conn.peer_addr()?.ip();
    let mut line = String::new();
    BufReader::new((&conn).take(80)).read_line(&mut line)?;
    let reply = match parse_request(&line) {
        Some((_, claimed)) if claimed != peer => "translated\n",
        Some((port, _)) => match TcpStream::connect_timeout(&SocketAddr::new(peer, port), CONNECT) {
            Ok(_) => "open\n",
            Err(_) => "closed\n",
        },
        None => "error: send `ingress PORT ADDRESS`\n",
    };
    (&conn).write_all(reply.as_bytes())
}

fn parse_request(line: &str) -> Option<(u16, IpAddr)> {
    let mut words = line.trim().strip_prefix("ingress ")?.split_whitespace();
    let port = words.next()?.parse().ok().filter(|p| *p != 0)?;
    let address = words.next()?.parse().ok()?;
    words.next().is_none().then_some((port, address))
}

fn parse_reply(line: &str) -> Option<Ingress> {
    match line.trim() {
        "open" => Some(Ingress::Open),
        "closed" => Some(Ingress::Closed),
        "busy" => Some(Ingress::Busy),
        "translated" => Some(Ingress::Translated),
        _ => None,
    }
}

/// Where the gate looks, and for how long.
#[derive(Debug, Clone)]
pub struct GateArgs {
    pub canary: IpAddr,
    pub open: u16,
    pub denied: u16,
    pub listen: u16,
    pub max_wait: Duration,
}

/// One look at the pod's isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Both directions closed while the canary answered.
    Isolated,
    /// Not yet, and why.
    Open(String),
}

/// Asks the canary once: is ingress from it closed, and is its denied port unreachable?
pub fn look(args: &GateArgs) -> Look {
    let open = SocketAddr::new(args.canary, args.open);
    let ingress = (|| -> Result<Ingress, String> {
        let conn = TcpStream::connect_timeout(&open, CONNECT)
            .map_err(|e| format!("the canary's open port {open} does not answer ({e}): cannot tell yet"))?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let me = conn.local_addr().map_err(|e| e.to_string())?.ip();
        (&conn).write_all(format!("ingress {} {me}\n", args.listen).as_bytes()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new((&conn).take(64)).read_line(&mut line).map_err(|e| format!("the canary did not answer: {e}"))?;
        parse_reply(&line).ok_or_else(|| format!("the canary answered {:?}", line.trim()))
    })();
    match ingress {
        Err(e) => return Look::Open(e),
        Ok(Ingress::Busy) => return Look::Open("the canary is busy".into()),
        Ok(Ingress::Translated) => {
            return Look::Open(
                "the canary sees this pod under another address (address translation between them): ingress cannot be checked"
                    .into(),
            );
        }
        Ok(Ingress::Open) => return Look::Open("the canary reached this pod: ingress is not filtered yet".into()),
        Ok(Ingress::Closed) => {}
    }
    let denied = SocketAddr::new(args.canary, args.denied);
    match TcpStream::connect_timeout(&denied, CONNECT) {
        Ok(_) => Look::Open(format!("the canary's denied port {denied} answered: egress is not filtered yet")),
        Err(_) => Look::Isolated,
    }
}

/// Waits until two looks in a row find the pod isolated; `Err` with the last reason once
/// `max_wait` is over.
pub fn gate(args: &GateArgs) -> Result<(u128, u32), String> {
    // Held for the whole wait: the canary's connection back must find a listener (were none
    // there, the kernel's refusal would look like a filter).
    let listener =
        TcpListener::bind(("0.0.0.0", args.listen)).map_err(|e| format!("gate: listen on {}: {e}", args.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (mut looks, mut in_a_row, mut last) = (0u32, 0u32, String::new());
    loop {
        // Drain connections the canary made: they are its to observe, not ours to answer.
        while listener.accept().is_ok() {}
        looks += 1;
        match look(args) {
            Look::Isolated => {
                in_a_row += 1;
                if in_a_row >= 2 {
                    return Ok((start.elapsed().as_millis(), looks));
                }
            }
            Look::Open(why) => {
                in_a_row = 0;
                if why != last {
                    println!(
                        "{{\"gate\":\"waiting\",\"ms\":{},\"why\":{}}}",
                        start.elapsed().as_millis(),
                        crate::json_string(&why)
                    );
                    last = why;
                }
            }
        }
        if start.elapsed() >= args.max_wait {
            return Err(format!(
                "this pod's network isolation was not confirmed within {} s: {last}",
                args.max_wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `gate CANARY-IP OPEN DENIED LISTEN MAX-WAIT-SECONDS`.
pub fn parse_gate(args: &[String]) -> Result<GateArgs, String> {
    let [canary, open, denied, listen, wait] = args else {
        return Err("gate: give CANARY-IP OPEN-PORT DENIED-PORT LISTEN-PORT MAX-WAIT-SECONDS".into());
    };
    let port = |what: &str, v: &str| v.parse::<u16>().map_err(|e| format!("gate: {what} {v}: {e}"));
    Ok(GateArgs {
        canary: canary.parse().map_err(|e| format!("gate: canary address {canary}: {e}"))?,
        open: port("open port", open)?,
        denied: port("denied port", denied)?,
        listen: port("listen port", listen)?,
        max_wait: Duration::from_secs(wait.parse().map_err(|e| format!("gate: max wait {wait}: {e}"))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
    }

    #[test]
    fn requests_and_replies_parse_strictly() {
        let ip: IpAddr = "10.244.1.7".parse().expect("ip");
        assert_eq!(parse_request("ingress 40999 10.244.1.7\n"), Some((40999, ip)));
        assert_eq!(parse_request("ingress 40999\n"), None, "the asker says who it is");
        assert_eq!(parse_request("ingress 0 10.244.1.7\n"), None);
        assert_eq!(parse_request("ingress 1 10.244.1.7 10.0.0.1\n"), None);
        assert_eq!(parse_request("connect 10.0.0.1 80\n"), None);
        assert_eq!(parse_reply("closed\n"), Some(Ingress::Closed));
        assert_eq!(parse_reply("maybe\n"), None);
        assert_eq!(parse_reply("translated\n"), Some(Ingress::Translated));
        assert!(parse_gate(&["10.0.0.5".into(), "9901".into(), "9902".into(), "40999".into(), "60".into()]).is_ok());
        assert!(
            parse_gate(&["canary".into(), "1".into(), "2".into(), "3".into(), "4".into()])
                .unwrap_err()
                .contains("canary address canary")
        );
    }

    /// On loopback nothing filters: the canary reaches the gate and its denied port answers,
    /// so the gate must not pass, and must say why when its wait ends.
    #[test]
    fn without_filtering_the_gate_never_passes() {
        let (open, denied, listen) = (free_port(), free_port(), free_port());
        std::thread::spawn(move || canary(open, denied));
        let args = GateArgs {
            canary: "127.0.0.1".parse().expect("ip"),
            open,
            denied,
            listen,
            max_wait: Duration::from_secs(1),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", open)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // With the gate's port not listening, the canary's connection back is refused.
        match look(&args) {
            Look::Open(why) => assert!(why.contains("denied port"), "{why}"),
            Look::Isolated => panic!("the denied port answered on loopback"),
        }
        let err = gate(&args).expect_err("nothing filters loopback");
        assert!(err.contains("not confirmed within 1 s") && err.contains("reached this pod"), "{err}");
    }

    /// Asked for another address than the one it sees, the canary connects nowhere.
    #[test]
    fn the_canary_connects_back_only_to_whoever_asked() {
        let (open, denied) = (free_port(), free_port());
        std::thread::spawn(move || canary(open, denied));
        let deadline = Instant::now() + Duration::from_secs(5);
        let ask = |line: &str| -> Option<String> {
            let conn = TcpStream::connect(("127.0.0.1", open)).ok()?;
            (&conn).write_all(line.as_bytes()).ok()?;
            let mut reply = String::new();
            BufReader::new(&conn).read_line(&mut reply).ok()?;
            Some(reply)
        };
        let mut reply = None;
        while reply.is_none() && Instant::now() < deadline {
            reply = ask(&format!("ingress {} 10.9.9.9\n", free_port()));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(reply.as_deref(), Some("translated\n"));
        assert_eq!(ask("connect 10.0.0.1 443\n").as_deref(), Some("error: send `ingress PORT ADDRESS`\n"));
    }

    /// A canary that is not there is no evidence of isolation.
    #[test]
    fn a_missing_canary_is_not_isolation() {
        let args = GateArgs {
            canary: "127.0.0.1".parse().expect("ip"),
            open: free_port(),
            denied: free_port(),
            listen: free_port(),
            max_wait: Duration::from_millis(200),
        };
        match look(&args) {
            Look::Open(why) => assert!(why.contains("does not answer"), "{why}"),
            Look::Isolated => panic!("refusals from a canary that is down passed the gate"),
        }
        assert!(gate(&args).is_err());
    }
}
