//! The pod sync loop around the pure cores: one watch of the pods bound to this node, a relist
//! of the runtime every second (the kubelet's PLEG: a pod whose sandboxes or containers changed
//! is synced), and one worker per pod at a time. A sync observes the pod's sandboxes and
//! containers over CRI (through `tug_cri::ContainerRuntime`: containerd, or the in-memory fake
//! of the unit tests below), asks [`plan`] what to do, does it, observes again and writes the status
//! [`pod_status`] computes when the parts the agent owns differ from the API's current copy
//! ([`needs_write`]). Every change of the pod in the API wakes its sync, so a status changed
//! behind the agent's back is re-asserted at once.
//!
//! A failed CRI call (the runtime down or restarting) ends the relist or the sync with an error:
//! nothing is concluded from it (never "no containers"), no status is written, the last view
//! stays and both retry; containers that kept running are found unchanged afterwards.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tug_cri::ContainerRuntime;
use tug_cri::v1::{
    AuthConfig, ContainerFilter, ContainerStatusRequest, CreateContainerRequest, DnsConfig, Image, ImageSpec,
    ImageStatusRequest, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxStatusRequest,
    PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use tug_k8s::pods::PodRef;

use super::AgentError;
use super::auth;
use super::logs::pod_log_dir_name;
use super::plan::{Action, ContainerState, Desired, Observed, ObservedContainer, ObservedSandbox, RestartPolicy, plan};
use super::probes::{Prober, kill_message};
use super::spec::{
    ContainerContext, NODE_LABEL, NodeResources, POD_UID_LABEL, Referenced, container_config, environment,
    pod_cgroup_dirs, sandbox_config, verify_run_as_non_root,
};
use super::status::{Facts, StartFailure, needs_write, pod_status};
use super::volumes::{PodVolumes, VolumeError, Volumes};

/// How often the runtime is relisted for changes (the kubelet's PLEG period).
const RELIST_EVERY: Duration = Duration::from_secs(1);
/// When to retry a pod whose sync failed or whose containers could not start.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long after a container's exit its reason may still change (a late OOM event).
const EXIT_SETTLES_IN: Duration = Duration::from_secs(2);
/// Grace for the containers of a pod that is gone from the API (nobody waits for them).
const ORPHAN_GRACE_SECONDS: i64 = 2;
/// The grace period when neither the deletion nor the spec names one (the API default).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What every pod worker shares.
pub struct Ctx {
    pub client: kube::Client,
    /// The container runtime (containerd over CRI; an in-memory fake in unit tests).
    pub cri: Arc<dyn ContainerRuntime>,
    pub node: String,
    pub host_ip: String,
    pub dns: DnsConfig,
    /// Container logs go to `<pods_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.
    pub pods_dir: PathBuf,
    /// Pod volumes, and the ConfigMap/Secret cache they (and env) read from.
    pub volumes: Volumes,
    /// The node's cpu and memory (read once, with the rest of the host's facts): what
    /// `resourceFieldRef` gives for a limit a container lacks.
    pub allocatable: NodeResources,
    /// Syncs of live pods running at once. containerd does the work of a pod start on the
    /// node's cores (namespaces, CNI, shims, runc); a hundred starts at once finish all at once
    /// and late, a few at a time finish in a steady stream, the first pods within a second.
    pub syncs: tokio::sync::Semaphore,
}

/// How many pod syncs may run at once (see [`Ctx::syncs`]).
pub const CONCURRENT_SYNCS: usize = 6;

/// A failed step of a sync, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
struct SyncError {
    what: String,
    message: String,
}

fn cri_error(what: impl Into<String>) -> impl FnOnce(tug_cri::Status) -> SyncError {
    let what = what.into();
    move |status| SyncError { what, message: status.message().to_string() }
}

/// The decisions-relevant part of a pod.
pub fn desired_of(pod: &Pod) -> Desired {
    let spec = pod.spec.clone().unwrap_or_default();
    let names = |list: &[Container]| list.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let deleting = pod.metadata.deletion_timestamp.as_ref().map(|_| {
        pod.metadata
            .deletion_grace_period_seconds
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS)
    });
    Desired {
        restart_policy: RestartPolicy::parse(spec.restart_policy.as_deref()),
        init_containers: names(spec.init_containers.as_deref().unwrap_or_default()),
        containers: names(&spec.containers),
        deleting,
    }
}

fn now_nanos() -> i64 {
    i64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Everything the runtime has for pod `uid` (made by this node), with container details.
async fn observe_pod(ctx: &Ctx, uid: &str) -> Result<Observed, SyncError> {
    let cri = &ctx.cri;
    let selector = labels(&[(POD_UID_LABEL, uid), (NODE_LABEL, &ctx.node)]);
    let filter = PodSandboxFilter { label_selector: selector.clone(), ..Default::default() };
    let sandboxes = cri
        .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
        .await
        .map_err(cri_error("ListPodSandbox"))?
        .items;
    let mut observed = Observed::default();
    for sandbox in sandboxes {
        let ready = sandbox.state == 0;
        let ip = if ready {
            let status = cri
                .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.id.clone(), verbose: false })
                .await
                .map_err(cri_error("PodSandboxStatus"))?;
            status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default()
        } else {
            String::new()
        };
        let attempt = sandbox.metadata.map_or(0, |m| m.attempt);
        observed.sandboxes.push(ObservedSandbox { id: sandbox.id, attempt, ready, ip });
    }
    let filter = ContainerFilter { label_selector: selector, ..Default::default() };
    let containers = cri
        .list_containers(ListContainersRequest { filter: Some(filter) })
        .await
        .map_err(cri_error("ListContainers"))?
        .containers;
    for container in containers {
        let status = cri
            .container_status(ContainerStatusRequest { container_id: container.id.clone(), verbose: false })
            .await
            .map_err(cri_error("ContainerStatus"))?
            .status
            .unwrap_or_default();
        let metadata = container.metadata.unwrap_or_default();
        observed.containers.push(ObservedContainer {
            id: container.id,
            sandbox_id: container.pod_sandbox_id,
            name: metadata.name,
            attempt: metadata.attempt,
            state: Some(ContainerState::from_cri(status.state)),
            exit_code: status.exit_code,
            started_at: status.started_at,
            finished_at: status.finished_at,
            reason: status.reason,
            message: status.message,
            image: status.image.map(|i| i.image).unwrap_or_default(),
            image_ref: status.image_ref,
        });
    }
    Ok(observed)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers.iter().flatten().chain(spec.containers.iter()).find(|c| c.name == name)
}

