//! Conformance of the Airbyte emulator to Airbyte's own OpenAPI specs: every operation the
//! emulator serves is called over HTTP, error cases included, and every answer body is
//! validated against the schema the real spec declares for that path, method and status.

#[path = "common/spec.rs"]
mod spec;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cronbyte::emulator::{
    AttemptPlan, Emulator, EmulatorAuth, EmulatorControl, EmulatorHandle, EmulatorOptions,
    ErrorStyle, Faults, JobPlan, Schedule, TimeUnit,
};
use reqwest::Method;
use serde_json::{Value, json};
use spec::{Spec, Specs};
use uuid::Uuid;

fn specs() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(Specs::load)
}

const POSTGRES: &str = "decd338e-5647-4c0b-adf4-da0e75f5a750";
const S3: &str = "4816b78f-1489-44c1-9060-4b19d5fa9362";

struct Answer {
    status: u16,
    body: Value,
    text: String,
    content_type: String,
}

/// An emulator plus a client that checks every answer against the specs.
struct Airbyte {
    handle: EmulatorHandle,
    control: EmulatorControl,
    http: reqwest::Client,
    style: ErrorStyle,
    token: Option<String>,
}

impl Airbyte {
    async fn start(options: EmulatorOptions) -> Self {
        let style = options.error_style;
        let handle = Emulator::bind("127.0.0.1:0".parse().unwrap(), options)
            .await
            .expect("the emulator starts");
        let control = handle.control();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            handle,
            control,
            http,
            style,
            token: None,
        }
    }

    async fn send(&self, method: Method, url: String, body: Option<String>) -> Answer {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the emulator answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            text,
            content_type,
        }
    }

    /// A Config API call, checked against `config.yaml`.
    async fn config(&self, op: &str, body: Value) -> Answer {
        self.config_text(op, body.to_string()).await
    }

    async fn config_text(&self, op: &str, body: String) -> Answer {
        let url = format!("{}/{op}", self.handle.config_api_base());
        let answer = if op == "health" {
            self.send(Method::GET, url, None).await
        } else {
            self.send(Method::POST, url, Some(body)).await
        };
        check_config(self.style, op, &answer);
        answer
    }

    /// A public API call, checked against `api.yaml` and `api-problems.yaml`.
    async fn public(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.handle.public_api_base());
        let answer = self
            .send(method.clone(), url, body.map(|b| b.to_string()))
            .await;
        let template = match path.split('?').next().unwrap_or(path) {
            p if p.starts_with("/jobs/") => "/jobs/{jobId}".to_string(),
            p if p.starts_with("/connections/") => "/connections/{connectionId}".to_string(),
            p => p.to_string(),
        };
        check_public(&method, &template, &answer);
        answer
    }

    async fn sync(&self, connection: Uuid) -> Answer {
        self.config("connections/sync", json!({"connectionId": connection}))
            .await
    }
}

/// Validates against a named schema of `spec`, panicking with every violation.
fn assert_valid(spec: &Spec, schema: &str, body: &Value) {
    if let Err(report) = spec.validate(&spec.schema(schema), body) {
        panic!("{report}");
    }
}

/// The 2.0 error body: a lone `errorId`. The spec's `NotFoundKnownExceptionInfo` is the one
/// schema that allows exactly that (an `errorId` uuid and nothing required).
fn assert_error_id_only(body: &Value) {
    assert_valid(&specs().config, "NotFoundKnownExceptionInfo", body);
    let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        ["errorId"],
        "a 2.0 error body carries only errorId: {body}"
    );
}

fn check_config(style: ErrorStyle, op: &str, answer: &Answer) {
    let specs = specs();
    let spec = if op == "workspaces/list" {
        &specs.config_v1_6
    } else {
        &specs.config
    };
    let path = format!("/v1/{op}");
    let method = if op == "health" { "get" } else { "post" };
    let body = &answer.body;
    match answer.status {
        200 => {
            let schema = spec
                .response_schema(&path, method, 200)
                .unwrap_or_else(|| panic!("the spec declares no 200 body for {path}"));
            if let Err(report) = spec.validate(&schema, body) {
                panic!("{op} 200: {report}");
            }
        }
        401 => assert!(answer.text.is_empty(), "a 401 has no body: {}", answer.text),
        404 if body["message"] == "Page Not Found" => {
            // A path this server version does not have: Micronaut's own answer, which no
            // Airbyte schema describes.
            assert!(body["_embedded"]["errors"].is_array(), "{}", answer.text);
        }
        404 => {
            // Declared as `NotFoundResponse`; operations that forgot to declare it still
            // answer it through the same exception handler.
            let schema = spec
                .response_schema(&path, method, 404)
                .unwrap_or_else(|| spec.schema("NotFoundKnownExceptionInfo"));
            if let Err(report) = spec.validate(&schema, body) {
                panic!("{op} 404: {report}");
            }
            match style {
                ErrorStyle::Legacy => assert!(body["message"].is_string(), "{body}"),
                ErrorStyle::V2 => assert_error_id_only(body),
            }
        }
        409 => {
            // Not declared by any operation; the server sends `KnownExceptionInfo`.
            assert_valid(spec, "KnownExceptionInfo", body);
            if style == ErrorStyle::V2 {
                let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
                keys.sort();
                assert_eq!(keys, ["errorId", "message"], "{body}");
            }
        }
        400 if body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("error:")) =>
        {
            // A problem a handler threw (a cron validation, say), answered as is whatever
            // the generation.
            let kind = body["type"].as_str().unwrap_or_default();
            let name = specs
                .problems
                .problem_named_by_type(kind)
                .unwrap_or_else(|| panic!("api-problems.yaml has no problem typed {kind}"));
            assert_problem(&name, body);
        }
        400 => match style {
            // Not declared; bean validation answers `InvalidInputExceptionInfo`.
            ErrorStyle::Legacy => assert_valid(spec, "InvalidInputExceptionInfo", body),
            ErrorStyle::V2 => assert_error_id_only(body),
        },
        422 => {
            // The spec declares `InvalidInputExceptionInfo` (which requires
            // `validationErrors`), but the server's JSON handlers answer a
            // `KnownExceptionInfo` (1.x) or a bare `errorId` (2.0): the spec is wrong here.
            assert!(spec.declares(&path, method, 422), "{op} declares no 422");
            match style {
                ErrorStyle::Legacy => assert_valid(spec, "KnownExceptionInfo", body),
                ErrorStyle::V2 => assert_error_id_only(body),
            }
        }
        500 => match style {
            // Not declared; uncaught exceptions answer `KnownExceptionInfo`.
            ErrorStyle::Legacy => {
                assert_valid(spec, "KnownExceptionInfo", body);
                assert!(
                    body["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Internal Server Error: ")),
                    "{body}"
                );
            }
            ErrorStyle::V2 => assert_error_id_only(body),
        },
        other => panic!("{op} answered an unexpected {other}: {}", answer.text),
    }
}

/// Checks a problem body against its schema and the `type`, `title` and `status` the schema
/// gives as defaults.
fn assert_problem(name: &str, body: &Value) {
    let problems = &specs().problems;
    assert_valid(problems, name, body);
    for field in ["type", "title", "status"] {
        let expected = problems
            .problem_default(name, field)
            .unwrap_or_else(|| panic!("{name} has no default {field}"));
        assert_eq!(body[field], expected, "{name}.{field} in {body}");
    }
}

