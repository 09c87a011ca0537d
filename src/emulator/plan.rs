//! Job plans (what a job of the emulator will do) and the pure lifecycle that turns a plan
//! plus the time elapsed since the job was created into the job's current state.
//!
//! Nothing here runs in the background: a job's state is recomputed from elapsed time every
//! time it is read, so thousands of jobs cost nothing while nobody looks at them.

use std::time::Duration;

/// How long a job stays `pending` unless its plan says otherwise.
const DEFAULT_PENDING: Duration = Duration::from_millis(200);

/// Long enough to outlive any test or demo, short enough that offsets added to it never
/// overflow an `i64` of epoch milliseconds.
const HANGING_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What one job will do, attempt by attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPlan {
    /// How long the job waits before each attempt starts. Before the first attempt the job is
    /// `pending`; before a retry it is `incomplete` (Airbyte's back-off between attempts).
    pub pending_for: Duration,
    /// The attempts in order. Attempts after the first successful one never run.
    pub attempts: Vec<AttemptPlan>,
}

/// What one attempt of a job will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptPlan {
    /// How long the attempt runs before it ends with `outcome`.
    pub duration: Duration,
    /// How the attempt ends.
    pub outcome: AttemptOutcome,
    /// Records a successful attempt has committed by its end; they grow linearly while it runs.
    pub records: u64,
    /// Bytes a successful attempt has committed by its end; they grow linearly while it runs.
    pub bytes: u64,
}

/// How an attempt ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The attempt succeeds, and with it the job.
    Succeed,
    /// The attempt fails with this message (the failure's `externalMessage`).
    Fail { message: String },
}

impl JobPlan {
    /// One attempt that runs for `duration` and succeeds with these counts.
    pub fn succeeding(duration: Duration, records: u64, bytes: u64) -> Self {
        Self {
            pending_for: DEFAULT_PENDING,
            attempts: vec![AttemptPlan::succeeding(duration, records, bytes)],
        }
    }

    /// One attempt that runs for `duration` and fails with `message`.
    pub fn failing(duration: Duration, message: impl Into<String>) -> Self {
        Self {
            pending_for: DEFAULT_PENDING,
            attempts: vec![AttemptPlan::failing(duration, message)],
        }
    }

    /// One attempt that runs for about a century: the job stays `running` until it is
    /// cancelled (or `finish_all_jobs` makes it succeed).
    pub fn hanging() -> Self {
        Self {
            pending_for: DEFAULT_PENDING,
            attempts: vec![AttemptPlan::succeeding(HANGING_DURATION, 1_000, 250_000)],
        }
    }

    /// The same plan with another wait before each attempt.
    pub fn pending_for(mut self, pending_for: Duration) -> Self {
        self.pending_for = pending_for;
        self
    }

    /// The same plan with one more attempt at the end.
    pub fn then(mut self, attempt: AttemptPlan) -> Self {
        self.attempts.push(attempt);
        self
    }
}

impl Default for JobPlan {
    /// One attempt of 2 s that succeeds with 1,000 records and 250,000 bytes, after 200 ms
    /// of `pending`.
    fn default() -> Self {
        Self::succeeding(Duration::from_secs(2), 1_000, 250_000)
    }
}

impl AttemptPlan {
    /// An attempt that succeeds after `duration` with these counts.
    pub fn succeeding(duration: Duration, records: u64, bytes: u64) -> Self {
        Self {
            duration,
            outcome: AttemptOutcome::Succeed,
            records,
            bytes,
        }
    }

    /// An attempt that fails after `duration` with `message`, having emitted nothing.
    pub fn failing(duration: Duration, message: impl Into<String>) -> Self {
        Self {
            duration,
            outcome: AttemptOutcome::Fail {
                message: message.into(),
            },
            records: 0,
            bytes: 0,
        }
    }
}

/// `JobStatus` as the Config API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum JobStatus {
    Pending,
    Running,
    Incomplete,
    Failed,
    Succeeded,
    Cancelled,
}

impl JobStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Cancelled => "cancelled",
        }
    }

    /// Accepts every spelling of the spec's enum, including `queued`, which the emulator
    /// never produces but clients may filter on.
    pub(crate) fn parse(s: &str) -> Option<Option<Self>> {
        Some(Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "incomplete" => Self::Incomplete,
            "failed" => Self::Failed,
            "succeeded" => Self::Succeeded,
            "cancelled" => Self::Cancelled,
            "queued" => return Some(None),
            _ => return None,
        }))
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Succeeded | Self::Cancelled)
    }
}

/// `AttemptStatus` as the API spells it: there is no `cancelled` attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptStatus {
    Running,
    Failed,
    Succeeded,
}

