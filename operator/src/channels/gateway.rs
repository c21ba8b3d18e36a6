//! The zone gateway of a cross-zone channel: one device (网闸 or exchange proxy), so one host or
//! a small range, and for an Intranet zone an address inside the networks the zone declares.
//! A channel may never turn an intranet tenant's gateway into a default route.

use crate::{
    api::{ChannelGateway, Zone, ZoneKind},
    cidr,
};

/// The most addresses a gateway range may hold.
pub const MAX_ADDRESSES: u128 = 256;

/// Checks a gateway against the zones of the channel's two ends.
pub fn check(gateway: &ChannelGateway, zones: &[&Zone]) -> Result<(), String> {
    let net = cidr::parse(&gateway.cidr).map_err(|e| format!("spec.gateway.cidr: {e}"))?;
    if net.size() > MAX_ADDRESSES {
        return Err(format!(
            "spec.gateway.cidr: {net} is not a gateway: name one host (/32, /128) or a small range of at most {MAX_ADDRESSES} addresses"
        ));
    }
    for zone in zones.iter().filter(|z| z.spec.kind == ZoneKind::Intranet) {
        let name = zone.metadata.name.as_deref().unwrap_or("?");
        let declared: Vec<cidr::Net> =
            zone.spec.egress.iter().chain(&zone.spec.ingress).filter_map(|c| cidr::parse(c).ok()).collect();
        if !declared.iter().any(|d| d.contains(&net)) {
            let list = zone.spec.egress.iter().chain(&zone.spec.ingress).cloned().collect::<Vec<_>>().join(", ");
            return Err(format!(
                "spec.gateway.cidr: {net} is not inside the networks Intranet zone {name} declares ({}); the gateway must be one of them",
                if list.is_empty() { "none".to_string() } else { list }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(kind: ZoneKind, egress: &[&str]) -> Zone {
        let spec = crate::zones::validate::tests::zone(kind, &[("zhengyun.io/zone", "intranet")], egress);
        Zone::new("intranet", spec)
    }

    fn gw(cidr: &str) -> ChannelGateway {
        ChannelGateway { cidr: cidr.into() }
    }

    #[test]
    fn an_intranet_gateway_is_a_host_inside_the_zones_networks() {
        let intranet = zone(ZoneKind::Intranet, &["10.200.0.0/24"]);
        let extranet = zone(ZoneKind::Extranet, &[]);
        assert!(check(&gw("10.200.0.10/32"), &[&extranet, &intranet]).is_ok());
        assert!(check(&gw("10.200.0.0/24"), &[&intranet]).is_ok(), "a small declared range");
        let err = check(&gw("0.0.0.0/0"), &[&extranet, &intranet]).unwrap_err();
        assert!(err.contains("is not a gateway"), "{err}");
        let err = check(&gw("10.0.0.0/16"), &[&extranet]).unwrap_err();
        assert!(err.contains("at most 256"), "{err}");
        let err = check(&gw("10.99.0.10/32"), &[&intranet]).unwrap_err();
        assert!(err.contains("not inside the networks Intranet zone intranet declares (10.200.0.0/24)"), "{err}");
        let err = check(&gw("10.99.0.10/32"), &[&zone(ZoneKind::Intranet, &[])]).unwrap_err();
        assert!(err.contains("declares (none)"), "{err}");
        assert!(check(&gw("10.99.0.10/32"), &[&extranet]).is_ok(), "an extranet gateway is any one host");
    }
}
