//! Cron schedules as a CronJob's `spec.schedule` means them: exactly the grammar Kubernetes
//! accepts through robfig/cron v3's `ParseStandard` (the API server's validation and the CronJob
//! controller both call it), with robfig's error messages, and the next time a schedule fires in
//! a time zone. The API's validation and Tugboat's CronJob controller both use [`Schedule::parse`],
//! so a schedule the API accepts is one the controller can run.
//!
//! Grammar: five fields `minute hour day-of-month month day-of-week`, each a comma list (empty
//! items are skipped, as robfig's `FieldsFunc` does) of `*`, `?` (same as `*`), `N`, `N-M`, with
//! an optional `/step` (`*/5`, `1-10/2`, and `N/step` meaning `N-max/step`); months `JAN`-`DEC`
//! and weekdays `SUN`-`SAT` by name, case-insensitive; weekdays are 0-6 (7 is rejected, as
//! robfig rejects it). Descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
//! (`@midnight`), `@hourly`, and `@every <Go duration>` (e.g. `@every 1h30m`; whole seconds, at
//! least one). A `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix parses (the zone is kept by name, not
//! looked up: that needs the zone database); the API rejects it on create, as Kubernetes does.
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

/// Why a schedule does not parse, in robfig/cron's words (what Kubernetes puts after
/// `spec.schedule: Invalid value: "...": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    /// The zone of a `TZ=`/`CRON_TZ=` prefix, by name.
    time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a constant delay in whole seconds (at least 1), counted from the previous run.
    Every(i64),
}

/// The set of values each field allows, as bitsets, plus whether the day fields held a plain
/// `*`/`?` (robfig's star bit, which decides between cron's AND and OR day matching).
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

/// robfig's `bounds`.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    // Index 0 is unused so that a name's index is its number.
    names: &["", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DAY_OF_WEEK: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Schedule {
    /// Parses a schedule as robfig/cron v3's `ParseStandard` does; errors carry its messages
    /// (`expected exactly 5 fields, found 4: [* * * *]`, `end of range (60) above maximum (59): 60`).
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        parse_spec(spec).map_err(ScheduleError)
    }

    /// The zone a `TZ=`/`CRON_TZ=` prefix named, if any.
    pub fn time_zone(&self) -> Option<&str> {
        self.time_zone.as_deref()
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

/// robfig's `Parser.Parse` with `Minute | Hour | Dom | Month | Dow | Descriptor`.
fn parse_spec(spec: &str) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    let mut time_zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or_default();
        // robfig slices up to the first space and panics without one.
        let Some(space) = spec.find(' ') else {
            return Err(format!("provided bad location {}: no schedule after the time zone", &spec[eq + 1..]));
        };
        time_zone = Some(spec[eq + 1..space].to_string());
        spec = spec[space..].trim();
    }
    let kind = if spec.starts_with('@') {
        parse_descriptor(spec)?
    } else {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
        }
        let (minutes, _) = parse_field(fields[0], &MINUTE)?;
        let (hours, _) = parse_field(fields[1], &HOUR)?;
        let (days_of_month, dom_is_star) = parse_field(fields[2], &DAY_OF_MONTH)?;
        let (months, _) = parse_field(fields[3], &MONTH)?;
        let (days_of_week, dow_is_star) = parse_field(fields[4], &DAY_OF_WEEK)?;
        Kind::Fields(Fields { minutes, hours, days_of_month, months, days_of_week, dom_is_star, dow_is_star })
    };
    Ok(Schedule { kind, time_zone })
}

/// robfig's `parseDescriptor`: the whole (untrimmed) spec names it.
fn parse_descriptor(descriptor: &str) -> Result<Kind, String> {
    let fields = match descriptor {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            let Some(duration) = descriptor.strip_prefix("@every ") else {
                return Err(format!("unrecognized descriptor: {descriptor}"));
            };
            let nanos =
                parse_go_duration(duration).map_err(|e| format!("failed to parse duration {descriptor}: {e}"))?;
            // robfig/cron rounds down to whole seconds and runs at least every second.
            let secs = i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX);
            return Ok(Kind::Every(secs.max(1)));
        }
    };
    parse_spec(fields).map(|s| s.kind)
}

