//! zhengyun (政云): the control plane of a government private cloud.
//!
//! Modules by concern: [`api`] (the CRDs), [`tenancy`] (departments' tenants), [`leader`]
//! (leader election), [`metrics`] and [`admin`] (what SREs read), [`apply`] (the one place
//! that writes with Server-Side Apply).
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod api;
pub mod apply;
pub mod certificates;
pub mod channels;
pub mod cidr;
pub mod conditions;
pub mod context;
pub mod error;
pub mod isolation;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod quantity;
pub mod reachability;
pub mod rest_metrics;
pub mod tenancy;
pub mod zones;

pub use error::{Error, Result};
