//! The cluster the controllers' integration tests run against, all in this process: a real API
//! server on a temporary data directory, the real scheduler, the controllers, and hollow nodes
//! (`tug_sim`) that bind, start and delete pods like a kubelet without containers.
//! Everything stops when the [`Cluster`] is dropped, on success, failure or panic.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Pod, Taint};
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_controllers::ControllerOptions;
use tug_sim::{self as sim, SimOptions};

/// How long a test waits for the cluster to get where it should.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How the cluster differs from production defaults.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The controllers read [`Cluster::set_clock`]'s time (CronJobs) instead of the real one.
    pub test_clock: bool,
    /// How long a node's Lease may go unrenewed before it is tainted (20 s by default).
    pub node_grace: Option<Duration>,
    /// The `not-ready`/`unreachable` toleration admission adds to pods (10 s by default).
    pub default_toleration_seconds: Option<i64>,
}

/// A server with the scheduler and the controllers.
pub struct Cluster {
    pub client: Client,
    /// The test clock, in seconds since the epoch (see [`Setup::test_clock`]).
    clock: Arc<AtomicI64>,
    stop: watch::Sender<bool>,
    _server: RunningServer,
    _dir: tempfile::TempDir,
}

/// Resolves once `stop` says so.
async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = ServerConfig::local(dir.path());
        if let Some(seconds) = setup.default_toleration_seconds {
            config.admission.default_toleration_seconds = seconds;
        }
        let server = tug_apiserver::server::start(config).await.expect("the server starts");
        let client = Client::new(server.local_service(), "default");
        let (stop, stopped) = watch::channel(false);
        let scheduler = tug_scheduler::run(client.clone(), Default::default(), until(stopped.clone()));
        tokio::spawn(async move { scheduler.await.expect("the scheduler runs") });
        let clock = Arc::new(AtomicI64::new(Timestamp::now().as_second()));
        let mut options = ControllerOptions::default();
        if setup.test_clock {
            let reading = clock.clone();
            options.clock =
                Arc::new(move || Timestamp::from_second(reading.load(Ordering::SeqCst)).expect("a valid time"));
        }
        if let Some(grace) = setup.node_grace {
            options.node_grace = grace;
        }
        tokio::spawn(tug_controllers::run(client.clone(), options, until(stopped)));
        Cluster { client, clock, stop, _server: server, _dir: dir }
    }

    /// The API of a namespaced kind in `default`.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Moves the test clock (see [`Setup::test_clock`]).
    pub fn set_clock(&self, t: Timestamp) {
        self.clock.store(t.as_second(), Ordering::SeqCst);
    }

    /// `count` hollow nodes named `<prefix>-<i>`, quick to start and delete pods.
    pub fn nodes(&self, prefix: &str, count: usize) -> Nodes {
        self.nodes_with(SimOptions { nodes: count, name_prefix: prefix.into(), ..quick_nodes() })
    }

    /// The same, with these taints.
    pub fn tainted_nodes(&self, prefix: &str, count: usize, taints: Vec<Taint>) -> Nodes {
        self.nodes_with(SimOptions { nodes: count, name_prefix: prefix.into(), taints, ..quick_nodes() })
    }

    /// Hollow nodes as `options` say, running until [`Nodes::stop`] or the cluster stops.
    pub fn nodes_with(&self, options: SimOptions) -> Nodes {
        let (stop, stopped) = watch::channel(false);
        let (mut ours, mut cluster) = (stopped, self.stop.subscribe());
        let task = sim::run(self.client.clone(), options, async move {
            // A dropped `Nodes` is no stop: they run on until the cluster stops.
            let stopped_by_us = async {
                if ours.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = stopped_by_us => {}
                _ = cluster.wait_for(|s| *s) => {}
            }
        });
        tokio::spawn(async move { task.await.expect("the sim runs") });
        Nodes { stop }
    }
}

/// Hollow nodes' timings for tests: ready and gone in tens of milliseconds.
pub fn quick_nodes() -> SimOptions {
    SimOptions {
        ready_delay: Duration::from_millis(50),
        delete_delay: Duration::from_millis(50),
        lease_interval: Duration::from_millis(300),
        ..SimOptions::default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A group of hollow nodes. They keep running when this is dropped; [`Nodes::stop`] makes them
/// go silent (their leases are no longer renewed), as a host that died.
#[derive(Debug)]
pub struct Nodes {
    stop: watch::Sender<bool>,
}

impl Nodes {
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// One pod as a watch delivered it, in the API's order.
#[derive(Debug, Clone)]
pub struct Seen {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub deleting: bool,
    pub gone: bool,
}

/// Every pod change in `default`, in the order the API made them, from now on until the
/// cluster stops.
pub fn record_pods(cluster: &Cluster) -> Arc<Mutex<Vec<Seen>>> {
    let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let api: Api<Pod> = cluster.api();
    let sink = log.clone();
    let mut stopped = cluster.stop.subscribe();
    tokio::spawn(async move {
        // Backoff: once the server is gone, a watcher without it retries in a busy loop.
        let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                event = events.next() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            let (pod, gone) = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
            let seen = Seen {
                name: pod.name_any(),
                labels: pod.labels().clone(),
                ready: is_ready(&pod),
                deleting: pod.metadata.deletion_timestamp.is_some(),
                gone,
            };
            sink.lock().expect("log lock").push(seen);
        }
    });
    log
}

/// The position of the first entry after `from` that satisfies `what`.
pub fn first(log: &[Seen], from: usize, what: impl Fn(&Seen) -> bool) -> Option<usize> {
    log.iter().skip(from).position(what).map(|i| i + from)
}

/// The live (not deleting) pods labelled `app=<app>`.
pub async fn live_pods(api: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("pods list");
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Running with its Ready condition true.
pub fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
