//! The Config API (`/api/v1/...`): every operation is a POST with a JSON body, answered with
//! the shapes of Airbyte's `config.yaml` and the validation rules of its server.

use axum::http::Method;
use chrono::DateTime;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::catalog::{self, merge_masked};
use super::errors::ApiError;
use super::plan::{JobStatus, JobView};
use super::render::{self, InfoFlavour};
use super::schedule::{self, Model};
use super::server::Call;
use super::state::{Job, JobKind, NewConnection, StartRefusal, State};

/// `JobListRequestBody` without a page size gets this many jobs, as the server's
/// `DEFAULT_PAGE_SIZE`.
const DEFAULT_PAGE_SIZE: usize = 200;

const JOB_CONFIG_TYPES: [&str; 8] = [
    "check_connection_source",
    "check_connection_destination",
    "discover_schema",
    "get_spec",
    "sync",
    "reset_connection",
    "refresh",
    "clear",
];

pub(crate) fn handle(state: &mut State, op: &str, call: &Call<'_>) -> Result<Value, ApiError> {
    let allowed = if op == "health" {
        Method::GET
    } else {
        Method::POST
    };
    let known = is_known(state, op);
    if known && *call.method != allowed {
        return Err(ApiError::WrongMethod {
            path: call.path.to_string(),
            method: call.method.to_string(),
            allowed: if op == "health" { "GET" } else { "POST" },
        });
    }
    match op {
        "health" => Ok(json!({"available": true})),
        "workspaces/list" if state.options.legacy_workspaces_list => {
            Ok(json!({"workspaces": [render::workspace_read(state)]}))
        }
        "workspaces/list_by_organization_id" => list_workspaces_in_organization(state, call),
        "workspaces/get" => get_workspace(state, call),
        "source_definitions/list" => Ok(json!({"sourceDefinitions": state
            .source_definitions
            .iter()
            .map(catalog::definition_read)
            .collect::<Vec<_>>()})),
        "destination_definitions/list" => Ok(json!({"destinationDefinitions": state
            .destination_definitions
            .iter()
            .map(catalog::definition_read)
            .collect::<Vec<_>>()})),
        "sources/create" => create_actor(state, call, true),
        "destinations/create" => create_actor(state, call, false),
        "sources/get" => {
            let id = actor_id(call, true)?;
            Ok(render::actor_read(state, state.source(id)?, true))
        }
        "destinations/get" => {
            let id = actor_id(call, false)?;
            Ok(render::actor_read(state, state.destination(id)?, false))
        }
        "sources/update" => update_actor(state, call, true),
        "destinations/update" => update_actor(state, call, false),
        "sources/list" => list_actors(state, call, true),
        "destinations/list" => list_actors(state, call, false),
        "sources/check_connection" => check_connection(state, call, true),
        "destinations/check_connection" => check_connection(state, call, false),
        "sources/discover_schema" => discover_schema(state, call),
        "sources/delete" => delete_actor(state, call, true),
        "destinations/delete" => delete_actor(state, call, false),
        "connections/delete" => delete_connection(state, call),
        "connections/create" => create_connection(state, call),
        "connections/get" => {
            let id = connection_id(call, "getConnection")?;
            Ok(render::connection_read(state.connection(id)?))
        }
        "connections/list" => list_connections(state, call),
        "web_backend/connections/list" => list_connections_for_web(state, call),
        "connections/update" => update_connection(state, call),
        "connections/sync" => sync_connection(state, call),
        "jobs/get" => get_job(state, call, InfoFlavour::WithLogs),
        "jobs/get_without_logs" => get_job(state, call, InfoFlavour::WithoutLogs),
        "jobs/cancel" => cancel_job(state, call),
        "jobs/list" => list_jobs(state, call, false),
        "jobs/list_for_workspaces" => list_jobs(state, call, true),
        _ => Err(ApiError::NoRoute {
            path: call.path.to_string(),
        }),
    }
}

fn is_known(state: &State, op: &str) -> bool {
    const OPERATIONS: [&str; 31] = [
        "health",
        "workspaces/list_by_organization_id",
        "workspaces/get",
        "source_definitions/list",
        "destination_definitions/list",
        "sources/create",
        "destinations/create",
        "sources/get",
        "destinations/get",
        "sources/update",
        "destinations/update",
        "sources/list",
        "destinations/list",
        "sources/check_connection",
        "destinations/check_connection",
        "sources/discover_schema",
        "sources/delete",
        "destinations/delete",
        "connections/delete",
        "connections/create",
        "connections/get",
        "connections/list",
        "web_backend/connections/list",
        "connections/update",
        "connections/sync",
        "jobs/get",
        "jobs/get_without_logs",
        "jobs/cancel",
        "jobs/list",
        "jobs/list_for_workspaces",
        "applications/token",
    ];
    OPERATIONS.contains(&op) || (op == "workspaces/list" && state.options.legacy_workspaces_list)
}

