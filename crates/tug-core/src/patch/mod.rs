//! The three PATCH content types Kubernetes accepts, as pure functions on JSON values:
//!
//! - `application/merge-patch+json`: RFC 7386 ([`merge_patch`]); `kubectl label`, `scale`.
//! - `application/json-patch+json`: RFC 6902 ([`json_patch`]); `kubectl rollout undo`.
//! - `application/strategic-merge-patch+json` ([`strategic_merge_patch`]); `kubectl apply`,
//!   `set image`, `edit`, `drain`. Lists merge element-wise by a per-field merge key, so it needs
//!   the patch metadata of each kind ([`schema`]), which `tug-openapi` also publishes as the
//!   documents' merge-key extensions.
//!
//! Server-side apply (`application/apply-patch+yaml`) is not here.

pub mod schema;
mod strategic;

pub use schema::list_strategy;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (not the right JSON shape, bad directive): HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// A JSON-patch `test` op failed or a path is missing: HTTP 422 in Kubernetes.
    #[error("{0}")]
    Invalid(String),
}

/// RFC 7386 JSON merge patch (application/merge-patch+json).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    ::json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch (application/json-patch+json); patch must be an array. Either every
/// operation applies or `target` is left unchanged.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_array() {
        return Err(PatchError::BadRequest(format!(
            "a JSON patch must be a list of operations, not {}",
            if patch.is_object() { "an object" } else { "a scalar" }
        )));
    }
    let operations: ::json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    ::json_patch::patch(target, &operations)
        .map_err(|e| PatchError::Invalid(format!("the JSON patch could not be applied: {e}")))
}

