//! Cron rules read in a time zone: parsing (Unix, seconds-first and Quartz forms) and the
//! fire instants the scheduler needs, computed by croner 4 so that DST changes are right.
//!
//! Accepted forms:
//! - 5 fields, Unix: `minute hour day-of-month month day-of-week` (`30 2 * * *`);
//! - 6 fields, seconds first: `second minute hour day-of-month month day-of-week`;
//! - 7 fields, seconds first and a year last (`0 0 12 * * ? 2030`);
//! - the `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` nicknames.
//!
//! A rule that contains `?` is read as Quartz, the dialect Airbyte writes: `?` means "any"
//! in day-of-month or day-of-week, and numeric weekdays count 1 = Sunday .. 7 = Saturday.
//! Every other rule counts weekdays the Unix way (0 or 7 = Sunday). Weekday names
//! (`MON-FRI`) mean the same in both. When both day-of-month and day-of-week are
//! restricted, a day matches if either matches (Vixie cron's OR). Quartz's `0/15` ("from 0
//! every 15") is accepted in every form.
//!
//! Wall-clock rules follow the zone's clock across DST changes: a 02:30 rule fires at 03:00
//! on a spring-forward day (02:30 does not exist) and once, at the first 02:30, on a
//! fall-back day. Rules that fire at several hours (`*/10 * * * *`) fire in both repeated
//! hours, because both are real, distinct instants.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::CronParser;

/// A cron rule that did not parse. The message names the rule, the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing but whitespace.
    #[error("the cron rule is empty")]
    Empty,
    /// Not 5, 6 or 7 fields.
    #[error(
        "`{expr}` has {count} field(s); a cron rule has 5 (minute hour day-of-month month \
         day-of-week), 6 (second first) or 7 (second first, year last)"
    )]
    FieldCount {
        /// The rule as written.
        expr: String,
        /// How many whitespace-separated fields it has.
        count: usize,
    },
    /// One field is wrong.
    #[error("`{expr}`: the {field} field `{value}` is wrong (it takes {allowed}): {reason}")]
    Field {
        /// The rule as written.
        expr: String,
        /// The field's name, e.g. `day-of-week`.
        field: &'static str,
        /// The field as written.
        value: String,
        /// What the field accepts.
        allowed: &'static str,
        /// croner's explanation.
        reason: String,
    },
    /// The rule is wrong as a whole (no single field could be blamed).
    #[error("`{expr}` is not a valid cron rule: {reason}")]
    Rule {
        /// The rule as written.
        expr: String,
        /// croner's explanation.
        reason: String,
    },
}

/// A cron rule that parsed, together with the time zone whose wall clock it follows.
///
/// It keeps the rule's text (and its last next fire instant), not croner's parsed form: that form holds about 5 KB of
/// one-byte-per-value fields (the year field alone spans 1-5000), so ten thousand
/// connections on distinct rules would hold some 50 MB of it, where their texts take a
/// few hundred KB. The form is built again when a fire instant is asked for, which
/// costs about 3 µs (a release build; `benches/hot_paths.rs`), once per fire of the
/// rule and once per rule when the schedule is rebuilt; the last few hundred forms
/// built are kept (see [`parsed`]), so rules that many connections share are parsed
/// once.
pub struct CronRule {
    expr: Box<str>,
    tz: Tz,
    /// The last answer of [`CronRule::next_after`]: asked at `.0`, the rule fires
    /// next at `.1`, so it does not fire in between and every instant in `[.0, .1)`
    /// has the same answer. The status page and the control API ask for every
    /// connection's next fire on each request; this spares them the parse. Held in
    /// the rule rather than behind a pointer: 10,000 rules would otherwise be 10,000
    /// more small allocations, each pinning the page it landed on.
    next: Mutex<Option<Remembered>>,
}

