//! The labels by which zhengyun marks, finds and protects what it manages.

/// Standard label naming the manager; every object we create carries it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on our objects.
pub const MANAGER: &str = "zhengyun";
/// The tenant an object belongs to.
pub const TENANT: &str = "zhengyun.io/tenant";
/// The department code of the tenant.
pub const DEPARTMENT: &str = "zhengyun.io/department";
/// The zone the tenant runs in.
pub const ZONE: &str = "zhengyun.io/zone";
/// The tenant's 等保 level.
pub const SECURITY_LEVEL: &str = "zhengyun.io/security-level";
/// Set to `"true"` on namespaces a deleted `Retain` tenant left behind.
pub const ORPHANED: &str = "zhengyun.io/orphaned";
/// On a node: the computer room (机房) it is a server of.
pub const ROOM: &str = "zhengyun.io/room";
/// On a node: the department that owns its computer room.
pub const ROOM_DEPARTMENT: &str = "zhengyun.io/room-department";
/// On a node: its architecture, as the room checked it; on a namespace: the architecture its
/// tenant's pods need.
pub const ARCH: &str = "zhengyun.io/arch";
/// The node label the kubelet sets to the node's architecture.
pub const KUBE_ARCH: &str = "kubernetes.io/arch";
/// On a node: the labels and taint a room added (so letting it go removes those and no other).
pub const ROOM_ADDED: &str = "zhengyun.io/room-added";
/// On an exchange channel's policies: the channel they belong to.
pub const CHANNEL: &str = "zhengyun.io/channel";
/// On every object of a SecureGateway: the gateway's name.
pub const SECURE_GATEWAY: &str = "zhengyun.io/securegateway";

/// The field manager of every write the operator makes (Server-Side Apply and status).
pub const FIELD_MANAGER: &str = "zhengyun-operator";

/// Selector for everything the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

/// Selector for everything the operator manages for one tenant.
pub fn tenant_selector(tenant: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{TENANT}={tenant}")
}

fn is_name_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Checks a label key as the API server does: an optional DNS-subdomain prefix and a name.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(format!("label key '{key}': the prefix must be a lowercase DNS subdomain"));
    }
    if !is_name_segment(name) {
        return Err(format!(
            "label key '{key}': the name must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or 1-63 characters like a key's name.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_segment(value) {
        Ok(())
    } else {
        Err(format!(
            "label value '{value}' must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax_is_checked_as_the_api_server_does() {
        for ok in ["zone", "zhengyun.io/zone", "node-role.kubernetes.io/worker", "a_b.c"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "bad key", "-zone", "Zhengyun.IO/zone", "zhengyun.io/", "/zone", &"x".repeat(64)] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_value("").is_ok() && check_value("intranet").is_ok());
        assert!(check_value("in tranet").is_err() && check_value("-a").is_err());
    }
}