/// The body as `T`, failing the way Jackson does: 422 for broken JSON or wrong types.
fn parse<T: DeserializeOwned>(call: &Call<'_>) -> Result<T, ApiError> {
    let body = if call.body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        call.body
    };
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::unreadable(error),
        _ => ApiError::not_json(error),
    })
}

/// A required field, or the 400 bean validation gives when it is missing.
fn required<T>(value: Option<T>, operation: &'static str, property: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::missing(operation, property))
}

fn enum_value(value: &str, allowed: &[&str], type_name: &str) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::unreadable(format!(
            "Cannot construct instance of `io.airbyte.api.model.generated.{type_name}`, problem: Unexpected value '{value}'"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdsBody {
    workspace_id: Option<Uuid>,
    organization_id: Option<Uuid>,
    source_id: Option<Uuid>,
    destination_id: Option<Uuid>,
    connection_id: Option<Uuid>,
}

fn list_workspaces_in_organization(state: &State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let organization = required(
        body.organization_id,
        "listWorkspacesInOrganization",
        "listWorkspacesInOrganizationRequestBody.organizationId",
    )?;
    let workspaces = if organization == super::state::DEFAULT_ORGANIZATION {
        vec![render::workspace_read(state)]
    } else {
        Vec::new()
    };
    Ok(json!({"workspaces": workspaces}))
}

fn get_workspace(state: &State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let id = required(
        body.workspace_id,
        "getWorkspace",
        "workspaceIdRequestBody.workspaceId",
    )?;
    if id != state.workspace.id {
        return Err(ApiError::not_found("STANDARD_WORKSPACE", id));
    }
    Ok(render::workspace_read(state))
}

fn actor_id(call: &Call<'_>, is_source: bool) -> Result<Uuid, ApiError> {
    let body: IdsBody = parse(call)?;
    if is_source {
        required(body.source_id, "getSource", "sourceIdRequestBody.sourceId")
    } else {
        required(
            body.destination_id,
            "getDestination",
            "destinationIdRequestBody.destinationId",
        )
    }
}

fn connection_id(call: &Call<'_>, operation: &'static str) -> Result<Uuid, ApiError> {
    let body: IdsBody = parse(call)?;
    required(
        body.connection_id,
        operation,
        "connectionIdRequestBody.connectionId",
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActorWrite {
    workspace_id: Option<Uuid>,
    source_id: Option<Uuid>,
    destination_id: Option<Uuid>,
    source_definition_id: Option<Uuid>,
    destination_definition_id: Option<Uuid>,
    name: Option<String>,
    connection_configuration: Option<Map<String, Value>>,
}

fn create_actor(state: &mut State, call: &Call<'_>, is_source: bool) -> Result<Value, ApiError> {
    let body: ActorWrite = parse(call)?;
    let (operation, prefix, definition) = if is_source {
        ("createSource", "sourceCreate", body.source_definition_id)
    } else {
        (
            "createDestination",
            "destinationCreate",
            body.destination_definition_id,
        )
    };
    let workspace_id = required(
        body.workspace_id,
        operation,
        &format!("{prefix}.workspaceId"),
    )?;
    let name = required(body.name, operation, &format!("{prefix}.name"))?;
    let definition_key = if is_source {
        "sourceDefinitionId"
    } else {
        "destinationDefinitionId"
    };
    let definition_id = required(definition, operation, &format!("{prefix}.{definition_key}"))?;
    let configuration = required(
        body.connection_configuration,
        operation,
        &format!("{prefix}.connectionConfiguration"),
    )?;
    let id = state.create_actor(
        is_source,
        workspace_id,
        definition_id,
        name,
        Value::Object(configuration),
    )?;
    if is_source {
        Ok(render::actor_read(state, state.source(id)?, true))
    } else {
        Ok(render::actor_read(state, state.destination(id)?, false))
    }
}

fn update_actor(state: &mut State, call: &Call<'_>, is_source: bool) -> Result<Value, ApiError> {
    let body: ActorWrite = parse(call)?;
    let (operation, prefix) = if is_source {
        ("updateSource", "sourceUpdate")
    } else {
        ("updateDestination", "destinationUpdate")
    };
    let (id, id_key) = if is_source {
        (body.source_id, "sourceId")
    } else {
        (body.destination_id, "destinationId")
    };
    let id = required(id, operation, &format!("{prefix}.{id_key}"))?;
    let configuration = required(
        body.connection_configuration,
        operation,
        &format!("{prefix}.connectionConfiguration"),
    )?;
    let name = required(body.name, operation, &format!("{prefix}.name"))?;
    let actor = if is_source {
        state.source(id)?;
        state.sources.by_id.get_mut(&id)
    } else {
        state.destination(id)?;
        state.destinations.by_id.get_mut(&id)
    };
    if let Some(actor) = actor {
        actor.configuration = merge_masked(&Value::Object(configuration), &actor.configuration);
        actor.name = name;
    }
    if is_source {
        Ok(render::actor_read(state, state.source(id)?, true))
    } else {
        Ok(render::actor_read(state, state.destination(id)?, false))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActorListBody {
    workspace_id: Option<Uuid>,
    cursor: Option<Uuid>,
    sort_key: Option<String>,
    filters: Option<ActorListFilters>,
    page_size: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActorListFilters {
    states: Option<Vec<String>>,
    search_term: Option<String>,
}

/// `sources/list` and `destinations/list`: the old `{workspaceId}` body lists everything;
/// the 2.0 body may add a sort key, filters, a page size and a cursor (the last id seen).
fn list_actors(state: &State, call: &Call<'_>, is_source: bool) -> Result<Value, ApiError> {
    let body: ActorListBody = parse(call)?;
    let (operation, list_key) = if is_source {
        ("listSourcesForWorkspace", "sources")
    } else {
        ("listDestinationsForWorkspace", "destinations")
    };
    let workspace_id = required(
        body.workspace_id,
        operation,
        "actorListCursorPaginatedRequestBody.workspaceId",
    )?;
    let sort_key = body.sort_key.as_deref().unwrap_or("actorName_asc");
    enum_value(
        sort_key,
        &[
            "actorName_asc",
            "actorName_desc",
            "actorDefinitionName_asc",
            "actorDefinitionName_desc",
            "lastSync_asc",
            "lastSync_desc",
        ],
        "ActorListSortKey",
    )?;
    let actors = if is_source {
        &state.sources
    } else {
        &state.destinations
    };
    let filters = body.filters.as_ref();
    let search = filters
        .and_then(|f| f.search_term.as_deref())
        .map(str::to_lowercase);
    let states = filters.and_then(|f| f.states.clone());
    let mut matching: Vec<&super::state::Actor> = actors
        .in_order()
        .filter(|actor| actor.workspace_id == workspace_id)
        .filter(|actor| {
            search.as_ref().is_none_or(|term| {
                actor.name.to_lowercase().contains(term)
                    || actor.definition_name.to_lowercase().contains(term)
            })
        })
        .filter(|actor| {
            states.as_ref().is_none_or(|wanted| {
                let status = if state.actor_is_active(actor) {
                    "active"
                } else {
                    "inactive"
                };
                wanted.iter().any(|s| s == status)
            })
        })
        .collect();
    let paginated = body.page_size.is_some() || body.cursor.is_some() || body.sort_key.is_some();
    if paginated {
        match sort_key {
            "actorName_desc" => matching.sort_by(|a, b| b.name.cmp(&a.name)),
            "actorDefinitionName_asc" => {
                matching.sort_by(|a, b| a.definition_name.cmp(b.definition_name))
            }
            "actorDefinitionName_desc" => {
                matching.sort_by(|a, b| b.definition_name.cmp(a.definition_name))
            }
            _ => matching.sort_by(|a, b| a.name.cmp(&b.name)),
        }
    }
    if let Some(cursor) = body.cursor {
        let after = matching
            .iter()
            .position(|actor| actor.id == cursor)
            .map_or(0, |index| index + 1);
        matching.drain(..after);
    }
    if let Some(size) = body.page_size {
        matching.truncate(usize::try_from(size.max(0)).unwrap_or(usize::MAX));
    }
    let reads: Vec<Value> = matching
        .iter()
        .map(|actor| render::actor_read(state, actor, is_source))
        .collect();
    let mut answer = json!({list_key: reads});
    if let (Some(size), Some(map)) = (body.page_size, answer.as_object_mut()) {
        map.insert("page_size".into(), json!(size));
    }
    Ok(answer)
}

/// `sources/delete` and `destinations/delete`: the actor goes, and every connection using it
/// is deprecated, as Airbyte does. `Null` is answered as 204 with no body.
fn delete_actor(state: &mut State, call: &Call<'_>, is_source: bool) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let id = if is_source {
        let id = required(
            body.source_id,
            "deleteSource",
            "sourceIdRequestBody.sourceId",
        )?;
        state.source(id)?;
        id
    } else {
        let id = required(
            body.destination_id,
            "deleteDestination",
            "destinationIdRequestBody.destinationId",
        )?;
        state.destination(id)?;
        id
    };
    let actors = if is_source {
        &mut state.sources
    } else {
        &mut state.destinations
    };
    let used_by = actors
        .by_id
        .remove(&id)
        .map(|actor| actor.connections)
        .unwrap_or_default();
    actors.order.retain(|other| *other != id);
    for connection in used_by {
        if let Some(connection) = state.connections.get_mut(&connection) {
            connection.status = "deprecated".into();
        }
    }
    Ok(Value::Null)
}

/// `connections/delete`: Airbyte keeps the connection, `deprecated`, out of listings.
fn delete_connection(state: &mut State, call: &Call<'_>) -> Result<Value, ApiError> {
    let id = connection_id(call, "deleteConnection")?;
    state.connection_mut(id)?.status = "deprecated".into();
    Ok(Value::Null)
}

fn synchronous_job(config_type: &str, config_id: Uuid, at: i64, failure: Option<&str>) -> Value {
    let mut job = json!({
        "id": Uuid::new_v4(),
        "configType": config_type,
        "configId": config_id.to_string(),
        "createdAt": at,
        "endedAt": at,
        "succeeded": failure.is_none(),
        "connectorConfigurationUpdated": false,
        "logType": "formatted",
        "logs": {"logLines": []},
    });
    if let (Some(message), Some(map)) = (failure, job.as_object_mut()) {
        map.insert(
            "failureReason".into(),
            json!({
                "failureOrigin": "source",
                "failureType": "config_error",
                "externalMessage": message,
                "retryable": false,
                "timestamp": at * 1000,
            }),
        );
    }
    job
}

fn check_connection(state: &State, call: &Call<'_>, is_source: bool) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let (id, config_type) = if is_source {
        let id = required(
            body.source_id,
            "checkConnectionToSource",
            "sourceIdRequestBody.sourceId",
        )?;
        state.source(id)?;
        (id, "check_connection_source")
    } else {
        let id = required(
            body.destination_id,
            "checkConnectionToDestination",
            "destinationIdRequestBody.destinationId",
        )?;
        state.destination(id)?;
        (id, "check_connection_destination")
    };
    let at = state.clock.epoch_secs(call.now);
    // The check job itself succeeds even when the connector says the check failed.
    let job_info = synchronous_job(config_type, id, at, None);
    Ok(match state.check_results.get(&id) {
        Some(Err(message)) => json!({"status": "failed", "message": message, "jobInfo": job_info}),
        _ => json!({"status": "succeeded", "jobInfo": job_info}),
    })
}

fn discover_schema(state: &State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let id = required(
        body.source_id,
        "discoverSchemaForSource",
        "sourceDiscoverSchemaRequestBody.sourceId",
    )?;
    let streams = state.discover(id)?;
    let at = state.clock.epoch_secs(call.now);
    // A source that cannot be reached discovers nothing: no catalog, a failed job.
    if let Some(Err(message)) = state.check_results.get(&id) {
        return Ok(json!({
            "jobInfo": synchronous_job("discover_schema", id, at, Some(message)),
        }));
    }
    Ok(json!({
        "catalog": catalog::catalog_of(&streams),
        "jobInfo": synchronous_job("discover_schema", id, at, None),
        "catalogId": Uuid::new_v4(),
    }))
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Flag,
    List,
    Object,
    Id,
    OneOf(&'static [&'static str], &'static str),
}

/// The `ConnectionRead` fields a create or update may set, and what their values must be.
/// The schedule fields are not among them: [`schedule::read_fields`] reads those.
const CONNECTION_SETTINGS: [(&str, Kind); 17] = [
    (
        "namespaceDefinition",
        Kind::OneOf(
            &["source", "destination", "customformat"],
            "NamespaceDefinitionType",
        ),
    ),
    ("namespaceFormat", Kind::Text),
    ("prefix", Kind::Text),
    ("operationIds", Kind::List),
    ("resourceRequirements", Kind::Object),
    ("sourceCatalogId", Kind::Id),
    ("destinationCatalogId", Kind::Id),
    ("dataplaneGroupId", Kind::Id),
    ("notifySchemaChanges", Kind::Flag),
    ("notifySchemaChangesByEmail", Kind::Flag),
    (
        "nonBreakingChangesPreference",
        Kind::OneOf(
            &["ignore", "disable", "propagate_columns", "propagate_fully"],
            "NonBreakingChangesPreference",
        ),
    ),
    (
        "backfillPreference",
        Kind::OneOf(&["enabled", "disabled"], "SchemaChangeBackfillPreference"),
    ),
    ("tags", Kind::List),
    ("onDemandEnabled", Kind::Flag),
    ("breakingChange", Kind::Flag),
    ("statusReason", Kind::Text),
    ("name", Kind::Text),
];

const CONNECTION_STATUSES: [&str; 4] = ["active", "inactive", "deprecated", "locked"];

fn check_kind(key: &str, value: &Value, kind: Kind) -> Result<(), ApiError> {
    let fits = match kind {
        Kind::Text => value.is_string(),
        Kind::Flag => value.is_boolean(),
        Kind::List => value.is_array(),
        Kind::Object => value.is_object(),
        Kind::Id => value.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok()),
        Kind::OneOf(allowed, type_name) => {
            return match value.as_str() {
                Some(text) => enum_value(text, allowed, type_name),
                None => Err(ApiError::unreadable(format!(
                    "Unexpected value for `{key}`"
                ))),
            };
        }
    };
    if fits {
        Ok(())
    } else {
        Err(ApiError::unreadable(format!(
            "Cannot deserialize value of `{key}` from {value}"
        )))
    }
}

/// The settings present (and not null) in a create or update body, validated.
fn connection_settings(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut settings = Map::new();
    for (key, kind) in CONNECTION_SETTINGS {
        if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            check_kind(key, value, kind)?;
            settings.insert(key.to_string(), value.clone());
        }
    }
    Ok(settings)
}

fn uuid_field(body: &Map<String, Value>, key: &str) -> Result<Option<Uuid>, ApiError> {
    match body.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(value) => {
            check_kind(key, value, Kind::Id)?;
            Ok(value.as_str().and_then(|s| Uuid::parse_str(s).ok()))
        }
    }
}

fn status_field(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("status").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(value) => {
            check_kind(
                "status",
                value,
                Kind::OneOf(&CONNECTION_STATUSES, "ConnectionStatus"),
            )?;
            Ok(value.as_str().map(str::to_string))
        }
    }
}

fn catalog_field(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match body.get("syncCatalog").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(catalog) if catalog.get("streams").is_some_and(Value::is_array) => {
            Ok(Some(catalog.clone()))
        }
        Some(_) => Err(ApiError::unreadable(
            "Missing required creator property 'streams' of `AirbyteCatalog`",
        )),
    }
}

