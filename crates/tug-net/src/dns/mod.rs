//! Cluster DNS: Kubernetes' DNS-based service discovery for the cluster domain, served on every
//! node (node-local, as NodeLocal DNSCache is), forwarding every other name to the host's
//! resolvers.
//!
//! - [`cache`]: Services, EndpointSlices and Namespaces reduced to what DNS answers from,
//!   indexed by name and by address; fed by add/remove calls.
//! - [`answer`]: the pure core, a question and the cache in, a [`Decision`] out.
//! - [`forward`]: the host's resolvers (resolv.conf), UDP with TCP fallback, under a deadline.
//! - [`server`]: hickory-server's UDP/TCP loops around a handler joining the two, with limits on
//!   what one client can cost.

pub mod answer;
pub mod cache;
pub mod forward;
pub mod server;

#[cfg(test)]
mod tests;

pub use answer::{Answer, DNS_SCHEMA_VERSION, Decision, TTL, decide};
pub use cache::DnsCache;
pub use forward::{ForwardError, Upstreams};
pub use server::{ClusterDnsHandler, DnsServer, Limits, SharedDnsCache};
