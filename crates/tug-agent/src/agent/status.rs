//! The pure status core: a pod's status as the kubelet would report it, computed from the pod
//! and what the runtime has for it. Times of unchanged conditions are kept, so computing the
//! status again over the same facts gives the same status and nothing is written.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{ContainerState, Desired, Observed, ObservedContainer, Restart, RestartPolicy, next_restart};
use super::probe_results::{ProbeResults, readiness};
use super::qos::qos_class;

/// The containerID scheme the kubelet reports for containerd.
pub const CONTAINER_ID_SCHEME: &str = "containerd://";

/// Why a container could not be started in the last sync (reason, message), e.g.
/// `ErrImageNeverPull`; shown as its waiting state.
pub type StartFailure = (String, String);

/// What the status depends on besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub observed: &'a Observed,
    pub host_ip: &'a str,
    pub now: Timestamp,
    pub failures: &'a [(String, StartFailure)],
    /// The startup and readiness probe results of running containers.
    pub probes: &'a ProbeResults,
}

fn time_of_nanos(ns: i64) -> Option<Time> {
    (ns > 0).then(|| Timestamp::from_nanosecond(i128::from(ns)).ok().map(Time)).flatten()
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }), ..Default::default() }
}

fn terminated(c: &ObservedContainer) -> ApiState {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ApiState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("{CONTAINER_ID_SCHEME}{}", c.id)),
            exit_code: c.exit_code,
            reason: Some(reason),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time_of_nanos(c.started_at),
            finished_at: time_of_nanos(c.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

/// One container's status. `policy` decides whether an exited container is waiting for its
/// restart (`CrashLoopBackOff`) or terminated for good.
fn container_status(
    container: &Container,
    facts: &Facts,
    sandbox_id: &str,
    policy: RestartPolicy,
    pod_name: &str,
    pending_reason: &str,
) -> ContainerStatus {
    let (name, image) = (container.name.as_str(), container.image.clone().unwrap_or_default());
    let observed = facts.observed;
    let latest = observed.latest(sandbox_id, name);
    let now_ns = facts.now.as_nanosecond().try_into().unwrap_or(i64::MAX);
    let failure = facts.failures.iter().find(|(n, _)| n == name).map(|(_, f)| f);
    let (state, (started, ready)) = match (latest, failure) {
        (_, Some((reason, message))) => (waiting(reason, Some(message.clone())), (false, false)),
        (None, None) => (waiting(pending_reason, None), (false, false)),
        (Some(c), None) => match c.state.unwrap_or(ContainerState::Unknown) {
            ContainerState::Running => (
                ApiState {
                    running: Some(ContainerStateRunning { started_at: time_of_nanos(c.started_at) }),
                    ..Default::default()
                },
                readiness(container, true, facts.probes.get(&c.id)),
            ),
            ContainerState::Created | ContainerState::Unknown => (waiting("ContainerCreating", None), (false, false)),
            ContainerState::Exited => match next_restart(policy, c, now_ns) {
                Restart::No | Restart::Now => (terminated(c), (false, false)),
                Restart::After { backoff, .. } => {
                    let message =
                        format!("back-off {}s restarting failed container={name} pod={pod_name}", backoff.as_secs());
                    (waiting("CrashLoopBackOff", Some(message)), (false, false))
                }
            },
        },
    };
    // The instance before the current one, or the current one when it waits for a restart.
    let last = match (latest, &state.waiting) {
        (Some(c), Some(_)) if c.state == Some(ContainerState::Exited) => Some(c),
        _ => observed.previous(sandbox_id, name).filter(|c| c.state == Some(ContainerState::Exited)),
    };
    ContainerStatus {
        name: name.into(),
        // The image as the spec names it, as the kubelet reports it.
        image,
        image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|c| format!("{CONTAINER_ID_SCHEME}{}", c.id)),
        ready,
        started: Some(started),
        restart_count: latest.map_or(0, |c| i32::try_from(c.attempt).unwrap_or(i32::MAX)),
        last_state: last.map(terminated),
        state: Some(state),
        ..Default::default()
    }
}