fn create_connection(state: &mut State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: Map<String, Value> = parse(call)?;
    let operation = "createConnection";
    let source_id = required(
        uuid_field(&body, "sourceId")?,
        operation,
        "connectionCreate.sourceId",
    )?;
    let destination_id = required(
        uuid_field(&body, "destinationId")?,
        operation,
        "connectionCreate.destinationId",
    )?;
    let status = required(status_field(&body)?, operation, "connectionCreate.status")?;
    let sync_catalog = catalog_field(&body)?;
    let mut settings = connection_settings(&body)?;
    let schedule_fields = schedule::read_fields(&body, Model::Create)?;
    let name = settings
        .remove("name")
        .and_then(|name| name.as_str().map(str::to_string));
    settings.remove("breakingChange");
    // The handler looks the actors up before it looks at the schedule.
    state.source(source_id)?;
    state.destination(destination_id)?;
    // The id the server generated for the connection it then fails to create; it shows
    // only in the data of a refused cron.
    let schedule = schedule_fields.for_create(Uuid::new_v4())?;
    let id = state.create_connection(NewConnection {
        name,
        source_id,
        destination_id,
        status,
        sync_catalog,
        settings,
        schedule,
    })?;
    Ok(render::connection_read(state.connection(id)?))
}

fn update_connection(state: &mut State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: Map<String, Value> = parse(call)?;
    let id = required(
        uuid_field(&body, "connectionId")?,
        "updateConnection",
        "connectionUpdate.connectionId",
    )?;
    let status = status_field(&body)?;
    let sync_catalog = catalog_field(&body)?;
    let mut settings = connection_settings(&body)?;
    let schedule_fields = schedule::read_fields(&body, Model::Update)?;
    state.connection(id)?;
    let schedule = schedule_fields.for_update(id)?;
    let connection = state.connection_mut(id)?;
    if let Some(name) = settings
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_string))
    {
        connection.name = name;
    }
    if let Some(status) = status {
        connection.status = status;
    }
    if let Some(catalog) = sync_catalog {
        connection.sync_catalog = catalog;
    }
    // A new type replaces the whole schedule, so `manual` clears the data and the legacy
    // field with it.
    if let Some(schedule) = schedule {
        connection.schedule = schedule;
    }
    connection.settings.extend(settings);
    Ok(render::connection_read(connection))
}

