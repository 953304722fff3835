//! Host-gateway routes (flannel's host-gw): a route to every other node's pod range through
//! that node's InternalIP, so pods reach each other across hosts with their own addresses and
//! no encapsulation. The hosts must share a layer-2 network (the gateway is on-link).
//!
//! [`desired_routes`] and [`route_changes`] are the pure core; [`run`] keeps the kernel's routes
//! equal to the desired set as Nodes come and go. Every route the agent adds carries its own
//! `proto` number ([`DEFAULT_ROUTE_PROTOCOL`]): at start the agent lists the routes of that
//! protocol (stale ones a crashed agent left are then removed by the first sync) and never
//! touches another route; [`remove_all`] flushes them when the agent stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::AgentError;
use super::network::pod_cidrs_of;

/// The `proto` of the agent's routes: 116, ASCII `t`; unused by iproute2's `rt_protos`.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 116;
/// How often routes that could not be set are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// A route to another node's pod range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The other node's pod range, `a.b.c.d/n`.
    pub destination: String,
    /// The other node's InternalIP.
    pub gateway: Ipv4Addr,
}

fn internal_ipv4(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse().ok())
}

/// The routes node `this_node` needs: every OTHER node's IPv4 pod ranges through its IPv4
/// InternalIP. Nodes without either are left out (they get one once IPAM and their agent
/// filled them in). A range is never routed away from this node when it is this node's own,
/// and a range two nodes claim goes to the first by name, so the set is deterministic.
pub fn desired_routes<'a>(this_node: &str, nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<Route> {
    let by_name: BTreeMap<&str, &Node> =
        nodes.into_iter().map(|n| (n.metadata.name.as_deref().unwrap_or(""), n)).collect();
    let own: BTreeSet<String> =
        by_name.get(this_node).map(|n| pod_cidrs_of(n).into_iter().collect()).unwrap_or_default();
    let mut routes: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for (name, node) in by_name {
        if name == this_node {
            continue;
        }
        let Some(gateway) = internal_ipv4(node) else { continue };
        for destination in pod_cidrs_of(node) {
            if !own.contains(&destination) {
                routes.entry(destination).or_insert(gateway);
            }
        }
    }
    routes.into_iter().map(|(destination, gateway)| Route { destination, gateway }).collect()
}

/// What turns `applied` into `desired`: routes to replace (new, or a range whose node moved),
/// and routes to delete (ranges no longer wanted; a moved range is replaced, not deleted).
pub fn route_changes(applied: &BTreeSet<Route>, desired: &BTreeSet<Route>) -> (Vec<Route>, Vec<Route>) {
    let replace: Vec<Route> = desired.difference(applied).cloned().collect();
    let delete = applied
        .difference(desired)
        .filter(|old| !replace.iter().any(|new| new.destination == old.destination))
        .cloned()
        .collect();
    (replace, delete)
}

/// The routes in `ip -j route show` output that have a gateway (the default route aside).
pub fn parse_routes(json: &str) -> Result<BTreeSet<Route>, String> {
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("unexpected `ip -j route` output: {e}"))?;
    Ok(listed
        .iter()
        .filter_map(|r| {
            // `ip` prints a /32 without its length, and the default route as `default`.
            let destination = match r["dst"].as_str()? {
                "default" => return None,
                prefix if prefix.contains('/') => prefix.to_string(),
                address => format!("{address}/32"),
            };
            Some(Route { destination, gateway: r["gateway"].as_str()?.parse().ok()? })
        })
        .collect())
}

