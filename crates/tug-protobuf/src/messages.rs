//! The JSON field listing of every message the supported kinds reach.
//!
//! Generated once from k8s-pb's prost structs, matching each field by protobuf tag to the Go
//! struct in k8s.io/api and k8s.io/apimachinery for its JSON name and [`Mode`](crate::json::Mode)
//! (`Ptr` = Go pointer, `Req` = no `omitempty`, `Nullable` = both, `Inline` = embedded struct,
//! none = value with `omitempty`). The destructuring in `json_messages!` is exhaustive, so a
//! k8s-pb upgrade that adds a field fails to compile until the field is listed here.

use k8s_pb::api::apps::v1 as apps_v1;
use k8s_pb::api::authentication::v1 as authentication_v1;
use k8s_pb::api::authorization::v1 as authorization_v1;
use k8s_pb::api::autoscaling::v1 as autoscaling_v1;
use k8s_pb::api::autoscaling::v2 as autoscaling_v2;
use k8s_pb::api::batch::v1 as batch_v1;
use k8s_pb::api::certificates::v1 as certificates_v1;
use k8s_pb::api::core::v1 as core_v1;
use k8s_pb::api::networking::v1 as networking_v1;
use k8s_pb::api::policy::v1 as policy_v1;
use k8s_pb::api::rbac::v1 as rbac_v1;
use k8s_pb::api::scheduling::v1 as scheduling_v1;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta_v1;

use crate::json::json_messages;

