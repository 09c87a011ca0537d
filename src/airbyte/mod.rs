//! The Airbyte client: every HTTP call cronbyte makes to Airbyte goes through here.

pub mod auth;
pub mod client;
pub mod error;
pub mod model;
pub mod schedule;

pub use auth::Auth;
pub use client::{Client, ClientSettings, RequestObserver, RetryPolicy};
pub use error::Error;
pub use model::{Job, JobStatus};
pub use schedule::{AirbyteSchedule, BasicUnit, ConnectionSchedule};

/// Which of Airbyte's two HTTP APIs the client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// The internal Config API: `POST {base}/connections/sync`, `POST {base}/jobs/get`, ...
    /// with a base such as `http://localhost:8001/api/v1`.
    #[default]
    Config,
    /// The public API: `POST {base}/jobs`, `GET {base}/jobs/{id}`, ... with a base such as
    /// `https://api.airbyte.com/v1` or `http://HOST:8000/api/public/v1`.
    Public,
}
