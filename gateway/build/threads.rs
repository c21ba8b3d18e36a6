//! Whether the Tongsuo whose headers are in a directory was configured with threads.
//!
//! Included by `build.rs` (which refuses to build without them) and by the test that shows it
//! refusing; it needs only the `cc` crate, to run the C preprocessor over Tongsuo's own headers,
//! so the answer is the one the compiler sees, not a guess at the header's text.

use std::path::Path;

/// The C source asked of the preprocessor: an `#error` when threads are off.
const CHECK: &str = "#include <openssl/opensslconf.h>\n\
#ifndef OPENSSL_THREADS\n\
#error \"zhengyun: OPENSSL_THREADS is not defined\"\n\
#endif\n";

/// Ok when `include/openssl/opensslconf.h` defines OPENSSL_THREADS; otherwise the reason.
/// `build` is a `cc::Build` already set up for the target (in a build script, `cc::Build::new()`).
pub fn check(mut build: cc::Build, include: &Path, scratch: &Path) -> Result<(), String> {
    let source = scratch.join("zhengyun-tongsuo-threads.c");
    std::fs::write(&source, CHECK).map_err(|e| format!("writing {}: {e}", source.display()))?;
    match build.include(include).file(&source).cargo_metadata(false).warnings(false).try_expand() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "the Tongsuo in {} was configured without threads (OPENSSL_THREADS is not defined in \
             openssl/configuration.h): its locks would be no-ops while the gateway's tokio workers \
             share its session cache and error queue, which crashes under concurrent handshakes. \
             A static build must link the Tongsuo that hack/build-tongsuo-lib.sh makes (see \
             docs/gateway.md, 'Building the gateway'); the preprocessor said: {e}",
            include.display()
        )),
    }
}
