//! What `apply` would do: each declared object matched by name with what Airbyte has in the
//! workspace, and the difference as an action with field-level changes.

use std::collections::HashSet;

use serde_json::Value;

use super::workspace::{self, by_name};
use super::{PipelineError, catalog, diff};
use crate::airbyte::Client;
use crate::airbyte::model::ConnectionRead;
use crate::config::{ActorSettings, Config, DeclaredConnection, closest};

/// The kinds of Airbyte objects a pipeline is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Source,
    Destination,
    Connection,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Connection => "connection",
        }
    }
}

/// What apply does with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Declared, and Airbyte has nothing of that name.
    Create,
    /// Declared, and some declared field differs from Airbyte's value.
    Update,
    /// Declared, and Airbyte has it as declared.
    Unchanged,
    /// In Airbyte but not declared, and `--prune` was given.
    Delete,
    /// In Airbyte but not declared: left as it is.
    LeftAlone,
}

/// One field that changes, its values shown with secrets masked. `before` is `None` when
/// Airbyte has no value; `after` is `None` when the field goes away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// The field, as `configuration.format.compression_codec` or `streams.orders.cursor_field`.
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl FieldChange {
    pub fn new(field: impl Into<String>, before: Option<String>, after: Option<String>) -> Self {
        Self {
            field: field.into(),
            before,
            after,
        }
    }
}

/// One object of the plan.
#[derive(Clone, Debug)]
pub struct Change {
    pub kind: ObjectKind,
    pub name: String,
    pub action: Action,
    /// The object's id in Airbyte, when it exists there.
    pub airbyte_id: Option<String>,
    /// A word on what it is: the connector, or `source → destination`.
    pub summary: String,
    /// The fields created or changed (for `Create`, every declared field).
    pub fields: Vec<FieldChange>,
    /// The resolved definition id of a source or destination.
    pub(crate) definition_id: Option<String>,
    /// Where the declaration is in its config list (`sources`, `destinations`, `connections`).
    pub(crate) index: usize,
}

/// The plan: the workspace, and a change per declared object (then per undeclared one).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The Airbyte instance the plan is for.
    pub instance: String,
    pub workspace_id: String,
    pub workspace_name: String,
    /// Sources, then destinations, then connections, then what Airbyte has undeclared.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether applying would change anything in Airbyte.
    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c.action, Action::Create | Action::Update | Action::Delete))
    }

    /// How many objects get `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The change for the declared object `name` of `kind`.
    pub fn find(&self, kind: ObjectKind, name: &str) -> Option<&Change> {
        self.changes
            .iter()
            .find(|c| c.kind == kind && c.name == name && c.action != Action::LeftAlone)
    }
}

/// A source or destination as Airbyte shows it, whichever it is.
struct ActorView<'a> {
    id: &'a str,
    definition_id: &'a str,
    configuration: &'a Value,
}

/// Reads the workspace's sources, destinations and connections and compares them with the
/// declarations. With `prune`, what Airbyte has undeclared is planned for deletion.
pub async fn build_plan(
    client: &Client,
    config: &Config,
    prune: bool,
) -> Result<Plan, PipelineError> {
    let (instance, settings) = config
        .instances
        .iter()
        .next()
        .expect("a config has at least one instance");
    let workspace = workspace::find(client, settings.workspace.as_deref()).await?;
    let ws = workspace.workspace_id.as_str();
    let source_definitions: Vec<(String, String)> = if config.sources.is_empty() {
        Vec::new()
    } else {
        client
            .list_source_definitions()
            .await?
            .into_iter()
            .map(|d| (d.source_definition_id, d.name))
            .collect()
    };
    let destination_definitions: Vec<(String, String)> = if config.destinations.is_empty() {
        Vec::new()
    } else {
        client
            .list_destination_definitions()
            .await?
            .into_iter()
            .map(|d| (d.destination_definition_id, d.name))
            .collect()
    };
    let sources = client.list_sources(ws).await?;
    let destinations = client.list_destinations(ws).await?;
    let connections = client.list_connections(ws).await?;

    let mut changes = Vec::new();
    for (index, declared) in config.sources.iter().enumerate() {
        let existing = by_name(
            &sources,
            &declared.name,
            |s| &s.name,
            |s| &s.source_id,
            "source",
        )?
        .map(|s| ActorView {
            id: &s.source_id,
            definition_id: &s.source_definition_id,
            configuration: &s.connection_configuration,
        });
        changes.push(actor_change(
            ObjectKind::Source,
            index,
            declared,
            &source_definitions,
            existing,
        )?);
    }
    for (index, declared) in config.destinations.iter().enumerate() {
        let existing = by_name(
            &destinations,
            &declared.name,
            |d| &d.name,
            |d| &d.destination_id,
            "destination",
        )?
        .map(|d| ActorView {
            id: &d.destination_id,
            definition_id: &d.destination_definition_id,
            configuration: &d.connection_configuration,
        });
        changes.push(actor_change(
            ObjectKind::Destination,
            index,
            declared,
            &destination_definitions,
            existing,
        )?);
    }
    for (index, connection) in config.connections.iter().enumerate() {
        let Some(declared) = &connection.declared else {
            continue;
        };
        let existing = by_name(
            &connections,
            &connection.name,
            |c| &c.name,
            |c| &c.connection_id,
            "connection",
        )?;
        let change = connection_change(&changes, index, &connection.name, declared, existing)?;
        changes.push(change);
    }

    undeclared(
        config,
        prune,
        &sources,
        &destinations,
        &connections,
        &mut changes,
    );
    Ok(Plan {
        instance: instance.clone(),
        workspace_id: workspace.workspace_id,
        workspace_name: workspace.name,
        changes,
    })
}

