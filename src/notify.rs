//! Failure notices: a webhook POST (generic JSON, or Slack's incoming-webhook
//! format) when a run fails, times out or cannot be triggered, and when a
//! failing connection recovers. Notices queue to a background task and are
//! retried there; a slow or dead receiver never holds the engine up.

use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::run::{Run, RunStatus};

/// Notices waiting to be sent; beyond this, new ones are dropped (and logged).
const QUEUE: usize = 1_000;

/// Tries per notice and receiver.
const TRIES: u32 = 4;

/// The shape of the body a receiver expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// `{"event": ..., "connection": ..., "run_id": ..., ...}`
    #[default]
    Generic,
    /// `{"text": ...}` for a Slack incoming webhook.
    Slack,
}

/// Which run endings are worth a notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    Failed,
    TimedOut,
    TriggerFailed,
    /// The first success after one or more failures.
    Recovered,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 4] = [
        Self::Failed,
        Self::TimedOut,
        Self::TriggerFailed,
        Self::Recovered,
    ];

    fn as_str(&self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::TriggerFailed => "trigger_failed",
            Self::Recovered => "recovered",
        }
    }

    /// The event a run's end is, given whether its connection was failing before.
    pub fn of(status: RunStatus, was_failing: bool) -> Option<Self> {
        match status {
            RunStatus::Failed => Some(Self::Failed),
            RunStatus::TimedOut => Some(Self::TimedOut),
            RunStatus::TriggerFailed => Some(Self::TriggerFailed),
            RunStatus::Succeeded if was_failing => Some(Self::Recovered),
            _ => None,
        }
    }
}

/// One `[[notify]]` receiver. The URL is a secret: Slack's carries its token.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    pub url: SecretString,
    pub kind: NotifyKind,
    pub on: Vec<NotifyEvent>,
    pub timeout: Duration,
}

/// Queues notices for the sender task. Cheap to clone; with no receivers
/// configured it queues nothing.
#[derive(Clone, Debug)]
pub struct Notifier {
    queue: mpsc::Sender<(NotifyEvent, Run)>,
    /// The receivers in force; a reload replaces them, and the sender task reads
    /// them for each notice.
    receivers: Arc<watch::Sender<Arc<Vec<NotifySettings>>>>,
}

impl Default for Notifier {
    /// A notifier with no receivers and no sender task, for an engine that sends no
    /// notices (tests); receivers set on it later would find the queue closed.
    fn default() -> Self {
        let (queue, _) = mpsc::channel(1);
        let (receivers, _) = watch::channel(Arc::new(Vec::new()));
        Self {
            queue,
            receivers: Arc::new(receivers),
        }
    }
}

impl Notifier {
    /// Starts the sender task for `receivers`; it stops at `shutdown`.
    pub fn start(receivers: Vec<NotifySettings>, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (receivers, watched) = watch::channel(Arc::new(receivers));
        tokio::spawn(send_all(watched, rx, shutdown));
        Self {
            queue: tx,
            receivers: Arc::new(receivers),
        }
    }

    /// Sends later notices to `receivers` instead; notices queued before go to
    /// the receivers in force when they are sent.
    pub fn set_receivers(&self, receivers: Vec<NotifySettings>) {
        self.receivers.send_replace(Arc::new(receivers));
    }

    /// Queues a notice about `run`, never waiting.
    pub fn notify(&self, event: NotifyEvent, run: &Run) {
        if !self
            .receivers
            .borrow()
            .iter()
            .any(|r| r.on.contains(&event))
        {
            return;
        }
        if self.queue.try_send((event, run.clone())).is_err() {
            tracing::warn!(connection = %run.connection, run_id = run.id, event = event.as_str(),
                "notice dropped: the notice queue is full or closed");
        }
    }
}

async fn send_all(
    receivers: watch::Receiver<Arc<Vec<NotifySettings>>>,
    mut queue: mpsc::Receiver<(NotifyEvent, Run)>,
    shutdown: CancellationToken,
) {
    crate::tls::install();
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot send notices");
            return;
        }
    };
    loop {
        let (event, run) = tokio::select! {
            () = shutdown.cancelled() => return,
            next = queue.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let receivers = Arc::clone(&receivers.borrow());
        for receiver in receivers.iter().filter(|r| r.on.contains(&event)) {
            deliver(
                &http,
                receiver,
                &body(receiver.kind, event, &run),
                &run,
                event,
            )
            .await;
        }
    }
}

/// POSTs one notice, retrying with backoff on failure.
async fn deliver(
    http: &reqwest::Client,
    receiver: &NotifySettings,
    body: &Value,
    run: &Run,
    event: NotifyEvent,
) {
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=TRIES {
        let sent = http
            .post(receiver.url.expose_secret())
            .timeout(receiver.timeout)
            .json(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => format!("answered {}", response.status()),
            // Never the URL: it may carry a token.
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(connection = %run.connection, run_id = run.id, event = event.as_str(),
            attempt, error = %failure, "could not deliver a notice");
        if attempt < TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
}

/// The notice's body in the receiver's format.
pub fn body(kind: NotifyKind, event: NotifyEvent, run: &Run) -> Value {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    };
    match kind {
        NotifyKind::Generic => json!({
            "event": event.as_str(),
            "connection": run.connection,
            "connection_id": run.connection_id,
            "run_id": run.id,
            "job_id": run.job_id,
            "trigger": run.trigger.as_str(),
            "status": run.status.as_str(),
            "scheduled_for": time(Some(run.scheduled_for)),
            "finished_at": time(run.finished_at),
            "attempts": run.attempts,
            "records_synced": run.records_synced,
            "bytes_synced": run.bytes_synced,
            "error": run.error,
        }),
        NotifyKind::Slack => {
            let headline = match event {
                NotifyEvent::Recovered => {
                    format!(":white_check_mark: *{}* recovered", run.connection)
                }
                _ => format!(
                    ":x: *{}* {}",
                    run.connection,
                    run.status.as_str().replace('_', " ")
                ),
            };
            let mut text = format!("{headline} (run {}", run.id);
            if let Some(job) = run.job_id {
                text.push_str(&format!(", Airbyte job {job}"));
            }
            text.push(')');
            if let Some(error) = &run.error {
                text.push_str(&format!("\n> {error}"));
            }
            json!({ "text": text })
        }
    }
}
