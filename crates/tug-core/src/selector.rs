//! Label and field selectors in Kubernetes' text syntax (`?labelSelector=` / `?fieldSelector=`).
//!
//! Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a` (exists), `!a`
//! (does not exist), `a>3`, `a<3`, joined by commas (all must hold). As in Kubernetes, `!=` and
//! `notin` also match objects that lack the label.
//!
//! Field selectors: `f=v`, `f==v`, `f!=v` joined by commas; `\,`, `\=` and `\\` escape those
//! characters in values. Which fields exist is up to each resource type.

use std::collections::BTreeMap;

use tug_k8s::labels::{Op, Requirement, Selector};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} selector {input:?}: {problem}")]
pub struct SelectorError {
    pub what: &'static str,
    pub input: String,
    pub problem: String,
}

/// A parsed label selector: the text syntax read into `tug-k8s`'s requirements, matched by the
/// same rule as every `metav1.LabelSelector`. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub selector: Selector,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    pub fn is_empty(&self) -> bool {
        self.selector.is_empty()
    }

    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |problem: String| SelectorError { what: "label", input: input.to_string(), problem };
        let mut requirements = Vec::new();
        for term in split_terms(input) {
            let term = term.trim();
            if term.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement (doubled or trailing comma?)".into()));
            }
            requirements.push(parse_label_term(term).map_err(err)?);
        }
        Ok(LabelSelector { selector: Selector { requirements, never: false } })
    }
}

/// Splits on commas that are not inside `( )`.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
}

fn requirement(key: &str, op: Op, mut values: Vec<String>, number: i64) -> Requirement {
    values.sort();
    values.dedup();
    Requirement { key: key.to_string(), op, values, number }
}