/// A clone starts from what the rule remembers, which holds for the clone too.
impl Clone for CronRule {
    fn clone(&self) -> Self {
        Self {
            expr: self.expr.clone(),
            tz: self.tz,
            next: Mutex::new(*self.next.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

/// An instant a rule was asked about, and its next fire after it.
type Remembered = (DateTime<Utc>, DateTime<Utc>);

/// The rule as written and its zone, which is all it holds.
impl std::fmt::Debug for CronRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronRule")
            .field("expr", &self.expr)
            .field("tz", &self.tz)
            .finish()
    }
}

/// How many parsed forms are kept for rules asked about lately: about 1.4 MB at most.
const RECENT_FORMS: usize = 256;

/// Parsed forms of rules asked about lately, by trimmed text. When full it is emptied
/// whole: a cache this small need not track which form was used last.
static RECENT: LazyLock<Mutex<HashMap<Box<str>, Arc<Cron>>>> = LazyLock::new(Default::default);

/// The parsed form of `rule` (trimmed), from the recent ones or built now.
fn parsed(rule: &str) -> Result<Arc<Cron>, croner::errors::CronError> {
    if let Some(cron) = RECENT.lock().unwrap_or_else(|p| p.into_inner()).get(rule) {
        return Ok(Arc::clone(cron));
    }
    // Built outside the lock: other rules' lookups need not wait for this one.
    let cron = Arc::new(parser_for(rule).parse(rule)?);
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if recent.len() >= RECENT_FORMS {
        recent.clear();
    }
    recent.insert(rule.into(), Arc::clone(&cron));
    Ok(cron)
}

/// Field names by position, for rules of 5, 6 and 7 fields.
const FIVE: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const SIX: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];
const SEVEN: [&str; 7] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];

impl CronRule {
    /// Parses `expr` as a rule that follows the wall clock of `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<CronRule, CronError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let parser = parser_for(trimmed);
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let nickname = trimmed.starts_with('@');
        if !nickname && !(5..=7).contains(&fields.len()) {
            return Err(CronError::FieldCount {
                expr: expr.to_string(),
                count: fields.len(),
            });
        }
        match parsed(trimmed) {
            Ok(_) => Ok(CronRule {
                expr: expr.into(),
                tz,
                next: Mutex::default(),
            }),
            Err(err) => Err(blame(expr, &fields, nickname, &parser, err)),
        }
    }

    /// The parsed form, built again from the text that parsed at [`CronRule::parse`]:
    /// the same text parses the same way, so this does not fail.
    fn cron(&self) -> Option<Arc<Cron>> {
        match parsed(self.expr.trim()) {
            Ok(cron) => Some(cron),
            Err(error) => {
                tracing::error!(rule = %self.expr, %error, "a rule that parsed before does not parse again");
                None
            }
        }
    }

    /// The rule exactly as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The rule's text, to be moved to other memory and back (see
    /// `reload::relocated`): what is put back must be the text taken out.
    pub(crate) fn text_mut(&mut self) -> &mut Box<str> {
        &mut self.expr
    }

    /// The time zone whose wall clock the rule follows.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire instant strictly after `t`, or `None` if the rule never fires again
    /// (a year field in the past, or a date that never exists such as 30 February).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut last = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((asked, next)) = *last
            && asked <= t
            && t < next
        {
            return Some(next);
        }
        let local = t.with_timezone(&self.tz);
        let next = self
            .cron()?
            .find_next_occurrence(&local, false)
            .ok()
            .map(|fire| fire.with_timezone(&Utc));
        *last = next.map(|next| (t, next));
        next
    }

    /// The newest fire instant in `[not_before, t]`, or `None` if the rule did not fire in
    /// that window. Used to catch up after downtime.
    ///
    /// This searches backwards from `t`, so its cost does not depend on how many times the
    /// rule fired inside the window (a per-second rule over months costs the same as a
    /// yearly one).
    pub fn latest_at_or_before(
        &self,
        t: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if not_before > t {
            return None;
        }
        // croner's backward search agrees with its forward one across DST changes: a fixed
        // time yields the first copy of a repeated hour, and the jump instant for a time
        // that does not exist (tests below hold it to that).
        let found = self
            .cron()?
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()?
            .with_timezone(&Utc);
        (found >= not_before).then_some(found)
    }
}

