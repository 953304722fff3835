//! Container probes, as the kubelet runs them: liveness, readiness and startup probes by
//! `httpGet`, `tcpSocket` or `exec`.
//!
//! The pure core ([`Timing`], [`Check::of`], [`Tracker`]) turns probe settings and outcomes
//! into results (read by the status through `probe_results`): a result changes only after `successThreshold` /
//! `failureThreshold` equal outcomes in a row. The [`Prober`] runs one tokio task per probe of
//! each running container (started and stopped by the pod sync through [`Prober::sync`]),
//! keeps the results the status is computed from, and tells the pod loop (a channel of pod
//! uids) when a result changed. A failed liveness or startup probe leaves a [`Kill`] for the
//! pod's next sync, which stops the container; the normal restart path (with back-off) runs
//! it again. Until a startup probe succeeded, the other two probes do not run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Event, ObjectReference, Pod, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tug_cri::ContainerRuntime;
use tug_cri::v1::ExecSyncRequest;
use tug_k8s::pods::PodRef;

use super::events::{Happening, kubelet_event};
use super::plan::{ContainerState, Observed};
use super::probe_results::{ProbeResults, Results};

/// At most this much of a probe's output goes into its failure message (the kubelet's limit).
const MAX_OUTPUT: usize = 10 * 1024;
/// The grace period when neither the probe nor the pod names one (the API default).
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// What HTTP probes call themselves.
const USER_AGENT: &str = "kube-probe/1.30";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness];

    /// As events name it: "Liveness probe failed: ...".
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
            ProbeKind::Startup => container.startup_probe.as_ref(),
        }
    }
}

/// When and how often a probe runs, and how many equal outcomes change its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    /// The probe's timing with the API defaults (period 10 s, timeout 1 s, thresholds 1 and 3)
    /// for unset or out-of-range fields; liveness and startup probes need one success.
    pub fn of(probe: &Probe, kind: ProbeKind) -> Timing {
        let positive = |value: Option<i32>, default: u32| {
            value.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default)
        };
        let seconds = |value: Option<i32>, default: u32| Duration::from_secs(u64::from(positive(value, default)));
        let success = if kind == ProbeKind::Readiness { positive(probe.success_threshold, 1) } else { 1 };
        Timing {
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
            ),
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            success_threshold: success,
            failure_threshold: positive(probe.failure_threshold, 3),
        }
    }
}

/// What one probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// GET `path` from `host:port`; 200-399 is success.
    Http { host: String, port: u16, path: String, headers: Vec<(String, String)> },
    /// Connect to `host:port`.
    Tcp { host: String, port: u16 },
    /// Run `command` in the container; exit code 0 is success.
    Exec { command: Vec<String> },
}

/// A port by number, or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(number) => number,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))?,
        },
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

impl Check {
    /// The check of `probe` of `container`, aimed at the pod's IP unless the probe names a host.
    pub fn of(probe: &Probe, container: &Container, pod_ip: &str) -> Result<Check, String> {
        if let Some(http) = &probe.http_get {
            if http.scheme.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("HTTP")) {
                return Err(format!("unsupported HTTP probe scheme {:?}", http.scheme.as_deref().unwrap_or_default()));
            }
            let path = http.path.clone().unwrap_or_default();
            let path = if path.starts_with('/') { path } else { format!("/{path}") };
            let headers = http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
            return Ok(Check::Http { host, port: resolve_port(&http.port, container)?, path, headers });
        }
        if let Some(tcp) = &probe.tcp_socket {
            let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
            return Ok(Check::Tcp { host, port: resolve_port(&tcp.port, container)? });
        }
        if let Some(exec) = &probe.exec {
            return Ok(Check::Exec { command: exec.command.clone().unwrap_or_default() });
        }
        if probe.grpc.is_some() {
            return Err("gRPC probes are not supported".into());
        }
        Err("the probe has no handler".into())
    }
}

/// A probe's current result and the run of equal outcomes behind it (the kubelet's worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    timing: Timing,
    /// `None` until the first result (a startup probe); liveness starts as success.
    pub result: Option<bool>,
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    pub fn new(kind: ProbeKind, timing: Timing) -> Tracker {
        let result = match kind {
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
            ProbeKind::Startup => None,
        };
        Tracker { timing, result, last: None, run: 0 }
    }

    /// Records one outcome; returns the new result when this outcome changed it.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success { self.timing.success_threshold } else { self.timing.failure_threshold };
        if self.run < threshold || self.result == Some(success) {
            return None;
        }
        self.result = Some(success);
        Some(success)
    }
}

