//! Hardening: cronbyte's promises under pressure. Every job Airbyte ran on cronbyte's behalf
//! is in the history exactly once with the right outcome, whatever happens to the daemon
//! (`crash_loop`) or to Airbyte (`airbyte_faults`); bad input never panics or hangs
//! (`bad_input`); and secrets never leak, nor does the control API let anyone in without its
//! token (`secrets`). `docs/guarantees.md` maps each promise to its test.
//!
//! Long variants are `#[ignore]`d; each module's header gives the one command that runs it.

mod airbyte_faults;
mod bad_input;
mod crash_loop;
mod failover;
#[path = "../common/postgres.rs"]
mod pg;
mod secrets;
mod support;

/// The tests that drive a daemon hard for tens of seconds take turns: on a 2-core machine,
/// two of them at once would measure the machine more than cronbyte.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
