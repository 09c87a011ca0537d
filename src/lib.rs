//! cronbyte runs Airbyte syncs on cron rules, follows every job to its end, keeps the
//! whole story in a SQLite history and exports Prometheus metrics.

#![forbid(unsafe_code)]

pub mod airbyte;
pub mod config;
pub mod cron;
pub mod emulator;
