//! Refuses to build zhengyun-gateway against a Tongsuo configured without threads (issue 28):
//! tongsuo-src drops threads when `-static` reaches Tongsuo's Configure, and the gateway then
//! crashed under concurrent handshakes. tongsuo-sys says where the headers it binds are
//! (`DEP_OPENSSL_INCLUDE`, as it `links = "openssl"`).

#![forbid(unsafe_code)]

#[path = "build/threads.rs"]
mod threads;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/threads.rs");
    println!("cargo:rerun-if-env-changed=DEP_OPENSSL_INCLUDE");
    let Some(include) = std::env::var_os("DEP_OPENSSL_INCLUDE").map(std::path::PathBuf::from) else {
        eprintln!("zhengyun-gateway: tongsuo-sys did not say where Tongsuo's headers are (DEP_OPENSSL_INCLUDE)");
        std::process::exit(1);
    };
    println!("cargo:rerun-if-changed={}", include.join("openssl/configuration.h").display());
    let scratch = std::env::var_os("OUT_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    if let Err(why) = threads::check(cc::Build::new(), &include, &scratch) {
        eprintln!("zhengyun-gateway: {why}");
        println!("cargo:warning=zhengyun-gateway: {why}");
        std::process::exit(1);
    }
}
