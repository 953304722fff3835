//! Label selectors: apimachinery's `labels.Requirement` and `labels.Selector` in a compiled form
//! (values sorted once, matching by binary search), `metav1.LabelSelectorAsSelector` to build one
//! from the API type, and `Selector.String()` to render it. The one matcher the API server, its
//! validation, the controllers and the scheduler use; the text syntax of `?labelSelector=` is
//! parsed in `tug-core` into these same requirements.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The label every node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The zone label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The operators of a requirement. `Gt` and `Lt` exist in the text syntax and in node selector
/// requirements, not in a `metav1.LabelSelector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// Which operators a kind of requirement admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operators {
    /// `metav1.LabelSelectorRequirement`: In, NotIn, Exists, DoesNotExist.
    LabelSelector,
    /// `core/v1.NodeSelectorRequirement`: those and Gt, Lt.
    NodeSelector,
}

/// One `key op values` requirement; `values` are sorted and deduplicated for binary search.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
    /// The integer operand of `Gt`/`Lt`.
    pub number: i64,
}

impl Requirement {
    /// A requirement checked as apimachinery's `NewRequirement` checks it: In and NotIn need
    /// values, Exists and DoesNotExist take none, Gt and Lt exactly one integer. `None` when the
    /// requirement is malformed or the operator unknown.
    pub fn new(key: &str, op: &str, values: Option<&Vec<String>>, operators: Operators) -> Option<Requirement> {
        let node_ops = operators == Operators::NodeSelector;
        let op = match op {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if node_ops => Op::Gt,
            "Lt" if node_ops => Op::Lt,
            _ => return None,
        };
        Requirement::with_op(key, op, values.cloned().unwrap_or_default())
    }

    /// A requirement with an operator already known; `None` when the values do not fit it.
    pub fn with_op(key: &str, op: Op, mut values: Vec<String>) -> Option<Requirement> {
        values.sort();
        values.dedup();
        let number = match op {
            Op::In | Op::NotIn if values.is_empty() => return None,
            Op::Exists | Op::DoesNotExist if !values.is_empty() => return None,
            Op::Gt | Op::Lt if values.len() != 1 => return None,
            Op::Gt | Op::Lt => values[0].parse().ok()?,
            _ => 0,
        };
        Some(Requirement { key: key.to_string(), op, values, number })
    }

    /// `key = value` (apimachinery's `Equals`, matched as `In` with one value).
    pub fn equals(key: &str, value: &str) -> Requirement {
        Requirement { key: key.to_string(), op: Op::In, values: vec![value.to_string()], number: 0 }
    }

    /// Whether a label value (`None`: label absent) satisfies the requirement. As in Kubernetes,
    /// `NotIn` matches an absent label, and `Gt`/`Lt` need a value that parses as an integer.
    #[inline]
    pub fn matches(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok();
        match (self.op, value) {
            (Op::In, Some(v)) => contains(v),
            (Op::NotIn, Some(v)) => !contains(v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.number),
            (Op::Lt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.number),
            (Op::In | Op::Gt | Op::Lt, None) => false,
        }
    }
}

/// A conjunction of requirements. `never` marks a selector that matches nothing: an absent
/// selector where Kubernetes reads nil as `labels.Nothing()`, or a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub never: bool,
}

impl Selector {
    /// `labels.Nothing()`.
    pub fn nothing() -> Selector {
        Selector { requirements: Vec::new(), never: true }
    }

    /// `labels.Everything()`.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// `metav1.LabelSelectorAsSelector` without its error: `None` (nil) and a malformed selector
    /// match nothing, `{}` matches everything.
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Selector {
        selector.and_then(Selector::try_from_label_selector).unwrap_or_else(Selector::nothing)
    }

