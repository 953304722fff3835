//! Resource quantities (`500m`, `1.5Gi`, `2e3`) as apimachinery's `resource.Quantity` reads
//! them, and comparison by value: `1` and `1000m` are the same amount.

use std::cmp::Ordering;

/// What the API says when a quantity does not parse (apimachinery's `ErrFormatWrong` regex).
pub const QUANTITY_FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A Kubernetes quantity in nano-units, rounded up (as Kubernetes rounds anything below 1n up to
/// 1n); `None` if it does not parse. Values beyond i128 saturate, which keeps comparisons right
/// for any real amount.
pub fn parse_quantity(text: &str) -> Option<i128> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    // (power of ten, power of two) the suffix multiplies by.
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exponent.parse::<i32>().ok()?.clamp(-1000, 1000), 0)
        }
    };
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() {
        0
    } else if digits.len() > 36 {
        i128::MAX
    } else {
        digits.parse().ok()?
    };
    let scale = pow10 + 9 - fraction.len() as i32;
    let magnitude = scale_by(mantissa, scale, pow2);
    Some(if negative { -magnitude } else { magnitude })
}

/// mantissa × 10^scale × 2^pow2, saturating, rounding a fractional result up.
fn scale_by(mantissa: i128, scale: i32, pow2: u32) -> i128 {
    let mut value = mantissa.checked_mul(1i128 << pow2).unwrap_or(i128::MAX);
    if scale >= 0 {
        for _ in 0..scale {
            value = value.checked_mul(10).unwrap_or(i128::MAX);
            if value == i128::MAX {
                break;
            }
        }
    } else {
        for _ in 0..(-scale) {
            if value == 0 {
                break;
            }
            value = value / 10 + i128::from(value % 10 != 0);
        }
    }
    value
}

/// Two quantities compared by value (`Quantity.Cmp`); `None` if either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_quantity(a)?.cmp(&parse_quantity(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: i128 = 1024;
    const NANO: i128 = 1_000_000_000;

    /// apimachinery's `TestQuantityParse` table (values in nano-units).
    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("0n", 0),
            ("0u", 0),
            ("0m", 0),
            ("0Ki", 0),
            ("0k", 0),
            ("0Mi", 0),
            ("0M", 0),
            ("0Gi", 0),
            ("0G", 0),
            ("0Ti", 0),
            ("0T", 0),
            ("1", NANO),
            ("1Ki", KI * NANO),
            ("8Ki", 8 * KI * NANO),
            ("7Mi", 7 * KI.pow(2) * NANO),
            ("6Gi", 6 * KI.pow(3) * NANO),
            ("5Ti", 5 * KI.pow(4) * NANO),
            ("4Pi", 4 * KI.pow(5) * NANO),
            ("3Ei", 3 * KI.pow(6) * NANO),
            ("10Ti", 10 * KI.pow(4) * NANO),
            ("100Ti", 100 * KI.pow(4) * NANO),
            ("5n", 5),
            ("4u", 4_000),
            ("3m", 3_000_000),
            ("9", 9 * NANO),
            ("8k", 8_000 * NANO),
            ("50k", 50_000 * NANO),
            ("7M", 7_000_000 * NANO),
            ("6G", 6 * 10i128.pow(18)),
            ("5T", 5 * 10i128.pow(21)),
            ("40T", 4 * 10i128.pow(22)),
            ("300T", 3 * 10i128.pow(23)),
            ("2P", 2 * 10i128.pow(24)),
            ("1E", 10i128.pow(27)),
            ("1E-3", 1_000_000),
            ("1e3", 1_000 * NANO),
            ("1E6", 10i128.pow(15)),
            ("1e9", 10i128.pow(18)),
            ("1E12", 10i128.pow(21)),
            ("1e15", 10i128.pow(24)),
            ("1E18", 10i128.pow(27)),
            ("1e14", 10i128.pow(23)),
            ("1e13", 10i128.pow(22)),
            ("100.035k", 100_035 * NANO),
            ("0.001", 1_000_000),
            ("0.0005k", 500_000_000),
            ("0.005", 5_000_000),
            ("0.05", 50_000_000),
            ("0.5", 500_000_000),
            ("0.00050k", 500_000_000),
            ("0.00500", 5_000_000),
            ("0.05000", 50_000_000),
            ("0.50000", 500_000_000),
            ("0.5e0", 500_000_000),
            ("0.5e-1", 50_000_000),
            ("0.5e-2", 5_000_000),
            ("10.035M", 10_035_000 * NANO),
            ("1.2e3", 1_200 * NANO),
            ("1.3E+6", 1_300_000 * NANO),
            ("1.40e9", 14 * 10i128.pow(17)),
            ("1.53E12", 153 * 10i128.pow(19)),
            ("9.01", 9_010_000_000),
            ("8.1k", 8_100 * NANO),
            ("7.123456M", 7_123_456 * NANO),
            ("6.987654321G", 6_987_654_321 * NANO),
            ("5.444T", 5_444 * 10i128.pow(18)),
            ("2.5P", 25 * 10i128.pow(23)),
            ("1.01E", 101 * 10i128.pow(25)),
            // Things that round up to the next nano-unit.
            ("3.001n", 4),
            ("1.1E-9", 2),
            ("0.0000000001", 1),
            ("0.0000000005", 1),
            ("0.00000000050", 1),
            ("0.5e-9", 1),
            ("0.9n", 1),
            ("0.00000012345", 124),
            ("0.00000012354", 124),
            ("12E", 12 * 10i128.pow(27)),
            // Fractional binary amounts.
            ("100.035Ki", 10_243_584 * NANO / 100),
            ("0.5Mi", 512 * KI * NANO),
            ("0.05Gi", 53_687_091_200_000_000),
            ("0.025Ti", 27_487_790_694_400_000_000),
            // "Things written by trolls".
            ("0.000000000001Ki", 2),
            (".001", 1_000_000),
            (".0001k", 100_000_000),
            ("1.", NANO),
            ("1.G", 10i128.pow(18)),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_quantity(text), Some(*nanos), "{text}");
            assert_eq!(parse_quantity(&format!("-{text}")), Some(-nanos), "-{text}");
            assert_eq!(parse_quantity(&format!("+{text}")), Some(*nanos), "+{text}");
        }
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for text in
            ["", "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", " 1", "1 ", "Ki"]
        {
            assert_eq!(parse_quantity(text), None, "{text:?}");
        }
    }

    /// apimachinery's `TestQuantityCmp`, plus the equalities QoS and limits rely on.
    #[test]
    fn quantities_compare_by_value() {
        let cases = [
            ("0", "0", Ordering::Equal),
            ("100m", "50m", Ordering::Greater),
            ("50m", "100m", Ordering::Less),
            ("10000T", "100Gi", Ordering::Greater),
            ("1", "1000m", Ordering::Equal),
            ("1Gi", "1073741824", Ordering::Equal),
            ("1G", "1Gi", Ordering::Less),
            ("0.5", "500m", Ordering::Equal),
            ("1e3", "1k", Ordering::Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(compare("1", "banana"), None);
    }
}
