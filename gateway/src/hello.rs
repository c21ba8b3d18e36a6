//! The first bytes of a connection, read before any TLS stack sees them: which protocol the
//! client speaks and, for TLS, whether it offers the RFC 8998 suites.
//!
//! Routing here is what keeps TLCP away from a TLS context: Tongsuo's `enable_ntls()` on a shared
//! context crashes when a client closes without `close_notify`, so each protocol gets a context
//! that speaks only it. This is the only code of ours that parses bytes a stranger sent before
//! authentication, so it is total over arbitrary input (property-tested) and reads only as far
//! as the cipher suite list.

/// TLS record type of handshake messages.
const HANDSHAKE: u8 = 0x16;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 0x01;
/// TLCP (GB/T 38636-2020) protocol version.
const TLCP: [u8; 2] = [0x01, 0x01];
/// RFC 8998 suites: TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3.
const SM_SUITES: [[u8; 2]; 2] = [[0x00, 0xC6], [0x00, 0xC7]];
/// The largest TLS plaintext record (RFC 8446 §5.1).
const MAX_RECORD: usize = 16_384;
/// Bytes of a record header.
const HEADER: usize = 5;

/// What a connection's first record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// A TLCP handshake (record version 1.1).
    Tlcp,
    /// A TLS ClientHello; `offers_sm` when its suites include an RFC 8998 suite.
    Tls { offers_sm: bool },
}

/// Why a connection is refused before any TLS stack reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("unsupported record version {0:#06x}")]
    Version(u16),
    #[error("record length {0} out of range")]
    Length(usize),
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("malformed ClientHello")]
    Malformed,
}

impl Refusal {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotHandshake => "not_handshake",
            Refusal::Version(_) => "bad_version",
            Refusal::Length(_) => "bad_length",
            Refusal::NotClientHello => "not_client_hello",
            Refusal::Malformed => "malformed",
        }
    }
}

/// The outcome of looking at the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// Read until the buffer holds this many bytes, then ask again.
    Need(usize),
    Hello(Hello),
    Refused(Refusal),
}

