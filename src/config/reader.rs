//! Typed reads from the merged configuration tree, each recording a problem (with the key's
//! full path) instead of stopping at the first one.
//!
//! Reading a key marks it as known; whatever is left in a table when it is finished is an
//! unknown key, reported with a did-you-mean taken from the keys that were read. So the
//! list of known keys is the code that reads them, and the two cannot drift apart.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use config::{Map, Value, ValueKind};
use secrecy::SecretString;

use super::problem::Problem;

/// Where values set through the environment come from, as the config crate records it.
const ENV_ORIGIN: &str = "the environment";

/// The problems found so far.
pub(super) type Problems = Vec<Problem>;

/// One table of the tree (the root, a section, or one `[[connections]]` entry).
pub(super) struct Table {
    path: String,
    entries: Map<String, Value>,
    known: Vec<&'static str>,
}

impl Table {
    /// The root table.
    pub(super) fn root(entries: Map<String, Value>) -> Table {
        Table {
            path: String::new(),
            entries,
            known: Vec::new(),
        }
    }

    /// A table at `path`; an absent value is an empty table, anything but a table is a
    /// problem (and an empty table, so reading goes on).
    pub(super) fn at(path: String, value: Option<Value>, p: &mut Problems) -> Table {
        let entries = match value.map(|v| v.kind) {
            None | Some(ValueKind::Nil) => Map::new(),
            Some(ValueKind::Table(entries)) => entries,
            Some(other) => {
                p.push(Problem::new(
                    &path,
                    format!("expected a table, found {}", describe(&other)),
                ));
                Map::new()
            }
        };
        Table {
            path,
            entries,
            known: Vec::new(),
        }
    }

    /// This table's own path (`""` for the root).
    pub(super) fn location(&self) -> &str {
        &self.path
    }

