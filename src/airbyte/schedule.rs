//! Connection schedules as Airbyte keeps them, read from and written to either API in one
//! place: the Config API's `scheduleType` with `scheduleData` (or the legacy `schedule` of
//! old servers), and the public API's `schedule` object, whose cron expression carries its
//! zone at the end and whose basic timing is text ("Every 24 HOURS").
//!
//! The public API can set only `manual` or a cron rule, and stores every cron rule in UTC
//! (`api.yaml`'s `AirbyteApiConnectionSchedule`); [`AirbyteSchedule::settable_on`] says
//! what a caller may ask of each API.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{ConnectionRead, ConnectionResponse, ConnectionScheduleRead};
use super::{ApiKind, Client, Error};

/// The unit of a basic schedule (`timeUnit`), as the Config API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BasicUnit {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

impl BasicUnit {
    const ALL: [BasicUnit; 5] = [
        Self::Minutes,
        Self::Hours,
        Self::Days,
        Self::Weeks,
        Self::Months,
    ];

    /// `minutes`, `hours`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minutes => "minutes",
            Self::Hours => "hours",
            Self::Days => "days",
            Self::Weeks => "weeks",
            Self::Months => "months",
        }
    }

    /// The unit in either case: the public API writes `HOURS` (servers of 2023 wrote
    /// `hours`), the Config API `hours`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|unit| unit.as_str().eq_ignore_ascii_case(text))
    }

    /// The unit's name for one of it: `hour` for `hours`.
    pub fn singular(self) -> &'static str {
        let plural = self.as_str();
        &plural[..plural.len() - 1]
    }
}

/// When Airbyte itself syncs a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AirbyteSchedule {
    /// Only when asked (`scheduleType: manual`).
    Manual,
    /// Every `units` `time_unit`, counted by Airbyte from the last run (`basic`).
    Basic { units: i64, time_unit: BasicUnit },
    /// A Quartz cron expression in a time zone (`cron`): an IANA id, or a fixed offset
    /// such as `+02:00`, which Airbyte also accepts.
    Cron { expression: String, zone: String },
}

impl fmt::Display for AirbyteSchedule {
    /// `manual`, `basic: every 24 hours`, `cron "0 0 12 * * ?" in Europe/Paris`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manual => write!(f, "manual"),
            Self::Basic { units, time_unit } => write!(f, "basic: {}", every(*units, *time_unit)),
            Self::Cron { expression, zone } => write!(f, "cron {expression:?} in {zone}"),
        }
    }
}

/// `every 24 hours`, `every hour`.
pub fn every(units: i64, unit: BasicUnit) -> String {
    if units == 1 {
        format!("every {}", unit.singular())
    } else {
        format!("every {units} {}", unit.as_str())
    }
}

/// The zone the public API writes after its cron expressions, and the only one it stores.
pub const PUBLIC_API_ZONE: &str = "UTC";

impl AirbyteSchedule {
    /// Whether Airbyte syncs the connection on its own (basic or cron).
    pub fn is_scheduled(&self) -> bool {
        !matches!(self, Self::Manual)
    }

    /// Whether `api` can store this schedule as it is: the Config API every one; the public
    /// API only manual and cron rules in UTC.
    pub fn settable_on(&self, api: ApiKind) -> bool {
        match (api, self) {
            (ApiKind::Config, _) | (ApiKind::Public, Self::Manual) => true,
            (ApiKind::Public, Self::Cron { zone, .. }) => zone == PUBLIC_API_ZONE,
            (ApiKind::Public, Self::Basic { .. }) => false,
        }
    }

    /// The schedule of a Config API `ConnectionRead`: `scheduleType` with `scheduleData`,
    /// or, from servers that predate them, the legacy `schedule` (basic) or nothing
    /// (manual). The error says which field is wrong and how.
    pub fn from_connection_read(read: &ConnectionRead) -> Result<Self, String> {
        Self::from_config_fields(
            read.schedule_type.as_deref(),
            read.schedule_data.as_ref(),
            read.extra.get("schedule"),
        )
    }

