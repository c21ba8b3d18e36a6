//! 国密 certificates as Kubernetes resources: the issuer controllers (SmIssuer,
//! SmClusterIssuer) and the SmCertificate controller. Key generation and signing go through
//! the context's [`crate::pki::keystore::KeyStore`], the seam a GM/T 0018 cipher machine fills.

pub(crate) mod build;
pub mod issuers;
pub mod metrics;
pub mod reconcile;

/// Whether a department's SmClusterIssuer may sign for a namespace: an issuer without a
/// department signs for all; one with a department only for namespaces of that department's
/// tenants, and of the departments in `below` (those under it in the tree, when the issuer
/// signs for them). The webhook and the controller both ask this, so they never disagree.
pub fn department_allows(
    issuer: &str,
    issuer_department: Option<&str>,
    below: &[String],
    namespace: &str,
    namespace_department: Option<&str>,
) -> Result<(), String> {
    match issuer_department {
        Some(d)
            if namespace_department != Some(d)
                && !namespace_department.is_some_and(|n| below.iter().any(|b| b == n)) =>
        {
            Err(format!(
                "spec.issuerRef: SmClusterIssuer {issuer:?} is department {d}'s CA{}; namespace {namespace} belongs to {}",
                if below.is_empty() { String::new() } else { format!(" (and {}'s)", below.join(", ")) },
                namespace_department.map_or("no department".to_string(), |n| format!("department {n}"))
            ))
        }
        _ => Ok(()),
    }
}

/// The departments below `department` in the tree, when `signs_below`: who else may use a
/// department's CA.
pub fn below(
    department: Option<&str>,
    signs_below: bool,
    departments: &[&crate::api::department::Department],
) -> Vec<String> {
    let Some(top) = department.filter(|_| signs_below) else { return Vec::new() };
    crate::departments::budget::subtree(top, departments).into_iter().filter(|c| *c != top).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_department_ca_signs_only_for_its_department() {
        use super::department_allows as allows;
        assert!(allows("ca", None, &[], "x", None).is_ok());
        assert!(allows("ca", Some("D1"), &[], "d1-web", Some("D1")).is_ok());
        let no = allows("ca", Some("D1"), &[], "d2-web", Some("D2")).expect_err("refused");
        assert!(no.contains("spec.issuerRef") && no.contains("department D2"), "{no}");
        assert!(allows("ca", Some("D1"), &[], "default", None).is_err());
        // A city's CA that signs below: its county's namespaces may use it, no one beside.
        let county = ["TH".to_string()];
        assert!(allows("ca", Some("GZ"), &county, "th-web", Some("TH")).is_ok());
        let no = allows("ca", Some("GZ"), &county, "sz-web", Some("SZ")).expect_err("beside");
        assert!(no.contains("(and TH's)") && no.contains("department SZ"), "{no}");
    }
}
