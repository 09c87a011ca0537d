//! Which workspace a pipeline lives in, and looking objects up in it by name.

use super::PipelineError;
use crate::airbyte::model::WorkspaceRead;
use crate::airbyte::{ApiKind, Client};
use crate::config::closest;

/// The workspace `wanted` names (by name or id), or the only one there is, as the seed
/// scripts take it.
pub(crate) async fn find(
    client: &Client,
    wanted: Option<&str>,
) -> Result<WorkspaceRead, PipelineError> {
    if client.api() != ApiKind::Config {
        return Err(PipelineError::NeedsConfigApi);
    }
    let mut workspaces = client.list_workspaces().await?;
    let names = || {
        workspaces
            .iter()
            .map(|w| format!("{:?}", w.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(wanted) = wanted else {
        return match workspaces.len() {
            1 => Ok(workspaces.remove(0)),
            0 => Err(PipelineError::Workspace("Airbyte has no workspace".into())),
            n => Err(PipelineError::Workspace(format!(
                "Airbyte has {n} workspaces ({}): set [airbyte].workspace to one, by name or id",
                names()
            ))),
        };
    };
    let by_id = uuid::Uuid::parse_str(wanted.trim()).ok().and_then(|id| {
        let id = id.hyphenated().to_string();
        workspaces
            .iter()
            .position(|w| w.workspace_id.eq_ignore_ascii_case(&id))
    });
    let by_name = || workspaces.iter().position(|w| w.name == wanted);
    match by_id.or_else(by_name) {
        Some(at) => Ok(workspaces.remove(at)),
        None => {
            let hint = closest(wanted, workspaces.iter().map(|w| w.name.as_str()))
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            Err(PipelineError::Workspace(format!(
                "[airbyte].workspace: Airbyte has no workspace named {wanted:?}{hint} (it has: {})",
                names()
            )))
        }
    }
}

/// The one item named `name`; two of one name is a conflict, since cronbyte could not tell
/// which one it manages.
pub(crate) fn by_name<'a, T>(
    items: &'a [T],
    name: &str,
    name_of: impl Fn(&T) -> &str,
    id_of: impl Fn(&T) -> &str,
    kind: &str,
) -> Result<Option<&'a T>, PipelineError> {
    let mut found = items.iter().filter(|item| name_of(item) == name);
    let first = found.next();
    if let (Some(first), Some(second)) = (first, found.next()) {
        return Err(PipelineError::Conflict(format!(
            "Airbyte has two {kind}s named {name:?} ({} and {}): cronbyte finds objects by name, \
             so rename or delete one of them in Airbyte",
            id_of(first),
            id_of(second)
        )));
    }
    Ok(first)
}
