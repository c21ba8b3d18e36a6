//! The admission webhook: what the CRD schema and RBAC cannot enforce.
//!
//! It places every pod of a tenant on its zone's nodes and refuses pods that try to leave;
//! refuses changes by anyone but the operator to the labels of tenant namespaces and to the
//! objects the operator owns there; refuses tenant NetworkPolicies that would open what the
//! tenant boundary closes (when no ClusterNetworkPolicy API does it); and re-checks tenants and
//! exchange channels with the reconcilers' own validation code. `checks` is pure; `server`
//! does the I/O; `tls` keeps the serving certificate; `config` registers the webhooks.

pub(crate) mod budgets;
pub(crate) mod cache;
pub(crate) mod checks;
pub mod config;
pub(crate) mod decide;
pub mod run;
pub(crate) mod server;
pub(crate) mod subject;
pub(crate) mod tls;
pub(crate) mod webhook;
