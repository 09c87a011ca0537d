//! The declaring parts of a configuration: `[[sources]]`, `[[destinations]]`, and the keys
//! by which a `[[connections]]` entry names its source, destination and streams instead of
//! giving a `connection_id`.

use config::{Value, ValueKind};

use super::connector::{self, EnvLookup};
use super::problem::Problem;
use super::reader::{Problems, Table};
use super::sections::entry_table;
use super::settings::{
    ActorSettings, ConnectionStatus, DeclaredConnection, DestinationSyncMode, NamespaceDefinition,
    StreamSettings, SyncMode,
};

/// A `[[sources]]` or `[[destinations]]` entry as read, kept even when incomplete so its
/// name still counts when connections refer to it.
pub(super) struct ActorDraft {
    /// The key path of the entry, `sources[i]` or `destinations[i]`.
    pub(super) path: String,
    /// The name, if it was given and valid.
    pub(super) name: Option<String>,
    /// The `instance` it names, if given; once instances are checked, the one it uses.
    pub(super) instance: Option<String>,
    /// The settings, if every key was valid.
    pub(super) settings: Option<ActorSettings>,
}

/// `[[sources]]` (`key = "sources"`) or `[[destinations]]`.
pub(super) fn actors(
    root: &mut Table,
    key: &'static str,
    env: EnvLookup<'_>,
    p: &mut Problems,
) -> Vec<ActorDraft> {
    let what = key.trim_end_matches('s');
    let Some(items) = root.list(key, &format!("[[{key}]] tables"), p) else {
        return Vec::new();
    };
    let mut out: Vec<ActorDraft> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Some(mut t) = entry_table(path.clone(), item, p) else {
            continue;
        };
        let before = p.len();
        let name = t.required(
            "name",
            &format!("a {what} needs the name it has in Airbyte"),
            p,
            Table::non_empty_string,
        );
        // Names are unique per instance: checked once instances are known.
        let instance = t.non_empty_string("instance", p);
        let definition = t.required(
            "definition",
            &format!(
                "a {what} needs its connector: a definition name such as \"Postgres\", or a \
                 definition id"
            ),
            p,
            |t, key, p| {
                t.non_empty_string(key, p).map(|d| {
                    // An id is kept in canonical form so it compares with Airbyte's.
                    uuid::Uuid::parse_str(d.trim())
                        .map_or_else(|_| d.trim().to_string(), |id| id.hyphenated().to_string())
                })
            },
        );
        let configuration = if t.has("configuration") {
            t.take("configuration")
                .and_then(|value| connector::read(&t.key_path("configuration"), value, env, p))
        } else {
            let _ = t.take("configuration");
            p.push(Problem::new(
                t.key_path("configuration"),
                format!("missing: a {what} needs its connector's configuration (a table)"),
            ));
            None
        };
        t.finish(p);
        let settings = match (&name, definition, configuration) {
            (Some(name), Some(definition), Some(configuration)) if p.len() == before => {
                Some(ActorSettings {
                    name: name.clone(),
                    // Chosen once every instance is known (`checks::instances`).
                    instance: String::new(),
                    definition,
                    configuration,
                })
            }
            _ => None,
        };
        out.push(ActorDraft {
            path,
            name,
            instance,
            settings,
        });
    }
    out
}

/// The declaring keys of one `[[connections]]` entry, as read.
pub(super) struct Declaration {
    /// Whether the entry declares its connection (`source` and `destination`, no id).
    pub(super) declares: bool,
    /// The `source` name, if given and valid.
    pub(super) source: Option<String>,
    /// The `destination` name, if given and valid.
    pub(super) destination: Option<String>,
    /// The whole declaration, if it declares and every key was valid.
    pub(super) settings: Option<DeclaredConnection>,
}

/// The keys only a declared connection may have.
const DECLARING_KEYS: [&str; 5] = [
    "streams",
    "namespace_definition",
    "namespace_format",
    "prefix",
    "status",
];