/// Makes `container`'s image present as its pull policy asks, pulling with the credentials of
/// the pod's `imagePullSecrets` that match its registry; returns the image as the runtime has it.
async fn ensure_image(
    ctx: &Ctx,
    pod: &Pod,
    container: &Container,
    referenced: &Referenced,
) -> Result<Image, StartFailure> {
    let cri = &ctx.cri;
    let image = container.image.clone().unwrap_or_default();
    let spec = ImageSpec { image: image.clone(), ..Default::default() };
    let inspect = |spec: ImageSpec| async move {
        cri.image_status(ImageStatusRequest { image: Some(spec), verbose: false })
            .await
            .map(|r| r.image)
            .map_err(|s| ("ErrImageInspect".to_string(), s.message().to_string()))
    };
    let present = inspect(spec.clone()).await?;
    let latest = !image.rsplit('/').next().unwrap_or_default().contains(':') || image.ends_with(":latest");
    let policy =
        container.image_pull_policy.clone().unwrap_or_else(|| if latest { "Always" } else { "IfNotPresent" }.into());
    match (policy.as_str(), present) {
        ("Never", None) => {
            return Err((
                "ErrImageNeverPull".into(),
                format!("Container image {image:?} is not present with pull policy of Never"),
            ));
        }
        ("Never" | "IfNotPresent", Some(found)) => return Ok(found),
        _ => {}
    }
    let pull_secrets = pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten());
    let secrets = pull_secrets.filter_map(|r| referenced.secrets.get(&r.name));
    let credentials = auth::pull_credentials(&image, secrets);
    // Each matching credential in turn, as the kubelet tries them; anonymous when none match.
    let attempts: Vec<Option<AuthConfig>> =
        if credentials.is_empty() { vec![None] } else { credentials.into_iter().map(Some).collect() };
    let mut failure = String::new();
    for auth in attempts {
        let request = PullImageRequest { image: Some(spec.clone()), auth, sandbox_config: None };
        match cri.pull_image(request).await {
            Ok(_) => {
                return inspect(spec.clone())
                    .await?
                    .ok_or_else(|| ("ErrImagePull".into(), format!("image {image:?} is missing after its pull")));
            }
            Err(status) => failure = status.message().to_string(),
        }
    }
    Err(("ErrImagePull".into(), failure))
}

/// The ConfigMaps and Secrets `pod` refers to, from the agent's watch-fed cache; missing ones
/// are left out (the container config says what is missing).
async fn read_referenced(ctx: &Ctx, pod: &Pod) -> Result<Referenced, SyncError> {
    ctx.volumes
        .referenced(pod)
        .await
        .map_err(|message| SyncError { what: "reading ConfigMaps and Secrets".into(), message })
}

/// What starting a container of a pod needs from the sync: the pod, its live sandbox, where
/// its logs go, the objects it refers to.
struct PodRun<'a> {
    pod: &'a Pod,
    sandbox_id: &'a str,
    pod_ip: &'a str,
    log_dir: &'a std::path::Path,
    referenced: &'a Referenced,
    volumes: &'a PodVolumes,
}

/// Pulls, creates and starts container `name` (attempt `attempt`) in the pod's sandbox.
async fn start_container(ctx: &Ctx, run: &PodRun<'_>, name: &str, attempt: u32) -> Result<(), StartFailure> {
    let PodRun { pod, sandbox_id, pod_ip, log_dir, referenced, volumes } = *run;
    let container = find_container(pod, name)
        .ok_or_else(|| ("CreateContainerConfigError".into(), format!("no container {name}")))?;
    let image = ensure_image(ctx, pod, container, referenced).await?;
    let image_user = (image.uid.map(|u| u.value), image.username.as_str());
    verify_run_as_non_root(pod, container, Some(image_user))
        .map_err(|e| ("CreateContainerConfigError".to_string(), e.0))?;
    let context = ContainerContext {
        node: &ctx.node,
        attempt,
        pod_ip,
        host_ip: &ctx.host_ip,
        referenced,
        mounts: &[],
        allocatable: ctx.allocatable,
    };
    let mounts = container_mounts(pod, container, volumes, &context)?;
    let context = ContainerContext { mounts: &mounts, ..context };
    let config =
        container_config(pod, container, &context).map_err(|e| ("CreateContainerConfigError".to_string(), e.0))?;
    let _ = std::fs::create_dir_all(log_dir.join(name));
    let sandbox_config = sandbox_config(pod, &ctx.node, 0, &ctx.dns, &log_dir.to_string_lossy());
    let cri = &ctx.cri;
    let request = CreateContainerRequest {
        pod_sandbox_id: sandbox_id.into(),
        config: Some(config),
        sandbox_config: Some(sandbox_config),
    };
    let created = cri
        .create_container(request)
        .await
        .map_err(|s| ("CreateContainerError".to_string(), s.message().to_string()))?
        .container_id;
    cri.start_container(StartContainerRequest { container_id: created })
        .await
        .map(drop)
        .map_err(|s| ("RunContainerError".to_string(), s.message().to_string()))
}

