//! `cronbyte import --take-over` and `--give-back`: schedules handed from Airbyte to cronbyte
//! and back.
//!
//! Taking over sets to manual, in Airbyte, the connections that Airbyte schedules and the
//! config schedules too, once what it will change is shown and confirmed. Each one's schedule
//! is written to the record before any change is asked of Airbyte, so a run that stops half-way
//! loses nothing: running it again takes what is left (a connection already manual is done),
//! and giving back restores exactly the connections that were made manual. A connection
//! Airbyte schedules and the config does not is refused, by name: nobody would sync it.
//!
//! Giving back restores each recorded schedule exactly on the Config API. The public API
//! stores only manual schedules and cron rules in UTC, so there a basic schedule comes back as
//! the nearest cron rule in UTC and a rule in another zone is moved to UTC, each saying so.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::convert::{basic_rule, cron_in_utc};
use super::record::{Record, Taken};
use super::{
    TakeOverError, airbyte_schedules, chosen_instances, client_for, configured, scheduled_by,
};
use crate::airbyte::{AirbyteSchedule, ApiKind, Client};
use crate::config::Config;

/// How a take-over or a give-back goes about it.
#[derive(Clone, Copy, Debug)]
pub struct HandOverOptions<'a> {
    /// Only this instance (`--instance`); every one when `None`.
    pub instance: Option<&'a str>,
    /// Where the schedules taken are kept.
    pub record: &'a Path,
    /// Change Airbyte without asking.
    pub yes: bool,
}

/// What a take-over did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakenOver {
    /// Connections set to manual in Airbyte, as `instance/name`.
    pub taken: Vec<String>,
    /// Connections Airbyte schedules that the config does not: left to Airbyte, one line
    /// each saying why.
    pub refused: Vec<String>,
}

/// One connection to set to manual.
struct ToTake {
    instance: String,
    connection_id: String,
    name: String,
    schedule: AirbyteSchedule,
    cronbyte: String,
}

/// Sets to manual in Airbyte the connections that Airbyte and the config both schedule,
/// after writing what it will do to `out` and asking `confirm` (unless `options.yes`).
pub async fn take_over(
    config: &Config,
    options: HandOverOptions<'_>,
    confirm: &mut dyn FnMut(&str) -> bool,
    out: &mut dyn Write,
) -> Result<TakenOver, TakeOverError> {
    let mut record = Record::load(options.record)?;
    let mut plan: Vec<(ToTake, Client)> = Vec::new();
    let mut refused = Vec::new();
    for (instance, settings) in chosen_instances(config, options.instance)? {
        let client = client_for(instance, settings)?;
        let connections = airbyte_schedules(instance, settings, &client, false).await?;
        let configured = configured(config, instance, &connections);
        let mut already = 0;
        for connection in &connections {
            let here = configured.get(&connection.connection_id);
            let ours = here.and_then(|c| scheduled_by(c));
            let label = match here {
                Some(c) => format!("{:?}", c.name),
                None => format!("{:?} ({})", connection.name, connection.connection_id),
            };
            match (&connection.schedule, ours) {
                (Err(why), Some(_)) => refused.push(format!(
                    "{label} on instance {instance:?}: its schedule in Airbyte could not be \
                     read ({why}), so it is not changed"
                )),
                (Err(_), None) | (Ok(AirbyteSchedule::Manual), None) => {}
                (Ok(AirbyteSchedule::Manual), Some(_)) => {
                    already += 1;
                }
                (Ok(schedule), Some(cronbyte)) => plan.push((
                    ToTake {
                        instance: instance.clone(),
                        connection_id: connection.connection_id.clone(),
                        name: here.map_or_else(|| connection.name.clone(), |c| c.name.clone()),
                        schedule: schedule.clone(),
                        cronbyte,
                    },
                    client.clone(),
                )),
                (Ok(schedule), None) if connection.is_active() => {
                    let why = match here {
                        Some(_) => {
                            "the config has it but does not schedule it (disabled, or no \
                                    cron and no after)"
                        }
                        None => "the config does not have it",
                    };
                    refused.push(format!(
                        "{label} on instance {instance:?} ({schedule}): {why}; left to Airbyte's \
                         scheduler, or nobody would sync it"
                    ));
                }
                // Inactive: Airbyte does not sync it, so there is nothing to take.
                (Ok(_), None) => {}
            }
        }
        if already > 0 {
            writeln!(
                out,
                "Airbyte instance {instance:?}: {already} connection(s) the config schedules \
                 are manual in Airbyte already."
            )?;
        }
    }
    for line in &refused {
        writeln!(out, "refused: {line}")?;
    }
    if plan.is_empty() {
        writeln!(out, "Nothing to take over.")?;
        return Ok(TakenOver {
            taken: Vec::new(),
            refused,
        });
    }
    writeln!(
        out,
        "These connections will be set to manual in Airbyte, and synced by cronbyte only:"
    )?;
    for (take, _) in &plan {
        writeln!(
            out,
            "  {:?} on instance {:?} ({}): {} -> manual (cronbyte: {})",
            take.name, take.instance, take.connection_id, take.schedule, take.cronbyte
        )?;
    }
    writeln!(
        out,
        "Their schedules are kept in {}, for `cronbyte import --give-back`.",
        options.record.display()
    )?;
    if !options.yes
        && !confirm(&format!(
            "Set {} connection(s) to manual in Airbyte?",
            plan.len()
        ))
    {
        return Err(TakeOverError::NotConfirmed(
            "the take-over was not confirmed (give --yes to take over without asking)".into(),
        ));
    }
    // Every schedule is on disk before the first change: whatever stops this run, the
    // record knows what each connection had.
    let now = Utc::now();
    for (take, _) in &plan {
        record.put(Taken {
            instance: take.instance.clone(),
            connection_id: take.connection_id.clone(),
            name: take.name.clone(),
            schedule: take.schedule.clone(),
            recorded_at: now,
        });
    }
    record.save(options.record)?;
    let mut taken = Vec::new();
    for (take, client) in &plan {
        client
            .set_schedule(&take.connection_id, &AirbyteSchedule::Manual)
            .await
            .map_err(|source| TakeOverError::Airbyte {
                instance: take.instance.clone(),
                doing: format!(
                    "could not set connection {:?} ({}) to manual, after {} of {} were; their \
                     schedules are in {}: run `cronbyte import --take-over` again to finish, or \
                     `cronbyte import --give-back` to restore them",
                    take.name,
                    take.connection_id,
                    taken.len(),
                    plan.len(),
                    options.record.display()
                ),
                source: Box::new(source),
            })?;
        writeln!(out, "  manual: {:?} ({})", take.name, take.connection_id)?;
        taken.push(format!("{}/{}", take.instance, take.name));
    }
    writeln!(
        out,
        "Took over {} connection(s): Airbyte no longer schedules them.",
        taken.len()
    )?;
    Ok(TakenOver { taken, refused })
}

