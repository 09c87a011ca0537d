//! Carrying a plan out: sources and destinations created or updated, each connector checked,
//! the source's schema discovered and the declared streams checked against it before a
//! connection is written, then (with `--prune`, once confirmed) what is undeclared deleted.
//! The ids resolved are recorded in the store, even when the apply stops halfway.

use std::collections::HashMap;
use std::io::Write;

use chrono::Utc;
use serde_json::{Value, json};

use super::plan::{Action, Change, ObjectKind, Plan};
use super::render::Output;
use super::{PipelineError, catalog};
use crate::airbyte::model::{DestinationCreate, DestinationUpdate, SourceCreate, SourceUpdate};
use crate::airbyte::{Client, Error};
use crate::config::{ActorSettings, Config, DeclaredConnection};
use crate::store::{AirbyteObject, Store};

/// How `apply` goes about it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// Delete what Airbyte has and the config does not declare.
    pub prune: bool,
    /// Delete without asking.
    pub yes: bool,
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Every declared object's Airbyte id, as `(kind, name, id)`.
    pub ids: Vec<(ObjectKind, String, String)>,
}

/// Carries out `plan` (built from `config` with the same `options.prune`), writing what it
/// does to `out`. `confirm` is asked before anything is deleted, unless `options.yes`.
pub async fn apply_plan(
    client: &Client,
    config: &Config,
    plan: &Plan,
    options: ApplyOptions,
    confirm: &mut dyn FnMut(&str) -> bool,
    store: Option<&dyn Store>,
    out: &mut dyn Write,
) -> Result<Applied, PipelineError> {
    let mut out = Output::new(out, config);
    let mut run = Run {
        client,
        config,
        plan,
        ids: HashMap::new(),
        deleted: Vec::new(),
        applied: Applied::default(),
    };
    for change in &plan.changes {
        if let (Some(id), Action::Update | Action::Unchanged) = (&change.airbyte_id, change.action)
        {
            run.ids
                .insert((change.kind, change.name.clone()), id.clone());
        }
    }
    let outcome = run.go(options, confirm, &mut out).await;
    // What was resolved is recorded even when the apply stopped: the objects exist.
    run.applied.ids = run.declared_ids();
    if let Some(store) = store {
        match (record(store, plan, &run).await, &outcome) {
            (Err(err), Ok(())) => return Err(err),
            // The apply's own error is the one to report; this one is said in passing.
            (Err(err), Err(_)) => out.line(&format!(
                "could not record the Airbyte ids in the store either: {err}"
            ))?,
            (Ok(()), _) => {}
        }
    }
    outcome.map(|()| run.applied)
}

struct Run<'a> {
    client: &'a Client,
    config: &'a Config,
    plan: &'a Plan,
    /// The Airbyte id of each declared object known so far.
    ids: HashMap<(ObjectKind, String), String>,
    /// What was deleted, as `(kind, name)`.
    deleted: Vec<(ObjectKind, String)>,
    applied: Applied,
}

impl<'a> Run<'a> {
    async fn go(
        &mut self,
        options: ApplyOptions,
        confirm: &mut dyn FnMut(&str) -> bool,
        out: &mut Output<'_>,
    ) -> Result<(), PipelineError> {
        let doomed: Vec<&Change> = self
            .plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .collect();
        // Asked before anything is written, so a "no" leaves Airbyte as it was.
        if !doomed.is_empty() && !options.yes {
            let question = format!(
                "Delete {} object(s) from Airbyte that the config does not declare?",
                doomed.len()
            );
            if !confirm(&question) {
                return Err(PipelineError::NotConfirmed(
                    "deleting was not confirmed (give --yes to delete without asking)".into(),
                ));
            }
        }

        let mut touched: Vec<(ObjectKind, String)> = Vec::new();
        for change in self.actors() {
            if self.write_actor(change, out).await? {
                touched.push((change.kind, change.name.clone()));
            }
        }

        let connections: Vec<&Change> = self
            .plan
            .changes
            .iter()
            .filter(|c| c.kind == ObjectKind::Connection)
            .filter(|c| matches!(c.action, Action::Create | Action::Update))
            .collect();
        // Every connector a written connection joins, and every connector just written, is
        // checked before any connection is written.
        let mut to_check = touched;
        for change in &connections {
            let declared = self.declared(change)?;
            to_check.push((ObjectKind::Source, declared.source.clone()));
            to_check.push((ObjectKind::Destination, declared.destination.clone()));
        }
        to_check.sort_by_key(|(kind, name)| (*kind != ObjectKind::Source, name.clone()));
        to_check.dedup();
        for (kind, name) in &to_check {
            self.check(*kind, name, out).await?;
        }

        let mut discovered: HashMap<String, (Value, Option<String>)> = HashMap::new();
        for change in connections {
            self.write_connection(change, &mut discovered, out).await?;
        }

        for change in doomed {
            self.delete(change, out).await?;
        }
        out.line(&format!(
            "Apply complete: {} created, {} updated, {} deleted.",
            self.applied.created, self.applied.updated, self.applied.deleted
        ))
    }

