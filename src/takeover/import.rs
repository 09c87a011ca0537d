//! `cronbyte import`: the connections of each instance's workspace as `[[connections]]`
//! entries, each with Airbyte's schedule as a cron rule and a comment saying what changed.
//!
//! Nothing is invented: a cron rule is kept as Airbyte wrote it, a basic schedule becomes
//! the nearest rule phased on the connection's last sync, and a connection with no schedule
//! to keep (manual, never synced, a rule cronbyte cannot read) is written disabled, without a
//! rule, saying why. Inactive connections are written disabled too: Airbyte does not sync
//! them. Everything is read before anything is written, so an instance that cannot be read
//! leaves no partial output.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};

use super::convert::{basic_rule, zone_for_cronbyte};
use super::{TakeOverError, airbyte_schedules, chosen_instances, client_for, configured};
use crate::airbyte::{AirbyteSchedule, ConnectionSchedule, schedule::every};
use crate::config::Config;
use crate::cron::CronRule;

/// Comment lines are wrapped at this width.
const WIDTH: usize = 92;

/// What an import found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// The entries as TOML, with a header saying where they came from.
    pub text: String,
    /// How many entries the text has.
    pub entries: usize,
    /// How many of them cronbyte schedules (enabled, with a rule).
    pub scheduled: usize,
    /// The connections left out because the config has them already, one line each.
    pub skipped: Vec<String>,
}

/// One connection read from Airbyte, before its name is chosen.
struct Draft {
    instance: String,
    connection: ConnectionSchedule,
    notes: Vec<String>,
    /// The rule and its zone, as written into the entry.
    cron: Option<(String, String)>,
    /// A rule cronbyte cannot read, shown commented out.
    commented: Option<(String, String)>,
    enabled: bool,
}

