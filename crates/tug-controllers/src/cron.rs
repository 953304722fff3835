//! Cron schedules as a CronJob's `spec.schedule` means them: the grammar Kubernetes accepts
//! through robfig/cron's `ParseStandard`, and the next time a schedule fires in a time zone.
//!
//! Grammar: five fields `minute hour day-of-month month day-of-week`, each a comma list of `*`,
//! `?` (same as `*`), `N`, `N-M`, with an optional `/step` (`*/5`, `1-10/2`, and `N/step` meaning
//! `N-max/step`); months `JAN`-`DEC` and weekdays `SUN`-`SAT` by name, case-insensitive; weekday
//! `7` is Sunday too (an extension: robfig/cron only knows 0-6). Descriptors `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`, and
//! `@every <Go duration>` (e.g. `@every 1h30m`; whole seconds, at least one), which
//! `ParseStandard` accepts as well.
//!
//! Day matching follows cron: when both day-of-month and day-of-week are restricted (neither is
//! a plain `*`/`?`), a day matches if EITHER does; otherwise both must.
//!
//! Time zones: a schedule fires at every instant whose wall-clock time in the zone matches it,
//! exactly as robfig/cron computes it for Kubernetes. So a time skipped by a DST gap does not
//! fire that day (`30 2 * * *` skips the spring-forward day), and a time repeated by a DST fold
//! fires twice (`0 1 * * *` on the fall-back day, once per offset).

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a constant delay in whole seconds (at least 1), counted from the previous run.
    Every(i64),
}

/// The set of values each field allows, as bitsets, plus whether the day fields were a plain
/// `*`/`?` (which decides between cron's AND and OR day matching).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    dom_is_star: bool,
    dow_is_star: bool,
}

/// How far ahead `next_after` looks before giving up: Feb 29 schedules fire at most 8 years
/// apart (2096 → 2104), so ten years covers every schedule that can fire at all.
const SEARCH_YEARS: i16 = 10;

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: FieldSpec = FieldSpec { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    // Index 0 is unused so that a name's index is its number.
    names: &["", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
// 7 is accepted and folded onto Sunday (0) after parsing.
const DAY_OF_WEEK: FieldSpec =
    FieldSpec { name: "day-of-week", min: 0, max: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Schedule {
    /// Parses a schedule; errors read `invalid schedule "<spec>": <what is wrong>`.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        parse_kind(spec.trim()).map(|kind| Schedule { kind }).map_err(|e| format!("invalid schedule {spec:?}: {e}"))
    }

    /// The first time strictly after `after` at which the schedule fires, with wall-clock times
    /// read in `tz`. `None` when it never fires again (e.g. `0 0 30 2 *`, Feb 30).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(secs) => {
                // robfig/cron: drop the sub-second part, then add the delay.
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(SignedDuration::from_secs(*secs)).ok()
            }
            Kind::Fields(fields) => fields.next_after(after, tz),
        }
    }
}

fn parse_kind(spec: &str) -> Result<Kind, String> {
    if spec.is_empty() {
        return Err("empty schedule".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        return Err("TZ and CRON_TZ are not supported in the schedule; set spec.timeZone instead".into());
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return parse_descriptor(descriptor);
    }
    let parts: Vec<&str> = spec.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}",
            parts.len()
        ));
    }
    let (minutes, _) = parse_field(parts[0], &MINUTE)?;
    let (hours, _) = parse_field(parts[1], &HOUR)?;
    let (days_of_month, dom_is_star) = parse_field(parts[2], &DAY_OF_MONTH)?;
    let (months, _) = parse_field(parts[3], &MONTH)?;
    let (mut days_of_week, dow_is_star) = parse_field(parts[4], &DAY_OF_WEEK)?;
    if days_of_week & (1 << 7) != 0 {
        days_of_week = (days_of_week & !(1 << 7)) | 1;
    }
    Ok(Kind::Fields(Fields { minutes, hours, days_of_month, months, days_of_week, dom_is_star, dow_is_star }))
}

fn parse_descriptor(descriptor: &str) -> Result<Kind, String> {
    let spec = match descriptor {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => {
            let Some(duration) = descriptor.strip_prefix("every ") else {
                return Err(format!("unrecognized descriptor: @{descriptor}"));
            };
            let nanos = parse_go_duration(duration.trim())?;
            // robfig/cron rounds down to whole seconds and runs at least every second.
            let secs = i64::try_from(nanos / 1_000_000_000).map_err(|_| "duration too long".to_string())?;
            return Ok(Kind::Every(secs.max(1)));
        }
    };
    parse_kind(spec)
}

