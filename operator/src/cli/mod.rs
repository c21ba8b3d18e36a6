//! The operator's commands besides `run`: each reads the cluster once and prints or writes.

pub mod args;
pub mod evidence;
pub mod plan;
pub mod reachability;
pub mod tree;
