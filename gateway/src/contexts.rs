//! TLS contexts built from key material: one per protocol, so a TLCP client never reaches a
//! context with `enable_ntls()` (see `hello`), and standard clients never see the SM2 chain.

use std::fmt;

use tongsuo::{
    pkey::{PKey, Private},
    ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion},
    x509::{X509, store::X509StoreBuilder},
};

use crate::material::Material;

/// TLCP suites (GB/T 38636-2020) without client certificates; ECDHE needs the client's enc
/// certificate, so those are added only when clients are asked for certificates.
pub const TLCP_ECC: &str = "ECC-SM2-SM4-GCM-SM3:ECC-SM2-SM4-CBC-SM3";
pub const TLCP_ECDHE: &str = "ECDHE-SM2-SM4-GCM-SM3:ECDHE-SM2-SM4-CBC-SM3";
/// RFC 8998 suites.
pub const TLS13_SM: &str = "TLS_SM4_GCM_SM3:TLS_SM4_CCM_SM3";

/// A protocol a gateway may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Protocol {
    /// TLCP (GB/T 38636-2020) with the sign + enc pair.
    Tlcp,
    /// TLS 1.3 with the RFC 8998 suites and the SM2 sign certificate.
    #[value(name = "tls13-sm")]
    Tls13Sm,
    /// TLS 1.2/1.3 with a standard (ECDSA or RSA) certificate, for ordinary clients.
    Tls,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tlcp => "tlcp",
            Protocol::Tls13Sm => "tls13-sm",
            Protocol::Tls => "tls",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    None,
    /// Asked for, verified when sent.
    Optional,
    /// A handshake without a valid client certificate fails.
    Required,
}

/// What the gateway serves.
#[derive(Debug, Clone)]
pub struct Policy {
    pub protocols: Vec<Protocol>,
    pub client_auth: ClientAuth,
}

impl Policy {
    pub fn serves(&self, p: Protocol) -> bool {
        self.protocols.contains(&p)
    }
}

/// A certificate being served, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `sign`, `enc` or `standard`.
    pub role: &'static str,
    pub serial: String,
    pub subject: String,
    /// Seconds since the epoch.
    pub not_after: i64,
}

/// One context per protocol served.
pub struct Contexts {
    pub tlcp: Option<SslContext>,
    pub tls13_sm: Option<SslContext>,
    pub tls: Option<SslContext>,
    pub served: Vec<Served>,
}

impl Contexts {
    pub fn get(&self, p: Protocol) -> Option<&SslContext> {
        match p {
            Protocol::Tlcp => self.tlcp.as_ref(),
            Protocol::Tls13Sm => self.tls13_sm.as_ref(),
            Protocol::Tls => self.tls.as_ref(),
        }
    }
}

