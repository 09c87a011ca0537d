//! Connection schedules: what the Config API reads and writes (`scheduleType` with
//! `scheduleData`, plus the legacy `schedule`), the public API's `schedule` object, and the
//! checks Airbyte's server makes before it stores one.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::errors::{ApiError, Problem};

/// The unit of a basic schedule (`timeUnit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

impl TimeUnit {
    const ALL: [TimeUnit; 5] = [
        Self::Minutes,
        Self::Hours,
        Self::Days,
        Self::Weeks,
        Self::Months,
    ];

    /// As the Config API spells it: `minutes`, `hours`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minutes => "minutes",
            Self::Hours => "hours",
            Self::Days => "days",
            Self::Weeks => "weeks",
            Self::Months => "months",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|unit| unit.as_str() == text)
    }
}

/// When Airbyte itself syncs a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Only when asked (`scheduleType: manual`).
    Manual,
    /// Every `units` `time_unit` (`scheduleType: basic`).
    Basic { units: i64, time_unit: TimeUnit },
    /// On a Quartz cron expression in an IANA time zone (`scheduleType: cron`).
    Cron { expression: String, zone: String },
}

impl Schedule {
    /// `ConnectionScheduleType`.
    pub(crate) fn schedule_type(&self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Basic { .. } => "basic",
            Self::Cron { .. } => "cron",
        }
    }

    /// Adds `scheduleType`, `scheduleData` and the legacy `schedule` to a `ConnectionRead`.
    /// The server derives all three from the stored type and data, so only a basic schedule
    /// has the legacy field.
    pub(crate) fn write_into(&self, read: &mut Map<String, Value>) {
        read.insert("scheduleType".into(), json!(self.schedule_type()));
        match self {
            Self::Manual => {}
            Self::Basic { units, time_unit } => {
                read.insert(
                    "scheduleData".into(),
                    json!({"basicSchedule": {"timeUnit": time_unit.as_str(), "units": units}}),
                );
                read.insert(
                    "schedule".into(),
                    json!({"units": units, "timeUnit": time_unit.as_str()}),
                );
            }
            Self::Cron { expression, zone } => {
                read.insert(
                    "scheduleData".into(),
                    json!({"cron": {"cronExpression": expression, "cronTimeZone": zone}}),
                );
            }
        }
    }

    /// The public API's `ConnectionScheduleResponse`. The server writes the time unit by its
    /// Java constant name (`Every 24 HOURS`; 2023 servers wrote `hours`) and appends the zone
    /// to a cron expression.
    pub(crate) fn public_response(&self) -> Value {
        match self {
            Self::Manual => json!({"scheduleType": "manual"}),
            Self::Basic { units, time_unit } => json!({
                "scheduleType": "basic",
                "basicTiming": format!("Every {units} {}", time_unit.as_str().to_uppercase()),
            }),
            Self::Cron { expression, zone } => json!({
                "scheduleType": "cron",
                "cronExpression": format!("{expression} {zone}"),
            }),
        }
    }
}

/// `scheduleData`, with each member as present in the body.
#[derive(Debug, Default, PartialEq)]
struct ScheduleData {
    basic: Option<(i64, TimeUnit)>,
    cron: Option<(String, String)>,
}

/// The schedule fields of a `ConnectionCreate` or `ConnectionUpdate`, as the server has them
/// once Jackson and bean validation let the body through.
#[derive(Debug, PartialEq)]
pub(crate) struct ScheduleFields {
    legacy: Option<(i64, TimeUnit)>,
    schedule_type: Option<&'static str>,
    data: Option<ScheduleData>,
}

/// Which request model a body is read into, for the paths errors name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Model {
    Create,
    Update,
}

impl Model {
    fn class(self) -> &'static str {
        match self {
            Self::Create => "ConnectionCreate",
            Self::Update => "ConnectionUpdate",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Self::Create => "createConnection",
            Self::Update => "updateConnection",
        }
    }

    fn parameter(self) -> &'static str {
        match self {
            Self::Create => "connectionCreate",
            Self::Update => "connectionUpdate",
        }
    }
}

/// Where a value sits in the body: `(class, property)` from the root model down, the way
/// Jackson's "reference chain" names it.
type Chain<'a> = &'a [(&'a str, &'a str)];

