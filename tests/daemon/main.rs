//! The daemon end to end against the emulator: a tick becomes a run row, a sync,
//! a polled job, an outcome in the history and a counter on `/metrics`.

mod api_document;
mod browser;
mod control;
mod helpers;
mod lifecycle;
mod observability;
mod page;
#[path = "../common/postgres.rs"]
mod pg;
mod policies;
mod postgres;
mod replicas;
mod store_outage;
mod syncs;