async fn ip(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The routes of `protocol` in the main table now.
pub async fn kernel_routes(protocol: u8) -> Result<BTreeSet<Route>, String> {
    parse_routes(&ip(&["-j", "-4", "route", "show", "proto", &protocol.to_string()]).await?)
}

/// Removes every route of `protocol` (the agent's, since no one else uses it).
pub async fn remove_all(protocol: u8) -> Result<(), AgentError> {
    match ip(&["-4", "route", "flush", "proto", &protocol.to_string()]).await {
        // A network with no route at all has no main table to flush.
        Err(error) if !error.contains("FIB table does not exist") => Err(AgentError::Network(error)),
        _ => Ok(()),
    }
}

/// Applies the changes from `applied` to `desired`; `applied` ends as what the kernel holds as
/// far as the agent knows (a route that failed is tried again at the next sync).
async fn sync(applied: &mut BTreeSet<Route>, desired: &BTreeSet<Route>, protocol: &str) {
    let (replace, delete) = route_changes(applied, desired);
    for route in replace {
        let (destination, gateway) = (route.destination.as_str(), route.gateway.to_string());
        match ip(&["-4", "route", "replace", destination, "via", &gateway, "proto", protocol]).await {
            Ok(_) => {
                tracing::info!(%destination, %gateway, "route to a node's pod range set");
                applied.retain(|r| r.destination != route.destination);
                applied.insert(route);
            }
            // An off-link gateway, say: host-gw needs the nodes on one layer-2 network.
            Err(error) => tracing::warn!(%error, "cannot route a node's pod range; retrying"),
        }
    }
    for route in delete {
        let (destination, gateway) = (route.destination.as_str(), route.gateway.to_string());
        match ip(&["-4", "route", "del", destination, "via", &gateway, "proto", protocol]).await {
            Ok(_) => {
                tracing::info!(%destination, %gateway, "route to a gone node's pod range removed");
                applied.remove(&route);
            }
            Err(error) if error.contains("No such process") => {
                applied.remove(&route);
            }
            Err(error) => tracing::warn!(%error, "cannot remove a route; retrying"),
        }
    }
}

/// Keeps the routes of `protocol` equal to [`desired_routes`] for node `this_node`, from a
/// watch of all Nodes, until aborted. Nothing changes before the first full list: an empty
/// view must not remove the routes running pods use.
pub async fn run(client: kube::Client, this_node: String, protocol: u8) {
    let mut applied = kernel_routes(protocol).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot list the routes a previous run left; they stay");
        BTreeSet::new()
    });
    let protocol = protocol.to_string();
    let (nodes, writer) = reflector::store::<Node>();
    let events = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut listed = false;
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "node watch failed; resuming");
                    continue;
                }
                None => return,
            },
            _ = retry.tick() => {}
        }
        if listed {
            let state = nodes.state();
            let desired = desired_routes(&this_node, state.iter().map(|n| n.as_ref()));
            if desired != applied {
                sync(&mut applied, &desired, &protocol).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(name: &str, pod_cidr: Option<&str>, internal_ip: Option<&str>) -> Node {
        let mut addresses = vec![NodeAddress { type_: "Hostname".into(), address: name.into() }];
        addresses.extend(internal_ip.map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.into() }));
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(NodeSpec { pod_cidr: pod_cidr.map(str::to_string), ..NodeSpec::default() }),
            status: Some(NodeStatus { addresses: Some(addresses), ..NodeStatus::default() }),
        }
    }

    fn route(destination: &str, gateway: &str) -> Route {
        Route { destination: destination.into(), gateway: gateway.parse().expect("ip") }
    }

    #[test]
    fn every_other_node_with_a_range_and_an_address_is_routed_through_its_address() {
        let a = node("a", Some("10.42.0.0/24"), Some("192.168.1.1"));
        let b = node("b", Some("10.42.1.0/24"), Some("192.168.1.2"));
        let c = node("c", Some("10.42.2.0/24"), Some("192.168.1.3"));
        let no_range = node("d", None, Some("192.168.1.4"));
        let no_address = node("e", Some("10.42.4.0/24"), None);
        let ipv6_address = node("f", Some("10.42.5.0/24"), Some("fd00::6"));
        let ipv6_range = node("g", Some("fd00:42::/64"), Some("192.168.1.7"));
        let same_range_as_b = node("bb", Some("10.42.1.0/24"), Some("192.168.1.9"));
        let claims_ours = node("h", Some("10.42.0.0/24"), Some("192.168.1.8"));
        let cases: Vec<(&str, &str, Vec<&Node>, Vec<Route>)> = vec![
            ("alone", "a", vec![&a], vec![]),
            ("no nodes listed", "a", vec![], vec![]),
            (
                "two others",
                "a",
                vec![&a, &b, &c],
                vec![route("10.42.1.0/24", "192.168.1.2"), route("10.42.2.0/24", "192.168.1.3")],
            ),
            ("this node not listed yet", "x", vec![&b], vec![route("10.42.1.0/24", "192.168.1.2")]),
            ("no range yet", "a", vec![&a, &no_range], vec![]),
            ("no address yet", "a", vec![&a, &no_address], vec![]),
            ("IPv6 left out", "a", vec![&a, &ipv6_address, &ipv6_range], vec![]),
            (
                "a range two nodes claim goes to the first by name",
                "a",
                vec![&a, &same_range_as_b, &b],
                vec![route("10.42.1.0/24", "192.168.1.2")],
            ),
            ("our own range is never routed away", "a", vec![&a, &claims_ours], vec![]),
        ];
        for (case, this_node, nodes, expected) in cases {
            let routes: Vec<Route> = desired_routes(this_node, nodes).into_iter().collect();
            assert_eq!(routes, expected, "{case}");
        }
    }

    #[test]
    fn changes_replace_new_and_moved_ranges_and_delete_gone_ones() {
        type Routes<'a> = &'a [(&'a str, &'a str)];
        let b = ("10.42.1.0/24", "192.168.1.2");
        let c = ("10.42.2.0/24", "192.168.1.3");
        let c_moved = ("10.42.2.0/24", "192.168.1.9");
        // (case, applied, desired, to replace, to delete)
        let cases: [(&str, Routes, Routes, Routes, Routes); 5] = [
            ("nothing to do", &[b], &[b], &[], &[]),
            ("a new node", &[b], &[b, c], &[c], &[]),
            ("a node gone", &[b, c], &[b], &[], &[c]),
            ("stale routes of a crashed agent", &[b, c], &[], &[], &[b, c]),
            ("a range moved to another address", &[c], &[c_moved], &[c_moved], &[]),
        ];
        let routes = |pairs: Routes| pairs.iter().map(|(d, g)| route(d, g)).collect::<Vec<_>>();
        for (case, applied, desired, replace, delete) in cases {
            let (applied, desired) = (routes(applied).into_iter().collect(), routes(desired).into_iter().collect());
            assert_eq!(route_changes(&applied, &desired), (routes(replace), routes(delete)), "{case}");
        }
    }

    #[test]
    fn kernel_routes_parse_from_ip_json() {
        let json = r#"[{"dst":"10.42.1.0/24","gateway":"192.168.1.2","dev":"eth0","protocol":"116","flags":[]},
            {"dst":"10.42.9.0/24","dev":"tug0","protocol":"116","scope":"link","flags":[]},
            {"dst":"default","gateway":"192.168.1.254","dev":"eth0","flags":[]}]"#;
        let routes: Vec<Route> = parse_routes(json).expect("parsed").into_iter().collect();
        assert_eq!(routes, vec![route("10.42.1.0/24", "192.168.1.2")]);
        assert_eq!(parse_routes("[]").expect("empty"), BTreeSet::new());
        assert!(parse_routes("Error").is_err());
    }
}
