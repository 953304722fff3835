//! Taints and tolerations: Kubernetes' `ToleratesTaint` (k8s.io/api/core/v1/toleration.go), the
//! one matching rule the scheduler, the DaemonSet controller and node lifecycle all use, in a
//! compiled form for hot loops ([`Toleration`], [`Taint`]) and on the API types ([`tolerates`]).

use k8s_openapi::api::core::v1 as api;

/// The toleration operators Kubernetes 1.33 knows; an empty operator means `Equal`.
pub const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
/// The taint effects Kubernetes knows; an empty toleration effect matches every effect.
pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    /// NoSchedule and NoExecute keep pods that do not tolerate them off the node.
    pub fn is_hard(&self) -> bool {
        self.effect == "NoSchedule" || self.effect == "NoExecute"
    }

    pub fn is_preference(&self) -> bool {
        self.effect == "PreferNoSchedule"
    }
}

impl From<&api::Taint> for Taint {
    fn from(t: &api::Taint) -> Taint {
        Taint { key: t.key.clone(), value: t.value.clone().unwrap_or_default(), effect: t.effect.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equal,
    Exists,
    /// An operator Kubernetes does not know (validation rejects it): tolerates nothing.
    Unknown,
}

impl Operator {
    fn of(operator: &str) -> Operator {
        match operator {
            "Exists" => Operator::Exists,
            "Equal" | "" => Operator::Equal,
            _ => Operator::Unknown,
        }
    }
}

/// A toleration, compiled once; an empty key with `Exists` tolerates every taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    key: String,
    operator: Operator,
    value: String,
    effect: String,
}

impl Toleration {
    pub fn new(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.to_string(),
            operator: Operator::of(operator),
            value: value.to_string(),
            effect: effect.to_string(),
        }
    }

    /// Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        matches(&self.key, self.operator, &self.value, &self.effect, &taint.key, &taint.value, &taint.effect)
    }
}

impl From<&api::Toleration> for Toleration {
    fn from(t: &api::Toleration) -> Toleration {
        Toleration::new(
            t.key.as_deref().unwrap_or_default(),
            t.operator.as_deref().unwrap_or_default(),
            t.value.as_deref().unwrap_or_default(),
            t.effect.as_deref().unwrap_or_default(),
        )
    }
}

/// Kubernetes' `ToleratesTaint` on the API types.
pub fn tolerates(toleration: &api::Toleration, taint: &api::Taint) -> bool {
    matches(
        toleration.key.as_deref().unwrap_or_default(),
        Operator::of(toleration.operator.as_deref().unwrap_or_default()),
        toleration.value.as_deref().unwrap_or_default(),
        toleration.effect.as_deref().unwrap_or_default(),
        &taint.key,
        taint.value.as_deref().unwrap_or_default(),
        &taint.effect,
    )
}

/// The rule itself: an empty effect or key matches any; then `Exists` matches any value and
/// `Equal` (or empty) the same value.
fn matches(
    key: &str,
    operator: Operator,
    value: &str,
    effect: &str,
    taint_key: &str,
    taint_value: &str,
    taint_effect: &str,
) -> bool {
    if !effect.is_empty() && effect != taint_effect {
        return false;
    }
    if !key.is_empty() && key != taint_key {
        return false;
    }
    match operator {
        Operator::Equal => value == taint_value,
        Operator::Exists => true,
        Operator::Unknown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_toleration(key: &str, operator: &str, value: &str, effect: &str) -> api::Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        api::Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    /// k8s.io/api/core/v1 `TestTolerationToleratesTaint` (the 1.33 operators), plus the rules
    /// `operator: Equals` and an empty key rely on.
    #[test]
    fn tolerations_tolerate_taints_as_kubernetes_says() {
        #[rustfmt::skip]
        let cases = [
            ("same key and effect, Exists, taint without value", ("foo", "Exists", "", "NoSchedule"), ("foo", "", "NoSchedule"), true),
            ("same key and effect, Exists, taint with a value", ("foo", "Exists", "", "NoSchedule"), ("foo", "bar", "NoSchedule"), true),
            ("empty key with Exists matches every key", ("", "Exists", "", "NoSchedule"), ("foo", "bar", "NoSchedule"), true),
            ("same key, effect and value, Equal", ("foo", "Equal", "bar", "NoSchedule"), ("foo", "bar", "NoSchedule"), true),
            ("same key and effect, other value, Equal", ("foo", "Equal", "value1", "NoSchedule"), ("foo", "value2", "NoSchedule"), false),
            ("same key and value, other effect", ("foo", "Equal", "bar", "NoSchedule"), ("foo", "bar", "NoExecute"), false),
            ("empty operator means Equal", ("foo", "", "bar", ""), ("foo", "bar", "NoExecute"), true),
            ("empty operator means Equal: other value", ("foo", "", "db", ""), ("foo", "gpu", "NoExecute"), false),
            ("empty effect matches every effect", ("foo", "Exists", "", ""), ("foo", "x", "PreferNoSchedule"), true),
            ("other key", ("foo", "Exists", "", ""), ("bar", "", "NoSchedule"), false),
            ("unknown operator tolerates nothing", ("foo", "Equals", "bar", "NoSchedule"), ("foo", "bar", "NoSchedule"), false),
            ("unknown operator, empty key", ("", "Equals", "", ""), ("foo", "", "NoSchedule"), false),
            ("1.35's Gt is unknown in 1.33", ("sla", "Gt", "750", "NoSchedule"), ("sla", "950", "NoSchedule"), false),
        ];
        for (what, (key, operator, value, effect), (taint_key, taint_value, taint_effect), want) in cases {
            let taint = Taint { key: taint_key.into(), value: taint_value.into(), effect: taint_effect.into() };
            let compiled = Toleration::new(key, operator, value, effect);
            assert_eq!(compiled.tolerates(&taint), want, "{what}");
            let api_taint = api::Taint {
                key: taint_key.into(),
                value: (!taint_value.is_empty()).then(|| taint_value.into()),
                effect: taint_effect.into(),
                time_added: None,
            };
            let toleration = api_toleration(key, operator, value, effect);
            assert_eq!(tolerates(&toleration, &api_taint), want, "{what} (API types)");
            assert_eq!(Toleration::from(&toleration), compiled, "{what}: compiled from the API type");
            assert_eq!(Taint::from(&api_taint), taint);
        }
    }

    #[test]
    fn hard_and_preferred_effects() {
        let taint = |effect: &str| Taint { key: "k".into(), value: String::new(), effect: effect.into() };
        assert!(taint("NoSchedule").is_hard() && taint("NoExecute").is_hard() && !taint("PreferNoSchedule").is_hard());
        assert!(taint("PreferNoSchedule").is_preference() && !taint("NoSchedule").is_preference());
    }
}
