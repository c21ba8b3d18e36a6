//! Writes a root CA and a server TLCP pair for bench/gateway.sh: `bench-certs DIR` leaves
//! DIR/ca/ca.crt and DIR/server/{tls.crt,tls.key,enc.crt,enc.key,ca.crt}.

#![forbid(unsafe_code)]

#[path = "../tests/support/pki.rs"]
mod pki;

fn main() {
    let Some(dir) = std::env::args().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("bench-certs DIR");
        std::process::exit(2);
    };
    let pki = pki::Pki::new(&dir.join("ca"), "zhengyun bench root");
    pki.pair(&dir.join("server"), "localhost", true);
}
