//! A run: one sync of one connection, from the tick (or operator, retry or
//! dependency) that asked for it to the end of its Airbyte job. These are the
//! words the engine, the store, the metrics and the notices share.
//!
//! A run's life, as the store records it (each arrow one write; the guarded ones
//! name the status they expect and say whether they applied):
//!
//! ```text
//! claim (unique on connection + instant for schedule and dependency runs)
//!   |
//!   v
//! pending --(its sync started; only from pending)--> running --(the job ended)--> succeeded
//!   |                                                                            failed
//!   +--(not started on purpose)--> skipped                                       cancelled
//!   +--(Airbyte would not start it)--> trigger_failed                            timed_out
//!   +--(cancelled waiting for a slot, or no job came of a cancelled request)--> cancelled
//! ```
//!
//! Closing a run also claims, in the same transaction, what its outcome sets
//! off: the retry of a failed run (pending, due after its backoff) and the runs
//! of connections that wait on a succeeded one (`after`). A run queued behind
//! another (`on_overlap = "queue"`) is claimed already and waits `pending`.
//!
//! A cancel asked while the sync is being requested sets `cancel_requested_at`;
//! the run keeps its slot until Airbyte answers, then either runs on until its job,
//! cancelled in Airbyte, ends `cancelled` with the job named, or ends `cancelled`
//! without a job.
//!
//! `pending` and `running` are open; every other status is final, and an outcome
//! is written once (closing a run that is no longer open changes nothing).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A text that names none of a type's values (a trigger or status the store
/// holds, written by another build).
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{text}`")]
pub struct UnknownText {
    pub kind: &'static str,
    pub text: String,
}

/// Why a run was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A cron tick (or the catch-up run for ticks missed while down).
    Schedule,
    /// An operator asked for it.
    Manual,
    /// A failed run tried again.
    Retry,
    /// The connections this one runs `after` all succeeded since its last run.
    Dependency,
}

/// Where a run stands. `Pending` and `Running` are open; the rest are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Claimed, the sync not yet (known to be) started.
    Pending,
    /// Airbyte runs its job; the run follows it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Cancelled by cronbyte because it ran past its timeout.
    TimedOut,
    /// Not started, on purpose (a sync was already running, say).
    Skipped,
    /// Airbyte would not start the sync.
    TriggerFailed,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownText;
            fn from_str(s: &str) -> Result<Self, UnknownText> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownText {
                        kind: stringify!($ty),
                        text: other.to_owned(),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Trigger {
    Schedule => "schedule",
    Manual => "manual",
    Retry => "retry",
    Dependency => "dependency",
});
text_enum!(RunStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
    TimedOut => "timed_out",
    Skipped => "skipped",
    TriggerFailed => "trigger_failed",
});

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
        Self::Skipped,
        Self::TriggerFailed,
    ];

    pub fn is_open(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// A run about to be claimed.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub connection: String,
    pub connection_id: String,
    /// The Airbyte instance the connection lives on: job ids are unique only within one.
    pub instance: String,
    pub trigger: Trigger,
    /// The tick it is for; for a retry, when it is due. Claims of `Schedule` and
    /// `Dependency` runs are unique on (connection, scheduled_for).
    pub scheduled_for: DateTime<Utc>,
    /// For a retry, the first run of the chain.
    pub retry_of: Option<i64>,
    /// Now, by the engine's clock: Airbyte's job times are compared with it.
    pub claimed_at: DateTime<Utc>,
}

/// A run as the history holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub id: i64,
    pub connection: String,
    pub connection_id: String,
    /// The Airbyte instance its job is on.
    pub instance: String,
    pub trigger: Trigger,
    pub scheduled_for: DateTime<Utc>,
    pub claimed_at: DateTime<Utc>,
    /// When the sync request was answered with a job.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub job_id: Option<i64>,
    pub attempts: u32,
    pub records_synced: Option<u64>,
    pub bytes_synced: Option<u64>,
    pub error: Option<String>,
    pub retry_of: Option<i64>,
    /// When an operator asked to cancel it while its sync was being requested.
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

/// What is known of a run's job while it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub attempts: u32,
    pub records_synced: Option<u64>,
    pub bytes_synced: Option<u64>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: RunStatus,
    pub finished_at: DateTime<Utc>,
    pub progress: Progress,
    pub error: Option<String>,
}
