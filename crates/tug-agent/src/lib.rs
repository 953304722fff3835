//! The node agent.
//!
//! - [`sim`] — hollow nodes (`tug sim`): Node objects, leases and pod status with no containers
//!   behind, for scale tests and capacity planning.
//! - [`containerd`] — a containerd the agent starts and stops itself (generated config, state
//!   under the agent's data dir, OCI archives in `images/` imported at start), reached over CRI
//!   with `tug-cri`. The pod sync loop on top of it is issue 6's next step.

pub mod containerd;
pub mod sim;