fn reference_chain(chain: Chain<'_>) -> String {
    chain
        .iter()
        .map(|(class, property)| format!("io.airbyte.api.model.generated.{class}[\"{property}\"]"))
        .collect::<Vec<_>>()
        .join("->")
}

/// Jackson's 422 for a value of the wrong JSON type.
fn mismatch(java_type: &str, value: &Value, chain: Chain<'_>) -> ApiError {
    ApiError::unreadable(format!(
        "Cannot deserialize value of type `{java_type}` from {value} (through reference chain: {})",
        reference_chain(chain)
    ))
}

/// Jackson's 422 for a string outside an enum.
fn unexpected(enum_class: &str, value: &str, chain: Chain<'_>) -> ApiError {
    ApiError::unreadable(format!(
        "Cannot construct instance of `io.airbyte.api.model.generated.{enum_class}`, problem: \
         Unexpected value '{value}' (through reference chain: {})",
        reference_chain(chain)
    ))
}

/// A member of an object, `None` when absent or null (Jackson reads both the same).
fn member<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn object<'v>(
    value: &'v Value,
    class: &str,
    chain: Chain<'_>,
) -> Result<&'v Map<String, Value>, ApiError> {
    value.as_object().ok_or_else(|| {
        mismatch(
            &format!("io.airbyte.api.model.generated.{class}"),
            value,
            chain,
        )
    })
}

fn string<'v>(value: &'v Value, chain: Chain<'_>) -> Result<&'v str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| mismatch("java.lang.String", value, chain))
}

/// A `{units, timeUnit}` object: the legacy `schedule` and `scheduleData.basicSchedule` share
/// the shape. Type errors come back at once; missing members as `None`, for bean validation.
fn units_and_unit(
    object: &Map<String, Value>,
    enum_class: &str,
    chain: &[(&str, &str)],
    class: &str,
) -> Result<(Option<i64>, Option<TimeUnit>), ApiError> {
    let units = match member(object, "units") {
        None => None,
        Some(value) => {
            let chain = [chain, &[(class, "units")]].concat();
            Some(
                value
                    .as_i64()
                    .ok_or_else(|| mismatch("java.lang.Long", value, &chain))?,
            )
        }
    };
    let time_unit = match member(object, "timeUnit") {
        None => None,
        Some(value) => {
            let chain = [chain, &[(class, "timeUnit")]].concat();
            let text = string(value, &chain)?;
            Some(TimeUnit::parse(text).ok_or_else(|| unexpected(enum_class, text, &chain))?)
        }
    };
    Ok((units, time_unit))
}

