//! API machinery shared by every Tugboat component, with no IO: the table of resource types the
//! API serves, label and field selectors, and Kubernetes `Status` errors.
//!
//! Like kube-rs's `kube-core`, this crate only describes and decides; serving, storing and
//! watching live in the crates that depend on it.

pub mod convert;
pub mod defaults;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
