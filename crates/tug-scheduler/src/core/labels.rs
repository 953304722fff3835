//! Label matching: pod label selectors and node selector terms, compiled once per pod so that
//! matching is a few sorted-slice look-ups. The rules live in `tug-k8s` (one copy for the API
//! server, the controllers and the scheduler); the core names them from here.

pub use tug_k8s::labels::{HOSTNAME_LABEL, Op, Requirement, Selector, ZONE_LABEL};
pub use tug_k8s::nodeaffinity::NodeTerm;