/// An event about container `container` of `pod`, as the kubelet reports it.
pub fn container_event(pod: &PodRef, container: &str, node: &str, what: Happening, now: Timestamp) -> Event {
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()),
        field_path: Some(format!("spec.containers{{{container}}}")),
        ..ObjectReference::default()
    };
    kubelet_event(regarding, node, what, now)
}

/// The message of the `Killing` event of a container that failed its `kind` probe.
pub fn kill_message(container: &str, kind: ProbeKind) -> String {
    format!("Container {container} failed {} probe, will be restarted", kind.title().to_lowercase())
}

/// A container to stop because its liveness or startup probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub container_id: String,
    pub container: String,
    pub kind: ProbeKind,
    pub grace_seconds: i64,
}

/// The probe workers of one container instance.
#[derive(Debug)]
struct Workers {
    container_id: String,
    tasks: Vec<AbortHandle>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    results: ProbeResults,
    /// By (pod uid, container name).
    workers: HashMap<(String, String), Workers>,
    /// By pod uid.
    kills: HashMap<String, Vec<Kill>>,
}

/// Runs the probes of the node's containers; shared by the pod loop and the probe tasks.
pub struct Prober {
    client: kube::Client,
    cri: Arc<dyn ContainerRuntime>,
    node: String,
    /// Pod uids whose probe results changed: their pod is synced.
    notify: mpsc::UnboundedSender<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").field("node", &self.node).field("state", &self.state).finish_non_exhaustive()
    }
}

/// What one probe task probes.
#[derive(Debug, Clone)]
struct Target {
    pod: PodRef,
    container: String,
    container_id: String,
    /// When the container started, ns since the epoch: the initial delay counts from there.
    started_at: i64,
    grace_seconds: i64,
}