/// Carries out `actions` in order; start failures are returned per container, other failures
/// end the sync.
async fn execute(
    ctx: &Ctx,
    pod: Option<&Pod>,
    observed: &Observed,
    actions: Vec<Action>,
) -> Result<Vec<(String, StartFailure)>, SyncError> {
    let cri = &ctx.cri;
    let mut failures = Vec::new();
    let live = observed.live_sandbox();
    let (mut sandbox_id, mut pod_ip) = (live.map(|s| s.id.clone()), live.map(|s| s.ip.clone()).unwrap_or_default());
    let log_dir = pod.map(|p| ctx.pods_dir.join(pod_log_dir_name(&PodRef::of(p)))).unwrap_or_default();
    let starts_containers = actions.iter().any(|a| matches!(a, Action::StartContainer { .. }));
    let referenced = match pod {
        Some(pod) if starts_containers => read_referenced(ctx, pod).await?,
        _ => Referenced::default(),
    };
    // Volumes are set up (later: refreshed) before anything of the pod starts; a pod whose
    // volumes cannot be set up starts nothing and says why.
    let volumes = match pod {
        Some(pod) if pod.metadata.deletion_timestamp.is_none() => Some(ctx.volumes.sync(pod).await),
        _ => None,
    };
    let volume_failure = match &volumes {
        Some(Err(error)) => Some(volume_failure(pod, error)),
        _ => None,
    };
    // Containers stop side by side, so the pod's grace period is spent once, not per container.
    let stops: Vec<(String, i64)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StopContainer { id, grace_seconds } => Some((id.clone(), *grace_seconds)),
            _ => None,
        })
        .collect();
    let results = futures::future::join_all(stops.into_iter().map(|(id, timeout)| {
        let cri = &ctx.cri;
        async move { cri.stop_container(StopContainerRequest { container_id: id, timeout }).await }
    }))
    .await;
    for result in results {
        result.map_err(cri_error("StopContainer"))?;
    }
    for action in actions {
        match action {
            Action::StopContainer { .. } => {}
            Action::RunSandbox { .. } if volume_failure.is_some() => {}
            Action::RunSandbox { attempt } => {
                let pod = pod.ok_or_else(|| SyncError { what: "RunPodSandbox".into(), message: "no pod".into() })?;
                std::fs::create_dir_all(&log_dir).map_err(|e| SyncError {
                    what: format!("creating {}", log_dir.display()),
                    message: e.to_string(),
                })?;
                let config = sandbox_config(pod, &ctx.node, attempt, &ctx.dns, &log_dir.to_string_lossy());
                let id = cri
                    .run_pod_sandbox(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() })
                    .await
                    .map_err(cri_error("RunPodSandbox"))?
                    .pod_sandbox_id;
                let status = cri
                    .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false })
                    .await
                    .map_err(cri_error("PodSandboxStatus"))?;
                pod_ip = status.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
                sandbox_id = Some(id);
            }
            Action::StartContainer { name, .. } if volume_failure.is_some() => {
                failures.extend(volume_failure.clone().map(|failure| (name, failure)));
            }
            Action::StartContainer { name, attempt, .. } => {
                let (Some(pod), Some(sandbox), Some(Ok(volumes))) = (pod, sandbox_id.as_deref(), &volumes) else {
                    continue;
                };
                let run = PodRun {
                    pod,
                    sandbox_id: sandbox,
                    pod_ip: &pod_ip,
                    log_dir: &log_dir,
                    referenced: &referenced,
                    volumes,
                };
                if let Err(failure) = start_container(ctx, &run, &name, attempt).await {
                    tracing::warn!(pod = ?pod.metadata.name, container = %name, reason = %failure.0, message = %failure.1, "container did not start");
                    failures.push((name, failure));
                }
            }
            Action::StartCreated { id } => {
                cri.start_container(StartContainerRequest { container_id: id })
                    .await
                    .map_err(cri_error("StartContainer"))?;
            }
            Action::RemoveContainer { id } => {
                cri.remove_container(RemoveContainerRequest { container_id: id })
                    .await
                    .map_err(cri_error("RemoveContainer"))?;
            }
            Action::StopSandbox { id } => {
                cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map_err(cri_error("StopPodSandbox"))?;
            }
            Action::RemoveSandbox { id } => {
                cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map_err(cri_error("RemovePodSandbox"))?;
            }
            Action::Finalize => {
                if let Some(pod) = pod {
                    teardown_volumes(ctx, &PodRef::of(pod).uid).await?;
                    remove_pod_cgroups(&PodRef::of(pod).uid);
                    finalize(ctx, pod).await?;
                    let _ = std::fs::remove_dir_all(&log_dir);
                }
            }
        }
    }
    Ok(failures)
}

/// The waiting state of a container whose pod's volumes could not be set up (retried).
fn volume_failure(pod: Option<&Pod>, error: &VolumeError) -> StartFailure {
    let name = pod.and_then(|p| p.metadata.name.as_deref()).unwrap_or_default();
    tracing::warn!(pod = %name, %error, "volumes not ready");
    ("ContainerCreating".into(), error.to_string())
}