/// Reads the connections of every chosen instance and renders the entries the config does
/// not have yet. `now` stamps the header.
pub async fn import(
    config: &Config,
    instance: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Imported, TakeOverError> {
    let mut drafts = Vec::new();
    let mut skipped = Vec::new();
    for (name, settings) in chosen_instances(config, instance)? {
        let client = client_for(name, settings)?;
        let connections = airbyte_schedules(name, settings, &client, true).await?;
        check_one_workspace(name, &settings.section, &connections)?;
        let declared = configured(config, name, &connections);
        for connection in connections {
            // By id on any instance, as `check` holds ids unique across them all.
            let known = config
                .connections
                .iter()
                .find(|c| c.connection_id == connection.connection_id)
                .or_else(|| declared.get(&connection.connection_id).copied());
            if let Some(known) = known {
                skipped.push(format!(
                    "{:?} ({}) on Airbyte instance {name:?}: the config has it already, as \
                     connection {:?}",
                    connection.name, connection.connection_id, known.name
                ));
                continue;
            }
            let last_sync = match &connection.schedule {
                Ok(AirbyteSchedule::Basic { .. }) => client
                    .last_sync_at(&connection.connection_id)
                    .await
                    .map_err(|source| TakeOverError::Airbyte {
                        instance: name.clone(),
                        doing: format!(
                            "could not read the last sync of connection {:?} ({})",
                            connection.name, connection.connection_id
                        ),
                        source: Box::new(source),
                    })?,
                _ => None,
            };
            drafts.push(draft(name, connection, last_sync));
        }
    }
    let several = config.instances.len() > 1;
    let mut taken: HashSet<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    let mut text = header(now);
    let mut scheduled = 0;
    if drafts.is_empty() {
        text.push_str("\n# No connection to import.\n");
    }
    for draft in &drafts {
        let wanted = slug(&draft.connection.name);
        let name = unique(&wanted, &taken);
        taken.insert(name.clone());
        text.push('\n');
        text.push_str(&render(draft, &name, &wanted, several));
        if draft.enabled && draft.cron.is_some() {
            scheduled += 1;
        }
    }
    Ok(Imported {
        text,
        entries: drafts.len(),
        scheduled,
        skipped,
    })
}

/// On the public API without a workspace set, the listing covers every workspace the
/// credentials reach; an import is of one.
fn check_one_workspace(
    instance: &str,
    section: &str,
    connections: &[ConnectionSchedule],
) -> Result<(), TakeOverError> {
    let mut ids: Vec<&str> = connections
        .iter()
        .filter_map(|c| c.workspace_id.as_deref())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > 1 {
        return Err(TakeOverError::Workspace {
            instance: instance.to_owned(),
            message: format!(
                "its connections are in {} workspaces ({}): set {section}.workspace to the id \
                 of the one to import",
                ids.len(),
                ids.join(", ")
            ),
        });
    }
    Ok(())
}

fn header(now: DateTime<Utc>) -> String {
    format!(
        "# Connections imported from Airbyte by `cronbyte import` at {}.\n\
         # Include this file from the config (include = [\"<this file>\"]); `cronbyte check`\n\
         # checks them with it. `cronbyte import --take-over` then sets the connections the\n\
         # config schedules to manual in Airbyte, so that they are not synced twice.\n",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// What the entry of one connection says, from its schedule, status and last sync.
fn draft(
    instance: &str,
    connection: ConnectionSchedule,
    last_sync: Option<DateTime<Utc>>,
) -> Draft {
    let mut notes = Vec::new();
    let mut cron = None;
    let mut commented = None;
    let mut enabled = true;
    match &connection.schedule {
        Err(why) => {
            notes.push(format!(
                "Airbyte's schedule could not be read ({why}), so none is kept: give it a cron \
                 rule and remove `enabled = false` to schedule it here."
            ));
            enabled = false;
        }
        Ok(AirbyteSchedule::Manual) => {
            notes.push(
                "Manual in Airbyte (synced only when asked), so not scheduled here either: give \
                 it a cron rule and remove `enabled = false` to schedule it."
                    .into(),
            );
            enabled = false;
        }
        Ok(AirbyteSchedule::Cron { expression, zone }) => match zone_for_cronbyte(zone) {
            Ok((tz, zone_note)) => match CronRule::parse(expression, tz) {
                Ok(_) => {
                    notes.push("Airbyte's cron rule, kept as written.".into());
                    notes.extend(zone_note.map(|n| format!("{n}.")));
                    cron = Some((expression.clone(), tz.name().to_owned()));
                }
                Err(e) => {
                    notes.push(format!(
                        "cronbyte cannot read Airbyte's rule ({e}): write one that fires at the \
                         same times and remove `enabled = false`."
                    ));
                    commented = Some((expression.clone(), tz.name().to_owned()));
                    enabled = false;
                }
            },
            Err(why) => {
                notes.push(format!(
                    "{why}: write the rule for a zone cronbyte knows and remove `enabled = false`."
                ));
                commented = Some((expression.clone(), zone.clone()));
                enabled = false;
            }
        },
        Ok(AirbyteSchedule::Basic { units, time_unit }) => match last_sync {
            Some(t) => {
                let converted = basic_rule(*units, *time_unit, t);
                notes.push(format!("{}.", converted.note));
                cron = Some((converted.expression, "UTC".to_owned()));
            }
            None => {
                notes.push(format!(
                    "{} in Airbyte, but it never synced, so there is no last sync to keep the \
                     phase of: give it a cron rule and remove `enabled = false`.",
                    every(*units, *time_unit)
                ));
                enabled = false;
            }
        },
    }
    if !connection.is_active() {
        notes.push(format!(
            "{} in Airbyte, which does not sync it: disabled here too, until it is active \
             there and `enabled = false` is removed.",
            capitalized(&connection.status)
        ));
        enabled = false;
    }
    Draft {
        instance: instance.to_owned(),
        connection,
        notes,
        cron,
        commented,
        enabled,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The entry as TOML, its comments first.
fn render(draft: &Draft, name: &str, wanted: &str, several: bool) -> String {
    let connection = &draft.connection;
    let schedule = match &connection.schedule {
        Ok(schedule) => schedule.to_string(),
        Err(_) => "schedule unreadable".to_owned(),
    };
    let mut comments = vec![format!(
        "Airbyte: {} ({schedule}; {}).",
        quoted(&connection.name),
        connection.status
    )];
    if name != wanted {
        comments.push(format!(
            "Named {} here: {} is another connection's name.",
            quoted(name),
            quoted(wanted)
        ));
    }
    comments.extend(draft.notes.iter().map(|note| capitalized(note)));
    let mut out = String::new();
    for comment in &comments {
        for line in wrap(comment, WIDTH - 2) {
            out.push_str("# ");
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str("[[connections]]\n");
    out.push_str(&format!("name = {}\n", quoted(name)));
    if several {
        out.push_str(&format!("instance = {}\n", quoted(&draft.instance)));
    }
    out.push_str(&format!(
        "connection_id = {}\n",
        quoted(&connection.connection_id)
    ));
    if let Some((rule, zone)) = &draft.cron {
        out.push_str(&format!(
            "cron = {}\ntimezone = {}\n",
            quoted(rule),
            quoted(zone)
        ));
    }
    if let Some((rule, zone)) = &draft.commented {
        out.push_str(&format!(
            "# cron = {}\n# timezone = {}\n",
            quoted(rule),
            quoted(zone)
        ));
    }
    if !draft.enabled {
        out.push_str("enabled = false\n");
    }
    out
}

/// A TOML basic string: quoted, with backslashes, quotes and control characters escaped, so
/// any name Airbyte holds stays on its line.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A config name from Airbyte's: lower-case letters and digits, other runs as one `-`.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "connection".to_owned()
    } else {
        out
    }
}

/// `wanted`, or `wanted-2`, `wanted-3`, ... whichever is not taken.
fn unique(wanted: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(wanted) {
        return wanted.to_owned();
    }
    (2..)
        .map(|n| format!("{wanted}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| wanted.to_owned())
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_lower_case_words_joined_by_dashes() {
        assert_eq!(slug("Orders → Warehouse (EU)"), "orders-warehouse-eu");
        assert_eq!(slug("  "), "connection");
        assert_eq!(slug("Größe"), "größe");
    }

    #[test]
    fn a_taken_name_gets_the_next_free_number() {
        let taken: HashSet<String> = ["orders".to_owned(), "orders-2".to_owned()].into();
        assert_eq!(unique("orders", &taken), "orders-3");
        assert_eq!(unique("customers", &taken), "customers");
    }

    #[test]
    fn any_name_stays_one_toml_string() {
        let name = "a \"quoted\"\\ name\nwith a newline\u{7}";
        let text = format!("name = {}\n", quoted(name));
        let table: toml_like::Table = toml_like::parse(&text);
        assert_eq!(table.get("name").map(String::as_str), Some(name));
    }

    /// Reads `key = "string"` lines through the config crate's TOML parser.
    mod toml_like {
        pub type Table = std::collections::HashMap<String, String>;

        pub fn parse(text: &str) -> Table {
            let parsed = ::config::Config::builder()
                .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
                .build()
                .expect("valid TOML");
            parsed.try_deserialize().expect("a table of strings")
        }
    }

    #[test]
    fn comments_wrap_between_words() {
        let lines = wrap("one two three four five", 9);
        assert_eq!(lines, ["one two", "three", "four five"]);
    }
}