impl Prober {
    pub fn new(
        client: kube::Client,
        cri: Arc<dyn ContainerRuntime>,
        node: String,
        notify: mpsc::UnboundedSender<String>,
    ) -> Arc<Prober> {
        Arc::new(Prober { client, cri, node, notify, state: Mutex::default() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current results of every probed container.
    pub fn results(&self) -> ProbeResults {
        self.state().results.clone()
    }

    /// The containers of pod `uid` to stop for failed probes (each handed out once).
    pub fn take_kills(&self, uid: &str) -> Vec<Kill> {
        self.state().kills.remove(uid).unwrap_or_default()
    }

    /// Starts probing the running containers of `pod` that have probes (once per container
    /// instance) and stops probing the others.
    pub fn sync(self: &Arc<Self>, pod: &Pod, observed: &Observed) {
        let pod_ref = PodRef::of(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let sandbox = observed.live_sandbox();
        let (sandbox_id, pod_ip) = sandbox.map_or((String::new(), String::new()), |s| (s.id.clone(), s.ip.clone()));
        let mut state = self.state();
        for container in &spec.containers {
            let key = (pod_ref.uid.clone(), container.name.clone());
            let probed = ProbeKind::ALL.iter().any(|kind| kind.of(container).is_some());
            let running = observed
                .latest(&sandbox_id, &container.name)
                .filter(|c| c.state == Some(ContainerState::Running) && probed);
            let Some(running) = running else {
                if let Some(old) = state.workers.remove(&key) {
                    state.results.remove(&old.container_id);
                }
                continue;
            };
            if state.workers.get(&key).is_some_and(|w| w.container_id == running.id) {
                continue;
            }
            if let Some(old) = state.workers.remove(&key) {
                state.results.remove(&old.container_id);
            }
            let grace_of = |kind: ProbeKind| {
                kind.of(container)
                    .and_then(|p| p.termination_grace_period_seconds)
                    .or(spec.termination_grace_period_seconds)
                    .unwrap_or(DEFAULT_GRACE_SECONDS)
            };
            let mut tasks = Vec::new();
            for kind in ProbeKind::ALL {
                let Some(probe) = kind.of(container) else { continue };
                let target = Target {
                    pod: pod_ref.clone(),
                    container: container.name.clone(),
                    container_id: running.id.clone(),
                    started_at: running.started_at,
                    grace_seconds: grace_of(kind),
                };
                let check = Check::of(probe, container, &pod_ip);
                let timing = Timing::of(probe, kind);
                let gated = kind != ProbeKind::Startup && container.startup_probe.is_some();
                let task = tokio::spawn(self.clone().probe_loop(target, kind, timing, check, gated));
                tasks.push(task.abort_handle());
            }
            state.results.insert(running.id.clone(), Results::default());
            state.workers.insert(key, Workers { container_id: running.id.clone(), tasks });
        }
        // Containers no longer in the spec.
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        let stale: Vec<(String, String)> = state
            .workers
            .keys()
            .filter(|(uid, name)| *uid == pod_ref.uid && !names.contains(&name.as_str()))
            .cloned()
            .collect();
        for key in stale {
            if let Some(old) = state.workers.remove(&key) {
                state.results.remove(&old.container_id);
            }
        }
    }

    /// Stops probing pod `uid` (deleted or gone) and forgets its results and kills.
    pub fn forget(&self, uid: &str) {
        let mut state = self.state();
        let keys: Vec<(String, String)> = state.workers.keys().filter(|(u, _)| u == uid).cloned().collect();
        for key in keys {
            if let Some(old) = state.workers.remove(&key) {
                state.results.remove(&old.container_id);
            }
        }
        state.kills.remove(uid);
    }

    /// Stops every probe (the agent stops).
    pub fn stop_all(&self) {
        let mut state = self.state();
        state.workers.clear();
        state.results.clear();
    }

    /// Reports an event about a container without holding anyone up.
    pub fn event(&self, pod: &PodRef, container: &str, (warning, reason, message): (bool, &str, &str)) {
        let event = container_event(pod, container, &self.node, (warning, reason, message), Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, "cannot write an event");
            }
        });
    }

    /// Records a new result of a probe and wakes the pod's sync; a failed liveness or startup
    /// probe also leaves the container to be killed.
    fn set_result(&self, target: &Target, kind: ProbeKind, success: bool) {
        {
            let mut state = self.state();
            let Some(results) = state.results.get_mut(&target.container_id) else { return };
            match kind {
                ProbeKind::Readiness => results.ready = Some(success),
                ProbeKind::Startup => results.started = Some(success),
                ProbeKind::Liveness => {}
            }
            if !success && kind != ProbeKind::Readiness {
                let kill = Kill {
                    container_id: target.container_id.clone(),
                    container: target.container.clone(),
                    kind,
                    grace_seconds: target.grace_seconds,
                };
                state.kills.entry(target.pod.uid.clone()).or_default().push(kill);
            }
        }
        let _ = self.notify.send(target.pod.uid.clone());
    }

    fn started(&self, container_id: &str) -> bool {
        self.state().results.get(container_id).is_some_and(|r| r.started == Some(true))
    }

    /// Probes one container every period until its result calls for a kill (or the task is
    /// aborted because the container stopped).
    async fn probe_loop(
        self: Arc<Self>,
        target: Target,
        kind: ProbeKind,
        timing: Timing,
        check: Result<Check, String>,
        gated: bool,
    ) {
        let now = i64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        let delay_ns = i64::try_from(timing.initial_delay.as_nanos()).unwrap_or(i64::MAX);
        let wait = target.started_at.saturating_add(delay_ns).saturating_sub(now);
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(u64::try_from(wait).unwrap_or(0))).await;
        }
        let mut tracker = Tracker::new(kind, timing);
        let mut ticks = tokio::time::interval(timing.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_event: Option<(String, Event)> = None;
        loop {
            ticks.tick().await;
            let started = self.started(&target.container_id);
            if (gated && !started) || (kind == ProbeKind::Startup && started) {
                continue;
            }
            let outcome = match &check {
                Ok(check) => match self.run_check(check, &target.container_id, timing.timeout).await {
                    Ok(passed) => passed,
                    Err(RuntimeError(error)) => {
                        // The kubelet throws such a result away: the runtime (restarting, say)
                        // could not run the probe, which says nothing about the container.
                        tracing::debug!(pod = %target.pod.name, container = %target.container, %error, "probe not run");
                        continue;
                    }
                },
                Err(problem) => Err(problem.clone()),
            };
            if let Err(output) = &outcome {
                let message = format!("{} probe failed: {output}", kind.title());
                self.unhealthy(&target, &message, &mut last_event).await;
            }
            if let Some(result) = tracker.record(outcome.is_ok()) {
                self.set_result(&target, kind, result);
                // The kubelet stops probing a container it is about to kill.
                if !result && kind != ProbeKind::Readiness {
                    return;
                }
            }
        }
    }