    /// [`AirbyteSchedule::from_connection_read`] from the three fields it reads.
    fn from_config_fields(
        schedule_type: Option<&str>,
        data: Option<&Value>,
        legacy: Option<&Value>,
    ) -> Result<Self, String> {
        let data = data.filter(|d| !d.is_null());
        match schedule_type {
            Some("manual") => Ok(Self::Manual),
            Some("basic") => {
                let basic = data
                    .and_then(|d| d.get("basicSchedule"))
                    .ok_or("scheduleType is basic but scheduleData.basicSchedule is missing")?;
                units_and_unit(basic, "scheduleData.basicSchedule")
            }
            Some("cron") => {
                let cron = data
                    .and_then(|d| d.get("cron"))
                    .ok_or("scheduleType is cron but scheduleData.cron is missing")?;
                let text = |key: &str| {
                    cron.get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("scheduleData.cron.{key} is missing or not text"))
                };
                Ok(Self::Cron {
                    expression: text("cronExpression")?,
                    zone: text("cronTimeZone")?,
                })
            }
            Some(other) => Err(format!(
                "scheduleType {other:?} is none of manual, basic and cron"
            )),
            None => match legacy.filter(|s| !s.is_null()) {
                Some(legacy) => units_and_unit(legacy, "schedule"),
                None => Ok(Self::Manual),
            },
        }
    }

    /// The schedule of a public `ConnectionScheduleResponse`. Its cron expression ends with
    /// the zone when the server adds one (`0 0 12 * * ? Europe/Paris`); without one it is
    /// UTC, the only zone the public API stores. A basic timing reads `Every 24 HOURS`.
    pub fn from_public(schedule: Option<&Value>) -> Result<Self, String> {
        let Some(schedule) = schedule.filter(|s| !s.is_null()) else {
            return Err("schedule is missing".into());
        };
        let text = |key: &str| schedule.get(key).and_then(Value::as_str);
        match text("scheduleType") {
            Some("manual") => Ok(Self::Manual),
            Some("cron") => {
                let given = text("cronExpression").ok_or(
                    "schedule.scheduleType is cron but schedule.cronExpression is missing",
                )?;
                let (expression, zone) = split_zone(given);
                Ok(Self::Cron {
                    expression,
                    zone: zone.unwrap_or_else(|| PUBLIC_API_ZONE.to_owned()),
                })
            }
            Some("basic") => {
                let timing = text("basicTiming")
                    .ok_or("schedule.scheduleType is basic but schedule.basicTiming is missing")?;
                parse_basic_timing(timing).ok_or_else(|| {
                    format!(
                        "schedule.basicTiming {timing:?} does not read as \"Every <number> \
                         <MINUTES|HOURS|DAYS|WEEKS|MONTHS>\""
                    )
                })
            }
            Some(other) => Err(format!(
                "schedule.scheduleType {other:?} is none of manual, basic and cron"
            )),
            None => Err("schedule.scheduleType is missing".into()),
        }
    }

    /// The `ConnectionUpdate` body that gives connection `connection_id` this schedule.
    /// A new `scheduleType` replaces the whole schedule, data and legacy field included.
    pub fn config_update(&self, connection_id: &str) -> Value {
        match self {
            Self::Manual => json!({"connectionId": connection_id, "scheduleType": "manual"}),
            Self::Basic { units, time_unit } => json!({
                "connectionId": connection_id,
                "scheduleType": "basic",
                "scheduleData": {"basicSchedule": {"timeUnit": time_unit.as_str(), "units": units}},
            }),
            Self::Cron { expression, zone } => json!({
                "connectionId": connection_id,
                "scheduleType": "cron",
                "scheduleData": {"cron": {"cronExpression": expression, "cronTimeZone": zone}},
            }),
        }
    }

    /// The `ConnectionPatchRequest` body that sets this schedule, when the public API can
    /// store it (see [`AirbyteSchedule::settable_on`]).
    pub fn public_patch(&self) -> Option<Value> {
        match self {
            Self::Manual => Some(json!({"schedule": {"scheduleType": "manual"}})),
            Self::Cron { expression, zone } if zone == PUBLIC_API_ZONE => {
                Some(json!({"schedule": {"scheduleType": "cron", "cronExpression": expression}}))
            }
            _ => None,
        }
    }
}

/// `{units, timeUnit}`, as the legacy `schedule` and `scheduleData.basicSchedule` have it.
fn units_and_unit(value: &Value, at: &str) -> Result<AirbyteSchedule, String> {
    let units = value
        .get("units")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("{at}.units is missing or not a whole number"))?;
    let unit_text = value
        .get("timeUnit")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.timeUnit is missing or not text"))?;
    let time_unit = BasicUnit::parse(unit_text).ok_or_else(|| {
        format!("{at}.timeUnit {unit_text:?} is none of minutes, hours, days, weeks and months")
    })?;
    if units < 1 {
        return Err(format!("{at}.units is {units}, not a positive number"));
    }
    Ok(AirbyteSchedule::Basic { units, time_unit })
}