fn list_connections(state: &State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: IdsBody = parse(call)?;
    let workspace_id = required(
        body.workspace_id,
        "listConnectionsForWorkspace",
        "workspaceIdRequestBody.workspaceId",
    )?;
    let connections: Vec<Value> = state
        .connection_order
        .iter()
        .filter_map(|id| state.connections.get(id))
        .filter(|c| c.workspace_id == workspace_id && c.status != "deprecated")
        .map(render::connection_read)
        .collect();
    Ok(json!({"connections": connections}))
}

/// What `web_backend/connections/list` sorts a connection by: a name, or an instant.
type SortKey<'a> = Box<dyn Fn(&super::state::Connection) -> (String, i64) + 'a>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebConnectionListBody {
    workspace_id: Option<Uuid>,
    source_id: Option<Vec<Uuid>>,
    destination_id: Option<Vec<Uuid>>,
    cursor: Option<Uuid>,
    sort_key: Option<String>,
    filters: Option<WebConnectionListFilters>,
    page_size: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebConnectionListFilters {
    states: Option<Vec<String>>,
    search_term: Option<String>,
}

/// `web_backend/connections/list`: the connection list of Airbyte's own web app, one
/// `WebBackendConnectionListItem` per connection (no catalog). The old body is only a
/// workspace and lists everything; a page size, a sort key and a cursor (the last
/// connection id seen, as `sources/list` takes it) page it.
fn list_connections_for_web(state: &State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: WebConnectionListBody = parse(call)?;
    let workspace_id = required(
        body.workspace_id,
        "webBackendListConnectionsForWorkspace",
        "webBackendConnectionListRequestBody.workspaceId",
    )?;
    let sort_key = body.sort_key.as_deref().unwrap_or("connectionName_asc");
    enum_value(
        sort_key,
        &[
            "connectionName_asc",
            "connectionName_desc",
            "sourceName_asc",
            "sourceName_desc",
            "destinationName_asc",
            "destinationName_desc",
            "lastSync_asc",
            "lastSync_desc",
        ],
        "WebBackendConnectionListSortKey",
    )?;
    let filters = body.filters.as_ref();
    let search = filters
        .and_then(|f| f.search_term.as_deref())
        .map(str::to_lowercase);
    let states = filters.and_then(|f| f.states.as_ref());
    let actor_name = |actors: &super::state::Actors, id: &Uuid| {
        actors
            .by_id
            .get(id)
            .map(|a| a.name.clone())
            .unwrap_or_default()
    };
    let mut matching: Vec<&super::state::Connection> = state
        .connection_order
        .iter()
        .filter_map(|id| state.connections.get(id))
        .filter(|c| c.workspace_id == workspace_id && c.status != "deprecated")
        .filter(|c| {
            body.source_id
                .as_ref()
                .is_none_or(|ids| ids.contains(&c.source_id))
        })
        .filter(|c| {
            body.destination_id
                .as_ref()
                .is_none_or(|ids| ids.contains(&c.destination_id))
        })
        .filter(|c| states.is_none_or(|wanted| wanted.contains(&c.status)))
        .filter(|c| {
            search.as_ref().is_none_or(|term| {
                c.name.to_lowercase().contains(term)
                    || actor_name(&state.sources, &c.source_id)
                        .to_lowercase()
                        .contains(term)
                    || actor_name(&state.destinations, &c.destination_id)
                        .to_lowercase()
                        .contains(term)
            })
        })
        .collect();
    let paginated = body.page_size.is_some() || body.cursor.is_some() || body.sort_key.is_some();
    if paginated {
        let last_sync = |c: &super::state::Connection| {
            c.job_ids
                .iter()
                .rev()
                .filter_map(|id| state.job(*id))
                .find(|job| job.kind == super::state::JobKind::Sync)
                .map(|job| job.created_ms)
        };
        // Ties are broken by id, so a cursor always names one place in the order.
        let (ascending, key): (bool, SortKey<'_>) = match sort_key {
            "connectionName_desc" => (false, Box::new(|c| (c.name.clone(), 0))),
            "sourceName_asc" | "sourceName_desc" => (
                sort_key.ends_with("_asc"),
                Box::new(|c| (actor_name(&state.sources, &c.source_id), 0)),
            ),
            "destinationName_asc" | "destinationName_desc" => (
                sort_key.ends_with("_asc"),
                Box::new(|c| (actor_name(&state.destinations, &c.destination_id), 0)),
            ),
            "lastSync_asc" | "lastSync_desc" => (
                sort_key.ends_with("_asc"),
                Box::new(|c| (String::new(), last_sync(c).unwrap_or(i64::MIN))),
            ),
            _ => (true, Box::new(|c| (c.name.clone(), 0))),
        };
        matching.sort_by(|a, b| {
            let order = key(a).cmp(&key(b)).then(a.id.cmp(&b.id));
            if ascending { order } else { order.reverse() }
        });
    }
    if let Some(cursor) = body.cursor {
        let after = matching
            .iter()
            .position(|c| c.id == cursor)
            .map_or(0, |index| index + 1);
        matching.drain(..after);
    }
    if let Some(size) = body.page_size {
        matching.truncate(usize::try_from(size.max(0)).unwrap_or(usize::MAX));
    }
    let items: Vec<Value> = matching
        .iter()
        .map(|c| render::connection_list_item(state, c, call.now))
        .collect();
    let mut answer = json!({"connections": items});
    if let (Some(size), Some(map)) = (body.page_size, answer.as_object_mut()) {
        map.insert("page_size".into(), json!(size));
    }
    Ok(answer)
}

fn sync_connection(state: &mut State, call: &Call<'_>) -> Result<Value, ApiError> {
    let id = connection_id(call, "syncConnection")?;
    let job_id = match state.start_job(id, JobKind::Sync, call.now) {
        Ok(job_id) => job_id,
        Err(StartRefusal::NoSuchConnection) => {
            return Err(ApiError::not_found("STANDARD_SYNC", id));
        }
        Err(StartRefusal::Inactive) => {
            return Err(ApiError::illegal_state(
                "Can only sync an active connection",
            ));
        }
        Err(StartRefusal::AlreadyRunning) => {
            return Err(ApiError::Conflict {
                message: format!("A sync is already running for: {id}"),
            });
        }
    };
    job_info(state, job_id, call, InfoFlavour::WithLogs)
}

#[derive(Deserialize)]
struct JobIdBody {
    id: Option<i64>,
}

fn job_info(
    state: &State,
    id: i64,
    call: &Call<'_>,
    flavour: InfoFlavour,
) -> Result<Value, ApiError> {
    let job = state.job(id).ok_or_else(|| ApiError::job_not_found(id))?;
    Ok(render::job_info_read(job, &job.view(call.now), flavour))
}

fn get_job(state: &State, call: &Call<'_>, flavour: InfoFlavour) -> Result<Value, ApiError> {
    let body: JobIdBody = parse(call)?;
    let operation = match flavour {
        InfoFlavour::WithLogs => "getJobInfo",
        InfoFlavour::WithoutLogs => "getJobInfoWithoutLogs",
    };
    let id = required(body.id, operation, "jobIdRequestBody.id")?;
    job_info(state, id, call, flavour)
}

fn cancel_job(state: &mut State, call: &Call<'_>) -> Result<Value, ApiError> {
    let body: JobIdBody = parse(call)?;
    let id = required(body.id, "cancelJob", "jobIdRequestBody.id")?;
    match state.cancel_job(id, call.now) {
        Ok(()) => job_info(state, id, call, InfoFlavour::WithLogs),
        Err(super::state::CancelRefusal::NoSuchJob) => Err(ApiError::job_not_found(id)),
        // Temporal finds no running workflow to cancel; the handler turns that into this.
        Err(super::state::CancelRefusal::AlreadyEnded(status)) => {
            Err(ApiError::illegal_state(format!(
                "Failed to cancel job {id}: the job is not running (status: {})",
                status.as_str()
            )))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    page_size: Option<i64>,
    row_offset: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobListBody {
    config_types: Option<Vec<String>>,
    config_id: Option<String>,
    workspace_ids: Option<Vec<Uuid>>,
    including_job_id: Option<i64>,
    pagination: Option<Pagination>,
    statuses: Option<Vec<String>>,
    created_at_start: Option<String>,
    created_at_end: Option<String>,
    updated_at_start: Option<String>,
    updated_at_end: Option<String>,
    order_by_field: Option<String>,
    order_by_method: Option<String>,
}

fn epoch_of(text: &Option<String>) -> Result<Option<i64>, ApiError> {
    text.as_ref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.timestamp())
                .map_err(|error| {
                    ApiError::unreadable(format!(
                        "Cannot deserialize value of type `java.time.OffsetDateTime` from String \"{text}\": {error}"
                    ))
                })
        })
        .transpose()
}

/// The criteria shared by `jobs/list`, `jobs/list_for_workspaces` and the public `GET /jobs`.
pub(crate) struct JobQuery {
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) connection: Option<Option<Uuid>>,
    pub(crate) workspaces: Vec<Uuid>,
    /// `None` inside: a status (`queued`) no job ever has.
    pub(crate) statuses: Option<Vec<Option<JobStatus>>>,
    pub(crate) created: (Option<i64>, Option<i64>),
    pub(crate) updated: (Option<i64>, Option<i64>),
    pub(crate) by_updated: bool,
    pub(crate) descending: bool,
}

