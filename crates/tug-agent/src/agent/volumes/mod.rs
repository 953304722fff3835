//! Pod volumes, the kubelet's volume manager in small.
//!
//! The pure core turns a pod, its volumes and what the agent resolved for them (ConfigMaps,
//! Secrets, bound claims, the node's allocatable resources) into [`plan::PlannedVolume`]s — a
//! directory on the host and how to set it up — and a container's `volumeMounts` into CRI
//! mounts. The IO around it ([`Volumes`]) sets volumes up before a pod's containers start,
//! keeps ConfigMap/Secret/downward-API files current, and tears everything down when the pod is
//! finalized.
//!
//! Layout, as the kubelet's: `<pods_dir>/<uid>/volumes/kubernetes.io~<plugin>/<volume>`.
//! Files of `configMap`, `secret`, `downwardAPI` and `projected` volumes are written the
//! kubelet's atomic way: a fresh `..<timestamp>` directory, a `..data` symlink swapped to it with
//! one rename, and per-entry symlinks `<key> -> ..data/<key>`, so a reader sees either the old
//! or the new set of files, never a mix. `emptyDir` with `medium: Memory` and `secret` volumes
//! live on a tmpfs (secrets never touch the disk).
//!
//! Updates: one watch of all ConfigMaps and one of all Secrets feed a cache; every pod that
//! syncs records what it refers to, and a change to such an object wakes exactly those pods,
//! whose next sync rewrites the files (no polling, no GET per sync).
//!
//! - [`plan`] — the pure core: pod → planned volumes (host directory, how to set it up) and a
//!   container's CRI mounts.
//! - [`atomic`] — the kubelet's AtomicWriter: a payload written into a timestamped directory
//!   and published by swapping the `..data` symlink.
//! - `cache` — the watch-fed ConfigMap/Secret cache that volumes and env vars read.
//! - `manager` — the IO: [`Volumes`] sets up, refreshes and tears down a pod's volumes.

pub mod atomic;
mod cache;
mod manager;
pub mod plan;

pub use manager::Volumes;
pub use plan::{PodVolumes, VolumeError};

use std::path::Path;

/// Names the failed filesystem step and its path in an error message.
fn io_context(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let text = format!("{what} {}", path.display());
    move |e| format!("{text}: {e}")
}
