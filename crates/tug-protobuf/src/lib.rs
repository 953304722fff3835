//! Kubernetes protobuf request bodies decoded into the JSON objects they encode.
//!
//! kubectl 1.32+ sends `Content-Type: application/vnd.kubernetes.protobuf` bodies from its typed
//! clients (`create namespace|deployment|…`, `auth can-i`, drain's DELETE, …) with no JSON
//! fallback. Such a body is the magic `k8s\0` followed by a `runtime.Unknown` whose `typeMeta`
//! names the kind and whose `raw` holds the object's own protobuf encoding. [`decode`] turns it
//! into the JSON the same command would have sent, so the server proceeds as for JSON.
//!
//! The prost structs come from k8s-pb; `messages` lists their JSON names and Go marshalling modes,
//! `json` renders them. No IO.

mod json;
mod messages;

use k8s_pb::api::{
    apps, authentication, authorization, autoscaling, batch, certificates, core, networking, policy, rbac, scheduling,
};
use k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::Value;

use crate::json::ToJson;

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Kubernetes protobuf body: it does not start with the magic bytes \"k8s\\0\"")]
    NotAnEnvelope,
    #[error("undecodable protobuf in {what}: {source}")]
    Protobuf {
        what: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the protobuf envelope carries no typeMeta (apiVersion and kind)")]
    MissingTypeMeta,
    #[error("unsupported kind \"{kind}\" of \"{api_version}\" in a protobuf body; send it as JSON")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("invalid {what} in a protobuf body: {reason}")]
    InvalidValue { what: &'static str, reason: String },
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + runtime.Unknown{typeMeta, raw, ...}) into the
/// JSON object it encodes, with apiVersion and kind set from typeMeta.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(DecodeError::NotAnEnvelope)?;
    let unknown = Unknown::decode(envelope)
        .map_err(|source| DecodeError::Protobuf { what: "the runtime.Unknown envelope".into(), source })?;
    let type_meta = unknown.type_meta.ok_or(DecodeError::MissingTypeMeta)?;
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta);
    }
    let Some(decoder) = decoder_for(&api_version, &kind) else {
        return Err(DecodeError::UnsupportedKind { api_version, kind });
    };
    let mut object = decoder(unknown.raw.as_deref().unwrap_or_default(), &kind)?;
    if let Value::Object(fields) = &mut object {
        fields.insert("apiVersion".into(), Value::String(api_version));
        fields.insert("kind".into(), Value::String(kind));
    }
    Ok(object)
}

/// True when `decode` supports this apiVersion/kind.
pub fn supports(api_version: &str, kind: &str) -> bool {
    decoder_for(api_version, kind).is_some()
}

/// Decodes `raw` as one kind's protobuf message and renders it; `kind` names it in errors.
type Decoder = fn(&[u8], &str) -> Result<Value, DecodeError>;

fn decode_as<M: Message + ToJson>(raw: &[u8], kind: &str) -> Result<Value, DecodeError> {
    let message = M::decode(raw).map_err(|source| DecodeError::Protobuf { what: format!("the {kind}"), source })?;
    message.to_json()
}

/// The kinds kubectl sends as protobuf, plus Pod (its template is needed anyway).
const KINDS: &[(&str, &str, Decoder)] = &[
    ("v1", "Namespace", decode_as::<core::v1::Namespace>),
    ("v1", "ConfigMap", decode_as::<core::v1::ConfigMap>),
    ("v1", "Secret", decode_as::<core::v1::Secret>),
    ("v1", "ServiceAccount", decode_as::<core::v1::ServiceAccount>),
    ("v1", "Service", decode_as::<core::v1::Service>),
    ("v1", "ResourceQuota", decode_as::<core::v1::ResourceQuota>),
    ("v1", "Pod", decode_as::<core::v1::Pod>),
    ("apps/v1", "Deployment", decode_as::<apps::v1::Deployment>),
    ("batch/v1", "Job", decode_as::<batch::v1::Job>),
    ("batch/v1", "CronJob", decode_as::<batch::v1::CronJob>),
    ("policy/v1", "PodDisruptionBudget", decode_as::<policy::v1::PodDisruptionBudget>),
    ("rbac.authorization.k8s.io/v1", "Role", decode_as::<rbac::v1::Role>),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", decode_as::<rbac::v1::ClusterRole>),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", decode_as::<rbac::v1::RoleBinding>),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", decode_as::<rbac::v1::ClusterRoleBinding>),
    ("autoscaling/v1", "HorizontalPodAutoscaler", decode_as::<autoscaling::v1::HorizontalPodAutoscaler>),
    ("autoscaling/v2", "HorizontalPodAutoscaler", decode_as::<autoscaling::v2::HorizontalPodAutoscaler>),
    ("authentication.k8s.io/v1", "TokenRequest", decode_as::<authentication::v1::TokenRequest>),
    ("authentication.k8s.io/v1", "SelfSubjectReview", decode_as::<authentication::v1::SelfSubjectReview>),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", decode_as::<authorization::v1::SelfSubjectAccessReview>),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", decode_as::<authorization::v1::SelfSubjectRulesReview>),
    // Also from typed clients: `create ingress`, `create priorityclass`, `certificate approve|deny`.
    ("networking.k8s.io/v1", "Ingress", decode_as::<networking::v1::Ingress>),
    ("scheduling.k8s.io/v1", "PriorityClass", decode_as::<scheduling::v1::PriorityClass>),
    ("certificates.k8s.io/v1", "CertificateSigningRequest", decode_as::<certificates::v1::CertificateSigningRequest>),
];

fn decoder_for(api_version: &str, kind: &str) -> Option<Decoder> {
    // Go registers DeleteOptions in every group version, so a DELETE body carries the
    // apiVersion of the resource's group (drain on pods sends "v1").
    if kind == "DeleteOptions" && !api_version.is_empty() {
        return Some(decode_as::<DeleteOptions>);
    }
    KINDS.iter().find(|(version, name, _)| *version == api_version && *name == kind).map(|(_, _, decoder)| *decoder)
}
