//! Fake addresses for hollow nodes: one /24 pod range per node, a node IP, and the pod IPs
//! handed out inside a node's range.
//!
//! Pod ranges are /24 blocks of 10.0.0.0/8 numbered from 0: the first 256 are 10.42.<i>.0/24
//! (k3s' cluster CIDR), then 10.44.0.0/16 onwards, never 10.43.0.0/16 (the service range).
//! Node IPs come from 172.16.0.0/12 by the same block number, so both are unique together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The second octets pod blocks use, in order: 42 first, 43 (services) never.
fn second_octets() -> impl Iterator<Item = u8> {
    std::iter::once(42).chain(44..=255).chain(0..=41)
}

/// How many /24 pod blocks exist.
pub fn block_count() -> usize {
    second_octets().count() * 256
}

/// The network address of pod block `block`, or `None` past the last block.
pub fn block_network(block: usize) -> Option<Ipv4Addr> {
    let second = second_octets().nth(block / 256)?;
    Some(Ipv4Addr::new(10, second, (block % 256) as u8, 0))
}

/// `spec.podCIDR` text for a /24 network.
pub fn cidr_text(network: Ipv4Addr) -> String {
    format!("{network}/24")
}

/// The network of a `a.b.c.0/24` CIDR, or `None` for anything else (other sizes, IPv6).
pub fn parse_cidr24(cidr: &str) -> Option<Ipv4Addr> {
    let (addr, bits) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    (bits == "24" && addr.octets()[3] == 0).then_some(addr)
}

/// A node's InternalIP, derived from its pod network so it is unique whenever that is: host
/// octets 1..=254 of 172.16.0.0/12.
pub fn node_ip(pod_network: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, _] = pod_network.octets();
    let n = u32::from(b) * 256 + u32::from(c);
    let base = u32::from(Ipv4Addr::new(172, 16, 0, 0));
    Ipv4Addr::from(base + (n / 254) * 256 + n % 254 + 1)
}

/// Chooses a pod network for each node (by index). A node that already has a /24 keeps it;
/// the others take the lowest blocks nobody uses (`taken`: ranges of nodes that are not ours).
/// `None` when the address space is exhausted.
pub fn assign_networks(
    nodes: usize,
    existing: &BTreeMap<usize, Ipv4Addr>,
    taken: &BTreeSet<Ipv4Addr>,
) -> Option<Vec<Ipv4Addr>> {
    let mut used: BTreeSet<Ipv4Addr> = taken.iter().chain(existing.values()).copied().collect();
    let mut free = (0..block_count()).filter_map(block_network);
    let mut out = Vec::with_capacity(nodes);
    for index in 0..nodes {
        let network = match existing.get(&index) {
            Some(network) => *network,
            None => {
                let network = free.by_ref().find(|n| !used.contains(n))?;
                used.insert(network);
                network
            }
        };
        out.push(network);
    }
    Some(out)
}

/// The pod IPs of one node's /24: .1 is the (imagined) bridge, .0 and .255 are not hosts.
#[derive(Debug, Clone, Default)]
pub struct HostPool {
    used: [u64; 4],
}

/// First and last host octets handed to pods.
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

impl HostPool {
    /// How many pod IPs one node has.
    pub const CAPACITY: usize = (LAST_HOST - FIRST_HOST + 1) as usize;

    fn is_used(&self, host: u8) -> bool {
        self.used[usize::from(host / 64)] & (1 << (host % 64)) != 0
    }

    fn set(&mut self, host: u8, used: bool) {
        let (word, bit) = (usize::from(host / 64), 1u64 << (host % 64));
        if used {
            self.used[word] |= bit;
        } else {
            self.used[word] &= !bit;
        }
    }

    /// Takes the lowest free host octet.
    pub fn allocate(&mut self) -> Option<u8> {
        let host = (FIRST_HOST..=LAST_HOST).find(|h| !self.is_used(*h))?;
        self.set(host, true);
        Some(host)
    }

    /// Marks a host octet a running pod already has (after a restart of the sim) as used.
    /// Returns false when it is not a pod octet or already taken.
    pub fn claim(&mut self, host: u8) -> bool {
        if !(FIRST_HOST..=LAST_HOST).contains(&host) || self.is_used(host) {
            return false;
        }
        self.set(host, true);
        true
    }

