//! `pods/eviction`: a delete that respects the pod's PodDisruptionBudget.

use serde_json::{Value, json};
use tug_core::registry;
use tug_core::status::ApiError;

use crate::errors::from_store;
use crate::request::{Query, ResourceRequest};
use crate::rest::{CAS_RETRIES, conflict, encode_for_storage, stored_object};
use crate::{Api, object};

impl Api {
    /// POST pods/eviction: deletes the pod unless its PodDisruptionBudget forbids it (429). An
    /// allowed eviction is first recorded in the budget's status (one fewer disruption allowed,
    /// the pod in `disruptedPods`) with a compare-and-swap, so concurrent evictions — `kubectl
    /// drain` evicts a node's pods in parallel — can never together exceed the budget.
    pub async fn evict(&self, req: &ResourceRequest, q: &Query, eviction: &Value) -> Result<(), ApiError> {
        let name = req.name.as_deref().unwrap_or_default();
        let ns = req.namespace.as_deref().unwrap_or("default");
        let current = self.current(req.rt, Some(ns), name).await?;
        let pod = stored_object(req.rt, &current)?;
        // Finished, not yet running, or already going: no budget applies (Kubernetes' rule).
        let phase = object::str_at(&pod, &["status", "phase"]);
        let exempt = matches!(phase, Some("Succeeded" | "Failed" | "Pending")) || object::is_deleting(&pod);
        if !exempt {
            self.charge_disruption_budget(ns, name, &object::labels(&pod)).await?;
        }
        let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
        self.delete(req, q, &options).await.map(|_| ())
    }

    /// Takes one allowed disruption from the budget that selects the pod, if any.
    async fn charge_disruption_budget(
        &self,
        ns: &str,
        pod_name: &str,
        pod_labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let pdb_rt = registry::by_kind("policy/v1", "PodDisruptionBudget").expect("registered");
        let (pdbs, _, _) = self.cache.list(pdb_rt.storage, &pdb_rt.prefix(Some(ns)), None, 0, &|_| true);
        let selecting: Vec<String> = pdbs
            .iter()
            .map(|p| p.value())
            .filter(|p| {
                p.pointer("/spec/selector").is_some_and(|s| crate::selectors::label_selector_matches(s, pod_labels))
            })
            .map(|p| object::name(&p).to_string())
            .collect();
        let budget = match selecting.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let refused = |message: String| {
            let mut e = ApiError::too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
            .about("policy", "poddisruptionbudgets", budget);
            e.causes = vec![tug_core::status::Cause { reason: "DisruptionBudget", field: String::new(), message }];
            e
        };
        for _ in 0..CAS_RETRIES {
            let current = self.current(pdb_rt, Some(ns), budget).await?;
            let mut pdb = stored_object(pdb_rt, &current)?;
            let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let observed = pdb.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
            if observed < generation {
                return Err(refused(format!("The disruption budget {budget} is still being processed by the server.")));
            }
            let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if allowed < 1 {
                let desired = pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                let healthy = pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                return Err(refused(format!(
                    "The disruption budget {budget} needs {desired} healthy pods and has {healthy} currently"
                )));
            }
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !pdb["status"]["disruptedPods"].is_object() {
                pdb["status"]["disruptedPods"] = json!({});
            }
            pdb["status"]["disruptedPods"][pod_name] = json!(now);
            match self.store.update(&current.key, encode_for_storage(pdb_rt, &pdb), current.mod_revision, None).await {
                Ok(_) => return Ok(()),
                Err(tug_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(conflict(pdb_rt, budget))
    }
}
