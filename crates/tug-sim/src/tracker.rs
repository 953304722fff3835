//! Which pods on our hollow nodes need something done, and their pod IPs. Pure bookkeeping: the
//! pod loop feeds it watch events and carries out the actions it returns.
//!
//! The API's copy of a pod is compared with what its node reports (Running and Ready) on every
//! event, as the kubelet's status manager does: a status someone changed behind the node's back
//! (the node lifecycle controller's `Ready=False` while the node was silent) is re-asserted.
//! Only the parts the node owns count, never times, and only once the node's own write was seen
//! back, so the node and the controller cannot ping-pong and a write in flight is not repeated.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

use super::addressing::{HostPool, host_in, pod_ip};

/// What the tracker needs to know of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub node: String,
    pub deleting: bool,
    /// Succeeded or Failed: nothing left to run.
    pub terminal: bool,
    /// The pod IP when the pod is already Running (a restarted sim adopts it).
    pub running_ip: Option<Ipv4Addr>,
    /// The API's copy says what a hollow node reports of a running pod: phase Running, the
    /// node's conditions (Initialized, ContainersReady, Ready) True, every container ready.
    pub reported_ready: bool,
}

/// The pod conditions a node owns and reports True for a running pod.
const NODE_CONDITIONS: [&str; 3] = ["Initialized", "ContainersReady", "Ready"];

impl PodView {
    /// `None` for a pod that is not bound or has no uid.
    pub fn of(pod: &Pod) -> Option<PodView> {
        let node = pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())?;
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let running_ip = (phase == Some("Running"))
            .then(|| status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()))
            .flatten();
        let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let condition_true = |kind: &str| conditions.iter().any(|c| c.type_ == kind && c.status == "True");
        let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let wanted = pod.spec.as_ref().map_or(0, |s| s.containers.len());
        let reported_ready = phase == Some("Running")
            && NODE_CONDITIONS.iter().all(|kind| condition_true(kind))
            && containers.len() == wanted
            && containers.iter().all(|c| c.ready);
        Some(PodView {
            uid: pod.metadata.uid.clone()?,
            node,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            running_ip,
            reported_ready,
        })
    }
}

/// What to do about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Make it Running and Ready on node `node` (an index) with this IP.
    Start {
        node: usize,
        ip: Ipv4Addr,
    },
    /// The API's copy differs from what its node reports: write it Running and Ready again,
    /// now, keeping this IP.
    Reassert {
        node: usize,
        ip: Ipv4Addr,
    },
    /// Its containers "stopped": delete it for good.
    Finish,
    /// Its node has no pod IP left.
    NoAddress {
        node: usize,
    },
}

/// Where a tracked pod is in its life on a hollow node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its running status is being written (a start or a re-assertion), not yet seen back.
    Writing,
    /// The API showed the status the node reports: a copy that differs is re-asserted.
    Shown,
    /// Being deleted: it is finished, nothing more is reported.
    Finishing,
}

#[derive(Debug, Clone)]
struct Tracked {
    node: usize,
    host: Option<u8>,
    state: State,
}

/// The pods of this sim's nodes.
#[derive(Debug)]
pub struct Tracker {
    node_index: HashMap<String, usize>,
    networks: Vec<Ipv4Addr>,
    pools: Vec<HostPool>,
    pods: HashMap<String, Tracked>,
    relisted: Option<HashSet<String>>,
}

impl Tracker {
    /// `nodes`: name and pod network of each node, by index.
    pub fn new(nodes: impl IntoIterator<Item = (String, Ipv4Addr)>) -> Tracker {
        let (names, networks): (Vec<String>, Vec<Ipv4Addr>) = nodes.into_iter().unzip();
        let node_index = names.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        let pools = vec![HostPool::default(); networks.len()];
        Tracker { node_index, networks, pools, pods: HashMap::new(), relisted: None }
    }

    /// How many pods are tracked.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// A pod was added or changed.
    pub fn applied(&mut self, pod: &PodView) -> Action {
        let Some(&node) = self.node_index.get(&pod.node) else {
            return Action::Nothing;
        };
        if let Some(relisted) = &mut self.relisted {
            relisted.insert(pod.uid.clone());
        }
        let network = self.networks[node];
        if let Some(tracked) = self.pods.get_mut(&pod.uid) {
            if pod.deleting {
                if tracked.state == State::Finishing {
                    return Action::Nothing;
                }
                tracked.state = State::Finishing;
                return Action::Finish;
            }
            let ip = tracked.host.map(|host| pod_ip(network, host)).or(pod.running_ip);
            return match (tracked.state, pod.reported_ready, ip) {
                (State::Writing, true, _) => {
                    tracked.state = State::Shown;
                    Action::Nothing
                }
                (State::Shown, false, Some(ip)) if !pod.terminal => {
                    tracked.state = State::Writing;
                    Action::Reassert { node, ip }
                }
                _ => Action::Nothing,
            };
        }
        // Not seen before: a new pod, or one from before this sim started.
        let adopted = pod.running_ip.and_then(|ip| host_in(network, ip)).filter(|h| self.pools[node].claim(*h));
        if pod.deleting {
            self.pods.insert(pod.uid.clone(), Tracked { node, host: adopted, state: State::Finishing });
            return Action::Finish;
        }
        if pod.terminal {
            return Action::Nothing;
        }
        if let Some(ip) = pod.running_ip {
            // Already running (this sim ran it before a restart): keep it, with its IP, and
            // report it Ready again if that is not what the API says.
            let state = if pod.reported_ready { State::Shown } else { State::Writing };
            self.pods.insert(pod.uid.clone(), Tracked { node, host: adopted, state });
            return if pod.reported_ready { Action::Nothing } else { Action::Reassert { node, ip } };
        }
        match self.pools[node].allocate() {
            Some(host) => {
                self.pods.insert(pod.uid.clone(), Tracked { node, host: Some(host), state: State::Writing });
                Action::Start { node, ip: pod_ip(network, host) }
            }
            None => Action::NoAddress { node },
        }
    }

