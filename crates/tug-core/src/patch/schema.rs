//! Patch metadata of the built-in kinds: which fields are lists that merge element-wise (and by
//! which key), which are sets of scalars, and which maps carry a patch strategy.
//!
//! Kubernetes reads this from Go struct tags (`patchStrategy`, `patchMergeKey`); here it is a
//! small hand-written type graph: type name -> fields -> child type. Only the fields that matter
//! for patching (or that lead to one that does) are listed; an unlisted field merges like a plain
//! JSON value (maps recursively, lists atomically), which is what an untagged Go field does.
//!
//! This is the one table of patch metadata: `tug-openapi` publishes it as the
//! `x-kubernetes-patch-*` and `x-kubernetes-list-*` extensions that `kubectl apply` reads, by
//! walking these types alongside the OpenAPI definitions. A fact the documents need goes here.

/// How a field's value is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A nested object: merged key by key.
    Object,
    /// A nested object tagged `patchStrategy:"replace"`: the patch value replaces it whole.
    ReplacedObject,
    /// A nested object tagged `patchStrategy:"retainKeys"` (a union such as a deployment strategy).
    RetainKeysObject,
    /// A list without a patch strategy: the patch value replaces it whole.
    AtomicList,
    /// A list tagged `patchStrategy:"merge"`: objects merged by the key, or a set of scalars if no key.
    MergeList(Option<&'static str>),
    /// A list of objects tagged `patchStrategy:"merge,retainKeys"` (volumes, resource claims).
    MergeRetainKeysList(&'static str),
    /// Free-form content (a `RawExtension`): replaced verbatim, directives inside are data.
    Opaque,
}

/// One field of a [`TypeDef`].
#[derive(Debug)]
pub struct Field {
    /// The JSON name.
    pub name: &'static str,
    /// The named type of the value (of each element, for lists); "" when not modelled.
    pub ty: &'static str,
    pub kind: FieldKind,
    /// The keys of a list Kubernetes declares `+listType=map` (server-side apply's element
    /// identity, the OpenAPI `x-kubernetes-list-map-keys`); empty otherwise. Strategic merge patch
    /// itself merges by the single merge key, the first of these.
    pub map_keys: &'static [&'static str],
}

impl Field {
    /// The upstream `x-kubernetes-patch-merge-key`, if any.
    pub fn merge_key(&self) -> Option<&'static str> {
        match self.kind {
            FieldKind::MergeList(key) => key,
            FieldKind::MergeRetainKeysList(key) => Some(key),
            _ => None,
        }
    }

    /// The upstream `x-kubernetes-patch-strategy`, if any.
    pub fn patch_strategy(&self) -> Option<&'static str> {
        match self.kind {
            FieldKind::MergeList(_) => Some("merge"),
            FieldKind::MergeRetainKeysList(_) => Some("merge,retainKeys"),
            FieldKind::RetainKeysObject => Some("retainKeys"),
            FieldKind::ReplacedObject => Some("replace"),
            FieldKind::Object | FieldKind::AtomicList | FieldKind::Opaque => None,
        }
    }

    /// The upstream `x-kubernetes-list-type` of a list with a patch strategy: `map` when it has
    /// map keys, `set` for a merged list of scalars. `None` otherwise (atomic or not declared).
    pub fn list_type(&self) -> Option<&'static str> {
        match self.kind {
            _ if !self.map_keys.is_empty() => Some("map"),
            FieldKind::MergeList(None) => Some("set"),
            _ => None,
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self.kind, FieldKind::AtomicList | FieldKind::MergeList(_) | FieldKind::MergeRetainKeysList(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self.kind, FieldKind::Object | FieldKind::ReplacedObject | FieldKind::RetainKeysObject)
    }
}

/// A named object type and its patch-relevant fields.
#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl TypeDef {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The type of this field's value (or elements), if it is modelled.
    pub fn child(&self, name: &str) -> Option<&'static TypeDef> {
        self.field(name).and_then(|f| type_named(f.ty))
    }
}