/// `Every 24 HOURS` (or `every 24 hours`).
fn parse_basic_timing(timing: &str) -> Option<AirbyteSchedule> {
    let words: Vec<&str> = timing.split_whitespace().collect();
    let [first, units, unit] = words.as_slice() else {
        return None;
    };
    if !first.eq_ignore_ascii_case("every") {
        return None;
    }
    let units: i64 = units.parse().ok().filter(|n| *n >= 1)?;
    Some(AirbyteSchedule::Basic {
        units,
        time_unit: BasicUnit::parse(unit)?,
    })
}

/// Whether `text` names a time zone as Airbyte takes one: a tz database id, or a fixed
/// `±hh:mm` offset.
pub fn is_zone(text: &str) -> bool {
    text.parse::<chrono_tz::Tz>().is_ok() || fixed_offset_minutes(text).is_some()
}

/// The minutes east of UTC of a `±hh:mm` zone.
pub fn fixed_offset_minutes(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 6
        && matches!(bytes[0], b'+' | b'-')
        && bytes[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| bytes[i].is_ascii_digit());
    if !shaped {
        return None;
    }
    let hours: i32 = text[1..3].parse().ok()?;
    let minutes: i32 = text[4..6].parse().ok()?;
    let total = hours * 60 + minutes;
    Some(if bytes[0] == b'-' { -total } else { total })
}

/// A public cron expression split into the rule and the zone the server appended to it. A
/// Quartz rule has six or seven fields; a last word beyond six that names a zone is one
/// (a seventh field that is a year is not).
fn split_zone(given: &str) -> (String, Option<String>) {
    let words: Vec<&str> = given.split_whitespace().collect();
    if words.len() >= 7
        && let Some(last) = words.last()
        && is_zone(last)
    {
        return (words[..words.len() - 1].join(" "), Some((*last).to_owned()));
    }
    (words.join(" "), None)
}

/// A connection and how Airbyte schedules it, from either API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSchedule {
    /// Lower-case, hyphenated, as the config keeps ids.
    pub connection_id: String,
    pub name: String,
    pub workspace_id: Option<String>,
    /// `ConnectionStatus`: `active`, `inactive`, `locked`, ...
    pub status: String,
    /// The schedule, or why it could not be read (naming the field).
    pub schedule: Result<AirbyteSchedule, String>,
}

impl ConnectionSchedule {
    /// Whether Airbyte syncs it at all: an inactive or locked connection is not synced,
    /// whatever its schedule.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    fn from_read(read: ConnectionScheduleRead) -> Self {
        let schedule = AirbyteSchedule::from_config_fields(
            read.schedule_type.as_deref(),
            read.schedule_data.as_ref(),
            read.schedule.as_ref(),
        );
        Self {
            connection_id: read.connection_id.to_ascii_lowercase(),
            name: read.name,
            workspace_id: read.workspace_id,
            status: read.status,
            schedule,
        }
    }

    fn from_response(response: &ConnectionResponse) -> Self {
        Self {
            connection_id: response.connection_id.to_ascii_lowercase(),
            name: response.name.clone(),
            workspace_id: response.workspace_id.clone(),
            status: response.status.clone(),
            schedule: AirbyteSchedule::from_public(response.schedule.as_ref()),
        }
    }
}

/// How many connections one page of the public listing asks for (its maximum).
const PUBLIC_PAGE: u32 = 100;

impl Client {
    /// The connections of the given workspaces with their schedules, in Airbyte's order:
    /// one `connections/list` per workspace on the Config API; on the public API
    /// `GET /connections` paged until a page comes back short (every workspace the
    /// credentials reach when `workspace_ids` is empty).
    pub async fn connection_schedules(
        &self,
        workspace_ids: &[String],
    ) -> Result<Vec<ConnectionSchedule>, Error> {
        match self.api() {
            ApiKind::Config => {
                let mut out = Vec::new();
                for workspace in workspace_ids {
                    for read in self.list_connection_schedules(workspace).await? {
                        let mut found = ConnectionSchedule::from_read(read);
                        found.workspace_id.get_or_insert_with(|| workspace.clone());
                        out.push(found);
                    }
                }
                Ok(out)
            }
            ApiKind::Public => {
                let mut out: Vec<ConnectionSchedule> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut offset = 0;
                loop {
                    let page = self
                        .list_public_connections(workspace_ids, PUBLIC_PAGE, offset)
                        .await?;
                    let full = page.data.len() >= PUBLIC_PAGE as usize;
                    let before = out.len();
                    for response in &page.data {
                        let found = ConnectionSchedule::from_response(response);
                        if seen.insert(found.connection_id.clone()) {
                            out.push(found);
                        }
                    }
                    // A server that ignored `offset` would hand the same page back forever.
                    if !full || out.len() == before {
                        return Ok(out);
                    }
                    offset += PUBLIC_PAGE;
                }
            }
        }
    }

