//! The machinery every controller loop shares: shared indexed informers, a work queue with
//! client-go's guarantees, expectations (what a controller is waiting to see in its caches), the
//! routing of dependents' changes to their owners, and the one owner-of-pods loop built from
//! them ([`Controller`]): a controller is its pure core (observed → [`Plan`]) plus a few lines
//! declaring what it watches and owns.

pub mod controller;
pub mod dependents;
pub mod expectations;
pub mod informer;
pub mod plan;
pub mod queue;
pub mod writes;

pub use controller::{Context, Controller, Enqueue, Owned, Request};
pub use expectations::Expectations;
pub use informer::{Cache, Informer};
pub use plan::{Plan, PodAction};
pub use queue::{Queue, run_workers};
pub use writes::{HasStatus, PodWrites, api_message, slow_start};

/// An object's namespace (empty when cluster-scoped) and name: what a work queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of<K: kube::Resource>(obj: &K) -> Key {
        let meta = obj.meta();
        Key { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() }
    }

    pub fn new(namespace: &str, name: &str) -> Key {
        Key { namespace: namespace.to_string(), name: name.to_string() }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() { f.write_str(&self.name) } else { write!(f, "{}/{}", self.namespace, self.name) }
    }
}