const fn field(name: &'static str, ty: &'static str, kind: FieldKind) -> Field {
    Field { name, ty, kind, map_keys: &[] }
}
const fn obj(name: &'static str, ty: &'static str) -> Field {
    field(name, ty, FieldKind::Object)
}
const fn replaced(name: &'static str, ty: &'static str) -> Field {
    field(name, ty, FieldKind::ReplacedObject)
}
const fn retain_keys(name: &'static str, ty: &'static str) -> Field {
    field(name, ty, FieldKind::RetainKeysObject)
}
const fn atomic(name: &'static str, ty: &'static str) -> Field {
    field(name, ty, FieldKind::AtomicList)
}
/// Merged by `key` for strategic merge patch, yet `+listType=atomic` upstream (no map keys).
const fn keyed(name: &'static str, ty: &'static str, key: &'static str) -> Field {
    field(name, ty, FieldKind::MergeList(Some(key)))
}
/// `patchStrategy:"merge"` by the first of `keys`, `+listType=map` by all of them.
const fn keyed_map(name: &'static str, ty: &'static str, keys: &'static [&'static str]) -> Field {
    Field { name, ty, kind: FieldKind::MergeList(Some(keys[0])), map_keys: keys }
}
/// `patchStrategy:"merge,retainKeys"` by the first of `keys`, `+listType=map` by all of them.
const fn keyed_retain(name: &'static str, ty: &'static str, keys: &'static [&'static str]) -> Field {
    Field { name, ty, kind: FieldKind::MergeRetainKeysList(keys[0]), map_keys: keys }
}
/// A merged list of scalars, `+listType=set`.
const fn set(name: &'static str) -> Field {
    field(name, "", FieldKind::MergeList(None))
}
const fn opaque(name: &'static str) -> Field {
    field(name, "", FieldKind::Opaque)
}

const META: Field = obj("metadata", "ObjectMeta");
const CONDITIONS: Field = keyed_map("conditions", "", &["type"]);

