//! Airbyte's schedules as cronbyte rules: a basic schedule ("every N units", counted by
//! Airbyte from the last run) becomes the nearest cron rule, phased on the last sync; a cron
//! rule's zone is made one cronbyte reads; and, for the public API, which stores cron rules
//! in UTC only, a rule in another zone is moved to UTC as closely as today's offset allows.
//! Each conversion says in words what it changed, for the comment beside it.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::airbyte::BasicUnit;
use crate::airbyte::schedule::{every, fixed_offset_minutes};

/// A cron rule standing in for one of Airbyte's schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// A Quartz rule, seconds first, read in UTC.
    pub expression: String,
    /// Whether it fires exactly when Airbyte would have.
    pub exact: bool,
    /// What changed, in words: `every 24 hours from the last sync at 03:17 UTC -> daily at
    /// 03:17 UTC`, and why when the rule is not exact.
    pub note: String,
}

/// Periods in minutes that a cron rule can repeat on exactly: steps that divide an hour,
/// and hour steps that divide a day.
const EXACT_MINUTES: [i64; 19] = [
    1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440,
];

/// The rule nearest to "every `units` `unit` from `last_sync`", in UTC. When no cron rule
/// repeats on that period, the rule chosen syncs at least as often as Airbyte did (so no
/// data arrives later than before), except where the note says otherwise.
pub fn basic_rule(units: i64, unit: BasicUnit, last_sync: DateTime<Utc>) -> Converted {
    let from = format!(
        "{} from the last sync {}",
        every(units, unit),
        when(unit, units, last_sync)
    );
    let (expression, target, why) = match unit {
        BasicUnit::Minutes => by_minutes(units, last_sync),
        BasicUnit::Hours => by_minutes(units.saturating_mul(60), last_sync),
        BasicUnit::Days => by_days(units, last_sync),
        BasicUnit::Weeks => by_weeks(units, last_sync),
        BasicUnit::Months => by_months(units, last_sync),
    };
    let note = match &why {
        None => format!("{from} -> {target}"),
        Some(why) => format!("{from} -> {target}: {why}"),
    };
    Converted {
        expression,
        exact: why.is_none(),
        note,
    }
}

/// Where the last sync was, as much of it as the period needs.
fn when(unit: BasicUnit, units: i64, t: DateTime<Utc>) -> String {
    let clock = t.format("%H:%M UTC");
    match unit {
        BasicUnit::Minutes | BasicUnit::Hours => format!("at {clock}"),
        BasicUnit::Days if units == 1 => format!("at {clock}"),
        BasicUnit::Weeks => format!("on {} at {clock}", day_name(t.weekday())),
        _ => format!(
            "on {} {} at {clock}",
            t.format("%Y-%m-%d"),
            day_name(t.weekday())
        ),
    }
}

type Rule = (String, String, Option<String>);

/// A period of `minutes` (any unit up to days comes through here in minutes).
fn by_minutes(minutes: i64, t: DateTime<Utc>) -> Rule {
    if minutes >= 1440 && minutes % 1440 == 0 {
        return by_days(minutes / 1440, t);
    }
    let step = EXACT_MINUTES
        .iter()
        .copied()
        .filter(|p| *p <= minutes.max(1))
        .max()
        .unwrap_or(1);
    let (expression, target) = exact_minutes(step, t);
    let why = (step != minutes).then(|| {
        format!(
            "no cron rule repeats every {} (a rule starts over each hour and each day), so \
             this syncs more often than Airbyte did",
            span(minutes)
        )
    });
    (expression, target, why)
}

/// `90 minutes`, `5 hours`.
fn span(minutes: i64) -> String {
    if minutes % 60 == 0 {
        every(minutes / 60, BasicUnit::Hours)
            .trim_start_matches("every ")
            .to_owned()
    } else {
        every(minutes, BasicUnit::Minutes)
            .trim_start_matches("every ")
            .to_owned()
    }
}

