//! Protobuf bodies as kubectl 1.32 sends them, decoded into the JSON the same command sent with
//! kubectl 1.31. Messages are built the way Go's gogo-protobuf marshals them: every value field
//! is written, even when zero (`""`, `0`, `false`, empty structs), and only pointers may be absent.

use std::collections::BTreeMap;

use k8s_pb::api::{apps, authentication, authorization, autoscaling, batch, core, rbac};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{DeleteOptions, LabelSelector, ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};
use tug_protobuf::{DecodeError, decode, supports};

/// `k8s\0` + runtime.Unknown, as k8s.io/apimachinery's protobuf serializer writes it.
fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn empty() -> Option<String> {
    Some(String::new())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

/// ObjectMeta with Go's value fields all written and a zero creationTimestamp (empty message).
fn meta(name: &str, label_pairs: &[(&str, &str)]) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: text(name),
        generate_name: empty(),
        namespace: empty(),
        self_link: empty(),
        uid: empty(),
        resource_version: empty(),
        generation: Some(0),
        creation_timestamp: Some(Time::default()),
        labels: labels(label_pairs),
        ..ObjectMeta::default()
    })
}

/// A container as kubectl's generators fill it, value fields zeroed like Go does.
fn container(name: &str, image: &str, command: &[&str], ports: Vec<core::v1::ContainerPort>) -> core::v1::Container {
    core::v1::Container {
        name: text(name),
        image: text(image),
        command: command.iter().map(|word| word.to_string()).collect(),
        working_dir: empty(),
        ports,
        resources: Some(core::v1::ResourceRequirements::default()),
        termination_message_path: empty(),
        termination_message_policy: empty(),
        image_pull_policy: empty(),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..core::v1::Container::default()
    }
}

fn container_port(port: i32) -> core::v1::ContainerPort {
    core::v1::ContainerPort {
        name: empty(),
        host_port: Some(0),
        container_port: Some(port),
        protocol: empty(),
        host_ip: empty(),
    }
}

fn pod_spec(containers: Vec<core::v1::Container>, restart_policy: &str) -> Option<core::v1::PodSpec> {
    Some(core::v1::PodSpec {
        containers,
        restart_policy: text(restart_policy),
        dns_policy: empty(),
        service_account_name: empty(),
        service_account: empty(),
        node_name: empty(),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        hostname: empty(),
        subdomain: empty(),
        scheduler_name: empty(),
        priority_class_name: empty(),
        ..core::v1::PodSpec::default()
    })
}

fn template(label_pairs: &[(&str, &str)], spec: Option<core::v1::PodSpec>) -> Option<core::v1::PodTemplateSpec> {
    Some(core::v1::PodTemplateSpec { metadata: meta("", label_pairs), spec })
}

fn create_namespace() -> Vec<u8> {
    let namespace = core::v1::Namespace {
        metadata: meta("foo", &[]),
        spec: Some(core::v1::NamespaceSpec::default()),
        status: Some(core::v1::NamespaceStatus { phase: empty(), conditions: vec![] }),
    };
    envelope("v1", "Namespace", &namespace)
}

fn create_configmap() -> Vec<u8> {
    let config_map =
        core::v1::ConfigMap { metadata: meta("c", &[]), data: labels(&[("a", "b")]), ..Default::default() };
    envelope("v1", "ConfigMap", &config_map)
}

fn create_secret_generic() -> Vec<u8> {
    let secret = core::v1::Secret {
        metadata: meta("s", &[]),
        data: [("k".to_string(), b"v".to_vec())].into(),
        r#type: empty(),
        ..Default::default()
    };
    envelope("v1", "Secret", &secret)
}

