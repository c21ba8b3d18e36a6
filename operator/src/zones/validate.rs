//! The checks of a zone that its schema cannot make: label syntax of the node selector, and the
//! address sets of its networks. Shared by the admission webhook and the zone controller.

use crate::{
    api::{ZoneKind, ZoneSpec},
    cidr, labels,
};

/// Checks a zone's spec; the message names the field.
pub fn validate(spec: &ZoneSpec) -> Result<(), String> {
    if spec.node_selector.is_empty() {
        return Err("spec.nodeSelector: name at least one label, or the zone's pods could run on any node".into());
    }
    for (k, v) in &spec.node_selector {
        labels::check_key(k).map_err(|e| format!("spec.nodeSelector: {e}"))?;
        labels::check_value(v).map_err(|e| format!("spec.nodeSelector: {e}"))?;
    }
    for (field, list) in [("egress", &spec.egress), ("ingress", &spec.ingress)] {
        let nets = list
            .iter()
            .enumerate()
            .map(|(i, c)| cidr::parse(c).map_err(|e| format!("spec.{field}[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.kind != ZoneKind::Intranet {
            continue;
        }
        if let Some(family) = cidr::covers_an_address_space(&nets) {
            return Err(format!(
                "spec.{field}: together these ranges cover the whole {family} address space, a default route in pieces; an Intranet zone (政务内网) reaches no Internet"
            ));
        }
        if !spec.allow_public_ranges
            && let Some((i, n)) = nets.iter().enumerate().find(|(_, n)| !n.is_private())
        {
            return Err(format!(
                "spec.{field}[{i}]: {n} is outside private address space; an Intranet zone lists private ranges only, unless spec.allowPublicRanges is true"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A zone spec of this kind, node selector and egress, the rest as the schema defaults it
    /// (the one fixture the zone and gateway tests share).
    pub(crate) fn zone(kind: ZoneKind, selector: &[(&str, &str)], egress: &[&str]) -> ZoneSpec {
        ZoneSpec {
            kind,
            node_selector: selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            taint: None,
            egress: egress.iter().map(|s| s.to_string()).collect(),
            ingress: vec![],
            allow_public_ranges: false,
            allowed_service_types: vec![],
            min_security_level: 3,
        }
    }

    #[test]
    fn a_zone_must_select_its_nodes_with_valid_labels() {
        assert!(validate(&zone(ZoneKind::Extranet, &[("zhengyun.io/zone", "extranet")], &[])).is_ok());
        let err = validate(&zone(ZoneKind::Extranet, &[], &[])).unwrap_err();
        assert!(err.starts_with("spec.nodeSelector"), "{err}");
        let err = validate(&zone(ZoneKind::Extranet, &[("bad key", "x")], &[])).unwrap_err();
        assert!(err.contains("spec.nodeSelector") && err.contains("bad key"), "{err}");
        let err = validate(&zone(ZoneKind::Extranet, &[("zone", "not ok")], &[])).unwrap_err();
        assert!(err.contains("label value"), "{err}");
    }

    #[test]
    fn an_intranet_reaches_no_internet_even_in_pieces() {
        let sel = &[("zhengyun.io/zone", "intranet")];
        assert!(validate(&zone(ZoneKind::Intranet, sel, &["10.10.0.0/16"])).is_ok());
        let err = validate(&zone(ZoneKind::Intranet, sel, &["0.0.0.0/1", "128.0.0.0/1"])).unwrap_err();
        assert!(err.contains("whole IPv4 address space"), "{err}");
        let err = validate(&zone(ZoneKind::Intranet, sel, &["59.255.0.0/16"])).unwrap_err();
        assert!(err.contains("spec.egress[0]") && err.contains("allowPublicRanges"), "{err}");
        let mut allowed = zone(ZoneKind::Intranet, sel, &["59.255.0.0/16"]);
        allowed.allow_public_ranges = true;
        assert!(validate(&allowed).is_ok());
        allowed.egress = vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()];
        assert!(validate(&allowed).is_err(), "allowing public ranges never allows all of them");
        // The Internet access zone may reach the Internet.
        assert!(validate(&zone(ZoneKind::InternetAccess, sel, &["0.0.0.0/0"])).is_ok());
    }
}
