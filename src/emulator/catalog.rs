//! The connector world of the emulator: the seeded source and destination definitions, the
//! catalogs sources "discover", and the masking of secrets in connector configurations.

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// What Airbyte returns in place of every secret it stores.
pub(crate) const SECRET_MASK: &str = "**********";

/// A connector definition as `source_definitions/list` and `destination_definitions/list`
/// show it.
#[derive(Clone, Debug)]
pub(crate) struct Definition {
    pub(crate) id: Uuid,
    pub(crate) name: &'static str,
    pub(crate) repository: &'static str,
    pub(crate) tag: &'static str,
    pub(crate) docs: &'static str,
    /// `sourceType`; destinations have none.
    pub(crate) source_type: Option<&'static str>,
    pub(crate) release_stage: &'static str,
    pub(crate) support_level: &'static str,
    pub(crate) language: &'static str,
    /// Which catalog a source of this kind discovers.
    pub(crate) kind: ConnectorKind,
}

/// The handful of connector families the emulator knows how to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectorKind {
    Postgres,
    MySql,
    File,
    Http,
    Faker,
    Warehouse,
}

pub(crate) const POSTGRES_SOURCE: Uuid = Uuid::from_u128(0xdecd338e_5647_4c0b_adf4_da0e75f5a750);
pub(crate) const S3_DESTINATION: Uuid = Uuid::from_u128(0x4816b78f_1489_44c1_9060_4b19d5fa9362);

pub(crate) fn source_definitions() -> Vec<Definition> {
    vec![
        Definition {
            id: POSTGRES_SOURCE,
            name: "Postgres",
            repository: "airbyte/source-postgres",
            tag: "3.6.28",
            docs: "https://docs.airbyte.com/integrations/sources/postgres",
            source_type: Some("database"),
            release_stage: "generally_available",
            support_level: "certified",
            language: "java",
            kind: ConnectorKind::Postgres,
        },
        Definition {
            id: Uuid::from_u128(0x435bb9a5_7887_4809_aa58_28c27df0d7ad),
            name: "MySQL",
            repository: "airbyte/source-mysql",
            tag: "3.11.4",
            docs: "https://docs.airbyte.com/integrations/sources/mysql",
            source_type: Some("database"),
            release_stage: "generally_available",
            support_level: "certified",
            language: "java",
            kind: ConnectorKind::MySql,
        },
        Definition {
            id: Uuid::from_u128(0x778daa7c_feaf_4db6_96f3_70fd645acc77),
            name: "File (CSV, JSON, Excel, Feather, Parquet)",
            repository: "airbyte/source-file",
            tag: "0.5.13",
            docs: "https://docs.airbyte.com/integrations/sources/file",
            source_type: Some("file"),
            release_stage: "generally_available",
            support_level: "certified",
            language: "python",
            kind: ConnectorKind::File,
        },
        Definition {
            id: Uuid::from_u128(0x4e8c9fa0_3634_499b_b948_11581b5c3efa),
            name: "HTTP Request",
            repository: "airbyte/source-http-request",
            tag: "0.2.0",
            docs: "https://docs.airbyte.com/integrations/sources/http-request",
            source_type: Some("api"),
            release_stage: "alpha",
            support_level: "community",
            language: "python",
            kind: ConnectorKind::Http,
        },
        Definition {
            id: Uuid::from_u128(0xdfd88b22_b603_4c3d_aad7_3701784586b1),
            name: "Sample Data",
            repository: "airbyte/source-faker",
            tag: "6.2.21",
            docs: "https://docs.airbyte.com/integrations/sources/faker",
            source_type: Some("api"),
            release_stage: "beta",
            support_level: "community",
            language: "python",
            kind: ConnectorKind::Faker,
        },
    ]
}

pub(crate) fn destination_definitions() -> Vec<Definition> {
    let warehouse = |id: u128, name, repository, tag, docs, stage| Definition {
        id: Uuid::from_u128(id),
        name,
        repository,
        tag,
        docs,
        source_type: None,
        release_stage: stage,
        support_level: "certified",
        language: "java",
        kind: ConnectorKind::Warehouse,
    };
    vec![
        warehouse(
            0x4816b78f_1489_44c1_9060_4b19d5fa9362,
            "S3",
            "airbyte/destination-s3",
            "1.5.7",
            "https://docs.airbyte.com/integrations/destinations/s3",
            "generally_available",
        ),
        warehouse(
            0x25c5221d_dce2_4163_ade9_739ef790f503,
            "Postgres",
            "airbyte/destination-postgres",
            "2.4.5",
            "https://docs.airbyte.com/integrations/destinations/postgres",
            "beta",
        ),
        warehouse(
            0x22f6c74f_5699_40ff_833c_4a879ea40133,
            "BigQuery",
            "airbyte/destination-bigquery",
            "2.9.3",
            "https://docs.airbyte.com/integrations/destinations/bigquery",
            "generally_available",
        ),
        warehouse(
            0x424892c4_daac_4491_b35d_c6688ba547ba,
            "Snowflake",
            "airbyte/destination-snowflake",
            "3.15.2",
            "https://docs.airbyte.com/integrations/destinations/snowflake",
            "generally_available",
        ),
    ]
}

