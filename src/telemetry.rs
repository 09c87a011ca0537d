//! Logging: human-readable lines by default, JSON for log shippers; `RUST_LOG`
//! wins over the configured level. Levels are filtered by target (`info,cronbyte=debug`);
//! span and field directives are not taken, which keeps a regex engine out of the binary.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do
/// nothing), which tests that start several daemons rely on.
pub fn init(level: &str, format: LogFormat) {
    let filter = from_env()
        .or_else(|| level.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // The filter decides; the builder's own bound (info by default) would hide debug lines.
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    // Left alone, the builder colours whenever NO_COLOR is unset, and the journal or a log
    // shipper reading a pipe gets escape codes. It is only ever switched off here, so
    // NO_COLOR keeps working where colours are allowed.
    let builder = if may_colour(format, std::io::stderr().is_terminal()) {
        builder
    } else {
        builder.with_ansi(false)
    };
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Human => builder.finish().with(filter).try_init(),
    };
}

/// `RUST_LOG` as target directives (`info,cronbyte=debug`), when set and readable.
fn from_env() -> Option<Targets> {
    let value = std::env::var("RUST_LOG").ok()?;
    if value.trim().is_empty() {
        return None;
    }
    value.parse().ok()
}

/// Whether log lines may carry colour codes: only human-readable lines, and only when
/// they go to a terminal.
fn may_colour(format: LogFormat, stderr_is_terminal: bool) -> bool {
    format == LogFormat::Human && stderr_is_terminal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_human_lines_written_to_a_terminal_may_be_coloured() {
        assert!(may_colour(LogFormat::Human, true));
        assert!(!may_colour(LogFormat::Human, false));
        assert!(!may_colour(LogFormat::Json, true));
        assert!(!may_colour(LogFormat::Json, false));
    }
}
