//! Pipelines as code against the emulated Airbyte: the seed's pipeline, declared in
//! `config/examples/ecommerce.toml`, applied from empty and applied again with no change;
//! drift shown by `plan` and fixed by `apply`; a failing connector check and a misspelt
//! stream stopping the apply; undeclared objects pruned only when confirmed; the daemon
//! finding declared connections by name; and secrets kept out of every output.

// Only part of the spec helpers is used here.
#[allow(dead_code)]
#[path = "common/spec.rs"]
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cronbyte::airbyte::model::{ConnectionRead, DestinationCreate, SourceCreate};
use cronbyte::airbyte::{ApiKind, Client, ClientSettings};
use cronbyte::config::{self, Config};
use cronbyte::daemon::Daemon;
use cronbyte::emulator::{
    Emulator, EmulatorControl, EmulatorHandle, EmulatorOptions, Schedule, TimeUnit,
};
use cronbyte::pipeline::{self, Action, Applied, ApplyOptions, ObjectKind, PipelineError, Plan};
use cronbyte::store::{SqliteStore, Store};
use serde_json::{Value, json};
use spec::{Spec, spec_dir};

/// The secrets the example reads from the environment; none may ever be printed.
const SECRETS: [(&str, &str); 4] = [
    ("POSTGRES_PASSWORD", "pg-Secret-4821"),
    ("MINIO_ACCESS_KEY", "minio-Access-7731"),
    ("MINIO_SECRET_KEY", "minio-Secret-9902"),
    ("WAREHOUSE_PASSWORD", "wh-Secret-5540"),
];

/// Every operation that writes to Airbyte.
const WRITES: [&str; 9] = [
    "sources/create",
    "sources/update",
    "sources/delete",
    "destinations/create",
    "destinations/update",
    "destinations/delete",
    "connections/create",
    "connections/update",
    "connections/delete",
];

fn config_spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load(&spec_dir(), "config.yaml"))
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/ecommerce.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("the example is readable")
}