    /// `metav1.LabelSelectorAsSelector`: `None` when a requirement is malformed (unknown
    /// operator, values where none are allowed or none where some are needed).
    pub fn try_from_label_selector(selector: &LabelSelector) -> Option<Selector> {
        let mut requirements: Vec<Requirement> =
            selector.match_labels.iter().flatten().map(|(k, v)| Requirement::equals(k, v)).collect();
        for expr in selector.match_expressions.iter().flatten() {
            requirements.push(Requirement::new(
                &expr.key,
                &expr.operator,
                expr.values.as_ref(),
                Operators::LabelSelector,
            )?);
        }
        Some(Selector { requirements, never: false })
    }

    /// Node selector requirements (with `Gt`/`Lt`); a malformed one makes it match nothing.
    pub fn from_node_requirements(reqs: &[k8s_openapi::api::core::v1::NodeSelectorRequirement]) -> Selector {
        let mut requirements = Vec::with_capacity(reqs.len());
        for r in reqs {
            match Requirement::new(&r.key, &r.operator, r.values.as_ref(), Operators::NodeSelector) {
                Some(r) => requirements.push(r),
                None => return Selector::nothing(),
            }
        }
        Selector { requirements, never: false }
    }

    /// Matches no requirement at all (and is not `nothing`): selects everything.
    pub fn is_empty(&self) -> bool {
        !self.never && self.requirements.is_empty()
    }

    #[inline]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    #[inline]
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.never && self.requirements.iter().all(|r| r.matches(lookup(&r.key)))
    }

    pub fn uses_key(&self, key: &str) -> bool {
        self.requirements.iter().any(|r| r.key == key)
    }
}

/// Does a (possibly absent) `metav1.LabelSelector` select these (possibly absent) labels? As the
/// controllers read it: absent or malformed selects nothing, empty selects everything.
pub fn selects(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    Selector::from_label_selector(selector).matches(labels.unwrap_or(&EMPTY))
}

/// A `metav1.LabelSelector` as it stands in an object's JSON (`spec.selector`); `None` when the
/// value is not one (null, or fields of the wrong type).
pub fn from_json(value: &serde_json::Value) -> Option<LabelSelector> {
    if value.is_null() {
        return None;
    }
    serde_json::from_value(value.clone()).ok()
}

/// A malformed `metav1.LabelSelector`, with what apimachinery would say of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} in the label selector requirement on {key:?}")]
pub struct InvalidSelector {
    pub key: String,
    pub problem: &'static str,
}