/// Parses one field into a bitset of allowed values; the flag is true for a plain `*`/`?`
/// (also `*/1`), which robfig/cron marks to choose AND day matching.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in field.split(',') {
        if expr.is_empty() {
            return Err(format!("empty list item in {} field {field:?}", spec.name));
        }
        let (range_bits, range_star) = parse_range(expr, spec)?;
        bits |= range_bits;
        star |= range_star;
    }
    Ok((bits, star))
}

fn parse_range(expr: &str, spec: &FieldSpec) -> Result<(u64, bool), String> {
    let (range, step) = match expr.split_once('/') {
        None => (expr, None),
        Some((range, step)) => {
            let step =
                parse_number(step).ok_or_else(|| format!("invalid step {step:?} in {} field {expr:?}", spec.name))?;
            if step == 0 {
                return Err(format!("step must be positive in {} field {expr:?}", spec.name));
            }
            (range, Some(step))
        }
    };
    // Implied range ends stop at Saturday: 7 is only an alias for Sunday.
    let implied_max = if spec.name == DAY_OF_WEEK.name { 6 } else { spec.max };
    let (start, end, star) = if range == "*" || range == "?" {
        (spec.min, implied_max, true)
    } else if let Some((low, high)) = range.split_once('-') {
        (value(low, spec, expr)?, value(high, spec, expr)?, false)
    } else {
        let start = value(range, spec, expr)?;
        // "N/step" means "N-max/step".
        (start, if step.is_some() { implied_max.max(start) } else { start }, false)
    };
    if start > end {
        return Err(format!("range start {start} is beyond its end {end} in {} field {expr:?}", spec.name));
    }
    let step = step.unwrap_or(1);
    let bits = (start..=end).step_by(step as usize).fold(0u64, |bits, v| bits | (1 << v));
    Ok((bits, star && step == 1))
}

/// A number or (for months and weekdays) a name, checked against the field's bounds.
fn value(text: &str, spec: &FieldSpec, expr: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = spec.names.iter().position(|n| !n.is_empty() && *n == lower).map(|i| i as u32);
    let v = named
        .or_else(|| parse_number(text))
        .ok_or_else(|| format!("invalid value {text:?} in {} field {expr:?}", spec.name))?;
    if v < spec.min || v > spec.max {
        return Err(format!("value {v} out of range {}-{} in {} field {expr:?}", spec.min, spec.max, spec.name));
    }
    Ok(v)
}

fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Go's `time.ParseDuration` grammar (`1h30m`, `1.5h`, `90s`, `300ms`), in nanoseconds.
/// Negative durations are accepted as Go does (robfig/cron then runs every second).
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("invalid duration {text:?}: unknown or missing unit {unit:?}")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        if !fraction.is_empty() {
            let digits = fraction.len().min(18);
            let scale = 10i128.pow(digits as u32);
            let frac: i128 = fraction[..digits].parse().map_err(|_| invalid())?;
            part += frac * unit_nanos / scale;
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = after;
    }
    Ok(if negative { -total } else { total })
}

fn has(bits: u64, v: i8) -> bool {
    bits & (1u64 << v) != 0
}

fn days_in_month(year: i16, month: i8) -> i8 {
    Date::new(year, month, 1).map_or(31, |d| d.days_in_month())
}

impl Fields {
    /// Can the day fields ever match? Only a day-of-month restriction on its own can be
    /// impossible (Feb 30); a weekday restriction always finds a day.
    fn can_fire(&self) -> bool {
        if !self.dow_is_star {
            return true;
        }
        (1..=12).filter(|m| has(self.months, *m)).any(|m| {
            // Feb 29 counts: leap years exist.
            let max_day = if m == 2 { 29 } else { days_in_month(2001, m) };
            (1..=max_day).any(|d| has(self.days_of_month, d))
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days_of_month, date.day());
        let dow = has(self.days_of_week, date.weekday().to_sunday_zero_offset());
        if self.dom_is_star || self.dow_is_star { dom && dow } else { dom || dow }
    }

    /// Walks the time zone's constant-offset periods: inside one, wall-clock time maps to
    /// instants one to one, so the first matching wall-clock minute there is the answer unless
    /// it lies past the period's end (a gap skips it; a fold gets the next period's turn).
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        if !self.can_fire() {
            return None;
        }
        let give_up_year = tz.to_datetime(after).year().checked_add(SEARCH_YEARS)?;
        let mut period_start = after;
        let mut inclusive = false;
        loop {
            let offset = tz.to_offset(period_start);
            let period_end = tz.following(period_start).next().map(|t| t.timestamp());
            let start = offset.to_datetime(period_start);
            let first =
                if inclusive { ceil_minute(start)? } else { floor_minute(start).checked_add(MINUTE_SPAN).ok()? };
            let limit = period_end.map(|end| offset.to_datetime(end));
            if first.year() > give_up_year {
                return None;
            }
            if let Some(found) = self.next_wall_clock(first, limit, give_up_year) {
                let at = to_timestamp(offset, found)?;
                if period_end.is_none_or(|end| at < end) {
                    return Some(at);
                }
            }
            period_start = period_end?;
            inclusive = true;
        }
    }