fn parse_label_term(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(requirement(key, Op::DoesNotExist, Vec::new(), 0));
    }
    for (token, negate) in [(" notin ", true), (" in ", false)] {
        if let Some(i) = term.find(token) {
            let key = term[..i].trim();
            validate_key(key)?;
            let list = term[i + token.len()..].trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| format!("values after {:?} must be in parentheses, e.g. (a,b)", token.trim()))?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            for v in &values {
                validate_value(v)?;
            }
            return Ok(requirement(key, if negate { Op::NotIn } else { Op::In }, values, 0));
        }
    }
    for (token, kind) in [("!=", 0), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some(i) = term.find(token) {
            let key = term[..i].trim();
            let value = term[i + token.len()..].trim();
            validate_key(key)?;
            return Ok(match kind {
                0 | 1 => {
                    validate_value(value)?;
                    requirement(key, if kind == 0 { Op::NotIn } else { Op::In }, vec![value.to_string()], 0)
                }
                _ => {
                    let n = value.parse::<i64>().map_err(|_| format!("{value:?} after {token:?} is not an integer"))?;
                    requirement(key, if kind == 2 { Op::Gt } else { Op::Lt }, vec![value.to_string()], n)
                }
            });
        }
    }
    validate_key(term)?;
    Ok(requirement(term, Op::Exists, Vec::new(), 0))
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A label key: `[prefix/]name`, name at most 63 characters of `[A-Za-z0-9._-]`.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    // The prefix is a DNS subdomain (example.com).
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    });
    if name.is_empty() || name.len() > 63 || !name.chars().all(name_char) || !prefix_ok {
        return Err(format!(
            "{key:?} is not a valid label key ([prefix/]name, name up to 63 characters of letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.len() > 63 || !value.chars().all(name_char) {
        return Err(format!("{value:?} is not a valid label value (up to 63 letters, digits, '-', '_', '.')"));
    }
    Ok(())
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |problem: String| SelectorError { what: "field", input: input.to_string(), problem };
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for term in split_unescaped(input, ',') {
            let (field, value, negated) = if let Some((f, v)) = split_once_unescaped(&term, "!=") {
                (f, v, true)
            } else if let Some((f, v)) = split_once_unescaped(&term, "==") {
                (f, v, false)
            } else if let Some((f, v)) = split_once_unescaped(&term, "=") {
                (f, v, false)
            } else {
                return Err(err(format!("{term:?} is not field=value or field!=value")));
            };
            let field = field.trim().to_string();
            if field.is_empty() {
                return Err(err(format!("{term:?} names no field")));
            }
            requirements.push(FieldRequirement { field, value: unescape(value.trim()), negated });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object matches, given a way to read its fields (`None`: the field is absent,
    /// which compares as the empty string, as in Kubernetes).
    pub fn matches(&self, mut field: impl FnMut(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }

    /// The value required by an `=` term on `field`, if any: lets a caller narrow a list (a pod
    /// list by `spec.nodeName`, say) before filtering.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && !r.negated).map(|r| r.value.as_str())
    }
}

fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            parts.last_mut().expect("non-empty").push(c);
            if let Some(n) = chars.next() {
                parts.last_mut().expect("non-empty").push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("non-empty").push(c);
        }
    }
    parts
}

fn split_once_unescaped<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if term[i..].starts_with(op) {
            return Some((&term[..i], &term[i + op.len()..]));
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors_match_as_kubernetes_does() {
        let web = labels(&[("app", "web"), ("tier", "fe"), ("replicas", "5")]);
        let bare = labels(&[]);
        // (selector, matches web, matches an object without labels)
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app in (web, db)", true, false),
            ("app notin (web,db)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=fe", true, false),
            ("app=web,tier=be", false, false),
            ("replicas>3", true, false),
            ("replicas<3", false, false),
            ("example.com/team", false, false),
            (" app = web , !missing ", true, false),
        ];
        for (sel, want_web, want_bare) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&web), want_web, "{sel:?} on web");
            assert_eq!(s.matches(&bare), want_bare, "{sel:?} on no labels");
        }
    }

    #[test]
    fn bad_label_selectors_say_what_is_wrong() {
        for (sel, says) in [
            ("app in web", "parentheses"),
            ("a=b,,c=d", "empty requirement"),
            ("bad key=x", "not a valid label key"),
            ("app=has space", "not a valid label value"),
            ("n>five", "not an integer"),
            ("app=web,", "empty requirement"),
        ] {
            let e = LabelSelector::parse(sel).unwrap_err().to_string();
            assert!(e.contains(says), "{sel:?}: {e}");
        }
    }

    #[test]
    fn field_selectors_match_with_negation_and_escapes() {
        let pod = |f: &str| match f {
            "metadata.name" => Some("web-1".to_string()),
            "spec.nodeName" => Some("node1".to_string()),
            "status.phase" => Some("Running".to_string()),
            "metadata.annotations" => Some("a,b=c".to_string()),
            _ => None,
        };
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-2", false),
            ("spec.nodeName=node1,status.phase!=Succeeded,status.phase!=Failed", true),
            ("status.phase!=Running", false),
            ("spec.nodeName=", false),
            ("spec.missing=", true),
            (r"metadata.annotations=a\,b\=c", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(pod), want, "{sel:?}");
        }
        let s = FieldSelector::parse("spec.nodeName=node1,status.phase!=Failed").unwrap();
        assert_eq!(s.exact("spec.nodeName"), Some("node1"));
        assert_eq!(s.exact("status.phase"), None);
        assert!(FieldSelector::parse("justaword").unwrap_err().to_string().contains("field=value"));
        assert!(FieldSelector::parse("=x").is_err());
    }

    proptest::proptest! {
        /// `k=v` and `k!=v` always disagree, whatever the labels.
        #[test]
        fn equality_and_inequality_are_complements(
            key in "[a-z]{1,5}", value in "[a-z0-9]{0,5}",
            present in proptest::option::of("[a-z0-9]{0,5}"),
        ) {
            let mut l = BTreeMap::new();
            if let Some(p) = present { l.insert(key.clone(), p); }
            let eq = LabelSelector::parse(&format!("{key}={value}")).unwrap();
            let ne = LabelSelector::parse(&format!("{key}!={value}")).unwrap();
            proptest::prop_assert_ne!(eq.matches(&l), ne.matches(&l));
        }
    }
}