/// `metav1.LabelSelectorAsSelector(selector).String()`: requirements sorted by key (stably), a
/// matchLabels pair as `k=v`, then `k in (a,b)` and `k notin (a,b)` with values sorted, `k` for
/// Exists and `!k` for DoesNotExist, joined by commas. Absent and empty selectors render as "".
pub fn render(selector: Option<&LabelSelector>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector else { return Ok(String::new()) };
    let mut requirements: Vec<(&str, String)> =
        selector.match_labels.iter().flatten().map(|(k, v)| (k.as_str(), format!("{k}={v}"))).collect();
    for expr in selector.match_expressions.iter().flatten() {
        let key = expr.key.as_str();
        let mut values: Vec<&str> = expr.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        let invalid = |problem| InvalidSelector { key: key.to_string(), problem };
        let rendered = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(invalid("values must be non-empty for In and NotIn")),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(invalid("values must be empty for Exists and DoesNotExist"));
            }
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(invalid("the operator is not In, NotIn, Exists or DoesNotExist")),
        };
        requirements.push((key, rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: as [`render`], `<none>` when empty and `<error>` when invalid.
pub fn format(selector: Option<&LabelSelector>) -> String {
    match render(selector) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(_) => "<error>".into(),
    }
}

/// A requirement in the text syntax (`labels.Requirement.String()`).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::In if self.values.len() == 1 => write!(f, "{}={}", self.key, self.values[0]),
            Op::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Op::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Op::Exists => write!(f, "{}", self.key),
            Op::DoesNotExist => write!(f, "!{}", self.key),
            Op::Gt => write!(f, "{}>{}", self.key, self.number),
            Op::Lt => write!(f, "{}<{}", self.key, self.number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: Op, values: &[&str]) -> Requirement {
        Requirement::with_op(key, op, values.iter().map(|v| v.to_string()).collect())
            .unwrap_or_else(|| panic!("{key} {op:?} {values:?} is a valid requirement"))
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    /// apimachinery labels `TestRequirementSelectorMatching`.
    #[test]
    fn requirements_match_as_apimachinery_says() {
        #[rustfmt::skip]
        let cases = [
            (set(&[("x", "foo"), ("y", "baz")]), vec![req("x", Op::In, &["foo"]), req("y", Op::NotIn, &["alpha"])], true),
            (set(&[("x", "foo"), ("y", "baz")]), vec![req("x", Op::In, &["foo"]), req("y", Op::In, &["alpha"])], false),
            (set(&[("y", "")]), vec![req("x", Op::NotIn, &[""]), req("y", Op::Exists, &[])], true),
            (set(&[("y", "")]), vec![req("x", Op::DoesNotExist, &[]), req("y", Op::Exists, &[])], true),
            (set(&[("y", "")]), vec![req("x", Op::NotIn, &[""]), req("y", Op::DoesNotExist, &[])], false),
            (set(&[("y", "baz")]), vec![req("x", Op::In, &[""])], false),
            (set(&[("z", "2")]), vec![req("z", Op::Gt, &["1"])], true),
            (set(&[("z", "v2")]), vec![req("z", Op::Gt, &["1"])], false),
        ];
        for (labels, requirements, want) in cases {
            let selector = Selector { requirements: requirements.clone(), never: false };
            assert_eq!(selector.matches(&labels), want, "{requirements:?} on {labels:?}");
        }
    }

    /// apimachinery labels `TestSelectorMatches` (the text forms, built as requirements).
    #[test]
    fn selectors_match_as_apimachinery_says() {
        let foo_baz = set(&[("foo", "bar"), ("baz", "blah")]);
        #[rustfmt::skip]
        let cases = [
            (vec![], set(&[("x", "y")]), true),
            (vec![req("x", Op::In, &["y"])], set(&[("x", "y")]), true),
            (vec![req("x", Op::In, &["y"]), req("z", Op::In, &["w"])], set(&[("x", "y"), ("z", "w")]), true),
            (vec![req("x", Op::NotIn, &["y"]), req("z", Op::NotIn, &["w"])], set(&[("x", "z"), ("z", "a")]), true),
            (vec![req("notin", Op::In, &["in"])], set(&[("notin", "in")]), true),
            (vec![req("x", Op::Exists, &[])], set(&[("x", "z")]), true),
            (vec![req("x", Op::DoesNotExist, &[])], set(&[("y", "z")]), true),
            (vec![req("x", Op::Gt, &["1"])], set(&[("x", "2")]), true),
            (vec![req("x", Op::Lt, &["1"])], set(&[("x", "0")]), true),
            (vec![req("x", Op::In, &["z"])], set(&[]), false),
            (vec![req("x", Op::In, &["y"])], set(&[("x", "z")]), false),
            (vec![req("x", Op::In, &["y"]), req("z", Op::In, &["w"])], set(&[("x", "w"), ("z", "w")]), false),
            (vec![req("x", Op::NotIn, &["y"]), req("z", Op::NotIn, &["w"])], set(&[("x", "z"), ("z", "w")]), false),
            (vec![req("x", Op::Exists, &[])], set(&[("y", "z")]), false),
            (vec![req("x", Op::DoesNotExist, &[])], set(&[("x", "z")]), false),
            (vec![req("x", Op::Gt, &["1"])], set(&[("x", "0")]), false),
            (vec![req("x", Op::Lt, &["1"])], set(&[("x", "2")]), false),
            (vec![req("foo", Op::In, &["bar"])], foo_baz.clone(), true),
            (vec![req("baz", Op::In, &["blah"])], foo_baz.clone(), true),
            (vec![req("foo", Op::In, &["bar"]), req("baz", Op::In, &["blah"])], foo_baz.clone(), true),
            (vec![req("foo", Op::In, &["blah"])], foo_baz.clone(), false),
            (vec![req("baz", Op::In, &["bar"])], foo_baz.clone(), false),
            (vec![req("foo", Op::In, &["bar"]), req("foobar", Op::In, &["bar"]), req("baz", Op::In, &["blah"])], foo_baz.clone(), false),
        ];
        for (requirements, labels, want) in cases {
            let selector = Selector { requirements: requirements.clone(), never: false };
            assert_eq!(selector.matches(&labels), want, "{requirements:?} on {labels:?}");
        }
        assert!(Selector::everything().matches(&set(&[("x", "y")])) && Selector::everything().is_empty());
        assert!(!Selector::nothing().matches(&set(&[])) && !Selector::nothing().is_empty());
    }

    /// apimachinery labels `TestRequirementConstructor` (the operator and value rules).
    #[test]
    fn requirements_are_checked_as_new_requirement_does() {
        let values = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        #[rustfmt::skip]
        let cases = [
            ("x", "In", None, false),
            ("x", "NotIn", values(&[]), false),
            ("x", "In", values(&["foo"]), true),
            ("x", "NotIn", values(&["foo"]), true),
            ("x", "Exists", None, true),
            ("x", "DoesNotExist", None, true),
            ("1foo", "In", values(&["bar"]), true),
            ("y", "Gt", values(&["1"]), true),
            ("z", "Lt", values(&["6"]), true),
            ("foo", "Gt", values(&["bar"]), false),
            ("barz", "Lt", values(&["blah"]), false),
            ("x", "Gt", values(&["1", "2"]), false),
            ("x", "Exists", values(&["a"]), false),
            ("x", "Equals", values(&["a"]), false),
        ];
        for (key, op, vals, ok) in cases {
            let got = Requirement::new(key, op, vals.as_ref(), Operators::NodeSelector);
            assert_eq!(got.is_some(), ok, "{key} {op} {vals:?}");
        }
        let gt = values(&["1"]);
        assert_eq!(
            Requirement::new("y", "Gt", gt.as_ref(), Operators::LabelSelector),
            None,
            "no Gt in a LabelSelector"
        );
    }

    /// metav1 `TestLabelSelectorAsSelector`: nil selects nothing, `{}` everything; matchLabels
    /// and matchExpressions together; malformed requirements are errors (select nothing).
    #[test]
    fn label_selectors_convert_as_label_selector_as_selector() {
        let foo_bar = BTreeMap::from([("foo".to_string(), "bar".to_string())]);
        let baz_in = vec![expr("baz", "In", &["qux", "norf"])];
        let both = LabelSelector { match_labels: Some(foo_bar.clone()), match_expressions: Some(baz_in.clone()) };
        #[rustfmt::skip]
        let cases: Vec<(Option<LabelSelector>, Option<&str>)> = vec![
            (None, Some("")),
            (Some(LabelSelector::default()), Some("")),
            (Some(LabelSelector { match_labels: Some(foo_bar.clone()), match_expressions: None }), Some("foo=bar")),
            (Some(LabelSelector { match_labels: None, match_expressions: Some(baz_in.clone()) }), Some("baz in (norf,qux)")),
            (Some(both.clone()), Some("baz in (norf,qux),foo=bar")),
            (Some(LabelSelector { match_labels: None, match_expressions: Some(vec![expr("baz", "Exists", &["qux", "norf"])]) }), None),
            (Some(LabelSelector { match_labels: None, match_expressions: Some(vec![expr("baz", "DoesNotExist", &["qux"])]) }), None),
            (Some(LabelSelector { match_labels: None, match_expressions: Some(vec![expr("baz", "In", &[])]) }), None),
            (Some(LabelSelector { match_labels: None, match_expressions: Some(vec![expr("baz", "Equals", &["a"])]) }), None),
        ];
        for (selector, want) in cases {
            assert_eq!(render(selector.as_ref()).ok().as_deref(), want, "{selector:?}");
            let compiled = selector.as_ref().and_then(Selector::try_from_label_selector);
            assert_eq!(compiled.is_some(), selector.is_some() && want.is_some(), "{selector:?}");
        }
        let nothing = Selector::from_label_selector(None);
        assert!(!nothing.matches(&foo_bar), "nil selects nothing");
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(&BTreeMap::new()));
        let matching = set(&[("foo", "bar"), ("baz", "norf")]);
        assert!(Selector::from_label_selector(Some(&both)).matches(&matching));
        assert!(!Selector::from_label_selector(Some(&both)).matches(&set(&[("foo", "bar")])));
        assert!(selects(Some(&both), Some(&matching)));
        assert!(!selects(Some(&both), None));
        assert!(selects(Some(&LabelSelector::default()), None), "empty selects everything");
        assert!(!selects(None, Some(&matching)), "absent selects nothing");
    }

    /// apimachinery labels `TestToString` for the operators a LabelSelector has, rendered from the
    /// API type: sorted by key (stable for equal keys), values sorted; and `FormatLabelSelector`.
    #[test]
    fn selectors_render_as_kubernetes_prints_them() {
        let sel = |labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: (!labels.is_empty()).then(|| set(labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        };
        #[rustfmt::skip]
        let cases = [
            (sel(&[], vec![expr("x", "In", &["def", "abc"]), expr("y", "NotIn", &["jkl"]), expr("z", "Exists", &[])]), "x in (abc,def),y notin (jkl),z"),
            (sel(&[], vec![expr("z", "DoesNotExist", &[]), expr("x", "NotIn", &["abc", "def"])]), "x notin (abc,def),!z"),
            (sel(&[], vec![expr("y", "In", &["mno", "jkl"]), expr("x", "NotIn", &["abc"])]), "x notin (abc),y in (jkl,mno)"),
            (sel(&[("b", "2"), ("a", "1")], vec![]), "a=1,b=2"),
            (sel(&[("app", "web")], vec![expr("tier", "In", &["b", "a"])]), "app=web,tier in (a,b)"),
            (sel(&[("z", "1")], vec![expr("a", "Exists", &[])]), "a,z=1"),
            (sel(&[], vec![expr("env", "NotIn", &["x"]), expr("arch", "Exists", &[]), expr("gpu", "DoesNotExist", &[])]), "arch,env notin (x),!gpu"),
            (sel(&[("k", "v")], vec![expr("k", "Exists", &[])]), "k=v,k"),
        ];
        for (selector, want) in cases {
            assert_eq!(render(Some(&selector)).as_deref(), Ok(want), "{selector:?}");
            assert_eq!(format(Some(&selector)), want);
        }
        assert_eq!(format(None), "<none>");
        assert_eq!(format(Some(&LabelSelector::default())), "<none>");
        assert_eq!(format(Some(&sel(&[], vec![expr("k", "In", &[])]))), "<error>");
        let err = render(Some(&sel(&[], vec![expr("k", "Gt", &["1"])]))).unwrap_err();
        assert_eq!(err.key, "k");
    }

    #[test]
    fn selectors_read_from_json() {
        let json = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]});
        let selector = from_json(&json).expect("a LabelSelector");
        assert_eq!(render(Some(&selector)).as_deref(), Ok("app=web,tier in (a,b)"));
        assert_eq!(from_json(&serde_json::json!({})), Some(LabelSelector::default()));
        assert_eq!(from_json(&serde_json::Value::Null), None);
        assert_eq!(from_json(&serde_json::json!({"matchLabels": {"app": 1}})), None);
    }

    #[test]
    fn requirements_print_in_the_text_syntax() {
        #[rustfmt::skip]
        let cases = [
            (req("x", Op::In, &["def", "abc"]), "x in (abc,def)"),
            (req("x", Op::In, &["abc"]), "x=abc"),
            (req("y", Op::NotIn, &["jkl"]), "y notin (jkl)"),
            (req("z", Op::Exists, &[]), "z"),
            (req("z", Op::DoesNotExist, &[]), "!z"),
            (req("x", Op::Gt, &["2"]), "x>2"),
            (req("y", Op::Lt, &["8"]), "y<8"),
        ];
        for (requirement, want) in cases {
            assert_eq!(requirement.to_string(), want);
        }
    }
}
