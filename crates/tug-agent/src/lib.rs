//! The node agent. Today: hollow nodes (`sim`, for `tug sim`): Node objects, leases and pod
//! status with no containers behind.

pub mod sim;