/// An emulated Airbyte and a directory for configs and the store.
struct Setup {
    emulator: EmulatorHandle,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let emulator = Emulator::bind("127.0.0.1:0".parse().unwrap(), EmulatorOptions::default())
            .await
            .expect("the emulator starts");
        Self {
            emulator,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn control(&self) -> EmulatorControl {
        self.emulator.control()
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    /// The environment a deployment would give: the emulator's address, this test's store,
    /// a free port, and the secrets.
    fn env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = SECRETS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert(
            "CRONBYTE__AIRBYTE__BASE_URL".into(),
            self.emulator.config_api_base(),
        );
        env.insert(
            "CRONBYTE__STORE__PATH".into(),
            self.store_path().display().to_string(),
        );
        env.insert("CRONBYTE__SERVER__LISTEN".into(), "127.0.0.1:0".into());
        env
    }

    /// `text` written as a config file and loaded with [`Setup::env`].
    fn config(&self, text: &str) -> Config {
        let path = self.dir.path().join("cronbyte.toml");
        std::fs::write(&path, text).expect("the config is written");
        config::load_with_env(&path, self.env()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn example(&self) -> Config {
        config::load_with_env(&example_path(), self.env()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn client(&self) -> Client {
        Client::new(ClientSettings::new(
            self.emulator.config_api_base(),
            ApiKind::Config,
        ))
        .expect("a client")
    }

    async fn plan(&self, config: &Config) -> (Plan, String) {
        let mut out = Vec::new();
        let mut plans = pipeline::run_plan(config, &mut out)
            .await
            .unwrap_or_else(|e| panic!("plan failed: {e}"));
        assert_eq!(plans.len(), 1, "one instance, one plan");
        (
            plans.remove(0),
            String::from_utf8(out).expect("UTF-8 output"),
        )
    }

    async fn try_apply(
        &self,
        config: &Config,
        options: ApplyOptions,
        answer: bool,
    ) -> (Result<Applied, PipelineError>, String) {
        let mut out = Vec::new();
        let mut confirm = |_: &str| answer;
        let result = pipeline::run_apply(config, options, &mut confirm, &mut out).await;
        (result, String::from_utf8(out).expect("UTF-8 output"))
    }

    async fn apply(&self, config: &Config) -> (Applied, String) {
        let (result, out) = self.try_apply(config, ApplyOptions::default(), false).await;
        match result {
            Ok(applied) => (applied, out),
            Err(e) => panic!("apply failed: {e}\n{out}"),
        }
    }

    /// How many writes Airbyte received so far.
    fn writes(&self) -> u64 {
        let requests = self.control().requests();
        WRITES.iter().map(|op| requests.get(op)).sum()
    }

    async fn connection(&self, name: &str) -> ConnectionRead {
        let workspace = self.control().workspace_id().to_string();
        self.client()
            .list_connections(&workspace)
            .await
            .expect("connections list")
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no connection {name:?} in Airbyte"))
    }

    /// A raw Config API call whose answer is checked against the real spec.
    async fn checked(&self, op: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/{op}", self.emulator.config_api_base()))
            .json(&body)
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let spec = config_spec();
        let path = format!("/v1/{op}");
        assert!(
            spec.declares(&path, "post", status),
            "the spec declares no {status} for {path}"
        );
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON")
        };
        match spec.response_schema(&path, "post", status) {
            Some(schema) => {
                if let Err(report) = spec.validate(&schema, &body) {
                    panic!("{op} {status}: {report}");
                }
            }
            None => assert!(text.is_empty(), "{op} {status} has a body: {text}"),
        }
        (status, body)
    }
}

/// The catalog entry of stream `name` in a connection.
fn stream<'a>(connection: &'a ConnectionRead, name: &str) -> &'a Value {
    connection
        .sync_catalog
        .as_ref()
        .and_then(|c| c["streams"].as_array())
        .and_then(|s| s.iter().find(|s| s["stream"]["name"] == name))
        .unwrap_or_else(|| panic!("no stream {name:?} in {}", connection.name))
}

fn assert_no_secret(what: &str, text: &str) {
    for (name, secret) in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} shows the secret of {name}:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_seed_pipeline_applies_from_empty_and_applying_again_changes_nothing() {
    let setup = Setup::new().await;
    let config = setup.example();

    let (plan, shown) = setup.plan(&config).await;
    assert!(plan.has_changes());
    assert_eq!(plan.count(Action::Create), 5, "{shown}");
    assert!(
        shown.contains("+ create source \"ecommerce\" (Postgres)"),
        "{shown}"
    );
    assert!(
        shown.contains("configuration.password: (secret)"),
        "{shown}"
    );
    assert!(
        shown.contains("streams.customers: incremental | append, cursor updated_at"),
        "{shown}"
    );

    let (applied, shown) = setup.apply(&config).await;
    assert_eq!(applied.created, 5, "{shown}");
    assert!(shown.contains("checked source \"ecommerce\""), "{shown}");

    // The connection is what the seed's script built, with its schedule left to cronbyte.
    let bronze = setup.connection("ecommerce-to-bronze").await;
    assert_eq!(bronze.status, "active");
    assert_eq!(bronze.schedule_type.as_deref(), Some("manual"));
    for name in ["customers", "orders"] {
        let entry = stream(&bronze, name);
        assert_eq!(entry["config"]["selected"], true);
        assert_eq!(entry["config"]["syncMode"], "incremental");
        assert_eq!(entry["config"]["destinationSyncMode"], "append");
        assert_eq!(entry["config"]["cursorField"], json!(["updated_at"]));
    }
    assert_eq!(stream(&bronze, "products")["config"]["selected"], false);
    let raw = setup.connection("ecommerce-to-raw").await;
    assert_eq!(
        stream(&raw, "orders")["config"]["primaryKey"],
        json!([["id"]])
    );
    assert_eq!(
        stream(&raw, "orders")["config"]["destinationSyncMode"],
        "append_dedup"
    );

    // What Airbyte holds validates against its own spec.
    let (_, read) = setup
        .checked(
            "connections/get",
            json!({"connectionId": bronze.connection_id}),
        )
        .await;
    assert_eq!(
        read["syncCatalog"]["streams"].as_array().map(Vec::len),
        Some(3)
    );
    let (_, destination) = setup
        .checked(
            "destinations/get",
            json!({"destinationId": bronze.destination_id}),
        )
        .await;
    assert_eq!(
        destination["connectionConfiguration"]["format"],
        json!({"format_type": "Parquet", "compression_codec": "SNAPPY"})
    );
    assert_eq!(
        destination["connectionConfiguration"]["s3_path_format"],
        "${NAMESPACE}/${STREAM_NAME}/${YEAR}_${MONTH}_${DAY}_${EPOCH}_"
    );
    assert_eq!(
        destination["connectionConfiguration"]["secret_access_key"],
        "**********"
    );

    // The second time: nothing to do, and nothing written.
    let writes = setup.writes();
    let (plan, shown) = setup.plan(&config).await;
    assert!(!plan.has_changes(), "{shown}");
    assert_eq!(plan.count(Action::Unchanged), 5, "{shown}");
    assert!(shown.contains("No changes"), "{shown}");
    let (applied, shown) = setup.apply(&config).await;
    assert_eq!((applied.created, applied.updated), (0, 0), "{shown}");
    assert_eq!(setup.writes(), writes, "{shown}");

    // The ids are recorded in the store.
    let store = SqliteStore::open(&setup.store_path())
        .await
        .expect("the store");
    let recorded = store.airbyte_objects().await.expect("recorded objects");
    let id_of = |kind: &str, name: &str| {
        recorded
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .map(|o| o.airbyte_id.clone())
    };
    assert_eq!(recorded.len(), 6, "{recorded:?}");
    assert_eq!(
        id_of("connection", "ecommerce-to-bronze"),
        Some(bronze.connection_id.clone())
    );
    let workspace = setup.control().workspace_id().to_string();
    assert!(
        recorded
            .iter()
            .any(|o| o.kind == "workspace" && o.airbyte_id == workspace),
        "{recorded:?}"
    );
}

#[tokio::test]
async fn a_changed_cursor_field_is_shown_by_plan_and_updated_by_apply() {
    let setup = Setup::new().await;
    setup.apply(&setup.example()).await;

    let text = example_text();
    let orders_in_bronze = "name = \"orders\"\nsync_mode = \"incremental\"\n\
                            destination_sync_mode = \"append\"\ncursor_field = \"updated_at\"";
    assert_eq!(text.matches(orders_in_bronze).count(), 1);
    let changed = setup.config(&text.replace(
        orders_in_bronze,
        &orders_in_bronze.replace("\"updated_at\"", "\"created_at\""),
    ));

    let (plan, shown) = setup.plan(&changed).await;
    assert!(plan.has_changes());
    let change = plan
        .find(ObjectKind::Connection, "ecommerce-to-bronze")
        .expect("the connection is planned");
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.fields.len(), 1, "{shown}");
    assert_eq!(change.fields[0].field, "streams.orders.cursor_field");
    assert_eq!(change.fields[0].before.as_deref(), Some("[\"updated_at\"]"));
    assert_eq!(change.fields[0].after.as_deref(), Some("[\"created_at\"]"));
    assert!(
        shown.contains("streams.orders.cursor_field: [\"updated_at\"] → [\"created_at\"]"),
        "{shown}"
    );
    assert_eq!(plan.count(Action::Update), 1, "{shown}");

    let (applied, shown) = setup.apply(&changed).await;
    assert_eq!((applied.created, applied.updated), (0, 1), "{shown}");
    let bronze = setup.connection("ecommerce-to-bronze").await;
    assert_eq!(
        stream(&bronze, "orders")["config"]["cursorField"],
        json!(["created_at"])
    );
    assert_eq!(
        stream(&bronze, "customers")["config"]["cursorField"],
        json!(["updated_at"])
    );
    let (plan, shown) = setup.plan(&changed).await;
    assert!(!plan.has_changes(), "{shown}");
}

#[tokio::test]
async fn a_schedule_set_in_airbyte_is_shown_as_drift_and_apply_sets_it_back_to_manual() {
    let setup = Setup::new().await;
    let config = setup.example();
    setup.apply(&config).await;
    let bronze = setup.connection("ecommerce-to-bronze").await;
    let id: uuid::Uuid = bronze.connection_id.parse().expect("a UUID");
    // Someone gave the connection a schedule of its own in Airbyte's UI.
    setup.control().set_schedule(
        id,
        Schedule::Basic {
            units: 24,
            time_unit: TimeUnit::Hours,
        },
    );

    let (plan, shown) = setup.plan(&config).await;
    let change = plan
        .find(ObjectKind::Connection, "ecommerce-to-bronze")
        .expect("the connection is planned");
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.fields.len(), 1, "{shown}");
    assert_eq!(change.fields[0].field, "schedule_type");
    assert_eq!(change.fields[0].before.as_deref(), Some("basic"));
    assert_eq!(change.fields[0].after.as_deref(), Some("manual"));