    pub fn release(&mut self, host: u8) {
        self.set(host, false);
    }
}

/// The pod IP with host octet `host` in `network`.
pub fn pod_ip(network: Ipv4Addr, host: u8) -> Ipv4Addr {
    let [a, b, c, _] = network.octets();
    Ipv4Addr::new(a, b, c, host)
}

/// The host octet of `ip` when it lies in the /24 `network`.
pub fn host_in(network: Ipv4Addr, ip: Ipv4Addr) -> Option<u8> {
    let ([a, b, c, _], [x, y, z, host]) = (network.octets(), ip.octets());
    (a == x && b == y && c == z).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_start_at_10_42_and_skip_the_service_range() {
        assert_eq!(block_network(0), Some(Ipv4Addr::new(10, 42, 0, 0)));
        assert_eq!(block_network(255), Some(Ipv4Addr::new(10, 42, 255, 0)));
        assert_eq!(block_network(256), Some(Ipv4Addr::new(10, 44, 0, 0)));
        assert_eq!(block_network(block_count()), None);
        let all: BTreeSet<_> = (0..block_count()).filter_map(block_network).collect();
        assert_eq!(all.len(), block_count(), "blocks are distinct");
        assert!(all.iter().all(|n| n.octets()[1] != 43));
    }

    #[test]
    fn node_ips_are_distinct_hosts() {
        let ips: BTreeSet<_> = (0..block_count()).filter_map(block_network).map(node_ip).collect();
        assert_eq!(ips.len(), block_count());
        assert!(ips.iter().all(|ip| ip.octets()[3] != 0 && ip.octets()[3] != 255));
        assert!(ips.iter().all(|ip| ip.octets()[0] == 172 && (16..32).contains(&ip.octets()[1])));
    }

    #[test]
    fn cidrs_round_trip_and_only_slash_24_parses() {
        let n = Ipv4Addr::new(10, 42, 7, 0);
        assert_eq!(cidr_text(n), "10.42.7.0/24");
        assert_eq!(parse_cidr24("10.42.7.0/24"), Some(n));
        for bad in ["10.42.7.0/25", "10.42.7.1/24", "fd00::/64", "garbage", "10.42.7.0"] {
            assert_eq!(parse_cidr24(bad), None, "{bad}");
        }
    }

    #[test]
    fn assignment_keeps_existing_ranges_and_avoids_taken_ones() {
        let taken: BTreeSet<_> = [block_network(0).unwrap(), block_network(2).unwrap()].into();
        let existing: BTreeMap<_, _> = [(1, Ipv4Addr::new(10, 42, 200, 0))].into();
        let got = assign_networks(4, &existing, &taken).unwrap();
        let octet3: Vec<u8> = got.iter().map(|n| n.octets()[2]).collect();
        assert_eq!(octet3, vec![1, 200, 3, 4]);
    }

    #[test]
    fn pool_hands_out_lowest_free_and_reuses_released() {
        let mut pool = HostPool::default();
        assert_eq!(pool.allocate(), Some(2));
        assert!(pool.claim(4));
        assert!(!pool.claim(4), "already used");
        assert!(!pool.claim(255), "broadcast");
        assert_eq!(pool.allocate(), Some(3));
        assert_eq!(pool.allocate(), Some(5));
        pool.release(3);
        assert_eq!(pool.allocate(), Some(3));
        let mut full = HostPool::default();
        assert_eq!((0..HostPool::CAPACITY).filter_map(|_| full.allocate()).count(), 253);
        assert_eq!(full.allocate(), None);
    }

    #[test]
    fn pod_ips_belong_to_their_network() {
        let n = Ipv4Addr::new(10, 44, 3, 0);
        assert_eq!(pod_ip(n, 9), Ipv4Addr::new(10, 44, 3, 9));
        assert_eq!(host_in(n, Ipv4Addr::new(10, 44, 3, 9)), Some(9));
        assert_eq!(host_in(n, Ipv4Addr::new(10, 44, 4, 9)), None);
    }
}