/// Classifies a connection by its first bytes. Never asks for more than one full record.
pub fn classify(buf: &[u8]) -> Classified {
    let Some(&kind) = buf.first() else { return Classified::Need(1) };
    if kind != HANDSHAKE {
        return Classified::Refused(Refusal::NotHandshake);
    }
    if buf.len() < 3 {
        return Classified::Need(3);
    }
    let version = [buf[1], buf[2]];
    if version == TLCP {
        return Classified::Hello(Hello::Tlcp);
    }
    // Record versions 3.1–3.3 (clients send 3.1 or 3.3 for any TLS); 3.0 is SSL 3, refused.
    if version[0] != 0x03 || !(0x01..=0x03).contains(&version[1]) {
        return Classified::Refused(Refusal::Version(u16::from_be_bytes(version)));
    }
    if buf.len() < HEADER {
        return Classified::Need(HEADER);
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len == 0 || len > MAX_RECORD {
        return Classified::Refused(Refusal::Length(len));
    }
    if buf.len() < HEADER + len {
        return Classified::Need(HEADER + len);
    }
    match offers_sm(&buf[HEADER..HEADER + len]) {
        Ok(offers_sm) => Classified::Hello(Hello::Tls { offers_sm }),
        Err(r) => Classified::Refused(r),
    }
}

/// Reads a ClientHello (possibly the first fragment of one) up to its cipher suites.
fn offers_sm(fragment: &[u8]) -> Result<bool, Refusal> {
    let mut r = Reader(fragment);
    if r.u8()? != CLIENT_HELLO {
        return Err(Refusal::NotClientHello);
    }
    r.take(3)?; // handshake length: the message may continue in the next record
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    let session_id = usize::from(r.u8()?);
    if session_id > 32 {
        return Err(Refusal::Malformed);
    }
    r.take(session_id)?;
    let suites_len = usize::from(u16::from_be_bytes([r.u8()?, r.u8()?]));
    if suites_len == 0 || suites_len % 2 != 0 {
        return Err(Refusal::Malformed);
    }
    let suites = r.take(suites_len)?;
    Ok(suites.chunks_exact(2).any(|s| SM_SUITES.iter().any(|sm| s == sm)))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if self.0.len() < n {
            return Err(Refusal::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Refusal> {
        self.take(1).map(|b| b[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A ClientHello record with these suites, as a client would send it.
    fn client_hello(record_version: [u8; 2], suites: &[[u8; 2]]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(32);
        body.extend([9u8; 32]);
        body.extend(u16::try_from(suites.len() * 2).unwrap_or(0).to_be_bytes());
        for s in suites {
            body.extend(s);
        }
        body.extend([1, 0]); // compression: null
        body.extend([0, 0]); // no extensions
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
        msg.extend(body);
        let mut rec = vec![HANDSHAKE, record_version[0], record_version[1]];
        rec.extend(u16::try_from(msg.len()).unwrap_or(0).to_be_bytes());
        rec.extend(msg);
        rec
    }

    #[test]
    fn tlcp_is_known_by_three_bytes() {
        assert_eq!(classify(&[0x16, 0x01, 0x01]), Classified::Hello(Hello::Tlcp));
        assert_eq!(classify(&[0x16, 0x01]), Classified::Need(3));
    }

    #[test]
    fn tls_hello_says_whether_it_offers_sm_suites() {
        let sm = client_hello([3, 1], &[[0x13, 0x01], [0x00, 0xC6]]);
        assert_eq!(classify(&sm), Classified::Hello(Hello::Tls { offers_sm: true }));
        let ccm = client_hello([3, 3], &[[0x00, 0xC7]]);
        assert_eq!(classify(&ccm), Classified::Hello(Hello::Tls { offers_sm: true }));
        let std = client_hello([3, 1], &[[0x13, 0x01], [0xC0, 0x2F]]);
        assert_eq!(classify(&std), Classified::Hello(Hello::Tls { offers_sm: false }));
        // Byte-aligned but not suite-aligned: 0x00C6 straddling two suites is not offered.
        let straddle = client_hello([3, 1], &[[0xC0, 0x00], [0xC6, 0x13]]);
        assert_eq!(classify(&straddle), Classified::Hello(Hello::Tls { offers_sm: false }));
    }

    #[test]
    fn waits_for_the_whole_first_record() {
        let sm = client_hello([3, 1], &[[0x00, 0xC6]]);
        assert_eq!(classify(&sm[..4]), Classified::Need(5));
        assert_eq!(classify(&sm[..20]), Classified::Need(sm.len()));
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Classified::Refused(Refusal::NotHandshake));
        assert_eq!(classify(&[0x16, 0x03, 0x00]), Classified::Refused(Refusal::Version(0x0300)));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0xff, 0xff]), Classified::Refused(Refusal::Length(0xffff)));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0, 1, 2]), Classified::Refused(Refusal::NotClientHello));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0, 2, 1, 0]), Classified::Refused(Refusal::Malformed));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(5_000)))]

        /// Any byte string gets an answer, and "need more" always asks for more than it has and
        /// never more than one record.
        #[test]
        fn total_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Classified::Need(n) = classify(&bytes) {
                prop_assert!(n > bytes.len());
                prop_assert!(n <= HEADER + MAX_RECORD);
            }
        }

        /// Arbitrary bytes after a valid record header, and prefixes of real hellos, never panic
        /// and never mistake a hello's SM offer.
        #[test]
        fn prefixes_of_hellos(cut in 0usize..200, extra in proptest::collection::vec(any::<u8>(), 0..64),
                              sm in any::<bool>()) {
            let suites: &[[u8; 2]] = if sm { &[[0x13, 0x01], [0x00, 0xC6]] } else { &[[0x13, 0x01]] };
            let mut hello = client_hello([3, 1], suites);
            let full = hello.len();
            hello.extend(extra);
            match classify(&hello[..cut.min(hello.len())]) {
                Classified::Hello(Hello::Tls { offers_sm }) => {
                    prop_assert!(cut >= full);
                    prop_assert_eq!(offers_sm, sm);
                }
                Classified::Need(n) => prop_assert!(n <= full),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        /// Fuzzed bodies behind a plausible header are read without panicking.
        #[test]
        fn arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 1..400)) {
            let mut rec = vec![HANDSHAKE, 3, 1];
            rec.extend(u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
            rec.extend(&body);
            let c = classify(&rec);
            let decided = matches!(c, Classified::Hello(_) | Classified::Refused(_));
            prop_assert!(decided);
        }
    }
}
