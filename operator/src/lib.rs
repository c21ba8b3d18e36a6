//! zhengyun (政云): the control plane of a government private cloud.
//!
//! Modules by concern: [`tenancy`] (departments' tenants), [`zones`], [`channels`] (data
//! exchange), [`certificates`] (国密 issuers and certificates), [`admission`] (the webhook),
//! [`isolation`] (ClusterNetworkPolicy), [`leader`] (leader election), [`metrics`] and [`admin`]
//! (what SREs read), [`apply`] (the one place that writes objects; statuses go through one writer too). The API types and the PKI are crates
//! of their own, re-exported as [`api`] and [`pki`]. Modules nothing outside needs are private.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod apply;
pub mod certificates;
pub mod channels;
pub mod children;
pub mod cli;
pub(crate) mod conditions;
pub mod context;
pub mod controller;
pub mod crash_point;
pub mod departments;
pub mod error;
pub mod evidence;
#[cfg(test)]
pub mod fake_api;
pub mod gate;
pub mod gateways;
pub mod isolation;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod reachability;
pub mod rest_metrics;
pub mod rooms;
pub(crate) mod status;
pub mod tenancy;
pub mod watch;
pub mod zones;

pub use error::{Error, Result};
/// The API types, CRDs, labels and quantities (the `zhengyun-api` crate).
pub use zhengyun_api::{self as api, cidr, labels, quantity};
/// 国密 PKI (the `zhengyun-pki` crate).
pub use zhengyun_pki as pki;
