//! The streams of a declared connection: compared with the `syncCatalog` a connection has,
//! and made into the `syncCatalog` to send, checked against the source's discovered schema
//! (a stream or field it does not have is refused, naming the closest one).

use serde_json::{Map, Value, json};

use super::PipelineError;
use super::plan::FieldChange;
use crate::config::{DeclaredConnection, DestinationSyncMode, StreamSettings, SyncMode, closest};

/// The `{stream, config}` entries of an `AirbyteCatalog`.
fn entries(catalog: &Value) -> &[Value] {
    catalog
        .get("streams")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn name_of(entry: &Value) -> &str {
    entry
        .pointer("/stream/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn namespace_of(entry: &Value) -> Option<&str> {
    entry.pointer("/stream/namespace").and_then(Value::as_str)
}

fn is_selected(entry: &Value) -> bool {
    entry
        .pointer("/config/selected")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn config_text<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get("config")?.get(key)?.as_str()
}

/// How a stream is named in output: `orders`, or `public.orders` when its namespace is given.
fn label(stream: &StreamSettings) -> String {
    match &stream.namespace {
        Some(namespace) => format!("{namespace}.{}", stream.name),
        None => stream.name.clone(),
    }
}

/// Whether `entry` is the stream `stream` declares.
fn matches(entry: &Value, stream: &StreamSettings) -> bool {
    name_of(entry) == stream.name
        && stream
            .namespace
            .as_deref()
            .is_none_or(|ns| namespace_of(entry) == Some(ns))
}

/// The index of the one entry `stream` declares: `Ok(None)` when there is none, `Err` with
/// the namespaces when several streams of that name exist and no namespace was given.
fn find(entries: &[Value], stream: &StreamSettings) -> Result<Option<usize>, Vec<String>> {
    let found: Vec<usize> = (0..entries.len())
        .filter(|&i| matches(&entries[i], stream))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        several => Err(several
            .iter()
            .map(|&i| namespace_of(&entries[i]).unwrap_or("(none)").to_string())
            .collect()),
    }
}

/// A field path as text: `updated_at`, `payload.updated_at`.
fn path_text(path: &[String]) -> String {
    path.join(".")
}

fn key_text(key: &[Vec<String>]) -> String {
    key.iter()
        .map(|p| path_text(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a declared stream is synced, in brief.
fn describe(stream: &StreamSettings) -> String {
    let mut text = format!(
        "{} | {}",
        stream.sync_mode.as_str(),
        stream.destination_sync_mode.as_str()
    );
    if let Some(cursor) = &stream.cursor_field {
        text.push_str(&format!(", cursor {}", path_text(cursor)));
    }
    if let Some(key) = &stream.primary_key {
        text.push_str(&format!(", primary key {}", key_text(key)));
    }
    text
}

/// The streams of a connection about to be created, one line each.
pub(crate) fn listing(declared: &DeclaredConnection) -> Vec<FieldChange> {
    declared
        .streams
        .iter()
        .map(|s| FieldChange::new(format!("streams.{}", label(s)), None, Some(describe(s))))
        .collect()
}

/// How the declared streams differ from a connection's current `syncCatalog`: streams to
/// select, settings to change, and selected streams no longer declared.
pub(crate) fn changes(declared: &DeclaredConnection, current: Option<&Value>) -> Vec<FieldChange> {
    let entries = current.map(entries).unwrap_or_default();
    let mut out = Vec::new();
    for stream in &declared.streams {
        let field = format!("streams.{}", label(stream));
        // Several of one name (the namespace missing) are reported by apply, which discovers.
        let entry = find(entries, stream).ok().flatten().map(|i| &entries[i]);
        let Some(entry) = entry.filter(|e| is_selected(e)) else {
            let before = entry.map(|_| "not selected".to_string());
            out.push(FieldChange::new(field, before, Some(describe(stream))));
            continue;
        };
        let mut differs = |name: &str, wanted: String, current: String| {
            if wanted != current {
                out.push(FieldChange::new(
                    format!("{field}.{name}"),
                    Some(current),
                    Some(wanted),
                ));
            }
        };
        differs(
            "sync_mode",
            stream.sync_mode.as_str().to_string(),
            config_text(entry, "syncMode")
                .unwrap_or_default()
                .to_string(),
        );
        differs(
            "destination_sync_mode",
            stream.destination_sync_mode.as_str().to_string(),
            config_text(entry, "destinationSyncMode")
                .unwrap_or_default()
                .to_string(),
        );
        if let (Some(cursor), SyncMode::Incremental) = (&stream.cursor_field, stream.sync_mode) {
            let current = entry
                .pointer("/config/cursorField")
                .cloned()
                .unwrap_or(json!([]));
            differs(
                "cursor_field",
                json!(cursor).to_string(),
                current.to_string(),
            );
        }
        if let Some(key) = &stream.primary_key {
            let current = entry
                .pointer("/config/primaryKey")
                .cloned()
                .unwrap_or(json!([]));
            differs("primary_key", json!(key).to_string(), current.to_string());
        }
    }
    for entry in entries.iter().filter(|e| is_selected(e)) {
        if !declared.streams.iter().any(|s| matches(entry, s)) {
            let name = match namespace_of(entry) {
                Some(ns) => format!("{ns}.{}", name_of(entry)),
                None => name_of(entry).to_string(),
            };
            out.push(FieldChange::new(
                format!("streams.{name}"),
                Some("selected".into()),
                Some("not selected".into()),
            ));
        }
    }
    out
}

/// The `syncCatalog` for `declared`, built on the source's `discovered` catalog: the
/// declared streams selected as declared, every other stream unselected. Every declared
/// stream or field the schema lacks is one problem; all of them are reported together.
pub(crate) fn sync_catalog(
    connection: &str,
    source: &str,
    declared: &DeclaredConnection,
    discovered: &Value,
) -> Result<Value, PipelineError> {
    let entries = entries(discovered);
    let mut problems = Vec::new();
    let mut chosen: Vec<Option<&StreamSettings>> = vec![None; entries.len()];
    for stream in &declared.streams {
        match find(entries, stream) {
            Ok(Some(i)) => chosen[i] = Some(stream),
            Ok(None) => problems.push(unknown_stream(source, stream, entries)),
            Err(namespaces) => problems.push(format!(
                "source {source:?} has a stream {:?} in several namespaces ({}): give its \
                 `namespace`",
                stream.name,
                namespaces.join(", ")
            )),
        }
    }
    let streams: Vec<Value> = entries
        .iter()
        .zip(&chosen)
        .map(|(entry, stream)| match stream {
            Some(stream) => configure(entry, stream, &mut problems),
            None => unselected(entry),
        })
        .collect();
    if problems.is_empty() {
        Ok(json!({ "streams": streams }))
    } else {
        Err(PipelineError::Streams {
            connection: connection.to_string(),
            problems,
        })
    }
}

/// "no stream X; did you mean Y? (its streams: ...)".
fn unknown_stream(source: &str, stream: &StreamSettings, entries: &[Value]) -> String {
    let names: Vec<&str> = entries.iter().map(name_of).collect();
    let hint = closest(&stream.name, names.iter().copied())
        .map(|n| format!("; did you mean {n:?}?"))
        .unwrap_or_default();
    let namespace = stream
        .namespace
        .as_deref()
        .map(|ns| format!(" in namespace {ns:?}"))
        .unwrap_or_default();
    format!(
        "source {source:?} has no stream {:?}{namespace}{hint} (its streams: {})",
        stream.name,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// A discovered entry, selected and set up as `stream` declares it.
fn configure(entry: &Value, stream: &StreamSettings, problems: &mut Vec<String>) -> Value {
    let schema = entry.get("stream").cloned().unwrap_or(json!({}));
    let mut config = match entry.get("config") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let name = &stream.name;
    let supported: Vec<&str> = schema
        .get("supportedSyncModes")
        .and_then(Value::as_array)
        .map(|modes| modes.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !supported.is_empty() && !supported.contains(&stream.sync_mode.as_str()) {
        problems.push(format!(
            "stream {name:?} can't be synced {}: it supports {}",
            stream.sync_mode.as_str(),
            supported.join(", ")
        ));
    }
    let list = |key: &str| schema.get(key).cloned().unwrap_or(json!([]));
    let source_cursor = schema
        .get("sourceDefinedCursor")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cursor = match (&stream.cursor_field, stream.sync_mode) {
        (_, SyncMode::FullRefresh) => config.get("cursorField").cloned().unwrap_or(json!([])),
        (Some(path), SyncMode::Incremental) => {
            check_field(&schema, name, path, "cursor_field", problems);
            json!(path)
        }
        (None, SyncMode::Incremental) => {
            let default = list("defaultCursorField");
            if default.as_array().is_none_or(Vec::is_empty) && !source_cursor {
                problems.push(format!(
                    "stream {name:?} needs a `cursor_field` to sync incrementally (the source \
                     gives no default); its fields: {}",
                    fields(&schema).join(", ")
                ));
            }
            default
        }
    };
    let primary_key = match &stream.primary_key {
        Some(key) => {
            for path in key {
                check_field(&schema, name, path, "primary_key", problems);
            }
            json!(key)
        }
        None => list("sourceDefinedPrimaryKey"),
    };
    if stream.destination_sync_mode.dedups() && primary_key.as_array().is_none_or(Vec::is_empty) {
        problems.push(format!(
            "stream {name:?} needs a `primary_key` for destination_sync_mode = {:?} (the source \
             defines none)",
            stream.destination_sync_mode.as_str()
        ));
    }
    config.insert("syncMode".into(), json!(stream.sync_mode.as_str()));
    config.insert(
        "destinationSyncMode".into(),
        json!(stream.destination_sync_mode.as_str()),
    );
    config.insert("cursorField".into(), cursor);
    config.insert("primaryKey".into(), primary_key);
    config.insert("selected".into(), json!(true));
    config
        .entry("aliasName")
        .or_insert_with(|| json!(name.clone()));
    json!({ "stream": schema, "config": config })
}

/// A discovered entry the declaration does not select.
fn unselected(entry: &Value) -> Value {
    let mut config = match entry.get("config") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    // `syncMode` and `destinationSyncMode` are required even of an unselected stream.
    config
        .entry("syncMode")
        .or_insert_with(|| json!(SyncMode::FullRefresh.as_str()));
    config
        .entry("destinationSyncMode")
        .or_insert_with(|| json!(DestinationSyncMode::Overwrite.as_str()));
    config.insert("selected".into(), json!(false));
    json!({ "stream": entry.get("stream").cloned().unwrap_or(json!({})), "config": config })
}

/// The top-level fields of a stream's JSON schema.
fn fields(schema: &Value) -> Vec<String> {
    schema
        .pointer("/jsonSchema/properties")
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// Records a problem unless `path` names a field of the stream's JSON schema. A schema
/// without properties (a schemaless stream) accepts any field.
fn check_field(
    schema: &Value,
    stream: &str,
    path: &[String],
    key: &str,
    problems: &mut Vec<String>,
) {
    let mut at = schema.get("jsonSchema");
    for (depth, part) in path.iter().enumerate() {
        let properties = at
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object);
        let Some(properties) = properties else {
            if depth == 0 {
                return;
            }
            problems.push(format!(
                "{key} of stream {stream:?}: field {:?} has no fields inside",
                path_text(&path[..depth])
            ));
            return;
        };
        match properties.get(part) {
            Some(next) => at = Some(next),
            None => {
                let hint = closest(part, properties.keys().map(String::as_str))
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{key} of stream {stream:?}: the stream has no field {:?}{hint}",
                    path_text(&path[..=depth])
                ));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectionStatus, DestinationSyncMode};

    fn stream(name: &str, sync: SyncMode, cursor: Option<&str>) -> StreamSettings {
        StreamSettings {
            name: name.into(),
            namespace: None,
            sync_mode: sync,
            destination_sync_mode: match sync {
                SyncMode::FullRefresh => DestinationSyncMode::Overwrite,
                SyncMode::Incremental => DestinationSyncMode::Append,
            },
            cursor_field: cursor.map(|c| vec![c.to_string()]),
            primary_key: None,
        }
    }

    fn declared(streams: Vec<StreamSettings>) -> DeclaredConnection {
        DeclaredConnection {
            source: "ecommerce".into(),
            destination: "bronze".into(),
            streams,
            namespace_definition: None,
            namespace_format: None,
            prefix: None,
            status: ConnectionStatus::Active,
        }
    }

    fn discovered() -> Value {
        let table = |name: &str| {
            json!({
                "stream": {
                    "name": name,
                    "namespace": "public",
                    "jsonSchema": {"type": "object", "properties": {
                        "id": {"type": "number"},
                        "updated_at": {"type": "string"},
                    }},
                    "supportedSyncModes": ["full_refresh", "incremental"],
                    "sourceDefinedPrimaryKey": [["id"]],
                },
                "config": {"syncMode": "full_refresh", "destinationSyncMode": "overwrite",
                           "selected": true, "aliasName": name},
            })
        };
        json!({"streams": [table("customers"), table("orders")]})
    }

    #[test]
    fn declared_streams_are_selected_and_the_rest_are_not() {
        let d = declared(vec![stream(
            "orders",
            SyncMode::Incremental,
            Some("updated_at"),
        )]);
        let catalog = sync_catalog("c", "ecommerce", &d, &discovered()).expect("valid");
        let streams = entries(&catalog);
        assert_eq!(streams[0]["config"]["selected"], false);
        assert_eq!(streams[1]["config"]["selected"], true);
        assert_eq!(streams[1]["config"]["syncMode"], "incremental");
        assert_eq!(streams[1]["config"]["cursorField"], json!(["updated_at"]));
        assert_eq!(streams[1]["config"]["primaryKey"], json!([["id"]]));
        // What was built reads back as no change.
        assert!(changes(&d, Some(&catalog)).is_empty());
    }

    #[test]
    fn a_misspelt_stream_and_cursor_are_refused_with_the_closest_names() {
        let d = declared(vec![
            stream("custmers", SyncMode::FullRefresh, None),
            stream("orders", SyncMode::Incremental, Some("updatedat")),
        ]);
        let err = sync_catalog("c", "ecommerce", &d, &discovered()).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("no stream \"custmers\"; did you mean \"customers\"?"),
            "{text}"
        );
        assert!(
            text.contains("no field \"updatedat\"; did you mean \"updated_at\"?"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_cursor_and_an_undeclared_selected_stream_are_changes() {
        let d = declared(vec![stream(
            "orders",
            SyncMode::Incremental,
            Some("updated_at"),
        )]);
        let catalog = sync_catalog("c", "ecommerce", &d, &discovered()).expect("valid");
        let changed = declared(vec![stream("orders", SyncMode::Incremental, Some("id"))]);
        let fields: Vec<String> = changes(&changed, Some(&catalog))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["streams.orders.cursor_field"]);
        let fields: Vec<String> = changes(&declared(vec![]), Some(&catalog))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["streams.public.orders"]);
    }
}