static TYPES: &[TypeDef] = &[
    // Shared building blocks.
    TypeDef {
        name: "ObjectMeta",
        fields: &[keyed_map("ownerReferences", "", &["uid"]), set("finalizers"), atomic("managedFields", "")],
    },
    TypeDef { name: "MetaOnly", fields: &[META] },
    // Status objects whose only tagged list is `conditions`, merged by `type`.
    TypeDef { name: "ConditionsStatus", fields: &[CONDITIONS] },
    TypeDef { name: "PodTemplateSpec", fields: &[META, obj("spec", "PodSpec")] },
    TypeDef {
        name: "PodSpec",
        fields: &[
            keyed_retain("volumes", "", &["name"]),
            keyed_map("initContainers", "Container", &["name"]),
            keyed_map("containers", "Container", &["name"]),
            // EphemeralContainer has the Container fields that matter here.
            keyed_map("ephemeralContainers", "Container", &["name"]),
            keyed_map("imagePullSecrets", "", &["name"]),
            keyed_map("hostAliases", "", &["ip"]),
            atomic("tolerations", ""),
            keyed_map("topologySpreadConstraints", "", &["topologyKey", "whenUnsatisfiable"]),
            keyed_retain("resourceClaims", "", &["name"]),
            keyed_map("schedulingGates", "", &["name"]),
            atomic("readinessGates", ""),
        ],
    },
    TypeDef {
        name: "Container",
        fields: &[
            keyed_map("ports", "", &["containerPort", "protocol"]),
            keyed_map("env", "", &["name"]),
            atomic("envFrom", ""),
            keyed_map("volumeMounts", "", &["mountPath"]),
            keyed_map("volumeDevices", "", &["devicePath"]),
            atomic("resizePolicy", ""),
        ],
    },
    // core/v1
    TypeDef { name: "Pod", fields: &[META, obj("spec", "PodSpec"), obj("status", "PodStatus")] },
    TypeDef {
        name: "PodStatus",
        fields: &[
            CONDITIONS,
            keyed_map("podIPs", "", &["ip"]),
            keyed("hostIPs", "", "ip"),
            atomic("containerStatuses", ""),
            atomic("initContainerStatuses", ""),
            atomic("ephemeralContainerStatuses", ""),
            keyed_retain("resourceClaimStatuses", "", &["name"]),
        ],
    },
    TypeDef { name: "Node", fields: &[META, obj("spec", "NodeSpec"), obj("status", "NodeStatus")] },
    // Taints carry no patch strategy upstream: `kubectl taint` sends the whole list.
    TypeDef { name: "NodeSpec", fields: &[set("podCIDRs"), atomic("taints", "")] },
    TypeDef {
        name: "NodeStatus",
        fields: &[
            CONDITIONS,
            keyed_map("addresses", "", &["type"]),
            atomic("images", ""),
            atomic("volumesInUse", ""),
            atomic("volumesAttached", ""),
        ],
    },
    TypeDef { name: "Service", fields: &[META, obj("spec", "ServiceSpec"), obj("status", "ConditionsStatus")] },
    TypeDef {
        name: "ServiceSpec",
        fields: &[
            keyed_map("ports", "", &["port", "protocol"]),
            atomic("clusterIPs", ""),
            atomic("externalIPs", ""),
            atomic("ipFamilies", ""),
        ],
    },
    TypeDef { name: "Endpoints", fields: &[META, atomic("subsets", "")] },
    TypeDef {
        name: "ServiceAccount",
        fields: &[META, keyed_map("secrets", "", &["name"]), atomic("imagePullSecrets", "")],
    },
    TypeDef { name: "PersistentVolume", fields: &[META, obj("spec", "PersistentVolumeSpec")] },
    TypeDef { name: "PersistentVolumeSpec", fields: &[atomic("accessModes", ""), atomic("mountOptions", "")] },
    TypeDef {
        name: "PersistentVolumeClaim",
        fields: &[META, obj("spec", "PersistentVolumeClaimSpec"), obj("status", "ConditionsStatus")],
    },
    TypeDef { name: "PersistentVolumeClaimSpec", fields: &[atomic("accessModes", "")] },
    TypeDef { name: "ResourceQuota", fields: &[META, obj("spec", "ResourceQuotaSpec")] },
    TypeDef { name: "ResourceQuotaSpec", fields: &[atomic("scopes", "")] },
    TypeDef { name: "LimitRange", fields: &[META, obj("spec", "LimitRangeSpec")] },
    TypeDef { name: "LimitRangeSpec", fields: &[atomic("limits", "")] },
    TypeDef { name: "Namespace", fields: &[META, obj("spec", "NamespaceSpec"), obj("status", "ConditionsStatus")] },
    TypeDef { name: "NamespaceSpec", fields: &[atomic("finalizers", "")] },
    // apps/v1
    TypeDef { name: "Deployment", fields: &[META, obj("spec", "DeploymentSpec"), obj("status", "ConditionsStatus")] },
    TypeDef { name: "DeploymentSpec", fields: &[obj("template", "PodTemplateSpec"), retain_keys("strategy", "")] },
    // ReplicaSet and DaemonSet specs: only the pod template matters.
    TypeDef {
        name: "TemplatedWorkload",
        fields: &[META, obj("spec", "TemplatedSpec"), obj("status", "ConditionsStatus")],
    },
    TypeDef { name: "TemplatedSpec", fields: &[obj("template", "PodTemplateSpec")] },
    TypeDef { name: "StatefulSet", fields: &[META, obj("spec", "StatefulSetSpec"), obj("status", "ConditionsStatus")] },
    TypeDef {
        name: "StatefulSetSpec",
        fields: &[obj("template", "PodTemplateSpec"), atomic("volumeClaimTemplates", "PersistentVolumeClaim")],
    },
    TypeDef { name: "ControllerRevision", fields: &[META, opaque("data")] },
    // batch/v1
    TypeDef { name: "Job", fields: &[META, obj("spec", "TemplatedSpec"), obj("status", "JobStatus")] },
    // Merged by type, but `+listType=atomic` upstream, unlike every other conditions list.
    TypeDef { name: "JobStatus", fields: &[keyed("conditions", "", "type")] },
    TypeDef { name: "CronJob", fields: &[META, obj("spec", "CronJobSpec"), obj("status", "CronJobStatus")] },
    TypeDef { name: "CronJobSpec", fields: &[obj("jobTemplate", "JobTemplateSpec")] },
    TypeDef { name: "JobTemplateSpec", fields: &[META, obj("spec", "TemplatedSpec")] },
    TypeDef { name: "CronJobStatus", fields: &[atomic("active", "")] },
    // autoscaling
    TypeDef {
        name: "HorizontalPodAutoscalerV2",
        fields: &[META, obj("spec", "HorizontalPodAutoscalerSpecV2"), obj("status", "HorizontalPodAutoscalerStatusV2")],
    },
    TypeDef { name: "HorizontalPodAutoscalerSpecV2", fields: &[atomic("metrics", "")] },
    TypeDef { name: "HorizontalPodAutoscalerStatusV2", fields: &[CONDITIONS, atomic("currentMetrics", "")] },
    // discovery, policy, storage, rbac
    TypeDef { name: "EndpointSlice", fields: &[META, atomic("endpoints", ""), atomic("ports", "")] },
    TypeDef {
        name: "PodDisruptionBudget",
        fields: &[META, obj("spec", "PodDisruptionBudgetSpec"), obj("status", "ConditionsStatus")],
    },
    TypeDef { name: "PodDisruptionBudgetSpec", fields: &[replaced("selector", "")] },
    TypeDef { name: "StorageClass", fields: &[META, atomic("mountOptions", ""), atomic("allowedTopologies", "")] },
    TypeDef { name: "Role", fields: &[META, atomic("rules", "")] },
    TypeDef { name: "ClusterRole", fields: &[META, atomic("rules", ""), obj("aggregationRule", "AggregationRule")] },
    TypeDef { name: "AggregationRule", fields: &[atomic("clusterRoleSelectors", "")] },
    TypeDef { name: "RoleBinding", fields: &[META, atomic("subjects", "")] },
];