/// The rule for a period in [`EXACT_MINUTES`], phased on `t`.
fn exact_minutes(step: i64, t: DateTime<Utc>) -> (String, String) {
    let (minute, hour) = (i64::from(t.minute()), i64::from(t.hour()));
    match step {
        1 => ("0 * * * * ?".into(), "every minute".into()),
        2..=4 => {
            let start = minute % step;
            (
                format!("0 {start}/{step} * * * ?"),
                format!("every {step} minutes from minute {start} of each hour"),
            )
        }
        5..=30 => {
            let start = minute % step;
            let at: Vec<String> = (start..60)
                .step_by(step as usize)
                .map(|m| m.to_string())
                .collect();
            (
                format!("0 {start}/{step} * * * ?"),
                format!(
                    "every {step} minutes, at minute {} of each hour",
                    and_list(&at)
                ),
            )
        }
        60 => (
            format!("0 {minute} * * * ?"),
            format!("hourly at minute {minute}"),
        ),
        1440 => (
            format!("0 {minute} {hour} * * ?"),
            format!("daily at {hour:02}:{minute:02} UTC"),
        ),
        _ => {
            let hours = step / 60;
            let start = hour % hours;
            let at: Vec<String> = (start..24)
                .step_by(hours as usize)
                .map(|h| format!("{h:02}:{minute:02}"))
                .collect();
            (
                format!("0 {minute} {start}/{hours} * * ?"),
                format!("every {hours} hours, at {} UTC", and_list(&at)),
            )
        }
    }
}

fn by_days(days: i64, t: DateTime<Utc>) -> Rule {
    let (minute, hour, day) = (t.minute(), t.hour(), i64::from(t.day()));
    match days {
        1 => (
            format!("0 {minute} {hour} * * ?"),
            format!("daily at {hour:02}:{minute:02} UTC"),
            None,
        ),
        d if d % 7 == 0 => by_weeks(d / 7, t),
        2..=27 => {
            let start = (day - 1) % days + 1;
            let at: Vec<String> = (start..=31).step_by(days as usize).map(ordinal).collect();
            (
                format!("0 {minute} {hour} {start}/{days} * ?"),
                format!(
                    "on the {} of each month at {hour:02}:{minute:02} UTC",
                    and_list(&at)
                ),
                Some(format!(
                    "a cron rule counts days within the month and starts over on the 1st, so \
                     the gap across a month's end is shorter than {days} days"
                )),
            )
        }
        _ => {
            let (expression, target, day_note) = monthly(1, t);
            let often = if days <= 31 {
                "about as often as Airbyte did"
            } else {
                "more often than Airbyte did"
            };
            let why =
                format!("no cron rule repeats every {days} days, so monthly instead, {often}");
            (expression, target, Some(joined(why, day_note)))
        }
    }
}

fn by_weeks(weeks: i64, t: DateTime<Utc>) -> Rule {
    let (minute, hour) = (t.minute(), t.hour());
    let day = t.weekday();
    let expression = format!("0 {minute} {hour} ? * {}", short_day(day));
    let target = format!("weekly on {} at {hour:02}:{minute:02} UTC", day_name(day));
    let why = (weeks != 1).then(|| {
        format!(
            "no cron rule repeats every {weeks} weeks (weeks do not divide months), so weekly \
             instead, more often than Airbyte did"
        )
    });
    (expression, target, why)
}

fn by_months(months: i64, t: DateTime<Utc>) -> Rule {
    let (expression, target, day_note) = monthly(months, t);
    let why = if months > 12 {
        Some(format!(
            "no cron rule repeats every {months} months, so yearly instead, more often than \
             Airbyte did"
        ))
    } else if 12 % months != 0 {
        Some(format!(
            "a cron rule counts months within the year and starts over in January, so the gap \
             across a year's end is shorter than {months} months"
        ))
    } else {
        None
    };
    let why = match (why, day_note) {
        (Some(why), note) => Some(joined(why, note)),
        (None, note) => note,
    };
    (expression, target, why)
}

/// Every `months` months (1 to 12; more is yearly) on the last sync's day of the month,
/// and a note when that day is not in every month.
fn monthly(months: i64, t: DateTime<Utc>) -> (String, String, Option<String>) {
    let (minute, hour, day, month) = (t.minute(), t.hour(), t.day(), i64::from(t.month()));
    // The 29th to the 31st are missing from some months, where a rule naming them would not
    // fire at all; the last day of the month keeps one sync a month.
    let (day_field, day_text, day_note) = if day <= 28 {
        (
            day.to_string(),
            format!("the {}", ordinal(i64::from(day))),
            None,
        )
    } else {
        (
            "L".to_owned(),
            "the last day".to_owned(),
            Some(format!(
                "the {} is not in every month, so on the last day of the month instead",
                ordinal(i64::from(day))
            )),
        )
    };
    let clock = format!("{hour:02}:{minute:02} UTC");
    let (expression, target) = match months {
        1 => (
            format!("0 {minute} {hour} {day_field} * ?"),
            format!("monthly on {day_text} at {clock}"),
        ),
        m if m >= 12 => (
            format!("0 {minute} {hour} {day_field} {month} ?"),
            format!("yearly on {day_text} of {} at {clock}", month_name(month)),
        ),
        m => {
            let start = (month - 1) % m + 1;
            let at: Vec<String> = (start..=12).step_by(m as usize).map(month_name).collect();
            (
                format!("0 {minute} {hour} {day_field} {start}/{m} ?"),
                format!("on {day_text} of {} at {clock}", and_list(&at)),
            )
        }
    };
    (expression, target, day_note)
}

