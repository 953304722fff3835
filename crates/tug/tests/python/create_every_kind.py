"""Creates one object of every kind the server serves through the official Python client's typed
API (`create_namespaced_daemon_set`, ...), which validates each response against the kind's
schema: a response missing a required field (a DaemonSet `status: {}` without its counters)
raises ValueError.

Usage: create_every_kind.py KUBECONFIG NAMESPACE
The served kinds come from the server's discovery, so a kind served later without an entry here
shows up as "uncovered". Prints one JSON object as the last line of stdout:
  {"created": [...], "failed": {kind: error}, "uncovered": [...], "statuses": {kind: status}}
"""

import datetime
import json
import sys

from kubernetes import client, config

c = client


def meta(name, **kw):
    return c.V1ObjectMeta(name=name, **kw)


def pod_template(labels):
    return c.V1PodTemplateSpec(
        metadata=meta(None, labels=labels),
        spec=c.V1PodSpec(containers=[c.V1Container(name="c", image="busybox:1.36")]),
    )


def job_spec(restart_policy):
    container = c.V1Container(name="c", image="busybox:1.36")
    pod = c.V1PodSpec(restart_policy=restart_policy, containers=[container])
    return c.V1JobSpec(template=c.V1PodTemplateSpec(spec=pod))


def creators(ns):
    """(group/version/plural) -> a function creating one object through the typed API."""
    core, apps, batch = c.CoreV1Api(), c.AppsV1Api(), c.BatchV1Api()
    labels = {"app": "every"}
    selector = c.V1LabelSelector(match_labels=labels)
    target = {"kind": "Deployment", "name": "py-deploy", "api_version": "apps/v1"}
    rbac = c.RbacAuthorizationV1Api()
    rule = c.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])
    subject = c.RbacV1Subject(kind="User", name="py", api_group="rbac.authorization.k8s.io")
    ref = c.V1ObjectReference(kind="Pod", name="py-pod", namespace=ns, api_version="v1")
    return {
        "v1/namespaces": lambda: core.create_namespace(c.V1Namespace(metadata=meta("py-every-ns"))),
        "v1/pods": lambda: core.create_namespaced_pod(
            ns, c.V1Pod(metadata=meta("py-pod", labels=labels), spec=pod_template(labels).spec)
        ),
        "v1/nodes": lambda: core.create_node(c.V1Node(metadata=meta("py-every-node"))),
        "v1/services": lambda: core.create_namespaced_service(
            ns, c.V1Service(metadata=meta("py-svc"), spec=c.V1ServiceSpec(selector=labels, ports=[c.V1ServicePort(port=80)]))
        ),
        "v1/endpoints": lambda: core.create_namespaced_endpoints(ns, c.V1Endpoints(metadata=meta("py-ep"))),
        "v1/configmaps": lambda: core.create_namespaced_config_map(ns, c.V1ConfigMap(metadata=meta("py-cm"), data={"k": "v"})),
        "v1/secrets": lambda: core.create_namespaced_secret(ns, c.V1Secret(metadata=meta("py-secret"), string_data={"k": "v"})),
        "v1/serviceaccounts": lambda: core.create_namespaced_service_account(ns, c.V1ServiceAccount(metadata=meta("py-sa"))),
        "v1/events": lambda: core.create_namespaced_event(
            ns, c.CoreV1Event(metadata=meta("py-event"), involved_object=ref, reason="Tested", message="created by a test")
        ),
        "v1/persistentvolumes": lambda: core.create_persistent_volume(
            c.V1PersistentVolume(
                metadata=meta("py-every-pv"),
                spec=c.V1PersistentVolumeSpec(
                    capacity={"storage": "1Gi"},
                    access_modes=["ReadWriteOnce"],
                    host_path=c.V1HostPathVolumeSource(path="/tmp/py-every-pv"),
                ),
            )
        ),
        "v1/persistentvolumeclaims": lambda: core.create_namespaced_persistent_volume_claim(
            ns,
            c.V1PersistentVolumeClaim(
                metadata=meta("py-pvc"),
                spec=c.V1PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"], resources=c.V1VolumeResourceRequirements(requests={"storage": "1Gi"})
                ),
            ),
        ),
        "v1/resourcequotas": lambda: core.create_namespaced_resource_quota(
            ns, c.V1ResourceQuota(metadata=meta("py-quota"), spec=c.V1ResourceQuotaSpec(hard={"pods": "100"}))
        ),
        "v1/limitranges": lambda: core.create_namespaced_limit_range(
            ns,
            c.V1LimitRange(
                metadata=meta("py-limits"),
                spec=c.V1LimitRangeSpec(limits=[c.V1LimitRangeItem(type="Container", default={"cpu": "100m"})]),
            ),
        ),
        "apps/v1/deployments": lambda: apps.create_namespaced_deployment(
            ns,
            c.V1Deployment(metadata=meta("py-deploy"), spec=c.V1DeploymentSpec(selector=selector, template=pod_template(labels))),
        ),
        "apps/v1/replicasets": lambda: apps.create_namespaced_replica_set(
            ns,
            c.V1ReplicaSet(metadata=meta("py-rs"), spec=c.V1ReplicaSetSpec(selector=selector, template=pod_template(labels))),
        ),
        "apps/v1/statefulsets": lambda: apps.create_namespaced_stateful_set(
            ns,
            c.V1StatefulSet(
                metadata=meta("py-sts"),
                spec=c.V1StatefulSetSpec(service_name="py-svc", selector=selector, template=pod_template(labels)),
            ),
        ),
        "apps/v1/daemonsets": lambda: apps.create_namespaced_daemon_set(
            ns,
            c.V1DaemonSet(metadata=meta("py-ds"), spec=c.V1DaemonSetSpec(selector=selector, template=pod_template(labels))),
        ),
        "apps/v1/controllerrevisions": lambda: apps.create_namespaced_controller_revision(
            ns, c.V1ControllerRevision(metadata=meta("py-rev"), revision=1, data={})
        ),
        "batch/v1/jobs": lambda: batch.create_namespaced_job(ns, c.V1Job(metadata=meta("py-job"), spec=job_spec("Never"))),
        "batch/v1/cronjobs": lambda: batch.create_namespaced_cron_job(
            ns,
            c.V1CronJob(
                metadata=meta("py-cron"),
                spec=c.V1CronJobSpec(
                    schedule="*/5 * * * *", job_template=c.V1JobTemplateSpec(spec=job_spec("OnFailure"))
                ),
            ),
        ),
        "autoscaling/v1/horizontalpodautoscalers": lambda: c.AutoscalingV1Api().create_namespaced_horizontal_pod_autoscaler(
            ns,
            c.V1HorizontalPodAutoscaler(
                metadata=meta("py-hpa-v1"),
                spec=c.V1HorizontalPodAutoscalerSpec(
                    max_replicas=3, scale_target_ref=c.V1CrossVersionObjectReference(**target)
                ),
            ),
        ),
        "autoscaling/v2/horizontalpodautoscalers": lambda: c.AutoscalingV2Api().create_namespaced_horizontal_pod_autoscaler(
            ns,
            c.V2HorizontalPodAutoscaler(
                metadata=meta("py-hpa-v2"),
                spec=c.V2HorizontalPodAutoscalerSpec(
                    max_replicas=3, scale_target_ref=c.V2CrossVersionObjectReference(**target)
                ),
            ),
        ),
        "coordination.k8s.io/v1/leases": lambda: c.CoordinationV1Api().create_namespaced_lease(
            ns, c.V1Lease(metadata=meta("py-lease"), spec=c.V1LeaseSpec(holder_identity="py"))
        ),
        "discovery.k8s.io/v1/endpointslices": lambda: c.DiscoveryV1Api().create_namespaced_endpoint_slice(
            ns,
            c.V1EndpointSlice(
                metadata=meta("py-slice"), address_type="IPv4", endpoints=[c.V1Endpoint(addresses=["10.0.0.1"])]
            ),
        ),
        "events.k8s.io/v1/events": lambda: c.EventsV1Api().create_namespaced_event(
            ns,
            c.EventsV1Event(
                metadata=meta("py-event-v1"),
                event_time=datetime.datetime.now(datetime.timezone.utc),
                reporting_controller="tugboat.dev/python-test",
                reporting_instance="py",
                action="Testing",
                reason="Tested",
                type="Normal",
                note="created by a test",
                regarding=ref,
            ),
        ),
        "policy/v1/poddisruptionbudgets": lambda: c.PolicyV1Api().create_namespaced_pod_disruption_budget(
            ns,
            c.V1PodDisruptionBudget(
                metadata=meta("py-pdb"), spec=c.V1PodDisruptionBudgetSpec(min_available=1, selector=selector)
            ),
        ),
        "scheduling.k8s.io/v1/priorityclasses": lambda: c.SchedulingV1Api().create_priority_class(
            c.V1PriorityClass(metadata=meta("py-every-priority"), value=1000)
        ),
        "storage.k8s.io/v1/storageclasses": lambda: c.StorageV1Api().create_storage_class(
            c.V1StorageClass(metadata=meta("py-every-class"), provisioner="example.com/none")
        ),
        "rbac.authorization.k8s.io/v1/roles": lambda: rbac.create_namespaced_role(
            ns, c.V1Role(metadata=meta("py-role"), rules=[rule])
        ),
        "rbac.authorization.k8s.io/v1/clusterroles": lambda: rbac.create_cluster_role(
            c.V1ClusterRole(metadata=meta("py-every-role"), rules=[rule])
        ),
        "rbac.authorization.k8s.io/v1/rolebindings": lambda: rbac.create_namespaced_role_binding(
            ns,
            c.V1RoleBinding(
                metadata=meta("py-binding"),
                role_ref=c.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="py-role"),
                subjects=[subject],
            ),
        ),
        "rbac.authorization.k8s.io/v1/clusterrolebindings": lambda: rbac.create_cluster_role_binding(
            c.V1ClusterRoleBinding(
                metadata=meta("py-every-binding"),
                role_ref=c.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="py-every-role"),
                subjects=[subject],
            )
        ),
        "authorization.k8s.io/v1/selfsubjectaccessreviews": lambda: c.AuthorizationV1Api().create_self_subject_access_review(
            c.V1SelfSubjectAccessReview(
                spec=c.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=c.V1ResourceAttributes(namespace=ns, verb="get", resource="pods")
                )
            )
        ),
        "authorization.k8s.io/v1/selfsubjectrulesreviews": lambda: c.AuthorizationV1Api().create_self_subject_rules_review(
            c.V1SelfSubjectRulesReview(spec=c.V1SelfSubjectRulesReviewSpec(namespace=ns))
        ),
        "authentication.k8s.io/v1/selfsubjectreviews": lambda: c.AuthenticationV1Api().create_self_subject_review(
            c.V1SelfSubjectReview()
        ),
    }