/// The definition `declared.definition` names: an id, or a name as Airbyte lists it
/// (exactly, else ignoring case when that is unambiguous).
fn definition<'a>(
    kind: ObjectKind,
    declared: &ActorSettings,
    definitions: &'a [(String, String)],
) -> Result<&'a (String, String), PipelineError> {
    let wanted = declared.definition.as_str();
    let found = if uuid::Uuid::parse_str(wanted).is_ok() {
        definitions
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(wanted))
    } else {
        definitions
            .iter()
            .find(|(_, name)| name == wanted)
            .or_else(|| {
                let mut alike = definitions
                    .iter()
                    .filter(|(_, name)| name.eq_ignore_ascii_case(wanted));
                match (alike.next(), alike.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            })
    };
    found.ok_or_else(|| PipelineError::Definition {
        kind: kind.as_str(),
        name: declared.name.clone(),
        definition: wanted.to_string(),
        hint: closest(wanted, definitions.iter().map(|(_, name)| name.as_str()))
            .map(|n| format!("; did you mean {n:?}?"))
            .unwrap_or_default(),
    })
}

fn actor_change(
    kind: ObjectKind,
    index: usize,
    declared: &ActorSettings,
    definitions: &[(String, String)],
    existing: Option<ActorView<'_>>,
) -> Result<Change, PipelineError> {
    let (definition_id, definition_name) = definition(kind, declared, definitions)?;
    let (action, fields) = match &existing {
        None => (Action::Create, diff::listing(&declared.configuration)),
        Some(current) => {
            if !current.definition_id.eq_ignore_ascii_case(definition_id) {
                return Err(PipelineError::Conflict(format!(
                    "{} {:?} exists in Airbyte with another connector (definition {}) than the \
                     config's {:?}: Airbyte can't change the connector of a {0}, so rename it \
                     in the config or delete it in Airbyte",
                    kind.as_str(),
                    declared.name,
                    current.definition_id,
                    definition_name
                )));
            }
            let fields = diff::configuration(&declared.configuration, current.configuration);
            let action = if fields.is_empty() {
                Action::Unchanged
            } else {
                Action::Update
            };
            (action, fields)
        }
    };
    Ok(Change {
        kind,
        name: declared.name.clone(),
        action,
        airbyte_id: existing.map(|e| e.id.to_string()),
        summary: definition_name.clone(),
        fields,
        definition_id: Some(definition_id.clone()),
        index,
    })
}

/// The Airbyte id of the declared `kind` named `name`, if it exists already.
fn existing_id(changes: &[Change], kind: ObjectKind, name: &str) -> Option<String> {
    changes
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .and_then(|c| c.airbyte_id.clone())
}

