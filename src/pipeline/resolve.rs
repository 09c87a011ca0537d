//! The ids of declared connections, found by name in Airbyte, so the daemon can trigger a
//! connection that `cronbyte apply` created.

use super::PipelineError;
use super::workspace::{self, by_name};
use crate::airbyte::Client;
use crate::config::Config;

/// Sets the `connection_id` of every declared connection on `instance` that has none yet
/// to the id of the Airbyte connection of that name in the instance's workspace. A declared
/// connection Airbyte does not have is an error naming it (all of them at once): `cronbyte
/// apply` has to create it first. Makes no request when no connection needs resolving.
pub async fn resolve_connection_ids(
    client: &Client,
    instance: &str,
    config: &mut Config,
) -> Result<(), PipelineError> {
    let pending: Vec<usize> = config
        .connections
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.instance == instance && c.declared.is_some() && c.connection_id.is_empty()
        })
        .map(|(i, _)| i)
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let workspace_setting = config
        .instances
        .get(instance)
        .and_then(|settings| settings.workspace.clone());
    let workspace = workspace::find(client, workspace_setting.as_deref()).await?;
    let existing = client.list_connections(&workspace.workspace_id).await?;
    let mut missing = Vec::new();
    for i in pending {
        let connection = &mut config.connections[i];
        let found = by_name(
            &existing,
            &connection.name,
            |c| &c.name,
            |c| &c.connection_id,
            "connection",
        )?;
        match found {
            Some(found) => {
                tracing::debug!(connection = %connection.name, id = %found.connection_id,
                    "declared connection resolved");
                connection.connection_id = found.connection_id.to_ascii_lowercase();
            }
            None => missing.push(connection.name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PipelineError::NotApplied {
            names: missing,
            workspace: workspace.name,
        })
    }
}
