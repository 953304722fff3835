//! The node's pod network as a CNI conflist: a bridge with the node's pod range (host-local
//! addresses, the bridge as gateway) and portmap for hostPorts. containerd's CRI reads it from
//! its CNI conf dir and runs the plugins for every sandbox.

use std::path::Path;

use serde_json::json;

/// The conflist's file name: the only file in the conf dir (containerd loads one).
pub const CONFLIST_FILE: &str = "10-tug.conflist";
/// The CNI network name.
pub const NETWORK_NAME: &str = "tug";

/// The conflist for a node: pods get addresses of `pod_cidr` on `bridge`, whose address is
/// their default gateway; leases are kept under `ipam_dir`.
pub fn conflist(bridge: &str, pod_cidr: &str, ipam_dir: &Path) -> String {
    let value = json!({
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                // The plugin would masquerade traffic to other nodes' pods too; the agent's own
                // nftables rule masquerades only traffic leaving the cluster CIDR (`network`).
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Whether `text` is an IPv4 CIDR (`a.b.c.d/n`).
pub fn is_ipv4_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else { return false };
    address.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| (8..=30).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_puts_the_node_range_on_its_bridge_with_portmap() {
        let text = conflist("tug0", "10.42.0.0/24", Path::new("/data/cni/ipam"));
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["name"], NETWORK_NAME);
        let bridge = &value["plugins"][0];
        assert_eq!((bridge["type"].as_str(), bridge["bridge"].as_str()), (Some("bridge"), Some("tug0")));
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false, "pod-to-pod traffic across nodes keeps its source");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/data/cni/ipam");
        assert_eq!(value["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn cidrs() {
        for (text, ok) in [("10.42.0.0/24", true), ("10.42.0.0", false), ("10.42.0/24", false), ("10.0.0.0/33", false)]
        {
            assert_eq!(is_ipv4_cidr(text), ok, "{text}");
        }
    }
}
