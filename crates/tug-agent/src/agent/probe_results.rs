//! Probe results as the pod status reads them: whether a container has started and is ready.
//! Written by the prober (`probes`), read by the status core (`status`);
//! neither needs the other.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Container;

/// The results of one container's startup and readiness probes (`None`: no result yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Results {
    pub started: Option<bool>,
    pub ready: Option<bool>,
}

/// The probe results of running containers, by container id.
pub type ProbeResults = HashMap<String, Results>;

/// Whether a container has started and is ready (`started`, `ready` of its status): a running
/// container without a startup probe has started, one without a readiness probe is ready once
/// started; otherwise their results decide.
pub fn readiness(container: &Container, running: bool, results: Option<&Results>) -> (bool, bool) {
    if !running {
        return (false, false);
    }
    let results = results.copied().unwrap_or_default();
    let started = container.startup_probe.is_none() || results.started == Some(true);
    let ready = started && (container.readiness_probe.is_none() || results.ready == Some(true));
    (started, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    #[test]
    fn readiness_follows_startup_and_readiness_results() {
        let plain = container(serde_json::json!({"name": "c"}));
        let probed = container(serde_json::json!({
            "name": "c",
            "startupProbe": {"exec": {"command": ["true"]}},
            "readinessProbe": {"exec": {"command": ["true"]}},
        }));
        let results = |started, ready| Results { started, ready };
        let cases = [
            (&plain, true, None, (true, true)),
            (&plain, false, None, (false, false)),
            (&probed, true, None, (false, false)),
            (&probed, true, Some(results(Some(true), None)), (true, false)),
            (&probed, true, Some(results(Some(true), Some(true))), (true, true)),
            (&probed, true, Some(results(Some(false), Some(true))), (false, false)),
            (&probed, false, Some(results(Some(true), Some(true))), (false, false)),
        ];
        for (container, running, results, expected) in cases {
            assert_eq!(readiness(container, running, results.as_ref()), expected, "{running} {results:?}");
        }
    }
}