    /// The plan's sources, then its destinations.
    fn actors(&self) -> Vec<&'a Change> {
        let plan: &'a Plan = self.plan;
        let of = |kind| plan.changes.iter().filter(move |c| c.kind == kind);
        of(ObjectKind::Source)
            .chain(of(ObjectKind::Destination))
            .filter(|c| matches!(c.action, Action::Create | Action::Update))
            .collect()
    }

    fn settings(&self, change: &Change) -> Result<&ActorSettings, PipelineError> {
        let list = match change.kind {
            ObjectKind::Source => &self.config.sources,
            _ => &self.config.destinations,
        };
        list.get(change.index)
            .filter(|a| a.name == change.name)
            .ok_or_else(|| stale(change))
    }

    fn declared(&self, change: &Change) -> Result<&DeclaredConnection, PipelineError> {
        self.config
            .connections
            .get(change.index)
            .filter(|c| c.name == change.name)
            .and_then(|c| c.declared.as_deref())
            .ok_or_else(|| stale(change))
    }

    fn id(&self, kind: ObjectKind, name: &str) -> Result<String, PipelineError> {
        self.ids
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| {
                PipelineError::Conflict(format!(
                    "{} {name:?} has no Airbyte id: it was neither found nor created",
                    kind.as_str()
                ))
            })
    }

    /// Creates or updates a source or destination; whether it wrote anything.
    async fn write_actor(
        &mut self,
        change: &Change,
        out: &mut Output<'_>,
    ) -> Result<bool, PipelineError> {
        let settings = self.settings(change)?;
        let configuration = settings.configuration.expose().clone();
        let workspace_id = self.plan.workspace_id.clone();
        let definition_id = change.definition_id.clone().unwrap_or_default();
        let name = settings.name.clone();
        let id = match (change.kind, change.action, &change.airbyte_id) {
            (ObjectKind::Source, Action::Create, _) => {
                let create = SourceCreate {
                    workspace_id,
                    name,
                    source_definition_id: definition_id,
                    connection_configuration: configuration,
                };
                self.client.create_source(&create).await?.source_id
            }
            (ObjectKind::Source, Action::Update, Some(id)) => {
                let update = SourceUpdate {
                    source_id: id.clone(),
                    name,
                    connection_configuration: configuration,
                };
                self.client.update_source(&update).await?.source_id
            }
            (ObjectKind::Destination, Action::Create, _) => {
                let create = DestinationCreate {
                    workspace_id,
                    name,
                    destination_definition_id: definition_id,
                    connection_configuration: configuration,
                };
                self.client
                    .create_destination(&create)
                    .await?
                    .destination_id
            }
            (ObjectKind::Destination, Action::Update, Some(id)) => {
                let update = DestinationUpdate {
                    destination_id: id.clone(),
                    name,
                    connection_configuration: configuration,
                };
                self.client
                    .update_destination(&update)
                    .await?
                    .destination_id
            }
            _ => return Ok(false),
        };
        self.wrote(change, &id, out)?;
        Ok(true)
    }

    fn wrote(
        &mut self,
        change: &Change,
        id: &str,
        out: &mut Output<'_>,
    ) -> Result<(), PipelineError> {
        let verb = if change.action == Action::Create {
            self.applied.created += 1;
            "created"
        } else {
            self.applied.updated += 1;
            "updated"
        };
        self.ids
            .insert((change.kind, change.name.clone()), id.to_string());
        out.line(&format!(
            "{verb} {} {:?} [{id}]",
            change.kind.as_str(),
            change.name
        ))
    }

    /// Runs the connector's `check_connection`; its failure stops the apply with the
    /// connector's message.
    async fn check(
        &mut self,
        kind: ObjectKind,
        name: &str,
        out: &mut Output<'_>,
    ) -> Result<(), PipelineError> {
        let id = self.id(kind, name)?;
        let read = match kind {
            ObjectKind::Source => self.client.check_source(&id).await?,
            _ => self.client.check_destination(&id).await?,
        };
        if !read.succeeded() {
            return Err(PipelineError::CheckFailed {
                kind: kind.as_str(),
                name: name.to_string(),
                message: read
                    .message
                    .unwrap_or_else(|| "the connector gave no message".into()),
            });
        }
        out.line(&format!(
            "checked {} {name:?}: the connection check succeeded",
            kind.as_str()
        ))
    }

    /// Discovers the source's schema (once per source), builds the catalog, and creates or
    /// updates the connection with a manual schedule: cronbyte triggers its syncs.
    async fn write_connection(
        &mut self,
        change: &Change,
        discovered: &mut HashMap<String, (Value, Option<String>)>,
        out: &mut Output<'_>,
    ) -> Result<(), PipelineError> {
        let declared = self.declared(change)?;
        let source_id = self.id(ObjectKind::Source, &declared.source)?;
        let destination_id = self.id(ObjectKind::Destination, &declared.destination)?;
        if !discovered.contains_key(&source_id) {
            let read = self.client.discover_source_schema(&source_id).await?;
            let Some(catalog) = read.catalog else {
                let message = read
                    .job_info
                    .and_then(|job| job.failure_reason)
                    .and_then(|f| f.external_message.or(f.internal_message))
                    .unwrap_or_else(|| "Airbyte returned no catalog".into());
                return Err(PipelineError::Discover {
                    source_name: declared.source.clone(),
                    message,
                });
            };
            discovered.insert(source_id.clone(), (catalog, read.catalog_id));
        }
        let (schema, catalog_id) = &discovered[&source_id];
        let sync_catalog = catalog::sync_catalog(&change.name, &declared.source, declared, schema)?;

        let mut body = json!({
            "status": declared.status.as_str(),
            "scheduleType": "manual",
        });
        if let Some(definition) = declared.namespace_definition {
            body["namespaceDefinition"] = json!(definition.as_str());
        }
        if let Some(format) = &declared.namespace_format {
            body["namespaceFormat"] = json!(format);
        }
        if let Some(prefix) = &declared.prefix {
            body["prefix"] = json!(prefix);
        }
        let streams_changed = change.action == Action::Create
            || change
                .fields
                .iter()
                .any(|f| f.field.starts_with("streams."));
        if streams_changed {
            body["syncCatalog"] = sync_catalog;
            if let Some(id) = catalog_id {
                body["sourceCatalogId"] = json!(id);
            }
        }
        let id = match (&change.action, &change.airbyte_id) {
            (Action::Update, Some(id)) => {
                body["connectionId"] = json!(id);
                self.client.update_connection(&body).await?.connection_id
            }
            _ => {
                body["name"] = json!(change.name);
                body["sourceId"] = json!(source_id);
                body["destinationId"] = json!(destination_id);
                self.client.create_connection(&body).await?.connection_id
            }
        };
        self.wrote(change, &id, out)
    }

    /// Deletes an undeclared object; one already gone counts as deleted.
    async fn delete(&mut self, change: &Change, out: &mut Output<'_>) -> Result<(), PipelineError> {
        let Some(id) = &change.airbyte_id else {
            return Ok(());
        };
        let result = match change.kind {
            ObjectKind::Connection => self.client.delete_connection(id).await,
            ObjectKind::Destination => self.client.delete_destination(id).await,
            ObjectKind::Source => self.client.delete_source(id).await,
        };
        match result {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        self.applied.deleted += 1;
        self.deleted.push((change.kind, change.name.clone()));
        out.line(&format!(
            "deleted {} {:?} [{id}]",
            change.kind.as_str(),
            change.name
        ))
    }

    /// The ids of the declared objects, in plan order.
    fn declared_ids(&self) -> Vec<(ObjectKind, String, String)> {
        self.plan
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    Action::Create | Action::Update | Action::Unchanged
                )
            })
            .filter_map(|c| {
                let id = self.ids.get(&(c.kind, c.name.clone()))?;
                Some((c.kind, c.name.clone(), id.clone()))
            })
            .collect()
    }
}

