//! Taking schedules over from Airbyte's own scheduler: `cronbyte import` writes a
//! `[[connections]]` entry for each connection of the workspace with its schedule as a cron
//! rule ([`import`]); `--take-over` sets the connections the config schedules to manual in
//! Airbyte, keeping their schedules in a record file first, and `--give-back` restores them
//! ([`hand_over`], [`record`]). [`watch`] finds connections scheduled twice (by the config
//! and by Airbyte), for the daemon and `cronbyte check --online`.

pub mod command;
pub mod convert;
pub mod hand_over;
pub mod import;
pub mod record;
pub mod watch;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::airbyte::{self, ApiKind, Client};
use crate::config::{AirbyteSettings, Config, ConnectionSettings, closest};
use crate::daemon::client_settings;
use crate::pipeline::PipelineError;

/// Why an import, a take-over or a give-back stopped. Messages name the instance, the
/// connection or the file at fault, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    /// `--instance` names none of the config's instances.
    #[error("--instance {name:?}: the config has no such Airbyte instance{hint} (it has: {known})")]
    UnknownInstance {
        name: String,
        hint: String,
        known: String,
    },

    /// An instance could not be asked, or refused what it was asked.
    #[error("Airbyte instance {instance:?}: {doing}: {source}")]
    Airbyte {
        instance: String,
        doing: String,
        source: Box<airbyte::Error>,
    },

    /// The workspace to work in could not be told.
    #[error("Airbyte instance {instance:?}: {message}")]
    Workspace { instance: String, message: String },

    /// The record file could not be read or written.
    #[error("the take-over record {}: {detail}", path.display())]
    Record { path: PathBuf, detail: String },

    /// The output file could not be written.
    #[error("{}: {detail}", path.display())]
    Output { path: PathBuf, detail: String },

    /// A change in Airbyte was not confirmed.
    #[error("nothing was changed in Airbyte: {0}")]
    NotConfirmed(String),

    /// Writing to the terminal or a pipe failed.
    #[error("could not write the output: {0}")]
    Io(#[from] std::io::Error),
}