/// Reads `schedule`, `scheduleType` and `scheduleData` from a create or update body: 422 for
/// values of the wrong type or outside their enum (Jackson), then 400 for required members
/// missing inside them (bean validation), naming the field either way.
pub(crate) fn read_fields(
    body: &Map<String, Value>,
    model: Model,
) -> Result<ScheduleFields, ApiError> {
    let root = model.class();

    let mut legacy = None;
    if let Some(value) = member(body, "schedule") {
        let chain = [(root, "schedule")];
        let schedule = object(value, "ConnectionSchedule", &chain)?;
        legacy = Some(units_and_unit(
            schedule,
            "ConnectionSchedule$TimeUnitEnum",
            &chain,
            "ConnectionSchedule",
        )?);
    }

    let schedule_type = match member(body, "scheduleType") {
        None => None,
        Some(value) => {
            let chain = [(root, "scheduleType")];
            let text = string(value, &chain)?;
            let known = ["manual", "basic", "cron"]
                .into_iter()
                .find(|kind| *kind == text)
                .ok_or_else(|| unexpected("ConnectionScheduleType", text, &chain))?;
            Some(known)
        }
    };

    let mut basic = None;
    let mut cron = None;
    let mut data_present = false;
    if let Some(value) = member(body, "scheduleData") {
        data_present = true;
        let chain = [(root, "scheduleData")];
        let data = object(value, "ConnectionScheduleData", &chain)?;
        if let Some(value) = member(data, "basicSchedule") {
            let chain = [
                (root, "scheduleData"),
                ("ConnectionScheduleData", "basicSchedule"),
            ];
            let basic_schedule = object(value, "ConnectionScheduleDataBasicSchedule", &chain)?;
            basic = Some(units_and_unit(
                basic_schedule,
                "ConnectionScheduleDataBasicSchedule$TimeUnitEnum",
                &chain,
                "ConnectionScheduleDataBasicSchedule",
            )?);
        }
        if let Some(value) = member(data, "cron") {
            let chain = [(root, "scheduleData"), ("ConnectionScheduleData", "cron")];
            let cron_data = object(value, "ConnectionScheduleDataCron", &chain)?;
            let text = |key: &str| -> Result<Option<String>, ApiError> {
                member(cron_data, key)
                    .map(|value| {
                        let chain = [
                            (root, "scheduleData"),
                            ("ConnectionScheduleData", "cron"),
                            ("ConnectionScheduleDataCron", key),
                        ];
                        string(value, &chain).map(str::to_string)
                    })
                    .transpose()
            };
            cron = Some((text("cronExpression")?, text("cronTimeZone")?));
        }
    }

    // Bean validation runs once the whole body was read, so type errors anywhere win.
    let required =
        |path: &str| ApiError::missing(model.operation(), format!("{}.{path}", model.parameter()));
    let legacy = match legacy {
        None => None,
        Some((units, time_unit)) => Some((
            units.ok_or_else(|| required("schedule.units"))?,
            time_unit.ok_or_else(|| required("schedule.timeUnit"))?,
        )),
    };
    let data = if data_present {
        let basic = match basic {
            None => None,
            Some((units, time_unit)) => Some((
                units.ok_or_else(|| required("scheduleData.basicSchedule.units"))?,
                time_unit.ok_or_else(|| required("scheduleData.basicSchedule.timeUnit"))?,
            )),
        };
        let cron = match cron {
            None => None,
            Some((expression, zone)) => Some((
                expression.ok_or_else(|| required("scheduleData.cron.cronExpression"))?,
                zone.ok_or_else(|| required("scheduleData.cron.cronTimeZone"))?,
            )),
        };
        Some(ScheduleData { basic, cron })
    } else {
        None
    };
    Ok(ScheduleFields {
        legacy,
        schedule_type,
        data,
    })
}

impl ScheduleFields {
    /// The schedule `connections/create` stores (`ConnectionsHandler.createConnection`): the
    /// new fields when `scheduleType` is given, else the legacy `schedule` as a basic
    /// schedule, else manual; both at once are refused.
    pub(crate) fn for_create(self, connection_id: Uuid) -> Result<Schedule, ApiError> {
        if self.legacy.is_some() && self.schedule_type.is_some() {
            return Err(ApiError::bad_schema(
                "supply old or new schedule schema but not both",
            ));
        }
        match (self.schedule_type, self.legacy) {
            (Some(kind), _) => from_type_and_data(kind, self.data, connection_id),
            (None, Some((units, time_unit))) => Ok(Schedule::Basic { units, time_unit }),
            (None, None) => Ok(Schedule::Manual),
        }
    }

    /// The schedule `connections/update` stores, if it changes one: only `scheduleType`
    /// (with `scheduleData`) does; the server's patch never reads the legacy `schedule`.
    pub(crate) fn for_update(self, connection_id: Uuid) -> Result<Option<Schedule>, ApiError> {
        self.schedule_type
            .map(|kind| from_type_and_data(kind, self.data, connection_id))
            .transpose()
    }
}