    /// Gives the connection `schedule`. On the public API only what
    /// [`AirbyteSchedule::settable_on`] allows is sent; anything else is refused here,
    /// before any request, as a 400 of cronbyte's own.
    pub async fn set_schedule(
        &self,
        connection_id: &str,
        schedule: &AirbyteSchedule,
    ) -> Result<(), Error> {
        match self.api() {
            ApiKind::Config => {
                self.update_connection(&schedule.config_update(connection_id))
                    .await?;
            }
            ApiKind::Public => {
                let Some(body) = schedule.public_patch() else {
                    return Err(Error::Rejected {
                        endpoint: format!("PATCH /connections/{connection_id}"),
                        status: 400,
                        message: format!(
                            "not sent: the public API sets only manual schedules and cron rules \
                             in UTC, not {schedule}"
                        ),
                    });
                };
                self.patch_public_connection(connection_id, &body).await?;
            }
        }
        Ok(())
    }

    /// When the connection's newest sync job was created: the Config API's `jobs/list`
    /// for the connection, or the public `GET /jobs?connectionId=`. `None` when it never
    /// synced.
    pub async fn last_sync_at(&self, connection_id: &str) -> Result<Option<DateTime<Utc>>, Error> {
        let jobs = self.connection_jobs(connection_id, 1).await?;
        Ok(jobs.first().and_then(|job| job.created_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: Value) -> ConnectionRead {
        let mut base = json!({
            "connectionId": "9F1C2D3E-4B5A-4C6D-8E7F-0A1B2C3D4E5F",
            "name": "orders",
            "sourceId": "s",
            "destinationId": "d",
            "status": "active",
        });
        if let (Some(base), Value::Object(more)) = (base.as_object_mut(), value) {
            base.extend(more);
        }
        serde_json::from_value(base).expect("a ConnectionRead")
    }

    #[test]
    fn the_config_api_schedule_is_read_from_type_and_data() {
        let basic = read(json!({
            "scheduleType": "basic",
            "scheduleData": {"basicSchedule": {"timeUnit": "hours", "units": 24}},
        }));
        assert_eq!(
            AirbyteSchedule::from_connection_read(&basic),
            Ok(AirbyteSchedule::Basic {
                units: 24,
                time_unit: BasicUnit::Hours
            })
        );
        let cron = read(json!({
            "scheduleType": "cron",
            "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "Europe/Paris"}},
        }));
        assert_eq!(
            AirbyteSchedule::from_connection_read(&cron),
            Ok(AirbyteSchedule::Cron {
                expression: "0 0 12 * * ?".into(),
                zone: "Europe/Paris".into()
            })
        );
        let manual = read(json!({"scheduleType": "manual"}));
        assert_eq!(
            AirbyteSchedule::from_connection_read(&manual),
            Ok(AirbyteSchedule::Manual)
        );
    }

    #[test]
    fn an_old_server_s_legacy_schedule_is_basic_and_its_absence_manual() {
        let legacy = read(json!({"schedule": {"units": 2, "timeUnit": "days"}}));
        assert_eq!(
            AirbyteSchedule::from_connection_read(&legacy),
            Ok(AirbyteSchedule::Basic {
                units: 2,
                time_unit: BasicUnit::Days
            })
        );
        assert_eq!(
            AirbyteSchedule::from_connection_read(&read(json!({}))),
            Ok(AirbyteSchedule::Manual)
        );
    }

    #[test]
    fn a_schedule_that_does_not_read_names_the_field() {
        let unknown = read(json!({"scheduleType": "hourly"}));
        assert!(
            AirbyteSchedule::from_connection_read(&unknown)
                .unwrap_err()
                .contains("scheduleType \"hourly\"")
        );
        let no_data = read(json!({"scheduleType": "cron", "scheduleData": {}}));
        assert!(
            AirbyteSchedule::from_connection_read(&no_data)
                .unwrap_err()
                .contains("scheduleData.cron")
        );
        let bad_unit = read(json!({
            "scheduleType": "basic",
            "scheduleData": {"basicSchedule": {"timeUnit": "fortnights", "units": 1}},
        }));
        assert!(
            AirbyteSchedule::from_connection_read(&bad_unit)
                .unwrap_err()
                .contains("scheduleData.basicSchedule.timeUnit \"fortnights\"")
        );
    }

    #[test]
    fn the_public_schedule_reads_its_zone_suffix_and_basic_timing_in_either_case() {
        let public = |value: Value| AirbyteSchedule::from_public(Some(&value));
        assert_eq!(
            public(json!({"scheduleType": "cron", "cronExpression": "0 0 12 * * ? Europe/Paris"})),
            Ok(AirbyteSchedule::Cron {
                expression: "0 0 12 * * ?".into(),
                zone: "Europe/Paris".into()
            })
        );
        assert_eq!(
            public(json!({"scheduleType": "cron", "cronExpression": "0 0 12 * * ? 2030"})),
            Ok(AirbyteSchedule::Cron {
                expression: "0 0 12 * * ? 2030".into(),
                zone: "UTC".into()
            }),
            "a seventh field that is a year is no zone"
        );
        assert_eq!(
            public(json!({"scheduleType": "cron", "cronExpression": "0 0 12 * * ? 2030 UTC"})),
            Ok(AirbyteSchedule::Cron {
                expression: "0 0 12 * * ? 2030".into(),
                zone: "UTC".into()
            })
        );
        let daily = Ok(AirbyteSchedule::Basic {
            units: 24,
            time_unit: BasicUnit::Hours,
        });
        assert_eq!(
            public(json!({"scheduleType": "basic", "basicTiming": "Every 24 HOURS"})),
            daily
        );
        assert_eq!(
            public(json!({"scheduleType": "basic", "basicTiming": "Every 24 hours"})),
            daily
        );
        assert!(
            public(json!({"scheduleType": "basic", "basicTiming": "sometimes"}))
                .unwrap_err()
                .contains("basicTiming \"sometimes\"")
        );
        assert_eq!(
            public(json!({"scheduleType": "manual"})),
            Ok(AirbyteSchedule::Manual)
        );
    }

    #[test]
    fn the_public_api_is_asked_only_for_manual_or_cron_in_utc() {
        let paris = AirbyteSchedule::Cron {
            expression: "0 0 12 * * ?".into(),
            zone: "Europe/Paris".into(),
        };
        let utc = AirbyteSchedule::Cron {
            expression: "0 0 12 * * ?".into(),
            zone: "UTC".into(),
        };
        let basic = AirbyteSchedule::Basic {
            units: 1,
            time_unit: BasicUnit::Hours,
        };
        assert!(!paris.settable_on(ApiKind::Public));
        assert!(!basic.settable_on(ApiKind::Public));
        assert!(utc.settable_on(ApiKind::Public));
        assert!(paris.settable_on(ApiKind::Config) && basic.settable_on(ApiKind::Config));
        assert_eq!(
            utc.public_patch(),
            Some(json!({"schedule": {"scheduleType": "cron", "cronExpression": "0 0 12 * * ?"}}))
        );
        assert_eq!(basic.public_patch(), None);
    }

    #[test]
    fn schedules_describe_themselves_for_people() {
        assert_eq!(
            AirbyteSchedule::Basic {
                units: 1,
                time_unit: BasicUnit::Hours
            }
            .to_string(),
            "basic: every hour"
        );
        assert_eq!(
            AirbyteSchedule::Basic {
                units: 24,
                time_unit: BasicUnit::Hours
            }
            .to_string(),
            "basic: every 24 hours"
        );
        assert_eq!(
            AirbyteSchedule::Cron {
                expression: "0 0 12 * * ?".into(),
                zone: "UTC".into()
            }
            .to_string(),
            "cron \"0 0 12 * * ?\" in UTC"
        );
    }

    #[test]
    fn fixed_offsets_are_zones_and_say_their_minutes() {
        assert_eq!(fixed_offset_minutes("+02:00"), Some(120));
        assert_eq!(fixed_offset_minutes("-05:30"), Some(-330));
        assert_eq!(fixed_offset_minutes("2030"), None);
        assert!(is_zone("Europe/Paris") && is_zone("UTC") && !is_zone("2030"));
    }
}