impl AttemptStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
        }
    }
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The plan said so; the message is the plan's.
    Planned(String),
    /// The job was cancelled while this attempt ran.
    Cancelled,
}

/// How a job was cut short, as an offset from its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Cancelled at this offset.
    Cancelled(Duration),
    /// `finish_all_jobs` at this offset: everything still to come happens at once.
    Finished(Duration),
}

/// Record and byte counts of one attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) records_emitted: u64,
    pub(crate) bytes_emitted: u64,
    pub(crate) records_committed: u64,
    pub(crate) bytes_committed: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: &Counts) {
        self.records_emitted += other.records_emitted;
        self.bytes_emitted += other.bytes_emitted;
        self.records_committed += other.records_committed;
        self.bytes_committed += other.bytes_committed;
    }
}

/// One attempt as it stands; offsets are from the job's creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttemptView {
    pub(crate) number: usize,
    pub(crate) started: Duration,
    pub(crate) ended: Option<Duration>,
    pub(crate) status: AttemptStatus,
    pub(crate) counts: Counts,
    pub(crate) failure: Option<Failure>,
}

/// A job as it stands at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobView {
    pub(crate) status: JobStatus,
    /// When the status last changed or an attempt last started or ended.
    pub(crate) updated: Duration,
    pub(crate) attempts: Vec<AttemptView>,
}

impl JobView {
    pub(crate) fn totals(&self) -> Counts {
        let mut total = Counts::default();
        for attempt in &self.attempts {
            total.add(&attempt.counts);
        }
        total
    }
}

