//! Pipelines as code: the `[[sources]]`, `[[destinations]]` and declared `[[connections]]`
//! of the config, made to exist in Airbyte, found again by name on every run.
//!
//! [`build_plan`] reads Airbyte's current state and compares it with the declarations,
//! object by object and field by field; [`apply_plan`] creates and updates what differs,
//! checking each connector and refusing streams the source does not have before it writes a
//! connection. Applying twice changes nothing the second time: objects are matched by name
//! in the workspace, and an update is sent only when a declared field differs. Secrets are
//! masked in everything shown. [`resolve_connection_ids`] gives the daemon the ids of
//! declared connections; [`command`] is what `cronbyte plan` and `cronbyte apply` run.

mod apply;
mod catalog;
pub mod command;
mod diff;
mod plan;
mod render;
mod resolve;
mod workspace;

pub use apply::{Applied, ApplyOptions, apply_plan};
pub use command::{EXIT_CHANGES, EXIT_FAILURE, EXIT_NO_CHANGES, apply, plan, run_apply, run_plan};
pub use plan::{Action, Change, FieldChange, ObjectKind, Plan, build_plan};
pub use render::render_plan;
pub use resolve::resolve_connection_ids;

pub(crate) use render::{scrub, secrets};
pub(crate) use workspace::find as find_workspace;

use crate::airbyte;
use crate::store::StoreError;

/// Why a plan or an apply could not go on. Messages name objects and fields, never a
/// configuration value.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Airbyte refused a request or could not be reached.
    #[error(transparent)]
    Airbyte(#[from] airbyte::Error),

    /// Setting pipelines up uses the Config API only.
    #[error(
        "pipelines are set up through Airbyte's Config API: set [airbyte].api = \"config\" and \
         base_url to it (e.g. http://localhost:8000/api/v1)"
    )]
    NeedsConfigApi,

    /// The workspace could not be told.
    #[error("{0}")]
    Workspace(String),

    /// A `definition` names no connector Airbyte has.
    #[error("{kind} {name:?}: Airbyte has no {kind} definition {definition:?}{hint}")]
    Definition {
        kind: &'static str,
        name: String,
        definition: String,
        hint: String,
    },

    /// Airbyte holds something the declarations cannot be reconciled with by an update.
    #[error("{0}")]
    Conflict(String),

    /// A connector's `check_connection` failed: the connector's own message.
    #[error("{kind} {name:?} failed its connection check: {message}")]
    CheckFailed {
        kind: &'static str,
        name: String,
        message: String,
    },

    /// The source's schema could not be discovered.
    #[error("source {source_name:?}: discovering its schema failed: {message}")]
    Discover {
        source_name: String,
        message: String,
    },

    /// Declared streams or fields the discovered schema does not have.
    #[error("connection {connection:?}: {}", problems.join("; "))]
    Streams {
        connection: String,
        problems: Vec<String>,
    },

    /// Declared connections that do not exist in Airbyte yet.
    #[error(
        "declared connection(s) {} not found in Airbyte workspace {workspace:?}: run `cronbyte \
         apply` to create them",
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    )]
    NotApplied {
        names: Vec<String>,
        workspace: String,
    },

    /// Deleting was asked for (`--prune`) but not confirmed.
    #[error("nothing was deleted: {0}")]
    NotConfirmed(String),

    #[error(transparent)]
    Store(#[from] StoreError),

    /// Writing the output failed (a closed pipe, say).
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
}
