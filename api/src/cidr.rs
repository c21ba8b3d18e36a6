//! CIDR arithmetic for the rules about outside networks and gateways.
//!
//! The API server's CEL `cidr()` library checks one range at a time; the rules that matter here
//! are about sets (does a list of ranges cover the whole address space?) and containment (is a
//! gateway inside the zone's declared networks?), so they are pure functions over this type.

use std::net::IpAddr;

/// An IPv4 or IPv6 network, both held as 128-bit numbers (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    pub v6: bool,
    /// The first address, with the host bits cleared.
    pub start: u128,
    pub prefix: u8,
}

impl Net {
    fn bits(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    /// The last address in the network.
    pub fn end(&self) -> u128 {
        let host = u32::from(self.bits() - self.prefix);
        if host >= 128 { u128::MAX } else { self.start | ((1u128 << host) - 1) }
    }

    /// How many addresses the network holds (saturating at `u128::MAX`).
    pub fn size(&self) -> u128 {
        let host = u32::from(self.bits() - self.prefix);
        if host >= 128 { u128::MAX } else { 1u128 << host }
    }

    /// Whether `other` lies wholly inside this network.
    pub fn contains(&self, other: &Net) -> bool {
        self.v6 == other.v6 && self.start <= other.start && other.end() <= self.end()
    }

    /// Whether the network lies inside private address space: RFC 1918, shared address space
    /// (RFC 6598, common on government backbones) and IPv6 unique local addresses.
    pub fn is_private(&self) -> bool {
        const PRIVATE: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"];
        PRIVATE.iter().filter_map(|p| parse(p).ok()).any(|p| p.contains(self))
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = if self.v6 {
            IpAddr::from(self.start.to_be_bytes())
        } else {
            IpAddr::from((self.start as u32).to_be_bytes())
        };
        write!(f, "{addr}/{}", self.prefix)
    }
}

/// Parses `a.b.c.d/n` or `x::/n`. Host bits must be zero, as Kubernetes requires of ipBlocks.
pub fn parse(cidr: &str) -> Result<Net, String> {
    let (addr, len) = cidr.split_once('/').ok_or_else(|| format!("'{cidr}' is not a CIDR (address/prefix)"))?;
    let addr: IpAddr = addr.parse().map_err(|_| format!("'{cidr}' does not start with an IP address"))?;
    let prefix: u8 = len.parse().map_err(|_| format!("'{cidr}' has no valid prefix length"))?;
    let (v6, start, bits) = match addr {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32u8),
        IpAddr::V6(a) => (true, u128::from(a), 128u8),
    };
    if prefix > bits {
        return Err(format!("'{cidr}' has a prefix longer than {bits} bits"));
    }
    let net = Net { v6, start, prefix };
    let host = u32::from(bits - prefix);
    let mask = if host >= 128 { u128::MAX } else { (1u128 << host) - 1 };
    if start & mask != 0 {
        return Err(format!("'{cidr}' has host bits set; write {}", Net { start: start & !mask, ..net }));
    }
    Ok(net)
}

/// Whether the networks together cover every address of one family (IPv4 or IPv6), as
/// `0.0.0.0/1` + `128.0.0.0/1` do. Returns the family's name when they do.
pub fn covers_an_address_space(nets: &[Net]) -> Option<&'static str> {
    for (v6, name, last) in [(false, "IPv4", u128::from(u32::MAX)), (true, "IPv6", u128::MAX)] {
        let mut family: Vec<(u128, u128)> = nets.iter().filter(|n| n.v6 == v6).map(|n| (n.start, n.end())).collect();
        family.sort_unstable();
        // Walk the sorted ranges; `next` is the first address not yet covered.
        let mut next: Option<u128> = Some(0);
        for (start, end) in family {
            let Some(n) = next else { break };
            if start > n {
                break;
            }
            next = if end >= n { end.checked_add(1) } else { Some(n) };
        }
        match next {
            None => return Some(name),
            Some(n) if n > last => return Some(name),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Net> {
        list.iter().map(|c| parse(c).unwrap_or(Net { v6: false, start: 0, prefix: 32 })).collect()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse("10.0.0.0/8").map(|n| n.size()), Ok(1 << 24));
        assert_eq!(parse("10.200.0.10/32").map(|n| n.to_string()), Ok("10.200.0.10/32".into()));
        assert_eq!(parse("::/0").map(|n| n.size()), Ok(u128::MAX));
        assert!(parse("10.0.0.1/8").unwrap_err().contains("write 10.0.0.0/8"));
        assert!(parse("10.0.0.0/33").is_err());
        assert!(parse("10.0.0.0").is_err());
        assert!(parse("ten/8").is_err());
    }

    #[test]
    fn containment_and_private_space() {
        let [a, b, c] = [parse("10.10.0.0/16"), parse("10.10.3.0/24"), parse("10.11.0.0/24")].map(|r| r.ok());
        let (Some(a), Some(b), Some(c)) = (a, b, c) else { panic!("parse") };
        assert!(a.contains(&b) && !a.contains(&c) && !b.contains(&a));
        assert!(a.is_private());
        assert!(!nets(&["59.255.0.0/16"])[0].is_private(), "the extranet's public allocation is not private");
        assert!(nets(&["fd00::/8"])[0].is_private());
        assert!(!nets(&["0.0.0.0/0"])[0].is_private());
    }

    #[test]
    fn a_set_of_ranges_covering_everything_is_found() {
        assert_eq!(covers_an_address_space(&nets(&["0.0.0.0/0"])), Some("IPv4"));
        assert_eq!(covers_an_address_space(&nets(&["0.0.0.0/1", "128.0.0.0/1"])), Some("IPv4"));
        assert_eq!(
            covers_an_address_space(&nets(&["128.0.0.0/2", "0.0.0.0/1", "192.0.0.0/2", "10.0.0.0/8"])),
            Some("IPv4")
        );
        assert_eq!(covers_an_address_space(&nets(&["::/1", "8000::/1"])), Some("IPv6"));
        assert_eq!(covers_an_address_space(&nets(&["0.0.0.0/1", "128.0.0.0/2"])), None);
        assert_eq!(covers_an_address_space(&nets(&["0.0.0.0/1", "128.0.0.1/32", "192.0.0.0/2"])), None);
        assert_eq!(covers_an_address_space(&nets(&["10.0.0.0/8", "::/1"])), None);
        assert_eq!(covers_an_address_space(&[]), None);
    }
}