/// `part / whole` of `amount`, without overflow and without floating point.
fn share(amount: u64, part: Duration, whole: Duration) -> u64 {
    if whole.is_zero() || part >= whole {
        return amount;
    }
    let scaled = u128::from(amount) * part.as_nanos() / whole.as_nanos();
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// Counts of an attempt that has been running for `ran` out of its planned duration.
/// Commits trail the records emitted, in steps of a tenth, the way destinations commit
/// at state checkpoints.
fn running_counts(plan: &AttemptPlan, ran: Duration) -> Counts {
    let tenths_done = if plan.duration.is_zero() {
        10
    } else {
        u128::min(10, ran.as_nanos() * 10 / plan.duration.as_nanos())
    };
    let checkpoint =
        |amount: u64| u64::try_from(u128::from(amount) * tenths_done / 10).unwrap_or(u64::MAX);
    Counts {
        records_emitted: share(plan.records, ran, plan.duration),
        bytes_emitted: share(plan.bytes, ran, plan.duration),
        records_committed: checkpoint(plan.records),
        bytes_committed: checkpoint(plan.bytes),
    }
}

/// A failed attempt keeps what it emitted but commits nothing.
fn failed_counts(plan: &AttemptPlan, ran: Duration) -> Counts {
    Counts {
        records_emitted: share(plan.records, ran, plan.duration),
        bytes_emitted: share(plan.bytes, ran, plan.duration),
        records_committed: 0,
        bytes_committed: 0,
    }
}

fn succeeded_counts(plan: &AttemptPlan) -> Counts {
    Counts {
        records_emitted: plan.records,
        bytes_emitted: plan.bytes,
        records_committed: plan.records,
        bytes_committed: plan.bytes,
    }
}

/// The state of a job that follows `plan`, `now` after it was created.
pub(crate) fn evaluate(plan: &JobPlan, now: Duration, ending: Option<Ending>) -> JobView {
    let finished_at = match ending {
        Some(Ending::Finished(at)) => Some(at),
        _ => None,
    };
    let cancelled_at = match ending {
        Some(Ending::Cancelled(at)) if at <= now => Some(at),
        _ => None,
    };
    // After `finish_all_jobs`, whatever was still to come happens at that very instant.
    let clamp = |t: Duration| finished_at.map_or(t, |f| t.min(f));
    let view = |status, updated, attempts| JobView {
        status,
        updated,
        attempts,
    };

    let mut attempts = Vec::with_capacity(plan.attempts.len());
    let mut next_start = clamp(plan.pending_for);
    let mut waiting = JobStatus::Pending;
    let mut last_event = Duration::ZERO;

    for (number, attempt) in plan.attempts.iter().enumerate() {
        let started = next_start;
        if let Some(at) = cancelled_at.filter(|at| *at < started) {
            return view(JobStatus::Cancelled, at, attempts);
        }
        if now < started {
            return view(waiting, last_event, attempts);
        }
        let ended = clamp(started.saturating_add(attempt.duration));
        if let Some(at) = cancelled_at.filter(|at| *at < ended) {
            attempts.push(AttemptView {
                number,
                started,
                ended: Some(at),
                status: AttemptStatus::Failed,
                counts: failed_counts(attempt, at - started),
                failure: Some(Failure::Cancelled),
            });
            return view(JobStatus::Cancelled, at, attempts);
        }
        if now < ended {
            attempts.push(AttemptView {
                number,
                started,
                ended: None,
                status: AttemptStatus::Running,
                counts: running_counts(attempt, now - started),
                failure: None,
            });
            return view(JobStatus::Running, started, attempts);
        }
        match &attempt.outcome {
            AttemptOutcome::Succeed => {
                attempts.push(AttemptView {
                    number,
                    started,
                    ended: Some(ended),
                    status: AttemptStatus::Succeeded,
                    counts: succeeded_counts(attempt),
                    failure: None,
                });
                return view(JobStatus::Succeeded, ended, attempts);
            }
            AttemptOutcome::Fail { message } => {
                attempts.push(AttemptView {
                    number,
                    started,
                    ended: Some(ended),
                    status: AttemptStatus::Failed,
                    counts: failed_counts(attempt, attempt.duration),
                    failure: Some(Failure::Planned(message.clone())),
                });
                if number + 1 == plan.attempts.len() {
                    return view(JobStatus::Failed, ended, attempts);
                }
                waiting = JobStatus::Incomplete;
                last_event = ended;
                next_start = clamp(ended.saturating_add(plan.pending_for));
            }
        }
    }

    // A plan without attempts: the job succeeds, empty-handed, when it would have started.
    if let Some(at) = cancelled_at.filter(|at| *at < next_start) {
        return view(JobStatus::Cancelled, at, attempts);
    }
    if now < next_start {
        return view(JobStatus::Pending, Duration::ZERO, attempts);
    }
    view(JobStatus::Succeeded, next_start, attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn retrying_plan() -> JobPlan {
        JobPlan::failing(ms(1_000), "Postgres went away")
            .pending_for(ms(500))
            .then(AttemptPlan::succeeding(ms(2_000), 100, 1_000))
    }

    #[test]
    fn a_new_job_is_pending_without_attempts() {
        let view = evaluate(&JobPlan::default(), ms(100), None);
        assert_eq!(view.status, JobStatus::Pending);
        assert_eq!(view.updated, Duration::ZERO);
        assert!(view.attempts.is_empty());
    }

    #[test]
    fn a_job_runs_its_first_attempt_once_pending_is_over() {
        let view = evaluate(&JobPlan::default(), ms(1_200), None);
        assert_eq!(view.status, JobStatus::Running);
        assert_eq!(view.updated, ms(200));
        assert_eq!(view.attempts.len(), 1);
        assert_eq!(view.attempts[0].status, AttemptStatus::Running);
        assert_eq!(view.attempts[0].ended, None);
    }

    #[test]
    fn records_grow_linearly_and_commits_trail_in_tenths() {
        // Default plan: 1,000 records over 2 s after 200 ms; 1.2 s in is 50 % done.
        let view = evaluate(&JobPlan::default(), ms(1_200), None);
        let counts = view.attempts[0].counts;
        assert_eq!(counts.records_emitted, 500);
        assert_eq!(counts.bytes_emitted, 125_000);
        assert_eq!(counts.records_committed, 500);
        let view = evaluate(&JobPlan::default(), ms(1_350), None);
        let counts = view.attempts[0].counts;
        assert_eq!(counts.records_emitted, 575);
        assert_eq!(counts.records_committed, 500);
    }

    #[test]
    fn a_successful_attempt_commits_everything_it_planned() {
        let view = evaluate(&JobPlan::default(), ms(5_000), None);
        assert_eq!(view.status, JobStatus::Succeeded);
        assert_eq!(view.updated, ms(2_200));
        assert_eq!(view.attempts[0].status, AttemptStatus::Succeeded);
        assert_eq!(view.attempts[0].ended, Some(ms(2_200)));
        assert_eq!(view.totals().records_committed, 1_000);
        assert_eq!(view.totals().bytes_committed, 250_000);
    }

    #[test]
    fn a_failed_attempt_that_is_not_the_last_leaves_the_job_incomplete_until_the_retry() {
        let plan = retrying_plan();
        // Attempt 0 runs 500..1500 ms and fails; the retry waits 500 ms more.
        let view = evaluate(&plan, ms(1_700), None);
        assert_eq!(view.status, JobStatus::Incomplete);
        assert_eq!(view.updated, ms(1_500));
        assert_eq!(view.attempts.len(), 1);
        assert_eq!(view.attempts[0].status, AttemptStatus::Failed);
        assert_eq!(
            view.attempts[0].failure,
            Some(Failure::Planned("Postgres went away".into()))
        );

        let view = evaluate(&plan, ms(2_100), None);
        assert_eq!(view.status, JobStatus::Running);
        assert_eq!(view.updated, ms(2_000));
        assert_eq!(view.attempts.len(), 2);
        assert_eq!(view.attempts[1].number, 1);
        assert_eq!(view.attempts[1].started, ms(2_000));

        let view = evaluate(&plan, ms(10_000), None);
        assert_eq!(view.status, JobStatus::Succeeded);
        assert_eq!(view.updated, ms(4_000));
        assert_eq!(view.totals().records_committed, 100);
    }

    #[test]
    fn the_last_failed_attempt_fails_the_job_and_commits_nothing() {
        let plan = JobPlan {
            pending_for: Duration::ZERO,
            attempts: vec![AttemptPlan {
                duration: ms(1_000),
                outcome: AttemptOutcome::Fail {
                    message: "boom".into(),
                },
                records: 40,
                bytes: 400,
            }],
        };
        let view = evaluate(&plan, ms(1_000), None);
        assert_eq!(view.status, JobStatus::Failed);
        assert_eq!(view.updated, ms(1_000));
        let counts = view.totals();
        assert_eq!(counts.records_emitted, 40);
        assert_eq!(counts.records_committed, 0);
        assert_eq!(counts.bytes_committed, 0);
    }

    #[test]
    fn cancelling_a_running_job_fails_its_attempt_as_a_manual_cancellation() {
        let plan = JobPlan::hanging();
        let view = evaluate(&plan, ms(9_000), Some(Ending::Cancelled(ms(3_000))));
        assert_eq!(view.status, JobStatus::Cancelled);
        assert_eq!(view.updated, ms(3_000));
        assert_eq!(view.attempts.len(), 1);
        assert_eq!(view.attempts[0].status, AttemptStatus::Failed);
        assert_eq!(view.attempts[0].ended, Some(ms(3_000)));
        assert_eq!(view.attempts[0].failure, Some(Failure::Cancelled));
        assert_eq!(view.totals().records_committed, 0);
    }

    #[test]
    fn cancelling_a_pending_job_creates_no_attempt() {
        let plan = JobPlan::default().pending_for(ms(10_000));
        let view = evaluate(&plan, ms(20_000), Some(Ending::Cancelled(ms(1_000))));
        assert_eq!(view.status, JobStatus::Cancelled);
        assert_eq!(view.updated, ms(1_000));
        assert!(view.attempts.is_empty());
    }

    #[test]
    fn cancelling_between_attempts_starts_no_retry() {
        let view = evaluate(
            &retrying_plan(),
            ms(9_000),
            Some(Ending::Cancelled(ms(1_700))),
        );
        assert_eq!(view.status, JobStatus::Cancelled);
        assert_eq!(view.attempts.len(), 1);
        assert_eq!(
            view.attempts[0].failure,
            Some(Failure::Planned("Postgres went away".into()))
        );
    }

    #[test]
    fn finishing_a_hanging_job_makes_it_succeed_at_once_with_its_planned_counts() {
        let view = evaluate(
            &JobPlan::hanging(),
            ms(5_000),
            Some(Ending::Finished(ms(5_000))),
        );
        assert_eq!(view.status, JobStatus::Succeeded);
        assert_eq!(view.updated, ms(5_000));
        assert_eq!(view.totals().records_committed, 1_000);
    }

    #[test]
    fn finishing_a_pending_job_runs_every_planned_attempt_at_that_instant() {
        let view = evaluate(&retrying_plan(), ms(100), Some(Ending::Finished(ms(100))));
        assert_eq!(view.status, JobStatus::Succeeded);
        assert_eq!(view.attempts.len(), 2);
        assert!(view.attempts.iter().all(|a| a.started == ms(100)));
        assert_eq!(view.attempts[0].status, AttemptStatus::Failed);
        assert_eq!(view.attempts[1].status, AttemptStatus::Succeeded);
    }

    #[test]
    fn a_plan_without_attempts_succeeds_when_pending_is_over() {
        let plan = JobPlan {
            pending_for: ms(100),
            attempts: Vec::new(),
        };
        assert_eq!(evaluate(&plan, ms(50), None).status, JobStatus::Pending);
        assert_eq!(evaluate(&plan, ms(150), None).status, JobStatus::Succeeded);
    }

    #[test]
    fn every_spec_status_parses_and_queued_matches_nothing() {
        for status in [
            "pending",
            "running",
            "incomplete",
            "failed",
            "succeeded",
            "cancelled",
        ] {
            let parsed = JobStatus::parse(status).flatten();
            assert_eq!(parsed.map(JobStatus::as_str), Some(status));
        }
        assert_eq!(JobStatus::parse("queued"), Some(None));
        assert_eq!(JobStatus::parse("done"), None);
    }
}
