//! The node's half of the local-path provisioner: the data of a deleted local volume is
//! removed from this node's disk before the volume object goes. The provisioner (in the
//! server's controllers) puts [`CLEANUP_FINALIZER`] on every volume it makes under a node's
//! storage dir; when such a volume is deleted (its claim was, and its reclaim policy is
//! Delete), the agent of that node removes the directory and then the finalizer. A volume of
//! a node that never comes back stays `Terminating` rather than be forgotten with its data on
//! disk; removing the finalizer by hand lets it go.
//!
//! [`cleanup_target`] is the pure decision; [`run`] the watch around it.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// Set by the provisioner on the volumes it makes; removed here once the data is gone.
pub const CLEANUP_FINALIZER: &str = "tugboat.dev/local-path-cleanup";
/// The prefix of every provisioned volume's directory name (`pvc-<claim uid>_…`).
const VOLUME_DIR_PREFIX: &str = "pvc-";

/// The directory to remove for `volume`, when it is being deleted, still waits for this node's
/// cleanup, and its path is a volume directory directly under `storage_dir` (nothing else on
/// the host is ever removed, whatever a volume object says).
pub fn cleanup_target(volume: &PersistentVolume, storage_dir: &Path) -> Option<PathBuf> {
    let meta = &volume.metadata;
    if meta.deletion_timestamp.is_none() || !meta.finalizers.iter().flatten().any(|f| f == CLEANUP_FINALIZER) {
        return None;
    }
    let path = PathBuf::from(&volume.spec.as_ref()?.host_path.as_ref()?.path);
    let name = path.file_name()?.to_str()?;
    let direct_child = path.parent() == Some(storage_dir) && !name.starts_with('.');
    (direct_child && name.starts_with(VOLUME_DIR_PREFIX)).then_some(path)
}

/// Watches volumes and cleans up those of this node's storage dir until the task is dropped.
pub async fn run(client: kube::Client, storage_dir: PathBuf) {
    let api: Api<PersistentVolume> = Api::all(client);
    let mut events =
        std::pin::pin!(watcher(api.clone(), watcher::Config::default()).default_backoff().touched_objects());
    while let Some(event) = events.next().await {
        let volume = match event {
            Ok(volume) => volume,
            Err(error) => {
                tracing::debug!(%error, "volume watch interrupted");
                continue;
            }
        };
        let Some(path) = cleanup_target(&volume, &storage_dir) else { continue };
        let name = volume.metadata.name.clone().unwrap_or_default();
        if let Err(error) = clean_up(&api, &volume, path.clone()).await {
            // The next change of the volume (or the next agent start) tries again.
            tracing::warn!(volume = %name, path = %path.display(), %error, "cannot clean up a deleted local volume");
        } else {
            tracing::info!(volume = %name, path = %path.display(), "deleted local volume's data removed");
        }
    }
}

/// Removes the directory, then the finalizer (with the copy's resourceVersion, so a stale copy
/// cannot drop a finalizer someone added since).
async fn clean_up(api: &Api<PersistentVolume>, volume: &PersistentVolume, path: PathBuf) -> Result<(), String> {
    let removal = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.to_string()),
        _ => Ok(()),
    });
    removal.await.map_err(|e| e.to_string())??;
    let meta = &volume.metadata;
    let finalizers: Vec<&String> = meta.finalizers.iter().flatten().filter(|f| *f != CLEANUP_FINALIZER).collect();
    let patch = json!({"metadata": {"resourceVersion": meta.resource_version, "finalizers": finalizers}});
    match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(deleted: bool, finalizers: &[&str], path: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {
                "name": "pvc-1",
                "deletionTimestamp": deleted.then_some("2026-01-01T00:00:00Z"),
                "finalizers": finalizers,
            },
            "spec": {"hostPath": {"path": path}},
        }))
        .expect("volume")
    }

    #[test]
    fn only_a_deleted_volume_directory_of_this_storage_dir_is_removed() {
        let storage = Path::new("/var/lib/tug/storage");
        let ours = "/var/lib/tug/storage/pvc-1_default_data";
        let cases = [
            (volume(true, &[CLEANUP_FINALIZER], ours), Some(PathBuf::from(ours))),
            (volume(false, &[CLEANUP_FINALIZER], ours), None),
            (volume(true, &["kubernetes.io/pv-protection"], ours), None),
            (volume(true, &[CLEANUP_FINALIZER], "/var/lib/other/storage/pvc-1_default_data"), None),
            (volume(true, &[CLEANUP_FINALIZER], "/var/lib/tug/storage"), None),
            (volume(true, &[CLEANUP_FINALIZER], "/var/lib/tug/storage/pvc-1/../../../etc"), None),
            (volume(true, &[CLEANUP_FINALIZER], "/var/lib/tug/storage/etc"), None),
            (volume(true, &[CLEANUP_FINALIZER], "/var/lib/tug/storage/sub/pvc-2"), None),
        ];
        for (volume, want) in cases {
            assert_eq!(cleanup_target(&volume, storage), want, "{:?}", volume.spec);
        }
    }
}