/// The CRI mounts of `container`, from the pod's prepared volumes.
fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &PodVolumes,
    context: &ContainerContext,
) -> Result<Vec<tug_cri::v1::Mount>, StartFailure> {
    let config_error = |message: String| ("CreateContainerConfigError".to_string(), message);
    let expands = container.volume_mounts.iter().flatten().any(|m| m.sub_path_expr.is_some());
    let env = if expands { environment(pod, container, context).map_err(|e| config_error(e.0))? } else { vec![] };
    Volumes::mounts_for(container, volumes, &env).map_err(config_error)
}

/// Removes the (empty) cgroups of pod `uid` in every hierarchy once its sandboxes are gone,
/// as the kubelet does; the runtime removes only the containers' own.
fn remove_pod_cgroups(uid: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(root).into_iter().flatten().flatten().map(|entry| entry.path());
    for hierarchy in std::iter::once(root.to_path_buf()).chain(hierarchies) {
        for dir in pod_cgroup_dirs(uid) {
            // Absent in most hierarchies (only the pod's QoS class exists): nothing to do.
            let _ = std::fs::remove_dir(hierarchy.join(dir.trim_start_matches('/')));
        }
    }
}

/// Unmounts and removes the volumes of pod `uid`.
async fn teardown_volumes(ctx: &Ctx, uid: &str) -> Result<(), SyncError> {
    ctx.volumes
        .teardown(uid)
        .await
        .map_err(|message| SyncError { what: format!("tearing down the volumes of {uid}"), message })
}

/// Deletes the pod object for good (grace 0), only this incarnation of it (uid precondition).
async fn finalize(ctx: &Ctx, pod: &Pod) -> Result<(), SyncError> {
    let pod_ref = PodRef::of(pod);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod_ref.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(pod_ref.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&pod_ref.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(e) => Err(SyncError {
            what: format!("deleting pod {}/{}", pod_ref.namespace, pod_ref.name),
            message: e.to_string(),
        }),
    }
}

/// How a pod sync ended.
#[derive(Debug)]
struct Outcome {
    uid: String,
    wake_in: Option<Duration>,
    /// The pod is gone from the API and the runtime: forget it.
    gone: bool,
}

async fn sync_pod(ctx: Arc<Ctx>, prober: Arc<Prober>, uid: String, pod: Option<Pod>) -> Outcome {
    // Teardowns mostly wait out grace periods: they do not queue behind starts, nor starts
    // behind them.
    let tearing_down = pod.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some());
    let _turn = if tearing_down { None } else { Some(ctx.syncs.acquire().await) };
    match try_sync_pod(&ctx, &prober, &uid, pod.as_ref()).await {
        Ok(outcome) => outcome,
        Err(error) => {
            let name = pod.as_ref().and_then(|p| p.metadata.name.clone());
            tracing::warn!(pod = ?name, %uid, %error, "pod sync failed; retrying");
            Outcome { uid, wake_in: Some(RETRY_AFTER), gone: false }
        }
    }
}

/// Stops the containers of `pod` whose liveness or startup probe failed, with their grace
/// period, as the kubelet kills them; the normal restart path (with back-off) runs them again.
/// Whether any was stopped.
async fn kill_unhealthy(ctx: &Ctx, prober: &Prober, pod: &Pod, observed: &Observed) -> Result<bool, SyncError> {
    let pod_ref = PodRef::of(pod);
    let mut killed = false;
    for kill in prober.take_kills(&pod_ref.uid) {
        let running =
            observed.containers.iter().any(|c| c.id == kill.container_id && c.state == Some(ContainerState::Running));
        if !running {
            continue;
        }
        let message = kill_message(&kill.container, kill.kind);
        prober.event(&pod_ref, &kill.container, (false, "Killing", &message));
        tracing::info!(pod = %pod_ref.name, container = %kill.container, "{message}");
        let request = StopContainerRequest { container_id: kill.container_id, timeout: kill.grace_seconds };
        ctx.cri.stop_container(request).await.map_err(cri_error("StopContainer"))?;
        killed = true;
    }
    Ok(killed)
}

