//! An in-memory Airbyte server for tests, benchmarks and demos: it serves the Config API
//! (`/api/v1/...`) and the public API (`/api/public/v1/...`) with the shapes, status codes and
//! quirks of the real server, runs jobs on plans computed lazily from elapsed time, and can be
//! told to misbehave (errors, latency, malformed bodies, refused connections, expiring tokens).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use cronbyte::emulator::{Emulator, EmulatorOptions, JobPlan};
//! use std::time::Duration;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let emulator = Emulator::start(listener, EmulatorOptions::default()).await?;
//! let control = emulator.control();
//! let connection = control.add_connection("orders to warehouse");
//! control.push_plan(connection, JobPlan::failing(Duration::from_secs(1), "disk full"));
//! // ... point a client at emulator.config_api_base() ...
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api_config;
mod api_public;
mod catalog;
mod errors;
mod net;
mod plan;
mod render;
mod schedule;
mod server;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use plan::{AttemptOutcome, AttemptPlan, JobPlan};
pub use schedule::{Schedule, TimeUnit};

use net::NetControl;
use state::State;

/// How the emulator is set up when it starts.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Which generation of Config API error bodies to imitate.
    pub error_style: ErrorStyle,
    /// `true`: `POST /v1/workspaces/list` exists (Airbyte 1.6 and older); `false`: it answers
    /// 404 like 1.7 and newer.
    pub legacy_workspaces_list: bool,
    /// The plan of every job whose connection has no plan of its own.
    pub default_plan: JobPlan,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            error_style: ErrorStyle::Legacy,
            legacy_workspaces_list: true,
            default_plan: JobPlan::default(),
        }
    }
}

/// The shape of Config API error bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Airbyte 1.6 and older: `{message, exceptionClassName, exceptionStack, ...}`.
    #[default]
    Legacy,
    /// Airbyte 2.0 and newer: `{errorId}` for 400, 404, 422 and 500; `{message, errorId}`
    /// for 409.
    V2,
}

/// Which credentials the emulator demands. Health checks are always open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EmulatorAuth {
    /// Anything goes.
    #[default]
    None,
    /// HTTP basic auth, as an nginx in front of old docker-compose installs demanded.
    Basic { username: String, password: String },
    /// A fixed bearer token.
    Bearer { token: String },
    /// Tokens from `applications/token` for these credentials, valid for `token_lifetime`.
    ClientCredentials {
        client_id: String,
        client_secret: String,
        token_lifetime: Duration,
    },
}

/// Misbehaviour to inject into API answers. The default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Share of API requests (health checks excepted) answered 500, 502 or 503.
    pub error_rate: f64,
    /// The one status those errors have, instead of a random one of the three.
    pub error_status: Option<u16>,
    /// Share of those errors whose body is an HTML page, as a proxy in front would send.
    pub html_share: f64,
    /// Added to every request before it is answered.
    pub latency: Duration,
    /// Share of 200 answers whose JSON body is cut short.
    pub malformed_rate: f64,
    /// Both token endpoints answer 500.
    pub token_endpoint_fails: bool,
    /// Operations (named as [`RequestCounts`] names them, e.g. `jobs/cancel`) that
    /// answer 503 every time, as when one of Airbyte's services is down.
    pub failing_operations: Vec<String>,
    /// Operations, named as in `failing_operations`, that answer as usual until the
    /// emulator has received this many of them in all ([`EmulatorControl::requests`]
    /// counts them), then 503 every time: a service that goes down in the middle of a run.
    pub failing_operations_after: Vec<(String, u64)>,
    /// Share of API requests that are acted on (a sync started, say) but whose
    /// answer never comes, so the client times out not knowing.
    pub lost_answer_rate: f64,
    /// Added to every API request (health checks excepted) after it was acted on and
    /// before its answer goes out: a sync started whose job id the client does not have
    /// yet, for this long.
    pub answer_delay: Duration,
}

/// A job as the emulator sees it right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSnapshot {
    pub id: i64,
    pub connection_id: Uuid,
    /// `JobStatus` as the API spells it (`pending`, `running`, `incomplete`, ...).
    pub status: String,
    /// Attempts created so far.
    pub attempts: usize,
    pub records_committed: u64,
    pub bytes_committed: u64,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
    /// Epoch milliseconds, for measuring (the API itself has only seconds).
    pub created_at_ms: i64,
    /// When the job ended, in epoch milliseconds; `None` while it runs.
    pub ended_at_ms: Option<i64>,
}

/// How many requests the emulator received, in total and per operation.
///
/// Operation names are the Config API path below `/api/v1/` (`"connections/sync"`,
/// `"jobs/get"`, `"health"`, ...), `"public:METHOD /template"` for the public API
/// (`"public:POST /jobs"`, `"public:GET /jobs/{jobId}"`,
/// `"public:PATCH /connections/{connectionId}"`, ...) and `"other:METHOD /path"` for anything
/// else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    pub by_operation: BTreeMap<String, u64>,
}

impl RequestCounts {
    /// Requests received for one operation.
    pub fn get(&self, operation: &str) -> u64 {
        self.by_operation.get(operation).copied().unwrap_or(0)
    }
}

/// What the server task and the control handles share.
pub(crate) struct Shared {
    state: Mutex<State>,
    net: NetControl,
}