json_messages! {
    core_v1::Namespace { metadata, spec, status }
    meta_v1::ObjectMeta {
        name, generate_name, namespace, self_link, uid, resource_version, generation, creation_timestamp,
        deletion_timestamp: Ptr, deletion_grace_period_seconds: Ptr, labels, annotations, owner_references,
        finalizers, managed_fields,
    }
    meta_v1::OwnerReference {
        api_version: Req, kind: Req, name: Req, uid: Req, controller: Ptr, block_owner_deletion: Ptr,
    }
    meta_v1::ManagedFieldsEntry {
        manager, operation, api_version, time: Ptr, fields_type, fields_v1: Ptr, subresource,
    }
    core_v1::NamespaceSpec { finalizers }
    core_v1::NamespaceStatus { phase, conditions }
    core_v1::NamespaceCondition { r#type: Req, status: Req, last_transition_time, reason, message }
    core_v1::ConfigMap { metadata, immutable: Ptr, data, binary_data }
    core_v1::Secret { metadata, immutable: Ptr, data, string_data, r#type }
    core_v1::ServiceAccount { metadata, secrets, image_pull_secrets, automount_service_account_token: Ptr }
    core_v1::ObjectReference { kind, namespace, name, uid, api_version, resource_version, field_path }
    core_v1::LocalObjectReference { name }
    core_v1::Service { metadata, spec, status }
    core_v1::ServiceSpec {
        ports, selector, cluster_ip as "clusterIP", cluster_ips as "clusterIPs", r#type,
        external_ips as "externalIPs", session_affinity, load_balancer_ip as "loadBalancerIP",
        load_balancer_source_ranges, external_name, external_traffic_policy, health_check_node_port,
        publish_not_ready_addresses, session_affinity_config: Ptr, ip_families, ip_family_policy: Ptr,
        allocate_load_balancer_node_ports: Ptr, load_balancer_class: Ptr, internal_traffic_policy: Ptr,
        traffic_distribution: Ptr,
    }
    core_v1::ServicePort { name, protocol, app_protocol: Ptr, port: Req, target_port, node_port }
    core_v1::SessionAffinityConfig { client_ip as "clientIP": Ptr }
    core_v1::ClientIpConfig { timeout_seconds: Ptr }
    core_v1::ServiceStatus { load_balancer, conditions }
    core_v1::LoadBalancerStatus { ingress }
    core_v1::LoadBalancerIngress { ip, hostname, ip_mode: Ptr, ports }
    core_v1::PortStatus { port: Req, protocol: Req, error: Ptr }
    meta_v1::Condition {
        r#type: Req, status: Req, observed_generation, last_transition_time: Req, reason: Req, message: Req,
    }
    core_v1::ResourceQuota { metadata, spec, status }
    core_v1::ResourceQuotaSpec { hard, scopes, scope_selector: Ptr }
    core_v1::ScopeSelector { match_expressions }
    core_v1::ScopedResourceSelectorRequirement { scope_name: Req, operator: Req, values }
    core_v1::ResourceQuotaStatus { hard, used }
    core_v1::Pod { metadata, spec, status }
    core_v1::PodSpec {
        volumes, init_containers, containers: Req, ephemeral_containers, restart_policy,
        termination_grace_period_seconds: Ptr, active_deadline_seconds: Ptr, dns_policy, node_selector,
        service_account_name, service_account, automount_service_account_token: Ptr, node_name, host_network,
        host_pid as "hostPID", host_ipc as "hostIPC", share_process_namespace: Ptr, security_context: Ptr,
        image_pull_secrets, hostname, subdomain, affinity: Ptr, scheduler_name, tolerations, host_aliases,
        priority_class_name, priority: Ptr, dns_config: Ptr, readiness_gates, runtime_class_name: Ptr,
        enable_service_links: Ptr, preemption_policy: Ptr, overhead, topology_spread_constraints,
        set_hostname_as_fqdn as "setHostnameAsFQDN": Ptr, os: Ptr, host_users: Ptr, scheduling_gates, resource_claims,
        resources: Ptr, hostname_override: Ptr, workload_ref: Ptr,
    }
    core_v1::Volume { name: Req, volume_source: Inline }
    core_v1::VolumeSource {
        host_path: Ptr, empty_dir: Ptr, gce_persistent_disk: Ptr, aws_elastic_block_store: Ptr, git_repo: Ptr,
        secret: Ptr, nfs: Ptr, iscsi: Ptr, glusterfs: Ptr, persistent_volume_claim: Ptr, rbd: Ptr, flex_volume: Ptr,
        cinder: Ptr, cephfs: Ptr, flocker: Ptr, downward_api as "downwardAPI": Ptr, fc: Ptr, azure_file: Ptr,
        config_map: Ptr, vsphere_volume: Ptr, quobyte: Ptr, azure_disk: Ptr, photon_persistent_disk: Ptr,
        projected: Ptr, portworx_volume: Ptr, scale_io as "scaleIO": Ptr, storageos: Ptr, csi: Ptr, ephemeral: Ptr,
        image: Ptr,
    }
    core_v1::HostPathVolumeSource { path: Req, r#type: Ptr }
    core_v1::EmptyDirVolumeSource { medium, size_limit: Ptr }
    core_v1::GcePersistentDiskVolumeSource { pd_name: Req, fs_type, partition, read_only }
    core_v1::AwsElasticBlockStoreVolumeSource { volume_id as "volumeID": Req, fs_type, partition, read_only }
    core_v1::GitRepoVolumeSource { repository: Req, revision, directory }
    core_v1::SecretVolumeSource { secret_name, items, default_mode: Ptr, optional: Ptr }
    core_v1::KeyToPath { key: Req, path: Req, mode: Ptr }
    core_v1::NfsVolumeSource { server: Req, path: Req, read_only }
    core_v1::IscsiVolumeSource {
        target_portal: Req, iqn: Req, lun: Req, iscsi_interface, fs_type, read_only, portals, chap_auth_discovery,
        chap_auth_session, secret_ref: Ptr, initiator_name: Ptr,
    }
    core_v1::GlusterfsVolumeSource { endpoints: Req, path: Req, read_only }
    core_v1::PersistentVolumeClaimVolumeSource { claim_name: Req, read_only }
    core_v1::RbdVolumeSource {
        monitors: Req, image: Req, fs_type, pool, user, keyring, secret_ref: Ptr, read_only,
    }
    core_v1::FlexVolumeSource { driver: Req, fs_type, secret_ref: Ptr, read_only, options }
    core_v1::CinderVolumeSource { volume_id as "volumeID": Req, fs_type, read_only, secret_ref: Ptr }
    core_v1::CephFsVolumeSource { monitors: Req, path, user, secret_file, secret_ref: Ptr, read_only }
    core_v1::FlockerVolumeSource { dataset_name, dataset_uuid as "datasetUUID" }
    core_v1::DownwardAPIVolumeSource { items, default_mode: Ptr }
    core_v1::DownwardAPIVolumeFile { path: Req, field_ref: Ptr, resource_field_ref: Ptr, mode: Ptr }
    core_v1::ObjectFieldSelector { api_version, field_path: Req }
    core_v1::ResourceFieldSelector { container_name, resource: Req, divisor }
    core_v1::FcVolumeSource { target_ww_ns as "targetWWNs", lun: Ptr, fs_type, read_only, wwids }
    core_v1::AzureFileVolumeSource { secret_name: Req, share_name: Req, read_only }
    core_v1::ConfigMapVolumeSource { local_object_reference: Inline, items, default_mode: Ptr, optional: Ptr }
    core_v1::VsphereVirtualDiskVolumeSource {
        volume_path: Req, fs_type, storage_policy_name, storage_policy_id as "storagePolicyID",
    }
    core_v1::QuobyteVolumeSource { registry: Req, volume: Req, read_only, user, group, tenant }
    core_v1::AzureDiskVolumeSource {
        disk_name: Req, disk_uri as "diskURI": Req, caching_mode: Ptr, fs_type: Ptr, read_only: Ptr, kind: Ptr,
    }
    core_v1::PhotonPersistentDiskVolumeSource { pd_id as "pdID": Req, fs_type }
    core_v1::ProjectedVolumeSource { sources: Req, default_mode: Ptr }
    core_v1::VolumeProjection {
        secret: Ptr, downward_api as "downwardAPI": Ptr, config_map: Ptr, service_account_token: Ptr,
        cluster_trust_bundle: Ptr, pod_certificate: Ptr,
    }
    core_v1::SecretProjection { local_object_reference: Inline, items, optional: Ptr }
    core_v1::DownwardAPIProjection { items }
    core_v1::ConfigMapProjection { local_object_reference: Inline, items, optional: Ptr }
    core_v1::ServiceAccountTokenProjection { audience, expiration_seconds: Ptr, path: Req }
    core_v1::ClusterTrustBundleProjection {
        name: Ptr, signer_name: Ptr, label_selector: Ptr, optional: Ptr, path: Req,
    }
    meta_v1::LabelSelector { match_labels, match_expressions }
    meta_v1::LabelSelectorRequirement { key: Req, operator: Req, values }
    core_v1::PodCertificateProjection {
        signer_name, key_type, max_expiration_seconds: Ptr, credential_bundle_path, key_path, certificate_chain_path,
        user_annotations,
    }
    core_v1::PortworxVolumeSource { volume_id as "volumeID": Req, fs_type, read_only }
    core_v1::ScaleIoVolumeSource {
        gateway: Req, system: Req, secret_ref: Nullable, ssl_enabled, protection_domain, storage_pool, storage_mode,
        volume_name, fs_type, read_only,
    }
    core_v1::StorageOsVolumeSource { volume_name, volume_namespace, fs_type, read_only, secret_ref: Ptr }
    core_v1::CSIVolumeSource {
        driver: Req, read_only: Ptr, fs_type: Ptr, volume_attributes, node_publish_secret_ref: Ptr,
    }
    core_v1::EphemeralVolumeSource { volume_claim_template: Ptr }
    core_v1::PersistentVolumeClaimTemplate { metadata, spec: Req }
    core_v1::PersistentVolumeClaimSpec {
        access_modes, selector: Ptr, resources, volume_name, storage_class_name: Ptr, volume_mode: Ptr,
        data_source: Ptr, data_source_ref: Ptr, volume_attributes_class_name: Ptr,
    }
    core_v1::VolumeResourceRequirements { limits, requests }
    core_v1::TypedLocalObjectReference { api_group: Nullable, kind: Req, name: Req }
    core_v1::TypedObjectReference { api_group: Nullable, kind: Req, name: Req, namespace: Ptr }
    core_v1::ImageVolumeSource { reference, pull_policy }
    core_v1::Container {
        name: Req, image, command, args, working_dir, ports, env_from, env, resources, resize_policy,
        restart_policy: Ptr, restart_policy_rules, volume_mounts, volume_devices, liveness_probe: Ptr,
        readiness_probe: Ptr, startup_probe: Ptr, lifecycle: Ptr, termination_message_path,
        termination_message_policy, image_pull_policy, security_context: Ptr, stdin, stdin_once, tty,
    }
    core_v1::ContainerPort { name, host_port, container_port: Req, protocol, host_ip as "hostIP" }
    core_v1::EnvFromSource { prefix, config_map_ref: Ptr, secret_ref: Ptr }
    core_v1::ConfigMapEnvSource { local_object_reference: Inline, optional: Ptr }
    core_v1::SecretEnvSource { local_object_reference: Inline, optional: Ptr }
    core_v1::EnvVar { name: Req, value, value_from: Ptr }
    core_v1::EnvVarSource {
        field_ref: Ptr, resource_field_ref: Ptr, config_map_key_ref: Ptr, secret_key_ref: Ptr, file_key_ref: Ptr,
    }
    core_v1::ConfigMapKeySelector { local_object_reference: Inline, key: Req, optional: Ptr }
    core_v1::SecretKeySelector { local_object_reference: Inline, key: Req, optional: Ptr }
    core_v1::FileKeySelector { volume_name: Req, path: Req, key: Req, optional: Ptr }
    core_v1::ResourceRequirements { limits, requests, claims }
    core_v1::ResourceClaim { name: Req, request }
    core_v1::ContainerResizePolicy { resource_name: Req, restart_policy: Req }
    core_v1::ContainerRestartRule { action, exit_codes: Ptr }
    core_v1::ContainerRestartRuleOnExitCodes { operator, values }
    core_v1::VolumeMount {
        name: Req, read_only, recursive_read_only: Ptr, mount_path: Req, sub_path, mount_propagation: Ptr,
        sub_path_expr,
    }
    core_v1::VolumeDevice { name: Req, device_path: Req }
    core_v1::Probe {
        handler: Inline, initial_delay_seconds, timeout_seconds, period_seconds, success_threshold, failure_threshold,
        termination_grace_period_seconds: Ptr,
    }
    core_v1::ProbeHandler { exec: Ptr, http_get: Ptr, tcp_socket: Ptr, grpc: Ptr }
    core_v1::ExecAction { command }
    core_v1::HttpGetAction { path, port: Req, host, scheme, http_headers }
    core_v1::HttpHeader { name: Req, value: Req }
    core_v1::TcpSocketAction { port: Req, host }
    core_v1::GrpcAction { port: Req, service: Nullable }
    core_v1::Lifecycle { post_start: Ptr, pre_stop: Ptr, stop_signal: Ptr }
    core_v1::LifecycleHandler { exec: Ptr, http_get: Ptr, tcp_socket: Ptr, sleep: Ptr }
    core_v1::SleepAction { seconds: Req }
    core_v1::SecurityContext {
        capabilities: Ptr, privileged: Ptr, se_linux_options: Ptr, windows_options: Ptr, run_as_user: Ptr,
        run_as_group: Ptr, run_as_non_root: Ptr, read_only_root_filesystem: Ptr, allow_privilege_escalation: Ptr,
        proc_mount: Ptr, seccomp_profile: Ptr, app_armor_profile: Ptr,
    }
    core_v1::Capabilities { add, drop }
    core_v1::SeLinuxOptions { user, role, r#type, level }
    core_v1::WindowsSecurityContextOptions {
        gmsa_credential_spec_name: Ptr, gmsa_credential_spec: Ptr, run_as_user_name: Ptr, host_process: Ptr,
    }
    core_v1::SeccompProfile { r#type: Req, localhost_profile: Ptr }
    core_v1::AppArmorProfile { r#type: Req, localhost_profile: Ptr }
    core_v1::EphemeralContainer { ephemeral_container_common: Inline, target_container_name }
    core_v1::EphemeralContainerCommon {
        name: Req, image, command, args, working_dir, ports, env_from, env, resources, resize_policy,
        restart_policy: Ptr, restart_policy_rules, volume_mounts, volume_devices, liveness_probe: Ptr,
        readiness_probe: Ptr, startup_probe: Ptr, lifecycle: Ptr, termination_message_path,
        termination_message_policy, image_pull_policy, security_context: Ptr, stdin, stdin_once, tty,
    }
    core_v1::PodSecurityContext {
        se_linux_options: Ptr, windows_options: Ptr, run_as_user: Ptr, run_as_group: Ptr, run_as_non_root: Ptr,
        supplemental_groups, supplemental_groups_policy: Ptr, fs_group: Ptr, sysctls, fs_group_change_policy: Ptr,
        seccomp_profile: Ptr, app_armor_profile: Ptr, se_linux_change_policy: Ptr,
    }
    core_v1::Sysctl { name: Req, value: Req }
    core_v1::Affinity { node_affinity: Ptr, pod_affinity: Ptr, pod_anti_affinity: Ptr }
    core_v1::NodeAffinity {
        required_during_scheduling_ignored_during_execution: Ptr,
        preferred_during_scheduling_ignored_during_execution,
    }
    core_v1::NodeSelector { node_selector_terms: Req }
    core_v1::NodeSelectorTerm { match_expressions, match_fields }
    core_v1::NodeSelectorRequirement { key: Req, operator: Req, values }
    core_v1::PreferredSchedulingTerm { weight: Req, preference: Req }
    core_v1::PodAffinity {
        required_during_scheduling_ignored_during_execution, preferred_during_scheduling_ignored_during_execution,
    }
    core_v1::PodAffinityTerm {
        label_selector: Ptr, namespaces, topology_key: Req, namespace_selector: Ptr, match_label_keys,
        mismatch_label_keys,
    }
    core_v1::WeightedPodAffinityTerm { weight: Req, pod_affinity_term: Req }
    core_v1::PodAntiAffinity {
        required_during_scheduling_ignored_during_execution, preferred_during_scheduling_ignored_during_execution,
    }
    core_v1::Toleration { key, operator, value, effect, toleration_seconds: Ptr }
    core_v1::HostAlias { ip: Req, hostnames }
    core_v1::PodDnsConfig { nameservers, searches, options }
    core_v1::PodDnsConfigOption { name, value: Ptr }
    core_v1::PodReadinessGate { condition_type: Req }
    core_v1::TopologySpreadConstraint {
        max_skew: Req, topology_key: Req, when_unsatisfiable: Req, label_selector: Ptr, min_domains: Ptr,
        node_affinity_policy: Ptr, node_taints_policy: Ptr, match_label_keys,
    }
    core_v1::PodOs { name: Req }
    core_v1::PodSchedulingGate { name: Req }
    core_v1::PodResourceClaim { name: Req, resource_claim_name: Ptr, resource_claim_template_name: Ptr }
    core_v1::WorkloadReference { name: Ptr, pod_group: Ptr, pod_group_replica_key: Ptr }
    core_v1::PodStatus {
        observed_generation, phase, conditions, message, reason, nominated_node_name, host_ip as "hostIP",
        host_ips as "hostIPs", pod_ip as "podIP", pod_ips as "podIPs", start_time: Ptr, init_container_statuses,
        container_statuses, qos_class, ephemeral_container_statuses, resize, resource_claim_statuses,
        extended_resource_claim_status: Ptr, allocated_resources, resources: Ptr,
    }
    core_v1::PodCondition {
        r#type: Req, observed_generation, status: Req, last_probe_time, last_transition_time, reason, message,
    }
    core_v1::HostIp { ip: Req }
    core_v1::PodIp { ip: Req }
    core_v1::ContainerStatus {
        name: Req, state, last_state, ready: Req, restart_count: Req, image: Req, image_id as "imageID": Req,
        container_id as "containerID", started: Ptr, allocated_resources, resources: Ptr, volume_mounts, user: Ptr,
        allocated_resources_status, stop_signal: Ptr,
    }
    core_v1::ContainerState { waiting: Ptr, running: Ptr, terminated: Ptr }
    core_v1::ContainerStateWaiting { reason, message }
    core_v1::ContainerStateRunning { started_at }
    core_v1::ContainerStateTerminated {
        exit_code: Req, signal, reason, message, started_at, finished_at, container_id as "containerID",
    }
    core_v1::VolumeMountStatus { name: Req, mount_path: Req, read_only, recursive_read_only: Ptr }
    core_v1::ContainerUser { linux: Ptr }
    core_v1::LinuxContainerUser { uid: Req, gid: Req, supplemental_groups }
    core_v1::ResourceStatus { name: Req, resources }
    core_v1::ResourceHealth { resource_id as "resourceID": Req, health }
    core_v1::PodResourceClaimStatus { name: Req, resource_claim_name: Ptr }
    core_v1::PodExtendedResourceClaimStatus { request_mappings: Req, resource_claim_name: Req }
    core_v1::ContainerExtendedResourceRequest { container_name: Req, resource_name: Req, request_name: Req }
    meta_v1::DeleteOptions {
        grace_period_seconds: Ptr, preconditions: Ptr, orphan_dependents: Ptr, propagation_policy: Ptr, dry_run,
        ignore_store_read_error_with_cluster_breaking_potential: Ptr,
    }
    meta_v1::Preconditions { uid: Ptr, resource_version: Ptr }
    apps_v1::Deployment { metadata, spec, status }
    apps_v1::DeploymentSpec {
        replicas: Ptr, selector: Nullable, template: Req, strategy, min_ready_seconds, revision_history_limit: Ptr,
        paused, progress_deadline_seconds: Ptr,
    }
    core_v1::PodTemplateSpec { metadata, spec }
    apps_v1::DeploymentStrategy { r#type, rolling_update: Ptr }
    apps_v1::RollingUpdateDeployment { max_unavailable: Ptr, max_surge: Ptr }
    apps_v1::DeploymentStatus {
        observed_generation, replicas, updated_replicas, ready_replicas, available_replicas, unavailable_replicas,
        terminating_replicas: Ptr, conditions, collision_count: Ptr,
    }
    apps_v1::DeploymentCondition {
        r#type: Req, status: Req, last_update_time, last_transition_time, reason, message,
    }
    batch_v1::Job { metadata, spec, status }
    batch_v1::JobSpec {
        parallelism: Ptr, completions: Ptr, active_deadline_seconds: Ptr, pod_failure_policy: Ptr,
        success_policy: Ptr, backoff_limit: Ptr, backoff_limit_per_index: Ptr, max_failed_indexes: Ptr, selector: Ptr,
        manual_selector: Ptr, template: Req, ttl_seconds_after_finished: Ptr, completion_mode: Ptr, suspend: Ptr,
        pod_replacement_policy: Ptr, managed_by: Ptr,
    }
    batch_v1::PodFailurePolicy { rules: Req }
    batch_v1::PodFailurePolicyRule { action: Req, on_exit_codes: Ptr, on_pod_conditions }
    batch_v1::PodFailurePolicyOnExitCodesRequirement { container_name: Ptr, operator: Req, values: Req }
    batch_v1::PodFailurePolicyOnPodConditionsPattern { r#type: Req, status: Req }
    batch_v1::SuccessPolicy { rules: Req }
    batch_v1::SuccessPolicyRule { succeeded_indexes: Ptr, succeeded_count: Ptr }
    batch_v1::JobStatus {
        conditions, start_time: Ptr, completion_time: Ptr, active, succeeded, failed, terminating: Ptr,
        completed_indexes, failed_indexes: Ptr, uncounted_terminated_pods: Ptr, ready: Ptr,
    }
    batch_v1::JobCondition { r#type: Req, status: Req, last_probe_time, last_transition_time, reason, message }
    batch_v1::UncountedTerminatedPods { succeeded, failed }
    batch_v1::CronJob { metadata, spec, status }
    batch_v1::CronJobSpec {
        schedule: Req, time_zone: Ptr, starting_deadline_seconds: Ptr, concurrency_policy, suspend: Ptr,
        job_template: Req, successful_jobs_history_limit: Ptr, failed_jobs_history_limit: Ptr,
    }
    batch_v1::JobTemplateSpec { metadata, spec }
    batch_v1::CronJobStatus { active, last_schedule_time: Ptr, last_successful_time: Ptr }
    policy_v1::PodDisruptionBudget { metadata, spec, status }
    policy_v1::PodDisruptionBudgetSpec {
        min_available: Ptr, selector: Ptr, max_unavailable: Ptr, unhealthy_pod_eviction_policy: Ptr,
    }
    policy_v1::PodDisruptionBudgetStatus {
        observed_generation, disrupted_pods, disruptions_allowed: Req, current_healthy: Req, desired_healthy: Req,
        expected_pods: Req, conditions,
    }
    rbac_v1::Role { metadata, rules: Req }
    rbac_v1::PolicyRule {
        verbs: Req, api_groups, resources, resource_names, non_resource_ur_ls as "nonResourceURLs",
    }
    rbac_v1::ClusterRole { metadata, rules: Req, aggregation_rule: Ptr }
    rbac_v1::AggregationRule { cluster_role_selectors }
    rbac_v1::RoleBinding { metadata, subjects, role_ref: Req }
    rbac_v1::Subject { kind: Req, api_group, name: Req, namespace }
    rbac_v1::RoleRef { api_group: Req, kind: Req, name: Req }
    rbac_v1::ClusterRoleBinding { metadata, subjects, role_ref: Req }
    autoscaling_v1::HorizontalPodAutoscaler { metadata, spec, status }
    autoscaling_v1::HorizontalPodAutoscalerSpec {
        scale_target_ref: Req, min_replicas: Ptr, max_replicas: Req,
        target_cpu_utilization_percentage as "targetCPUUtilizationPercentage": Ptr,
    }
    autoscaling_v1::CrossVersionObjectReference { kind: Req, name: Req, api_version }
    autoscaling_v1::HorizontalPodAutoscalerStatus {
        observed_generation: Ptr, last_scale_time: Ptr, current_replicas: Req, desired_replicas: Req,
        current_cpu_utilization_percentage as "currentCPUUtilizationPercentage": Ptr,
    }
    autoscaling_v2::HorizontalPodAutoscaler { metadata, spec, status }
    autoscaling_v2::HorizontalPodAutoscalerSpec {
        scale_target_ref: Req, min_replicas: Ptr, max_replicas: Req, metrics, behavior: Ptr,
    }
    autoscaling_v2::CrossVersionObjectReference { kind: Req, name: Req, api_version }
    autoscaling_v2::MetricSpec {
        r#type: Req, object: Ptr, pods: Ptr, resource: Ptr, container_resource: Ptr, external: Ptr,
    }
    autoscaling_v2::ObjectMetricSource { described_object: Req, target: Req, metric: Req }
    autoscaling_v2::MetricTarget { r#type: Req, value: Ptr, average_value: Ptr, average_utilization: Ptr }
    autoscaling_v2::MetricIdentifier { name: Req, selector: Ptr }
    autoscaling_v2::PodsMetricSource { metric: Req, target: Req }
    autoscaling_v2::ResourceMetricSource { name: Req, target: Req }
    autoscaling_v2::ContainerResourceMetricSource { name: Req, target: Req, container: Req }
    autoscaling_v2::ExternalMetricSource { metric: Req, target: Req }
    autoscaling_v2::HorizontalPodAutoscalerBehavior { scale_up: Ptr, scale_down: Ptr }
    autoscaling_v2::HpaScalingRules {
        stabilization_window_seconds: Ptr, select_policy: Ptr, policies, tolerance: Ptr,
    }
    autoscaling_v2::HpaScalingPolicy { r#type: Req, value: Req, period_seconds: Req }
    autoscaling_v2::HorizontalPodAutoscalerStatus {
        observed_generation: Ptr, last_scale_time: Ptr, current_replicas, desired_replicas: Req, current_metrics: Req,
        conditions,
    }
    autoscaling_v2::MetricStatus {
        r#type: Req, object: Ptr, pods: Ptr, resource: Ptr, container_resource: Ptr, external: Ptr,
    }
    autoscaling_v2::ObjectMetricStatus { metric: Req, current: Req, described_object: Req }
    autoscaling_v2::MetricValueStatus { value: Ptr, average_value: Ptr, average_utilization: Ptr }
    autoscaling_v2::PodsMetricStatus { metric: Req, current: Req }
    autoscaling_v2::ResourceMetricStatus { name: Req, current: Req }
    autoscaling_v2::ContainerResourceMetricStatus { name: Req, current: Req, container: Req }
    autoscaling_v2::ExternalMetricStatus { metric: Req, current: Req }
    autoscaling_v2::HorizontalPodAutoscalerCondition {
        r#type: Req, status: Req, last_transition_time, reason, message,
    }
    authentication_v1::TokenRequest { metadata, spec: Req, status }
    authentication_v1::TokenRequestSpec {
        audiences: Req, expiration_seconds: Nullable, bound_object_ref: Nullable,
    }
    authentication_v1::BoundObjectReference { kind, api_version, name, u_id as "uid" }
    authentication_v1::TokenRequestStatus { token: Req, expiration_timestamp: Req }
    authentication_v1::SelfSubjectReview { metadata, status }
    authentication_v1::SelfSubjectReviewStatus { user_info }
    authentication_v1::UserInfo { username, uid, groups, extra }
    authorization_v1::SelfSubjectAccessReview { metadata, spec: Req, status }
    authorization_v1::SelfSubjectAccessReviewSpec { resource_attributes: Ptr, non_resource_attributes: Ptr }
    authorization_v1::ResourceAttributes {
        namespace, verb, group, version, resource, subresource, name, field_selector: Ptr, label_selector: Ptr,
    }
    authorization_v1::FieldSelectorAttributes { raw_selector, requirements }
    meta_v1::FieldSelectorRequirement { key: Req, operator: Req, values }
    authorization_v1::LabelSelectorAttributes { raw_selector, requirements }
    authorization_v1::NonResourceAttributes { path, verb }
    authorization_v1::SubjectAccessReviewStatus { allowed: Req, denied, reason, evaluation_error }
    authorization_v1::SelfSubjectRulesReview { metadata, spec: Req, status }
    authorization_v1::SelfSubjectRulesReviewSpec { namespace }
    authorization_v1::SubjectRulesReviewStatus {
        resource_rules: Req, non_resource_rules: Req, incomplete: Req, evaluation_error,
    }
    authorization_v1::ResourceRule { verbs: Req, api_groups, resources, resource_names }
    authorization_v1::NonResourceRule { verbs: Req, non_resource_ur_ls as "nonResourceURLs" }
    networking_v1::Ingress { metadata, spec, status }
    networking_v1::IngressSpec { ingress_class_name: Ptr, default_backend: Ptr, tls, rules }
    networking_v1::IngressBackend { service: Ptr, resource: Ptr }
    networking_v1::IngressServiceBackend { name: Req, port }
    networking_v1::ServiceBackendPort { name, number }
    networking_v1::IngressTls { hosts, secret_name }
    networking_v1::IngressRule { host, ingress_rule_value: Inline }
    networking_v1::IngressRuleValue { http: Ptr }
    networking_v1::HttpIngressRuleValue { paths: Req }
    networking_v1::HttpIngressPath { path, path_type: Nullable, backend: Req }
    networking_v1::IngressStatus { load_balancer }
    networking_v1::IngressLoadBalancerStatus { ingress }
    networking_v1::IngressLoadBalancerIngress { ip, hostname, ports }
    networking_v1::IngressPortStatus { port: Req, protocol: Req, error: Ptr }
    scheduling_v1::PriorityClass { metadata, value: Req, global_default, description, preemption_policy: Ptr }
    certificates_v1::CertificateSigningRequest { metadata, spec: Req, status }
    certificates_v1::CertificateSigningRequestSpec {
        request: Req, signer_name: Req, expiration_seconds: Ptr, usages, username, uid, groups, extra,
    }
    certificates_v1::CertificateSigningRequestStatus { conditions, certificate }
    certificates_v1::CertificateSigningRequestCondition {
        r#type: Req, status: Req, reason, message, last_update_time, last_transition_time,
    }
}
