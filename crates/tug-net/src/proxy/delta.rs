//! From the rule set last applied to the one wanted now: the `nft -f` commands that turn one
//! into the other, as ONE transaction, without reading anything back from the kernel.
//!
//! Order inside the transaction: new sets and chains exist before anything refers to them;
//! changed chains are flushed and refilled; map elements are deleted before they are re-added
//! (an element whose value changed is both); chains and sets that went away are flushed first
//! and deleted last, when no map element or rule refers to them any more.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::model::RuleSet;
use super::render::{
    self, Elements, HAIRPIN, NO_ENDPOINT_NODE_PORTS, NO_ENDPOINT_SERVICES, NODE_PORT_IPS, SERVICE_IPS,
    SERVICE_NODE_PORTS, backend_map,
};

/// The commands of a delta, and how many objects (chains, sets, elements) they touch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta {
    pub script: String,
    pub changes: usize,
}

/// The delta from `old` to `new`, or `None` when the fixed part of the table differs (the
/// node's addresses or ranges changed) and the table must be rewritten whole.
pub fn delta(table: &str, old: &RuleSet, new: &RuleSet) -> Option<Delta> {
    if old.node != new.node {
        return None;
    }
    let mut changes = 0;
    let mut head = String::new(); // declarations
    let mut rules = String::new(); // chain contents
    let mut tail = String::new(); // removals

    for (name, change) in diff(&old.affinity_sets, &new.affinity_sets) {
        changes += 1;
        match change {
            // The timeout is part of the set's name, so a set never changes in place.
            Change::Added(timeout) | Change::Changed(_, timeout) => {
                let _ = writeln!(head, "add set ip {table} {name} {{ {} }}", render::affinity_set_body(*timeout));
            }
            Change::Removed(_) => {
                let _ = writeln!(tail, "delete set ip {table} {name}");
            }
        }
    }
    let mut removed_chains = String::new();
    for (name, change) in diff(&old.chains, &new.chains) {
        changes += 1;
        match change {
            Change::Added(chain) => {
                let _ = writeln!(head, "add chain ip {table} {name} {{ comment \"{}\"; }}", chain.comment);
                render::write_chain_rules(&mut rules, table, name, chain);
            }
            Change::Changed(_, chain) => {
                let _ = writeln!(rules, "flush chain ip {table} {name}");
                render::write_chain_rules(&mut rules, table, name, chain);
            }
            Change::Removed(_) => {
                let _ = writeln!(rules, "flush chain ip {table} {name}");
                let _ = writeln!(removed_chains, "delete chain ip {table} {name}");
            }
        }
    }
    // Removed chains go before removed sets: a chain's rules may name an affinity set.
    tail.insert_str(0, &removed_chains);

    let mut deleted = Elements::new(table, "delete");
    let mut added = Elements::new(table, "add");
    let mut elements = |set: &str, change: Change<'_, String>, key: &str| {
        changes += 1;
        if let Change::Removed(_) | Change::Changed(..) = change {
            deleted.push(set, |o| {
                o.push_str(key);
                Ok(())
            });
        }
        if let Change::Added(value) | Change::Changed(_, value) = change {
            added.push(set, |o| {
                o.push_str(key);
                o.push_str(value);
                Ok(())
            });
        }
    };
    // Backends and plain sets first; verdict maps last, as in a full write.
    let backends = |(shard, key): &(u8, u32)| (backend_map(*shard), key.to_string());
    for ((set, key), change) in diff_rendered(&old.backends, &new.backends, backends, |target| {
        let (ip, port) = (target.ip(), target.port());
        format!(" : {ip} . {port}")
    }) {
        elements(&set, change.as_ref(), &key);
    }
    let plain = |set: &'static str| move |ip: &std::net::Ipv4Addr| (set, ip.to_string());
    for ((set, key), change) in diff_set(&old.node_port_ips, &new.node_port_ips, plain(NODE_PORT_IPS)) {
        elements(set, change.as_ref(), &key);
    }
    for ((set, key), change) in diff_set(&old.hairpin, &new.hairpin, |ip| (HAIRPIN, format!("{ip} . {ip}"))) {
        elements(set, change.as_ref(), &key);
    }
    let address_key = |set: &'static str| {
        move |key: &_| {
            let mut text = String::new();
            let _ = render::write_address_key(&mut text, key);
            (set, text)
        }
    };
    let port_key = |set: &'static str| {
        move |key: &_| {
            let mut text = String::new();
            let _ = render::write_port_key(&mut text, key);
            (set, text)
        }
    };
    let verdict = |v: &_| {
        let mut text = String::from(" : ");
        render::write_verdict(&mut text, v);
        text
    };
    let maps = [
        diff_rendered(&old.no_endpoint_services, &new.no_endpoint_services, address_key(NO_ENDPOINT_SERVICES), verdict),
        diff_rendered(&old.service_ips, &new.service_ips, address_key(SERVICE_IPS), verdict),
    ];
    let port_maps = [
        diff_rendered(
            &old.no_endpoint_node_ports,
            &new.no_endpoint_node_ports,
            port_key(NO_ENDPOINT_NODE_PORTS),
            verdict,
        ),
        diff_rendered(&old.service_node_ports, &new.service_node_ports, port_key(SERVICE_NODE_PORTS), verdict),
    ];
    for ((set, key), change) in maps.into_iter().chain(port_maps).flatten() {
        elements(set, change.as_ref(), &key);
    }

    let script = [head, rules, deleted.finish(), added.finish(), tail].concat();
    Some(Delta { script, changes })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change<'a, V> {
    Added(&'a V),
    Changed(&'a V, &'a V),
    Removed(&'a V),
}

/// Owned form, for values rendered to text on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedChange<V> {
    Added(V),
    Changed(V, V),
    Removed(V),
}

