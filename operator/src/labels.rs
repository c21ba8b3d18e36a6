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