/// (apiVersion, kind) -> root type. Every kind in the registry must appear here.
static KINDS: &[(&str, &str, &str)] = &[
    ("v1", "Pod", "Pod"),
    ("v1", "Node", "Node"),
    ("v1", "Service", "Service"),
    ("v1", "Endpoints", "Endpoints"),
    ("v1", "ConfigMap", "MetaOnly"),
    ("v1", "Secret", "MetaOnly"),
    ("v1", "ServiceAccount", "ServiceAccount"),
    ("v1", "Event", "MetaOnly"),
    ("v1", "PersistentVolume", "PersistentVolume"),
    ("v1", "PersistentVolumeClaim", "PersistentVolumeClaim"),
    ("v1", "ResourceQuota", "ResourceQuota"),
    ("v1", "LimitRange", "LimitRange"),
    ("v1", "Namespace", "Namespace"),
    ("apps/v1", "Deployment", "Deployment"),
    ("apps/v1", "ReplicaSet", "TemplatedWorkload"),
    ("apps/v1", "StatefulSet", "StatefulSet"),
    ("apps/v1", "DaemonSet", "TemplatedWorkload"),
    ("apps/v1", "ControllerRevision", "ControllerRevision"),
    ("batch/v1", "Job", "Job"),
    ("batch/v1", "CronJob", "CronJob"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "HorizontalPodAutoscalerV2"),
    // v1 HPAs have no tagged lists (conditions live in an annotation).
    ("autoscaling/v1", "HorizontalPodAutoscaler", "MetaOnly"),
    ("coordination.k8s.io/v1", "Lease", "MetaOnly"),
    ("discovery.k8s.io/v1", "EndpointSlice", "EndpointSlice"),
    ("events.k8s.io/v1", "Event", "MetaOnly"),
    ("policy/v1", "PodDisruptionBudget", "PodDisruptionBudget"),
    ("scheduling.k8s.io/v1", "PriorityClass", "MetaOnly"),
    ("storage.k8s.io/v1", "StorageClass", "StorageClass"),
    ("rbac.authorization.k8s.io/v1", "Role", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "RoleBinding"),
];

/// The type with this name, if modelled ("" is never a type).
pub fn type_named(name: &str) -> Option<&'static TypeDef> {
    TYPES.iter().find(|t| !name.is_empty() && t.name == name)
}

/// The root type of objects of this `apiVersion` and `kind`, if strategic merge patch knows it.
pub fn root_type(api_version: &str, kind: &str) -> Option<&'static TypeDef> {
    KINDS.iter().find(|(v, k, _)| *v == api_version && *k == kind).and_then(|(_, _, ty)| type_named(ty))
}

/// The field reached by `path` from the root of `kind` (list elements are stepped through
/// implicitly: `["spec","template","spec","containers","ports"]`).
pub fn field_at(api_version: &str, kind: &str, path: &[&str]) -> Option<&'static Field> {
    let (last, parents) = path.split_last()?;
    let mut ty = root_type(api_version, kind)?;
    for name in parents {
        ty = ty.child(name)?;
    }
    ty.field(last)
}