/// The croner parser for a rule: Quartz weekday numbering when the rule uses Quartz's `?`.
fn parser_for(rule: &str) -> CronParser {
    CronParser::builder()
        .alternative_weekdays(rule.contains('?'))
        .sloppy_ranges(true)
        .build()
}

/// What a field accepts, for messages.
fn allowed(field: &str, quartz: bool) -> &'static str {
    match field {
        "second" | "minute" => "0-59",
        "hour" => "0-23",
        "day-of-month" => "1-31, L, W or ?",
        "month" => "1-12 or JAN-DEC",
        "day-of-week" if quartz => {
            "1-7 (1 = Sunday, as the rule uses Quartz's ?), SUN-SAT, L, # or ?"
        }
        "day-of-week" => "0-7 (0 or 7 = Sunday) or SUN-SAT, L or #",
        "year" => "1-5000",
        _ => "*",
    }
}

/// Turns croner's error into one that names the faulty field.
///
/// croner's messages say what is wrong but not where ("Position 61 is out of bounds"), so
/// each field is tried alone, with every other field set to `*`, and the first one that
/// still fails is blamed.
fn blame(
    expr: &str,
    fields: &[&str],
    nickname: bool,
    parser: &CronParser,
    err: croner::errors::CronError,
) -> CronError {
    let names: &[&str] = match fields.len() {
        5 => &FIVE,
        6 => &SIX,
        7 => &SEVEN,
        _ => &[],
    };
    if !nickname {
        for (i, (field, name)) in fields.iter().zip(names).enumerate() {
            let probe: Vec<&str> = (0..fields.len())
                .map(|j| if j == i { *field } else { "*" })
                .collect();
            if let Err(field_err) = parser.parse(&probe.join(" ")) {
                return CronError::Field {
                    expr: expr.to_string(),
                    field: name,
                    value: (*field).to_string(),
                    allowed: allowed(name, expr.contains('?')),
                    reason: field_err.to_string(),
                };
            }
        }
    }
    CronError::Rule {
        expr: expr.to_string(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;
    use std::time::Instant;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("a valid UTC time")
    }

    /// Every fire instant in `[from, to)`, by iterating `next_after`.
    fn fires_between(
        rule: &CronRule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = from - TimeDelta::seconds(1);
        while let Some(next) = rule.next_after(cursor) {
            if next >= to {
                break;
            }
            out.push(next);
            cursor = next;
        }
        out
    }

    /// The UTC bounds of one local day in `tz`.
    fn local_day(tz: Tz, y: i32, mo: u32, d: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = chrono::NaiveDate::from_ymd_opt(y, mo, d).expect("a valid date");
        let midnight = |date: chrono::NaiveDate| {
            tz.from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
                .earliest()
                .expect("midnight exists")
                .with_timezone(&Utc)
        };
        (midnight(day), midnight(day.succ_opt().expect("a next day")))
    }

    #[test]
    fn a_five_field_rule_fires_on_the_minute() {
        let rule = CronRule::parse("30 2 * * *", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 2, 30, 0))
        );
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 2, 30, 0)),
            Some(utc(2026, 1, 2, 2, 30, 0)),
            "strictly after"
        );
    }

    #[test]
    fn a_paris_0230_rule_fires_exactly_once_on_the_spring_forward_day() {
        let rule = CronRule::parse("30 2 * * *", Paris).expect("parses");
        let (start, end) = local_day(Paris, 2026, 3, 29);
        let fires = fires_between(&rule, start, end);
        // 02:30 does not exist that day; croner runs it when the clock jumps, at 03:00 CEST.
        assert_eq!(fires, vec![utc(2026, 3, 29, 1, 0, 0)]);
    }

    #[test]
    fn a_paris_0230_rule_fires_exactly_once_on_the_fall_back_day() {
        let rule = CronRule::parse("30 2 * * *", Paris).expect("parses");
        let (start, end) = local_day(Paris, 2026, 10, 25);
        let fires = fires_between(&rule, start, end);
        // The first 02:30 (CEST, UTC+2).
        assert_eq!(fires, vec![utc(2026, 10, 25, 0, 30, 0)]);
    }

    #[test]
    fn a_paris_rule_fires_once_a_day_through_both_dst_changes_of_a_year() {
        let rule = CronRule::parse("30 2 * * *", Paris).expect("parses");
        let fires = fires_between(&rule, utc(2026, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
        assert_eq!(fires.len(), 365);
    }

    #[test]
    fn a_new_york_rule_keeps_its_wall_clock_time_after_a_dst_change() {
        let rule = CronRule::parse("0 30 9 * * *", New_York).expect("parses");
        // Before spring-forward (2026-03-08): EST, UTC-5.
        assert_eq!(
            rule.next_after(utc(2026, 3, 6, 0, 0, 0)),
            Some(utc(2026, 3, 6, 14, 30, 0))
        );
        // After: EDT, UTC-4, and still 09:30 local.
        let after = rule.next_after(utc(2026, 3, 9, 0, 0, 0)).expect("fires");
        assert_eq!(after, utc(2026, 3, 9, 13, 30, 0));
        let local = after.with_timezone(&New_York);
        assert_eq!(local.format("%H:%M").to_string(), "09:30");
        // And again after fall-back (2026-11-01).
        let after = rule.next_after(utc(2026, 11, 2, 0, 0, 0)).expect("fires");
        assert_eq!(after, utc(2026, 11, 2, 14, 30, 0));
    }

    #[test]
    fn an_interval_rule_fires_in_both_copies_of_a_repeated_hour() {
        let rule = CronRule::parse("0 * * * *", Paris).expect("parses");
        let (start, end) = local_day(Paris, 2026, 10, 25);
        assert_eq!(fires_between(&rule, start, end).len(), 25);
    }

    #[test]
    fn a_six_field_rule_takes_seconds_first() {
        let rule = CronRule::parse("*/5 * * * * *", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 0, 1)),
            Some(utc(2026, 1, 1, 0, 0, 5))
        );
    }

    #[test]
    fn a_quartz_rule_as_airbyte_writes_it_fires_at_noon() {
        let rule = CronRule::parse("0 0 12 * * ?", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 13, 0, 0)),
            Some(utc(2026, 1, 2, 12, 0, 0))
        );
    }

    #[test]
    fn a_quartz_rule_with_a_question_mark_in_day_of_month_uses_the_weekday() {
        // Quartz counts weekdays from 1 = Sunday, so 2 is Monday. 2026-01-05 is a Monday.
        let rule = CronRule::parse("0 0 12 ? * 2", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 5, 12, 0, 0))
        );
        let named = CronRule::parse("0 0 12 ? * MON-FRI", Tz::UTC).expect("parses");
        // 2026-01-03 is a Saturday: next is Monday.
        assert_eq!(
            named.next_after(utc(2026, 1, 3, 0, 0, 0)),
            Some(utc(2026, 1, 5, 12, 0, 0))
        );
    }

    #[test]
    fn a_quartz_step_from_zero_is_accepted() {
        let rule = CronRule::parse("0 0/15 * * * ?", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 1, 0)),
            Some(utc(2026, 1, 1, 0, 15, 0))
        );
    }

    #[test]
    fn a_seven_field_rule_with_a_year_fires_only_in_that_year() {
        let rule = CronRule::parse("0 0 12 * * ? 2030", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2030, 1, 1, 12, 0, 0))
        );
        assert_eq!(rule.next_after(utc(2031, 1, 1, 0, 0, 0)), None);
        let any_year = CronRule::parse("0 0 12 * * ? *", Tz::UTC).expect("parses");
        assert_eq!(
            any_year.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 12, 0, 0))
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_as_or() {
        // The 1st of the month, or any Monday. 2026-01-02 is a Friday; the next Monday is
        // the 5th, well before 1 February.
        let rule = CronRule::parse("0 0 1 * 1", Tz::UTC).expect("parses");
        assert_eq!(
            rule.next_after(utc(2026, 1, 2, 0, 0, 0)),
            Some(utc(2026, 1, 5, 0, 0, 0))
        );
    }

    #[test]
    fn the_rule_and_time_zone_are_kept_as_written() {
        let rule = CronRule::parse("0 0 12 * * ?", Paris).expect("parses");
        assert_eq!(rule.expr(), "0 0 12 * * ?");
        assert_eq!(rule.timezone(), Paris);
    }

    #[test]
    fn a_bad_minute_is_named_with_the_reason() {
        let err = CronRule::parse("61 * * * *", Tz::UTC).expect_err("rejected");
        let msg = err.to_string();
        assert!(msg.contains("minute field `61`"), "{msg}");
        assert!(msg.contains("61 * * * *"), "{msg}");
    }

    #[test]
    fn a_bad_day_of_week_in_a_six_field_rule_is_named() {
        let err = CronRule::parse("0 0 12 * * FOO", Tz::UTC).expect_err("rejected");
        assert!(err.to_string().contains("day-of-week field"), "{err}");
    }

    #[test]
    fn a_bad_year_is_named() {
        let err = CronRule::parse("0 0 12 * * ? 20x0", Tz::UTC).expect_err("rejected");
        assert!(err.to_string().contains("year field `20x0`"), "{err}");
    }

    #[test]
    fn a_rule_with_too_many_fields_says_how_many_it_has() {
        let err = CronRule::parse("* * * * * * * *", Tz::UTC).expect_err("rejected");
        assert_eq!(
            err,
            CronError::FieldCount {
                expr: "* * * * * * * *".into(),
                count: 8
            }
        );
        assert!(err.to_string().contains("has 8 field(s)"), "{err}");
        let err = CronRule::parse("* * *", Tz::UTC).expect_err("rejected");
        assert!(err.to_string().contains("has 3 field(s)"), "{err}");
    }

    #[test]
    fn an_empty_rule_is_rejected() {
        assert_eq!(
            CronRule::parse("  ", Tz::UTC).expect_err("rejected"),
            CronError::Empty
        );
    }

    #[test]
    fn the_latest_fire_of_a_daily_rule_is_found_in_a_window() {
        let rule = CronRule::parse("30 2 * * *", Tz::UTC).expect("parses");
        let t = utc(2026, 1, 10, 12, 0, 0);
        assert_eq!(
            rule.latest_at_or_before(t, utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 10, 2, 30, 0))
        );
        // The window's ends are inclusive.
        let fire = utc(2026, 1, 10, 2, 30, 0);
        assert_eq!(rule.latest_at_or_before(fire, fire), Some(fire));
        // A window with no fire in it.
        assert_eq!(rule.latest_at_or_before(t, utc(2026, 1, 10, 3, 0, 0)), None);
        // An empty window.
        assert_eq!(rule.latest_at_or_before(t, t + TimeDelta::seconds(1)), None);
    }

    #[test]
    fn the_latest_fire_of_a_per_second_rule_over_thirty_days_is_found_fast() {
        let rule = CronRule::parse("* * * * * *", Tz::UTC).expect("parses");
        let t = utc(2026, 2, 1, 0, 0, 0) + TimeDelta::milliseconds(500);
        let not_before = t - TimeDelta::days(30);
        let started = Instant::now();
        let latest = rule.latest_at_or_before(t, not_before);
        let took = started.elapsed();
        assert_eq!(latest, Some(utc(2026, 2, 1, 0, 0, 0)));
        assert!(took.as_millis() < 100, "took {took:?}");
    }

    #[test]
    fn the_latest_fire_on_a_fall_back_day_is_the_one_that_really_fires() {
        let rule = CronRule::parse("30 2 * * *", Paris).expect("parses");
        // After both copies of 02:30 on 2026-10-25 (the second is 01:30 UTC).
        let t = utc(2026, 10, 25, 1, 45, 0);
        assert_eq!(
            rule.latest_at_or_before(t, utc(2026, 10, 20, 0, 0, 0)),
            Some(utc(2026, 10, 25, 0, 30, 0))
        );
    }

    #[test]
    fn the_latest_fire_on_a_spring_forward_day_is_the_jump_instant() {
        let rule = CronRule::parse("30 2 * * *", Paris).expect("parses");
        // 02:30 does not exist on 2026-03-29; the rule fired at 03:00 CEST (01:00 UTC).
        let t = utc(2026, 3, 29, 1, 30, 0);
        assert_eq!(
            rule.latest_at_or_before(t, utc(2026, 3, 20, 0, 0, 0)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
    }

    #[test]
    fn the_latest_fire_of_an_hourly_rule_in_a_repeated_hour_is_the_second_copy() {
        let rule = CronRule::parse("0 * * * *", Paris).expect("parses");
        // 02:00 CET, the second 02:00 of 2026-10-25, is 01:00 UTC.
        let t = utc(2026, 10, 25, 1, 0, 30);
        assert_eq!(
            rule.latest_at_or_before(t, utc(2026, 10, 24, 0, 0, 0)),
            Some(utc(2026, 10, 25, 1, 0, 0))
        );
        // And the first 02:00 (CEST) is found just before it.
        assert_eq!(
            rule.latest_at_or_before(utc(2026, 10, 25, 0, 59, 59), utc(2026, 10, 24, 0, 0, 0)),
            Some(utc(2026, 10, 25, 0, 0, 0))
        );
    }

    #[test]
    fn the_remembered_next_fire_answers_only_between_the_instant_asked_and_that_fire() {
        let rule = CronRule::parse("0 */10 * * * *", Tz::UTC).expect("parses");
        let asked = utc(2026, 1, 1, 0, 3, 0);
        assert_eq!(rule.next_after(asked), Some(utc(2026, 1, 1, 0, 10, 0)));
        // Later, before that fire: the same answer.
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 9, 59)),
            Some(utc(2026, 1, 1, 0, 10, 0))
        );
        // At the fire, after it, and before the instant first asked: computed afresh.
        assert_eq!(
            rule.next_after(utc(2026, 1, 1, 0, 10, 0)),
            Some(utc(2026, 1, 1, 0, 20, 0))
        );
        assert_eq!(
            rule.next_after(utc(2025, 12, 31, 23, 55, 0)),
            Some(utc(2026, 1, 1, 0, 0, 0))
        );
        // A clone is the same rule and shares what was remembered.
        let clone = rule.clone();
        assert_eq!(
            clone.next_after(utc(2025, 12, 31, 23, 58, 0)),
            Some(utc(2026, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn a_rule_that_never_fires_again_gives_none_quickly() {
        let rule = CronRule::parse("0 0 30 2 *", Tz::UTC).expect("parses");
        let started = Instant::now();
        assert_eq!(rule.next_after(utc(2026, 1, 1, 0, 0, 0)), None);
        assert_eq!(
            rule.latest_at_or_before(utc(2026, 1, 1, 0, 0, 0), utc(2000, 1, 1, 0, 0, 0)),
            None
        );
        assert!(
            started.elapsed().as_secs() < 5,
            "took {:?}",
            started.elapsed()
        );
    }
}