/// `ConnectionScheduleHelper.populateSyncFromScheduleTypeAndData`, minus the sub-hour limits
/// that depend on feature flags and entitlements.
fn from_type_and_data(
    kind: &str,
    data: Option<ScheduleData>,
    connection_id: Uuid,
) -> Result<Schedule, ApiError> {
    if kind == "manual" {
        return Ok(Schedule::Manual);
    }
    let Some(data) = data else {
        return Err(ApiError::bad_schema(
            "schedule data must be populated if schedule type is populated",
        ));
    };
    if kind == "basic" {
        return match data.basic {
            Some((units, time_unit)) => Ok(Schedule::Basic { units, time_unit }),
            None => Err(ApiError::bad_schema(
                "if schedule type is basic, then scheduleData.basic must be populated",
            )),
        };
    }
    let Some((expression, zone)) = data.cron else {
        return Err(ApiError::Problem(Problem::config(
            StatusCode::BAD_REQUEST,
            "error:cron-validation/missing-cron-data",
            "Cron data is missing",
            "If schedule type is cron, scheduleData.cron must be provided.",
            None,
        )));
    };
    if !is_quartz_shaped(&expression) {
        return Err(ApiError::Problem(Problem::config(
            StatusCode::BAD_REQUEST,
            "error:cron-validation/invalid-expression",
            "Invalid cron expression",
            "The cron expression is invalid",
            Some(json!({"cronExpression": expression})),
        )));
    }
    if zone.to_lowercase().starts_with("etc") || !is_known_zone(&zone) {
        return Err(ApiError::Problem(Problem::config(
            StatusCode::BAD_REQUEST,
            "error:cron-validation/invalid-timezone",
            "Invalid cron timezone",
            "The specified cron timezone is invalid",
            Some(json!({"connectionId": connection_id.to_string(), "cronTimezone": zone})),
        )));
    }
    Ok(Schedule::Cron { expression, zone })
}

/// Quartz wants six or seven fields (seconds first, year optional). The emulator checks only
/// that, so it never refuses an expression Quartz accepts; the field values are not parsed.
fn is_quartz_shaped(expression: &str) -> bool {
    (6..=7).contains(&expression.split_whitespace().count())
}

/// What Joda's `DateTimeZone.forID` accepts: tz database ids and fixed `±hh:mm` offsets.
fn is_known_zone(zone: &str) -> bool {
    if zone.parse::<chrono_tz::Tz>().is_ok() {
        return true;
    }
    let bytes = zone.as_bytes();
    bytes.len() == 6
        && matches!(bytes[0], b'+' | b'-')
        && bytes[1].is_ascii_digit()
        && bytes[2].is_ascii_digit()
        && bytes[3] == b':'
        && bytes[4].is_ascii_digit()
        && bytes[5].is_ascii_digit()
}