/// `SourceDefinitionRead` / `DestinationDefinitionRead`.
pub(crate) fn definition_read(definition: &Definition) -> Value {
    let id_key = if definition.source_type.is_some() {
        "sourceDefinitionId"
    } else {
        "destinationDefinitionId"
    };
    let mut read = json!({
        id_key: definition.id,
        "name": definition.name,
        "dockerRepository": definition.repository,
        "dockerImageTag": definition.tag,
        "documentationUrl": definition.docs,
        "protocolVersion": "0.2.0",
        "custom": false,
        "enterprise": false,
        "supportLevel": definition.support_level,
        "releaseStage": definition.release_stage,
        "language": definition.language,
    });
    if let (Some(source_type), Some(map)) = (definition.source_type, read.as_object_mut()) {
        map.insert("sourceType".into(), json!(source_type));
    }
    read
}

fn column(kind: &str) -> Value {
    match kind {
        "integer" => json!({"type": "number", "airbyte_type": "integer"}),
        "number" => json!({"type": "number"}),
        "timestamp" => json!({
            "type": "string",
            "format": "date-time",
            "airbyte_type": "timestamp_with_timezone",
        }),
        "boolean" => json!({"type": "boolean"}),
        _ => json!({"type": "string"}),
    }
}

/// An `AirbyteStream` of a table-like stream with an `id` key and an `updated_at` cursor.
fn table(name: &str, namespace: Option<&str>, columns: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = columns
        .iter()
        .map(|(column_name, kind)| ((*column_name).to_string(), column(kind)))
        .collect();
    let mut stream = json!({
        "name": name,
        "jsonSchema": {"type": "object", "properties": properties},
        "supportedSyncModes": ["full_refresh", "incremental"],
        "sourceDefinedCursor": false,
        "defaultCursorField": [],
        "sourceDefinedPrimaryKey": [["id"]],
        "isResumable": true,
    });
    if let (Some(namespace), Some(map)) = (namespace, stream.as_object_mut()) {
        map.insert("namespace".into(), json!(namespace));
    }
    stream
}

/// The streams a source of `kind` with `configuration` discovers.
pub(crate) fn discovered_streams(kind: ConnectorKind, configuration: &Value) -> Vec<Value> {
    let text = |key: &str, fallback: &str| {
        configuration
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_string()
    };
    match kind {
        ConnectorKind::Postgres | ConnectorKind::MySql => {
            let namespace = if kind == ConnectorKind::Postgres {
                "public".to_string()
            } else {
                text("database", "ecommerce")
            };
            let ns = Some(namespace.as_str());
            vec![
                table(
                    "customers",
                    ns,
                    &[
                        ("id", "integer"),
                        ("email", "string"),
                        ("name", "string"),
                        ("created_at", "timestamp"),
                        ("updated_at", "timestamp"),
                    ],
                ),
                table(
                    "orders",
                    ns,
                    &[
                        ("id", "integer"),
                        ("customer_id", "integer"),
                        ("status", "string"),
                        ("total", "number"),
                        ("created_at", "timestamp"),
                        ("updated_at", "timestamp"),
                    ],
                ),
                table(
                    "products",
                    ns,
                    &[
                        ("id", "integer"),
                        ("name", "string"),
                        ("price", "number"),
                        ("updated_at", "timestamp"),
                    ],
                ),
            ]
        }
        ConnectorKind::Faker => vec![
            table(
                "users",
                None,
                &[
                    ("id", "integer"),
                    ("name", "string"),
                    ("email", "string"),
                    ("updated_at", "timestamp"),
                ],
            ),
            table(
                "products",
                None,
                &[
                    ("id", "integer"),
                    ("make", "string"),
                    ("price", "number"),
                    ("updated_at", "timestamp"),
                ],
            ),
            table(
                "purchases",
                None,
                &[
                    ("id", "integer"),
                    ("user_id", "integer"),
                    ("product_id", "integer"),
                    ("updated_at", "timestamp"),
                ],
            ),
        ],
        ConnectorKind::File => vec![json!({
            "name": text("dataset_name", "data"),
            "jsonSchema": {"type": "object", "properties": {}},
            "supportedSyncModes": ["full_refresh"],
            "sourceDefinedPrimaryKey": [],
            "isResumable": false,
        })],
        ConnectorKind::Http | ConnectorKind::Warehouse => vec![json!({
            "name": text("name", "response"),
            "jsonSchema": {"type": "object", "properties": {
                "status_code": {"type": "number", "airbyte_type": "integer"},
                "body": {"type": "string"},
            }},
            "supportedSyncModes": ["full_refresh"],
            "sourceDefinedPrimaryKey": [],
            "isResumable": false,
        })],
    }
}

