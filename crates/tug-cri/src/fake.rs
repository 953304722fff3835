//! An in-memory CRI runtime for unit tests, in the role of the kubelet's `FakeRuntimeService`
//! (`fake_kuberuntime_manager`): sandboxes and containers live in a map, every call is recorded
//! in order, failures can be injected per call, and tests drive what a real runtime would do on
//! its own (a container exiting). Compiled for this crate's tests and with the `fake` feature.
//!
//! It keeps the runtime rules callers depend on: a container is created only in a ready
//! sandbox and only once per (name, attempt) there, starts only from `Created`, stopping a
//! sandbox stops its containers and removing it removes them, lists honour their filters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::runtime::ContainerRuntime;
use crate::v1::{
    Container, ContainerConfig, ContainerState, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, ExecSyncRequest, ExecSyncResponse, Image, ImageStatusRequest,
    ImageStatusResponse, ListContainersRequest, ListContainersResponse, ListPodSandboxRequest, ListPodSandboxResponse,
    PodSandbox, PodSandboxConfig, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus, PodSandboxStatusRequest,
    PodSandboxStatusResponse, PullImageRequest, PullImageResponse, RemoveContainerRequest, RemoveContainerResponse,
    RemovePodSandboxRequest, RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse,
    StartContainerRequest, StartContainerResponse, StopContainerRequest, StopContainerResponse, StopPodSandboxRequest,
    StopPodSandboxResponse,
};
use crate::{Code, Status};

/// The exit code of a container the fake stops: killed by SIGTERM (128 + 15), as a process
/// without a handler ends.
pub const STOPPED_EXIT_CODE: i32 = 143;

/// The CRI method names [`FakeRuntime::fail_next`] accepts.
pub const METHODS: [&str; 14] = [
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "ExecSync",
    "ImageStatus",
    "PullImage",
];

/// One call the fake received, with what identifies its subject (containers by their
/// metadata name and attempt, which tests know; sandboxes by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    RunPodSandbox {
        pod: String,
        attempt: u32,
    },
    StopPodSandbox {
        id: String,
    },
    RemovePodSandbox {
        id: String,
    },
    PodSandboxStatus {
        id: String,
    },
    ListPodSandbox,
    CreateContainer {
        name: String,
        attempt: u32,
    },
    StartContainer {
        name: String,
        attempt: u32,
    },
    /// `timeout`: the grace period in seconds.
    StopContainer {
        name: String,
        attempt: u32,
        timeout: i64,
    },
    RemoveContainer {
        name: String,
        attempt: u32,
    },
    ListContainers,
    ContainerStatus {
        id: String,
    },
    ExecSync {
        id: String,
        cmd: Vec<String>,
    },
    ImageStatus {
        image: String,
    },
    PullImage {
        image: String,
    },
}

impl Call {
    /// The CRI method's name.
    pub fn method(&self) -> &'static str {
        match self {
            Call::RunPodSandbox { .. } => "RunPodSandbox",
            Call::StopPodSandbox { .. } => "StopPodSandbox",
            Call::RemovePodSandbox { .. } => "RemovePodSandbox",
            Call::PodSandboxStatus { .. } => "PodSandboxStatus",
            Call::ListPodSandbox => "ListPodSandbox",
            Call::CreateContainer { .. } => "CreateContainer",
            Call::StartContainer { .. } => "StartContainer",
            Call::StopContainer { .. } => "StopContainer",
            Call::RemoveContainer { .. } => "RemoveContainer",
            Call::ListContainers => "ListContainers",
            Call::ContainerStatus { .. } => "ContainerStatus",
            Call::ExecSync { .. } => "ExecSync",
            Call::ImageStatus { .. } => "ImageStatus",
            Call::PullImage { .. } => "PullImage",
        }
    }

    /// Whether the call changes the runtime (not a list, status or image inspection).
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Call::PodSandboxStatus { .. }
                | Call::ListPodSandbox
                | Call::ListContainers
                | Call::ContainerStatus { .. }
                | Call::ImageStatus { .. }
        )
    }
}

/// A sandbox the fake holds.
#[derive(Debug, Clone)]
pub struct FakeSandbox {
    pub id: String,
    pub config: PodSandboxConfig,
    pub ready: bool,
    pub ip: String,
    pub created_at: i64,
}

/// A container the fake holds.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
}

