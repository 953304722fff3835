//! Which endpoints serve which traffic: kube-proxy's `CategorizeEndpoints` (topology hints are
//! off in Tugboat, so it is the ready/serving/terminating and traffic-policy part).

use super::input::{Endpoint, ServicePort};

/// The endpoints a Service port's traffic may go to, as seen from this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for "Cluster" traffic policy: the ready ones anywhere, or, when none is
    /// ready, the serving-but-terminating ones (so connections drain instead of failing).
    pub cluster: Vec<Endpoint>,
    /// Endpoints for "Local" traffic policy: this node's ready ones, or its
    /// serving-but-terminating ones when it has no ready one.
    pub local: Vec<Endpoint>,
    /// The Service has a usable endpoint somewhere in the cluster (not only on this node).
    pub has_any: bool,
}

pub fn categorize(endpoints: &[Endpoint], port: &ServicePort) -> Categorized {
    let mut out = Categorized::default();
    let serving_terminating = |e: &&Endpoint| e.serving && e.terminating;
    if port.uses_cluster_endpoints() || port.external_policy_local {
        // The cluster set is also what pod and host traffic to an external address of an
        // `externalTrafficPolicy: Local` Service short-circuits to.
        out.cluster = endpoints.iter().filter(|e| e.ready).copied().collect();
        if out.cluster.is_empty() {
            out.cluster = endpoints.iter().filter(serving_terminating).copied().collect();
        }
        out.has_any = !out.cluster.is_empty();
    }
    if port.uses_local_endpoints() {
        out.has_any |= endpoints.iter().any(|e| e.ready || (e.serving && e.terminating));
        let local = || endpoints.iter().filter(|e| e.local);
        out.local = local().filter(|e| e.ready).copied().collect();
        if out.local.is_empty() {
            out.local = local().filter(serving_terminating).copied().collect();
        }
    }
    out
}