/// A plan that does not fit the config it is applied with.
fn stale(change: &Change) -> PipelineError {
    PipelineError::Conflict(format!(
        "the plan's {} {:?} is not in the config: plan and apply with the same config",
        change.kind.as_str(),
        change.name
    ))
}

/// Records the workspace and every declared object's id; forgets what was deleted.
async fn record(store: &dyn Store, plan: &Plan, run: &Run<'_>) -> Result<(), PipelineError> {
    let now = Utc::now();
    let object = |kind: &str, name: &str, id: &str| AirbyteObject {
        instance: plan.instance.clone(),
        kind: kind.to_string(),
        name: name.to_string(),
        airbyte_id: id.to_string(),
        updated_at: now,
    };
    let mut objects = vec![object(
        "workspace",
        &plan.workspace_name,
        &plan.workspace_id,
    )];
    objects.extend(
        run.applied
            .ids
            .iter()
            .map(|(kind, name, id)| object(kind.as_str(), name, id)),
    );
    let forget: Vec<(String, String, String)> = run
        .deleted
        .iter()
        .map(|(kind, name)| {
            (
                plan.instance.clone(),
                kind.as_str().to_string(),
                name.clone(),
            )
        })
        .collect();
    store.record_airbyte_objects(&objects, &forget).await?;
    Ok(())
}