impl Shared {
    /// The state, even if a panicking test poisoned the lock: the emulator must keep serving
    /// the other tests' assertions.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts emulators.
pub struct Emulator;

impl Emulator {
    /// Serves the emulator on `listener` from a spawned task.
    pub async fn start(
        listener: TcpListener,
        options: EmulatorOptions,
    ) -> std::io::Result<EmulatorHandle> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(options)),
            net: NetControl::default(),
        });
        let task = server::spawn(listener, addr, Arc::clone(&shared));
        Ok(EmulatorHandle {
            addr,
            control: EmulatorControl { shared },
            task,
        })
    }

    /// Binds `addr` (port 0 picks a free port) and serves the emulator there.
    pub async fn bind(
        addr: SocketAddr,
        options: EmulatorOptions,
    ) -> std::io::Result<EmulatorHandle> {
        let listener = TcpListener::bind(addr).await?;
        Self::start(listener, options).await
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    addr: SocketAddr,
    control: EmulatorControl,
    task: JoinHandle<()>,
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}/api/v1`
    pub fn config_api_base(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// `http://{addr}/api/public/v1`
    pub fn public_api_base(&self) -> String {
        format!("http://{}/api/public/v1", self.addr)
    }

    pub fn control(&self) -> EmulatorControl {
        self.control.clone()
    }

    /// Stops serving: the port is closed and open connections fail on their next request.
    pub async fn shutdown(self) {
        self.control.shared.net.shut_down();
        self.task.abort();
        // The task was aborted on purpose; its JoinError says nothing new.
        let _ = self.task.await;
    }
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Drives a running emulator from the outside. Clones share the same emulator.
#[derive(Clone)]
pub struct EmulatorControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmulatorControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorControl").finish_non_exhaustive()
    }
}

impl EmulatorControl {
    /// The one workspace the emulator has.
    pub fn workspace_id(&self) -> Uuid {
        self.shared.lock().workspace.id
    }

    /// Creates an active connection called `name` from a Postgres source to an S3
    /// destination (both created on the first call and shared by later ones).
    pub fn add_connection(&self, name: &str) -> Uuid {
        self.shared.lock().add_connection(name)
    }

    /// Makes a connection `active` or `inactive`. Unknown ids are ignored.
    pub fn set_connection_active(&self, connection_id: Uuid, active: bool) {
        self.shared
            .lock()
            .set_connection_active(connection_id, active);
    }

    /// Stores a connection's schedule as if it had been saved through the API, but without
    /// the API's checks, so a test can also give it one Airbyte would refuse. Unknown ids are
    /// ignored.
    pub fn set_schedule(&self, connection_id: Uuid, schedule: Schedule) {
        self.shared.lock().set_schedule(connection_id, schedule);
    }

    /// A connection's schedule; `None` for an unknown id.
    pub fn schedule(&self, connection_id: Uuid) -> Option<Schedule> {
        self.shared
            .lock()
            .connections
            .get(&connection_id)
            .map(|connection| connection.schedule.clone())
    }

    /// The plan every future job of this connection follows (after any pushed plans).
    pub fn set_plan(&self, connection_id: Uuid, plan: JobPlan) {
        self.shared.lock().set_plan(connection_id, plan);
    }

    /// A plan for one future job of this connection; pushed plans are used in order.
    pub fn push_plan(&self, connection_id: Uuid, plan: JobPlan) {
        self.shared.lock().push_plan(connection_id, plan);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Puts the emulator's clock `by` behind the real one: every time it reports from
    /// now on (a job's `createdAt`, `updatedAt`, ...) is that much earlier.
    pub fn set_clock_behind(&self, by: Duration) {
        self.shared.lock().clock.set_behind(by);
    }

    /// Closes the listening socket for `duration`, so connects are refused, and breaks
    /// open connections; the same port is bound again afterwards.
    pub fn refuse_connections_for(&self, duration: Duration) {
        self.shared.net.refuse_for(duration);
    }

    /// Changes the credentials demanded from now on. Tokens issued earlier are forgotten.
    pub fn set_auth(&self, auth: EmulatorAuth) {
        self.shared.lock().set_auth(auth);
    }

    /// Every job ever created, oldest first, in its current state.
    pub fn jobs(&self) -> Vec<JobSnapshot> {
        self.shared.lock().snapshots(tokio::time::Instant::now())
    }

    /// Every job that has not ended jumps to the end of its plan now; hanging jobs succeed.
    pub fn finish_all_jobs(&self) {
        self.shared
            .lock()
            .finish_all_jobs(tokio::time::Instant::now());
    }

    /// Requests received so far.
    pub fn requests(&self) -> RequestCounts {
        self.shared.lock().requests.clone()
    }

    /// What `sources/check_connection` or `destinations/check_connection` reports for this
    /// source or destination: success, or failure with this message.
    pub fn set_check_result(&self, actor_id: Uuid, result: Result<(), String>) {
        self.shared.lock().check_results.insert(actor_id, result);
    }

    /// The streams (`AirbyteStream` objects) `sources/discover_schema` returns for this
    /// source, instead of what its connector would discover.
    pub fn set_catalog(&self, source_id: Uuid, streams: Vec<serde_json::Value>) {
        self.shared.lock().catalogs.insert(source_id, streams);
    }
}