/// A condition that keeps its stored transition time while its status stays the same.
fn condition(existing: &[PodCondition], kind: &str, ok: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = existing.iter().find(|c| c.type_ == kind && c.status == status);
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: previous.and_then(|c| c.last_transition_time.clone()).or(Some(Time(now))),
        last_probe_time: None,
        ..Default::default()
    }
}

/// The status the agent reports for `pod`: the stored status with every field the agent owns
/// recomputed from `facts`.
pub fn pod_status(pod: &Pod, desired: &Desired, facts: &Facts) -> PodStatus {
    let existing = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let sandbox = facts.observed.live_sandbox();
    let sandbox_id = sandbox.map(|s| s.id.clone()).unwrap_or_default();
    let policy = desired.restart_policy;

    let init_policy = if policy == RestartPolicy::Never { RestartPolicy::Never } else { RestartPolicy::OnFailure };
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, facts, &sandbox_id, init_policy, &pod_name, "PodInitializing"))
        .collect();
    let initialized = init_statuses
        .iter()
        .all(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0));
    let pending_reason = if initialized { "ContainerCreating" } else { "PodInitializing" };
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, facts, &sandbox_id, policy, &pod_name, pending_reason))
        .collect();

    let phase = phase(policy, initialized, &init_statuses, &statuses);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let stored = existing.conditions.clone().unwrap_or_default();
    let now = facts.now;
    let mut conditions: Vec<PodCondition> = stored
        .iter()
        .filter(|c| !matches!(c.type_.as_str(), "Initialized" | "ContainersReady" | "Ready"))
        .cloned()
        .collect();
    let not_ready_reason = if phase == "Succeeded" { "PodCompleted" } else { "ContainersNotReady" };
    conditions.push(condition(&stored, "Initialized", initialized, Some("ContainersNotInitialized"), now));
    conditions.push(condition(&stored, "ContainersReady", all_ready, Some(not_ready_reason), now));
    conditions.push(condition(&stored, "Ready", all_ready, Some(not_ready_reason), now));

    let pod_ip = sandbox.map(|s| s.ip.clone()).filter(|ip| !ip.is_empty()).or(existing.pod_ip.clone());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.into()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: facts.host_ip.into() }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: existing.start_time.clone().or(Some(Time(now))),
        qos_class: Some(qos_class(pod)),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ..existing
    }
}

/// The pod phase from its containers' states, as the kubelet's getPhase decides it.
fn phase(
    policy: RestartPolicy,
    initialized: bool,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
) -> &'static str {
    let terminated = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.clone());
    if init_statuses.iter().any(|s| terminated(s).is_some_and(|t| t.exit_code != 0)) && policy == RestartPolicy::Never {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let (mut running, mut waiting, mut failed) = (0, 0, 0);
    for status in statuses {
        let state = status.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            if t.exit_code != 0 {
                failed += 1;
            }
        } else if status.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
            // Waiting to restart after having run.
            running += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if failed > 0 && policy != RestartPolicy::Always {
        "Failed"
    } else if policy == RestartPolicy::Always {
        // Everything stopped but will be restarted.
        "Running"
    } else {
        "Succeeded"
    }
}

/// The pod conditions the agent owns (the node lifecycle controller may set `Ready` behind its
/// back; others, such as `PodScheduled` or `DisruptionTarget`, belong to other components).
const AGENT_CONDITIONS: [&str; 3] = ["Initialized", "ContainersReady", "Ready"];

/// The parts of a pod's status the agent owns, as the API stores them: times at whole seconds
/// (what `Time` serializes to), conditions without their times.
fn owned_parts(status: &PodStatus) -> serde_json::Value {
    let mut conditions: Vec<(&str, &str, Option<&str>, Option<&str>)> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| AGENT_CONDITIONS.contains(&c.type_.as_str()))
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref(), c.message.as_deref()))
        .collect();
    conditions.sort_unstable();
    serde_json::json!({
        "phase": status.phase,
        "conditions": conditions,
        "hostIP": status.host_ip,
        "hostIPs": status.host_ips,
        "podIP": status.pod_ip,
        "podIPs": status.pod_ips,
        "startTime": status.start_time,
        "qosClass": status.qos_class,
        "containerStatuses": status.container_statuses,
        "initContainerStatuses": status.init_container_statuses,
    })
}