/// Why contexts could not be built; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}: {why}")]
    Material { file: &'static str, why: String },
    #[error("{0} is served but {1} is missing")]
    Missing(Protocol, &'static str),
    #[error("TLS stack: {0}")]
    Stack(#[from] tongsuo::error::ErrorStack),
}

fn chain(pem: &str, file: &'static str) -> Result<Vec<X509>, BuildError> {
    let certs = X509::stack_from_pem(pem.as_bytes()).map_err(|e| BuildError::Material { file, why: e.to_string() })?;
    if certs.is_empty() {
        return Err(BuildError::Material { file, why: "no certificate".into() });
    }
    Ok(certs)
}

fn key(pem: &str, file: &'static str) -> Result<PKey<Private>, BuildError> {
    PKey::private_key_from_pem(pem.as_bytes()).map_err(|e| BuildError::Material { file, why: e.to_string() })
}

/// Escapes an attribute value as RFC 4514 does, so `CN=a,O=b` cannot be forged by a CN.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A certificate subject as `TYPE=value,...` in the certificate's order, every attribute kept:
/// an unnamed type by its OID, a value that is not text as `#` and its hex.
pub fn subject_of(name: &tongsuo::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let ty = e.object().nid().short_name().map(str::to_string).unwrap_or_else(|_| e.object().to_string());
            let value = match e.data().as_utf8() {
                Ok(v) => escape_value(&v),
                Err(_) => format!("#{}", e.data().as_slice().iter().map(|b| format!("{b:02x}")).collect::<String>()),
            };
            format!("{ty}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn served(role: &'static str, cert: &X509) -> Served {
    let serial = cert.serial_number().to_bn().ok().and_then(|b| b.to_hex_str().ok()).map(|s| s.to_string());
    let subject = subject_of(cert.subject_name());
    let not_after = tongsuo::asn1::Asn1Time::from_unix(0)
        .ok()
        .and_then(|epoch| epoch.diff(cert.not_after()).ok())
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0);
    Served { role, serial: serial.unwrap_or_default(), subject, not_after }
}

/// Client certificate checks shared by every context.
fn client_auth(b: &mut SslContextBuilder, policy: &Policy, m: &Material) -> Result<(), BuildError> {
    let mode = match policy.client_auth {
        ClientAuth::None => return Ok(()),
        ClientAuth::Optional => SslVerifyMode::PEER,
        ClientAuth::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
    };
    let pem = m.client_ca.as_deref().ok_or(BuildError::Missing(Protocol::Tls, "the client CA bundle"))?;
    let mut store = X509StoreBuilder::new()?;
    for ca in chain(pem, "client CA bundle")? {
        // Named in the CertificateRequest, so a client holding certificates from several CAs
        // knows which one to send.
        b.add_client_ca(&ca)?;
        store.add_cert(ca)?;
    }
    // The bundle is the issuing CA itself, which may be an intermediate: it is the trust
    // anchor, so certificates of its sibling CAs under the same root do not pass.
    store.set_flags(tongsuo::x509::verify::X509VerifyFlags::PARTIAL_CHAIN)?;
    b.set_verify_cert_store(store.build())?;
    b.set_verify(mode);
    b.set_verify_depth(4);
    Ok(())
}

fn common(b: &mut SslContextBuilder, protocol: Protocol) -> Result<(), BuildError> {
    // Renegotiation is a known DoS lever; nothing we serve needs it. No session tickets: a
    // rotated key must not be undone by resumption of sessions from the old one.
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET | SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    // Resumed sessions are only accepted into the context that made them; with client
    // certificates, a resumption without this context is a fatal error in the TLS stack.
    b.set_session_id_context(format!("zhengyun-gateway/{protocol}").as_bytes())?;
    Ok(())
}

/// The certificates sent after the leaf: the chain as the Secret holds it, less any self-issued
/// one. A root is useless on the wire (a client that trusts it has it already, and one that does
/// not must not start trusting it because the server sent it) and costs every handshake its
/// bytes; zhengyun's Secrets, like cert-manager's, carry the issuing CA in `tls.crt` even when
/// that CA is the root.
fn sent_chain(certs: &[X509]) -> impl Iterator<Item = &X509> {
    certs.iter().skip(1).filter(|c| c.issued(c) != tongsuo::x509::X509VerifyResult::OK)
}

/// A key must be the one of its certificate, checked before a rotation replaces what works.
fn matching(cert: &X509, key: &PKey<Private>, file: &'static str) -> Result<(), BuildError> {
    let public = cert.public_key()?;
    if public.public_eq(key) {
        Ok(())
    } else {
        Err(BuildError::Material { file, why: "the key does not match its certificate".into() })
    }
}

fn tlcp(policy: &Policy, m: &Material) -> Result<(SslContext, Vec<Served>), BuildError> {
    let sign = chain(&m.sign_chain, "tls.crt")?;
    let enc_pem = m.enc_cert.as_deref().ok_or(BuildError::Missing(Protocol::Tlcp, "enc.crt"))?;
    let enc = chain(enc_pem, "enc.crt")?;
    let enc_key = key(m.enc_key.as_deref().ok_or(BuildError::Missing(Protocol::Tlcp, "enc.key"))?, "enc.key")?;
    let sign_key = key(&m.sign_key, "tls.key")?;
    matching(&sign[0], &sign_key, "tls.key")?;
    matching(&enc[0], &enc_key, "enc.key")?;
    let mut b = SslContextBuilder::new(SslMethod::ntls_server())?;
    // The NTLS state machine runs only with this flag; the context is reached only by hellos
    // that are TLCP (see `hello`), which keeps clear of the crash it causes on TLS streams.
    b.enable_ntls();
    common(&mut b, Protocol::Tlcp)?;
    let suites = match policy.client_auth {
        ClientAuth::None => TLCP_ECC.to_string(),
        _ => format!("{TLCP_ECC}:{TLCP_ECDHE}"),
    };
    b.set_cipher_list(&suites)?;
    b.set_sign_certificate(&sign[0])?;
    b.set_sign_private_key(&sign_key)?;
    b.set_enc_certificate(&enc[0])?;
    b.set_enc_private_key(&enc_key)?;
    for ca in sent_chain(&sign) {
        b.add_extra_chain_cert(ca.clone())?;
    }
    client_auth(&mut b, policy, m)?;
    Ok((b.build(), vec![served("sign", &sign[0]), served("enc", &enc[0])]))
}

fn tls13_sm(policy: &Policy, m: &Material) -> Result<(SslContext, Served), BuildError> {
    let sign = chain(&m.sign_chain, "tls.crt")?;
    let mut b = SslContextBuilder::new(SslMethod::tls_server())?;
    common(&mut b, Protocol::Tls13Sm)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_ciphersuites(TLS13_SM)?;
    b.set_groups_list("curveSM2")?;
    b.set_sigalgs_list("sm2sig_sm3")?;
    b.enable_sm_tls13_strict();
    b.set_certificate(&sign[0])?;
    let sign_key = key(&m.sign_key, "tls.key")?;
    b.set_private_key(&sign_key)?;
    b.check_private_key().map_err(|e| BuildError::Material { file: "tls.key", why: e.to_string() })?;
    for ca in sent_chain(&sign) {
        b.add_extra_chain_cert(ca.clone())?;
    }
    client_auth(&mut b, policy, m)?;
    Ok((b.build(), served("sign", &sign[0])))
}

fn tls(policy: &Policy, m: &Material) -> Result<(SslContext, Served), BuildError> {
    let pem = m.standard_chain.as_deref().ok_or(BuildError::Missing(Protocol::Tls, "the standard certificate"))?;
    let certs = chain(pem, "standard tls.crt")?;
    let k = key(
        m.standard_key.as_deref().ok_or(BuildError::Missing(Protocol::Tls, "the standard key"))?,
        "standard tls.key",
    )?;
    let mut b = SslContextBuilder::new(SslMethod::tls_server())?;
    common(&mut b, Protocol::Tls)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list("ECDHE+AESGCM:ECDHE+CHACHA20")?;
    b.set_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256")?;
    b.set_certificate(&certs[0])?;
    b.set_private_key(&k)?;
    b.check_private_key().map_err(|e| BuildError::Material { file: "standard tls.key", why: e.to_string() })?;
    for ca in sent_chain(&certs) {
        b.add_extra_chain_cert(ca.clone())?;
    }
    client_auth(&mut b, policy, m)?;
    Ok((b.build(), served("standard", &certs[0])))
}

/// Builds every context the policy serves, or none: a failure leaves the caller serving what
/// it served before.
pub fn build(policy: &Policy, m: &Material) -> Result<Contexts, BuildError> {
    let mut out = Contexts { tlcp: None, tls13_sm: None, tls: None, served: vec![] };
    if policy.serves(Protocol::Tlcp) {
        let (ctx, s) = tlcp(policy, m)?;
        out.tlcp = Some(ctx);
        out.served.extend(s);
    }
    if policy.serves(Protocol::Tls13Sm) {
        let (ctx, s) = tls13_sm(policy, m)?;
        out.tls13_sm = Some(ctx);
        if !out.served.iter().any(|x| x.role == "sign") {
            out.served.push(s);
        }
    }
    if policy.serves(Protocol::Tls) {
        let (ctx, s) = tls(policy, m)?;
        out.tls = Some(ctx);
        out.served.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_common_name_cannot_forge_another_attribute() {
        assert_eq!(escape_value("alice,O=admins"), "alice\\,O\\=admins");
        assert_eq!(escape_value(" #lead"), "\\ #lead");
        assert_eq!(escape_value("市大数据局"), "市大数据局");
    }
}
