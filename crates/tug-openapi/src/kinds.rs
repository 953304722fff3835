//! Which k8s-openapi Rust type describes each kind the documents may mention.
//!
//! The registry names kinds by strings; schemars needs a type. This table bridges the two, and
//! takes the group, version and kind from the type's own `Resource` constants so that an entry
//! cannot describe one kind under another's name.

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::{Resource, schemars::JsonSchema};
use schemars::{Schema, SchemaGenerator};

/// A group, version and kind, as the `x-kubernetes-group-version-kind` extension spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// One kind whose schema k8s-openapi provides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KnownKind {
    pub gvk: Gvk,
    /// Adds the kind's schema (and everything it references) to the generator's definitions and
    /// returns a `$ref` to it.
    pub reference: fn(&mut SchemaGenerator) -> Schema,
}

fn known<T: Resource + JsonSchema>() -> KnownKind {
    KnownKind {
        gvk: Gvk { group: T::GROUP, version: T::VERSION, kind: T::KIND },
        reference: SchemaGenerator::subschema_for::<T>,
    }
}

/// Every kind with a schema: the registry's kinds, the kinds their subresources take and return,
/// and a few more a future registry entry is likely to need.
pub(crate) fn known_kinds() -> Vec<KnownKind> {
    vec![
        // core/v1
        known::<api::core::v1::Namespace>(),
        known::<api::core::v1::Pod>(),
        known::<api::core::v1::Node>(),
        known::<api::core::v1::Service>(),
        known::<api::core::v1::Endpoints>(),
        known::<api::core::v1::ConfigMap>(),
        known::<api::core::v1::Secret>(),
        known::<api::core::v1::ServiceAccount>(),
        known::<api::core::v1::Event>(),
        known::<api::core::v1::PersistentVolume>(),
        known::<api::core::v1::PersistentVolumeClaim>(),
        known::<api::core::v1::ResourceQuota>(),
        known::<api::core::v1::LimitRange>(),
        known::<api::core::v1::ReplicationController>(),
        known::<api::core::v1::PodTemplate>(),
        known::<api::core::v1::Binding>(),
        known::<meta::Status>(),
        // apps/v1
        known::<api::apps::v1::Deployment>(),
        known::<api::apps::v1::ReplicaSet>(),
        known::<api::apps::v1::StatefulSet>(),
        known::<api::apps::v1::DaemonSet>(),
        known::<api::apps::v1::ControllerRevision>(),
        // batch/v1
        known::<api::batch::v1::Job>(),
        known::<api::batch::v1::CronJob>(),
        // autoscaling
        known::<api::autoscaling::v2::HorizontalPodAutoscaler>(),
        known::<api::autoscaling::v1::HorizontalPodAutoscaler>(),
        known::<api::autoscaling::v1::Scale>(),
        // the rest, one group at a time
        known::<api::coordination::v1::Lease>(),
        known::<api::discovery::v1::EndpointSlice>(),
        known::<api::events::v1::Event>(),
        known::<api::policy::v1::PodDisruptionBudget>(),
        known::<api::policy::v1::Eviction>(),
        known::<api::scheduling::v1::PriorityClass>(),
        known::<api::storage::v1::StorageClass>(),
        known::<api::storage::v1::CSIDriver>(),
        known::<api::storage::v1::CSINode>(),
        known::<api::storage::v1::VolumeAttachment>(),
        known::<api::rbac::v1::Role>(),
        known::<api::rbac::v1::ClusterRole>(),
        known::<api::rbac::v1::RoleBinding>(),
        known::<api::rbac::v1::ClusterRoleBinding>(),
        known::<api::networking::v1::Ingress>(),
        known::<api::networking::v1::IngressClass>(),
        known::<api::networking::v1::NetworkPolicy>(),
        known::<api::node::v1::RuntimeClass>(),
        known::<api::certificates::v1::CertificateSigningRequest>(),
        known::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(),
        known::<api::admissionregistration::v1::MutatingWebhookConfiguration>(),
    ]
}

/// The known kind with this group, version and kind.
pub(crate) fn find(kinds: &[KnownKind], gvk: Gvk) -> Option<KnownKind> {
    kinds.iter().copied().find(|k| k.gvk == gvk)
}

/// `DeleteOptions` and `Patch` are not resources, so they come in by name rather than by GVK.
pub(crate) fn request_body_types(generator: &mut SchemaGenerator) -> [Schema; 2] {
    [generator.subschema_for::<meta::DeleteOptions>(), generator.subschema_for::<meta::Patch>()]
}
