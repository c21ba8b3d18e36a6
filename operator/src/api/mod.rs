//! The `zhengyun.io/v1alpha1` API: the custom resources cloud admins apply with kubectl.
//!
//! These types live in the operator's library crate (`zhengyun`) so that the operator, the e2e
//! suite and later tools (a kubectl plugin, the admission webhook) share one definition. They
//! own the wire format and the schema the API server enforces; they do no I/O.

pub mod amount;
pub mod certificate;
pub mod channel;
pub mod crd;
pub mod tenant;
pub mod zone;

pub use amount::Amount;
pub use certificate::*;
pub use channel::*;
pub use tenant::*;
pub use zone::*;

/// The API group of every zhengyun resource.
pub const GROUP: &str = "zhengyun.io";
/// The one served version while the API is young.
pub const VERSION: &str = "v1alpha1";