/// Jobs matching `query`, each with its current view, in the requested order.
pub(crate) fn select_jobs<'s>(
    state: &'s State,
    query: &JobQuery,
    now: tokio::time::Instant,
) -> Vec<(&'s Job, JobView)> {
    let candidates: Box<dyn Iterator<Item = &Job>> = match query.connection {
        Some(Some(connection)) => Box::new(
            state
                .connections
                .get(&connection)
                .map(|c| c.job_ids.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|id| state.job(*id)),
        ),
        Some(None) => Box::new(std::iter::empty()),
        None => Box::new(state.jobs.iter()),
    };
    let within = |value: i64, (start, end): (Option<i64>, Option<i64>)| {
        start.is_none_or(|s| value >= s) && end.is_none_or(|e| value <= e)
    };
    let mut selected: Vec<(&Job, JobView)> = candidates
        .filter(|job| query.kinds.contains(&job.kind.config_type()))
        .filter(|job| query.workspaces.is_empty() || query.workspaces.contains(&job.workspace_id))
        .filter(|job| within(job.created_secs(), query.created))
        .map(|job| (job, job.view(now)))
        .filter(|(job, view)| within(job.epoch_secs(view.updated), query.updated))
        .filter(|(_, view)| {
            query
                .statuses
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&Some(view.status)))
        })
        .collect();
    let key = |(job, view): &(&Job, JobView)| {
        let at = if query.by_updated {
            job.epoch_secs(view.updated)
        } else {
            job.created_secs()
        };
        (at, job.id)
    };
    selected.sort_by_key(key);
    if query.descending {
        selected.reverse();
    }
    selected
}

