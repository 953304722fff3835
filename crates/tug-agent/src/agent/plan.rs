//! The pure core of pod sync: what one pod should look like (from the API) against what the
//! runtime has (from CRI lists), turned into the runtime actions that close the gap. No IO and
//! no clock: `now` comes in, so every decision is a table-testable function.
//!
//! Containers are told apart by the attempt number in their CRI metadata, as the kubelet does:
//! the restart count of a container is the attempt of its newest instance.

use std::time::Duration;

/// First restart delay after a crash loop begins; doubles per restart up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a crashing container waits before its next start.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts at once (its back-off is reset).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The pod's `spec.restartPolicy` (Always when unset or unknown, the API default).
    pub fn parse(text: Option<&str>) -> RestartPolicy {
        match text {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` runs again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// The pod as the API wants it, reduced to what sync decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub restart_policy: RestartPolicy,
    /// Run one after another, each to success, before any regular container.
    pub init_containers: Vec<String>,
    pub containers: Vec<String>,
    /// Set once the pod has a deletionTimestamp: the grace period its containers get.
    pub deleting: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    /// From the CRI enum value.
    pub fn from_cri(value: i32) -> ContainerState {
        match value {
            0 => ContainerState::Created,
            1 => ContainerState::Running,
            2 => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

/// One container the runtime has for the pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: Option<ContainerState>,
    pub exit_code: i32,
    /// Nanoseconds since the epoch; 0 when not (yet) known.
    pub started_at: i64,
    pub finished_at: i64,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
}

impl ObservedContainer {
    fn state(&self) -> ContainerState {
        self.state.unwrap_or(ContainerState::Unknown)
    }
}

/// One pod sandbox the runtime has for the pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedSandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    /// The pod IP (empty when unknown or not ready).
    pub ip: String,
}

/// Everything the runtime has for one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub sandboxes: Vec<ObservedSandbox>,
    pub containers: Vec<ObservedContainer>,
}

impl Observed {
    /// The sandbox the pod runs in: the newest ready one.
    pub fn live_sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.iter().filter(|s| s.ready).max_by_key(|s| s.attempt)
    }

    /// The newest instance of container `name` in sandbox `sandbox_id`.
    pub fn latest(&self, sandbox_id: &str, name: &str) -> Option<&ObservedContainer> {
        self.instances(sandbox_id, name).max_by_key(|c| c.attempt)
    }

    /// The instance before the newest one (for `lastState`).
    pub fn previous(&self, sandbox_id: &str, name: &str) -> Option<&ObservedContainer> {
        let latest = self.latest(sandbox_id, name)?.attempt;
        self.instances(sandbox_id, name).filter(|c| c.attempt < latest).max_by_key(|c| c.attempt)
    }

    fn instances<'a, 'b>(
        &'a self,
        sandbox_id: &'b str,
        name: &'b str,
    ) -> impl Iterator<Item = &'a ObservedContainer> + use<'a, 'b> {
        self.containers.iter().filter(move |c| c.sandbox_id == sandbox_id && c.name == name)
    }
}

/// One step against the runtime. The executor runs them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the pod sandbox (network, pause container); later container actions use it.
    RunSandbox {
        attempt: u32,
    },
    /// Pull the image if needed, create and start a container in the live sandbox.
    StartContainer {
        name: String,
        attempt: u32,
        init: bool,
    },
    /// Start a container created earlier but never started (an agent stopped in between).
    StartCreated {
        id: String,
    },
    StopContainer {
        id: String,
        grace_seconds: i64,
    },
    RemoveContainer {
        id: String,
    },
    StopSandbox {
        id: String,
    },
    RemoveSandbox {
        id: String,
    },
    /// Every container and sandbox is gone: delete the pod object for good.
    Finalize,
}

/// The actions for one pod, and when to look again if nothing else happens before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_in: Option<Duration>,
}

/// When a container that exited may run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Its policy says it stays stopped.
    No,
    Now,
    /// In back-off (`CrashLoopBackOff`): this much longer, out of a back-off of `backoff`.
    After {
        wait: Duration,
        backoff: Duration,
    },
}

/// The back-off before starting attempt `exited_attempt + 1`: none for the first restart,
/// then 10 s doubling to 5 min; reset when the container had run for 10 minutes.
pub fn backoff_for(exited_attempt: u32, ran_for: Duration) -> Duration {
    if exited_attempt == 0 || ran_for >= BACKOFF_RESET_AFTER {
        return Duration::ZERO;
    }
    let doublings = (exited_attempt - 1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Whether and when the exited container `latest` starts again (`now` in ns since the epoch).
pub fn next_restart(policy: RestartPolicy, latest: &ObservedContainer, now: i64) -> Restart {
    if !policy.restarts(latest.exit_code) {
        return Restart::No;
    }
    let ran_for = nanos(latest.finished_at.saturating_sub(latest.started_at));
    let backoff = backoff_for(latest.attempt, ran_for);
    let due = latest.finished_at.saturating_add(i64::try_from(backoff.as_nanos()).unwrap_or(i64::MAX));
    if now >= due { Restart::Now } else { Restart::After { wait: nanos(due - now), backoff } }
}

fn nanos(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The actions that bring the runtime's view of one pod to `desired`; `None` means the pod is
/// gone from the API (everything of it is removed, nothing finalized).
pub fn plan(desired: Option<&Desired>, observed: &Observed, now: i64) -> Plan {
    let Some(desired) = desired else {
        return teardown(observed, 0, false);
    };
    if let Some(grace) = desired.deleting {
        return teardown(observed, grace, true);
    }
    let mut plan = Plan::default();
    // Sandboxes other than the live one are dead weight (a crashed earlier attempt).
    let live = observed.live_sandbox();
    for sandbox in observed.sandboxes.iter().filter(|s| Some(&s.id) != live.map(|l| &l.id)) {
        plan.actions.push(Action::StopSandbox { id: sandbox.id.clone() });
        plan.actions.push(Action::RemoveSandbox { id: sandbox.id.clone() });
    }
    let live_id = match live {
        Some(live) => live.id.clone(),
        None => {
            // A pod that may not restart and already ran has finished; a new sandbox would
            // run it again.
            if desired.restart_policy == RestartPolicy::Never && !observed.containers.is_empty() {
                return plan;
            }
            let attempt = observed.sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
            plan.actions.push(Action::RunSandbox { attempt });
            // The new sandbox holds nothing yet.
            String::new()
        }
    };
    let wake = |plan: &mut Plan, wait: Duration| {
        plan.wake_in = Some(plan.wake_in.map_or(wait, |w: Duration| w.min(wait)));
    };
    // Init containers one at a time, each to success.
    for name in &desired.init_containers {
        match observed.latest(&live_id, name) {
            None => {
                plan.actions.push(Action::StartContainer { name: name.clone(), attempt: 0, init: true });
                return plan;
            }
            Some(c) => match c.state() {
                ContainerState::Created => {
                    plan.actions.push(Action::StartCreated { id: c.id.clone() });
                    return plan;
                }
                ContainerState::Running | ContainerState::Unknown => return plan,
                ContainerState::Exited if c.exit_code == 0 => {}
                ContainerState::Exited => {
                    // A failed init container is retried unless the pod never restarts.
                    let policy = match desired.restart_policy {
                        RestartPolicy::Never => RestartPolicy::Never,
                        _ => RestartPolicy::OnFailure,
                    };
                    match next_restart(policy, c, now) {
                        Restart::No => {}
                        Restart::Now => restart(&mut plan, observed, &live_id, c, true),
                        Restart::After { wait, .. } => wake(&mut plan, wait),
                    }
                    return plan;
                }
            },
        }
    }
    for name in &desired.containers {
        match observed.latest(&live_id, name) {
            None => plan.actions.push(Action::StartContainer { name: name.clone(), attempt: 0, init: false }),
            Some(c) => match c.state() {
                ContainerState::Created => plan.actions.push(Action::StartCreated { id: c.id.clone() }),
                ContainerState::Running | ContainerState::Unknown => {}
                ContainerState::Exited => match next_restart(desired.restart_policy, c, now) {
                    Restart::No => {}
                    Restart::Now => restart(&mut plan, observed, &live_id, c, false),
                    Restart::After { wait, .. } => wake(&mut plan, wait),
                },
            },
        }
    }
    plan
}

/// Starts the next attempt of `exited`, removing instances older than it (the newest exited
/// one stays for `lastState` and `logs --previous`).
fn restart(plan: &mut Plan, observed: &Observed, sandbox_id: &str, exited: &ObservedContainer, init: bool) {
    for old in observed.instances(sandbox_id, &exited.name).filter(|c| c.attempt < exited.attempt) {
        plan.actions.push(Action::RemoveContainer { id: old.id.clone() });
    }
    plan.actions.push(Action::StartContainer { name: exited.name.clone(), attempt: exited.attempt + 1, init });
}

/// Stops every container (with `grace`), then stops and removes every sandbox; finalizes the
/// pod when asked and everything is gone already or going now.
fn teardown(observed: &Observed, grace: i64, finalize: bool) -> Plan {
    let mut actions: Vec<Action> = observed
        .containers
        .iter()
        .filter(|c| matches!(c.state(), ContainerState::Running | ContainerState::Created | ContainerState::Unknown))
        .map(|c| Action::StopContainer { id: c.id.clone(), grace_seconds: grace })
        .collect();
    for sandbox in &observed.sandboxes {
        actions.push(Action::StopSandbox { id: sandbox.id.clone() });
        actions.push(Action::RemoveSandbox { id: sandbox.id.clone() });
    }
    // Containers outside any listed sandbox (half-removed earlier) go one by one.
    let sandbox_ids: Vec<&str> = observed.sandboxes.iter().map(|s| s.id.as_str()).collect();
    for orphan in observed.containers.iter().filter(|c| !sandbox_ids.contains(&c.sandbox_id.as_str())) {
        actions.push(Action::RemoveContainer { id: orphan.id.clone() });
    }
    if finalize {
        actions.push(Action::Finalize);
    }
    Plan { actions, wake_in: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn desired(policy: RestartPolicy, init: &[&str], containers: &[&str]) -> Desired {
        Desired {
            restart_policy: policy,
            init_containers: init.iter().map(|s| s.to_string()).collect(),
            containers: containers.iter().map(|s| s.to_string()).collect(),
            deleting: None,
        }
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> ObservedSandbox {
        ObservedSandbox { id: id.into(), attempt, ready, ip: "10.0.0.2".into() }
    }

    fn container(id: &str, name: &str, attempt: u32, state: ContainerState, exit: i32) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt,
            state: Some(state),
            exit_code: exit,
            started_at: 100 * SECOND,
            finished_at: if state == ContainerState::Exited { 101 * SECOND } else { 0 },
            ..Default::default()
        }
    }

    fn start(name: &str, attempt: u32, init: bool) -> Action {
        Action::StartContainer { name: name.into(), attempt, init }
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes_and_resets_after_ten_minutes() {
        let short = Duration::from_secs(1);
        let cases = [(0, short, 0), (1, short, 10), (2, short, 20), (3, short, 40), (5, short, 160), (6, short, 300)];
        for (attempt, ran, secs) in cases {
            assert_eq!(backoff_for(attempt, ran), Duration::from_secs(secs), "attempt {attempt}");
        }
        assert_eq!(backoff_for(40, short), MAX_BACKOFF);
        assert_eq!(backoff_for(5, Duration::from_secs(600)), Duration::ZERO);
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container_only() {
        let plan = plan(Some(&desired(RestartPolicy::Always, &["i1", "i2"], &["a"])), &Observed::default(), 0);
        assert_eq!(plan.actions, vec![Action::RunSandbox { attempt: 0 }, start("i1", 0, true)]);
        let plain = super::plan(Some(&desired(RestartPolicy::Always, &[], &["a", "b"])), &Observed::default(), 0);
        assert_eq!(plain.actions, vec![Action::RunSandbox { attempt: 0 }, start("a", 0, false), start("b", 0, false)]);
    }

    #[test]
    fn init_containers_run_in_order_then_the_containers() {
        let want = desired(RestartPolicy::Always, &["i1", "i2"], &["a"]);
        let mut observed = Observed { sandboxes: vec![sandbox("s", 0, true)], containers: vec![] };
        observed.containers.push(container("c1", "i1", 0, ContainerState::Running, 0));
        assert_eq!(plan(Some(&want), &observed, 200 * SECOND).actions, vec![]);
        observed.containers[0] = container("c1", "i1", 0, ContainerState::Exited, 0);
        assert_eq!(plan(Some(&want), &observed, 200 * SECOND).actions, vec![start("i2", 0, true)]);
        observed.containers.push(container("c2", "i2", 0, ContainerState::Exited, 0));
        assert_eq!(plan(Some(&want), &observed, 200 * SECOND).actions, vec![start("a", 0, false)]);
    }

    #[test]
    fn exited_containers_restart_by_policy_and_back_off() {
        let running = |policy| desired(policy, &[], &["a"]);
        let with = |c: ObservedContainer| Observed { sandboxes: vec![sandbox("s", 0, true)], containers: vec![c] };
        // (policy, attempt, exit code, now, expected actions, expected wake)
        let cases = [
            (RestartPolicy::Always, 0, 0, 101, vec![start("a", 1, false)], None),
            (RestartPolicy::Always, 0, 1, 101, vec![start("a", 1, false)], None),
            (RestartPolicy::OnFailure, 0, 0, 101, vec![], None),
            (RestartPolicy::OnFailure, 0, 2, 101, vec![start("a", 1, false)], None),
            (RestartPolicy::Never, 0, 1, 101, vec![], None),
            (RestartPolicy::Always, 1, 1, 105, vec![], Some(6)),
            (RestartPolicy::Always, 1, 1, 111, vec![start("a", 2, false)], None),
            (RestartPolicy::Always, 2, 1, 111, vec![], Some(10)),
        ];
        for (policy, attempt, exit, now, actions, wake) in cases {
            let plan = plan(
                Some(&running(policy)),
                &with(container("c", "a", attempt, ContainerState::Exited, exit)),
                now * SECOND,
            );
            assert_eq!(plan.actions, actions, "{policy:?} attempt {attempt} exit {exit} at {now}");
            assert_eq!(plan.wake_in, wake.map(Duration::from_secs), "{policy:?} attempt {attempt} at {now}");
        }
    }

    #[test]
    fn a_restart_removes_all_but_the_newest_exited_instance() {
        let mut observed = Observed { sandboxes: vec![sandbox("s", 0, true)], containers: vec![] };
        observed.containers.push(container("old", "a", 0, ContainerState::Exited, 1));
        observed.containers.push(container("new", "a", 1, ContainerState::Exited, 1));
        let plan = plan(Some(&desired(RestartPolicy::Always, &[], &["a"])), &observed, 1000 * SECOND);
        assert_eq!(plan.actions, vec![Action::RemoveContainer { id: "old".into() }, start("a", 2, false)]);
    }

    #[test]
    fn running_containers_are_adopted_untouched() {
        let observed = Observed {
            sandboxes: vec![sandbox("s", 0, true)],
            containers: vec![container("c", "a", 0, ContainerState::Running, 0)],
        };
        assert_eq!(plan(Some(&desired(RestartPolicy::Always, &[], &["a"])), &observed, 0), Plan::default());
        let created = Observed {
            sandboxes: vec![sandbox("s", 0, true)],
            containers: vec![container("c", "a", 0, ContainerState::Created, 0)],
        };
        let plan = plan(Some(&desired(RestartPolicy::Always, &[], &["a"])), &created, 0);
        assert_eq!(plan.actions, vec![Action::StartCreated { id: "c".into() }]);
    }

    #[test]
    fn a_dead_sandbox_is_replaced_by_the_next_attempt() {
        let observed = Observed { sandboxes: vec![sandbox("old", 0, false)], containers: vec![] };
        let plan = plan(Some(&desired(RestartPolicy::Always, &[], &["a"])), &observed, 0);
        assert_eq!(
            plan.actions,
            vec![
                Action::StopSandbox { id: "old".into() },
                Action::RemoveSandbox { id: "old".into() },
                Action::RunSandbox { attempt: 1 },
                start("a", 0, false),
            ]
        );
    }

    #[test]
    fn deletion_stops_with_grace_removes_everything_and_finalizes() {
        let observed = Observed {
            sandboxes: vec![sandbox("s", 0, true)],
            containers: vec![
                container("run", "a", 0, ContainerState::Running, 0),
                container("done", "b", 0, ContainerState::Exited, 0),
            ],
        };
        let mut deleting = desired(RestartPolicy::Always, &[], &["a", "b"]);
        deleting.deleting = Some(7);
        let expected = vec![
            Action::StopContainer { id: "run".into(), grace_seconds: 7 },
            Action::StopSandbox { id: "s".into() },
            Action::RemoveSandbox { id: "s".into() },
            Action::Finalize,
        ];
        assert_eq!(plan(Some(&deleting), &observed, 0).actions, expected);
        assert_eq!(plan(Some(&deleting), &Observed::default(), 0).actions, vec![Action::Finalize]);
        // Gone from the API: removed at once, nothing to finalize.
        let orphan = plan(None, &observed, 0).actions;
        assert_eq!(orphan[0], Action::StopContainer { id: "run".into(), grace_seconds: 0 });
        assert!(!orphan.contains(&Action::Finalize));
    }
}