fn check_public(method: &Method, template: &str, answer: &Answer) {
    let spec = &specs().public;
    let verb = method.as_str().to_lowercase();
    let body = &answer.body;
    match answer.status {
        200 => match spec.response_schema(template, &verb, 200) {
            Some(schema) => {
                if let Err(report) = spec.validate(&schema, body) {
                    panic!("{method} {template} 200: {report}");
                }
            }
            None => {
                assert!(
                    spec.declares(template, &verb, 200),
                    "{method} {template} is not in api.yaml"
                );
                assert!(answer.text.is_empty(), "no body declared: {}", answer.text);
            }
        },
        401 => assert!(answer.text.is_empty(), "a 401 has no body: {}", answer.text),
        // The public spec declares its errors without bodies; the bodies are problems.
        409 => {
            let kind = body["type"].as_str().unwrap_or_default();
            if kind.ends_with("#try-again-later") {
                assert_problem("TryAgainLaterConflictProblemResponse", body);
            } else {
                assert_problem("StateConflictProblemResponse", body);
            }
        }
        404 => assert_problem("ResourceNotFoundProblemResponse", body),
        400 => assert_problem("BadRequestProblemResponse", body),
        422 => assert_problem("UnprocessableEntityProblemResponse", body),
        500 => assert_problem("UnexpectedProblemResponse", body),
        other => panic!(
            "{method} {template} answered an unexpected {other}: {}",
            answer.text
        ),
    }
    if answer.status >= 400 && answer.status != 401 {
        assert_eq!(answer.content_type, "application/problem+json");
    }
}

fn id_of(answer: &Answer, key: &str) -> Uuid {
    answer.body[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}", answer.text))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_validator_rejects_bodies_that_drift_from_the_spec() {
    let config = &specs().config;
    let job = json!({
        "id": 1,
        "configType": "sync",
        "configId": Uuid::new_v4().to_string(),
        "createdAt": 1_700_000_000,
        "updatedAt": 1_700_000_000,
        "status": "running",
    });
    assert!(config.validate(&config.schema("JobRead"), &job).is_ok());

    let mut without_status = job.clone();
    without_status.as_object_mut().unwrap().remove("status");
    assert!(
        config
            .validate(&config.schema("JobRead"), &without_status)
            .is_err()
    );

    let mut misspelt = job.clone();
    misspelt["recordSynced"] = json!(3);
    assert!(
        config
            .validate(&config.schema("JobRead"), &misspelt)
            .is_err()
    );

    let mut unknown_status = job;
    unknown_status["status"] = json!("done");
    assert!(
        config
            .validate(&config.schema("JobRead"), &unknown_status)
            .is_err()
    );

    let stream = json!({"name": "users", "jsonSchema": {"type": "object"}});
    assert!(
        config
            .validate(&config.schema("AirbyteStream"), &stream)
            .is_ok()
    );
    assert!(
        config
            .validate(&config.schema("AirbyteStream"), &json!({"name": "users"}))
            .is_err()
    );

    // Formats are checked too: a connection id must be a UUID.
    let request = config.schema("ConnectionIdRequestBody");
    assert!(
        config
            .validate(&request, &json!({"connectionId": Uuid::new_v4()}))
            .is_ok()
    );
    assert!(
        config
            .validate(&request, &json!({"connectionId": "nope"}))
            .is_err()
    );

    let problem = json!({"status": 409, "type": "x", "title": "y", "data": {}});
    assert!(
        specs()
            .problems
            .validate(
                &specs().problems.schema("StateConflictProblemResponse"),
                &problem
            )
            .is_err(),
        "ProblemMessageData requires a message"
    );
}