    /// The `Unhealthy` event; a repeat of the previous message counts up that event instead
    /// (as the kubelet's event correlator does).
    async fn unhealthy(&self, target: &Target, message: &str, last: &mut Option<(String, Event)>) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &target.pod.namespace);
        let now = Timestamp::now();
        if let Some((previous, event)) = last.as_mut()
            && previous == message
            && let Some(name) = event.metadata.name.clone()
        {
            let count = event.count.unwrap_or(1) + 1;
            event.count = Some(count);
            let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.is_ok() {
                return;
            }
        }
        let event = container_event(&target.pod, &target.container, &self.node, (true, "Unhealthy", message), now);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => *last = Some((message.to_string(), event)),
            Err(error) => tracing::debug!(%error, "cannot write an event"),
        }
    }

    /// The probe's verdict (`Err` = failed, with why), or the runtime's error when it could not
    /// run the probe at all.
    async fn run_check(
        &self,
        check: &Check,
        container_id: &str,
        timeout: Duration,
    ) -> Result<Result<(), String>, RuntimeError> {
        match check {
            Check::Http { host, port, path, headers } => Ok(http_get(host, *port, path, headers, timeout).await),
            Check::Tcp { host, port } => Ok(tcp_connect(host, *port, timeout).await),
            Check::Exec { command } => self.exec(container_id, command, timeout).await,
        }
    }

    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<Result<(), String>, RuntimeError> {
        let request = ExecSyncRequest {
            container_id: container_id.into(),
            cmd: command.to_vec(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let timed_out = || format!("command {:?} timed out", command.join(" "));
        // The runtime enforces the timeout; this one guards against a runtime that does not.
        let response = tokio::time::timeout(timeout + Duration::from_secs(5), self.cri.exec_sync(request)).await;
        let Ok(response) = response else { return Ok(Err(timed_out())) };
        match response {
            Ok(response) => {
                Ok(if response.exit_code == 0 { Ok(()) } else { Err(output_text(&response.stdout, &response.stderr)) })
            }
            Err(status) if status.code() == tug_cri::Code::DeadlineExceeded => Ok(Err(timed_out())),
            Err(status) => Err(RuntimeError(status.message().to_string())),
        }
    }
}

/// The runtime could not run a probe (it is down, or the container is gone): no verdict.
#[derive(Debug)]
struct RuntimeError(String);

/// A probe command's output as its failure message: stdout then stderr, cut to the kubelet's
/// limit.
fn output_text(stdout: &[u8], stderr: &[u8]) -> String {
    let mut bytes = stdout.to_vec();
    bytes.extend_from_slice(stderr);
    bytes.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// An error of dialing `address` in the words of Go's net package, as kubelet messages read.
fn dial_error(address: &str, error: &std::io::Error) -> String {
    let why = match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => error.to_string(),
    };
    format!("dial tcp {address}: {why}")
}

async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let address = host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(dial_error(&address, &error)),
        Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
    }
}