/// What giving one connection back will do.
enum Back {
    /// Set this schedule in Airbyte; the note says how it differs from the recorded one.
    Restore {
        schedule: AirbyteSchedule,
        note: Option<String>,
    },
    /// Nothing to do in Airbyte; the entry is dropped for this reason.
    Drop(String),
    /// Nothing can be done; the entry stays, for this reason.
    Keep(String),
}

/// What a give-back did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GivenBack {
    /// Connections whose schedule was set again, as `instance/name`.
    pub restored: Vec<String>,
    /// Those restored other than as recorded (public API), with the note saying how.
    pub approximated: Vec<String>,
    /// Entries left in the record, with why.
    pub kept: Vec<String>,
}

/// Restores the schedules the record keeps, for the chosen instances, after writing what
/// it will do to `out` and asking `confirm` (unless `options.yes`).
pub async fn give_back(
    config: &Config,
    options: HandOverOptions<'_>,
    confirm: &mut dyn FnMut(&str) -> bool,
    out: &mut dyn Write,
) -> Result<GivenBack, TakeOverError> {
    let mut record = Record::load(options.record)?;
    let chosen = chosen_instances(config, options.instance)?;
    let mut result = GivenBack::default();
    let mut plan: Vec<(Taken, AirbyteSchedule, Client)> = Vec::new();
    let mut dropped: Vec<Taken> = Vec::new();
    for entry in &record.connections {
        if !config.instances.contains_key(&entry.instance) {
            let why = format!(
                "{:?} ({}): its instance {:?} is not in the config",
                entry.name, entry.connection_id, entry.instance
            );
            writeln!(out, "  kept in the record: {why}")?;
            result.kept.push(why);
        }
    }
    for (instance, settings) in chosen {
        let entries: Vec<Taken> = record
            .connections
            .iter()
            .filter(|t| &t.instance == instance)
            .cloned()
            .collect();
        if entries.is_empty() {
            continue;
        }
        let client = client_for(instance, settings)?;
        let listed = airbyte_schedules(instance, settings, &client, false).await?;
        let ours = configured(config, instance, &listed);
        let now: HashMap<String, crate::airbyte::ConnectionSchedule> = listed
            .into_iter()
            .map(|c| (c.connection_id.clone(), c))
            .collect();
        for entry in entries {
            let back = decide(&entry, now.get(&entry.connection_id), &client).await?;
            let label = format!(
                "{:?} on instance {:?} ({})",
                entry.name, entry.instance, entry.connection_id
            );
            match back {
                Back::Restore { schedule, note } => {
                    match &note {
                        None => writeln!(out, "  {label}: manual -> {schedule}")?,
                        Some(note) => {
                            writeln!(out, "  {label}: manual -> {schedule} ({note})")?;
                            result.approximated.push(format!("{label}: {note}"));
                        }
                    }
                    if let Some(c) = ours.get(&entry.connection_id)
                        && let Some(by) = scheduled_by(c)
                    {
                        writeln!(
                            out,
                            "    warning: the config still schedules it ({by}) as {:?}: \
                             disable or remove it there, or it syncs twice",
                            c.name
                        )?;
                    }
                    plan.push((entry, schedule, client.clone()));
                }
                Back::Drop(why) => {
                    writeln!(out, "  {label}: {why}")?;
                    dropped.push(entry);
                }
                Back::Keep(why) => {
                    writeln!(out, "  {label}: kept in the record: {why}")?;
                    result.kept.push(format!("{label}: {why}"));
                }
            }
        }
    }
    if record.connections.is_empty() {
        writeln!(
            out,
            "Nothing to give back: {} records no take-over.",
            options.record.display()
        )?;
    } else if plan.is_empty() {
        writeln!(out, "Nothing to give back.")?;
    } else if !options.yes
        && !confirm(&format!(
            "Give {} connection(s) their schedule back in Airbyte?",
            plan.len()
        ))
    {
        return Err(TakeOverError::NotConfirmed(
            "giving back was not confirmed (give --yes to give back without asking)".into(),
        ));
    }
    for entry in &dropped {
        record.remove(&entry.instance, &entry.connection_id);
    }
    for (entry, schedule, client) in &plan {
        if let Err(source) = client.set_schedule(&entry.connection_id, schedule).await {
            // What was given back so far is off the record; the rest stays for another run.
            record.save(options.record)?;
            return Err(TakeOverError::Airbyte {
                instance: entry.instance.clone(),
                doing: format!(
                    "could not give connection {:?} ({}) its schedule back; the record keeps \
                     it and the others not given back yet",
                    entry.name, entry.connection_id
                ),
                source: Box::new(source),
            });
        }
        record.remove(&entry.instance, &entry.connection_id);
        result
            .restored
            .push(format!("{}/{}", entry.instance, entry.name));
    }
    record.save(options.record)?;
    if !plan.is_empty() {
        writeln!(
            out,
            "Gave {} connection(s) their schedule back in Airbyte.",
            result.restored.len()
        )?;
    }
    Ok(result)
}