/// robfig's `getField`: a comma list (empty items skipped) into a bitset of allowed values; the
/// flag is robfig's star bit (a plain `*`/`?`, also `*/1`).
fn parse_field(field: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        let (range_bits, range_star) = parse_range(expr, bounds)?;
        bits |= range_bits;
        star |= range_star;
    }
    Ok((bits, star))
}

/// robfig's `getRange`: `number | number "-" number [ "/" number ]`, or `*`/`?`, checked in its
/// order and worded as it words them.
fn parse_range(expr: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (i64::from(bounds.min), i64::from(bounds.max), true)
    } else {
        let start = int_or_name(low_and_high[0], bounds.names)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], bounds.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, false)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = go_atoi(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = i64::from(bounds.max);
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < i64::from(bounds.min) {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", bounds.min));
    }
    if end > i64::from(bounds.max) {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", bounds.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end).step_by(step.min(64) as usize).fold(0u64, |bits, v| bits | (1 << v));
    Ok((bits, star))
}

/// robfig's `parseIntOrName`.
fn int_or_name(text: &str, names: &[&str]) -> Result<i64, String> {
    let lower = text.to_ascii_lowercase();
    match names.iter().position(|n| !n.is_empty() && *n == lower) {
        Some(i) => Ok(i as i64),
        None => go_atoi(text),
    }
}

/// robfig's `mustParseInt`: Go's `strconv.Atoi`, then no negatives.
fn go_atoi(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax"));
    }
    let num: i64 = text
        .parse()
        .map_err(|_| format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: value out of range"))?;
    if num < 0 {
        return Err(format!("negative number ({num}) not allowed: {text}"));
    }
    Ok(num)
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5h`, `90s`, `300ms`) in nanoseconds, with its error
/// messages (`time: invalid duration "banana"`).
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {text:?}");
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
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                (Some(&after[..len]), &after[len..])
            }
            None => (None, after),
        };
        if whole.is_empty() && fraction.is_none_or(str::is_empty) {
            return Err(invalid());
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {text:?}"));
        }
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        if let Some(fraction) = fraction.filter(|f| !f.is_empty()) {
            let digits = fraction.len().min(18);
            let scale = 10i128.pow(digits as u32);
            let frac: i128 = fraction[..digits].parse().map_err(|_| invalid())?;
            part += frac * unit_nanos / scale;
        }
        total = total.checked_add(part).filter(|t| *t <= i128::from(i64::MAX)).ok_or_else(invalid)?;
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
    /// Can the schedule ever fire? Empty fields (a list of only commas) never match; a
    /// day-of-month restriction on its own can be impossible (Feb 30).
    fn can_fire(&self) -> bool {
        if self.minutes == 0 || self.hours == 0 || self.months == 0 {
            return false;
        }
        let dom_possible = (1..=12).filter(|m| has(self.months, *m)).any(|m| {
            // Feb 29 counts: leap years exist.
            let max_day = if m == 2 { 29 } else { days_in_month(2001, m) };
            (1..=max_day).any(|d| has(self.days_of_month, d))
        });
        let dow_possible = self.days_of_week != 0;
        if self.dom_is_star || self.dow_is_star { dom_possible && dow_possible } else { dom_possible || dow_possible }
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
            ("0 0 * * sun", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
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
            ("@every 5m", "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"),
            // Empty list items are skipped, as robfig's FieldsFunc does.
            ("1,,2 * * * *", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"),
            // "*-5" is a star: robfig ignores what follows it.
            ("0 0 * * *-5", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            // A prefixed zone parses (the caller resolves it).
            ("TZ=UTC  5 * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next_utc(spec, after).as_deref(), Some(want), "{spec} after {after}");
        }
    }

    #[test]
    fn impossible_schedules_end_quickly() {
        for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *", ", * * * *", "0 0 * * ,", "0 0 * , *"] {
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

    /// robfig/cron v3's `TestRange`, `TestParseScheduleErrors` and `TestStandardSpecSchedule`
    /// cases that apply to the standard parser, with the whole message Kubernetes returns.
    #[test]
    fn bad_schedules_are_rejected_with_robfigs_words() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
            ("5 j * * *", "failed to parse int from j: strconv.Atoi: parsing \"j\": invalid syntax"),
            ("5--5 * * * *", "too many hyphens: 5--5"),
            ("* * * jan-x *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("*/-12 * * * *", "negative number (-12) not allowed: -12"),
            ("*//2 * * * *", "too many slashes: *//2"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-3 * * * *", "beginning of range (5) beyond end of range (3): 5-3"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("* * * foo *", "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax"),
            ("@unrecognized", "unrecognized descriptor: @unrecognized"),
            ("@every", "unrecognized descriptor: @every"),
            ("@hourly ", "unrecognized descriptor: @hourly "),
            ("@every Xm", "failed to parse duration @every Xm: time: invalid duration \"Xm\""),
            ("@every banana", "failed to parse duration @every banana: time: invalid duration \"banana\""),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
            ("@every 1x", "failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\""),
            ("@every ", "failed to parse duration @every : time: invalid duration \"\""),
        ];
        for (spec, want) in cases {
            assert_eq!(Schedule::parse(spec).unwrap_err().to_string(), want, "{spec:?}");
        }
    }

    #[test]
    fn a_zone_prefix_is_kept_by_name() {
        assert_eq!(Schedule::parse("CRON_TZ=Asia/Tokyo 0 5 * * *").unwrap().time_zone(), Some("Asia/Tokyo"));
        assert_eq!(Schedule::parse("TZ=UTC  @midnight").unwrap().time_zone(), Some("UTC"));
        assert_eq!(Schedule::parse("0 5 * * *").unwrap().time_zone(), None);
        assert!(Schedule::parse("TZ=UTC").is_err(), "a zone and no schedule");
    }

    /// robfig's `TestField`/`TestRange` bitsets, through whole schedules: the same minutes fire.
    #[test]
    fn ranges_and_steps_pick_robfigs_values() {
        let minutes = |field: &str| {
            let schedule = Schedule::parse(&format!("{field} 0 1 1 *")).unwrap();
            let mut at: Timestamp = "2023-12-31T23:59:59Z".parse().unwrap();
            let mut fired = Vec::new();
            while let Some(next) = schedule.next_after(at, &TimeZone::UTC).filter(|t| t.as_second() < 1_704_070_800) {
                fired.push(next.to_zoned(TimeZone::UTC).minute());
                at = next;
            }
            fired
        };
        assert_eq!(minutes("5"), [5]);
        assert_eq!(minutes("5-7"), [5, 6, 7]);
        assert_eq!(minutes("5-7/2"), [5, 7]);
        assert_eq!(minutes("5-6/2"), [5]);
        assert_eq!(minutes("5,6,7"), [5, 6, 7]);
        assert_eq!(minutes("1,5-7/2,3"), [1, 3, 5, 7]);
        assert_eq!(minutes("50/3"), [50, 53, 56, 59]);
        assert_eq!(minutes("*/20"), [0, 20, 40]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-1.5s"), Ok(-1_500_000_000));
        assert_eq!(parse_go_duration("1h2m3s4ms"), Ok(3_723_004_000_000));
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("h").is_err());
        assert!(parse_go_duration(".s").is_err());
        assert!(parse_go_duration("3000000h").is_err(), "beyond Go's int64 nanoseconds");
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
