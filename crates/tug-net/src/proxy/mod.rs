//! The service proxy: Services and EndpointSlices → one nftables table, `ip tugboat`.
//!
//! - [`build`] (`model.rs`, with `input.rs` and `categorize.rs`): the pure decision — which
//!   endpoints serve which traffic, what is masqueraded, rejected or dropped — as a
//!   [`RuleSet`].
//! - `render.rs` and [`delta()`]: that rule set as `nft -f` text, whole or as the difference
//!   from the previous one.
//! - [`Syncer`]: keeps the last applied rule set in memory and applies each change as ONE
//!   transaction (`nft -f -`), rewriting the whole table on the first sync and after a failure.
//!
//! Node ports on 127.0.0.1 ([`NodeContext::localhost_node_ports`]) need
//! `net.ipv4.conf.all.route_localnet=1`, as kube-proxy sets it: the agent writes
//! [`ROUTE_LOCALNET`] before the first sync.

mod categorize;
mod delta;
mod input;
mod model;
mod nft;
mod render;
mod syncer;

pub use categorize::{Categorized, categorize};
pub use delta::{Delta, delta};
pub use input::{Endpoint, Protocol, ServicePort, ServicePortName, endpoints_by_port, service_ports};
pub use model::{AddressKey, BACKEND_SHARDS, Chain, NodeContext, PortKey, Rule, RuleSet, Verdict, build};
pub use nft::{Nft, NftError};
pub use render::full as render_full;
pub use syncer::{SyncReport, Syncer};

/// The sysctl that lets node ports answer on 127.0.0.1 (set to `1`).
pub const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

#[cfg(test)]
mod tests;
