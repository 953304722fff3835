//! What a node reports about itself, as the kubelet writes it: the node Lease in
//! `kube-node-lease`. The real agent and the hollow nodes (`tug sim`) both use it.

/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The lease duration a kubelet announces (`--node-lease-duration-seconds`' default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