    /// The full path of `key` in this table.
    pub(super) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether `key` is given (and not null).
    pub(super) fn has(&self, key: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|v| !matches!(v.kind, ValueKind::Nil))
    }

    /// Marks `key` as known without reading it.
    pub(super) fn declare(&mut self, key: &'static str) {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
    }

    /// Takes `key`'s value out of the table (a null counts as absent).
    pub(super) fn take(&mut self, key: &'static str) -> Option<Value> {
        self.declare(key);
        self.entries
            .remove(key)
            .filter(|v| !matches!(v.kind, ValueKind::Nil))
    }

    /// Reads a key that must be given with `read`; if it is absent, records
    /// "missing: {why}".
    pub(super) fn required<T>(
        &mut self,
        key: &'static str,
        why: &str,
        p: &mut Problems,
        read: impl FnOnce(&mut Table, &'static str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        if self.has(key) {
            read(self, key, p)
        } else {
            // Take it anyway: it is known, and a null must not linger as "unknown".
            let _ = self.take(key);
            p.push(Problem::new(self.key_path(key), format!("missing: {why}")));
            None
        }
    }

    /// Reads `key` with `convert`, recording a problem if it fails.
    pub(super) fn read<T>(
        &mut self,
        key: &'static str,
        p: &mut Problems,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.take(key)?;
        match convert(&value) {
            Ok(v) => Some(v),
            Err(message) => {
                p.push(self.problem(key, &value, message));
                None
            }
        }
    }

    /// A problem at `key`, saying which environment variable set it if one did.
    pub(super) fn problem(&self, key: &str, value: &Value, message: String) -> Problem {
        let path = self.key_path(key);
        let message = if is_from_env(value) {
            format!(
                "{message} (set by the environment variable {})",
                env_name(&path)
            )
        } else {
            message
        };
        Problem::new(path, message)
    }

    /// Every key of a table whose keys are names the user chooses (`[instances.<name>]`),
    /// with its value, in name order; none is left behind to be reported unknown.
    pub(super) fn drain(&mut self) -> Vec<(String, Value)> {
        let mut entries: Vec<(String, Value)> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|(_, v)| !matches!(v.kind, ValueKind::Nil))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// A sub-table.
    pub(super) fn table(&mut self, key: &'static str, p: &mut Problems) -> Table {
        let path = self.key_path(key);
        Table::at(path, self.take(key), p)
    }

    /// A list of values (`[[groups]]`, `[[connections]]`); `None` when absent or wrong.
    pub(super) fn list(
        &mut self,
        key: &'static str,
        what: &str,
        p: &mut Problems,
    ) -> Option<Vec<Value>> {
        let from_env_note = "; lists of tables can't be set through environment variables";
        self.read(key, p, |v| match &v.kind {
            ValueKind::Array(items) => Ok(items.clone()),
            other => Err(format!(
                "expected a list of {what}, found {}{}",
                describe(other),
                if mentions_env(v) { from_env_note } else { "" }
            )),
        })
    }

    /// Appends `items` to the list at `key` (absent, it is created) and returns the index of
    /// the first. A `key` that is not a list is left as it is, for its reader to report.
    pub(super) fn append(&mut self, key: &str, items: Vec<Value>) -> usize {
        let entry = self
            .entries
            .entry(key.to_string())
            .or_insert_with(|| Value::new(None, ValueKind::Nil));
        match &mut entry.kind {
            ValueKind::Array(list) => {
                let start = list.len();
                list.extend(items);
                start
            }
            ValueKind::Nil => {
                entry.kind = ValueKind::Array(items);
                0
            }
            _ => 0,
        }
    }

    /// A string.
    pub(super) fn string(&mut self, key: &'static str, p: &mut Problems) -> Option<String> {
        self.read(key, p, to_string)
    }

    /// A string that must not be empty or blank.
    pub(super) fn non_empty_string(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> Option<String> {
        self.read(key, p, |v| {
            let s = to_string(v)?;
            if s.trim().is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(s)
            }
        })
    }

    /// A secret string: like `non_empty_string`, but no message ever shows the value.
    pub(super) fn secret(&mut self, key: &'static str, p: &mut Problems) -> Option<SecretString> {
        self.read(key, p, |v| match &v.kind {
            ValueKind::String(s) if s.is_empty() => Err("must not be empty".to_string()),
            ValueKind::String(s) => Ok(SecretString::from(s.clone())),
            other => Err(format!("expected a string, found {}", kind_name(other))),
        })
    }

    /// A UUID, in lowercase hyphenated form so duplicates are found however written.
    pub(super) fn uuid(&mut self, key: &'static str, p: &mut Problems) -> Option<String> {
        self.read(key, p, |v| {
            let s = to_string(v)?;
            uuid::Uuid::parse_str(s.trim())
                .map(|id| id.hyphenated().to_string())
                .map_err(|e| format!("{s:?} is not a UUID: {e}"))
        })
    }

    /// A file path.
    pub(super) fn file_path(&mut self, key: &'static str, p: &mut Problems) -> Option<PathBuf> {
        self.non_empty_string(key, p).map(PathBuf::from)
    }

    /// `true` or `false` (also as a string, as environment variables give it).
    pub(super) fn bool(&mut self, key: &'static str, p: &mut Problems) -> Option<bool> {
        self.read(key, p, |v| match &v.kind {
            ValueKind::Boolean(b) => Ok(*b),
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
            other => Err(format!("expected true or false, found {}", describe(other))),
        })
    }

    /// A whole number that fits `T` (also as a string, as environment variables give it).
    pub(super) fn uint<T>(&mut self, key: &'static str, p: &mut Problems) -> Option<T>
    where
        T: TryFrom<u64> + Bounded,
    {
        self.read(key, p, |v| {
            let n = to_u64(v)?;
            T::try_from(n).map_err(|_| format!("{n} is too large (at most {})", T::MAX))
        })
    }

    /// A whole number that fits `T` and is at least 1.
    pub(super) fn positive_uint<T>(&mut self, key: &'static str, p: &mut Problems) -> Option<T>
    where
        T: TryFrom<u64> + Bounded,
    {
        self.read(key, p, |v| {
            let n = to_u64(v)?;
            if n == 0 {
                return Err("must be at least 1".to_string());
            }
            T::try_from(n).map_err(|_| format!("{n} is too large (at most {})", T::MAX))
        })
    }

    /// A duration written the humantime way (`"10s"`, `"2h 30m"`).
    pub(super) fn duration(&mut self, key: &'static str, p: &mut Problems) -> Option<Duration> {
        self.read(key, p, to_duration)
    }

    /// A duration that must be more than zero.
    pub(super) fn positive_duration(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> Option<Duration> {
        self.read(key, p, |v| {
            let d = to_duration(v)?;
            if d.is_zero() {
                Err("must be more than zero".to_string())
            } else {
                Ok(d)
            }
        })
    }

    /// A duration, or no limit: `"none"` or a zero duration gives `Some(None)`.
    pub(super) fn optional_duration(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> Option<Option<Duration>> {
        self.read(key, p, |v| match &v.kind {
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("none") => Ok(None),
            _ => to_duration(v).map(|d| if d.is_zero() { None } else { Some(d) }),
        })
    }

    /// How long to keep something: `"forever"` gives `Some(None)`, else a duration
    /// of more than zero that a date can be counted back by.
    pub(super) fn retention(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> Option<Option<Duration>> {
        self.read(key, p, |v| match &v.kind {
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("forever") => Ok(None),
            _ => {
                let d = to_duration(v).map_err(|e| format!("{e}, or \"forever\""))?;
                if d.is_zero() {
                    Err("must be more than zero (or \"forever\" to keep everything)".into())
                } else if chrono::Duration::from_std(d).is_err()
                    || d > Duration::from_secs(100 * 366 * 86_400)
                {
                    Err("must be at most 100 years (or \"forever\")".into())
                } else {
                    Ok(Some(d))
                }
            }
        })
    }

    /// One of a fixed set of words (case does not matter).
    pub(super) fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        options: &[(&'static str, T)],
        p: &mut Problems,
    ) -> Option<T> {
        self.read(key, p, |v| {
            let s = to_string(v)?;
            let word = s.trim();
            if let Some((_, value)) = options
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
            {
                return Ok(*value);
            }
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            let listed = names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ");
            Err(format!(
                "expected one of {listed}, found {s:?}{}",
                did_you_mean(word, names.iter().copied(), |n| format!("\"{n}\""))
            ))
        })
    }

    /// An IANA time zone name.
    pub(super) fn timezone(&mut self, key: &'static str, p: &mut Problems) -> Option<Tz> {
        self.read(key, p, |v| parse_timezone(&to_string(v)?))
    }

    /// A list of non-empty strings.
    pub(super) fn string_list(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> Option<Vec<String>> {
        let path = self.key_path(key);
        let mut item_problems = Vec::new();
        let list = self.read(key, p, |v| match &v.kind {
            ValueKind::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match to_string(item) {
                        Ok(s) if s.trim().is_empty() => item_problems
                            .push(Problem::new(format!("{path}[{i}]"), "must not be empty")),
                        Ok(s) => out.push(s),
                        Err(message) => {
                            item_problems.push(Problem::new(format!("{path}[{i}]"), message))
                        }
                    }
                }
                Ok(out)
            }
            other => Err(format!(
                "expected a list of strings, found {}",
                describe(other)
            )),
        });
        let clean = item_problems.is_empty();
        p.append(&mut item_problems);
        list.filter(|_| clean)
    }

    /// Reports every key that was never read, with a did-you-mean when one is close.
    pub(super) fn finish(self, p: &mut Problems) {
        #[cfg(test)]
        KNOWN_KEYS.with(|known| {
            known
                .borrow_mut()
                .extend(self.known.iter().map(|key| join(&self.path, key)))
        });
        let mut unknown: Vec<(String, Value)> = self.entries.into_iter().collect();
        // The tree is a hash map: sort so problems come out the same way every time.
        unknown.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in unknown {
            let hint = did_you_mean(&key, self.known.iter().copied(), |k| format!("`{k}`"));
            let mut message = format!("unknown key{hint}");
            if is_from_env(&value) {
                message.push_str(&format!(
                    " (set by the environment variable {})",
                    env_name(&join(&self.path, &key))
                ));
            } else if mentions_env(&value) {
                message.push_str(&format!(
                    " (set by environment variables {}__...)",
                    env_name(&join(&self.path, &key))
                ));
            }
            p.push(Problem::new(join(&self.path, &key), message));
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Every key path read on this thread, so a test can check the example documents them.
    pub(super) static KNOWN_KEYS: std::cell::RefCell<Vec<String>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Unsigned integer types `Table::uint` can produce.
pub(super) trait Bounded {
    /// The largest value, for the "too large" message.
    const MAX: u64;
}

impl Bounded for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Bounded for usize {
    // usize is at most 64 bits on every target Rust supports.
    const MAX: u64 = usize::MAX as u64;
}

/// `parent.key`, or `key` at the root.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Whether the config crate says `value` came from the environment.
fn is_from_env(value: &Value) -> bool {
    value.origin() == Some(ENV_ORIGIN)
}

/// Whether `value`, or anything inside it, came from the environment. (The config crate
/// gives the tables it creates for `A__B__C` no origin, only the leaf.)
fn mentions_env(value: &Value) -> bool {
    is_from_env(value)
        || match &value.kind {
            ValueKind::Table(entries) => entries.values().any(mentions_env),
            ValueKind::Array(items) => items.iter().any(mentions_env),
            _ => false,
        }
}

/// The environment variable that sets the key at `path` (`airbyte.base_url` →
/// `CRONBYTE__AIRBYTE__BASE_URL`).
pub(super) fn env_name(path: &str) -> String {
    format!("CRONBYTE__{}", path.replace('.', "__").to_uppercase())
}

/// "a string", "an integer", ... for messages that must not show the value.
fn kind_name(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a decimal number",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "a list",
    }
}

/// The kind of a value and, for scalars, the value itself (only for keys that are not
/// secret).
fn describe(kind: &ValueKind) -> String {
    match kind {
        ValueKind::String(s) => format!("the string {s:?}"),
        ValueKind::Boolean(b) => format!("the boolean {b}"),
        ValueKind::I64(n) => format!("the integer {n}"),
        ValueKind::I128(n) => format!("the integer {n}"),
        ValueKind::U64(n) => format!("the integer {n}"),
        ValueKind::U128(n) => format!("the integer {n}"),
        ValueKind::Float(x) => format!("the number {x}"),
        other => kind_name(other).to_string(),
    }
}

/// A string value; numbers and booleans are not silently turned into strings.
fn to_string(v: &Value) -> Result<String, String> {
    match &v.kind {
        ValueKind::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, found {}", describe(other))),
    }
}

/// A non-negative whole number, from a number or (as the environment gives it) a string.
fn to_u64(v: &Value) -> Result<u64, String> {
    let negative = |n: &dyn std::fmt::Display| Err(format!("must not be negative, found {n}"));
    match &v.kind {
        ValueKind::I64(n) => u64::try_from(*n).or_else(|_| negative(n)),
        ValueKind::U64(n) => Ok(*n),
        ValueKind::I128(n) => u64::try_from(*n).or_else(|_| {
            if *n < 0 {
                negative(n)
            } else {
                Err(format!("{n} is too large"))
            }
        }),
        ValueKind::U128(n) => u64::try_from(*n).map_err(|_| format!("{n} is too large")),
        ValueKind::String(s) => {
            let t = s.trim();
            if let Ok(n) = t.parse::<u64>() {
                Ok(n)
            } else if t.parse::<i64>().is_ok() {
                negative(&t)
            } else {
                Err(format!("expected a whole number, found the string {s:?}"))
            }
        }
        other => Err(format!(
            "expected a whole number, found {}",
            describe(other)
        )),
    }
}

/// A duration written the humantime way.
fn to_duration(v: &Value) -> Result<Duration, String> {
    match &v.kind {
        ValueKind::String(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            format!("expected a duration such as \"10s\" or \"2h 30m\", found {s:?}: {e}")
        }),
        ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::I128(_) | ValueKind::U128(_) => {
            Err(format!(
                "expected a duration with a unit, such as \"10s\" or \"2h 30m\", found {}",
                describe(&v.kind)
            ))
        }
        other => Err(format!(
            "expected a duration such as \"10s\" or \"2h 30m\", found {}",
            describe(other)
        )),
    }
}

/// An IANA time zone, with a did-you-mean for a misspelt one.
pub(super) fn parse_timezone(name: &str) -> Result<Tz, String> {
    let trimmed = name.trim();
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Ok(tz);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    Err(format!(
        "unknown time zone {name:?} (expected an IANA name such as \"Europe/Paris\" or \"UTC\"){}",
        did_you_mean(trimmed, names, |n| format!("\"{n}\""))
    ))
}

/// How alike two words must be (Jaro-Winkler, 0..1) to suggest one for the other.
const SUGGESTION_THRESHOLD: f64 = 0.8;

/// The candidate closest to `word`, if it is close enough.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(&word, &candidate.to_lowercase());
        if score >= SUGGESTION_THRESHOLD && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `"; did you mean X?"` for the closest candidate, or nothing.
pub(super) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    quote: impl Fn(&str) -> String,
) -> String {
    match closest(word, candidates) {
        Some(c) => format!("; did you mean {}?", quote(c)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, ValueKind)]) -> Table {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert(k.to_string(), Value::new(None, v.clone()));
        }
        Table::at(
            "sec".to_string(),
            Some(Value::new(None, ValueKind::Table(m))),
            &mut Vec::new(),
        )
    }

    #[test]
    fn a_misspelt_key_gets_the_closest_known_key_as_a_suggestion() {
        assert_eq!(closest("crn", ["name", "cron", "after"]), Some("cron"));
        assert_eq!(closest("worker", ["workers", "server"]), Some("workers"));
        assert_eq!(closest("zzz", ["name", "cron"]), None);
    }

    #[test]
    fn a_misspelt_time_zone_gets_a_suggestion() {
        let err = parse_timezone("Europe/Pari").expect_err("unknown");
        assert!(err.contains("did you mean \"Europe/Paris\"?"), "{err}");
        let err = parse_timezone("america/new_york").expect_err("case matters");
        assert!(err.contains("\"America/New_York\""), "{err}");
    }

    #[test]
    fn an_unread_key_is_reported_as_unknown_with_a_suggestion() {
        let mut t = table(&[("crn", ValueKind::String("x".into()))]);
        let mut p = Vec::new();
        assert_eq!(t.string("cron", &mut p), None);
        t.finish(&mut p);
        assert_eq!(
            p,
            vec![Problem::new("sec.crn", "unknown key; did you mean `cron`?")]
        );
    }

    #[test]
    fn a_number_given_as_a_string_is_read_as_a_number() {
        let mut t = table(&[("n", ValueKind::String(" 5 ".into()))]);
        let mut p = Vec::new();
        assert_eq!(t.uint::<u32>("n", &mut p), Some(5));
        assert!(p.is_empty());
    }

    #[test]
    fn a_negative_or_oversized_number_is_a_problem() {
        let mut t = table(&[("a", ValueKind::I64(-1)), ("b", ValueKind::I64(1 << 40))]);
        let mut p = Vec::new();
        assert_eq!(t.uint::<u32>("a", &mut p), None);
        assert_eq!(t.uint::<u32>("b", &mut p), None);
        assert!(p[0].message.contains("must not be negative"), "{:?}", p);
        assert!(p[1].message.contains("too large"), "{:?}", p);
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_reported_without_its_value() {
        let mut t = table(&[("password", ValueKind::I64(123_456_789))]);
        let mut p = Vec::new();
        assert!(t.secret("password", &mut p).is_none());
        assert_eq!(p[0].message, "expected a string, found an integer");
    }

    #[test]
    fn none_or_a_zero_duration_means_no_limit() {
        let mut t = table(&[
            ("a", ValueKind::String("none".into())),
            ("b", ValueKind::String("0s".into())),
            ("c", ValueKind::String("2h 30m".into())),
        ]);
        let mut p = Vec::new();
        assert_eq!(t.optional_duration("a", &mut p), Some(None));
        assert_eq!(t.optional_duration("b", &mut p), Some(None));
        assert_eq!(
            t.optional_duration("c", &mut p),
            Some(Some(Duration::from_secs(9000)))
        );
        assert!(p.is_empty());
    }

    #[test]
    fn environment_variable_names_follow_the_key_path() {
        assert_eq!(env_name("airbyte.base_url"), "CRONBYTE__AIRBYTE__BASE_URL");
    }
}