impl FakeContainer {
    /// Its metadata name.
    pub fn name(&self) -> &str {
        self.config.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    /// Its metadata attempt (the restart count).
    pub fn attempt(&self) -> u32 {
        self.config.metadata.as_ref().map_or(0, |m| m.attempt)
    }
}

#[derive(Debug, Default)]
struct State {
    sandboxes: BTreeMap<String, FakeSandbox>,
    containers: BTreeMap<String, FakeContainer>,
    /// Present images by the name callers use.
    images: BTreeMap<String, Image>,
    calls: Vec<Call>,
    failures: HashMap<&'static str, VecDeque<Status>>,
    next_id: u64,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Records `call`; an injected failure for its method is returned instead of running it.
    fn enter(&mut self, call: Call) -> Result<(), Status> {
        let method = call.method();
        self.calls.push(call);
        match self.failures.get_mut(method).and_then(VecDeque::pop_front) {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    fn container_key(&self, id: &str) -> (String, u32) {
        self.containers.get(id).map_or((String::new(), 0), |c| (c.name().to_string(), c.attempt()))
    }

    fn container_mut(&mut self, id: &str) -> Result<&mut FakeContainer, Status> {
        self.containers.get_mut(id).ok_or_else(|| not_found("container", id))
    }
}

fn not_found(what: &str, id: &str) -> Status {
    Status::new(Code::NotFound, format!("{what} {id:?} not found"))
}

fn now_nanos() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The in-memory runtime.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    /// An empty runtime holding `images` (by the names pods use, e.g. `localhost/busybox:1.35`).
    pub fn with_images(images: &[&str]) -> FakeRuntime {
        let fake = FakeRuntime::default();
        for image in images {
            fake.add_image(image);
        }
        fake
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `image` present.
    pub fn add_image(&self, image: &str) {
        let present =
            Image { id: format!("sha256:{image}"), repo_tags: vec![image.to_string()], size: 1, ..Image::default() };
        self.lock().images.insert(image.to_string(), present);
    }

    /// The next call of `method` (a CRI method name from [`METHODS`]) fails with `status`;
    /// repeated, the next calls fail in turn.
    pub fn fail_next(&self, method: &'static str, status: Status) {
        assert!(METHODS.contains(&method), "the fake has no CRI method {method:?}");
        self.lock().failures.entry(method).or_default().push_back(status);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls so far that changed the runtime, in order (lists and status reads left out).
    pub fn changes(&self) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.changes_state()).cloned().collect()
    }

    /// Forgets the calls so far (to look at what one step does).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    pub fn sandboxes(&self) -> Vec<FakeSandbox> {
        self.lock().sandboxes.values().cloned().collect()
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.values().cloned().collect()
    }

    /// The container named `name` with attempt `attempt` (the first such, across sandboxes).
    pub fn container(&self, name: &str, attempt: u32) -> Option<FakeContainer> {
        self.lock().containers.values().find(|c| c.name() == name && c.attempt() == attempt).cloned()
    }

    /// What the runtime sees when a container's process ends: container `name` (attempt
    /// `attempt`) exits with `exit_code` at `finished_at` (ns since the epoch; tests move it into
    /// the past to be past a back-off). Panics when there is no such running container.
    pub fn exit_container(&self, name: &str, attempt: u32, exit_code: i32, finished_at: i64) {
        let mut state = self.lock();
        let container = state
            .containers
            .values_mut()
            .find(|c| c.name() == name && c.attempt() == attempt && c.state == ContainerState::ContainerRunning)
            .unwrap_or_else(|| panic!("no running container {name} attempt {attempt}"));
        container.state = ContainerState::ContainerExited;
        container.exit_code = exit_code;
        container.finished_at = finished_at;
        container.started_at = container.started_at.min(finished_at);
    }
}

fn stop(container: &mut FakeContainer) {
    if matches!(container.state, ContainerState::ContainerRunning | ContainerState::ContainerCreated) {
        container.state = ContainerState::ContainerExited;
        container.exit_code = STOPPED_EXIT_CODE;
        container.finished_at = now_nanos();
    }
}

#[tonic::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn run_pod_sandbox(&self, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, Status> {
        let config = request.config.unwrap_or_default();
        let (pod, attempt) = config.metadata.as_ref().map_or((String::new(), 0), |m| (m.name.clone(), m.attempt));
        let mut state = self.lock();
        state.enter(Call::RunPodSandbox { pod, attempt })?;
        let id = state.id("sandbox");
        let ip = format!("10.88.0.{}", state.sandboxes.len() + 2);
        let sandbox = FakeSandbox { id: id.clone(), config, ready: true, ip, created_at: now_nanos() };
        state.sandboxes.insert(id.clone(), sandbox);
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    async fn stop_pod_sandbox(&self, request: StopPodSandboxRequest) -> Result<StopPodSandboxResponse, Status> {
        let id = request.pod_sandbox_id;
        let mut state = self.lock();
        state.enter(Call::StopPodSandbox { id: id.clone() })?;
        // As CRI asks: stopping a sandbox that is gone is not an error.
        if let Some(sandbox) = state.sandboxes.get_mut(&id) {
            sandbox.ready = false;
        }
        state.containers.values_mut().filter(|c| c.sandbox_id == id).for_each(stop);
        Ok(StopPodSandboxResponse::default())
    }