fn connection_change(
    changes: &[Change],
    index: usize,
    name: &str,
    declared: &DeclaredConnection,
    existing: Option<&ConnectionRead>,
) -> Result<Change, PipelineError> {
    let summary = format!("{} → {}", declared.source, declared.destination);
    let Some(current) = existing else {
        let mut fields = vec![
            FieldChange::new("source", None, Some(declared.source.clone())),
            FieldChange::new("destination", None, Some(declared.destination.clone())),
            FieldChange::new("status", None, Some(declared.status.as_str().into())),
            FieldChange::new("schedule_type", None, Some("manual".into())),
        ];
        fields.extend(settings(declared, None));
        fields.extend(catalog::listing(declared));
        return Ok(Change {
            kind: ObjectKind::Connection,
            name: name.to_string(),
            action: Action::Create,
            airbyte_id: None,
            summary,
            fields,
            definition_id: None,
            index,
        });
    };
    for (kind, wanted, actual) in [
        (ObjectKind::Source, &declared.source, &current.source_id),
        (
            ObjectKind::Destination,
            &declared.destination,
            &current.destination_id,
        ),
    ] {
        if existing_id(changes, kind, wanted).as_deref() != Some(actual.as_str()) {
            return Err(PipelineError::Conflict(format!(
                "connection {name:?} exists in Airbyte with another {} ({actual}) than the \
                 config's {wanted:?}: Airbyte can't move a connection, so rename it in the \
                 config or delete it in Airbyte",
                kind.as_str()
            )));
        }
    }
    let mut fields = Vec::new();
    if current.status != declared.status.as_str() {
        fields.push(FieldChange::new(
            "status",
            Some(current.status.clone()),
            Some(declared.status.as_str().into()),
        ));
    }
    // The schedule is cronbyte's: a schedule in Airbyte as well would sync twice.
    let schedule = current.schedule_type.as_deref().unwrap_or("manual");
    if schedule != "manual" {
        fields.push(FieldChange::new(
            "schedule_type",
            Some(schedule.into()),
            Some("manual".into()),
        ));
    }
    fields.extend(settings(declared, Some(current)));
    fields.extend(catalog::changes(declared, current.sync_catalog.as_ref()));
    let action = if fields.is_empty() {
        Action::Unchanged
    } else {
        Action::Update
    };
    Ok(Change {
        kind: ObjectKind::Connection,
        name: name.to_string(),
        action,
        airbyte_id: Some(current.connection_id.clone()),
        summary,
        fields,
        definition_id: None,
        index,
    })
}

/// The declared namespace settings and prefix that differ from the connection's (all of
/// them, for a connection to create).
fn settings(declared: &DeclaredConnection, current: Option<&ConnectionRead>) -> Vec<FieldChange> {
    let shown = |text: &str| serde_json::Value::from(text).to_string();
    let wanted = [
        (
            "namespace_definition",
            "namespaceDefinition",
            declared
                .namespace_definition
                .map(|n| n.as_str().to_string()),
        ),
        (
            "namespace_format",
            "namespaceFormat",
            declared.namespace_format.clone(),
        ),
        ("prefix", "prefix", declared.prefix.clone()),
    ];
    let mut out = Vec::new();
    for (field, key, value) in wanted {
        let Some(value) = value else { continue };
        let actual = current.map(|c| {
            c.extra
                .get(key)
                .and_then(Value::as_str)
                // Airbyte leaves an empty prefix out.
                .unwrap_or_default()
                .to_string()
        });
        if actual.as_deref() != Some(value.as_str()) {
            out.push(FieldChange::new(
                field,
                actual.as_deref().map(shown),
                Some(shown(&value)),
            ));
        }
    }
    out
}

/// What Airbyte has that the config does not declare: deleted with `prune`, unless a
/// connection the config names by id still uses it; otherwise left alone.
fn undeclared(
    config: &Config,
    prune: bool,
    sources: &[crate::airbyte::model::SourceRead],
    destinations: &[crate::airbyte::model::DestinationRead],
    connections: &[ConnectionRead],
    changes: &mut Vec<Change>,
) {
    let declared_connections: HashSet<&str> = config
        .connections
        .iter()
        .filter(|c| c.declared.is_some())
        .map(|c| c.name.as_str())
        .collect();
    let referenced: HashSet<&str> = config
        .connections
        .iter()
        .filter(|c| c.declared.is_none())
        .map(|c| c.connection_id.as_str())
        .collect();
    let mut in_use: HashSet<&str> = HashSet::new();
    let mut found = Vec::new();
    for c in connections {
        let kept = declared_connections.contains(c.name.as_str())
            || referenced.contains(c.connection_id.to_ascii_lowercase().as_str());
        if kept || !prune {
            in_use.insert(&c.source_id);
            in_use.insert(&c.destination_id);
        }
        if !kept {
            found.push((ObjectKind::Connection, &c.name, &c.connection_id, false));
        }
    }
    let declared = |list: &[ActorSettings], name: &str| list.iter().any(|a| a.name == name);
    for s in sources
        .iter()
        .filter(|s| !declared(&config.sources, &s.name))
    {
        let used = in_use.contains(s.source_id.as_str());
        found.push((ObjectKind::Source, &s.name, &s.source_id, used));
    }
    for d in destinations
        .iter()
        .filter(|d| !declared(&config.destinations, &d.name))
    {
        let used = in_use.contains(d.destination_id.as_str());
        found.push((ObjectKind::Destination, &d.name, &d.destination_id, used));
    }
    for (kind, name, id, used) in found {
        let action = if prune && !used {
            Action::Delete
        } else {
            Action::LeftAlone
        };
        changes.push(Change {
            kind,
            name: name.clone(),
            action,
            airbyte_id: Some(id.clone()),
            summary: if used && prune {
                "used by a connection the config keeps".into()
            } else {
                "not in the config".into()
            },
            fields: Vec::new(),
            definition_id: None,
            index: 0,
        });
    }
}