/// Whether the agent should write `new` over `server`, the API's current copy of the pod's
/// status (from the pod watch, so a status another component changed behind the agent's back
/// is re-asserted). Only the parts the agent owns count, at the precision the API keeps: a
/// condition's lastTransitionTime or lastProbeTime alone, or sub-second container times, never
/// cause a write.
pub fn needs_write(server: Option<&PodStatus>, new: &PodStatus) -> bool {
    server.is_none_or(|server| owned_parts(server) != owned_parts(new))
}

#[cfg(test)]
mod tests {
    use super::super::plan::{ObservedSandbox, RestartPolicy};
    use super::super::probe_results::Results;
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn pod(policy: &str, resources: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "img", "resources": resources}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .expect("pod")
    }

    fn desired(policy: RestartPolicy) -> Desired {
        Desired { restart_policy: policy, init_containers: vec![], containers: vec!["a".into()], deleting: None }
    }

    fn observed(state: Option<(ContainerState, i32, u32)>) -> Observed {
        Observed {
            sandboxes: vec![ObservedSandbox { id: "s".into(), attempt: 0, ready: true, ip: "10.1.2.3".into() }],
            containers: state
                .map(|(state, exit_code, attempt)| ObservedContainer {
                    id: format!("c{attempt}"),
                    sandbox_id: "s".into(),
                    name: "a".into(),
                    attempt,
                    state: Some(state),
                    exit_code,
                    started_at: 100 * SECOND,
                    finished_at: if state == ContainerState::Exited { 101 * SECOND } else { 0 },
                    image_ref: "sha256:abc".into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
        }
    }

    fn status_of(policy: RestartPolicy, state: Option<(ContainerState, i32, u32)>, now_s: i64) -> PodStatus {
        let observed = observed(state);
        let name = match policy {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        };
        let now = Timestamp::from_second(now_s).expect("time");
        pod_status(
            &pod(name, serde_json::json!({})),
            &desired(policy),
            &Facts { observed: &observed, host_ip: "192.0.2.2", now, failures: &[], probes: &ProbeResults::new() },
        )
    }

    fn summary(status: &PodStatus) -> (String, String, bool, i32) {
        let c = &status.container_statuses.as_ref().expect("statuses")[0];
        let state = c.state.clone().unwrap_or_default();
        let what = match (&state.running, &state.waiting, &state.terminated) {
            (Some(_), _, _) => "running".to_string(),
            (_, Some(w), _) => w.reason.clone().unwrap_or_default(),
            (_, _, Some(t)) => format!("terminated {}", t.exit_code),
            _ => "none".into(),
        };
        (status.phase.clone().unwrap_or_default(), what, c.ready, c.restart_count)
    }

    #[test]
    fn states_phases_and_crash_loops() {
        use ContainerState::*;
        use RestartPolicy::*;
        let cases = [
            (Always, None, 0, ("Pending", "ContainerCreating", false, 0)),
            (Always, Some((Running, 0, 0)), 200, ("Running", "running", true, 0)),
            (Always, Some((Exited, 1, 1)), 105, ("Running", "CrashLoopBackOff", false, 1)),
            (Never, Some((Exited, 1, 0)), 105, ("Failed", "terminated 1", false, 0)),
            (Never, Some((Exited, 0, 0)), 105, ("Succeeded", "terminated 0", false, 0)),
            (OnFailure, Some((Exited, 0, 0)), 105, ("Succeeded", "terminated 0", false, 0)),
        ];
        for (policy, state, now, (phase, what, ready, restarts)) in cases {
            let status = status_of(policy, state, now);
            assert_eq!(summary(&status), (phase.into(), what.into(), ready, restarts), "{policy:?} {state:?}");
        }
    }

    #[test]
    fn a_running_pod_reports_ip_conditions_ids_and_keeps_the_scheduler_condition() {
        let status = status_of(RestartPolicy::Always, Some((ContainerState::Running, 0, 0)), 200);
        assert_eq!(status.pod_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(status.host_ip.as_deref(), Some("192.0.2.2"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        let c = &status.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(c.container_id.as_deref(), Some("containerd://c0"));
        assert_eq!(c.image_id, "sha256:abc");
        let conditions = status.conditions.expect("conditions");
        for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(conditions.iter().any(|c| c.type_ == kind && c.status == "True"), "{kind}: {conditions:?}");
        }
    }

    #[test]
    fn the_same_facts_give_the_same_status_so_nothing_is_rewritten() {
        let observed = observed(Some((ContainerState::Running, 0, 0)));
        let no_probes = ProbeResults::new();
        let mut pod = pod("Always", serde_json::json!({}));
        let facts = |at| Facts {
            observed: &observed,
            host_ip: "h",
            now: Timestamp::from_second(at).expect("t"),
            failures: &[],
            probes: &no_probes,
        };
        let first = pod_status(&pod, &desired(RestartPolicy::Always), &facts(200));
        assert!(needs_write(pod.status.as_ref(), &first));
        pod.status = Some(first.clone());
        let again = pod_status(&pod, &desired(RestartPolicy::Always), &facts(300));
        assert!(!needs_write(pod.status.as_ref(), &again), "{first:?}\n{again:?}");
    }

    /// The status of a running pod as the API stores it (a JSON round trip: whole seconds), and
    /// the facts it was computed from, at `at` seconds.
    fn stored_running_pod(observed: &Observed, at: i64) -> Pod {
        let mut pod = pod("Always", serde_json::json!({}));
        let no_probes = ProbeResults::new();
        let now = Timestamp::from_second(at).expect("t") + jiff::SignedDuration::from_nanos(250_000_000);
        let facts = Facts { observed, host_ip: "h", now, failures: &[], probes: &no_probes };
        let status = pod_status(&pod, &desired(RestartPolicy::Always), &facts);
        pod.status = Some(serde_json::from_value(serde_json::to_value(status).expect("json")).expect("status"));
        pod
    }

    fn compute(pod: &Pod, observed: &Observed, at: i64) -> PodStatus {
        let no_probes = ProbeResults::new();
        let now = Timestamp::from_second(at).expect("t");
        pod_status(
            pod,
            &desired(RestartPolicy::Always),
            &Facts { observed, host_ip: "h", now, failures: &[], probes: &no_probes },
        )
    }

    fn ready_condition(status: &PodStatus) -> PodCondition {
        status.conditions.iter().flatten().find(|c| c.type_ == "Ready").cloned().expect("Ready")
    }

    #[test]
    fn a_ready_condition_changed_behind_the_agents_back_is_written_back() {
        let observed = observed(Some((ContainerState::Running, 0, 0)));
        let mut pod = stored_running_pod(&observed, 200);
        assert!(!needs_write(pod.status.as_ref(), &compute(&pod, &observed, 250)), "in agreement: nothing to write");
        // The node lifecycle controller marks the pod not ready while its node is silent.
        let conditions = pod.status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions");
        let ready = conditions.iter_mut().find(|c| c.type_ == "Ready").expect("Ready");
        ready.status = "False".into();
        ready.reason = Some("NodeNotReady".into());
        ready.last_transition_time = Some(Time(Timestamp::from_second(300).expect("t")));
        let status = compute(&pod, &observed, 310);
        assert!(needs_write(pod.status.as_ref(), &status), "the server's copy differs from what the agent observes");
        let ready = ready_condition(&status);
        assert_eq!((ready.status.as_str(), ready.reason), ("True", None));
        assert_eq!(ready.last_transition_time, Some(Time(Timestamp::from_second(310).expect("t"))), "a transition");
        // Written: the next sync (woken by the write's own watch event) writes nothing.
        pod.status = Some(status);
        assert!(!needs_write(pod.status.as_ref(), &compute(&pod, &observed, 320)));
    }

    #[test]
    fn times_alone_and_conditions_of_others_cause_no_write() {
        let mut observed = observed(Some((ContainerState::Running, 0, 0)));
        // The runtime's times have nanoseconds; the API keeps whole seconds.
        observed.containers[0].started_at = 100 * SECOND + 123_456_789;
        let mut pod = stored_running_pod(&observed, 200);
        let status = compute(&pod, &observed, 250);
        assert_ne!(pod.status.as_ref(), Some(&status), "differs below a second");
        assert!(!needs_write(pod.status.as_ref(), &status), "but not as the API stores it");
        // Another writer moved a condition's times, or added a condition of its own.
        let conditions = pod.status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions");
        for c in conditions.iter_mut() {
            c.last_transition_time = Some(Time(Timestamp::from_second(1).expect("t")));
            c.last_probe_time = Some(Time(Timestamp::from_second(2).expect("t")));
        }
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("EvictionByEvictionAPI".into()),
            ..Default::default()
        });
        let status = compute(&pod, &observed, 260);
        assert!(!needs_write(pod.status.as_ref(), &status), "{:?}", status.conditions);
        // No status at all in the API yet: written.
        assert!(needs_write(None, &status));
    }

    #[test]
    fn an_oom_killed_container_says_so_in_its_state_and_last_state() {
        let mut observed = observed(Some((ContainerState::Exited, 137, 0)));
        observed.containers[0].reason = "OOMKilled".into();
        let no_probes = ProbeResults::new();
        let facts = |observed| Facts {
            observed,
            host_ip: "h",
            now: Timestamp::from_second(105).expect("t"),
            failures: &[],
            probes: &no_probes,
        };
        let reason = |state: Option<&ApiState>| state.and_then(|s| s.terminated.clone()).and_then(|t| t.reason);
        let never = pod_status(&pod("Never", serde_json::json!({})), &desired(RestartPolicy::Never), &facts(&observed));
        let c = &never.container_statuses.expect("statuses")[0];
        assert_eq!(reason(c.state.as_ref()).as_deref(), Some("OOMKilled"));
        // Restarted: the OOM kill is the last state of the new instance.
        let mut again = observed.clone();
        let mut next = again.containers[0].clone();
        (next.id, next.attempt, next.state, next.reason) =
            ("c1".into(), 1, Some(ContainerState::Running), String::new());
        again.containers.push(next);
        let always = pod_status(&pod("Always", serde_json::json!({})), &desired(RestartPolicy::Always), &facts(&again));
        let c = &always.container_statuses.expect("statuses")[0];
        assert_eq!(reason(c.last_state.as_ref()).as_deref(), Some("OOMKilled"));
        assert_eq!(c.restart_count, 1);
    }

    #[test]
    fn readiness_probes_decide_ready_and_the_pod_conditions() {
        let observed = observed(Some((ContainerState::Running, 0, 0)));
        let mut pod = pod("Always", serde_json::json!({}));
        pod.spec.as_mut().expect("spec").containers[0].readiness_probe =
            Some(serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}})).expect("probe"));
        let status_with = |ready: Option<bool>| {
            let probes: ProbeResults = [("c0".to_string(), Results { started: None, ready })].into_iter().collect();
            let facts = Facts {
                observed: &observed,
                host_ip: "h",
                now: Timestamp::from_second(200).expect("t"),
                failures: &[],
                probes: &probes,
            };
            let status = pod_status(&pod, &desired(RestartPolicy::Always), &facts);
            let c = status.container_statuses.clone().expect("statuses")[0].clone();
            let condition = |kind: &str| {
                status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == kind)
                    .map(|c| c.status.clone())
                    .unwrap_or_default()
            };
            (
                status.phase.clone().unwrap_or_default(),
                c.ready,
                c.started,
                condition("ContainersReady"),
                condition("Ready"),
            )
        };
        let not_ready = ("Running".to_string(), false, Some(true), "False".to_string(), "False".to_string());
        assert_eq!(status_with(None), not_ready);
        assert_eq!(status_with(Some(false)), not_ready);
        assert_eq!(status_with(Some(true)), ("Running".into(), true, Some(true), "True".into(), "True".into()));
    }
}
