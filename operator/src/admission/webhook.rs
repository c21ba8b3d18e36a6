//! What the webhook's handlers share: its caches, whom it trusts, and its settings.

use super::cache::Caches;

/// What the handlers need. No client: every lookup is answered from [`Caches`].
pub struct Webhook {
    pub caches: Caches,
    /// The operator's own user name: the only one allowed to change what it owns.
    pub operator_user: String,
    /// A ClusterNetworkPolicy API enforces the tenant boundary, so tenant NetworkPolicies
    /// need not be restricted here.
    pub cluster_network_policy: bool,
    /// For the one write an admission makes: a reservation against a department's budget
    /// ([`crate::departments::ledger`]).
    pub client: Option<kube::Client>,
    /// The isolation gate every new tenant pod starts with (`--isolation-gate-image`).
    pub gate: Option<crate::gate::run::Gate>,
}