fn list_jobs(state: &State, call: &Call<'_>, for_workspaces: bool) -> Result<Value, ApiError> {
    let body: JobListBody = parse(call)?;
    let (operation, prefix) = if for_workspaces {
        ("listJobsForWorkspaces", "jobListForWorkspacesRequestBody")
    } else {
        ("listJobsFor", "jobListRequestBody")
    };
    let config_types = required(
        body.config_types,
        operation,
        &format!("{prefix}.configTypes"),
    )?;
    let mut kinds = Vec::new();
    for config_type in &config_types {
        let known = JOB_CONFIG_TYPES
            .iter()
            .find(|t| **t == config_type.as_str())
            .ok_or_else(|| {
                ApiError::unreadable(format!(
                    "Cannot construct instance of `io.airbyte.api.model.generated.JobConfigType`, problem: Unexpected value '{config_type}'"
                ))
            })?;
        kinds.push(*known);
    }
    let statuses = body
        .statuses
        .map(|statuses| {
            statuses
                .iter()
                .map(|s| {
                    JobStatus::parse(s).ok_or_else(|| {
                        ApiError::unreadable(format!(
                            "Cannot construct instance of `io.airbyte.api.model.generated.JobStatus`, problem: Unexpected value '{s}'"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if let Some(field) = &body.order_by_field {
        enum_value(field, &["createdAt", "updatedAt"], "OrderByFieldEnum")?;
    }
    if let Some(method) = &body.order_by_method {
        enum_value(method, &["ASC", "DESC"], "OrderByMethodEnum")?;
    }
    let query = JobQuery {
        kinds,
        connection: body.config_id.as_ref().map(|id| Uuid::parse_str(id).ok()),
        workspaces: if for_workspaces {
            body.workspace_ids.unwrap_or_default()
        } else {
            Vec::new()
        },
        statuses,
        created: (
            epoch_of(&body.created_at_start)?,
            epoch_of(&body.created_at_end)?,
        ),
        updated: (
            epoch_of(&body.updated_at_start)?,
            epoch_of(&body.updated_at_end)?,
        ),
        by_updated: body.order_by_field.as_deref() == Some("updatedAt"),
        descending: body.order_by_method.as_deref() != Some("ASC"),
    };
    let selected = select_jobs(state, &query, call.now);
    let pagination = body.pagination.unwrap_or_default();
    let mut page_size = pagination
        .page_size
        .and_then(|size| usize::try_from(size).ok())
        .filter(|size| *size > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let mut offset = pagination
        .row_offset
        .and_then(|offset| usize::try_from(offset).ok())
        .unwrap_or(0);
    if let Some(including) = body.including_job_id {
        match selected.iter().position(|(job, _)| job.id == including) {
            // Enough whole pages from the start to reach the job.
            Some(index) => {
                page_size *= index / page_size + 1;
                offset = 0;
            }
            None => return Ok(json!({"jobs": [], "totalJobCount": selected.len()})),
        }
    }
    let jobs: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|(job, view)| render::job_with_attempts(job, view))
        .collect();
    Ok(json!({"jobs": jobs, "totalJobCount": selected.len()}))
}