    let (applied, shown) = setup.apply(&config).await;
    assert_eq!((applied.created, applied.updated), (0, 1), "{shown}");
    assert_eq!(setup.control().schedule(id), Some(Schedule::Manual));
    let bronze = setup.connection("ecommerce-to-bronze").await;
    assert!(bronze.schedule_data.is_none());
    assert!(
        !bronze.extra.contains_key("schedule"),
        "the legacy field goes with the basic schedule"
    );
    let (plan, shown) = setup.plan(&config).await;
    assert!(!plan.has_changes(), "{shown}");
}

#[tokio::test]
async fn a_failing_connection_check_stops_the_apply_with_the_connectors_message() {
    let setup = Setup::new().await;
    let config = setup.example();
    // The source exists already (made by hand, say), and its database refuses cronbyte.
    let workspace = setup.control().workspace_id().to_string();
    let source = setup
        .client()
        .create_source(&SourceCreate {
            workspace_id: workspace.clone(),
            name: "ecommerce".into(),
            source_definition_id: "decd338e-5647-4c0b-adf4-da0e75f5a750".into(),
            connection_configuration: json!({"host": "postgres", "password": "old"}),
        })
        .await
        .expect("a source");
    let refusal = "Could not connect with provided configuration. Error: password \
                   authentication failed for user \"airbyte\"";
    setup.control().set_check_result(
        source.source_id.parse().expect("a UUID"),
        Err(refusal.to_string()),
    );

    let (result, shown) = setup
        .try_apply(&config, ApplyOptions::default(), false)
        .await;
    let err = result.expect_err("the check fails");
    assert!(matches!(err, PipelineError::CheckFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("source \"ecommerce\" failed its connection check") && text.contains(refusal),
        "{text}"
    );
    assert!(shown.contains("updated source \"ecommerce\""), "{shown}");
    assert_eq!(setup.control().requests().get("connections/create"), 0);
    let connections = setup.client().list_connections(&workspace).await.unwrap();
    assert!(connections.is_empty(), "{connections:?}");
    assert_no_secret("the failed apply", &format!("{shown}{text}{err:?}"));
}

#[tokio::test]
async fn a_misspelt_stream_or_cursor_is_refused_naming_the_closest_match() {
    let setup = Setup::new().await;
    let text = example_text()
        .replacen("name = \"orders\"", "name = \"ordrs\"", 1)
        .replacen(
            "cursor_field = \"updated_at\"",
            "cursor_field = \"updated\"",
            1,
        );
    let config = setup.config(&text);

    let (result, _) = setup
        .try_apply(&config, ApplyOptions::default(), false)
        .await;
    let err = result.expect_err("refused");
    let text = err.to_string();
    assert!(
        text.starts_with("connection \"ecommerce-to-bronze\""),
        "{text}"
    );
    assert!(
        text.contains("source \"ecommerce\" has no stream \"ordrs\"; did you mean \"orders\"?"),
        "{text}"
    );
    assert!(
        text.contains("the stream has no field \"updated\"; did you mean \"updated_at\"?"),
        "{text}"
    );
    assert_eq!(setup.control().requests().get("connections/create"), 0);
}

#[tokio::test]
async fn undeclared_objects_are_left_alone_unless_pruning_is_confirmed() {
    let setup = Setup::new().await;
    let config = setup.example();
    setup.apply(&config).await;
    // Something made by hand, which the config does not declare.
    let client = setup.client();
    let workspace = setup.control().workspace_id().to_string();
    let mysql = client
        .create_source(&SourceCreate {
            workspace_id: workspace.clone(),
            name: "legacy-mysql".into(),
            source_definition_id: "435bb9a5-7887-4809-aa58-28c27df0d7ad".into(),
            connection_configuration: json!({"host": "mysql", "database": "shop"}),
        })
        .await
        .expect("a source");
    let s3 = client
        .create_destination(&DestinationCreate {
            workspace_id: workspace.clone(),
            name: "legacy-s3".into(),
            destination_definition_id: "4816b78f-1489-44c1-9060-4b19d5fa9362".into(),
            connection_configuration: json!({"s3_bucket_name": "old"}),
        })
        .await
        .expect("a destination");
    let legacy = client
        .create_connection(&json!({
            "name": "legacy",
            "sourceId": mysql.source_id,
            "destinationId": s3.destination_id,
            "status": "active",
        }))
        .await
        .expect("a connection")
        .connection_id;

    let (plan, shown) = setup.plan(&config).await;
    assert!(!plan.has_changes(), "{shown}");
    assert_eq!(plan.count(Action::LeftAlone), 3, "{shown}");
    assert!(
        shown.contains("? left alone connection \"legacy\""),
        "{shown}"
    );

    let prune = ApplyOptions {
        prune: true,
        yes: false,
    };
    let writes = setup.writes();
    let (result, _) = setup.try_apply(&config, prune, false).await;
    assert!(
        matches!(result, Err(PipelineError::NotConfirmed(_))),
        "{result:?}"
    );
    assert_eq!(setup.writes(), writes, "a refusal writes nothing");
    assert_eq!(setup.connection("legacy").await.connection_id, legacy);

    let (result, shown) = setup.try_apply(&config, prune, true).await;
    let applied = result.unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(applied.deleted, 3, "{shown}");
    let names: Vec<String> = setup
        .client()
        .list_connections(&workspace)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["ecommerce-to-bronze", "ecommerce-to-raw"]);
    let (plan, _) = setup.plan(&config).await;
    assert_eq!(plan.count(Action::LeftAlone), 0);

    // Deleting what is gone answers as the spec says.
    let (status, _) = setup
        .checked("connections/delete", json!({"connectionId": legacy}))
        .await;
    assert_eq!(status, 204);
    let (status, _) = setup
        .checked("sources/delete", json!({"sourceId": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_daemon_finds_declared_connections_by_name_once_applied() {
    let setup = Setup::new().await;
    let config = setup.example();

    let refused = Daemon::build(config.clone())
        .await
        .err()
        .expect("not applied yet");
    let text = refused.to_string();
    assert!(
        text.contains("\"ecommerce-to-bronze\"") && text.contains("run `cronbyte apply`"),
        "{text}"
    );

    setup.apply(&config).await;
    let mut resolved = config.clone();
    pipeline::resolve_connection_ids(&setup.client(), "default", &mut resolved)
        .await
        .expect("resolved");
    let bronze = setup.connection("ecommerce-to-bronze").await;
    assert_eq!(resolved.connections[0].connection_id, bronze.connection_id);
    assert!(
        resolved
            .connections
            .iter()
            .all(|c| !c.connection_id.is_empty())
    );
    // `cronbyte status` shows what the names were resolved to.
    let mut config = config;
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.token = Some(secrecy::SecretString::from("status-token"));
    let daemon = Daemon::build(config).await.expect("the daemon builds");
    let url = format!("http://{}/api/v1/connections", daemon.local_addr());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    let status: Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth("status-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded = status["airbyte_objects"]
        .as_array()
        .expect("objects listed");
    assert!(
        recorded.iter().any(|o| o["kind"] == "connection"
            && o["name"] == "ecommerce-to-bronze"
            && o["airbyte_id"] == bronze.connection_id.as_str()),
        "{status}"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_config_without_declarations_asks_airbyte_nothing_at_start() {
    let setup = Setup::new().await;
    let id = setup.control().add_connection("orders");
    let config = setup.config(&format!(
        "[airbyte]\nbase_url = \"http://unused\"\n[[connections]]\nname = \"orders\"\n\
         connection_id = \"{id}\"\ncron = \"@daily\"\n"
    ));
    let before = setup.control().requests().total;
    Daemon::build(config).await.expect("the daemon builds");
    assert_eq!(setup.control().requests().total, before);
}

#[tokio::test]
async fn secrets_appear_in_no_output_of_the_cronbyte_command() {
    let setup = Setup::new().await;
    let run = async |command: &str| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cronbyte"))
            .args([command, "--config"])
            .arg(example_path())
            .env_clear()
            .envs(setup.env())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("cronbyte runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_no_secret(&format!("cronbyte {command}"), &text);
        (output.status.code(), text)
    };
    let (code, text) = run("plan").await;
    assert_eq!(code, Some(2), "plan with changes exits 2:\n{text}");
    assert!(text.contains("(secret)"), "{text}");
    let (code, text) = run("apply").await;
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run("plan").await;
    assert_eq!(code, Some(0), "plan without changes exits 0:\n{text}");

    // A config that does not load exits 1 (2 stays "changes"), naming the variable.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(["plan", "--config"])
        .arg(example_path())
        .env_clear()
        .envs(setup.env())
        .env_remove("MINIO_SECRET_KEY")
        .output()
        .await
        .expect("cronbyte runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("destinations[0].configuration.secret_access_key: the environment variable MINIO_SECRET_KEY is not set"),
        "{text}"
    );
    assert_no_secret("a refused config", &text);

    // A config that loads is never shown with its secrets either.
    let config = setup.example();
    assert_no_secret("the config's Debug", &format!("{config:?}"));
    let (plan, shown) = setup.plan(&config).await;
    assert_no_secret("the plan", &format!("{shown}{plan:?}"));
}

/// Two instances, each declaring a source named `pg`: one `plan` shows a group per
/// instance, `apply` creates each source on its own Airbyte, and the store records
/// both under their instances.
#[tokio::test]
async fn plan_and_apply_go_through_every_instance_and_record_objects_by_instance() {
    let setup = Setup::new().await;
    let us = Emulator::bind("127.0.0.1:0".parse().unwrap(), EmulatorOptions::default())
        .await
        .expect("the second emulator starts");
    let source = |instance: &str, host: &str| {
        format!(
            "[[sources]]\nname = \"pg\"\ninstance = \"{instance}\"\ndefinition = \"Postgres\"\n\
             [sources.configuration]\nhost = \"{host}\"\nport = 5432\ndatabase = \"shop\"\n\
             schemas = [\"public\"]\nusername = \"airbyte\"\npassword = \"${{POSTGRES_PASSWORD}}\"\n\
             ssl_mode = {{ mode = \"prefer\" }}\nreplication_method = {{ method = \"Standard\" }}\n"
        )
    };
    let text = format!(
        "[instances.eu]\nbase_url = \"{}\"\n[instances.us]\nbase_url = \"{}\"\n{}{}",
        setup.emulator.config_api_base(),
        us.config_api_base(),
        source("eu", "pg-eu"),
        source("us", "pg-us"),
    );
    // The environment names no [airbyte]: this config has instances instead.
    let mut env = setup.env();
    env.remove("CRONBYTE__AIRBYTE__BASE_URL");
    let path = setup.dir.path().join("instances.toml");
    std::fs::write(&path, text).expect("the config is written");
    let config = config::load_with_env(&path, env).unwrap_or_else(|e| panic!("{e}"));

    let mut out = Vec::new();
    let plans = pipeline::run_plan(&config, &mut out).await.expect("plan");
    let shown = String::from_utf8(out).expect("UTF-8 output");
    assert_eq!(
        plans
            .iter()
            .map(|p| p.instance.as_str())
            .collect::<Vec<_>>(),
        ["eu", "us"]
    );
    assert!(
        plans.iter().all(|p| p.count(Action::Create) == 1),
        "{shown}"
    );
    assert!(
        shown.contains("Airbyte instance \"eu\"") && shown.contains("Airbyte instance \"us\""),
        "{shown}"
    );

    let (applied, _) = setup.apply(&config).await;
    assert_eq!(applied.created, 2);
    let sources_of = |base: String, workspace: String| async move {
        let client = Client::new(ClientSettings::new(base, ApiKind::Config)).expect("a client");
        let sources = client
            .list_sources(&workspace)
            .await
            .expect("sources listed");
        sources.into_iter().map(|s| s.source_id).collect::<Vec<_>>()
    };
    let eu_sources = sources_of(
        setup.emulator.config_api_base(),
        setup.control().workspace_id().to_string(),
    )
    .await;
    let us_sources = sources_of(
        us.config_api_base(),
        us.control().workspace_id().to_string(),
    )
    .await;
    assert_eq!((eu_sources.len(), us_sources.len()), (1, 1));
    let store = SqliteStore::open(&setup.store_path()).await.unwrap();
    let recorded: Vec<(String, String, String)> = store
        .airbyte_objects()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == "source")
        .map(|o| (o.instance, o.name, o.airbyte_id))
        .collect();
    store.close().await;
    assert_eq!(
        recorded,
        [
            ("eu".to_owned(), "pg".to_owned(), eu_sources[0].clone()),
            ("us".to_owned(), "pg".to_owned(), us_sources[0].clone()),
        ]
    );
}
