//! The isolation gate: no tenant container runs before its pod's isolation is in force.
//!
//! A NetworkPolicy enforcer programs a new pod's rules a little after the pod has its address
//! (kube-router v2.1.0: 300–650 ms here), and until then the pod may send and receive anything.
//! With `--isolation-gate-image`, the webhook puts an init container first in every tenant pod
//! (`probe gate`, probe/src/gate.rs) that exits only once it has seen, by packets, both of its
//! directions closed against a canary (`probe canary`) that the operator runs on every node, and
//! refuses any pod or update that would drop, move or change it. docs/security.md says what it
//! proves and what it does not.
//!
//! - [`build`]: the pure builders (the gate container, the canary's DaemonSet, Service and policy);
//! - [`check`]: what the webhook patches and refuses;
//! - [`run`]: the leader keeps the canary in place; every replica reads its address;
//! - [`events`]: a gate that gives up is an Event on its pod and a metric.

pub mod build;
pub mod check;
pub mod events;
pub mod run;

/// The gate's container name: reserved, no tenant container may take it.
pub const CONTAINER: &str = "zhengyun-isolation-gate";
/// The canary's port every tenant's policies allow (TCP egress).
pub const OPEN_PORT: u16 = 9901;
/// The canary's port no tenant policy allows.
pub const DENIED_PORT: u16 = 9902;
/// The port the gate listens on for the canary's connection back (nothing else runs in the pod
/// while the gate does, so it collides with nothing).
pub const LISTEN_PORT: u16 = 40999;
/// How long a gate waits before it gives up and fails its pod's start.
pub const MAX_WAIT_SECONDS: u32 = 60;
/// The canary's objects' name (DaemonSet, Service, NetworkPolicy) and its pods' label value.
pub const CANARY: &str = "zhengyun-isolation-canary";
/// The label that selects canary pods (in the operator's namespace only).
pub const CANARY_LABEL: &str = "app.kubernetes.io/name";

/// The label the webhook puts on gated pods, so the leader can watch them alone for failed
/// gates ([`events`]). Only reporting depends on it: a tenant that removes it loses its Events.
pub const GATED_LABEL: &str = "zhengyun.io/isolation-gate";

/// What the gate needs to know: the image and where the canary lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The probe image (hack/build-images.sh), which holds both the gate and the canary.
    pub image: String,
    /// The operator's namespace: the canary runs there.
    pub namespace: String,
}