fn create_deployment() -> Vec<u8> {
    let app = [("app", "web")];
    let deployment = apps::v1::Deployment {
        metadata: meta("web", &app),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(3),
            selector: Some(LabelSelector { match_labels: labels(&app), match_expressions: vec![] }),
            template: template(
                &app,
                pod_spec(vec![container("nginx", "nginx:1.27", &[], vec![container_port(80)])], ""),
            ),
            strategy: Some(apps::v1::DeploymentStrategy { r#type: empty(), rolling_update: None }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::v1::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    envelope("apps/v1", "Deployment", &deployment)
}

fn create_job() -> Vec<u8> {
    let job = batch::v1::Job {
        metadata: meta("j", &[]),
        spec: Some(batch::v1::JobSpec {
            template: template(&[], pod_spec(vec![container("j", "busybox", &["echo", "hi"], vec![])], "Never")),
            ..Default::default()
        }),
        status: Some(batch::v1::JobStatus {
            active: Some(0),
            succeeded: Some(0),
            failed: Some(0),
            completed_indexes: empty(),
            ..Default::default()
        }),
    };
    envelope("batch/v1", "Job", &job)
}

fn create_cronjob() -> Vec<u8> {
    let job_spec = batch::v1::JobSpec {
        template: template(&[], pod_spec(vec![container("c", "busybox", &["date"], vec![])], "OnFailure")),
        ..Default::default()
    };
    let cron_job = batch::v1::CronJob {
        metadata: meta("c", &[]),
        spec: Some(batch::v1::CronJobSpec {
            schedule: text("*/1 * * * *"),
            concurrency_policy: empty(),
            job_template: Some(batch::v1::JobTemplateSpec { metadata: meta("c", &[]), spec: Some(job_spec) }),
            ..Default::default()
        }),
        status: Some(batch::v1::CronJobStatus::default()),
    };
    envelope("batch/v1", "CronJob", &cron_job)
}

fn create_service_nodeport() -> Vec<u8> {
    let app = [("app", "n")];
    let service = core::v1::Service {
        metadata: meta("n", &app),
        spec: Some(core::v1::ServiceSpec {
            ports: vec![core::v1::ServicePort {
                name: text("5678-8080"),
                protocol: text("TCP"),
                app_protocol: None,
                port: Some(5678),
                target_port: Some(IntOrString { r#type: Some(0), int_val: Some(8080), str_val: empty() }),
                node_port: Some(0),
            }],
            selector: labels(&app),
            cluster_ip: empty(),
            r#type: text("NodePort"),
            session_affinity: empty(),
            load_balancer_ip: empty(),
            external_name: empty(),
            external_traffic_policy: empty(),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::v1::ServiceStatus {
            load_balancer: Some(core::v1::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    envelope("v1", "Service", &service)
}

fn create_role() -> Vec<u8> {
    let role = rbac::v1::Role {
        metadata: meta("pod-reader", &[]),
        rules: vec![rbac::v1::PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec![String::new()],
            resources: vec!["pods".into()],
            ..Default::default()
        }],
    };
    envelope("rbac.authorization.k8s.io/v1", "Role", &role)
}

fn auth_can_i_create_pods() -> Vec<u8> {
    let review = authorization::v1::SelfSubjectAccessReview {
        metadata: meta("", &[]),
        spec: Some(authorization::v1::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authorization::v1::ResourceAttributes {
                namespace: text("default"),
                verb: text("create"),
                group: empty(),
                version: empty(),
                resource: text("pods"),
                subresource: empty(),
                name: empty(),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authorization::v1::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: empty(),
            evaluation_error: empty(),
        }),
    };
    envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", &review)
}

fn auth_whoami() -> Vec<u8> {
    let review = authentication::v1::SelfSubjectReview {
        metadata: meta("", &[]),
        status: Some(authentication::v1::SelfSubjectReviewStatus {
            user_info: Some(authentication::v1::UserInfo { username: empty(), uid: empty(), ..Default::default() }),
        }),
    };
    envelope("authentication.k8s.io/v1", "SelfSubjectReview", &review)
}

fn autoscale_deployment() -> Vec<u8> {
    let hpa = autoscaling::v2::HorizontalPodAutoscaler {
        metadata: meta("web", &[]),
        spec: Some(autoscaling::v2::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(autoscaling::v2::CrossVersionObjectReference {
                kind: text("Deployment"),
                name: text("web"),
                api_version: text("apps/v1"),
            }),
            min_replicas: None,
            max_replicas: Some(5),
            metrics: vec![autoscaling::v2::MetricSpec {
                r#type: text("Resource"),
                resource: Some(autoscaling::v2::ResourceMetricSource {
                    name: text("cpu"),
                    target: Some(autoscaling::v2::MetricTarget {
                        r#type: text("Utilization"),
                        average_utilization: Some(80),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            behavior: None,
        }),
        status: Some(autoscaling::v2::HorizontalPodAutoscalerStatus {
            current_replicas: Some(0),
            desired_replicas: Some(0),
            ..Default::default()
        }),
    };
    envelope("autoscaling/v2", "HorizontalPodAutoscaler", &hpa)
}

fn create_token() -> Vec<u8> {
    let request = authentication::v1::TokenRequest {
        metadata: meta("", &[]),
        spec: Some(authentication::v1::TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: Some(authentication::v1::TokenRequestStatus {
            token: empty(),
            expiration_timestamp: Some(Time::default()),
        }),
    };
    envelope("authentication.k8s.io/v1", "TokenRequest", &request)
}

fn create_rolebinding() -> Vec<u8> {
    let binding = rbac::v1::RoleBinding {
        metadata: meta("rb", &[]),
        subjects: vec![rbac::v1::Subject {
            kind: text("User"),
            api_group: text("rbac.authorization.k8s.io"),
            name: text("alice"),
            namespace: empty(),
        }],
        role_ref: Some(rbac::v1::RoleRef {
            api_group: text("rbac.authorization.k8s.io"),
            kind: text("ClusterRole"),
            name: text("view"),
        }),
    };
    envelope("rbac.authorization.k8s.io/v1", "RoleBinding", &binding)
}

fn drain_delete_pod() -> Vec<u8> {
    envelope("v1", "DeleteOptions", &DeleteOptions::default())
}

#[test]
fn kubectl_protobuf_bodies_decode_to_the_json_kubectl_would_send() {
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "create namespace foo",
            create_namespace(),
            json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":"foo","creationTimestamp":null},
                   "spec":{},"status":{}}),
        ),
        (
            "create configmap c --from-literal=a=b",
            create_configmap(),
            json!({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","creationTimestamp":null},
                   "data":{"a":"b"}}),
        ),
        (
            "create secret generic s --from-literal=k=v",
            create_secret_generic(),
            json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","creationTimestamp":null},
                   "data":{"k":"dg=="}}),
        ),
        (
            "create deployment web --image=nginx:1.27 --replicas=3 --port=80",
            create_deployment(),
            json!({"kind":"Deployment","apiVersion":"apps/v1",
                   "metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},
                   "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
                           "template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
                                       "spec":{"containers":[{"name":"nginx","image":"nginx:1.27",
                                                              "ports":[{"containerPort":80}],"resources":{}}]}},
                           "strategy":{}},
                   "status":{}}),
        ),
        (
            "create job j --image=busybox -- echo hi",
            create_job(),
            json!({"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"j","creationTimestamp":null},
                   "spec":{"template":{"metadata":{"creationTimestamp":null},
                                       "spec":{"containers":[{"name":"j","image":"busybox","command":["echo","hi"],
                                                              "resources":{}}],
                                               "restartPolicy":"Never"}}},
                   "status":{}}),
        ),
        (
            "create cronjob c --image=busybox --schedule='*/1 * * * *' -- date",
            create_cronjob(),
            json!({"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"c","creationTimestamp":null},
                   "spec":{"schedule":"*/1 * * * *",
                           "jobTemplate":{"metadata":{"name":"c","creationTimestamp":null},
                                          "spec":{"template":{"metadata":{"creationTimestamp":null},
                                                              "spec":{"containers":[{"name":"c","image":"busybox",
                                                                                     "command":["date"],"resources":{}}],
                                                                      "restartPolicy":"OnFailure"}}}}},
                   "status":{}}),
        ),
        (
            "create service nodeport n --tcp=5678:8080",
            create_service_nodeport(),
            json!({"kind":"Service","apiVersion":"v1",
                   "metadata":{"name":"n","creationTimestamp":null,"labels":{"app":"n"}},
                   "spec":{"ports":[{"name":"5678-8080","protocol":"TCP","port":5678,"targetPort":8080}],
                           "selector":{"app":"n"},"type":"NodePort"},
                   "status":{"loadBalancer":{}}}),
        ),
        (
            "create role pod-reader --verb=get --resource=pods",
            create_role(),
            json!({"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1",
                   "metadata":{"name":"pod-reader","creationTimestamp":null},
                   "rules":[{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}]}),
        ),
        (
            "create rolebinding rb --clusterrole=view --user=alice",
            create_rolebinding(),
            json!({"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1",
                   "metadata":{"name":"rb","creationTimestamp":null},
                   "subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"alice"}],
                   "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}}),
        ),
        (
            "auth can-i create pods",
            auth_can_i_create_pods(),
            json!({"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1",
                   "metadata":{"creationTimestamp":null},
                   "spec":{"resourceAttributes":{"namespace":"default","verb":"create","resource":"pods"}},
                   "status":{"allowed":false}}),
        ),
        (
            "auth whoami",
            auth_whoami(),
            json!({"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1",
                   "metadata":{"creationTimestamp":null},"status":{"userInfo":{}}}),
        ),
        (
            "autoscale deployment web --max=5 --cpu-percent=80",
            autoscale_deployment(),
            json!({"kind":"HorizontalPodAutoscaler","apiVersion":"autoscaling/v2",
                   "metadata":{"name":"web","creationTimestamp":null},
                   "spec":{"scaleTargetRef":{"kind":"Deployment","name":"web","apiVersion":"apps/v1"},
                           "maxReplicas":5,
                           "metrics":[{"type":"Resource","resource":{"name":"cpu",
                                       "target":{"type":"Utilization","averageUtilization":80}}}]},
                   "status":{"desiredReplicas":0,"currentMetrics":null}}),
        ),
        (
            "create token default --duration=1h",
            create_token(),
            json!({"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1",
                   "metadata":{"creationTimestamp":null},
                   "spec":{"audiences":null,"expirationSeconds":3600,"boundObjectRef":null},
                   "status":{"token":"","expirationTimestamp":null}}),
        ),
        ("drain (DELETE pod without eviction)", drain_delete_pod(), json!({"kind":"DeleteOptions","apiVersion":"v1"})),
    ];
    for (command, body, expected) in cases {
        let decoded = decode(&body).unwrap_or_else(|err| panic!("kubectl {command}: {err}"));
        assert_eq!(decoded, expected, "kubectl {command}");
    }
}

#[test]
fn pointer_fields_keep_zero_values_that_value_fields_drop() {
    let deployment = apps::v1::Deployment {
        metadata: meta("zero", &[]),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    // replicas and revisionHistoryLimit are Go pointers; template is a value struct, so Go
    // writes it even when absent; selector is a pointer without omitempty.
    assert_eq!(
        decoded["spec"],
        json!({"replicas":0,"revisionHistoryLimit":0,"selector":null,"strategy":{},
               "template":{"metadata":{"creationTimestamp":null},"spec":{"containers":null}}})
    );
}

#[test]
fn pod_fields_use_kubernetes_json_names_and_types() {
    let mut pod_spec = pod_spec(vec![], "Always").unwrap();
    pod_spec.host_ipc = Some(true);
    pod_spec.set_hostname_as_fqdn = Some(true);
    pod_spec.volumes = vec![core::v1::Volume {
        name: text("cfg"),
        volume_source: Some(core::v1::VolumeSource {
            config_map: Some(core::v1::ConfigMapVolumeSource {
                local_object_reference: Some(core::v1::LocalObjectReference { name: text("settings") }),
                default_mode: Some(0o644),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }];
    let mut limits = BTreeMap::new();
    limits.insert("cpu".to_string(), k8s_pb::apimachinery::pkg::api::resource::Quantity { string: text("500m") });
    let mut web = container("web", "nginx", &[], vec![container_port(8080)]);
    web.resources = Some(core::v1::ResourceRequirements { limits, ..Default::default() });
    web.liveness_probe = Some(core::v1::Probe {
        handler: Some(core::v1::ProbeHandler {
            http_get: Some(core::v1::HttpGetAction {
                path: text("/healthz"),
                port: Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: text("http") }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    });
    pod_spec.containers = vec![web];
    let mut metadata = meta("p", &[]).unwrap();
    metadata.creation_timestamp = Some(Time { seconds: Some(1_704_164_645), nanos: Some(0) });
    let pod = core::v1::Pod {
        metadata: Some(metadata),
        spec: Some(pod_spec),
        status: Some(core::v1::PodStatus {
            pod_ip: text("10.0.0.5"),
            pod_ips: vec![core::v1::PodIp { ip: text("10.0.0.5") }],
            ..Default::default()
        }),
    };
    let decoded = decode(&envelope("v1", "Pod", &pod)).unwrap();
    assert_eq!(decoded["metadata"]["creationTimestamp"], json!("2024-01-02T03:04:05Z"));
    assert_eq!(decoded["spec"]["hostIPC"], json!(true));
    assert_eq!(decoded["spec"]["setHostnameAsFQDN"], json!(true));
    assert_eq!(decoded["spec"]["restartPolicy"], json!("Always"));
    // VolumeSource and LocalObjectReference are embedded Go structs: flattened.
    assert_eq!(decoded["spec"]["volumes"], json!([{"name":"cfg","configMap":{"name":"settings","defaultMode":420}}]));
    assert_eq!(
        decoded["spec"]["containers"][0],
        json!({"name":"web","image":"nginx","ports":[{"containerPort":8080}],
               "resources":{"limits":{"cpu":"500m"}},
               "livenessProbe":{"httpGet":{"path":"/healthz","port":"http"},"periodSeconds":10}})
    );
    assert_eq!(decoded["status"], json!({"podIP":"10.0.0.5","podIPs":[{"ip":"10.0.0.5"}]}));
}

#[test]
fn every_kind_kubectl_sends_as_protobuf_is_supported() {
    let kinds = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Service"),
        ("v1", "ResourceQuota"),
        ("v1", "Pod"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
        ("networking.k8s.io/v1", "Ingress"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    ];
    for (api_version, kind) in kinds {
        assert!(supports(api_version, kind), "{api_version} {kind}");
        // An empty raw object is valid protobuf for every kind.
        let body = [b"k8s\0".as_slice(), &unknown_without_raw(api_version, kind)].concat();
        let decoded = decode(&body).unwrap_or_else(|err| panic!("{api_version} {kind}: {err}"));
        assert_eq!((decoded["apiVersion"].as_str(), decoded["kind"].as_str()), (Some(api_version), Some(kind)));
    }
    assert!(!supports("apps/v1", "StatefulSet"));
    assert!(!supports("v2", "Namespace"));
}

fn unknown_without_raw(api_version: &str, kind: &str) -> Vec<u8> {
    Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Which DecodeError variant a rejected body must produce.
type ErrorCheck = fn(&DecodeError) -> bool;

#[test]
fn bodies_that_are_not_kubernetes_protobuf_are_rejected() {
    let namespace = create_namespace();
    let mut truncated_field = envelope("v1", "Namespace", &core::v1::Namespace::default());
    truncated_field.extend([0x12, 0x05, 0x0a]); // raw again, claiming 5 bytes, with only 1
    let no_type_meta = [b"k8s\0".as_slice(), &Unknown::default().encode_to_vec()].concat();
    let cases: Vec<(&str, Vec<u8>, ErrorCheck)> = vec![
        ("JSON body", br#"{"kind":"Namespace"}"#.to_vec(), |err| matches!(err, DecodeError::NotAnEnvelope)),
        ("wrong magic", [b"k9s\0".as_slice(), &namespace[4..]].concat(), |err| {
            matches!(err, DecodeError::NotAnEnvelope)
        }),
        ("empty body", vec![], |err| matches!(err, DecodeError::NotAnEnvelope)),
        ("garbage after magic", b"k8s\0\xff\xff\xff\xff\xff".to_vec(), |err| {
            matches!(err, DecodeError::Protobuf { .. })
        }),
        ("truncated envelope", namespace[..namespace.len() - 3].to_vec(), |err| {
            matches!(err, DecodeError::Protobuf { .. })
        }),
        ("truncated field in envelope", truncated_field, |err| matches!(err, DecodeError::Protobuf { .. })),
        ("no typeMeta", no_type_meta, |err| matches!(err, DecodeError::MissingTypeMeta)),
    ];
    for (case, body, expected) in cases {
        let err = decode(&body).expect_err(case);
        assert!(expected(&err), "{case}: {err:?}");
    }
}

#[test]
fn undecodable_object_names_its_kind() {
    let body = envelope("v1", "ConfigMap", &core::v1::ConfigMap::default());
    let mut raw_garbage = Unknown::decode(&body[4..]).unwrap();
    raw_garbage.raw = Some(vec![0x0a, 0x7f, 0x01]);
    let err = decode(&[b"k8s\0".as_slice(), &raw_garbage.encode_to_vec()].concat()).unwrap_err();
    assert!(err.to_string().contains("ConfigMap"), "{err}");
}

#[test]
fn unsupported_kind_is_named_in_the_error() {
    let body = envelope("apps/v1", "StatefulSet", &apps::v1::StatefulSet::default());
    let err = decode(&body).unwrap_err();
    assert!(matches!(&err, DecodeError::UnsupportedKind { api_version, kind }
        if api_version == "apps/v1" && kind == "StatefulSet"));
    assert_eq!(err.to_string(), "unsupported kind \"StatefulSet\" of \"apps/v1\" in a protobuf body; send it as JSON");
}
