//! Int-or-percent values (`maxSurge: 25%`, `minAvailable: 2`): apimachinery's
//! `intstr.GetScaledValueFromIntOrPercent`, the one rule Deployments, DaemonSets and
//! PodDisruptionBudgets scale by.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Why an int-or-string is not a number or a percentage (apimachinery's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntOrPercentError {
    #[error("invalid value for IntOrString: invalid type: string is not a percentage")]
    NotAPercentage,
    #[error("invalid value for IntOrString: invalid value {0:?}: not an integer percentage")]
    BadPercentage(String),
}

/// `GetScaledValueFromIntOrPercent`: an integer as it is; `"N%"` as N percent of `total`, rounded
/// up or down. A string without `%`, or whose number is not an integer, is an error.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntOrPercentError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%').ok_or(IntOrPercentError::NotAPercentage)?;
            let percent: i64 = digits.parse().map_err(|_| IntOrPercentError::BadPercentage(s.clone()))?;
            let product = percent.saturating_mul(i64::from(total));
            let scaled = if round_up { div_ceil(product, 100) } else { product.div_euclid(100) };
            Ok(i32::try_from(scaled).unwrap_or(if scaled < 0 { i32::MIN } else { i32::MAX }))
        }
    }
}

/// Go's `math.Ceil(a / b)` for b > 0.
fn div_ceil(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apimachinery intstr `TestGetIntFromIntOrPercent` / `TestGetValueFromIntOrPercent`.
    #[test]
    fn values_scale_as_apimachinery_says() {
        let int = IntOrString::Int;
        let s = |v: &str| IntOrString::String(v.into());
        #[rustfmt::skip]
        let cases = [
            (int(123), 0, false, Some(123)),
            (s("90%"), 100, true, Some(90)),
            (s("90%"), 95, true, Some(86)),
            (s("90%"), 95, false, Some(85)),
            (s("%"), 0, false, None),
            (s("90#"), 0, false, None),
            (s("#%"), 0, false, None),
            (s("90"), 0, false, None),
            // The Deployment and DaemonSet defaults and edges.
            (s("25%"), 10, true, Some(3)),
            (s("25%"), 10, false, Some(2)),
            (s("25%"), 1000, true, Some(250)),
            (s("0%"), 4, true, Some(0)),
            (s("100%"), 4, true, Some(4)),
            (s("50%"), 3, true, Some(2)),
            (s("50%"), 3, false, Some(1)),
            (s("-50%"), 3, true, Some(-1)),
            (s("-50%"), 3, false, Some(-2)),
            (s(" 5%"), 10, true, None),
            (int(-1), 10, true, Some(-1)),
        ];
        for (value, total, round_up, want) in cases {
            assert_eq!(scaled_value(&value, total, round_up).ok(), want, "{value:?} of {total}, up: {round_up}");
        }
        assert_eq!(scaled_value(&s("90"), 1, true), Err(IntOrPercentError::NotAPercentage));
        assert_eq!(scaled_value(&s("x%"), 1, true), Err(IntOrPercentError::BadPercentage("x%".into())));
    }
}
