//! The `zhengyun.io/v1alpha1` API: the custom resources cloud admins apply with kubectl.
//!
//! A crate of its own, with no Kubernetes client or runtime, so the operator, the gateway, the
//! planner, the e2e suite and tools share one definition and the dependency points one way.
//! It owns the wire format, the schema the API server enforces (`crd`), the labels by which
//! zhengyun marks what it manages, and the arithmetic of quantities and CIDRs; it does no I/O.
#![forbid(unsafe_code)]

pub mod amount;
pub mod amounts;
pub mod certificate;
pub mod channel;
pub mod cidr;
pub mod crd;
pub mod department;
pub mod gateway;
pub mod labels;
pub mod quantity;
pub mod room;
pub mod tenant;
pub mod zone;

pub use amount::Amount;
pub use certificate::*;
pub use channel::*;
pub use gateway::{SecureGateway, SecureGatewaySpec, SecureGatewayStatus};
pub use room::*;
pub use tenant::*;
pub use zone::*;

/// The API group of every zhengyun resource.
pub const GROUP: &str = "zhengyun.io";
/// The one served version while the API is young.
pub const VERSION: &str = "v1alpha1";
