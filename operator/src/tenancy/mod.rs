//! Tenancy: turning a `Tenant` into namespaces, quotas, limits, access and network policy.
//!
//! `validate` checks a spec into a [`ValidatedTenant`]; `build` turns that into Kubernetes
//! objects without I/O; `quota` splits the tenant's budget over its namespaces; `reconcile`
//! is the only part that talks to the API server. Zones, certificates and exchange channels
//! are other modules' business: this one only labels namespaces with the zone name.

pub mod build;
pub mod metrics;
pub mod quota;
pub mod reconcile;
pub mod series;
pub(crate) mod status;
pub mod validate;

pub use validate::{ValidatedTenant, validate};
