//! The machinery every controller loop shares: shared indexed informers, a work queue with
//! client-go's guarantees, expectations (what a controller is waiting to see in its caches), and
//! the routing of pod changes to the controllers that own pods.

pub mod dependents;
pub mod expectations;
pub mod informer;
pub mod queue;

pub use expectations::Expectations;
pub use informer::{Cache, Informer};
pub use queue::{Queue, run_workers};

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