async fn try_sync_pod(ctx: &Ctx, prober: &Arc<Prober>, uid: &str, pod: Option<&Pod>) -> Result<Outcome, SyncError> {
    let mut observed = observe_pod(ctx, uid).await?;
    if let Some(pod) = pod.filter(|p| p.metadata.deletion_timestamp.is_none())
        && kill_unhealthy(ctx, prober, pod, &observed).await?
    {
        observed = observe_pod(ctx, uid).await?;
    }
    let desired = pod.map(desired_of);
    let mut plan = plan(desired.as_ref(), &observed, now_nanos());
    if pod.is_none() {
        for action in &mut plan.actions {
            if let Action::StopContainer { grace_seconds, .. } = action {
                *grace_seconds = ORPHAN_GRACE_SECONDS;
            }
        }
    }
    let acted = !plan.actions.is_empty();
    let failures = execute(ctx, pod, &observed, plan.actions).await?;
    let mut wake_in = plan.wake_in;
    if !failures.is_empty() {
        wake_in = Some(wake_in.map_or(RETRY_AFTER, |w| w.min(RETRY_AFTER)));
    }
    let (Some(pod), Some(desired)) = (pod, desired) else {
        prober.forget(uid);
        let gone = observed == Observed::default() || acted;
        if gone {
            // Gone from the API without a finalization here (force-deleted): its volumes too.
            teardown_volumes(ctx, uid).await?;
            remove_pod_cgroups(uid);
        }
        return Ok(Outcome { uid: uid.into(), wake_in, gone });
    };
    if desired.deleting.is_some() {
        prober.forget(uid);
        return Ok(Outcome { uid: uid.into(), wake_in, gone: false });
    }
    let observed = if acted { observe_pod(ctx, uid).await? } else { observed };
    // containerd may learn of an OOM kill just after the exit (the reason changes from
    // "Error" to "OOMKilled"): a container that just exited is looked at once more.
    let settling = i64::try_from(EXIT_SETTLES_IN.as_nanos()).unwrap_or(i64::MAX);
    let just_exited = observed
        .containers
        .iter()
        .any(|c| c.state == Some(ContainerState::Exited) && now_nanos().saturating_sub(c.finished_at) < settling);
    if just_exited {
        wake_in = Some(wake_in.map_or(EXIT_SETTLES_IN, |w| w.min(EXIT_SETTLES_IN)));
    }
    prober.sync(pod, &observed);
    let probes = prober.results();
    let now = Timestamp::now();
    let facts = Facts { observed: &observed, host_ip: &ctx.host_ip, now, failures: &failures, probes: &probes };
    let status = pod_status(pod, &desired, &facts);
    // `pod` is the API's copy from the watch: a status another component changed (the node
    // lifecycle controller's `Ready=False`) is written back here, on the sync its change wakes.
    if needs_write(pod.status.as_ref(), &status) {
        let pod_ref = PodRef::of(pod);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod_ref.namespace);
        let patch = serde_json::json!({"metadata": {"uid": pod_ref.uid}, "status": status});
        match api.patch_status(&pod_ref.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            // Deleted or replaced meanwhile: the watch says so too.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
            Err(e) => {
                return Err(SyncError {
                    what: format!("writing the status of {}", pod_ref.name),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(Outcome { uid: uid.into(), wake_in, gone: false })
}

/// A pod the loop knows, from the API or the runtime.
#[derive(Debug, Default)]
struct Entry {
    pod: Option<Pod>,
    busy: bool,
    again: bool,
    wake_at: Option<Instant>,
    fingerprint: Option<u64>,
}

/// The workers: at most one sync per pod at a time, re-run when something changed meanwhile.
struct Workers {
    ctx: Arc<Ctx>,
    prober: Arc<Prober>,
    entries: BTreeMap<String, Entry>,
    tasks: JoinSet<Outcome>,
    /// Uids seen during a (re)list of the watch, to find pods deleted while not watching.
    relisting: Option<HashSet<String>>,
    /// Whether the watch has listed once: until then, runtime pods unknown to the API are not
    /// orphans yet.
    listed: bool,
}

impl Workers {
    fn request(&mut self, uid: &str) {
        let Some(entry) = self.entries.get_mut(uid) else { return };
        if entry.busy {
            entry.again = true;
            return;
        }
        entry.busy = true;
        entry.wake_at = None;
        self.tasks.spawn(sync_pod(self.ctx.clone(), self.prober.clone(), uid.to_string(), entry.pod.clone()));
    }

    fn applied(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        if let Some(seen) = &mut self.relisting {
            seen.insert(uid.clone());
        }
        let entry = self.entries.entry(uid.clone()).or_default();
        let same = entry.pod.as_ref().is_some_and(|old| old.metadata.resource_version == pod.metadata.resource_version);
        entry.pod = Some(pod);
        if !same {
            self.request(&uid);
        }
    }

    fn removed(&mut self, uid: &str) {
        if let Some(entry) = self.entries.get_mut(uid) {
            entry.pod = None;
            self.request(uid);
        }
    }

    fn handle(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relisting = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => self.applied(pod),
            watcher::Event::InitDone => {
                let seen = self.relisting.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .entries
                    .iter()
                    .filter(|(uid, e)| e.pod.is_some() && !seen.contains(*uid))
                    .map(|(u, _)| u.clone())
                    .collect();
                for uid in gone {
                    self.removed(&uid);
                }
                self.listed = true;
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid {
                    self.removed(&uid);
                }
            }
        }
    }

    fn finished(&mut self, outcome: Outcome) {
        let Some(entry) = self.entries.get_mut(&outcome.uid) else { return };
        entry.busy = false;
        entry.wake_at = outcome.wake_in.map(|w| Instant::now() + w);
        if entry.again {
            entry.again = false;
            self.request(&outcome.uid);
        } else if outcome.gone && entry.pod.is_none() {
            self.entries.remove(&outcome.uid);
        }
    }

    /// The PLEG: relists the runtime and syncs pods whose sandboxes or containers changed,
    /// pods whose wake-up time came, and (once the API was listed) runtime pods it lacks.
    async fn relist(&mut self) -> Result<(), SyncError> {
        let fingerprints = runtime_fingerprints(&self.ctx).await?;
        let now = Instant::now();
        let mut due: Vec<String> = Vec::new();
        for (uid, fingerprint) in &fingerprints {
            if !self.entries.contains_key(uid) && !self.listed {
                continue;
            }
            let entry = self.entries.entry(uid.clone()).or_default();
            if entry.fingerprint != Some(*fingerprint) {
                entry.fingerprint = Some(*fingerprint);
                due.push(uid.clone());
            }
        }
        for (uid, entry) in &mut self.entries {
            if !fingerprints.contains_key(uid) && entry.fingerprint.take().is_some() {
                due.push(uid.clone());
            }
            if entry.wake_at.is_some_and(|at| at <= now) {
                due.push(uid.clone());
            }
        }
        due.sort();
        due.dedup();
        for uid in due {
            self.request(&uid);
        }
        Ok(())
    }
}

/// A fingerprint of each pod's sandboxes and containers (ids and states), by pod uid.
async fn runtime_fingerprints(ctx: &Ctx) -> Result<BTreeMap<String, u64>, SyncError> {
    let cri = &ctx.cri;
    let selector = labels(&[(NODE_LABEL, &ctx.node)]);
    let sandbox_filter = PodSandboxFilter { label_selector: selector.clone(), ..Default::default() };
    let sandboxes = cri
        .list_pod_sandbox(ListPodSandboxRequest { filter: Some(sandbox_filter) })
        .await
        .map_err(cri_error("ListPodSandbox"))?
        .items;
    let container_filter = ContainerFilter { label_selector: selector, ..Default::default() };
    let containers = cri
        .list_containers(ListContainersRequest { filter: Some(container_filter) })
        .await
        .map_err(cri_error("ListContainers"))?
        .containers;
    let mut parts: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    for sandbox in sandboxes {
        let uid = sandbox.labels.get(POD_UID_LABEL).cloned().unwrap_or_default();
        parts.entry(uid).or_default().push((sandbox.id, sandbox.state));
    }
    for container in containers {
        let uid = container.labels.get(POD_UID_LABEL).cloned().unwrap_or_default();
        parts.entry(uid).or_default().push((container.id, container.state + 10));
    }
    Ok(parts
        .into_iter()
        .filter(|(uid, _)| !uid.is_empty())
        .map(|(uid, mut items)| {
            items.sort();
            let mut hasher = DefaultHasher::new();
            items.hash(&mut hasher);
            (uid, hasher.finish())
        })
        .collect())
}

/// Runs the pods bound to `ctx.node` until `shutdown` resolves.
pub async fn run(ctx: Arc<Ctx>, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    let events = watcher(api, config).default_backoff();
    let (volume_sources, mut volume_wakes) = ctx.volumes.start();
    // Probe results that changed wake their pod's sync.
    let (probe_results, mut probe_wakes) = tokio::sync::mpsc::unbounded_channel();
    let prober = Prober::new(ctx.client.clone(), ctx.cri.clone(), ctx.node.clone(), probe_results);
    let mut workers = Workers {
        ctx,
        prober: prober.clone(),
        entries: BTreeMap::new(),
        tasks: JoinSet::new(),
        relisting: None,
        listed: false,
    };
    let mut relist_failing = false;
    let mut relist = tokio::time::interval(RELIST_EVERY);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(events, shutdown);
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            event = events.next() => match event {
                Some(Ok(event)) => workers.handle(event),
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; resuming"),
                None => break Err(AgentError::WatchEnded),
            },
            Some(uid) = volume_wakes.recv() => workers.request(&uid),
            Some(uid) = probe_wakes.recv() => workers.request(&uid),
            _ = relist.tick() => {
                // A failed relist changes nothing (the runtime may be restarting): the last view
                // stays, and the next tick retries. Said once per outage, not every second.
                let relisted = workers.relist().await;
                match (&relisted, relist_failing) {
                    (Err(error), false) => tracing::warn!(%error, "runtime relist failed; keeping the last view"),
                    (Ok(()), true) => tracing::info!("runtime relist works again"),
                    _ => {}
                }
                relist_failing = relisted.is_err();
            }
            Some(done) = workers.tasks.join_next() => match done {
                Ok(outcome) => workers.finished(outcome),
                Err(error) => tracing::error!(%error, "a pod worker failed"),
            },
        }
    };
    // Workers are cut short: what they did is in the runtime, and the next run adopts it.
    volume_sources.abort();
    prober.stop_all();
    workers.tasks.abort_all();
    while workers.tasks.join_next().await.is_some() {}
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_state_of_a_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u", "deletionTimestamp": "2025-01-01T00:00:00Z", "deletionGracePeriodSeconds": 5},
            "spec": {"restartPolicy": "OnFailure", "initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}]},
        }))
        .expect("pod");
        let desired = desired_of(&pod);
        assert_eq!(desired.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(desired.init_containers, vec!["i"]);
        assert_eq!(desired.containers, vec!["a", "b"]);
        assert_eq!(desired.deleting, Some(5));
    }

    mod worker {
        //! The pod worker against the in-memory runtime (`tug_cri::fake`) and a real in-process
        //! API server: what a user sees of a sync — the runtime's calls in order and the pod's
        //! status — without root or containerd. (`tests/agent.rs` runs the same on containerd.)

        use super::*;
        use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
        use kube::api::PostParams;
        use tug_apiserver::server::{RunningServer, ServerConfig};
        use tug_cri::fake::{Call, FakeRuntime};
        use tug_cri::{Code, Status};

        const NODE: &str = "n1";
        const IMAGE: &str = "localhost/busybox:1.35";
        const SECOND: i64 = 1_000_000_000;

        struct Harness {
            fake: Arc<FakeRuntime>,
            ctx: Arc<Ctx>,
            prober: Arc<Prober>,
            api: Api<Pod>,
            volume_watches: tokio::task::JoinHandle<()>,
            _server: RunningServer,
            _dir: tempfile::TempDir,
        }

        impl Drop for Harness {
            fn drop(&mut self) {
                self.volume_watches.abort();
                self.prober.stop_all();
            }
        }

        async fn harness() -> Harness {
            let dir = tempfile::tempdir().expect("temporary directory");
            let server =
                tug_apiserver::server::start(ServerConfig::local(&dir.path().join("server"))).await.expect("server");
            let client = kube::Client::new(server.local_service(), "default");
            let fake = Arc::new(FakeRuntime::with_images(&[IMAGE]));
            let node = NodeResources { cpu_millis: 2000, memory_bytes: 4 << 30 };
            let pods_dir = dir.path().join("pods");
            let ctx = Arc::new(Ctx {
                volumes: Volumes::new(client.clone(), pods_dir.clone(), node),
                allocatable: node,
                client: client.clone(),
                cri: fake.clone(),
                node: NODE.into(),
                host_ip: "192.0.2.10".into(),
                dns: DnsConfig::default(),
                pods_dir,
                syncs: tokio::sync::Semaphore::new(CONCURRENT_SYNCS),
            });
            // Wake-ups are not looked at: each test syncs when it means to.
            let (volume_watches, _) = ctx.volumes.start();
            let (probe_results, _) = tokio::sync::mpsc::unbounded_channel();
            let prober = Prober::new(client.clone(), ctx.cri.clone(), NODE.into(), probe_results);
            let api = Api::namespaced(client, "default");
            Harness { fake, ctx, prober, api, volume_watches, _server: server, _dir: dir }
        }

        impl Harness {
            /// Creates pod `name` bound to this node; returns its uid.
            async fn create(&self, name: &str, spec: serde_json::Value) -> String {
                let mut spec = spec;
                spec["nodeName"] = NODE.into();
                let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
                    .expect("a pod");
                let created = self.api.create(&PostParams::default(), &pod).await.expect("the pod is created");
                created.metadata.uid.expect("a uid")
            }

            /// One sync of pod `name` (uid `uid`) as the API has it now (`None` once it is gone).
            async fn sync(&self, name: &str, uid: &str) -> Outcome {
                let pod = self.api.get_opt(name).await.expect("reading the pod");
                sync_pod(self.ctx.clone(), self.prober.clone(), uid.to_string(), pod).await
            }

            async fn status(&self, name: &str) -> PodStatus {
                self.api.get(name).await.expect("the pod").status.unwrap_or_default()
            }

            /// The runtime's state-changing calls since the last look.
            fn changes(&self) -> Vec<Call> {
                let changes = self.fake.changes();
                self.fake.clear_calls();
                changes
            }
        }

        fn containers(names: &[&str]) -> serde_json::Value {
            names.iter().map(|name| serde_json::json!({"name": name, "image": IMAGE})).collect()
        }

        fn create(name: &str, attempt: u32) -> Call {
            Call::CreateContainer { name: name.into(), attempt }
        }

        fn start(name: &str, attempt: u32) -> Call {
            Call::StartContainer { name: name.into(), attempt }
        }

        fn now() -> i64 {
            now_nanos()
        }

        fn waiting(status: &ContainerStatus) -> (String, String) {
            let waiting = status.state.as_ref().and_then(|s| s.waiting.clone()).unwrap_or_default();
            (waiting.reason.unwrap_or_default(), waiting.message.unwrap_or_default())
        }

        fn container_status(status: &PodStatus, name: &str) -> ContainerStatus {
            let all = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            all.clone().find(|s| s.name == name).cloned().unwrap_or_else(|| panic!("no status of {name}: {status:?}"))
        }

        #[tokio::test]
        async fn init_containers_run_one_at_a_time_before_the_containers() {
            let h = harness().await;
            let spec =
                serde_json::json!({"initContainers": containers(&["i1", "i2"]), "containers": containers(&["a", "b"])});
            let uid = h.create("web", spec).await;

            h.sync("web", &uid).await;
            let sandbox = Call::RunPodSandbox { pod: "web".into(), attempt: 0 };
            assert_eq!(h.changes(), vec![sandbox, create("i1", 0), start("i1", 0)]);
            let status = h.status("web").await;
            assert_eq!(status.phase.as_deref(), Some("Pending"));
            assert_eq!(waiting(&container_status(&status, "a")).0, "PodInitializing");
            assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.2"));

            h.sync("web", &uid).await;
            assert_eq!(h.changes(), vec![], "nothing new while the first init container runs");
            h.fake.exit_container("i1", 0, 0, now());
            h.sync("web", &uid).await;
            assert_eq!(h.changes(), vec![create("i2", 0), start("i2", 0)]);
            h.fake.exit_container("i2", 0, 0, now());
            h.sync("web", &uid).await;
            assert_eq!(h.changes(), vec![create("a", 0), start("a", 0), create("b", 0), start("b", 0)]);

            let status = h.status("web").await;
            assert_eq!(status.phase.as_deref(), Some("Running"));
            let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
            assert_eq!(ready.as_deref(), Some("True"));
            // A further sync adopts what runs: nothing is created twice.
            h.sync("web", &uid).await;
            assert_eq!(h.changes(), vec![]);
        }

        #[tokio::test]
        async fn the_restart_policy_decides_what_runs_again_after_an_exit() {
            let h = harness().await;
            // (policy, exit code, restarted, phase after the exit)
            let cases = [
                ("Always", 0, true, "Running"),
                ("Always", 1, true, "Running"),
                ("OnFailure", 0, false, "Succeeded"),
                ("OnFailure", 3, true, "Running"),
                ("Never", 0, false, "Succeeded"),
                ("Never", 3, false, "Failed"),
            ];
            for (policy, exit_code, restarted, phase) in cases {
                let name = format!("{}-{exit_code}", policy.to_lowercase());
                let spec = serde_json::json!({"restartPolicy": policy, "containers": containers(&[&name])});
                let uid = h.create(&name, spec).await;
                h.sync(&name, &uid).await;
                h.fake.exit_container(&name, 0, exit_code, now());
                h.changes();
                h.sync(&name, &uid).await;
                let expected = if restarted { vec![create(&name, 1), start(&name, 1)] } else { vec![] };
                assert_eq!(h.changes(), expected, "{policy} after exit code {exit_code}");
                let status = h.status(&name).await;
                assert_eq!(status.phase.as_deref(), Some(phase), "{policy} after exit code {exit_code}");
                let restarts = container_status(&status, &name).restart_count;
                assert_eq!(restarts, i32::from(restarted), "{policy} after exit code {exit_code}");
            }
        }

        #[tokio::test]
        async fn a_crash_loop_backs_off_before_the_next_start() {
            let h = harness().await;
            let uid = h.create("crash", serde_json::json!({"containers": containers(&["a"])})).await;
            h.sync("crash", &uid).await;
            h.fake.exit_container("a", 0, 1, now());
            h.sync("crash", &uid).await;
            // The second exit in a row waits 10 s.
            h.fake.exit_container("a", 1, 1, now());
            h.changes();
            let outcome = h.sync("crash", &uid).await;
            assert_eq!(h.changes(), vec![], "no start during the back-off");
            let wake = outcome.wake_in.expect("a wake-up for the end of the back-off");
            assert!(wake <= EXIT_SETTLES_IN, "looked at again soon, for a late OOM reason: {wake:?}");
            let (reason, message) = waiting(&container_status(&h.status("crash").await, "a"));
            assert_eq!(reason, "CrashLoopBackOff");
            assert_eq!(message, "back-off 10s restarting failed container=a pod=crash");

            // Once the back-off has passed, the next attempt starts and the oldest instance goes.
            let uid2 = h.create("crash-later", serde_json::json!({"containers": containers(&["b"])})).await;
            h.sync("crash-later", &uid2).await;
            h.fake.exit_container("b", 0, 1, now());
            h.sync("crash-later", &uid2).await;
            h.fake.exit_container("b", 1, 1, now() - 11 * SECOND);
            h.changes();
            h.sync("crash-later", &uid2).await;
            let removed = Call::RemoveContainer { name: "b".into(), attempt: 0 };
            assert_eq!(h.changes(), vec![removed, create("b", 2), start("b", 2)]);
        }

        #[tokio::test]
        async fn start_failures_are_the_containers_waiting_reason_and_are_retried() {
            let h = harness().await;
            let spec = serde_json::json!({"containers": [{"name": "app", "image": "registry.example/app:2"}]});
            let uid = h.create("pull", spec).await;
            h.fake.fail_next("PullImage", Status::new(Code::NotFound, "registry.example/app:2: not found"));
            let outcome = h.sync("pull", &uid).await;
            assert_eq!(outcome.wake_in, Some(RETRY_AFTER));
            let status = h.status("pull").await;
            let expected = ("ErrImagePull".to_string(), "registry.example/app:2: not found".to_string());
            assert_eq!(waiting(&container_status(&status, "app")), expected);
            assert_eq!(status.phase.as_deref(), Some("Pending"));

            // The retry pulls and starts; a create the runtime refuses is told apart.
            h.fake.fail_next("CreateContainer", Status::new(Code::Unknown, "no space left on device"));
            h.sync("pull", &uid).await;
            let expected = ("CreateContainerError".to_string(), "no space left on device".to_string());
            assert_eq!(waiting(&container_status(&h.status("pull").await, "app")), expected);
            h.changes();
            h.sync("pull", &uid).await;
            assert_eq!(h.changes(), vec![create("app", 0), start("app", 0)]);
            assert_eq!(h.status("pull").await.phase.as_deref(), Some("Running"));
        }

        #[tokio::test]
        async fn deletion_stops_containers_with_the_grace_period_then_removes_sandbox_and_pod() {
            let h = harness().await;
            let uid = h.create("web", serde_json::json!({"containers": containers(&["a", "b"])})).await;
            h.sync("web", &uid).await;
            h.fake.exit_container("b", 0, 0, now());
            let sandbox = h.fake.sandboxes()[0].id.clone();
            h.changes();
            let grace = DeleteParams { grace_period_seconds: Some(7), ..DeleteParams::default() };
            h.api.delete("web", &grace).await.expect("deleted");
            h.sync("web", &uid).await;
            assert_eq!(
                h.changes(),
                vec![
                    Call::StopContainer { name: "a".into(), attempt: 0, timeout: 7 },
                    Call::StopPodSandbox { id: sandbox.clone() },
                    Call::RemovePodSandbox { id: sandbox },
                ],
                "only the running container is stopped"
            );
            assert!(h.fake.sandboxes().is_empty() && h.fake.containers().is_empty());
            assert!(h.api.get_opt("web").await.expect("reading").is_none(), "the pod is finalized");
        }

        #[tokio::test]
        async fn a_pod_gone_from_the_api_is_removed_with_a_short_grace() {
            let h = harness().await;
            let uid = h.create("web", serde_json::json!({"containers": containers(&["a"])})).await;
            h.sync("web", &uid).await;
            h.changes();
            let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
            h.api.delete("web", &force).await.expect("deleted");
            let outcome = h.sync("web", &uid).await;
            let stop = Call::StopContainer { name: "a".into(), attempt: 0, timeout: ORPHAN_GRACE_SECONDS };
            assert_eq!(h.changes().first(), Some(&stop));
            assert!(outcome.gone, "forgotten once its runtime objects are gone");
            assert!(h.fake.sandboxes().is_empty());
        }

        #[tokio::test]
        async fn a_failing_runtime_is_never_read_as_no_containers() {
            let h = harness().await;
            let uid = h.create("web", serde_json::json!({"containers": containers(&["a"])})).await;
            h.sync("web", &uid).await;
            let before = h.status("web").await;
            h.changes();
            h.fake.fail_next("ListContainers", Status::new(Code::Unavailable, "connection refused"));
            let outcome = h.sync("web", &uid).await;
            assert_eq!(outcome.wake_in, Some(RETRY_AFTER));
            assert_eq!(h.changes(), vec![], "nothing started again, nothing torn down");
            assert_eq!(h.status("web").await, before, "no status written from a failed look");
        }
    }
}
