//! A [`RuleSet`] as `nft -f` text: the whole table for a cold start ([`full`]), and the pieces
//! `delta.rs` reuses (rules, elements, declarations).
//!
//! Order matters for the kernel's cost, not only for correctness: in one transaction, rules
//! are added while the maps they use are still empty and the maps are filled afterwards, the
//! verdict maps last. Binding a rule to a filled map checks every element, and every verdict
//! added makes the kernel validate the table's jumps again.

use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::model::{AddressKey, BACKEND_SHARDS, Chain, PortKey, Rule, RuleSet, Verdict};

/// The packet mark bit meaning "masquerade me in postrouting" (kube-proxy's default, bit 14).
pub const MASQUERADE_MARK: &str = "0x4000";

pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODE_PORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODE_PORTS: &str = "no-endpoint-nodeports";
pub const NODE_PORT_IPS: &str = "nodeport-ips";
pub const HAIRPIN: &str = "hairpin";
const REJECT_CHAIN: &str = "reject-chain";

pub fn backend_map(shard: u8) -> String {
    format!("backends-{shard}")
}

/// The whole table, replacing whatever table of that name exists (a stale one left by a
/// crashed agent included) in the same transaction: `add` makes the `delete` safe when there
/// is none.
pub fn full(table: &str, set: &RuleSet) -> String {
    let mut out = String::with_capacity(64 * (set.backends.len() + set.chains.len() + 64));
    let _ = writeln!(out, "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{");
    skeleton(&mut out, set);
    for (name, timeout) in &set.affinity_sets {
        let _ = writeln!(out, "\tset {name} {{ {} }}", affinity_set_body(*timeout));
    }
    for (name, chain) in &set.chains {
        let _ = writeln!(out, "\tchain {name} {{\n\t\tcomment \"{}\"", chain.comment);
        for rule in &chain.rules {
            out.push_str("\t\t");
            write_rule(&mut out, rule);
            out.push('\n');
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");

    let mut shard_elements = Elements::new(table, "add");
    for ((shard, key), target) in &set.backends {
        shard_elements.push(&backend_map(*shard), |o| write_backend(o, *key, *target));
    }
    out.push_str(&shard_elements.finish());
    add_all(&mut out, table, NODE_PORT_IPS, set.node_port_ips.iter(), |o, ip| write!(o, "{ip}"));
    add_all(&mut out, table, HAIRPIN, set.hairpin.iter(), |o, ip| write_hairpin(o, *ip));
    add_all(&mut out, table, NO_ENDPOINT_SERVICES, set.no_endpoint_services.iter(), write_address_element);
    add_all(&mut out, table, NO_ENDPOINT_NODE_PORTS, set.no_endpoint_node_ports.iter(), write_port_element);
    add_all(&mut out, table, SERVICE_IPS, set.service_ips.iter(), write_address_element);
    add_all(&mut out, table, SERVICE_NODE_PORTS, set.service_node_ports.iter(), write_port_element);
    out
}

/// The fixed part: maps, sets, base chains and the dispatch chains that use them.
fn skeleton(out: &mut String, set: &RuleSet) {
    let mark = MASQUERADE_MARK;
    let _ = write!(
        out,
        "\tcomment \"Tugboat service proxy (tug-net); rewritten by the agent, do not edit\"
\tmap {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; comment \"ClusterIP, external and load-balancer IP traffic\"; }}
\tmap {SERVICE_NODE_PORTS} {{ type inet_proto . inet_service : verdict; comment \"NodePort traffic\"; }}
\tmap {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict; comment \"Services without usable endpoints\"; }}
\tmap {NO_ENDPOINT_NODE_PORTS} {{ type inet_proto . inet_service : verdict; comment \"node ports without usable endpoints\"; }}
\tset {NODE_PORT_IPS} {{ type ipv4_addr; comment \"addresses node ports answer on\"; }}
\tset {HAIRPIN} {{ type ipv4_addr . ipv4_addr; comment \"endpoint . endpoint: masquerade an endpoint reaching itself\"; }}
"
    );
    for shard in 0..BACKEND_SHARDS {
        let _ = writeln!(out, "\tmap {} {{ typeof numgen random mod 2 : ip daddr . tcp dport; }}", backend_map(shard));
    }
    // Filter chains run before DNAT (priority -110), so they see the Service's address.
    let localnet_guard = if set.node.localhost_node_ports {
        // route_localnet would accept packets to 127.0.0.0/8 from the network
        // (CVE-2020-8558); only our own DNATed node-port traffic may use it.
        "\t\tip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "\tchain {REJECT_CHAIN} {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
\tchain endpoints-check {{
\t\tip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}
\t\tip daddr @{NODE_PORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODE_PORTS}
\t}}
\tchain filter-input {{
\t\ttype filter hook input priority -110; policy accept;
{localnet_guard}\t\tct state new jump endpoints-check
\t}}
\tchain filter-forward {{
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}}
\tchain filter-output {{
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}}
\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
\t\tip daddr @{NODE_PORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODE_PORTS}
\t}}
\tchain masquerading {{
\t\tct status dnat ip saddr . ip daddr @{HAIRPIN} meta mark set meta mark or {mark}
\t\tmeta mark & {mark} == 0 return
\t\tmeta mark set meta mark xor {mark}
\t\tmasquerade fully-random
\t}}
\tchain nat-prerouting {{
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat-output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat-postrouting {{
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tjump masquerading
\t}}
"
    );
}

pub fn affinity_set_body(timeout_seconds: u32) -> String {
    format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout_seconds}s;")
}

pub fn write_chain_rules(out: &mut String, table: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = write!(out, "add rule ip {table} {name} ");
        write_rule(out, rule);
        out.push('\n');
    }
}

pub fn write_rule(out: &mut String, rule: &Rule) {
    let mark = MASQUERADE_MARK;
    let _ = match rule {
        Rule::MasqueradeUnlessFromPods { cluster_ip, protocol, port, pods } => write!(
            out,
            "ip daddr {cluster_ip} {} dport {port} ip saddr != {pods} meta mark set meta mark or {mark}",
            protocol.nft()
        ),
        Rule::Masquerade => write!(out, "meta mark set meta mark or {mark}"),
        Rule::PodTrafficGoto { pods, chain } => write!(out, "ip saddr {pods} goto {chain}"),
        Rule::MasqueradeFromHost => write!(out, "fib saddr type local meta mark set meta mark or {mark}"),
        Rule::HostTrafficGoto(chain) => write!(out, "fib saddr type local goto {chain}"),
        Rule::Goto(chain) => write!(out, "goto {chain}"),
        Rule::AffinityGoto { set, chain } => write!(out, "ip saddr @{set} goto {chain}"),
        Rule::PickChain(chains) => {
            let _ = write!(out, "numgen random mod {} vmap {{ ", chains.len());
            for (i, chain) in chains.iter().enumerate() {
                let _ = write!(out, "{}{i} : goto {chain}", if i == 0 { "" } else { ", " });
            }
            write!(out, " }}")
        }
        Rule::PickBackend { protocol, shard, offset, count } => write!(
            out,
            "meta l4proto {} dnat ip to numgen random mod {count} offset {offset} map @{}",
            protocol.nft(),
            backend_map(*shard)
        ),
        Rule::RememberClient(set) => write!(out, "update @{set} {{ ip saddr }}"),
        Rule::Dnat { protocol, to } => write!(out, "meta l4proto {} dnat ip to {to}", protocol.nft()),
    };
}

pub fn write_verdict(out: &mut String, verdict: &Verdict) {
    match verdict {
        Verdict::Goto(chain) => {
            let _ = write!(out, "goto {chain}");
        }
        Verdict::Reject => {
            let _ = write!(out, "goto {REJECT_CHAIN}");
        }
        Verdict::Drop => out.push_str("drop"),
    }
}

pub fn write_address_key(out: &mut String, (ip, protocol, port): &AddressKey) -> std::fmt::Result {
    write!(out, "{ip} . {} . {port}", protocol.nft())
}

pub fn write_port_key(out: &mut String, (protocol, port): &PortKey) -> std::fmt::Result {
    write!(out, "{} . {port}", protocol.nft())
}

pub fn write_address_element(out: &mut String, (key, verdict): (&AddressKey, &Verdict)) -> std::fmt::Result {
    write_address_key(out, key)?;
    out.push_str(" : ");
    write_verdict(out, verdict);
    Ok(())
}

pub fn write_port_element(out: &mut String, (key, verdict): (&PortKey, &Verdict)) -> std::fmt::Result {
    write_port_key(out, key)?;
    out.push_str(" : ");
    write_verdict(out, verdict);
    Ok(())
}

pub fn write_backend(out: &mut String, key: u32, target: SocketAddrV4) -> std::fmt::Result {
    write!(out, "{key} : {} . {}", target.ip(), target.port())
}

pub fn write_hairpin(out: &mut String, ip: Ipv4Addr) -> std::fmt::Result {
    write!(out, "{ip} . {ip}")
}

/// `VERB element ip TABLE SET { e1, e2, ... }` for every item, nothing when there is none.
pub fn add_all<T>(
    out: &mut String,
    table: &str,
    set: &str,
    items: impl Iterator<Item = T>,
    mut write_item: impl FnMut(&mut String, T) -> std::fmt::Result,
) {
    let mut elements = Elements::new(table, "add");
    for item in items {
        elements.push(set, |o| write_item(o, item));
    }
    out.push_str(&elements.finish());
}

/// Element commands for several sets, one `add element`/`delete element` per run of
/// consecutive pushes to the same set.
#[derive(Debug)]
pub struct Elements<'a> {
    table: &'a str,
    verb: &'static str,
    out: String,
    current: Option<String>,
}

impl<'a> Elements<'a> {
    pub fn new(table: &'a str, verb: &'static str) -> Self {
        Elements { table, verb, out: String::new(), current: None }
    }

    pub fn push(&mut self, set: &str, write_item: impl FnOnce(&mut String) -> std::fmt::Result) {
        if self.current.as_deref() == Some(set) {
            self.out.push_str(", ");
        } else {
            if self.current.is_some() {
                self.out.push_str(" }\n");
            }
            let _ = write!(self.out, "{} element ip {} {set} {{ ", self.verb, self.table);
            self.current = Some(set.to_string());
        }
        let _ = write_item(&mut self.out);
    }

    pub fn finish(mut self) -> String {
        if self.current.is_some() {
            self.out.push_str(" }\n");
        }
        self.out
    }
}
