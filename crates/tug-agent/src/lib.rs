//! The node agent.
//!
//! - [`agent`] — the real agent (`tug agent`): registers its Node, renews its Lease and runs the
//!   pods bound to it on containerd over CRI.
//! - [`containerd`] — a containerd the agent starts and stops itself (generated config, state
//!   under the agent's data dir, OCI archives in `images/` imported at start).

pub mod agent;
pub mod containerd;
