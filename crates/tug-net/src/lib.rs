//! Node networking for the Tugboat agent.
//!
//! Today: the service proxy ([`proxy`]) — Services and EndpointSlices in, one nftables table
//! (`ip tugboat`) out, kept up to date with deltas applied as single atomic transactions — and
//! the small helpers around it ([`Ipv4Cidr`], [`netns`] for tests and benchmarks).
//!
//! Must not know: the API server, the store, or any other component. The agent watches the API
//! and hands this crate plain Kubernetes objects; this crate never talks to the cluster.

mod cidr;
pub mod dns;
pub mod netns;
pub mod proxy;

pub use cidr::Ipv4Cidr;