    /// A pod is gone (deleted, or a start gave up): its IP is free again.
    pub fn forget(&mut self, uid: &str) -> bool {
        match self.pods.remove(uid) {
            Some(tracked) => {
                if let Some(host) = tracked.host {
                    self.pools[tracked.node].release(host);
                }
                true
            }
            None => false,
        }
    }

    /// The watch is starting over with a full list.
    pub fn relist_started(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// The full list is in: pods that were not in it are gone. Returns their uids.
    pub fn relist_done(&mut self) -> Vec<String> {
        let Some(seen) = self.relisted.take() else {
            return Vec::new();
        };
        let gone: Vec<String> = self.pods.keys().filter(|uid| !seen.contains(*uid)).cloned().collect();
        for uid in &gone {
            self.forget(uid);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new([("a".to_string(), Ipv4Addr::new(10, 42, 0, 0)), ("b".to_string(), Ipv4Addr::new(10, 42, 1, 0))])
    }

    fn view(uid: &str, node: &str) -> PodView {
        PodView {
            uid: uid.into(),
            node: node.into(),
            deleting: false,
            terminal: false,
            running_ip: None,
            reported_ready: false,
        }
    }

    /// `view` as the API shows it once the node's running status is in.
    fn shown(view: PodView, ip: Ipv4Addr) -> PodView {
        PodView { running_ip: Some(ip), reported_ready: true, ..view }
    }

    /// `view` running, marked not ready by someone else.
    fn marked_not_ready(view: PodView, ip: Ipv4Addr) -> PodView {
        PodView { running_ip: Some(ip), reported_ready: false, ..view }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn pods_of_other_nodes_are_ignored() {
        let mut t = tracker();
        assert_eq!(t.applied(&view("1", "elsewhere")), Action::Nothing);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_new_pod_starts_once_with_an_ip_of_its_node() {
        let mut t = tracker();
        assert_eq!(t.applied(&view("1", "b")), Action::Start { node: 1, ip: ip("10.42.1.2") });
        assert_eq!(t.applied(&view("1", "b")), Action::Nothing, "our own status write comes back");
        assert_eq!(t.applied(&view("2", "b")), Action::Start { node: 1, ip: ip("10.42.1.3") });
        assert_eq!(t.applied(&view("3", "a")), Action::Start { node: 0, ip: ip("10.42.0.2") });
    }

    #[test]
    fn deletion_finishes_once_and_frees_the_ip() {
        let mut t = tracker();
        t.applied(&view("1", "a"));
        let deleting = PodView { deleting: true, ..view("1", "a") };
        assert_eq!(t.applied(&deleting), Action::Finish);
        assert_eq!(t.applied(&deleting), Action::Nothing);
        assert!(t.forget("1"));
        assert!(!t.forget("1"));
        assert_eq!(t.applied(&view("2", "a")), Action::Start { node: 0, ip: ip("10.42.0.2") });
    }

    #[test]
    fn a_deleting_pod_seen_first_is_finished() {
        let mut t = tracker();
        assert_eq!(t.applied(&PodView { deleting: true, ..view("1", "a") }), Action::Finish);
    }

    #[test]
    fn a_status_changed_behind_the_nodes_back_is_reasserted_once_per_change() {
        let mut t = tracker();
        let ip = ip("10.42.0.2");
        assert_eq!(t.applied(&view("1", "a")), Action::Start { node: 0, ip });
        assert_eq!(t.applied(&view("1", "a")), Action::Nothing, "not running yet: the start is under way");
        assert_eq!(t.applied(&shown(view("1", "a"), ip)), Action::Nothing, "our write came back");
        assert_eq!(t.applied(&shown(view("1", "a"), ip)), Action::Nothing, "others' changes that keep it Ready");
        assert_eq!(t.applied(&marked_not_ready(view("1", "a"), ip)), Action::Reassert { node: 0, ip });
        assert_eq!(
            t.applied(&marked_not_ready(view("1", "a"), ip)),
            Action::Nothing,
            "the re-assertion is under way: not repeated until seen back"
        );
        assert_eq!(t.applied(&shown(view("1", "a"), ip)), Action::Nothing);
        assert_eq!(t.applied(&marked_not_ready(view("1", "a"), ip)), Action::Reassert { node: 0, ip }, "marked again");
    }

    #[test]
    fn pods_deleting_or_terminal_are_not_reasserted() {
        let mut t = tracker();
        let ip = ip("10.42.0.2");
        t.applied(&view("1", "a"));
        t.applied(&shown(view("1", "a"), ip));
        let failed = PodView { terminal: true, ..marked_not_ready(view("1", "a"), ip) };
        assert_eq!(t.applied(&failed), Action::Nothing);
        let deleting = PodView { deleting: true, ..marked_not_ready(view("1", "a"), ip) };
        assert_eq!(t.applied(&deleting), Action::Finish);
        assert_eq!(t.applied(&deleting), Action::Nothing);
    }

    #[test]
    fn an_adopted_running_pod_marked_not_ready_is_reasserted_with_its_ip() {
        let mut t = tracker();
        let ip = ip("10.42.0.7");
        assert_eq!(t.applied(&marked_not_ready(view("1", "a"), ip)), Action::Reassert { node: 0, ip });
        assert_eq!(t.applied(&shown(view("1", "a"), ip)), Action::Nothing);
        assert_eq!(t.applied(&view("2", "a")), Action::Start { node: 0, ip: self::ip("10.42.0.2") });
        assert_ne!(t.applied(&view("3", "a")), Action::Start { node: 0, ip }, "its IP stays taken");
    }

    #[test]
    fn running_pods_are_adopted_with_their_ip() {
        let mut t = tracker();
        let running = shown(view("1", "a"), ip("10.42.0.2"));
        assert_eq!(t.applied(&running), Action::Nothing);
        assert_eq!(t.applied(&view("2", "a")), Action::Start { node: 0, ip: ip("10.42.0.3") });
    }

    #[test]
    fn terminal_pods_are_left_alone() {
        let mut t = tracker();
        assert_eq!(t.applied(&PodView { terminal: true, ..view("1", "a") }), Action::Nothing);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_node_reports_no_address() {
        let mut t = tracker();
        for i in 0..HostPool::CAPACITY {
            assert!(matches!(t.applied(&view(&i.to_string(), "a")), Action::Start { .. }));
        }
        assert_eq!(t.applied(&view("x", "a")), Action::NoAddress { node: 0 });
        assert_eq!(t.applied(&view("y", "b")), Action::Start { node: 1, ip: ip("10.42.1.2") });
    }

    #[test]
    fn a_relist_forgets_pods_that_vanished_meanwhile() {
        let mut t = tracker();
        t.applied(&view("1", "a"));
        t.applied(&view("2", "a"));
        t.relist_started();
        t.applied(&view("2", "a"));
        assert_eq!(t.relist_done(), vec!["1".to_string()]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.relist_done(), Vec::<String>::new());
    }

    #[test]
    fn views_of_pods() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u", "deletionTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"nodeName": "a", "containers": []},
            "status": {"phase": "Running", "podIP": "10.42.0.9"},
        }))
        .expect("pod");
        let v = PodView::of(&pod).expect("bound");
        assert_eq!(
            v,
            PodView {
                uid: "u".into(),
                node: "a".into(),
                deleting: true,
                terminal: false,
                running_ip: Some(ip("10.42.0.9")),
                reported_ready: false,
            }
        );
        let unbound: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"uid": "u"}, "spec": {"containers": []}}))
                .expect("pod");
        assert_eq!(PodView::of(&unbound), None);
    }

    #[test]
    fn the_nodes_own_running_status_reads_as_reported_and_a_changed_ready_does_not() {
        use super::super::objects::{HollowNode, running_status};
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .expect("pod");
        let node = HollowNode { index: 0, name: "a".into(), pod_network: ip("10.42.0.0") };
        let now = jiff::Timestamp::now();
        let patch = running_status(&pod, &node, ip("10.42.0.2"), now, now);
        pod.status = Some(serde_json::from_value(patch["status"].clone()).expect("status"));
        assert!(PodView::of(&pod).expect("bound").reported_ready);
        let mut marked = pod.clone();
        let conditions = marked.status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions");
        let ready = conditions.iter_mut().find(|c| c.type_ == "Ready").expect("Ready");
        (ready.status, ready.reason) = ("False".into(), Some("NodeNotReady".into()));
        assert!(!PodView::of(&marked).expect("bound").reported_ready);
        let mut one_missing = pod.clone();
        one_missing.status.as_mut().and_then(|s| s.container_statuses.as_mut()).expect("statuses").pop();
        assert!(!PodView::of(&one_missing).expect("bound").reported_ready);
    }
}