    async fn remove_pod_sandbox(&self, request: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse, Status> {
        let id = request.pod_sandbox_id;
        let mut state = self.lock();
        state.enter(Call::RemovePodSandbox { id: id.clone() })?;
        state.sandboxes.remove(&id);
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(RemovePodSandboxResponse::default())
    }

    async fn pod_sandbox_status(&self, request: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse, Status> {
        let id = request.pod_sandbox_id;
        let mut state = self.lock();
        state.enter(Call::PodSandboxStatus { id: id.clone() })?;
        let sandbox = state.sandboxes.get(&id).ok_or_else(|| not_found("sandbox", &id))?;
        let status = PodSandboxStatus {
            id: sandbox.id.clone(),
            metadata: sandbox.config.metadata.clone(),
            state: sandbox_state(sandbox) as i32,
            created_at: sandbox.created_at,
            network: sandbox.ready.then(|| PodSandboxNetworkStatus { ip: sandbox.ip.clone(), ..Default::default() }),
            labels: sandbox.config.labels.clone(),
            annotations: sandbox.config.annotations.clone(),
            ..Default::default()
        };
        Ok(PodSandboxStatusResponse { status: Some(status), ..Default::default() })
    }

    async fn list_pod_sandbox(&self, request: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, Status> {
        let filter = request.filter.unwrap_or_default();
        let mut state = self.lock();
        state.enter(Call::ListPodSandbox)?;
        let items = state
            .sandboxes
            .values()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| filter.state.as_ref().is_none_or(|want| want.state == sandbox_state(s) as i32))
            .filter(|s| labels_match(&filter.label_selector, &s.config.labels))
            .map(|s| PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: sandbox_state(s) as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(ListPodSandboxResponse { items })
    }

    async fn create_container(&self, request: CreateContainerRequest) -> Result<CreateContainerResponse, Status> {
        let config = request.config.unwrap_or_default();
        let sandbox_id = request.pod_sandbox_id;
        let (name, attempt) = config.metadata.as_ref().map_or((String::new(), 0), |m| (m.name.clone(), m.attempt));
        let mut state = self.lock();
        state.enter(Call::CreateContainer { name: name.clone(), attempt })?;
        match state.sandboxes.get(&sandbox_id) {
            None => return Err(not_found("sandbox", &sandbox_id)),
            Some(sandbox) if !sandbox.ready => {
                return Err(Status::new(Code::FailedPrecondition, format!("sandbox {sandbox_id:?} is not ready")));
            }
            Some(_) => {}
        }
        let taken =
            state.containers.values().any(|c| c.sandbox_id == sandbox_id && c.name() == name && c.attempt() == attempt);
        if taken {
            return Err(Status::new(Code::AlreadyExists, format!("name {name:?} attempt {attempt} is reserved")));
        }
        let id = state.id("container");
        let container = FakeContainer {
            id: id.clone(),
            sandbox_id,
            config,
            state: ContainerState::ContainerCreated,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
        };
        state.containers.insert(id.clone(), container);
        Ok(CreateContainerResponse { container_id: id })
    }

    async fn start_container(&self, request: StartContainerRequest) -> Result<StartContainerResponse, Status> {
        let id = request.container_id;
        let mut state = self.lock();
        let (name, attempt) = state.container_key(&id);
        state.enter(Call::StartContainer { name, attempt })?;
        let container = state.container_mut(&id)?;
        if container.state != ContainerState::ContainerCreated {
            let message = format!("container {id:?} is {:?}, not created", container.state);
            return Err(Status::new(Code::FailedPrecondition, message));
        }
        container.state = ContainerState::ContainerRunning;
        container.started_at = now_nanos();
        Ok(StartContainerResponse::default())
    }

    async fn stop_container(&self, request: StopContainerRequest) -> Result<StopContainerResponse, Status> {
        let id = request.container_id;
        let mut state = self.lock();
        let (name, attempt) = state.container_key(&id);
        state.enter(Call::StopContainer { name, attempt, timeout: request.timeout })?;
        stop(state.container_mut(&id)?);
        Ok(StopContainerResponse::default())
    }

    async fn remove_container(&self, request: RemoveContainerRequest) -> Result<RemoveContainerResponse, Status> {
        let id = request.container_id;
        let mut state = self.lock();
        let (name, attempt) = state.container_key(&id);
        state.enter(Call::RemoveContainer { name, attempt })?;
        // As CRI asks: removing a container that is gone is not an error.
        state.containers.remove(&id);
        Ok(RemoveContainerResponse::default())
    }

    async fn list_containers(&self, request: ListContainersRequest) -> Result<ListContainersResponse, Status> {
        let filter = request.filter.unwrap_or_default();
        let mut state = self.lock();
        state.enter(Call::ListContainers)?;
        let containers = state
            .containers
            .values()
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id)
            .filter(|c| filter.state.as_ref().is_none_or(|want| want.state == c.state as i32))
            .filter(|c| labels_match(&filter.label_selector, &c.config.labels))
            .map(|c| Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: image_ref(c),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: image_ref(c),
            })
            .collect();
        Ok(ListContainersResponse { containers })
    }

    async fn container_status(&self, request: ContainerStatusRequest) -> Result<ContainerStatusResponse, Status> {
        let id = request.container_id;
        let mut state = self.lock();
        state.enter(Call::ContainerStatus { id: id.clone() })?;
        let c = state.containers.get(&id).ok_or_else(|| not_found("container", &id))?;
        let status = ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.config.image.clone(),
            image_ref: image_ref(c),
            reason: c.reason.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.config.log_path.clone(),
            image_id: image_ref(c),
            ..Default::default()
        };
        Ok(ContainerStatusResponse { status: Some(status), ..Default::default() })
    }

