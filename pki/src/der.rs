//! A minimal DER writer: just the types an X.509 certificate needs. Writing it ourselves keeps
//! the SM2 signature encoding under our control (a `SEQUENCE { r, s }`, which every 国密 stack
//! expects) instead of trusting a generic builder.

/// Tag and contents, length in between.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

pub fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

pub fn set(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &items.concat())
}

/// An unsigned big-endian integer (a leading zero is added when the high bit is set).
pub fn uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.is_empty() { vec![0] } else { trimmed };
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

pub fn small_int(n: u64) -> Vec<u8> {
    uint(&n.to_be_bytes())
}

pub fn boolean(b: bool) -> Vec<u8> {
    tlv(0x01, &[if b { 0xff } else { 0x00 }])
}

/// An object identifier from its dotted form (our constants only; panics never reach users).
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut body = Vec::new();
    if arcs.len() >= 2 {
        body.push((arcs[0] * 40 + arcs[1]) as u8);
        for &arc in &arcs[2..] {
            let mut chunk = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                chunk.insert(0, ((rest & 0x7f) as u8) | 0x80);
                rest >>= 7;
            }
            body.extend(chunk);
        }
    }
    tlv(0x06, &body)
}

pub fn octet_string(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

/// A BIT STRING with no unused bits.
pub fn bit_string(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(b);
    tlv(0x03, &v)
}

/// A named-bit BIT STRING (key usage): bit 0 is the most significant bit of the first byte,
/// trailing zero bits are dropped as DER requires.
pub fn named_bits(bits: &[usize]) -> Vec<u8> {
    let Some(&max) = bits.iter().max() else { return tlv(0x03, &[0]) };
    let nbytes = max / 8 + 1;
    let mut v = vec![0u8; nbytes];
    for &b in bits {
        v[b / 8] |= 0x80 >> (b % 8);
    }
    let unused = (7 - max % 8) as u8;
    let mut out = vec![unused];
    out.extend(v);
    tlv(0x03, &out)
}

pub fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// UTCTime for years before 2050, GeneralizedTime after, as RFC 5280 asks.
pub fn time(t: jiff::Timestamp) -> Vec<u8> {
    let z = t.to_zoned(jiff::tz::TimeZone::UTC);
    if z.year() < 2050 {
        tlv(0x17, z.strftime("%y%m%d%H%M%SZ").to_string().as_bytes())
    } else {
        tlv(0x18, z.strftime("%Y%m%d%H%M%SZ").to_string().as_bytes())
    }
}

/// `[n]` EXPLICIT.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// `[n]` IMPLICIT primitive.
pub fn implicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

/// Reads one TLV: `(tag, contents, rest)`. Enough to walk the certificates we parse.
pub fn next(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let l0 = *buf.get(1)? as usize;
    let (len, hdr) = if l0 < 0x80 {
        (l0, 2)
    } else {
        // Lengths past four bytes describe no certificate; refusing them keeps the sums below
        // from overflowing on hostile input (CA Secrets come from users).
        let n = l0 & 0x7f;
        if n > 4 {
            return None;
        }
        (buf.get(2..2 + n)?.iter().fold(0usize, |a, b| (a << 8) | *b as usize), 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, buf.get(hdr..end)?, buf.get(end..)?))
}

/// Reads one TLV that must carry `tag`: `(contents, rest)`.
pub fn expect(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = next(buf)?;
    (t == tag).then_some((body, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_standard_examples() {
        assert_eq!(oid("1.2.840.10045.2.1"), vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        assert_eq!(oid("1.2.156.10197.1.501"), vec![0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75]);
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0x00, 0x01]), vec![0x02, 0x01, 0x01]);
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
        // keyUsage digitalSignature (0) and keyEncipherment (2): 03 02 05 a0
        assert_eq!(named_bits(&[0, 2]), vec![0x03, 0x02, 0x05, 0xa0]);
        assert_eq!(boolean(true), vec![0x01, 0x01, 0xff]);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let long = octet_string(&[7u8; 300]);
        let doc = sequence(&[small_int(5), long.clone()]);
        let (body, rest) = expect(&doc, 0x30).expect("sequence");
        assert!(rest.is_empty());
        let (int, after) = expect(body, 0x02).expect("integer");
        assert_eq!(int, &[5]);
        let (tag, content, _) = next(after).expect("octets");
        assert_eq!((tag, content.len()), (0x04, 300));
        assert!(expect(&doc, 0x31).is_none(), "wrong tag");
        assert!(next(&doc[..doc.len() - 1]).is_none(), "truncated");
        assert!(next(&[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none(), "absurd length");
    }
}