/// The configuration a new connection gives a discovered stream: incremental with
/// deduplication where the stream allows it, a plain overwrite elsewhere.
pub(crate) fn default_stream_config(stream: &Value) -> Value {
    let name = stream
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("stream");
    let incremental = stream
        .get("supportedSyncModes")
        .and_then(Value::as_array)
        .is_some_and(|modes| modes.iter().any(|m| m == "incremental"));
    let has_cursor = stream
        .pointer("/jsonSchema/properties/updated_at")
        .is_some();
    let primary_key = stream
        .get("sourceDefinedPrimaryKey")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let keyed = primary_key.as_array().is_some_and(|k| !k.is_empty());
    if incremental && has_cursor && keyed {
        json!({
            "syncMode": "incremental",
            "cursorField": ["updated_at"],
            "destinationSyncMode": "append_dedup",
            "primaryKey": primary_key,
            "aliasName": name,
            "selected": true,
            "suggested": true,
            "fieldSelectionEnabled": false,
        })
    } else {
        json!({
            "syncMode": "full_refresh",
            "cursorField": [],
            "destinationSyncMode": "overwrite",
            "primaryKey": primary_key,
            "aliasName": name,
            "selected": true,
            "suggested": true,
            "fieldSelectionEnabled": false,
        })
    }
}

/// An `AirbyteCatalog` pairing each stream with its default configuration.
pub(crate) fn catalog_of(streams: &[Value]) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|stream| json!({"stream": stream, "config": default_stream_config(stream)}))
        .collect();
    json!({"streams": streams})
}

/// The selected streams of a catalog as `(name, namespace)`.
pub(crate) fn selected_streams(catalog: &Value) -> Vec<(String, Option<String>)> {
    let Some(streams) = catalog.get("streams").and_then(Value::as_array) else {
        return Vec::new();
    };
    streams
        .iter()
        .filter(|s| {
            s.pointer("/config/selected")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        })
        .filter_map(|s| {
            let name = s.pointer("/stream/name")?.as_str()?.to_string();
            let namespace = s
                .pointer("/stream/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            Some((name, namespace))
        })
        .collect()
}

/// Whether a configuration key holds a secret. Airbyte decides from each connector's spec
/// (`airbyte_secret`); these names cover the connectors the emulator seeds.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "credentials_json",
    ]
    .iter()
    .any(|marker| key.contains(marker))
}

/// The configuration as the API shows it: every secret replaced by the mask.
pub(crate) fn mask_secrets(configuration: &Value) -> Value {
    match configuration {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = if is_secret_key(key) && !value.is_object() && !value.is_null() {
                        json!(SECRET_MASK)
                    } else {
                        mask_secrets(value)
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

/// The configuration to store after an update: a mask sent back keeps the stored secret.
pub(crate) fn merge_masked(update: &Value, stored: &Value) -> Value {
    match (update, stored) {
        (Value::Object(new), Value::Object(old)) => Value::Object(
            new.iter()
                .map(|(key, value)| {
                    let kept = match old.get(key) {
                        Some(previous) if value == SECRET_MASK => previous.clone(),
                        Some(previous) => merge_masked(value, previous),
                        None => value.clone(),
                    };
                    (key.clone(), kept)
                })
                .collect(),
        ),
        _ => update.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth_and_other_values_are_not() {
        let shown = mask_secrets(&json!({
            "host": "db",
            "password": "hunter2",
            "tunnel_method": {"tunnel_user_password": "x", "tunnel_host": "bastion"},
            "access_key_id": "AKIA",
        }));
        assert_eq!(shown["host"], "db");
        assert_eq!(shown["password"], SECRET_MASK);
        assert_eq!(shown["tunnel_method"]["tunnel_user_password"], SECRET_MASK);
        assert_eq!(shown["tunnel_method"]["tunnel_host"], "bastion");
        assert_eq!(shown["access_key_id"], SECRET_MASK);
    }

    #[test]
    fn sending_the_mask_back_keeps_the_stored_secret() {
        let stored = json!({"password": "hunter2", "nested": {"api_key": "k1"}, "host": "a"});
        let update =
            json!({"password": SECRET_MASK, "nested": {"api_key": SECRET_MASK}, "host": "b"});
        let merged = merge_masked(&update, &stored);
        assert_eq!(
            merged,
            json!({"password": "hunter2", "nested": {"api_key": "k1"}, "host": "b"})
        );
        let replaced = merge_masked(&json!({"password": "new"}), &stored);
        assert_eq!(replaced["password"], "new");
    }

    #[test]
    fn a_postgres_source_discovers_customers_orders_and_products() {
        let streams = discovered_streams(ConnectorKind::Postgres, &json!({}));
        let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["customers", "orders", "products"]);
        assert_eq!(streams[0]["sourceDefinedPrimaryKey"], json!([["id"]]));
        let catalog = catalog_of(&streams);
        assert_eq!(catalog["streams"][0]["config"]["syncMode"], "incremental");
        assert_eq!(selected_streams(&catalog).len(), 3);
    }
}