#[tokio::test]
async fn every_config_api_operation_answers_in_the_shape_the_spec_declares() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let workspace = control.workspace_id();

    let health = airbyte.config("health", json!({})).await;
    assert_eq!(health.body, json!({"available": true}));

    let listed = airbyte.config("workspaces/list", json!({})).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body["workspaces"][0]["workspaceId"],
        workspace.to_string()
    );
    let in_org = airbyte
        .config(
            "workspaces/list_by_organization_id",
            json!({"organizationId": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(
        in_org.body["workspaces"][0]["workspaceId"],
        workspace.to_string()
    );
    let got = airbyte
        .config("workspaces/get", json!({"workspaceId": workspace}))
        .await;
    assert_eq!(got.status, 200);
    let missing = airbyte
        .config("workspaces/get", json!({"workspaceId": Uuid::new_v4()}))
        .await;
    assert_eq!(missing.status, 404);

    let sources = airbyte.config("source_definitions/list", json!({})).await;
    let names: Vec<&str> = sources.body["sourceDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for expected in [
        "Postgres",
        "MySQL",
        "File (CSV, JSON, Excel, Feather, Parquet)",
        "Sample Data",
    ] {
        assert!(names.contains(&expected), "{names:?} lacks {expected}");
    }
    let destinations = airbyte
        .config("destination_definitions/list", json!({}))
        .await;
    assert_eq!(
        destinations.body["destinationDefinitions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Sources.
    let source = airbyte
        .config(
            "sources/create",
            json!({
                "workspaceId": workspace,
                "name": "ecommerce",
                "sourceDefinitionId": POSTGRES,
                "connectionConfiguration": {"host": "db", "port": 5432, "database": "shop", "password": "hunter2"},
            }),
        )
        .await;
    assert_eq!(source.status, 200);
    assert_eq!(
        source.body["connectionConfiguration"]["password"],
        "**********"
    );
    assert_eq!(source.body["sourceName"], "Postgres");
    let source_id = id_of(&source, "sourceId");
    let fetched = airbyte
        .config("sources/get", json!({"sourceId": source_id}))
        .await;
    assert_eq!(fetched.body["name"], "ecommerce");
    let updated = airbyte
        .config(
            "sources/update",
            json!({
                "sourceId": source_id,
                "name": "ecommerce-eu",
                "connectionConfiguration": {"host": "db-eu", "port": 5432, "database": "shop", "password": "**********"},
            }),
        )
        .await;
    assert_eq!(updated.body["name"], "ecommerce-eu");
    assert_eq!(updated.body["connectionConfiguration"]["host"], "db-eu");
    assert_eq!(
        airbyte
            .config("sources/get", json!({"sourceId": Uuid::new_v4()}))
            .await
            .status,
        404
    );
    let old_list = airbyte
        .config("sources/list", json!({"workspaceId": workspace}))
        .await;
    assert_eq!(old_list.body["sources"].as_array().unwrap().len(), 1);
    let new_list = airbyte
        .config(
            "sources/list",
            json!({"workspaceId": workspace, "pageSize": 10, "sortKey": "actorName_asc", "filters": {"searchTerm": "ecom"}}),
        )
        .await;
    assert_eq!(
        new_list.body["sources"][0]["sourceId"],
        source_id.to_string()
    );
    let checked = airbyte
        .config("sources/check_connection", json!({"sourceId": source_id}))
        .await;
    assert_eq!(checked.body["status"], "succeeded");
    control.set_check_result(source_id, Err("password authentication failed".into()));
    let failed_check = airbyte
        .config("sources/check_connection", json!({"sourceId": source_id}))
        .await;
    assert_eq!(failed_check.body["status"], "failed");
    assert_eq!(
        failed_check.body["message"],
        "password authentication failed"
    );
    let undiscoverable = airbyte
        .config("sources/discover_schema", json!({"sourceId": source_id}))
        .await;
    assert_eq!(undiscoverable.body["jobInfo"]["succeeded"], false);
    assert!(undiscoverable.body.get("catalog").is_none());
    control.set_check_result(source_id, Ok(()));
    let discovered = airbyte
        .config("sources/discover_schema", json!({"sourceId": source_id}))
        .await;
    let streams: Vec<&str> = discovered.body["catalog"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["stream"]["name"].as_str())
        .collect();
    assert_eq!(streams, ["customers", "orders", "products"]);
    assert!(discovered.body["catalogId"].is_string());
    let catalog = discovered.body["catalog"].clone();
    assert_eq!(
        airbyte
            .config(
                "sources/discover_schema",
                json!({"sourceId": Uuid::new_v4()})
            )
            .await
            .status,
        404
    );

    // Destinations.
    let destination = airbyte
        .config(
            "destinations/create",
            json!({
                "workspaceId": workspace,
                "name": "lake",
                "destinationDefinitionId": S3,
                "connectionConfiguration": {"s3_bucket_name": "lake", "secret_access_key": "shh", "access_key_id": "AKIA"},
            }),
        )
        .await;
    assert_eq!(
        destination.body["connectionConfiguration"]["secret_access_key"],
        "**********"
    );
    let destination_id = id_of(&destination, "destinationId");
    airbyte
        .config("destinations/get", json!({"destinationId": destination_id}))
        .await;
    assert_eq!(
        airbyte
            .config("destinations/get", json!({"destinationId": Uuid::new_v4()}))
            .await
            .status,
        404
    );
    let destination_list = airbyte
        .config("destinations/list", json!({"workspaceId": workspace}))
        .await;
    assert_eq!(
        destination_list.body["destinations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    airbyte
        .config(
            "destinations/list",
            json!({"workspaceId": workspace, "pageSize": 1, "filters": {"states": ["inactive"]}}),
        )
        .await;
    let destination_check = airbyte
        .config(
            "destinations/check_connection",
            json!({"destinationId": destination_id}),
        )
        .await;
    assert_eq!(destination_check.body["status"], "succeeded");

    // Connections.
    let connection = airbyte
        .config(
            "connections/create",
            json!({
                "name": "shop to lake",
                "sourceId": source_id,
                "destinationId": destination_id,
                "status": "active",
                "syncCatalog": catalog,
                "scheduleType": "manual",
            }),
        )
        .await;
    assert_eq!(connection.status, 200);
    let connection_id = id_of(&connection, "connectionId");
    let fetched = airbyte
        .config("connections/get", json!({"connectionId": connection_id}))
        .await;
    assert_eq!(fetched.body["name"], "shop to lake");
    assert_eq!(
        airbyte
            .config("connections/get", json!({"connectionId": Uuid::new_v4()}))
            .await
            .status,
        404
    );
    let connections = airbyte
        .config("connections/list", json!({"workspaceId": workspace}))
        .await;
    assert_eq!(connections.body["connections"].as_array().unwrap().len(), 1);
    // The web app's list: the same connection without its catalog, paged on request.
    let listed = airbyte
        .config(
            "web_backend/connections/list",
            json!({"workspaceId": workspace, "pageSize": 10, "sortKey": "connectionName_asc"}),
        )
        .await;
    assert_eq!(listed.status, 200);
    let items = listed.body["connections"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["connectionId"], connection_id.to_string());
    assert_eq!(items[0]["scheduleType"], "manual");
    assert!(items[0].get("syncCatalog").is_none(), "{}", listed.body);
    let after_last = airbyte
        .config(
            "web_backend/connections/list",
            json!({"workspaceId": workspace, "pageSize": 10, "cursor": connection_id}),
        )
        .await;
    assert_eq!(after_last.body["connections"], json!([]));
    assert_eq!(
        airbyte
            .config("web_backend/connections/list", json!({"pageSize": 10}))
            .await
            .status,
        400
    );
    assert_eq!(
        airbyte
            .config(
                "web_backend/connections/list",
                json!({"workspaceId": workspace, "sortKey": "newest_first"}),
            )
            .await
            .status,
        422
    );
    let scheduled = airbyte
        .config(
            "connections/update",
            json!({
                "connectionId": connection_id,
                "scheduleType": "cron",
                "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "UTC"}},
            }),
        )
        .await;
    assert_eq!(scheduled.body["scheduleType"], "cron");
    assert_eq!(
        airbyte
            .config(
                "connections/create",
                json!({"sourceId": Uuid::new_v4(), "destinationId": destination_id, "status": "active"}),
            )
            .await
            .status,
        404
    );

    // Syncs and jobs.
    control.set_plan(connection_id, JobPlan::hanging());
    let sync = airbyte.sync(connection_id).await;
    assert_eq!(sync.status, 200);
    assert_eq!(sync.body["job"]["status"], "pending");
    assert_eq!(sync.body["job"]["configId"], connection_id.to_string());
    let job_id = sync.body["job"]["id"].as_i64().unwrap();
    let again = airbyte.sync(connection_id).await;
    assert_eq!(again.status, 409);
    assert_eq!(
        again.body["message"],
        format!("A sync is already running for: {connection_id}")
    );
    assert_eq!(
        again.body["exceptionClassName"],
        "io.airbyte.commons.server.errors.ValueConflictKnownException"
    );
    assert_eq!(airbyte.sync(Uuid::new_v4()).await.status, 404);

    airbyte.config("jobs/get", json!({"id": job_id})).await;
    airbyte
        .config("jobs/get_without_logs", json!({"id": job_id}))
        .await;
    let list = airbyte
        .config(
            "jobs/list",
            json!({"configTypes": ["sync"], "configId": connection_id.to_string()}),
        )
        .await;
    assert_eq!(list.body["totalJobCount"], 1);
    let for_workspaces = airbyte
        .config(
            "jobs/list_for_workspaces",
            json!({"configTypes": ["sync"], "workspaceIds": [workspace]}),
        )
        .await;
    assert_eq!(for_workspaces.body["jobs"][0]["job"]["id"], job_id);
    let cancelled = airbyte.config("jobs/cancel", json!({"id": job_id})).await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.body["job"]["status"], "cancelled");
    let cancelled_again = airbyte.config("jobs/cancel", json!({"id": job_id})).await;
    assert_eq!(cancelled_again.status, 500);

    let unknown = airbyte.config("jobs/get", json!({"id": 4242})).await;
    assert_eq!(unknown.status, 500);
    assert_eq!(
        unknown.body["message"],
        "Internal Server Error: Could not find job with id: 4242"
    );
    assert_eq!(
        airbyte
            .config("jobs/get_without_logs", json!({"id": 4242}))
            .await
            .status,
        500
    );
    assert_eq!(
        airbyte
            .config("jobs/cancel", json!({"id": 4242}))
            .await
            .status,
        500
    );

    airbyte
        .config(
            "connections/update",
            json!({"connectionId": connection_id, "status": "inactive"}),
        )
        .await;
    let inactive = airbyte.sync(connection_id).await;
    assert_eq!(inactive.status, 500);
    assert_eq!(
        inactive.body["message"],
        "Internal Server Error: Can only sync an active connection"
    );

    let no_types = airbyte
        .config("jobs/list", json!({"configId": connection_id.to_string()}))
        .await;
    assert_eq!(no_types.status, 400);
    assert_eq!(
        no_types.body["validationErrors"][0]["propertyPath"],
        "listJobsFor.jobListRequestBody.configTypes"
    );
    assert_eq!(
        airbyte
            .config("jobs/list_for_workspaces", json!({}))
            .await
            .status,
        400
    );
    let malformed = airbyte
        .config_text("jobs/list", "{\"configTypes\": [".into())
        .await;
    assert_eq!(malformed.status, 422);
    let wrong_enum = airbyte
        .config("jobs/list", json!({"configTypes": ["backup"]}))
        .await;
    assert_eq!(wrong_enum.status, 422);
    let wrong_type = airbyte.config("jobs/get", json!({"id": "seven"})).await;
    assert_eq!(wrong_type.status, 422);

    let token = airbyte
        .config(
            "applications/token",
            json!({"client_id": "cronbyte", "client_secret": "s3cret"}),
        )
        .await;
    assert!(token.body["access_token"].is_string());

    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn jobs_in_every_state_show_their_counts_where_the_real_server_puts_them() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let pending = control.add_connection("pending");
    let running = control.add_connection("running");
    let incomplete = control.add_connection("incomplete");
    let succeeded = control.add_connection("succeeded");
    let failed = control.add_connection("failed");
    let cancelled = control.add_connection("cancelled");
    control.set_plan(
        pending,
        JobPlan::hanging().pending_for(Duration::from_secs(3_600)),
    );
    control.set_plan(running, JobPlan::hanging().pending_for(Duration::ZERO));
    control.set_plan(
        incomplete,
        JobPlan::failing(Duration::ZERO, "connection reset by peer")
            .pending_for(ms(1_500))
            .then(AttemptPlan::succeeding(Duration::from_secs(3_600), 10, 10)),
    );
    control.set_plan(
        succeeded,
        JobPlan::succeeding(ms(100), 1_000, 250_000).pending_for(Duration::ZERO),
    );
    control.set_plan(
        failed,
        JobPlan {
            pending_for: Duration::ZERO,
            attempts: vec![AttemptPlan {
                duration: ms(100),
                outcome: cronbyte::emulator::AttemptOutcome::Fail {
                    message: "Postgres went away".into(),
                },
                records: 40,
                bytes: 4_000,
            }],
        },
    );
    control.set_plan(cancelled, JobPlan::hanging().pending_for(Duration::ZERO));

    let mut ids = Vec::new();
    for connection in [pending, running, incomplete, succeeded, failed, cancelled] {
        let sync = airbyte.sync(connection).await;
        ids.push(sync.body["job"]["id"].as_i64().unwrap());
    }
    let cancel = airbyte.config("jobs/cancel", json!({"id": ids[5]})).await;
    assert_eq!(cancel.body["job"]["status"], "cancelled");
    tokio::time::sleep(ms(2_000)).await;

    let expected = [
        "pending",
        "running",
        "incomplete",
        "succeeded",
        "failed",
        "cancelled",
    ];
    let snapshots = control.jobs();
    for (id, status) in ids.iter().zip(expected) {
        let get = airbyte.config("jobs/get", json!({"id": id})).await;
        let without_logs = airbyte
            .config("jobs/get_without_logs", json!({"id": id}))
            .await;
        let connection = get.body["job"]["configId"].as_str().unwrap().to_string();
        let list = airbyte
            .config(
                "jobs/list",
                json!({"configTypes": ["sync"], "configId": connection}),
            )
            .await;
        let public = airbyte
            .public(Method::GET, &format!("/jobs/{id}"), None)
            .await;
        let listed = &list.body["jobs"][0];
        for job in [&get.body["job"], &without_logs.body["job"], &listed["job"]] {
            assert_eq!(job["status"], status, "job {id}");
            assert!(job.get("startedAt").is_none(), "startedAt is never set");
        }
        assert_eq!(public.body["status"], status);
        let snapshot = snapshots.iter().find(|s| s.id == *id).unwrap();
        assert_eq!(snapshot.status, status);

        // Plain jobs/get never aggregates; the two others always do, live.
        assert!(get.body["job"].get("aggregatedStats").is_none());
        assert!(without_logs.body["job"]["aggregatedStats"].is_object());
        assert!(listed["job"]["aggregatedStats"].is_object());
        assert_eq!(
            without_logs.body["job"]["aggregatedStats"]["recordsCommitted"],
            public.body["rowsSynced"]
        );
        for attempt in get.body["attempts"].as_array().unwrap() {
            assert_eq!(attempt["logs"], json!({"logLines": []}));
        }
        assert_eq!(
            public.body.get("lastUpdatedAt").is_some(),
            matches!(status, "succeeded" | "failed" | "cancelled")
        );
        assert_eq!(public.body.get("duration").is_some(), status != "pending");
    }

    let attempts = |answer: &Answer| answer.body["attempts"].as_array().unwrap().clone();

    // pending: no attempt yet.
    let get = airbyte.config("jobs/get", json!({"id": ids[0]})).await;
    assert!(attempts(&get).is_empty());

    // running: the attempt's own stats exist only live, in jobs/list.
    let get = airbyte.config("jobs/get", json!({"id": ids[1]})).await;
    let attempt = &attempts(&get)[0]["attempt"];
    assert_eq!(attempt["status"], "running");
    for absent in ["endedAt", "totalStats", "bytesSynced", "recordsSynced"] {
        assert!(
            attempt.get(absent).is_none(),
            "a running attempt has no {absent} in jobs/get"
        );
    }
    let without_logs = airbyte
        .config("jobs/get_without_logs", json!({"id": ids[1]}))
        .await;
    assert!(
        attempts(&without_logs)[0]["attempt"]
            .get("totalStats")
            .is_none()
    );
    assert!(attempts(&without_logs)[0].get("logs").is_none());
    let list = airbyte
        .config(
            "jobs/list",
            json!({"configTypes": ["sync"], "configId": running.to_string()}),
        )
        .await;
    assert!(list.body["jobs"][0]["attempts"][0]["totalStats"].is_object());

    // incomplete: the first attempt failed, the retry has not started.
    let get = airbyte.config("jobs/get", json!({"id": ids[2]})).await;
    let tries = attempts(&get);
    assert_eq!(tries.len(), 1);
    let failure = &tries[0]["attempt"]["failureSummary"]["failures"][0];
    assert_eq!(failure["failureOrigin"], "source");
    assert_eq!(failure["failureType"], "system_error");
    assert_eq!(failure["externalMessage"], "connection reset by peer");
    assert!(
        failure["timestamp"].as_i64().unwrap() > 1_000_000_000_000,
        "milliseconds"
    );

    // succeeded: everything committed, legacy counters present on the ended attempt.
    let get = airbyte.config("jobs/get", json!({"id": ids[3]})).await;
    let attempt = &attempts(&get)[0]["attempt"];
    assert_eq!(attempt["status"], "succeeded");
    assert_eq!(attempt["recordsSynced"], 1_000);
    assert_eq!(attempt["totalStats"]["bytesCommitted"], 250_000);
    assert!(
        attempt["endedAt"].as_i64().unwrap() < 10_000_000_000,
        "seconds"
    );
    let public = airbyte
        .public(Method::GET, &format!("/jobs/{}", ids[3]), None)
        .await;
    assert_eq!(public.body["rowsSynced"], 1_000);
    assert_eq!(public.body["bytesSynced"], 250_000);
    assert_eq!(public.body["jobType"], "sync");

    // failed: emitted but nothing committed.
    let without_logs = airbyte
        .config("jobs/get_without_logs", json!({"id": ids[4]}))
        .await;
    let stats = &without_logs.body["job"]["aggregatedStats"];
    assert_eq!(stats["recordsEmitted"], 40);
    assert_eq!(stats["recordsCommitted"], 0);
    let failure = &attempts(&without_logs)[0]["attempt"]["failureSummary"]["failures"][0];
    assert_eq!(failure["externalMessage"], "Postgres went away");

    // cancelled: the attempt failed as a manual cancellation.
    let get = airbyte.config("jobs/get", json!({"id": ids[5]})).await;
    let attempt = &attempts(&get)[0]["attempt"];
    assert_eq!(attempt["status"], "failed");
    assert_eq!(
        attempt["failureSummary"]["failures"][0]["failureType"],
        "manual_cancellation"
    );

    // Filters, order and pages of jobs/list.
    let all = airbyte
        .config("jobs/list_for_workspaces", json!({"configTypes": ["sync"]}))
        .await;
    let listed: Vec<i64> = all.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [6, 5, 4, 3, 2, 1], "newest first");
    let ended = airbyte
        .config(
            "jobs/list_for_workspaces",
            json!({
                "configTypes": ["sync"],
                "statuses": ["failed", "cancelled"],
                "pagination": {"pageSize": 1, "rowOffset": 1},
                "orderByMethod": "ASC",
            }),
        )
        .await;
    assert_eq!(ended.body["totalJobCount"], 2);
    assert_eq!(ended.body["jobs"][0]["job"]["id"], 6);
    let recent = airbyte
        .config(
            "jobs/list_for_workspaces",
            json!({"configTypes": ["sync"], "updatedAtStart": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(recent.body["totalJobCount"], 0);

    control.finish_all_jobs();
    let finished: Vec<String> = control.jobs().into_iter().map(|j| j.status).collect();
    assert_eq!(
        finished,
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "succeeded",
            "failed",
            "cancelled"
        ]
    );
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn every_public_api_operation_answers_in_the_shape_the_spec_declares() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let connection = control.add_connection("public");
    control.set_plan(connection, JobPlan::hanging());

    let health = airbyte.public(Method::GET, "/health", None).await;
    assert_eq!(health.status, 200);

    let created = airbyte
        .public(
            Method::POST,
            "/jobs",
            Some(json!({"connectionId": connection, "jobType": "sync"})),
        )
        .await;
    assert_eq!(created.status, 200);
    assert_eq!(created.body["status"], "pending");
    assert!(
        created.body.get("bytesSynced").is_none(),
        "the create answer has no stats"
    );
    let job_id = created.body["jobId"].as_i64().unwrap();

    let conflict = airbyte
        .public(
            Method::POST,
            "/jobs",
            Some(json!({"connectionId": connection, "jobType": "sync"})),
        )
        .await;
    assert_eq!(conflict.status, 409);
    assert!(
        conflict.body["type"]
            .as_str()
            .unwrap()
            .ends_with("#try-again-later")
    );
    assert_eq!(
        conflict.body["data"]["message"],
        format!("A sync is already running for: {connection}")
    );

    let fetched = airbyte
        .public(Method::GET, &format!("/jobs/{job_id}"), None)
        .await;
    assert_eq!(fetched.body["connectionId"], connection.to_string());
    assert!(fetched.body["startTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(fetched.body["rowsSynced"], 0);

    let cancelled = airbyte
        .public(Method::DELETE, &format!("/jobs/{job_id}"), None)
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body["lastUpdatedAt"].is_string());
    let cancelled_again = airbyte
        .public(Method::DELETE, &format!("/jobs/{job_id}"), None)
        .await;
    assert_eq!(cancelled_again.status, 409);
    assert_eq!(
        cancelled_again.body["data"]["message"],
        "Job is not currently running"
    );
    let unknown = airbyte.public(Method::GET, "/jobs/4242", None).await;
    assert_eq!(unknown.status, 409);
    assert!(
        unknown.body["type"]
            .as_str()
            .unwrap()
            .ends_with("#409-state-conflict")
    );
    assert_eq!(
        unknown.body["data"]["message"],
        "Job is not currently running"
    );
    assert_eq!(
        airbyte
            .public(Method::GET, "/jobs/seven", None)
            .await
            .status,
        400
    );

    let nowhere = airbyte
        .public(
            Method::POST,
            "/jobs",
            Some(json!({"connectionId": Uuid::new_v4(), "jobType": "sync"})),
        )
        .await;
    assert_eq!(nowhere.status, 404);
    let refresh = airbyte
        .public(
            Method::POST,
            "/jobs",
            Some(json!({"connectionId": connection, "jobType": "refresh"})),
        )
        .await;
    assert_eq!(refresh.status, 422);
    assert_eq!(
        airbyte
            .public(Method::POST, "/jobs", Some(json!({"jobType": "sync"})))
            .await
            .status,
        400
    );
    control.set_connection_active(connection, false);
    let inactive = airbyte
        .public(
            Method::POST,
            "/jobs",
            Some(json!({"connectionId": connection, "jobType": "sync"})),
        )
        .await;
    assert_eq!(inactive.status, 409);
    assert!(
        inactive.body["type"]
            .as_str()
            .unwrap()
            .ends_with("#409-state-conflict")
    );
    control.set_connection_active(connection, true);

    // Three more jobs, so there are four to page through.
    for _ in 0..3 {
        control.finish_all_jobs();
        let created = airbyte
            .public(
                Method::POST,
                "/jobs",
                Some(json!({"connectionId": connection, "jobType": "sync"})),
            )
            .await;
        assert_eq!(created.status, 200);
    }
    let base = airbyte.handle.public_api_base();
    let page = airbyte
        .public(
            Method::GET,
            &format!("/jobs?connectionId={connection}&limit=3"),
            None,
        )
        .await;
    let ids: Vec<i64> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3], "oldest first");
    assert_eq!(
        page.body["next"],
        format!("{base}/jobs?connectionId={connection}&limit=3&offset=3")
    );
    assert_eq!(page.body["previous"], "");
    let last = airbyte
        .public(
            Method::GET,
            &format!("/jobs?connectionId={connection}&limit=3&offset=3"),
            None,
        )
        .await;
    assert_eq!(last.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        last.body["next"],
        format!("{base}/jobs?connectionId={connection}&limit=3&offset=6"),
        "a last partial page still has a next link"
    );
    assert_eq!(
        last.body["previous"],
        format!("{base}/jobs?connectionId={connection}&limit=3&offset=0")
    );
    let empty = airbyte
        .public(
            Method::GET,
            &format!("/jobs?connectionId={connection}&limit=3&offset=6"),
            None,
        )
        .await;
    assert_eq!(empty.body["next"], "");
    let newest = airbyte
        .public(
            Method::GET,
            &format!("/jobs?connectionId={connection}&orderBy=createdAt|DESC"),
            None,
        )
        .await;
    assert_eq!(newest.body["data"][0]["jobId"], 4);
    let cancelled_only = airbyte
        .public(Method::GET, "/jobs?status=cancelled", None)
        .await;
    assert_eq!(cancelled_only.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(cancelled_only.body["data"][0]["jobId"], 1);
    let by_workspace = airbyte
        .public(
            Method::GET,
            &format!("/jobs?workspaceIds={}&jobType=sync", control.workspace_id()),
            None,
        )
        .await;
    assert_eq!(by_workspace.body["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        airbyte
            .public(Method::GET, "/jobs?limit=101", None)
            .await
            .status,
        400
    );
    assert_eq!(
        airbyte
            .public(Method::GET, "/jobs?orderBy=size|DESC", None)
            .await
            .status,
        400
    );

    let token = airbyte
        .public(
            Method::POST,
            "/applications/token",
            Some(json!({"client_id": "cronbyte", "client_secret": "s3cret", "grant_type": "client_credentials"})),
        )
        .await;
    assert_eq!(token.body["token_type"], "Bearer");
    assert_eq!(token.body["expires_in"], 900);
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn airbyte_2_error_bodies_carry_an_error_id_and_workspaces_list_is_gone() {
    let airbyte = Airbyte::start(EmulatorOptions {
        error_style: ErrorStyle::V2,
        legacy_workspaces_list: false,
        ..EmulatorOptions::default()
    })
    .await;
    let control = &airbyte.control;
    let connection = control.add_connection("v2");
    control.set_plan(connection, JobPlan::hanging());

    let gone = airbyte.config("workspaces/list", json!({})).await;
    assert_eq!(gone.status, 404);
    let missing = airbyte
        .config("connections/get", json!({"connectionId": Uuid::new_v4()}))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        airbyte.config("jobs/get", json!({"id": 77})).await.status,
        500
    );
    assert_eq!(airbyte.sync(connection).await.status, 200);
    let conflict = airbyte.sync(connection).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(
        conflict.body["message"],
        format!("A sync is already running for: {connection}")
    );
    assert_eq!(airbyte.config("jobs/list", json!({})).await.status, 400);
    assert_eq!(
        airbyte.config_text("jobs/get", "{".into()).await.status,
        422
    );
    control.finish_all_jobs();
    control.set_connection_active(connection, false);
    assert_eq!(airbyte.sync(connection).await.status, 500);

    // A refused schedule: the handler's 422 loses its message, a thrown problem keeps its.
    let both = create_connection(
        &airbyte,
        "both",
        json!({"schedule": {"units": 1, "timeUnit": "hours"}, "scheduleType": "basic"}),
    )
    .await;
    assert_eq!(both.status, 422);
    let no_cron = airbyte
        .config(
            "connections/update",
            json!({"connectionId": connection, "scheduleType": "cron", "scheduleData": {}}),
        )
        .await;
    assert_eq!(no_cron.status, 400);
    assert_eq!(no_cron.body["title"], "Cron data is missing");
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn credentials_are_demanded_as_configured_and_issued_tokens_expire() {
    let mut airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = airbyte.control.clone();
    let workspace = control.workspace_id();
    control.set_auth(EmulatorAuth::ClientCredentials {
        client_id: "cronbyte".into(),
        client_secret: "s3cret".into(),
        token_lifetime: Duration::from_secs(1),
    });

    let list = json!({"workspaceId": workspace});
    assert_eq!(
        airbyte
            .config("connections/list", list.clone())
            .await
            .status,
        401
    );
    assert_eq!(airbyte.config("health", json!({})).await.status, 200);
    assert_eq!(
        airbyte.public(Method::GET, "/health", None).await.status,
        200
    );
    let refused = airbyte
        .config(
            "applications/token",
            json!({"client_id": "cronbyte", "client_secret": "wrong"}),
        )
        .await;
    assert_eq!(refused.status, 401);

    let token = airbyte
        .config(
            "applications/token",
            json!({"client_id": "cronbyte", "client_secret": "s3cret"}),
        )
        .await;
    airbyte.token = token.body["access_token"].as_str().map(str::to_string);
    assert_eq!(
        airbyte
            .config("connections/list", list.clone())
            .await
            .status,
        200
    );
    assert_eq!(airbyte.public(Method::GET, "/jobs", None).await.status, 200);

    // The public endpoint also takes the form encoding its spec lists.
    let form = airbyte
        .http
        .post(format!(
            "{}/applications/token",
            airbyte.handle.public_api_base()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=cronbyte&client_secret=s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let form: Value = form.json().await.unwrap();
    assert_valid(&specs().public, "PublicAccessTokenResponse", &form);
    assert_eq!(form["expires_in"], 1);

    tokio::time::sleep(ms(1_200)).await;
    assert_eq!(
        airbyte
            .config("connections/list", list.clone())
            .await
            .status,
        401,
        "the token expired"
    );
    assert_eq!(airbyte.public(Method::GET, "/jobs", None).await.status, 401);

    control.set_auth(EmulatorAuth::Basic {
        username: "airbyte".into(),
        password: "password".into(),
    });
    airbyte.token = None;
    let url = format!("{}/connections/list", airbyte.handle.config_api_base());
    let denied = airbyte.http.post(&url).json(&list).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(
        denied.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let allowed = airbyte
        .http
        .post(&url)
        .basic_auth("airbyte", Some("password"))
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    control.set_auth(EmulatorAuth::Bearer {
        token: "api-key".into(),
    });
    airbyte.token = Some("other".into());
    assert_eq!(
        airbyte
            .config("connections/list", list.clone())
            .await
            .status,
        401
    );
    airbyte.token = Some("api-key".into());
    assert_eq!(airbyte.config("connections/list", list).await.status, 200);
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn injected_faults_look_like_a_failing_server_and_a_proxy_in_front_of_it() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let connection = control.add_connection("faulty");
    let get = || airbyte.config("connections/get", json!({"connectionId": connection}));

    control.set_faults(Faults {
        error_rate: 1.0,
        html_share: 1.0,
        ..Faults::default()
    });
    let url = format!("{}/connections/get", airbyte.handle.config_api_base());
    let proxied = airbyte
        .http
        .post(&url)
        .json(&json!({"connectionId": connection}))
        .send()
        .await
        .unwrap();
    assert!([500, 502, 503].contains(&proxied.status().as_u16()));
    assert_eq!(proxied.headers()["content-type"], "text/html");
    assert!(proxied.text().await.unwrap().contains("<html>"));
    assert_eq!(
        airbyte.config("health", json!({})).await.status,
        200,
        "health stays up"
    );

    control.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let failing = airbyte
        .http
        .post(&url)
        .json(&json!({"connectionId": connection}))
        .send()
        .await
        .unwrap();
    let status = failing.status().as_u16();
    assert!([500, 502, 503].contains(&status));
    let body: Value = failing.json().await.unwrap();
    assert_valid(&specs().config, "KnownExceptionInfo", &body);
    let public = airbyte
        .send(
            Method::GET,
            format!("{}/jobs", airbyte.handle.public_api_base()),
            None,
        )
        .await;
    assert!([500, 502, 503].contains(&public.status));
    assert_valid(&specs().problems, "UnexpectedProblemResponse", &public.body);

    control.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let cut = airbyte
        .http
        .post(&url)
        .json(&json!({"connectionId": connection}))
        .send()
        .await
        .unwrap();
    assert_eq!(cut.status(), 200);
    assert!(serde_json::from_str::<Value>(&cut.text().await.unwrap()).is_err());

    control.set_faults(Faults {
        token_endpoint_fails: true,
        ..Faults::default()
    });
    let token = airbyte
        .config(
            "applications/token",
            json!({"client_id": "a", "client_secret": "b"}),
        )
        .await;
    assert_eq!(token.status, 500);

    control.set_faults(Faults {
        latency: ms(300),
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(get().await.status, 200);
    assert!(started.elapsed() >= ms(300));
    control.set_faults(Faults::default());

    let counts = control.requests();
    assert_eq!(counts.get("connections/get"), 4);
    assert_eq!(counts.get("public:GET /jobs"), 1);
    assert_eq!(counts.get("applications/token"), 1);
    assert_eq!(counts.get("health"), 1);
    assert_eq!(counts.total, 7);
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn a_refusing_emulator_refuses_tcp_connections_and_comes_back_on_the_same_port() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let addr = airbyte.handle.addr();
    let health = format!("{}/health", airbyte.handle.config_api_base());
    assert_eq!(
        airbyte.http.get(&health).send().await.unwrap().status(),
        200
    );

    airbyte.control.refuse_connections_for(ms(600));
    tokio::time::sleep(ms(100)).await;
    let connect = tokio::net::TcpStream::connect(addr).await;
    assert!(connect.is_err(), "connects are refused while down");
    assert!(
        airbyte.http.get(&health).send().await.is_err(),
        "the pooled connection broke too"
    );

    tokio::time::sleep(ms(900)).await;
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(fresh.get(&health).send().await.unwrap().status(), 200);
    assert_eq!(airbyte.handle.addr(), addr);

    airbyte.handle.shutdown().await;
    tokio::time::sleep(ms(50)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "shut down for good"
    );
}

#[tokio::test]
async fn ten_thousand_connections_stay_quick_to_sync_and_list() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let connections: Vec<Uuid> = (0..10_000)
        .map(|i| control.add_connection(&format!("connection {i}")))
        .collect();
    let started = Instant::now();
    for connection in connections.iter().take(500) {
        assert_eq!(airbyte.sync(*connection).await.status, 200);
    }
    let list = airbyte
        .config(
            "jobs/list",
            json!({"configTypes": ["sync"], "configId": connections[42].to_string()}),
        )
        .await;
    assert_eq!(list.body["totalJobCount"], 1);
    assert_eq!(control.jobs().len(), 500);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "500 syncs among 10,000 connections took {:?}",
        started.elapsed()
    );
    airbyte.handle.shutdown().await;
}

/// The source and destination `add_connection` shares, for creating connections by hand.
async fn shared_actors(airbyte: &Airbyte) -> (Uuid, Uuid) {
    let seed = airbyte.control.add_connection("seed");
    let read = airbyte
        .config("connections/get", json!({"connectionId": seed}))
        .await;
    (id_of(&read, "sourceId"), id_of(&read, "destinationId"))
}

/// `connections/create` with the other fields a client sends beside `extra`.
async fn create_connection(airbyte: &Airbyte, name: &str, extra: Value) -> Answer {
    let (source, destination) = shared_actors(airbyte).await;
    let mut body = json!({
        "name": name,
        "sourceId": source,
        "destinationId": destination,
        "status": "active",
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    airbyte.config("connections/create", body).await
}

#[tokio::test]
async fn a_legacy_schedule_given_to_create_is_stored_as_basic_and_every_read_shows_it() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let created = create_connection(
        &airbyte,
        "daily",
        json!({"schedule": {"units": 24, "timeUnit": "hours"}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = id_of(&created, "connectionId");
    let fetched = airbyte
        .config("connections/get", json!({"connectionId": id}))
        .await;
    let listed = airbyte
        .config(
            "connections/list",
            json!({"workspaceId": airbyte.control.workspace_id()}),
        )
        .await;
    let in_list = listed.body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connectionId"] == id.to_string())
        .unwrap()
        .clone();
    for read in [&created.body, &fetched.body, &in_list] {
        assert_eq!(read["scheduleType"], "basic");
        assert_eq!(
            read["scheduleData"],
            json!({"basicSchedule": {"timeUnit": "hours", "units": 24}})
        );
        assert_eq!(read["schedule"], json!({"units": 24, "timeUnit": "hours"}));
    }
    assert_eq!(
        airbyte.control.schedule(id),
        Some(Schedule::Basic {
            units: 24,
            time_unit: TimeUnit::Hours
        })
    );
    let public = airbyte
        .public(Method::GET, &format!("/connections/{id}"), None)
        .await;
    assert_eq!(
        public.body["schedule"],
        json!({"scheduleType": "basic", "basicTiming": "Every 24 HOURS"})
    );
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn a_connection_created_without_schedule_fields_is_manual() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let created = create_connection(&airbyte, "on demand", json!({})).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.body["scheduleType"], "manual");
    assert!(created.body.get("scheduleData").is_none());
    assert!(created.body.get("schedule").is_none());
    let id = id_of(&created, "connectionId");
    assert_eq!(airbyte.control.schedule(id), Some(Schedule::Manual));
    assert_eq!(airbyte.control.schedule(Uuid::new_v4()), None);
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn a_create_with_both_schedule_schemas_is_refused_and_creates_nothing() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let both = create_connection(
        &airbyte,
        "both",
        json!({"schedule": {"units": 1, "timeUnit": "hours"}, "scheduleType": "manual"}),
    )
    .await;
    assert_eq!(both.status, 422);
    assert_eq!(
        both.body["message"],
        "The provided configuration does not fulfill the specification. Errors: supply old or \
         new schedule schema but not both"
    );
    assert_eq!(
        both.body["exceptionClassName"],
        "io.airbyte.commons.server.errors.BadObjectSchemaKnownException"
    );
    let listed = airbyte
        .config(
            "connections/list",
            json!({"workspaceId": airbyte.control.workspace_id()}),
        )
        .await;
    let names: Vec<&str> = listed.body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["seed"], "only the helper's own connection exists");
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn an_update_to_cron_then_to_manual_replaces_the_whole_schedule() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let created = create_connection(
        &airbyte,
        "moving",
        json!({"schedule": {"units": 6, "timeUnit": "hours"}}),
    )
    .await;
    let id = id_of(&created, "connectionId");
    let update = |body: Value| {
        let mut body = body;
        body["connectionId"] = json!(id);
        airbyte.config("connections/update", body)
    };

    let cron = update(json!({
        "scheduleType": "cron",
        "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "Europe/Paris"}},
    }))
    .await;
    assert_eq!(cron.status, 200, "{}", cron.text);
    assert_eq!(cron.body["scheduleType"], "cron");
    assert_eq!(
        cron.body["scheduleData"],
        json!({"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "Europe/Paris"}})
    );
    assert!(
        cron.body.get("schedule").is_none(),
        "the legacy field is only for basic schedules"
    );

    // The patch reads only scheduleType: the legacy field, or data alone, change nothing.
    let legacy = update(json!({"schedule": {"units": 1, "timeUnit": "days"}})).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body["scheduleType"], "cron");
    let data_alone = update(json!({
        "scheduleData": {"basicSchedule": {"units": 1, "timeUnit": "days"}},
    }))
    .await;
    assert_eq!(data_alone.body["scheduleData"], cron.body["scheduleData"]);

    let basic = update(json!({
        "scheduleType": "basic",
        "scheduleData": {"basicSchedule": {"units": 2, "timeUnit": "days"}},
    }))
    .await;
    assert_eq!(
        basic.body["schedule"],
        json!({"units": 2, "timeUnit": "days"})
    );

    let manual = update(json!({"scheduleType": "manual"})).await;
    assert_eq!(manual.body["scheduleType"], "manual");
    assert!(manual.body.get("scheduleData").is_none());
    assert!(manual.body.get("schedule").is_none());
    assert_eq!(airbyte.control.schedule(id), Some(Schedule::Manual));
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn schedules_of_the_wrong_shape_are_refused_naming_the_field() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let created = create_connection(&airbyte, "target", json!({})).await;
    let id = id_of(&created, "connectionId");
    let update = |body: Value| {
        let mut body = body;
        body["connectionId"] = json!(id);
        airbyte.config("connections/update", body)
    };

    let unit = update(json!({
        "scheduleType": "basic",
        "scheduleData": {"basicSchedule": {"units": 2, "timeUnit": "fortnights"}},
    }))
    .await;
    assert_eq!(unit.status, 422);
    let message = unit.body["message"].as_str().unwrap();
    assert!(
        message.contains("Unexpected value 'fortnights'"),
        "{message}"
    );
    assert!(
        message.contains("ConnectionScheduleDataBasicSchedule[\"timeUnit\"]"),
        "{message}"
    );

    let units = create_connection(
        &airbyte,
        "stringly",
        json!({"schedule": {"units": "24", "timeUnit": "hours"}}),
    )
    .await;
    assert_eq!(units.status, 422);
    assert!(
        units.body["message"]
            .as_str()
            .unwrap()
            .contains("ConnectionSchedule[\"units\"]")
    );

    let no_zone = update(json!({
        "scheduleType": "cron",
        "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?"}},
    }))
    .await;
    assert_eq!(no_zone.status, 400);
    assert_eq!(
        no_zone.body["validationErrors"][0]["propertyPath"],
        "updateConnection.connectionUpdate.scheduleData.cron.cronTimeZone"
    );

    let no_data = update(json!({"scheduleType": "cron"})).await;
    assert_eq!(no_data.status, 422);
    let no_cron = update(json!({"scheduleType": "cron", "scheduleData": {}})).await;
    assert_eq!(no_cron.status, 400);
    assert_eq!(
        no_cron.body["type"],
        "error:cron-validation/missing-cron-data"
    );
    let etc = update(json!({
        "scheduleType": "cron",
        "scheduleData": {"cron": {"cronExpression": "0 0 12 * * ?", "cronTimeZone": "Etc/GMT+2"}},
    }))
    .await;
    assert_eq!(etc.status, 400);
    assert_eq!(etc.body["data"]["cronTimezone"], "Etc/GMT+2");
    assert_eq!(etc.body["data"]["connectionId"], id.to_string());
    let unix = update(json!({
        "scheduleType": "cron",
        "scheduleData": {"cron": {"cronExpression": "0 12 * * *", "cronTimeZone": "UTC"}},
    }))
    .await;
    assert_eq!(
        unix.body["type"],
        "error:cron-validation/invalid-expression"
    );

    assert_eq!(
        airbyte.control.schedule(id),
        Some(Schedule::Manual),
        "nothing refused was stored"
    );
    airbyte.handle.shutdown().await;
}

#[tokio::test]
async fn the_public_api_renders_every_schedule_and_accepts_manual_and_cron() {
    let airbyte = Airbyte::start(EmulatorOptions::default()).await;
    let control = &airbyte.control;
    let (source, destination) = shared_actors(&airbyte).await;
    let seeded = control.add_connection("seeded");
    let client = &airbyte;
    let get = |id: Uuid| {
        let path = format!("/connections/{id}");
        async move { client.public(Method::GET, &path, None).await }
    };

    for (schedule, expected) in [
        (Schedule::Manual, json!({"scheduleType": "manual"})),
        (
            Schedule::Basic {
                units: 30,
                time_unit: TimeUnit::Minutes,
            },
            json!({"scheduleType": "basic", "basicTiming": "Every 30 MINUTES"}),
        ),
        (
            Schedule::Cron {
                expression: "0 15 6 ? * MON-FRI".into(),
                zone: "America/New_York".into(),
            },
            json!({"scheduleType": "cron", "cronExpression": "0 15 6 ? * MON-FRI America/New_York"}),
        ),
    ] {
        control.set_schedule(seeded, schedule.clone());
        assert_eq!(control.schedule(seeded), Some(schedule));
        let answer = get(seeded).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["schedule"], expected);
    }

    let created = airbyte
        .public(
            Method::POST,
            "/connections",
            Some(json!({
                "sourceId": source,
                "destinationId": destination,
                "name": "public cron",
                "schedule": {"scheduleType": "cron", "cronExpression": "0 0 3 * * ?"},
            })),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(
        created.body["schedule"],
        json!({"scheduleType": "cron", "cronExpression": "0 0 3 * * ? UTC"})
    );
    assert!(
        !created.body["configurations"]["streams"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let id = id_of(&created, "connectionId");
    let config_read = airbyte
        .config("connections/get", json!({"connectionId": id}))
        .await;
    assert_eq!(
        config_read.body["scheduleData"],
        json!({"cron": {"cronExpression": "0 0 3 * * ?", "cronTimeZone": "UTC"}})
    );

    // What a read shows can be sent back as it is.
    let echoed = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"schedule": created.body["schedule"]})),
        )
        .await;
    assert_eq!(echoed.status, 200, "{}", echoed.text);
    assert_eq!(echoed.body["schedule"], created.body["schedule"]);
    let renamed = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(renamed.body["name"], "renamed");
    assert_eq!(
        renamed.body["schedule"], created.body["schedule"],
        "a patch without a schedule keeps it"
    );
    let manual = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"schedule": {"scheduleType": "manual"}})),
        )
        .await;
    assert_eq!(manual.body["schedule"], json!({"scheduleType": "manual"}));
    assert_eq!(control.schedule(id), Some(Schedule::Manual));

    let basic = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"schedule": {"scheduleType": "basic"}})),
        )
        .await;
    assert_eq!(basic.status, 400, "basic is not a ScheduleTypeEnum value");
    let no_expression = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"schedule": {"scheduleType": "cron"}})),
        )
        .await;
    assert_eq!(no_expression.status, 400);
    assert_eq!(
        no_expression.body["data"]["message"],
        "Missing cron expression in the schedule."
    );
    let every_second = airbyte
        .public(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"schedule": {"scheduleType": "cron", "cronExpression": "* * * * * ?"}})),
        )
        .await;
    assert_eq!(every_second.status, 400);

    let without_schedule = airbyte
        .public(
            Method::POST,
            "/connections",
            Some(json!({"sourceId": source, "destinationId": destination})),
        )
        .await;
    assert_eq!(
        without_schedule.body["schedule"],
        json!({"scheduleType": "manual"})
    );
    assert_eq!(get(Uuid::new_v4()).await.status, 404);
    assert_eq!(
        airbyte
            .public(
                Method::POST,
                "/connections",
                Some(json!({"sourceId": Uuid::new_v4(), "destinationId": destination})),
            )
            .await
            .status,
        404
    );

    let base = airbyte.handle.public_api_base();
    let workspace = control.workspace_id();
    let page = airbyte
        .public(
            Method::GET,
            &format!("/connections?workspaceIds={workspace}&limit=2"),
            None,
        )
        .await;
    let names: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["seed", "seeded"]);
    assert_eq!(
        page.body["next"],
        format!(
            "{base}/connections?includeDeleted=false&workspaceIds={workspace}&limit=2&offset=2"
        )
    );
    let all = airbyte.public(Method::GET, "/connections", None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        airbyte
            .public(Method::GET, "/connections?includeDeleted=maybe", None)
            .await
            .status,
        400
    );
    airbyte.handle.shutdown().await;
}