    /// The first wall-clock minute at or after `from` (and before `limit`) that matches.
    fn next_wall_clock(&self, from: DateTime, limit: Option<DateTime>, give_up_year: i16) -> Option<DateTime> {
        let (mut year, mut month, mut day, mut hour, mut minute) =
            (from.year(), from.month(), from.day(), from.hour(), from.minute());
        loop {
            if year > give_up_year {
                return None;
            }
            if let Some(limit) = limit
                && (year, month, day) > (limit.year(), limit.month(), limit.day())
            {
                return None;
            }
            if !has(self.months, month) {
                (day, hour, minute) = (1, 0, 0);
                (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                continue;
            }
            let date = Date::new(year, month, day).ok()?;
            if !self.day_matches(date) {
                (hour, minute) = (0, 0);
                if day >= days_in_month(year, month) {
                    day = 1;
                    (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                } else {
                    day += 1;
                }
                continue;
            }
            if !has(self.hours, hour) {
                minute = 0;
                if hour == 23 {
                    hour = 0;
                    let next = date.tomorrow().ok()?;
                    (year, month, day) = (next.year(), next.month(), next.day());
                } else {
                    hour += 1;
                }
                continue;
            }
            if !has(self.minutes, minute) {
                if minute == 59 {
                    minute = 0;
                    if hour == 23 {
                        hour = 0;
                        let next = date.tomorrow().ok()?;
                        (year, month, day) = (next.year(), next.month(), next.day());
                    } else {
                        hour += 1;
                    }
                } else {
                    minute += 1;
                }
                continue;
            }
            let found = date.at(hour, minute, 0, 0);
            return match limit {
                Some(limit) if found >= limit => None,
                _ => Some(found),
            };
        }
    }
}

const MINUTE_SPAN: SignedDuration = SignedDuration::from_secs(60);

fn floor_minute(dt: DateTime) -> DateTime {
    dt.date().at(dt.hour(), dt.minute(), 0, 0)
}

fn ceil_minute(dt: DateTime) -> Option<DateTime> {
    let floor = floor_minute(dt);
    if floor == dt { Some(dt) } else { floor.checked_add(MINUTE_SPAN).ok() }
}

fn to_timestamp(offset: Offset, dt: DateTime) -> Option<Timestamp> {
    offset.to_timestamp(dt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_utc(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec).unwrap().next_after(ts(after), &TimeZone::UTC).map(|t| t.to_string())
    }

    #[test]
    fn next_times_in_utc() {
        let cases = [
            ("* * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"),
            ("* * * * *", "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"),
            ("*/5 * * * *", "2024-01-01T00:03:00Z", "2024-01-01T00:05:00Z"),
            ("*/5 * * * *", "2024-01-01T00:05:00Z", "2024-01-01T00:10:00Z"),
            ("1-10/2 * * * *", "2024-01-01T00:09:00Z", "2024-01-01T01:01:00Z"),
            ("5/20 * * * *", "2024-01-01T00:26:00Z", "2024-01-01T00:45:00Z"),
            ("0 9 * * MON-fri", "2024-01-05T10:00:00Z", "2024-01-08T09:00:00Z"), // Fri → Mon
            ("0 0 1 jan,Jul *", "2024-02-01T00:00:00Z", "2024-07-01T00:00:00Z"),
            ("0 0 * * 7", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"), // 7 is Sunday
            ("0 0 * * 0", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
            ("0 0 ? * ?", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            ("0 0 29 2 *", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            ("0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"),
            ("59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"),
            // Both day fields restricted: the 13th OR any Friday.
            ("0 0 13 * 5", "2024-09-01T00:00:00Z", "2024-09-06T00:00:00Z"),
            ("0 0 13 * 5", "2024-09-07T00:00:00Z", "2024-09-13T00:00:00Z"),
            // Day-of-month "*" with a weekday: only that weekday.
            ("0 0 * * 5", "2024-09-07T00:00:00Z", "2024-09-13T00:00:00Z"),
            // A stepped "*" counts as restricted (robfig): odd days OR Mondays.
            ("0 0 */2 * 1", "2024-09-01T00:00:00Z", "2024-09-02T00:00:00Z"),
            ("@hourly", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
            ("@daily", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            ("@midnight", "2024-01-01T12:00:00Z", "2024-01-02T00:00:00Z"),
            ("@weekly", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
            ("@monthly", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("@yearly", "2024-01-15T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@annually", "2024-01-15T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@every 1h30m", "2024-01-01T00:00:00.5Z", "2024-01-01T01:30:00Z"),
            ("@every 90s", "2024-01-01T00:00:00Z", "2024-01-01T00:01:30Z"),
            ("@every 100ms", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next_utc(spec, after).as_deref(), Some(want), "{spec} after {after}");
        }
    }

    #[test]
    fn impossible_schedules_end_quickly() {
        for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *"] {
            assert_eq!(next_utc(spec, "2024-01-01T00:00:00Z"), None, "{spec}");
        }
        // The weekday makes it possible again (OR).
        assert!(next_utc("0 0 30 2 1", "2024-01-01T00:00:00Z").is_some());
    }

    #[test]
    fn time_zones_and_dst() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let next = |spec: &str, after: &str| {
            Schedule::parse(spec).unwrap().next_after(ts(after), &ny).map(|t| t.to_zoned(ny.clone()).to_string())
        };
        let cases = [
            ("0 9 * * *", "2024-01-01T00:00:00Z", "2024-01-01T09:00:00-05:00[America/New_York]"),
            // Spring forward: 02:30 does not exist that day, so it is skipped.
            ("30 2 * * *", "2024-03-10T05:00:00Z", "2024-03-11T02:30:00-04:00[America/New_York]"),
            ("0 * * * *", "2024-03-10T06:00:00Z", "2024-03-10T03:00:00-04:00[America/New_York]"),
            // Fall back: 01:00 happens twice and fires twice, then tomorrow.
            ("0 1 * * *", "2024-11-03T04:00:00Z", "2024-11-03T01:00:00-04:00[America/New_York]"),
            ("0 1 * * *", "2024-11-03T05:00:00Z", "2024-11-03T01:00:00-05:00[America/New_York]"),
            ("0 1 * * *", "2024-11-03T06:00:00Z", "2024-11-04T01:00:00-05:00[America/New_York]"),
            // After the first 01:50, the repeated 01:00 still comes before tomorrow.
            ("0 1 * * *", "2024-11-03T05:50:00Z", "2024-11-03T01:00:00-05:00[America/New_York]"),
            ("*/30 * * * *", "2024-11-03T05:30:00Z", "2024-11-03T01:00:00-05:00[America/New_York]"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next(spec, after).as_deref(), Some(want), "{spec} after {after}");
        }
    }

    #[test]
    fn bad_schedules_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("* * * *", "expected exactly 5 fields"),
            ("* * * * * *", "expected exactly 5 fields"),
            ("60 * * * *", "out of range 0-59 in minute"),
            ("* 24 * * *", "out of range 0-23 in hour"),
            ("* * 0 * *", "out of range 1-31 in day-of-month"),
            ("* * * 13 *", "out of range 1-12 in month"),
            ("* * * * 8", "out of range 0-7 in day-of-week"),
            ("5-1 * * * *", "beyond its end"),
            ("*/0 * * * *", "step must be positive"),
            ("a * * * *", "invalid value"),
            ("1,,2 * * * *", "empty list item"),
            ("* * * foo *", "invalid value \"foo\""),
            ("@fortnightly", "unrecognized descriptor"),
            ("@every 5", "unknown or missing unit"),
            ("@every", "unrecognized descriptor"),
            ("TZ=UTC 0 * * * *", "spec.timeZone"),
            ("CRON_TZ=Europe/Paris 0 * * * *", "spec.timeZone"),
        ];
        for (spec, want) in cases {
            let err = Schedule::parse(spec).unwrap_err();
            assert!(err.starts_with(&format!("invalid schedule {spec:?}: ")), "{err}");
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("h").is_err());
    }

    proptest::proptest! {
        #[test]
        fn next_is_strictly_later_and_matches(minute in 0u32..60, hour in 0u32..24, start in 0i64..2_000_000_000) {
            let spec = format!("{minute} {hour} * * *");
            let zone = TimeZone::get("Europe/Berlin").unwrap();
            let after = Timestamp::from_second(start).unwrap();
            let next = Schedule::parse(&spec).unwrap().next_after(after, &zone).unwrap();
            proptest::prop_assert!(next > after);
            proptest::prop_assert!(next.duration_since(after) <= SignedDuration::from_hours(49));
            let local = next.to_zoned(zone);
            // Berlin's gap is 02:00-03:00, so 02:xx schedules may move to the next day but
            // always land on their wall-clock time.
            proptest::prop_assert_eq!((local.hour() as u32, local.minute() as u32), (hour, minute));
        }
    }
}