def api_class(group_version):
    """The client's class for a group-version: rbac.authorization.k8s.io/v1 -> RbacAuthorizationV1Api."""
    group, version = group_version.rsplit("/", 1) if "/" in group_version else ("core", group_version)
    words = group.removesuffix(".k8s.io").split(".")
    return getattr(c, "".join(w.capitalize() for w in words) + version.capitalize() + "Api", None)


def served():
    """Every creatable resource (no subresources) the server lists in legacy discovery."""
    group_versions = ["v1"] + [v.group_version for g in c.ApisApi().get_api_versions().groups for v in g.versions]
    out = []
    for gv in group_versions:
        cls = api_class(gv)
        if cls is None:
            out.append(f"{gv}/* (no client class)")
            continue
        resources = cls().get_api_resources().resources
        out += [f"{gv}/{r.name}" for r in resources if "/" not in r.name and "create" in r.verbs]
    return out


def main():
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    api_client = client.ApiClient()
    client.CoreV1Api().create_namespace(c.V1Namespace(metadata=meta(ns)))
    table = creators(ns)
    summary = {"created": [], "failed": {}, "uncovered": [], "statuses": {}}
    for key in served():
        create = table.get(key)
        if create is None:
            summary["uncovered"].append(key)
            continue
        try:
            created = create()
        except Exception as e:  # the point: any failure, typed-model validation included, is reported
            summary["failed"][key] = f"{type(e).__name__}: {e}"
            continue
        summary["created"].append(key)
        status = getattr(created, "status", None)
        if status is not None:
            summary["statuses"][key] = api_client.sanitize_for_serialization(status)
    print(json.dumps(summary, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
