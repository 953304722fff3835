//! The node's place in the cluster's pod network, as flannel's host-gw backend and the kubelet's
//! network readiness make it:
//!
//! - The node's range: `--pod-cidr` when given, else the `spec.podCIDR` the server's node IPAM
//!   controller writes; [`wait_for_pod_cidr`] watches the Node until it is there. Until the CNI
//!   conflist for it exists, containerd's CRI reports `NetworkReady=false` ("cni config
//!   uninitialized"), so the node stays `Ready=False` and nothing is scheduled there.
//! - Egress NAT: the bridge plugin's `ipMasq` would masquerade everything leaving the node, pod
//!   traffic to other nodes' pods included, so it is off; one nftables rule in a table of the
//!   agent's own masquerades only traffic from the cluster CIDR to outside it (the receiver of
//!   pod-to-pod traffic sees the sender's pod IP). [`masquerade_ruleset`] is the pure text,
//!   applied as one `nft -f -` transaction and removed when the agent stops.
//! - Routes to the other nodes' ranges: [`super::routes`].

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::io::AsyncWriteExt;

use super::{AgentError, cni};

/// The cluster CIDR when none is given (the server's node IPAM default, k3s' too).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The nftables table (family `ip`) holding the pod network's masquerade rule. Not `tugboat`:
/// that is the service proxy's.
pub const DEFAULT_MASQUERADE_TABLE: &str = "tugboat_podnet";
/// How often the agent says again that it still waits for its pod range.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(30);

/// The IPv4 pod ranges of a node: `spec.podCIDRs`, else `spec.podCIDR` (older writers set only
/// that one).
pub fn pod_cidrs_of(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let ranges = if listed.is_empty() { spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect() } else { listed };
    ranges.into_iter().filter(|r| cni::is_ipv4_cidr(r)).collect()
}

/// Watches node `name` until it has an IPv4 pod range, and returns it. Says so in the log while
/// it waits (the range comes from the server's node IPAM controller).
pub async fn wait_for_pod_cidr(client: &kube::Client, name: &str) -> Result<String, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut updates = std::pin::pin!(watcher(nodes, config).default_backoff().applied_objects());
    let mut announced = false;
    loop {
        match tokio::time::timeout(STILL_WAITING_EVERY, updates.next()).await {
            Ok(Some(Ok(node))) => match pod_cidrs_of(&node).into_iter().next() {
                Some(range) => {
                    tracing::info!(node = %name, pod_cidr = %range, "the node's pod range is assigned");
                    return Ok(range);
                }
                None if !announced => {
                    announced = true;
                    tracing::info!(
                        node = %name,
                        "waiting for the node's pod range (spec.podCIDR) from the server's node IPAM controller; \
                         the node stays NotReady and runs no pods until then"
                    );
                }
                None => {}
            },
            Ok(Some(Err(error))) => tracing::warn!(node = %name, %error, "node watch failed; resuming"),
            Ok(None) => return Err(AgentError::Network(format!("the watch of node {name} ended"))),
            Err(_) => tracing::warn!(
                node = %name,
                "still waiting for the node's pod range (spec.podCIDR): is the server's node IPAM controller \
                 out of ranges (`kubectl describe node {name}` shows CIDRNotAvailable) or is this an old server? \
                 --pod-cidr sets the range by hand"
            ),
        }
    }
}