/// Reads `source`, `destination`, `streams` and the other declaring keys of a connection,
/// and checks them against `connection_id` (`id_given`): a connection has one or the other.
pub(super) fn declaration(t: &mut Table, id_given: bool, p: &mut Problems) -> Declaration {
    let before = p.len();
    let source_given = t.has("source");
    let destination_given = t.has("destination");
    let source = t.non_empty_string("source", p);
    let destination = t.non_empty_string("destination", p);
    let names_given = source_given || destination_given;
    let declares = names_given && !id_given;

    if id_given && names_given {
        p.push(Problem::new(
            t.key_path("connection_id"),
            "give either `connection_id` (a connection made elsewhere) or `source` and \
             `destination` (one cronbyte finds or creates), not both",
        ));
    } else if !id_given && !names_given {
        p.push(Problem::new(
            t.key_path("connection_id"),
            "missing: a connection needs the Airbyte connection id (a UUID), or `source` and \
             `destination` for cronbyte to find or create it",
        ));
    } else if declares && !(source_given && destination_given) {
        let absent = if source_given {
            "destination"
        } else {
            "source"
        };
        p.push(Problem::new(
            t.key_path(absent),
            "missing: a declared connection needs both `source` and `destination`",
        ));
    }
    if !declares {
        for key in DECLARING_KEYS {
            if t.has(key) {
                p.push(Problem::new(
                    t.key_path(key),
                    "only a declared connection (one with `source` and `destination` instead \
                     of `connection_id`) has this key",
                ));
            }
        }
    }

    let streams_given = t.has("streams");
    let streams = streams(t, p);
    let namespace_definition = t.choice("namespace_definition", &NamespaceDefinition::ALL, p);
    let namespace_format = t.string("namespace_format", p);
    if namespace_format.is_some() && namespace_definition != Some(NamespaceDefinition::CustomFormat)
    {
        p.push(Problem::new(
            t.key_path("namespace_format"),
            "is only used with namespace_definition = \"customformat\"",
        ));
    }
    let prefix = t.string("prefix", p);
    let status = t.choice("status", &ConnectionStatus::ALL, p);
    if declares && !streams_given {
        p.push(Problem::new(
            t.key_path("streams"),
            "missing: a declared connection needs `streams`, the streams to sync",
        ));
    }

    let settings = match (&source, &destination, streams) {
        (Some(source), Some(destination), Some(streams)) if declares && p.len() == before => {
            Some(DeclaredConnection {
                source: source.clone(),
                destination: destination.clone(),
                streams,
                namespace_definition,
                namespace_format,
                prefix,
                status: status.unwrap_or_default(),
            })
        }
        _ => None,
    };
    Declaration {
        declares,
        source,
        destination,
        settings,
    }
}

/// `[[connections.streams]]`: `None` when absent or when any entry is wrong.
fn streams(t: &mut Table, p: &mut Problems) -> Option<Vec<StreamSettings>> {
    let given = t.has("streams");
    let items = t.list("streams", "[[connections.streams]] tables", p)?;
    let before = p.len();
    if given && items.is_empty() {
        p.push(Problem::new(
            t.key_path("streams"),
            "must list at least one stream",
        ));
    }
    let mut out: Vec<StreamSettings> = Vec::new();
    for (j, item) in items.into_iter().enumerate() {
        let path = format!("{}[{j}]", t.key_path("streams"));
        let Some(entry) = entry_table(path.clone(), item, p) else {
            continue;
        };
        if let Some(stream) = stream(entry, p) {
            if let Some(k) = out
                .iter()
                .position(|s| s.name == stream.name && s.namespace == stream.namespace)
            {
                p.push(Problem::new(
                    format!("{path}.name"),
                    format!("duplicate stream {:?} (also streams[{k}])", stream.name),
                ));
            }
            out.push(stream);
        }
    }
    (p.len() == before).then_some(out)
}