    async fn exec_sync(&self, request: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
        let mut state = self.lock();
        state.enter(Call::ExecSync { id: request.container_id.clone(), cmd: request.cmd })?;
        state.container_mut(&request.container_id)?;
        Ok(ExecSyncResponse::default())
    }

    async fn image_status(&self, request: ImageStatusRequest) -> Result<ImageStatusResponse, Status> {
        let image = request.image.map(|spec| spec.image).unwrap_or_default();
        let mut state = self.lock();
        state.enter(Call::ImageStatus { image: image.clone() })?;
        Ok(ImageStatusResponse { image: state.images.get(&image).cloned(), ..Default::default() })
    }

    async fn pull_image(&self, request: PullImageRequest) -> Result<PullImageResponse, Status> {
        let image = request.image.map(|spec| spec.image).unwrap_or_default();
        self.lock().enter(Call::PullImage { image: image.clone() })?;
        self.add_image(&image);
        Ok(PullImageResponse { image_ref: format!("sha256:{image}") })
    }
}

fn sandbox_state(sandbox: &FakeSandbox) -> PodSandboxState {
    if sandbox.ready { PodSandboxState::SandboxReady } else { PodSandboxState::SandboxNotready }
}

fn image_ref(container: &FakeContainer) -> String {
    format!("sha256:{}", container.config.image.as_ref().map_or("", |i| i.image.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ContainerFilter, ContainerMetadata, ImageSpec, PodSandboxFilter, PodSandboxMetadata};
    use futures::executor::block_on;

    fn labels(uid: &str) -> HashMap<String, String> {
        HashMap::from([("uid".to_string(), uid.to_string())])
    }

    fn run_sandbox(fake: &FakeRuntime, uid: &str) -> String {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: format!("pod-{uid}"), uid: uid.into(), ..Default::default() }),
            labels: labels(uid),
            ..Default::default()
        };
        let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        block_on(fake.run_pod_sandbox(request)).expect("sandbox").pod_sandbox_id
    }

    fn create(fake: &FakeRuntime, sandbox: &str, uid: &str, name: &str, attempt: u32) -> Result<String, Status> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt }),
            image: Some(ImageSpec { image: "img".into(), ..Default::default() }),
            labels: labels(uid),
            ..Default::default()
        };
        let request =
            CreateContainerRequest { pod_sandbox_id: sandbox.into(), config: Some(config), sandbox_config: None };
        block_on(fake.create_container(request)).map(|r| r.container_id)
    }

    fn start(fake: &FakeRuntime, id: &str) -> Result<StartContainerResponse, Status> {
        block_on(fake.start_container(StartContainerRequest { container_id: id.into() }))
    }

    fn listed(fake: &FakeRuntime, uid: &str) -> Vec<(String, i32)> {
        let filter = ContainerFilter { label_selector: labels(uid), ..Default::default() };
        let listed = block_on(fake.list_containers(ListContainersRequest { filter: Some(filter) })).expect("list");
        listed.containers.into_iter().map(|c| (c.metadata.unwrap_or_default().name, c.state)).collect()
    }

    #[test]
    fn containers_live_and_die_with_their_sandbox() {
        let fake = FakeRuntime::default();
        let (a, b) = (run_sandbox(&fake, "a"), run_sandbox(&fake, "b"));
        let web = create(&fake, &a, "a", "web", 0).expect("created");
        create(&fake, &b, "b", "other", 0).expect("created");
        start(&fake, &web).expect("started");
        assert_eq!(listed(&fake, "a"), vec![("web".into(), ContainerState::ContainerRunning as i32)]);
        fake.exit_container("web", 0, 1, 5);
        let status =
            block_on(fake.container_status(ContainerStatusRequest { container_id: web.clone(), verbose: false }))
                .expect("status")
                .status
                .expect("a status");
        assert_eq!((status.exit_code, status.finished_at), (1, 5));

        block_on(fake.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: b.clone() })).expect("stopped");
        let not_ready = PodSandboxFilter {
            state: Some(crate::v1::PodSandboxStateValue { state: PodSandboxState::SandboxNotready as i32 }),
            ..Default::default()
        };
        let stopped = block_on(fake.list_pod_sandbox(ListPodSandboxRequest { filter: Some(not_ready) })).expect("list");
        assert_eq!(stopped.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![b.clone()]);
        assert_eq!(listed(&fake, "b"), vec![("other".into(), ContainerState::ContainerExited as i32)]);
        block_on(fake.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: b })).expect("removed");
        assert!(listed(&fake, "b").is_empty(), "a removed sandbox takes its containers");
        assert_eq!(
            fake.changes(),
            vec![
                Call::RunPodSandbox { pod: "pod-a".into(), attempt: 0 },
                Call::RunPodSandbox { pod: "pod-b".into(), attempt: 0 },
                Call::CreateContainer { name: "web".into(), attempt: 0 },
                Call::CreateContainer { name: "other".into(), attempt: 0 },
                Call::StartContainer { name: "web".into(), attempt: 0 },
                Call::StopPodSandbox { id: "sandbox-2".into() },
                Call::RemovePodSandbox { id: "sandbox-2".into() },
            ]
        );
    }

    #[test]
    fn runtime_rules_and_injected_failures() {
        let fake = FakeRuntime::default();
        let sandbox = run_sandbox(&fake, "a");
        let id = create(&fake, &sandbox, "a", "web", 0).expect("created");
        assert_eq!(create(&fake, &sandbox, "a", "web", 0).map_err(|s| s.code()), Err(Code::AlreadyExists));
        assert_eq!(create(&fake, "nope", "a", "web", 1).map_err(|s| s.code()), Err(Code::NotFound));
        start(&fake, &id).expect("started");
        assert_eq!(start(&fake, &id).map_err(|s| s.code()), Err(Code::FailedPrecondition), "only a created one starts");

        fake.fail_next("CreateContainer", Status::new(Code::Unavailable, "runtime restarting"));
        let failed = create(&fake, &sandbox, "a", "web", 1).expect_err("injected");
        assert_eq!(failed.message(), "runtime restarting");
        create(&fake, &sandbox, "a", "web", 1).expect("the failure was used up");
        let pulled = |image: &str| {
            let request = PullImageRequest {
                image: Some(ImageSpec { image: image.into(), ..Default::default() }),
                ..Default::default()
            };
            block_on(fake.pull_image(request))
        };
        fake.fail_next("PullImage", Status::new(Code::NotFound, "manifest unknown"));
        assert!(pulled("img:1").is_err());
        let inspect = |image: &str| {
            let spec = ImageSpec { image: image.into(), ..Default::default() };
            block_on(fake.image_status(ImageStatusRequest { image: Some(spec), verbose: false })).expect("status").image
        };
        assert!(inspect("img:1").is_none());
        pulled("img:1").expect("pulled");
        assert!(inspect("img:1").is_some());
    }
}