/// The nftables transaction that makes `table` hold exactly the masquerade rule: traffic from
/// the cluster CIDR to anywhere outside it leaves with the node's address; pod-to-pod traffic,
/// across nodes too, keeps its source. Creating the table before deleting it makes the delete
/// succeed on the first run; the whole text is applied atomically.
pub fn masquerade_ruleset(table: &str, cluster_cidr: &str) -> String {
    format!(
        "table ip {table}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr {cluster_cidr} ip daddr != {cluster_cidr} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// The transaction removing `table`, whether or not it exists.
pub fn remove_table_script(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

/// Whether `name` can be an nftables table name (nft's unquoted identifiers).
pub fn is_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// Runs `nft -f -` with `script` as one transaction.
async fn nft(script: &str) -> Result<(), AgentError> {
    let problem = |detail: String| AgentError::Network(format!("nft -f - failed: {detail}"));
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            problem(format!("{e} (is Debian's nftables installed? scripts/lib.sh ensure_containerd installs it)"))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|e| problem(e.to_string()))?;
    }
    let output = child.wait_with_output().await.map_err(|e| problem(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(problem(format!("{}: {}\n{script}", output.status, String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Makes `table` masquerade the cluster's egress (replacing whatever the table held).
pub async fn apply_masquerade(table: &str, cluster_cidr: &str) -> Result<(), AgentError> {
    nft(&masquerade_ruleset(table, cluster_cidr)).await
}

/// Removes the masquerade table (the agent's stop).
pub async fn remove_masquerade(table: &str) -> Result<(), AgentError> {
    nft(&remove_table_script(table)).await
}

/// Turns on IPv4 forwarding: pods' traffic to other nodes and other nodes' traffic to pods pass
/// through this host.
pub fn enable_forwarding() -> Result<(), AgentError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(path, "1").map_err(|source| AgentError::Io { what: "writing", path: path.to_path_buf(), source })
}

/// Writes the conflist at `path` when its contents differ, through a rename so that containerd,
/// which watches the directory, never reads half a file (the temporary name's extension is one
/// it does not load).
pub fn write_conflist(path: &Path, contents: &str) -> Result<(), AgentError> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == contents) {
        return Ok(());
    }
    let temporary = path.with_extension("tmp");
    super::write_file(temporary.clone(), contents.to_string())?;
    std::fs::rename(&temporary, path).map_err(|source| AgentError::Io { what: "renaming", path: temporary, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(pod_cidr: Option<&str>, pod_cidrs: &[&str]) -> Node {
        Node {
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(str::to_string),
                pod_cidrs: (!pod_cidrs.is_empty()).then(|| pod_cidrs.iter().map(|s| s.to_string()).collect()),
                ..NodeSpec::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn a_nodes_ipv4_ranges_come_from_pod_cidrs_else_pod_cidr() {
        let cases: [(Node, &[&str]); 5] = [
            (Node::default(), &[]),
            (node(Some("10.42.3.0/24"), &[]), &["10.42.3.0/24"]),
            (node(Some("10.42.3.0/24"), &["10.42.3.0/24", "fd00:42::/64"]), &["10.42.3.0/24"]),
            (node(None, &["fd00:42::/64"]), &[]),
            (node(Some("garbage"), &[]), &[]),
        ];
        for (node, expected) in cases {
            assert_eq!(pod_cidrs_of(&node), expected, "{:?}", node.spec);
        }
    }

    #[test]
    fn the_masquerade_rule_spares_traffic_inside_the_cluster_cidr() {
        let text = masquerade_ruleset("tugboat_podnet", "10.42.0.0/16");
        assert!(text.starts_with("table ip tugboat_podnet\ndelete table ip tugboat_podnet\n"), "{text}");
        assert!(text.contains("type nat hook postrouting priority 100; policy accept;"), "{text}");
        assert!(text.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"), "{text}");
        assert_eq!(text.matches("masquerade").count(), 1, "one rule: {text}");
        assert_eq!(remove_table_script("t"), "table ip t\ndelete table ip t\n");
    }

    #[test]
    fn table_names() {
        for (name, ok) in [("tugboat_podnet", true), ("tugt_ab12", true), ("", false), ("1x", false), ("a-b", false)] {
            assert_eq!(is_table_name(name), ok, "{name}");
        }
    }

    #[test]
    fn the_conflist_is_replaced_whole_and_only_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net.d").join(cni::CONFLIST_FILE);
        write_conflist(&path, "one").expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one");
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        write_conflist(&path, "one").expect("unchanged");
        assert_eq!(std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), modified);
        write_conflist(&path, "two").expect("rewritten");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir")).expect("list").flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