/// The schedule a public `ConnectionCreateRequest` or `ConnectionPatchRequest` asks for, with
/// the public controller's own checks (`validateCronConfiguration`): its cron is stored in UTC,
/// and a trailing `UTC` (as its own answers show the expression) is dropped first. `None`:
/// the request has no schedule.
pub(crate) fn from_public(value: Option<&Value>) -> Result<Option<Schedule>, Problem> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let schedule = value
        .as_object()
        .ok_or_else(|| Problem::bad_request(format!("Invalid json. schedule: {value}")))?;
    let kind = match member(schedule, "scheduleType") {
        None => return Err(Problem::bad_request("schedule.scheduleType is required")),
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "Invalid json. schedule.scheduleType: {other}"
            )));
        }
    };
    match kind {
        "manual" => return Ok(Some(Schedule::Manual)),
        "cron" => {}
        other => {
            return Err(Problem::bad_request(format!(
                "Submitted value could not be found: {other}"
            )));
        }
    }
    let given = match member(schedule, "cronExpression") {
        None => {
            return Err(Problem::bad_request(
                "Missing cron expression in the schedule.",
            ));
        }
        Some(Value::String(text)) => text.as_str(),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "Invalid json. schedule.cronExpression: {other}"
            )));
        }
    };
    // Only a trailing `UTC` triggers it, but then every `UTC` in the text goes, as the
    // server's `replace` does.
    let expression = if given.ends_with("UTC") {
        given.replace("UTC", "").trim().to_string()
    } else {
        given.to_string()
    };
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return Err(Problem::bad_request(format!(
            "The cron expression {given} is not valid. Error: Cron expression contains {} parts \
             but we expect one of [6, 7]. Please check the cron expression format at \
             https://www.quartz-scheduler.org/documentation/quartz-2.3.0/tutorials/crontrigger.html",
            fields.len()
        )));
    }
    // The controller refuses a `*` (or any non-number) in the seconds field, and in the
    // minutes field of a seven-field expression: syncs at most hourly, it says.
    let number = |field: &str| field.parse::<i32>().is_ok();
    if !number(fields[0]) || (fields.len() == 7 && !number(fields[1])) {
        return Err(Problem::bad_request(format!(
            "The cron expression {given} is not valid or is less than the one hour minimum. \
             The seconds and minutes values cannot be `*`."
        )));
    }
    Ok(Some(Schedule::Cron {
        expression,
        zone: "UTC".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn create(value: Value) -> Result<Schedule, ApiError> {
        read_fields(&body(value), Model::Create)?.for_create(Uuid::nil())
    }

    fn update(value: Value) -> Result<Option<Schedule>, ApiError> {
        read_fields(&body(value), Model::Update)?.for_update(Uuid::nil())
    }

    fn message(error: &ApiError) -> String {
        match error {
            ApiError::Unprocessable { message, .. } => message.clone(),
            ApiError::InvalidInput { property, .. } => property.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_legacy_schedule_given_to_create_is_stored_as_basic() {
        let schedule = create(json!({"schedule": {"units": 24, "timeUnit": "hours"}}));
        assert_eq!(
            schedule,
            Ok(Schedule::Basic {
                units: 24,
                time_unit: TimeUnit::Hours
            })
        );
    }

    #[test]
    fn a_create_without_schedule_fields_is_manual() {
        assert_eq!(create(json!({})), Ok(Schedule::Manual));
        assert_eq!(
            create(json!({"schedule": null, "scheduleType": null})),
            Ok(Schedule::Manual)
        );
    }

    #[test]
    fn a_create_with_both_schedule_schemas_is_refused() {
        let error = create(json!({
            "schedule": {"units": 1, "timeUnit": "hours"},
            "scheduleType": "manual",
        }))
        .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            message(&error),
            "The provided configuration does not fulfill the specification. Errors: supply old \
             or new schedule schema but not both"
        );
    }

    #[test]
    fn a_basic_or_cron_type_needs_its_data() {
        let no_data = create(json!({"scheduleType": "basic"})).unwrap_err();
        assert!(
            message(&no_data)
                .ends_with("schedule data must be populated if schedule type is populated")
        );
        let no_basic = create(json!({"scheduleType": "basic", "scheduleData": {}})).unwrap_err();
        assert!(message(&no_basic).ends_with("scheduleData.basic must be populated"));
        let no_cron = create(json!({"scheduleType": "cron", "scheduleData": {}})).unwrap_err();
        assert_eq!(no_cron.status(), StatusCode::BAD_REQUEST);
        assert!(matches!(no_cron, ApiError::Problem(_)));
        assert_eq!(
            create(json!({"scheduleType": "manual", "scheduleData": {"nonsense": 1}})),
            Ok(Schedule::Manual),
            "manual ignores whatever data comes along"
        );
    }

    #[test]
    fn schedule_values_of_the_wrong_shape_are_refused_naming_the_field() {
        let unit = create(json!({"schedule": {"units": 1, "timeUnit": "fortnights"}})).unwrap_err();
        assert_eq!(unit.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(message(&unit).contains("Unexpected value 'fortnights'"));
        assert!(message(&unit).contains("ConnectionSchedule[\"timeUnit\"]"));

        let units = create(json!({
            "scheduleType": "basic",
            "scheduleData": {"basicSchedule": {"units": "24", "timeUnit": "hours"}},
        }))
        .unwrap_err();
        assert!(message(&units).contains("java.lang.Long"));
        assert!(message(&units).contains("ConnectionScheduleDataBasicSchedule[\"units\"]"));

        let zone = create(json!({
            "scheduleType": "cron",
            "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": 3}},
        }))
        .unwrap_err();
        assert!(message(&zone).contains("ConnectionScheduleDataCron[\"cronTimeZone\"]"));

        let kind = create(json!({"scheduleType": "hourly"})).unwrap_err();
        assert!(message(&kind).contains("ConnectionScheduleType"));
    }

    #[test]
    fn missing_members_of_schedule_objects_fail_bean_validation() {
        let error = create(json!({"schedule": {"units": 24}})).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(message(&error), "connectionCreate.schedule.timeUnit");
        let cron = update(json!({
            "scheduleType": "cron",
            "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?"}},
        }))
        .unwrap_err();
        assert_eq!(
            message(&cron),
            "connectionUpdate.scheduleData.cron.cronTimeZone"
        );
    }

    #[test]
    fn cron_schedules_need_a_quartz_shaped_expression_and_a_real_zone() {
        let cron = |expression: &str, zone: &str| {
            create(json!({
                "scheduleType": "cron",
                "scheduleData": {"cron": {"cronExpression": expression, "cronTimeZone": zone}},
            }))
        };
        assert!(cron("0 0 12 * * ?", "Europe/Paris").is_ok());
        assert!(cron("0 0 12 * * ? 2030", "UTC").is_ok());
        assert!(
            cron("0 12 * * *", "UTC").is_err(),
            "five fields is Unix cron"
        );
        assert!(cron("0 0 12 * * ?", "Etc/UTC").is_err());
        assert!(cron("0 0 12 * * ?", "Mars/Olympus").is_err());
        assert!(cron("0 0 12 * * ?", "+02:00").is_ok());
    }

    #[test]
    fn an_update_changes_the_schedule_only_through_schedule_type() {
        assert_eq!(
            update(json!({"schedule": {"units": 2, "timeUnit": "days"}})),
            Ok(None),
            "the legacy field is ignored on update"
        );
        assert_eq!(
            update(json!({"scheduleData": {"basicSchedule": {"units": 2, "timeUnit": "days"}}})),
            Ok(None)
        );
        assert_eq!(
            update(json!({
                "scheduleType": "cron",
                "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "UTC"}},
            })),
            Ok(Some(Schedule::Cron {
                expression: "0 0 12 * * ?".into(),
                zone: "UTC".into()
            }))
        );
        assert_eq!(
            update(json!({"scheduleType": "manual"})),
            Ok(Some(Schedule::Manual))
        );
    }

    #[test]
    fn a_connection_read_carries_the_legacy_field_only_for_basic_schedules() {
        let mut basic = Map::new();
        Schedule::Basic {
            units: 24,
            time_unit: TimeUnit::Hours,
        }
        .write_into(&mut basic);
        assert_eq!(
            Value::Object(basic),
            json!({
                "scheduleType": "basic",
                "scheduleData": {"basicSchedule": {"timeUnit": "hours", "units": 24}},
                "schedule": {"units": 24, "timeUnit": "hours"},
            })
        );
        let mut cron = Map::new();
        Schedule::Cron {
            expression: "0 0 12 * * ?".into(),
            zone: "UTC".into(),
        }
        .write_into(&mut cron);
        assert!(cron.get("schedule").is_none());
        let mut manual = Map::new();
        Schedule::Manual.write_into(&mut manual);
        assert_eq!(Value::Object(manual), json!({"scheduleType": "manual"}));
    }

    #[test]
    fn the_public_api_renders_each_schedule_type() {
        assert_eq!(
            Schedule::Manual.public_response(),
            json!({"scheduleType": "manual"})
        );
        assert_eq!(
            Schedule::Basic {
                units: 24,
                time_unit: TimeUnit::Hours
            }
            .public_response(),
            json!({"scheduleType": "basic", "basicTiming": "Every 24 HOURS"})
        );
        assert_eq!(
            Schedule::Cron {
                expression: "0 0 12 * * ?".into(),
                zone: "Europe/Paris".into()
            }
            .public_response(),
            json!({"scheduleType": "cron", "cronExpression": "0 0 12 * * ? Europe/Paris"})
        );
    }

    #[test]
    fn a_public_cron_is_stored_in_utc_and_its_own_utc_suffix_is_dropped() {
        let cron = |expression: &str| {
            from_public(Some(
                &json!({"scheduleType": "cron", "cronExpression": expression}),
            ))
        };
        let stored = Some(Schedule::Cron {
            expression: "0 0 12 * * ?".into(),
            zone: "UTC".into(),
        });
        assert_eq!(cron("0 0 12 * * ?"), Ok(stored.clone()));
        assert_eq!(cron("0 0 12 * * ? UTC"), Ok(stored));
        assert!(cron("* 0 12 * * ?").is_err(), "seconds may not be *");
        assert!(cron("0 12 * * *").is_err());
        assert!(from_public(Some(&json!({"scheduleType": "cron"}))).is_err());
        assert!(from_public(Some(&json!({"scheduleType": "basic"}))).is_err());
        assert_eq!(
            from_public(Some(&json!({"scheduleType": "manual"}))),
            Ok(Some(Schedule::Manual))
        );
        assert_eq!(from_public(None), Ok(None));
    }
}