/// The instances to work on, in name order: the one `--instance` names, or every one.
pub(crate) fn chosen_instances<'a>(
    config: &'a Config,
    wanted: Option<&str>,
) -> Result<Vec<(&'a String, &'a AirbyteSettings)>, TakeOverError> {
    match wanted {
        None => Ok(config.instances.iter().collect()),
        Some(name) => match config.instances.get_key_value(name) {
            Some(found) => Ok(vec![found]),
            None => Err(TakeOverError::UnknownInstance {
                name: name.to_owned(),
                hint: closest(name, config.instances.keys().map(String::as_str))
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default(),
                known: config
                    .instances
                    .keys()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

/// A client for one instance.
pub(crate) fn client_for(
    instance: &str,
    settings: &AirbyteSettings,
) -> Result<Client, TakeOverError> {
    Client::new(client_settings(settings)).map_err(|source| TakeOverError::Airbyte {
        instance: instance.to_owned(),
        doing: "could not set up its client".into(),
        source: Box::new(source),
    })
}

/// The workspaces whose connections are looked at. The Config API lists connections per
/// workspace: the one `workspace` names, else the only one (`one`) or every one. The public
/// API lists every workspace the credentials reach (an empty list) unless `workspace` gives
/// an id; it has no lookup by name that cronbyte uses, so a name is refused.
pub(crate) async fn workspaces(
    instance: &str,
    settings: &AirbyteSettings,
    client: &Client,
    one: bool,
) -> Result<Vec<String>, TakeOverError> {
    let section = &settings.section;
    match client.api() {
        ApiKind::Config if one || settings.workspace.is_some() => {
            match crate::pipeline::find_workspace(client, settings.workspace.as_deref()).await {
                Ok(found) => Ok(vec![found.workspace_id]),
                Err(PipelineError::Airbyte(source)) => Err(TakeOverError::Airbyte {
                    instance: instance.to_owned(),
                    doing: "could not list its workspaces".into(),
                    source: Box::new(source),
                }),
                Err(other) => Err(TakeOverError::Workspace {
                    instance: instance.to_owned(),
                    message: other
                        .to_string()
                        .replace("[airbyte]", &format!("[{section}]")),
                }),
            }
        }
        ApiKind::Config => client
            .list_workspaces()
            .await
            .map(|list| list.into_iter().map(|w| w.workspace_id).collect())
            .map_err(|source| TakeOverError::Airbyte {
                instance: instance.to_owned(),
                doing: "could not list its workspaces".into(),
                source: Box::new(source),
            }),
        ApiKind::Public => match settings.workspace.as_deref() {
            None => Ok(Vec::new()),
            Some(given) => match uuid::Uuid::parse_str(given.trim()) {
                Ok(id) => Ok(vec![id.hyphenated().to_string()]),
                Err(_) => Err(TakeOverError::Workspace {
                    instance: instance.to_owned(),
                    message: format!(
                        "{section}.workspace = {given:?}: on the public API give the \
                         workspace's id (a UUID), not its name"
                    ),
                }),
            },
        },
    }
}

/// Every connection of `instance` and how Airbyte schedules it, in the workspaces
/// [`workspaces`] chooses.
pub(crate) async fn airbyte_schedules(
    instance: &str,
    settings: &AirbyteSettings,
    client: &Client,
    one_workspace: bool,
) -> Result<Vec<airbyte::ConnectionSchedule>, TakeOverError> {
    let ids = workspaces(instance, settings, client, one_workspace).await?;
    let mut found =
        client
            .connection_schedules(&ids)
            .await
            .map_err(|source| TakeOverError::Airbyte {
                instance: instance.to_owned(),
                doing: "could not list its connections".into(),
                source: Box::new(source),
            })?;
    // A deleted connection is gone for good; old servers may still list it.
    found.retain(|c| c.status != "deprecated");
    Ok(found)
}

/// The config's connections on `instance` among Airbyte's connections `found`, by Airbyte
/// id. A connection given by `connection_id` is found by it; a declared one whose id is not
/// resolved yet, by its name, as `cronbyte apply` and the daemon find it (a name two of
/// Airbyte's connections share finds neither).
pub(crate) fn configured<'a>(
    config: &'a Config,
    instance: &str,
    found: &[airbyte::ConnectionSchedule],
) -> HashMap<String, &'a ConnectionSettings> {
    let mut out = HashMap::new();
    for connection in config.connections.iter().filter(|c| c.instance == instance) {
        if !connection.connection_id.is_empty() {
            out.insert(connection.connection_id.clone(), connection);
            continue;
        }
        let mut named = found.iter().filter(|f| f.name == connection.name);
        if let (Some(one), None) = (named.next(), named.next()) {
            out.insert(one.connection_id.clone(), connection);
        }
    }
    out
}

/// How the config schedules a connection, if it does: its cron rule, its `after`
/// connections, or both. `None` for a disabled connection or one with neither.
pub fn scheduled_by(connection: &ConnectionSettings) -> Option<String> {
    if !connection.enabled {
        return None;
    }
    let rule = connection
        .cron
        .as_ref()
        .map(|rule| format!("cron {:?} in {}", rule.expr(), rule.timezone().name()));
    let after = (!connection.after.is_empty()).then(|| {
        let names: Vec<String> = connection.after.iter().map(|n| format!("{n:?}")).collect();
        format!("after {}", names.join(", "))
    });
    match (rule, after) {
        (Some(rule), Some(after)) => Some(format!("{rule}, and {after}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => None,
    }
}

/// Every secret of the config that an output could carry, for scrubbing: the declared
/// connectors' (as `plan` scrubs them) and each instance's credentials.
pub(crate) fn secrets(config: &Config) -> Vec<String> {
    use secrecy::ExposeSecret;
    let mut out = crate::pipeline::secrets(config);
    for settings in config.instances.values() {
        let secret = match &settings.auth {
            airbyte::Auth::None => None,
            airbyte::Auth::Basic { password, .. } => Some(password),
            airbyte::Auth::Bearer { token } => Some(token),
            airbyte::Auth::ClientCredentials { client_secret, .. } => Some(client_secret),
        };
        if let Some(secret) = secret.map(|s| s.expose_secret().to_owned())
            && secret.chars().count() >= 4
        {
            out.push(secret);
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every one of `secrets` replaced by `(secret)`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    crate::pipeline::scrub(text, secrets)
}