/// One `[[connections.streams]]` entry.
fn stream(mut t: Table, p: &mut Problems) -> Option<StreamSettings> {
    let before = p.len();
    let name = t.required(
        "name",
        "a stream needs its name, as the source discovers it",
        p,
        Table::non_empty_string,
    );
    let namespace = t.non_empty_string("namespace", p);
    let sync_mode = t
        .choice("sync_mode", &SyncMode::ALL, p)
        .unwrap_or(SyncMode::FullRefresh);
    let destination_given = t.has("destination_sync_mode");
    let destination_sync_mode = t
        .choice("destination_sync_mode", &DestinationSyncMode::ALL, p)
        .unwrap_or(match sync_mode {
            SyncMode::FullRefresh => DestinationSyncMode::Overwrite,
            SyncMode::Incremental => DestinationSyncMode::Append,
        });
    let cursor_given = t.has("cursor_field");
    let cursor_field = t.read("cursor_field", p, field_path);
    let primary_key = t.read("primary_key", p, key_paths);

    // The combinations Airbyte offers; others are refused by its UI and misbehave in syncs.
    let refused = match (sync_mode, destination_sync_mode) {
        (
            SyncMode::Incremental,
            DestinationSyncMode::Overwrite | DestinationSyncMode::OverwriteDedup,
        ) => Some("sync_mode = \"incremental\" appends: use \"append\" or \"append_dedup\""),
        (SyncMode::FullRefresh, DestinationSyncMode::AppendDedup) => Some(
            "sync_mode = \"full_refresh\" does not deduplicate appended records: use \
             \"overwrite_dedup\", or sync_mode = \"incremental\"",
        ),
        _ => None,
    };
    if let Some(message) = refused.filter(|_| destination_given) {
        p.push(Problem::new(t.key_path("destination_sync_mode"), message));
    }
    if cursor_given && sync_mode == SyncMode::FullRefresh {
        p.push(Problem::new(
            t.key_path("cursor_field"),
            "is only used with sync_mode = \"incremental\"",
        ));
    }
    t.finish(p);
    let name = name?;
    (p.len() == before).then_some(StreamSettings {
        name,
        namespace,
        sync_mode,
        destination_sync_mode,
        cursor_field,
        primary_key,
    })
}

/// A field path: `"updated_at"`, or `["payload", "updated_at"]` for a nested field.
fn field_path(value: &Value) -> Result<Vec<String>, String> {
    const EXPECTED: &str =
        "expected a field name such as \"updated_at\", or a list of names for a nested field";
    let parts = match &value.kind {
        ValueKind::String(name) => vec![name.clone()],
        ValueKind::Array(items) => items
            .iter()
            .map(|item| match &item.kind {
                ValueKind::String(name) => Ok(name.clone()),
                _ => Err(EXPECTED.to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(EXPECTED.into()),
    };
    if parts.is_empty() || parts.iter().any(|part| part.trim().is_empty()) {
        return Err("must name a field (no empty names)".into());
    }
    Ok(parts)
}

/// A primary key: `"id"`, `["id", "region"]` (a key of two fields), or explicit paths
/// `[["id"], ["payload", "region"]]`.
fn key_paths(value: &Value) -> Result<Vec<Vec<String>>, String> {
    const EXPECTED: &str = "expected a field name such as \"id\", a list of field names, or a \
                            list of field paths";
    let paths = match &value.kind {
        ValueKind::String(_) => vec![field_path(value)?],
        ValueKind::Array(items) => items
            .iter()
            .map(|item| match &item.kind {
                ValueKind::String(_) | ValueKind::Array(_) => field_path(item),
                _ => Err(EXPECTED.to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(EXPECTED.into()),
    };
    if paths.is_empty() {
        return Err("must name at least one field".into());
    }
    Ok(paths)
}
