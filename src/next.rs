//! `cronbyte next NAME`: the next fire instants of one connection's rule, read
//! from the config file alone (no daemon, no secret), in the connection's zone
//! and in UTC, so that a DST change shows before it happens.

use chrono::{DateTime, Offset, SecondsFormat, TimeZone, Utc};
use serde_json::json;

use crate::commands::{OutputFormat, table};
use crate::config::ConnectionSettings;

#[derive(Debug, thiserror::Error)]
pub enum NextError {
    #[error("no connection is named `{name}` in {file}{hint}")]
    Unknown {
        name: String,
        file: String,
        hint: String,
    },
    #[error(
        "connection `{0}` has no `cron` rule: it runs only after {1}, so it has no fire instants of its own"
    )]
    NoRule(String, String),
    #[error("connection `{0}` has no `cron` rule and no `after`: it never runs")]
    Never(String),
}

/// One fire instant, with the zone's offset then.
#[derive(Clone, Debug, PartialEq)]
pub struct Fire {
    pub at: DateTime<Utc>,
    /// The connection zone's offset from UTC at that instant, in seconds.
    pub offset_seconds: i32,
}

/// The connection named `name` among `connections`, or an error naming it, the
/// file, and the closest name.
pub fn find<'a>(
    connections: &'a [ConnectionSettings],
    name: &str,
    file: &str,
) -> Result<&'a ConnectionSettings, NextError> {
    connections
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| NextError::Unknown {
            name: name.to_owned(),
            file: file.to_owned(),
            hint: crate::config::closest(name, connections.iter().map(|c| c.name.as_str()))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default(),
        })
}

/// The first `count` fire instants of the connection's rule after `from`.
pub fn fires(
    connection: &ConnectionSettings,
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<Fire>, NextError> {
    let Some(rule) = &connection.cron else {
        return Err(if connection.after.is_empty() {
            NextError::Never(connection.name.clone())
        } else {
            NextError::NoRule(connection.name.clone(), connection.after.join(", "))
        });
    };
    let tz = rule.timezone();
    let mut out = Vec::with_capacity(count);
    let mut at = from;
    while out.len() < count {
        let Some(next) = rule.next_after(at) else {
            break;
        };
        out.push(Fire {
            at: next,
            offset_seconds: tz
                .offset_from_utc_datetime(&next.naive_utc())
                .fix()
                .local_minus_utc(),
        });
        at = next;
    }
    Ok(out)
}

/// `+02:00` for 7,200 s.
fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The fire instants as a table (a line saying where the zone's offset changes
/// between two of them) or as JSON lines.
pub fn render(connection: &ConnectionSettings, fires: &[Fire], format: OutputFormat) -> String {
    let tz = connection.timezone;
    match format {
        OutputFormat::Json => fires
            .iter()
            .map(|f| {
                let local = f.at.with_timezone(&tz);
                format!(
                    "{}\n",
                    json!({
                        "connection": connection.name,
                        "timezone": tz.name(),
                        "local": local.to_rfc3339_opts(SecondsFormat::Secs, false),
                        "utc": f.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "utc_offset": offset_text(f.offset_seconds),
                    })
                )
            })
            .collect(),
        OutputFormat::Table => {
            let mut rows = Vec::with_capacity(fires.len());
            let mut previous: Option<i32> = None;
            for (i, f) in fires.iter().enumerate() {
                let local = f.at.with_timezone(&tz);
                let change = match previous {
                    Some(before) if before != f.offset_seconds => format!(
                        "offset {} -> {} (DST)",
                        offset_text(before),
                        offset_text(f.offset_seconds)
                    ),
                    _ => String::new(),
                };
                previous = Some(f.offset_seconds);
                rows.push(vec![
                    (i + 1).to_string(),
                    format!(
                        "{} {}",
                        local.format("%a %Y-%m-%d %H:%M:%S"),
                        offset_text(f.offset_seconds)
                    ),
                    f.at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    change,
                ]);
            }
            let zone = format!("LOCAL ({})", tz.name());
            let mut text = format!(
                "{}: `{}` in {}{}\n",
                connection.name,
                connection.cron.as_ref().map_or("", |r| r.expr()),
                tz.name(),
                if connection.enabled {
                    ""
                } else {
                    " (disabled: these are the instants it would fire at)"
                }
            );
            if rows.is_empty() {
                text.push_str("the rule never fires again\n");
            } else {
                text.push_str(&table(&["#", &zone, "UTC", ""], &rows));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Format};

    fn connections(extra: &str) -> Vec<ConnectionSettings> {
        let text = format!(
            "[airbyte]\nbase_url = \"http://127.0.0.1:1/api/v1\"\n\
             [[connections]]\nname = \"nightly\"\nconnection_id = \"4b5c6d7e-0000-4000-8000-000000000001\"\n\
             cron = \"30 2 * * *\"\ntimezone = \"Europe/Paris\"\n\
             [[connections]]\nname = \"follower\"\nconnection_id = \"4b5c6d7e-0000-4000-8000-000000000002\"\n\
             after = [\"nightly\"]\n{extra}"
        );
        config::from_str(&text, Format::Toml)
            .expect("a valid config")
            .connections
    }

    #[test]
    fn fire_instants_across_paris_spring_forward_show_the_offset_change() {
        let all = connections("");
        let nightly = find(&all, "nightly", "f").unwrap();
        let from: DateTime<Utc> = "2026-03-27T12:00:00Z".parse().unwrap();
        let fires = fires(nightly, from, 3).unwrap();
        let utc: Vec<String> = fires
            .iter()
            .map(|f| f.at.format("%m-%d %H:%M").to_string())
            .collect();
        // 02:30 does not exist on 29 March: the rule fires at the jump (03:00 CEST).
        assert_eq!(utc, ["03-28 01:30", "03-29 01:00", "03-30 00:30"]);
        assert_eq!(
            fires.iter().map(|f| f.offset_seconds).collect::<Vec<_>>(),
            [3_600, 7_200, 7_200]
        );
        let table = render(nightly, &fires, OutputFormat::Table);
        assert!(table.contains("offset +01:00 -> +02:00 (DST)"), "{table}");
        assert!(table.contains("Sat 2026-03-28 02:30:00 +01:00"), "{table}");
        assert!(table.contains("2026-03-30 00:30:00Z"), "{table}");
        let json = render(nightly, &fires, OutputFormat::Json);
        assert_eq!(json.lines().count(), 3);
        assert!(
            json.contains(r#""local":"2026-03-30T02:30:00+02:00""#),
            "{json}"
        );
    }

    #[test]
    fn an_unknown_name_or_a_connection_without_a_rule_is_a_clear_error() {
        let all = connections("");
        let err = find(&all, "nightyl", "cronbyte.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no connection is named `nightyl` in cronbyte.toml; did you mean `nightly`?"
        );
        let follower = find(&all, "follower", "f").unwrap();
        let err = fires(follower, Utc::now(), 3).unwrap_err().to_string();
        assert!(err.contains("runs only after nightly"), "{err}");
    }
}
