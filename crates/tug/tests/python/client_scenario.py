"""The official Kubernetes Python client against a running Tugboat server.

Usage: client_scenario.py KUBECONFIG NAMESPACE
Prints one JSON object (the summary the Rust test asserts on) as the last line of stdout.
Any step that fails raises, so the process exits non-zero with a traceback naming the call.
"""

import json
import sys
import threading

from kubernetes import client, config, watch


def deployment(name, labels):
    container = client.V1Container(name="c", image="nginx:1.25", ports=[client.V1ContainerPort(container_port=80)])
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
    )
    spec = client.V1DeploymentSpec(
        replicas=2, selector=client.V1LabelSelector(match_labels=labels), template=template
    )
    return client.V1Deployment(metadata=client.V1ObjectMeta(name=name, labels=labels), spec=spec)


def watch_config_maps(core, namespace, resource_version, events):
    """Collects (type, name, data) from a watch starting after `resource_version`, until DELETED."""
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=resource_version, timeout_seconds=10
    ):
        obj = event["object"]
        events.append({"type": event["type"], "name": obj.metadata.name, "data": obj.data or {}})
        if event["type"] == "DELETED":
            w.stop()


def main():
    kubeconfig, namespace = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    summary = {}

    summary["namespaces"] = sorted(ns.metadata.name for ns in core.list_namespace().items)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    labels = {"app": "py"}
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-config", labels=labels), data={"k": "v1"})
    created = core.create_namespaced_config_map(namespace, cm)
    summary["configmap_created"] = created.metadata.name
    apps.create_namespaced_deployment(namespace, deployment("py-web", labels))
    # An unlabelled ConfigMap that the selector must leave out.
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other")))

    selected = core.list_namespaced_config_map(namespace, label_selector="app=py")
    summary["configmaps_selected"] = sorted(c.metadata.name for c in selected.items)
    deploys = apps.list_namespaced_deployment(namespace, label_selector="app=py")
    summary["deployments_selected"] = sorted(d.metadata.name for d in deploys.items)
    summary["deployment_replicas"] = apps.read_namespaced_deployment("py-web", namespace).spec.replicas

    # Watch from the list's resourceVersion: the server replays every change after it, so the
    # patch below is seen however late the watch request lands.
    events = []
    watcher = threading.Thread(
        target=watch_config_maps, args=(core, namespace, selected.metadata.resource_version, events)
    )
    watcher.start()
    core.patch_namespaced_config_map("py-config", namespace, {"data": {"k": "v2"}})
    core.delete_namespaced_config_map("py-config", namespace)
    watcher.join(15)
    summary["watch_events"] = events
    summary["watch_finished"] = not watcher.is_alive()

    apps.delete_namespaced_deployment("py-web", namespace)
    remaining = apps.list_namespaced_deployment(namespace).items
    summary["deployments_after_delete"] = [d.metadata.name for d in remaining]
    core.delete_namespace(namespace)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
