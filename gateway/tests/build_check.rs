//! The build script's refusal of a Tongsuo without threads (gateway/build.rs, issue 28), on
//! headers shaped like Tongsuo's: the check runs the C preprocessor over them as the build does.
//! The build of the gateway itself shows the other half: it passes only because the Tongsuo it
//! links defines OPENSSL_THREADS (hack/build-gateway.sh, and the debug build's tongsuo-src).

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../build/threads.rs"]
mod threads;

use std::path::{Path, PathBuf};

/// An include directory whose `openssl/opensslconf.h` includes a `configuration.h` that does or
/// does not define OPENSSL_THREADS, as Tongsuo's Configure writes it.
fn headers(dir: &Path, with_threads: bool) -> PathBuf {
    let include = dir.join("include");
    std::fs::create_dir_all(include.join("openssl")).unwrap();
    std::fs::write(
        include.join("openssl/opensslconf.h"),
        "#ifndef OPENSSL_OPENSSLCONF_H\n# define OPENSSL_OPENSSLCONF_H\n# include <openssl/configuration.h>\n#endif\n",
    )
    .unwrap();
    let threads = if with_threads {
        "# ifndef OPENSSL_THREADS\n#  define OPENSSL_THREADS\n# endif\n"
    } else {
        "# ifndef OPENSSL_NO_THREADS\n#  define OPENSSL_NO_THREADS\n# endif\n"
    };
    std::fs::write(
        include.join("openssl/configuration.h"),
        format!("# ifndef OPENSSL_NO_SSL3\n#  define OPENSSL_NO_SSL3\n# endif\n{threads}"),
    )
    .unwrap();
    include
}

fn build() -> cc::Build {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let mut b = cc::Build::new();
    b.target(&triple).host(&triple).opt_level(0).debug(false);
    b
}

#[test]
fn a_tongsuo_without_threads_is_refused_and_one_with_them_passes() {
    let dir = std::env::temp_dir().join(format!("zhengyun-build-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let without = headers(&dir.join("without"), false);
    let why = threads::check(build(), &without, &dir).expect_err("headers without OPENSSL_THREADS pass");
    assert!(why.contains("configured without threads") && why.contains("OPENSSL_THREADS"), "{why}");
    assert!(why.contains("hack/build-tongsuo-lib.sh"), "the refusal says what to do: {why}");
    let with = headers(&dir.join("with"), true);
    threads::check(build(), &with, &dir).expect("headers with OPENSSL_THREADS are refused");
    let _ = std::fs::remove_dir_all(&dir);
}