/// What giving `entry` back does, given the connection as Airbyte has it now.
async fn decide(
    entry: &Taken,
    now: Option<&crate::airbyte::ConnectionSchedule>,
    client: &Client,
) -> Result<Back, TakeOverError> {
    let Some(now) = now else {
        return Ok(Back::Drop(
            "no longer in Airbyte: nothing to give back, dropped from the record".into(),
        ));
    };
    match &now.schedule {
        Err(why) => Ok(Back::Keep(format!(
            "its schedule in Airbyte could not be read ({why})"
        ))),
        Ok(current) if *current == entry.schedule => Ok(Back::Drop(format!(
            "has its schedule already ({current}): dropped from the record"
        ))),
        Ok(AirbyteSchedule::Manual) => restoring(entry, client, Utc::now()).await,
        Ok(current) => Ok(Back::Drop(format!(
            "was given another schedule in Airbyte since ({current}): left as it is, dropped \
             from the record"
        ))),
    }
}

/// The schedule that gives `entry` back on the client's API: the recorded one, or on the
/// public API the nearest it can store.
async fn restoring(
    entry: &Taken,
    client: &Client,
    now: DateTime<Utc>,
) -> Result<Back, TakeOverError> {
    let schedule = &entry.schedule;
    if schedule.settable_on(client.api()) {
        return Ok(Back::Restore {
            schedule: schedule.clone(),
            note: None,
        });
    }
    debug_assert_eq!(client.api(), ApiKind::Public);
    match schedule {
        AirbyteSchedule::Cron { expression, zone } => {
            let (expression, note) = cron_in_utc(expression, zone, now);
            Ok(Back::Restore {
                schedule: AirbyteSchedule::Cron {
                    expression,
                    zone: "UTC".into(),
                },
                note: Some(note),
            })
        }
        AirbyteSchedule::Basic { units, time_unit } => {
            let last = client
                .last_sync_at(&entry.connection_id)
                .await
                .map_err(|source| TakeOverError::Airbyte {
                    instance: entry.instance.clone(),
                    doing: format!(
                        "could not read the last sync of connection {:?} ({})",
                        entry.name, entry.connection_id
                    ),
                    source: Box::new(source),
                })?;
            let Some(last) = last else {
                return Ok(Back::Keep(format!(
                    "the public API cannot set a basic schedule ({schedule}), and the \
                     connection never synced, so there is no phase for a cron rule: set it \
                     in Airbyte's UI"
                )));
            };
            let converted = basic_rule(*units, *time_unit, last);
            Ok(Back::Restore {
                schedule: AirbyteSchedule::Cron {
                    expression: converted.expression,
                    zone: "UTC".into(),
                },
                note: Some(format!(
                    "the public API cannot set a basic schedule, so the nearest cron rule in \
                     UTC: {}",
                    converted.note
                )),
            })
        }
        AirbyteSchedule::Manual => Ok(Back::Restore {
            schedule: AirbyteSchedule::Manual,
            note: None,
        }),
    }
}
