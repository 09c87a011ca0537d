//! The daemon end to end against the emulator: a tick becomes a run row, a sync,
//! a polled job, an outcome in the history and a counter on `/metrics`.

mod api_document;
mod browser;
mod control;
mod helpers;
mod lifecycle;
mod observability;
mod page;
mod policies;
mod postgres;
mod store_outage;
mod syncs;
