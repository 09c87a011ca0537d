//! cronbyte runs Airbyte syncs on cron rules, follows every job to its end, keeps the
//! whole story in a SQLite history and exports Prometheus metrics.
//!
//! The path of a sync: [`config`] says what to run, [`cron`] when; the [`engine`]
//! claims each tick, a [`run`], in the [`store`], triggers it through the [`airbyte`] client
//! and follows the job to its end; [`metrics`] and the [`server`] show the result.
//! [`daemon`] wires them together, with [`notify`] (failure notices), [`reload`]
//! (SIGHUP), [`retention`] (pruning old runs) and [`systemd`] (the notify protocol)
//! beside it. [`pipeline`] sets
//! sources, destinations and connections up from the config; [`takeover`] moves schedules
//! from Airbyte's own scheduler to the config and back, and finds connections scheduled by
//! both; [`commands`] and [`remote`] are the CLI's side; [`emulator`] stands in for Airbyte
//! in tests, benchmarks and the demo; [`allocator`] keeps resident memory near what is live
//! and [`tls`] sets up TLS for every HTTP client.

// Denied rather than forbidden so that `allocator`, the one module that calls into libc,
// can allow it for itself.
#![deny(unsafe_code)]

pub mod airbyte;
pub mod allocator;
pub mod commands;
pub mod config;
pub mod cron;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod engine;
pub mod metrics;
pub mod next;
pub mod notify;
pub mod pipeline;
pub mod reload;
pub mod remote;
pub mod replica;
pub mod retention;
pub mod run;
pub mod server;
pub mod store;
pub mod systemd;
pub mod takeover;
pub mod telemetry;
pub mod tls;
pub mod units;
pub mod watch;