/// Strategic merge patch (application/strategic-merge-patch+json) for a built-in kind,
/// identified by apiVersion ("v1", "apps/v1", ...) and kind ("Deployment").
pub fn strategic_merge_patch(
    api_version: &str,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let root = schema::root_type(api_version, kind).ok_or_else(|| {
        PatchError::BadRequest(format!("strategic merge patch is not supported for {kind} in {api_version}"))
    })?;
    strategic::apply(root, original, patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"note": "hi"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "busybox:1", "env": [{"name": "S", "value": "s"}]}
                    ]}
                }
            }
        })
    }

    fn smp(kind: &str, original: &Value, patch: Value) -> Value {
        let api_version = match kind {
            "Deployment" | "StatefulSet" => "apps/v1",
            "PodDisruptionBudget" => "policy/v1",
            _ => "v1",
        };
        strategic_merge_patch(api_version, kind, original, &patch).unwrap_or_else(|e| panic!("{patch}: {e}"))
    }

    fn containers(object: &Value) -> &Value {
        &object["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn apply_changes_an_image_and_keeps_the_rest_of_the_container() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.26", "name": "nginx"}]
            }}}
        });
        let got = smp("Deployment", &deployment(), patch);
        let mut want = deployment();
        want["spec"]["replicas"] = json!(3);
        want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{}\n");
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        assert_eq!(got, want);
    }

    #[test]
    fn set_image_on_the_second_of_two_containers() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"image": "busybox:2", "name": "sidecar"}]
        }}}});
        let got = smp("Deployment", &deployment(), patch);
        assert_eq!(containers(&got)[0], containers(&deployment())[0]);
        assert_eq!(
            containers(&got)[1],
            json!({"name": "sidecar", "image": "busybox:2", "env": [{"name": "S", "value": "s"}]})
        );
    }

    #[test]
    fn apply_adding_a_container_puts_it_where_the_manifest_does() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "log"}, {"name": "sidecar"}],
            "containers": [{"image": "fluentd", "name": "log"}]
        }}}});
        let got = smp("Deployment", &deployment(), patch);
        let names: Vec<&Value> = containers(&got).as_array().unwrap().iter().map(|c| &c["name"]).collect();
        assert_eq!(names, [&json!("nginx"), &json!("log"), &json!("sidecar")]);
    }

    #[test]
    fn set_env_adds_then_deletes_a_variable_by_name() {
        let add = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "B"}], "env": [{"name": "B", "value": "2"}], "name": "nginx"}]
        }}}});
        let added = smp("Deployment", &deployment(), add);
        assert_eq!(containers(&added)[0]["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        assert_eq!(containers(&added)[0]["ports"], containers(&deployment())[0]["ports"]);

        let remove = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"$setElementOrder/env": [{"name": "B"}], "env": [{"$patch": "delete", "name": "A"}], "name": "nginx"}]
        }}}});
        let removed = smp("Deployment", &added, remove);
        assert_eq!(containers(&removed)[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(containers(&removed)[1], containers(&deployment())[1]);
    }

    #[test]
    fn apply_removing_a_container_deletes_it_by_name() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}],
            "containers": [{"$patch": "delete", "name": "nginx"}]
        }}}});
        let got = smp("Deployment", &deployment(), patch);
        assert_eq!(containers(&got), &json!([containers(&deployment())[1]]));
    }

    #[test]
    fn a_new_list_element_without_set_element_order_goes_first() {
        // kubectl patch --type strategic with a bare container list: upstream prepends.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "redis"}]}}}});
        let got = smp("Deployment", &deployment(), patch);
        let names: Vec<&Value> = containers(&got).as_array().unwrap().iter().map(|c| &c["name"]).collect();
        assert_eq!(names, [&json!("redis"), &json!("nginx"), &json!("sidecar")]);
    }

    #[test]
    fn cordon_and_uncordon_a_node() {
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
        let cordoned = smp("Node", &node, json!({"spec": {"unschedulable": true}}));
        assert_eq!(cordoned["spec"], json!({"podCIDR": "10.0.0.0/24", "unschedulable": true}));
        let uncordoned = smp("Node", &cordoned, json!({"spec": {"unschedulable": null}}));
        assert_eq!(uncordoned, node);
    }

    #[test]
    fn taints_are_replaced_whole_so_kubectl_taint_can_remove_one() {
        let node =
            json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]}});
        let got = smp("Node", &node, json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}));
        assert_eq!(got["spec"]["taints"], json!([{"key": "b", "effect": "NoSchedule"}]));
    }

    #[test]
    fn node_addresses_merge_by_type() {
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}});
        let got = smp("Node", &node, json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}));
        assert_eq!(
            got["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}])
        );
    }

    #[test]
    fn map_directives_replace_and_delete() {
        let d = deployment();
        let got = smp(
            "Deployment",
            &d,
            json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "v": "2"}}}}}),
        );
        assert_eq!(got["spec"]["template"]["metadata"]["labels"], json!({"v": "2"}));
        let got = smp("Deployment", &d, json!({"spec": {"strategy": {"$patch": "delete"}}}));
        assert_eq!(got["spec"]["strategy"], json!({}));
    }

    #[test]
    fn list_element_replace_directive_replaces_the_list() {
        let d = deployment();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}});
        let got = smp("Deployment", &d, patch);
        assert_eq!(containers(&got), &json!([{"name": "only", "image": "x"}]));
    }

    #[test]
    fn retain_keys_clears_the_other_members_of_a_union() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let got = smp("Deployment", &deployment(), patch);
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        let stray = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        let err = strategic_merge_patch("apps/v1", "Deployment", &deployment(), &stray).unwrap_err();
        assert!(matches!(err, PatchError::BadRequest(_)), "{err}");
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let pod = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
        let cases = [
            // As upstream: a new element goes before the server's, known ones keep their place.
            (json!({"metadata": {"finalizers": ["c"]}}), json!(["c", "a", "b"]).to_string()),
            (json!({"metadata": {"finalizers": ["b", "c"]}}), json!(["a", "b", "c"]).to_string()),
            (json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), json!(["b"]).to_string()),
            // kubectl apply going from [a, b] to [b, c].
            (
                json!({"metadata": {"$setElementOrder/finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
                json!(["b", "c"]).to_string(),
            ),
            (json!({"metadata": {"finalizers": null}}), "null".to_string()),
        ];
        for (patch, want) in cases {
            let got = smp("Pod", &pod, patch.clone());
            assert_eq!(got["metadata"]["finalizers"].to_string(), want, "{patch}");
        }
    }

    #[test]
    fn keyed_lists_merge_by_their_own_keys() {
        let pod = json!({
            "metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "name": "rs"}]},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}],
                                     "volumeMounts": [{"mountPath": "/data", "name": "d"}]}],
                     "volumes": [{"name": "d", "emptyDir": {}}]}
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0, "name": "web"}, {"containerPort": 81}],
                                     "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}],
                     "volumes": [{"name": "d", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}
        });
        let got = smp("Pod", &pod, patch);
        assert_eq!(
            got["metadata"]["ownerReferences"],
            json!([{"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true}])
        );
        // 80.0 in the patch is the same port as 80 (Go decodes both to float64).
        let ports = &got["spec"]["containers"][0]["ports"];
        assert_eq!((ports[0]["name"].as_str(), ports[1]["containerPort"].as_u64()), (Some("web"), Some(81)));
        assert_eq!(
            got["spec"]["containers"][0]["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
        assert_eq!(got["spec"]["volumes"], json!([{"name": "d", "hostPath": {"path": "/x"}}]));
    }

    #[test]
    fn atomic_lists_and_replace_strategy_maps_are_replaced() {
        let pod = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}]}});
        let got = smp(
            "Pod",
            &pod,
            json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}}),
        );
        assert_eq!(got["spec"]["tolerations"], json!([{"key": "c"}]));
        assert_eq!(got["spec"]["containers"][0]["envFrom"], json!([{"secretRef": {"name": "s"}}]));

        let pdb = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 1}});
        let got = smp("PodDisruptionBudget", &pdb, json!({"spec": {"selector": {"matchExpressions": []}}}));
        assert_eq!(got["spec"]["selector"], json!({"matchExpressions": []}));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}});
        let got = smp("Service", &svc, json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}));
        assert_eq!(got["spec"]["ports"], json!([{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]));
    }

    #[test]
    fn rollout_restart_and_pause() {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}});
        let got = smp("Deployment", &deployment(), patch);
        assert_eq!(
            got["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(got["spec"]["template"]["metadata"]["labels"], json!({"app": "web"}));
        let paused = smp("Deployment", &got, json!({"spec": {"paused": true}}));
        assert_eq!(smp("Deployment", &paused, json!({"spec": {"paused": null}})), got);
    }

    #[test]
    fn directives_never_reach_the_result_even_in_new_fields() {
        let d = json!({"metadata": {"name": "web"}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}],
            "securityContext": {"$patch": "replace", "runAsUser": 1}
        }}}});
        let got = smp("Deployment", &d, patch);
        assert_eq!(
            got["spec"],
            json!({"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}], "securityContext": {"runAsUser": 1}}}})
        );
    }

    #[test]
    fn controller_revision_data_is_opaque() {
        let data = json!({"spec": {"template": {"$patch": "replace", "spec": {}}}});
        let got =
            strategic_merge_patch("apps/v1", "ControllerRevision", &json!({"revision": 1}), &json!({"data": data}))
                .unwrap();
        assert_eq!(got["data"], data);
    }

    #[test]
    fn malformed_strategic_patches_are_bad_requests() {
        let cases = [
            json!([{"op": "add"}]),
            json!({"metadata": []}),
            json!({"spec": {"template": {"spec": {"containers": {"name": "nginx"}}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["nginx"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "bogus"}]}}}}),
            json!({"spec": {"$patch": "bogus"}}),
            json!({"spec": {"$frobnicate": 1}}),
            json!({"spec": {"replicas": {"a": 1}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "nginx"}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                "containers": [{"name": "nginx"}, {"name": "sidecar"}]
            }}}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        ];
        for patch in cases {
            let got = strategic_merge_patch("apps/v1", "Deployment", &deployment(), &patch);
            assert!(matches!(got, Err(PatchError::BadRequest(_))), "{patch}: {got:?}");
        }
        let unknown = strategic_merge_patch("example.com/v1", "Widget", &json!({}), &json!({}));
        assert!(matches!(unknown, Err(PatchError::BadRequest(_))));
    }

    #[test]
    fn merge_patch_sets_and_null_deletes() {
        let mut d = deployment();
        merge_patch(
            &mut d,
            &json!({"metadata": {"labels": {"tier": "fe"}, "annotations": {"note": null}}, "spec": {"replicas": 5}}),
        );
        assert_eq!(d["metadata"]["labels"], json!({"tier": "fe"}));
        assert_eq!(d["metadata"]["annotations"], json!({}));
        assert_eq!(d["spec"]["replicas"], 5);
        // Lists are replaced whole by a merge patch.
        merge_patch(&mut d, &json!({"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}));
        assert_eq!(containers(&d), &json!([{"name": "x"}]));
    }

    #[test]
    fn json_patch_operations() {
        let mut d = deployment();
        let ops = json!([
            {"op": "add", "path": "/metadata/labels", "value": {"a": "1"}},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "remove", "path": "/spec/strategy"},
            {"op": "test", "path": "/metadata/name", "value": "web"}
        ]);
        json_patch(&mut d, &ops).unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(d["spec"]["replicas"], 4);
        assert!(d["spec"].get("strategy").is_none());
    }

    #[test]
    fn failing_json_patches_are_invalid_and_change_nothing() {
        for ops in [
            json!([{"op": "replace", "path": "/spec/replicas", "value": 9}, {"op": "test", "path": "/metadata/name", "value": "other"}]),
            json!([{"op": "remove", "path": "/spec/nothing"}]),
            json!([{"op": "replace", "path": "/nothing/here", "value": 1}]),
        ] {
            let mut d = deployment();
            let err = json_patch(&mut d, &ops).unwrap_err();
            assert!(matches!(err, PatchError::Invalid(_)), "{ops}: {err}");
            assert_eq!(d, deployment(), "{ops}");
        }
        for ops in [json!({"op": "add"}), json!([{"op": "frob", "path": "/a"}]), json!([{"path": "/a"}])] {
            let err = json_patch(&mut deployment(), &ops).unwrap_err();
            assert!(matches!(err, PatchError::BadRequest(_)), "{ops}: {err}");
        }
    }

    #[test]
    fn rollout_undo_replaces_the_template_and_all_annotations() {
        let mut d = deployment();
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("3");
        let template = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.24", "resources": {}}]}});
        let ops = json!([
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "3"}}
        ]);
        json_patch(&mut d, &ops).unwrap();
        assert_eq!(d["spec"]["template"], template);
        assert_eq!(d["metadata"]["annotations"], json!({"deployment.kubernetes.io/revision": "3"}));
    }

    fn arb_patch() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            Just(json!("v")),
            Just(json!(1)),
            Just(json!({"$patch": "delete"})),
            Just(json!({"$patch": "replace", "k": "v"})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let keys = prop_oneof![
                Just("containers".to_string()),
                Just("env".to_string()),
                Just("name".to_string()),
                Just("spec".to_string()),
                Just("template".to_string()),
                Just("finalizers".to_string()),
                Just("$setElementOrder/containers".to_string()),
                Just("$deleteFromPrimitiveList/finalizers".to_string()),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn has_directive_key(value: &Value) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(k, v)| k.starts_with('$') || has_directive_key(v)),
            Value::Array(list) => list.iter().any(has_directive_key),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn strategic_patches_never_panic_nor_leak_directives(patch in arb_patch()) {
            let patch = json!({"spec": {"template": {"spec": patch}}, "metadata": {"finalizers": ["a"]}});
            if let Ok(result) = strategic_merge_patch("apps/v1", "Deployment", &deployment(), &patch) {
                prop_assert!(!has_directive_key(&result), "{}", result);
            }
        }

        #[test]
        fn an_empty_strategic_patch_changes_nothing(replicas in 0u32..10, image in "[a-z]{1,8}") {
            let mut d = deployment();
            d["spec"]["replicas"] = json!(replicas);
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            prop_assert_eq!(strategic_merge_patch("apps/v1", "Deployment", &d, &json!({})).unwrap(), d);
        }
    }
}