fn joined(why: String, more: Option<String>) -> String {
    match more {
        Some(more) => format!("{why}; {more}"),
        None => why,
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn short_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "MON",
        Weekday::Tue => "TUE",
        Weekday::Wed => "WED",
        Weekday::Thu => "THU",
        Weekday::Fri => "FRI",
        Weekday::Sat => "SAT",
        Weekday::Sun => "SUN",
    }
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn month_name(month: i64) -> String {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    usize::try_from(month - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| month.to_string(), |n| (*n).to_owned())
}

/// The zone cronbyte reads for Airbyte's `cronTimeZone`: a tz database id as it is, and a
/// fixed whole-hour offset as the `Etc/GMT` zone of that offset (whose sign is inverted by
/// the tz database's convention: `+02:00` is `Etc/GMT-2`). `Err` says why there is none.
pub fn zone_for_cronbyte(zone: &str) -> Result<(Tz, Option<String>), String> {
    if let Ok(tz) = zone.parse::<Tz>() {
        return Ok((tz, None));
    }
    let Some(minutes) = fixed_offset_minutes(zone) else {
        return Err(format!("the time zone {zone:?} is not one cronbyte knows"));
    };
    if minutes % 60 != 0 {
        return Err(format!(
            "the fixed offset {zone} is not a whole number of hours, and cronbyte reads rules \
             only in tz database zones"
        ));
    }
    let hours = minutes / 60;
    let name = match hours {
        0 => "Etc/GMT".to_owned(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    };
    match name.parse::<Tz>() {
        Ok(tz) => Ok((
            tz,
            Some(format!(
                "Airbyte's fixed offset {zone} is the zone {name} (its sign inverted, as the tz \
                 database writes it)"
            )),
        )),
        Err(_) => Err(format!("no tz database zone has the fixed offset {zone}")),
    }
}

/// A cron rule read in `zone` moved to UTC, for an API that stores rules in UTC only, and
/// what that costs in words. The hours (and minutes) are shifted by the zone's offset at
/// `now` when the rule names one minute and whole hours on every day of every month;
/// otherwise the rule is kept as written and read in UTC, and the note says how far off
/// that is.
pub fn cron_in_utc(expression: &str, zone: &str, now: DateTime<Utc>) -> (String, String) {
    let offset = match zone.parse::<Tz>() {
        Ok(tz) => {
            tz.offset_from_utc_datetime(&now.naive_utc())
                .fix()
                .local_minus_utc()
                / 60
        }
        Err(_) => fixed_offset_minutes(zone).unwrap_or(0),
    };
    let moves = seasonal(zone, now);
    let offset_text = format!(
        "{}{:02}:{:02}",
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 60,
        offset.abs() % 60
    );
    match shift(expression, offset) {
        Some(shifted) => {
            let mut note = format!(
                "the public API keeps cron rules in UTC only: restored as {shifted:?} in UTC, \
                 the same instants as {expression:?} in {zone} at today's offset ({offset_text})"
            );
            if moves {
                note.push_str(&format!(
                    "; it is an hour off while {zone} is on its other (summer or winter) time"
                ));
            }
            (shifted, note)
        }
        None => (
            expression.to_owned(),
            format!(
                "the public API keeps cron rules in UTC only, and {expression:?} cannot be moved \
                 out of {zone} field by field: restored as {expression:?} in UTC, which fires \
                 {offset_text} hours away from before"
            ),
        ),
    }
}

/// Whether `zone`'s offset changes over the year (summer time).
fn seasonal(zone: &str, now: DateTime<Utc>) -> bool {
    let Ok(tz) = zone.parse::<Tz>() else {
        return false;
    };
    let year = now.year();
    let offset_on = |month: u32| {
        Utc.with_ymd_and_hms(year, month, 1, 12, 0, 0)
            .single()
            .map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix())
    };
    offset_on(1) != offset_on(7)
}

/// `expression` with its minute and hours moved `offset` minutes west, when its fields allow
/// it: seconds and minute single numbers, hours numbers, and every day of every month.
fn shift(expression: &str, offset: i32) -> Option<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return None;
    }
    let any = |f: &str| f == "*" || f == "?";
    let every_day = any(fields[3]) && any(fields[4]) && any(fields[5]);
    let every_year = fields.get(6).is_none_or(|f| *f == "*");
    let minute: i32 = fields[1].parse().ok().filter(|m| (0..60).contains(m))?;
    let hours: Vec<i32> = fields[2]
        .split(',')
        .map(|h| h.parse().ok().filter(|h| (0..24).contains(h)))
        .collect::<Option<_>>()?;
    if !every_day || !every_year || fields[0].parse::<u32>().is_err() {
        return None;
    }
    let mut shifted_hours: Vec<i32> = hours
        .iter()
        .map(|h| (h * 60 + minute - offset).div_euclid(60).rem_euclid(24))
        .collect();
    shifted_hours.sort_unstable();
    shifted_hours.dedup();
    let new_minute = (minute - offset).rem_euclid(60);
    let hours_text: Vec<String> = shifted_hours.iter().map(i32::to_string).collect();
    let mut out = vec![
        fields[0].to_owned(),
        new_minute.to_string(),
        hours_text.join(","),
    ];
    out.extend(fields[3..].iter().map(|f| (*f).to_owned()));
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::CronRule;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    /// The rule's next fire instants after `from`, in UTC.
    fn fires(expression: &str, from: &str, count: usize) -> Vec<String> {
        let rule = CronRule::parse(expression, Tz::UTC)
            .unwrap_or_else(|e| panic!("{expression} parses: {e}"));
        let mut t = at(from);
        (0..count)
            .map(|_| {
                t = rule.next_after(t).expect("fires again");
                t.format("%Y-%m-%d %H:%M").to_string()
            })
            .collect()
    }

    #[test]
    fn every_24_hours_becomes_daily_at_the_last_sync_s_time() {
        let c = basic_rule(24, BasicUnit::Hours, at("2026-03-03T03:17:42Z"));
        assert_eq!(c.expression, "0 17 3 * * ?");
        assert!(c.exact);
        assert_eq!(
            c.note,
            "every 24 hours from the last sync at 03:17 UTC -> daily at 03:17 UTC"
        );
    }

    #[test]
    fn minute_steps_that_divide_the_hour_keep_their_phase() {
        let c = basic_rule(15, BasicUnit::Minutes, at("2026-03-03T03:17:00Z"));
        assert_eq!(c.expression, "0 2/15 * * * ?");
        assert!(c.exact);
        assert_eq!(
            fires(&c.expression, "2026-03-03T03:17:00Z", 3),
            ["2026-03-03 03:32", "2026-03-03 03:47", "2026-03-03 04:02"]
        );
        assert!(
            c.note
                .ends_with("every 15 minutes, at minute 2, 17, 32 and 47 of each hour")
        );
    }

    #[test]
    fn minutes_that_do_not_divide_the_hour_sync_more_often_and_say_so() {
        let c = basic_rule(45, BasicUnit::Minutes, at("2026-03-03T03:17:00Z"));
        assert_eq!(c.expression, "0 17/30 * * * ?");
        assert!(!c.exact);
        assert!(
            c.note.contains("no cron rule repeats every 45 minutes"),
            "{}",
            c.note
        );
        assert!(c.note.contains("more often"), "{}", c.note);
        let ninety = basic_rule(90, BasicUnit::Minutes, at("2026-03-03T03:17:00Z"));
        assert_eq!(ninety.expression, "0 17 * * * ?");
        assert!(
            ninety.note.contains("hourly at minute 17"),
            "{}",
            ninety.note
        );
    }

    #[test]
    fn hour_steps_that_divide_the_day_keep_their_phase_and_others_round_down() {
        let six = basic_rule(6, BasicUnit::Hours, at("2026-03-03T08:05:00Z"));
        assert_eq!(six.expression, "0 5 2/6 * * ?");
        assert!(six.exact);
        assert_eq!(
            fires(&six.expression, "2026-03-03T08:05:00Z", 2),
            ["2026-03-03 14:05", "2026-03-03 20:05"]
        );
        let five = basic_rule(5, BasicUnit::Hours, at("2026-03-03T08:05:00Z"));
        assert_eq!(five.expression, "0 5 0/4 * * ?");
        assert!(!five.exact);
        let two_days = basic_rule(48, BasicUnit::Hours, at("2026-03-03T08:05:00Z"));
        assert_eq!(two_days.expression, "0 5 8 1/2 * ?");
        assert!(two_days.note.contains("month's end"), "{}", two_days.note);
    }

    #[test]
    fn weeks_months_and_long_days_choose_a_rule_and_say_what_it_costs() {
        let tuesday = at("2026-03-03T03:17:00Z");
        let weekly = basic_rule(1, BasicUnit::Weeks, tuesday);
        assert_eq!(weekly.expression, "0 17 3 ? * TUE");
        assert!(weekly.exact);
        assert_eq!(
            fires(&weekly.expression, "2026-03-03T03:17:00Z", 1),
            ["2026-03-10 03:17"]
        );
        let fortnight = basic_rule(14, BasicUnit::Days, tuesday);
        assert_eq!(fortnight.expression, "0 17 3 ? * TUE");
        assert!(
            fortnight.note.contains("every 2 weeks"),
            "{}",
            fortnight.note
        );
        let quarterly = basic_rule(3, BasicUnit::Months, tuesday);
        assert_eq!(quarterly.expression, "0 17 3 3 3/3 ?");
        assert!(quarterly.exact);
        assert_eq!(
            fires(&quarterly.expression, "2026-03-03T03:17:00Z", 2),
            ["2026-06-03 03:17", "2026-09-03 03:17"]
        );
        let end_of_month = basic_rule(1, BasicUnit::Months, at("2026-01-31T00:00:00Z"));
        assert_eq!(end_of_month.expression, "0 0 0 L * ?");
        assert!(
            end_of_month.note.contains("last day"),
            "{}",
            end_of_month.note
        );
        let yearly = basic_rule(24, BasicUnit::Months, tuesday);
        assert_eq!(yearly.expression, "0 17 3 3 3 ?");
        assert!(yearly.note.contains("yearly instead"), "{}", yearly.note);
        let long = basic_rule(45, BasicUnit::Days, tuesday);
        assert_eq!(long.expression, "0 17 3 3 * ?");
        assert!(long.note.contains("more often"), "{}", long.note);
    }

    #[test]
    fn every_rule_chosen_parses_in_cronbyte() {
        let times = [
            "2026-03-03T03:17:42Z",
            "2026-12-31T23:59:59Z",
            "2026-02-28T00:00:00Z",
        ];
        for unit in [
            BasicUnit::Minutes,
            BasicUnit::Hours,
            BasicUnit::Days,
            BasicUnit::Weeks,
            BasicUnit::Months,
        ] {
            for units in [1, 2, 3, 5, 7, 13, 24, 25, 36, 59, 60, 61, 90, 1440, 10_000] {
                for time in times {
                    let c = basic_rule(units, unit, at(time));
                    assert!(
                        CronRule::parse(&c.expression, Tz::UTC).is_ok(),
                        "every {units} {unit:?} from {time}: {} does not parse",
                        c.expression
                    );
                }
            }
        }
    }

    #[test]
    fn fixed_whole_hour_offsets_become_etc_zones() {
        let (tz, note) = zone_for_cronbyte("+02:00").unwrap();
        assert_eq!(tz.name(), "Etc/GMT-2");
        assert!(note.unwrap().contains("Etc/GMT-2"));
        assert_eq!(
            zone_for_cronbyte("Europe/Paris").unwrap(),
            (Tz::Europe__Paris, None)
        );
        assert!(zone_for_cronbyte("+05:30").is_err());
        assert!(zone_for_cronbyte("Mars/Olympus").is_err());
    }

    #[test]
    fn a_rule_in_a_zone_is_moved_to_utc_at_today_s_offset() {
        let summer = at("2026-07-01T00:00:00Z");
        let (rule, note) = cron_in_utc("0 30 1,12 * * ?", "Europe/Paris", summer);
        assert_eq!(rule, "0 30 10,23 * * ?");
        assert!(
            note.contains("+02:00") && note.contains("an hour off"),
            "{note}"
        );
        let (kept, note) = cron_in_utc("0 0 12 ? * MON", "Europe/Paris", summer);
        assert_eq!(kept, "0 0 12 ? * MON");
        assert!(note.contains("cannot be moved"), "{note}");
        let (india, _) = cron_in_utc("0 0 12 * * ?", "Asia/Kolkata", summer);
        assert_eq!(india, "0 30 6 * * ?");
    }
}