impl<V> OwnedChange<V> {
    fn as_ref(&self) -> Change<'_, V> {
        match self {
            OwnedChange::Added(v) => Change::Added(v),
            OwnedChange::Changed(a, b) => Change::Changed(a, b),
            OwnedChange::Removed(v) => Change::Removed(v),
        }
    }
}

/// The entries that differ between two sorted maps, in key order (one merge pass).
fn diff<'a, K: Ord, V: PartialEq>(old: &'a BTreeMap<K, V>, new: &'a BTreeMap<K, V>) -> Vec<(&'a K, Change<'a, V>)> {
    let mut out = Vec::new();
    let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => return out,
            (Some((k, v)), None) => {
                out.push((*k, Change::Removed(*v)));
                old.next();
            }
            (None, Some((k, v))) => {
                out.push((*k, Change::Added(*v)));
                new.next();
            }
            (Some((ko, vo)), Some((kn, vn))) => match ko.cmp(kn) {
                std::cmp::Ordering::Less => {
                    out.push((*ko, Change::Removed(*vo)));
                    old.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kn, Change::Added(*vn)));
                    new.next();
                }
                std::cmp::Ordering::Equal => {
                    if vo != vn {
                        out.push((*ko, Change::Changed(*vo, *vn)));
                    }
                    old.next();
                    new.next();
                }
            },
        }
    }
}

/// [`diff`] with keys and values rendered to element text.
fn diff_rendered<K: Ord, V: PartialEq, S>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    key: impl Fn(&K) -> (S, String),
    value: impl Fn(&V) -> String,
) -> Vec<((S, String), OwnedChange<String>)> {
    diff(old, new)
        .into_iter()
        .map(|(k, change)| {
            let change = match change {
                Change::Added(v) => OwnedChange::Added(value(v)),
                Change::Changed(a, b) => OwnedChange::Changed(value(a), value(b)),
                Change::Removed(v) => OwnedChange::Removed(value(v)),
            };
            (key(k), change)
        })
        .collect()
}

/// Added and removed members of two sorted sets, as element text.
fn diff_set<T: Ord, S>(
    old: &std::collections::BTreeSet<T>,
    new: &std::collections::BTreeSet<T>,
    key: impl Fn(&T) -> (S, String),
) -> Vec<((S, String), OwnedChange<String>)> {
    let removed = old.difference(new).map(|t| (key(t), OwnedChange::Removed(String::new())));
    let added = new.difference(old).map(|t| (key(t), OwnedChange::Added(String::new())));
    removed.chain(added).collect()
}
