//! Resource amounts and Kubernetes' rule for what a pod requests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tug_k8s::quantity::parse_quantity;

/// The request the scheduler assumes for a container that sets no cpu request when it *scores*
/// nodes (Kubernetes' `DefaultMilliCPURequest`); fit checks use the real request.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Likewise for memory (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The amounts the scheduler tracks: cpu in millicores, memory and ephemeral storage in bytes,
/// and a count of pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

impl Resources {
    /// Reads a Kubernetes resource list (`requests`, `allocatable`, ...); unknown names and
    /// unparsable quantities count as zero.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            let nanos = parse_quantity(&quantity.0).unwrap_or(0).max(0);
            match name.as_str() {
                "cpu" => out.milli_cpu = nanos_to_units(nanos, 1_000_000),
                "memory" => out.memory = nanos_to_units(nanos, 1_000_000_000),
                "ephemeral-storage" => out.ephemeral_storage = nanos_to_units(nanos, 1_000_000_000),
                "pods" => out.pods = nanos_to_units(nanos, 1_000_000_000),
                _ => {}
            }
        }
        out
    }

    pub fn saturating_add(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(o.milli_cpu),
            memory: self.memory.saturating_add(o.memory),
            ephemeral_storage: self.ephemeral_storage.saturating_add(o.ephemeral_storage),
            pods: self.pods.saturating_add(o.pods),
        }
    }

    pub fn saturating_sub(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(o.milli_cpu),
            memory: self.memory.saturating_sub(o.memory),
            ephemeral_storage: self.ephemeral_storage.saturating_sub(o.ephemeral_storage),
            pods: self.pods.saturating_sub(o.pods),
        }
    }

    /// The larger amount of each resource.
    pub fn max(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(o.milli_cpu),
            memory: self.memory.max(o.memory),
            ephemeral_storage: self.ephemeral_storage.max(o.ephemeral_storage),
            pods: self.pods.max(o.pods),
        }
    }
}

/// Nano-units to whole units, rounded up as Kubernetes rounds `MilliValue`/`Value`.
fn nanos_to_units(nanos: i128, per_unit: i128) -> i64 {
    let units = nanos / per_unit + i128::from(nanos % per_unit != 0);
    i64::try_from(units).unwrap_or(i64::MAX)
}

/// A container's requests; a resource with a limit but no request requests its limit, as the
/// API server's defaulting would have set it.
fn container_requests(container: &Container) -> Resources {
    let Some(resources) = container.resources.as_ref() else { return Resources::default() };
    let requests = Resources::from_list(resources.requests.as_ref());
    let limits = Resources::from_list(resources.limits.as_ref());
    let has =
        |name: &str, list: &Option<BTreeMap<String, Quantity>>| list.as_ref().is_some_and(|l| l.contains_key(name));
    let pick = |name: &str, request: i64, limit: i64| {
        if has(name, &resources.requests) {
            request
        } else if has(name, &resources.limits) {
            limit
        } else {
            0
        }
    };
    Resources {
        milli_cpu: pick("cpu", requests.milli_cpu, limits.milli_cpu),
        memory: pick("memory", requests.memory, limits.memory),
        ephemeral_storage: pick("ephemeral-storage", requests.ephemeral_storage, limits.ephemeral_storage),
        pods: 0,
    }
}

/// The same with the scoring defaults for a missing cpu or memory request.
fn non_zero(r: Resources) -> Resources {
    Resources {
        milli_cpu: if r.milli_cpu == 0 { DEFAULT_MILLI_CPU_REQUEST } else { r.milli_cpu },
        memory: if r.memory == 0 { DEFAULT_MEMORY_REQUEST } else { r.memory },
        ..r
    }
}

/// What a pod requests, by Kubernetes' rule: the sum of its containers (sidecars, i.e. init
/// containers with `restartPolicy: Always`, included), or the largest init container plus the
/// sidecars started before it if that is more, plus the pod overhead; and one pod.
/// Returns (requests for fit, requests for scoring with defaults for missing cpu/memory).
pub fn pod_requests(spec: &PodSpec) -> (Resources, Resources) {
    let mut fit = Resources::default();
    let mut score = Resources::default();
    for container in &spec.containers {
        let r = container_requests(container);
        fit = fit.saturating_add(r);
        score = score.saturating_add(non_zero(r));
    }
    let (mut sidecars_fit, mut sidecars_score) = (Resources::default(), Resources::default());
    let (mut init_fit, mut init_score) = (Resources::default(), Resources::default());
    for container in spec.init_containers.iter().flatten() {
        let r = container_requests(container);
        let (r_fit, r_score) = (r, non_zero(r));
        if container.restart_policy.as_deref() == Some("Always") {
            fit = fit.saturating_add(r_fit);
            score = score.saturating_add(r_score);
            sidecars_fit = sidecars_fit.saturating_add(r_fit);
            sidecars_score = sidecars_score.saturating_add(r_score);
            init_fit = init_fit.max(sidecars_fit);
            init_score = init_score.max(sidecars_score);
        } else {
            init_fit = init_fit.max(r_fit.saturating_add(sidecars_fit));
            init_score = init_score.max(r_score.saturating_add(sidecars_score));
        }
    }
    let overhead = Resources::from_list(spec.overhead.as_ref());
    let one_pod = Resources { pods: 1, ..Resources::default() };
    let fit = fit.max(init_fit).saturating_add(overhead).saturating_add(one_pod);
    let score = score.max(init_score).saturating_add(overhead).saturating_add(one_pod);
    (fit, score)
}