/// The merge key and patch strategy of the field at `path`, as the OpenAPI extensions
/// `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` would carry them:
/// `(Some("name"), "merge")` for containers, `(None, "merge")` for finalizers,
/// `(Some("name"), "merge,retainKeys")` for volumes, `(None, "retainKeys")` for a deployment's
/// strategy, `(None, "replace")` for a PDB's selector. `None` for fields without a patch
/// strategy (atomic lists such as tolerations, plain objects) and for unknown paths.
pub fn list_strategy(api_version: &str, kind: &str, path: &[&str]) -> Option<(Option<&'static str>, &'static str)> {
    let field = field_at(api_version, kind, path)?;
    Some((field.merge_key(), field.patch_strategy()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_kind_has_a_schema() {
        for r in crate::registry::RESOURCES {
            assert!(root_type(&r.api_version(), r.kind).is_some(), "{} {}", r.api_version(), r.kind);
        }
    }

    #[test]
    fn every_named_child_type_exists() {
        for t in TYPES {
            for f in t.fields {
                assert!(f.ty.is_empty() || type_named(f.ty).is_some(), "{}.{} -> {}", t.name, f.name, f.ty);
            }
        }
    }

    #[test]
    fn list_strategies_match_upstream_tags() {
        let pod_spec = ["spec", "template", "spec"];
        let under = |rest: &[&'static str]| [&pod_spec[..], rest].concat();
        type Strategy = Option<(Option<&'static str>, &'static str)>;
        let cases: &[(&str, &str, Vec<&str>, Strategy)] = &[
            ("apps/v1", "Deployment", under(&["containers"]), Some((Some("name"), "merge"))),
            ("apps/v1", "Deployment", under(&["containers", "env"]), Some((Some("name"), "merge"))),
            ("apps/v1", "Deployment", under(&["containers", "ports"]), Some((Some("containerPort"), "merge"))),
            ("apps/v1", "DaemonSet", under(&["initContainers", "volumeMounts"]), Some((Some("mountPath"), "merge"))),
            ("apps/v1", "Deployment", under(&["volumes"]), Some((Some("name"), "merge,retainKeys"))),
            ("apps/v1", "Deployment", under(&["tolerations"]), None),
            ("apps/v1", "Deployment", under(&["containers", "envFrom"]), None),
            ("apps/v1", "Deployment", vec!["spec", "strategy"], Some((None, "retainKeys"))),
            ("apps/v1", "Deployment", vec!["metadata", "finalizers"], Some((None, "merge"))),
            ("apps/v1", "Deployment", vec!["metadata", "ownerReferences"], Some((Some("uid"), "merge"))),
            ("apps/v1", "StatefulSet", vec!["spec", "volumeClaimTemplates"], None),
            (
                "batch/v1",
                "CronJob",
                vec!["spec", "jobTemplate", "spec", "template", "spec", "hostAliases"],
                Some((Some("ip"), "merge")),
            ),
            ("v1", "Pod", vec!["spec", "topologySpreadConstraints"], Some((Some("topologyKey"), "merge"))),
            ("v1", "Pod", vec!["status", "conditions"], Some((Some("type"), "merge"))),
            ("v1", "Node", vec!["status", "addresses"], Some((Some("type"), "merge"))),
            ("v1", "Node", vec!["spec", "taints"], None),
            ("v1", "Service", vec!["spec", "ports"], Some((Some("port"), "merge"))),
            ("policy/v1", "PodDisruptionBudget", vec!["spec", "selector"], Some((None, "replace"))),
            ("discovery.k8s.io/v1", "EndpointSlice", vec!["endpoints"], None),
            ("v1", "Pod", vec!["spec", "nope"], None),
            ("v1", "Widget", vec!["spec"], None),
        ];
        for (api_version, kind, path, want) in cases {
            assert_eq!(list_strategy(api_version, kind, path), *want, "{kind} {path:?}");
        }
    }

    #[test]
    fn list_types_and_map_keys_match_upstream_tags() {
        type ListType = (Option<&'static str>, &'static [&'static str]);
        let cases: &[(&str, &str, &[&str], ListType)] = &[
            ("v1", "Pod", &["spec", "containers"], (Some("map"), &["name"])),
            ("v1", "Pod", &["spec", "containers", "ports"], (Some("map"), &["containerPort", "protocol"])),
            ("v1", "Pod", &["spec", "ephemeralContainers", "ports"], (Some("map"), &["containerPort", "protocol"])),
            ("v1", "Pod", &["spec", "volumes"], (Some("map"), &["name"])),
            ("v1", "Pod", &["spec", "topologySpreadConstraints"], (Some("map"), &["topologyKey", "whenUnsatisfiable"])),
            ("v1", "Pod", &["spec", "tolerations"], (None, &[])),
            ("v1", "Pod", &["status", "hostIPs"], (None, &[])),
            ("v1", "Pod", &["metadata", "finalizers"], (Some("set"), &[])),
            ("v1", "Node", &["spec", "podCIDRs"], (Some("set"), &[])),
            ("v1", "Service", &["spec", "ports"], (Some("map"), &["port", "protocol"])),
            ("batch/v1", "Job", &["status", "conditions"], (None, &[])),
            ("apps/v1", "Deployment", &["status", "conditions"], (Some("map"), &["type"])),
            ("apps/v1", "Deployment", &["spec", "strategy"], (None, &[])),
        ];
        for (api_version, kind, path, (list_type, map_keys)) in cases {
            let field = field_at(api_version, kind, path).unwrap_or_else(|| panic!("{kind} {path:?} is modelled"));
            assert_eq!((field.list_type(), field.map_keys), (*list_type, *map_keys), "{kind} {path:?}");
            if let Some(first) = field.map_keys.first() {
                assert_eq!(field.merge_key(), Some(*first), "{kind} {path:?} merges by its first map key");
            }
        }
    }
}