/// The HTTP/1.1 GET request of an HTTP probe.
pub fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        request.push_str(&format!("Host: {}\r\n", host_port(host, port)));
    }
    if !has("user-agent") {
        request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// The outcome of an HTTP probe from the start of its response: 200-399 is success.
pub fn http_outcome(response_head: &str) -> Result<(), String> {
    let status_line = response_head.lines().next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("malformed HTTP response: {status_line:?}"))?;
    if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with statuscode: {code}")) }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let address = host_port(host, port);
    let url = format!("http://{address}{path}");
    let exchange = async {
        let mut stream = TcpStream::connect(&address).await.map_err(|e| dial_error(&address, &e))?;
        stream.write_all(http_request(host, port, path, headers).as_bytes()).await.map_err(|e| e.to_string())?;
        // The status line is all that decides.
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            let read = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        http_outcome(&String::from_utf8_lossy(&head))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) if why.starts_with("HTTP probe failed") => Err(why),
        Ok(Err(why)) => Err(format!("Get {url:?}: {why}")),
        Err(_) => {
            Err(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn timing_defaults_and_liveness_needs_one_success() {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "exec": {"command": ["true"]}, "initialDelaySeconds": 5, "successThreshold": 3, "periodSeconds": 0,
        }))
        .expect("probe");
        let readiness = Timing::of(&probe, ProbeKind::Readiness);
        assert_eq!(
            readiness,
            Timing { initial_delay: Duration::from_secs(5), period: Duration::from_secs(10), ..timing(3, 3) }
        );
        assert_eq!(Timing::of(&probe, ProbeKind::Liveness).success_threshold, 1);
    }

    #[test]
    fn results_change_only_after_threshold_runs() {
        // (kind, success threshold, failure threshold, outcomes, results after each outcome)
        type Case = (ProbeKind, u32, u32, &'static [bool], &'static [Option<bool>]);
        let cases: [Case; 5] = [
            (
                ProbeKind::Liveness,
                1,
                3,
                &[false, false, true, false, false, false],
                &[None, None, None, None, None, Some(false)],
            ),
            (
                ProbeKind::Readiness,
                1,
                3,
                &[true, true, false, false, false],
                &[Some(true), None, None, None, Some(false)],
            ),
            (ProbeKind::Readiness, 2, 1, &[true, false, true, true, true], &[None, None, None, Some(true), None]),
            (ProbeKind::Startup, 1, 2, &[false, false], &[None, Some(false)]),
            (ProbeKind::Startup, 1, 2, &[false, true], &[None, Some(true)]),
        ];
        for (kind, success, failure, outcomes, expected) in cases {
            let mut tracker = Tracker::new(kind, timing(success, failure));
            let got: Vec<Option<bool>> = outcomes.iter().map(|ok| tracker.record(*ok)).collect();
            assert_eq!(got, expected, "{kind:?} {success}/{failure} {outcomes:?}");
        }
    }

    #[test]
    fn checks_resolve_ports_paths_and_hosts() {
        let c = container(serde_json::json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}));
        let probe = |json| -> Probe { serde_json::from_value(json).expect("probe") };
        let cases = [
            (
                serde_json::json!({"httpGet": {"port": "http", "path": "healthz", "httpHeaders": [{"name": "X-A", "value": "1"}]}}),
                Ok(Check::Http {
                    host: "10.0.0.5".into(),
                    port: 8080,
                    path: "/healthz".into(),
                    headers: vec![("X-A".into(), "1".into())],
                }),
            ),
            (
                serde_json::json!({"httpGet": {"port": 81, "host": "192.0.2.1"}}),
                Ok(Check::Http { host: "192.0.2.1".into(), port: 81, path: "/".into(), headers: vec![] }),
            ),
            (
                serde_json::json!({"tcpSocket": {"port": "8080"}}),
                Ok(Check::Tcp { host: "10.0.0.5".into(), port: 8080 }),
            ),
            (
                serde_json::json!({"exec": {"command": ["cat", "/tmp/ready"]}}),
                Ok(Check::Exec { command: vec!["cat".into(), "/tmp/ready".into()] }),
            ),
            (
                serde_json::json!({"tcpSocket": {"port": "metrics"}}),
                Err("couldn't find port: metrics in web".to_string()),
            ),
            (
                serde_json::json!({"httpGet": {"port": 443, "scheme": "HTTPS"}}),
                Err("unsupported HTTP probe scheme \"HTTPS\"".into()),
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(Check::of(&probe(json.clone()), &c, "10.0.0.5"), expected, "{json}");
        }
    }

    #[test]
    fn http_requests_and_status_codes() {
        let request = http_request("10.0.0.5", 80, "/ready", &[("Host".into(), "example".into())]);
        assert!(request.starts_with("GET /ready HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Host: example\r\n") && !request.contains("Host: 10.0.0.5"), "{request}");
        assert!(request.contains("User-Agent: kube-probe/") && request.ends_with("\r\n\r\n"), "{request}");
        let cases = [
            ("HTTP/1.1 200 OK\r\n", Ok(())),
            ("HTTP/1.0 302 Found\r\n", Ok(())),
            ("HTTP/1.1 404 Not Found\r\n", Err("HTTP probe failed with statuscode: 404".to_string())),
            ("HTTP/1.1 500 Oops\r\n", Err("HTTP probe failed with statuscode: 500".to_string())),
            ("garbage", Err("malformed HTTP response: \"garbage\"".to_string())),
        ];
        for (head, expected) in cases {
            assert_eq!(http_outcome(head), expected, "{head}");
        }
    }

    #[test]
    fn events_name_the_container_and_the_kubelet() {
        let pod = PodRef { uid: "u".into(), name: "p".into(), namespace: "ns".into(), resource_version: None };
        let now = Timestamp::from_second(1_700_000_000).expect("time");
        let event = container_event(&pod, "main", "n1", (true, "Unhealthy", "Liveness probe failed: "), now);
        assert_eq!(event.involved_object.field_path.as_deref(), Some("spec.containers{main}"));
        assert_eq!(event.involved_object.uid.as_deref(), Some("u"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.source.and_then(|s| s.component).as_deref(), Some("kubelet"));
        assert!(event.metadata.name.is_some_and(|n| n.starts_with("p.")));
        assert_eq!(
            kill_message("main", ProbeKind::Liveness),
            "Container main failed liveness probe, will be restarted"
        );
    }
}
