//! `cronbyte import` and `cronbyte check --online`: load the config, talk to Airbyte, print
//! (every secret of the config scrubbed), ask on the terminal, and turn the outcome into an
//! exit status.
//!
//! | command | 0 | 1 | 2 |
//! |---|---|---|---|
//! | `import` | written | the config is invalid, an instance failed, the output exists | — |
//! | `import --take-over` | every connection Airbyte and the config schedule taken | not confirmed, an instance failed | some refused (named), the others taken |
//! | `import --give-back` | given back | not confirmed, an instance failed | — |

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;

use super::hand_over::{HandOverOptions, give_back, take_over};
use super::import::import;
use super::record::{default_path, write_atomically};
use super::{TakeOverError, scrub, secrets, watch};
use crate::config::{self, Config};

/// Exit status when some connections were refused and the rest done.
pub const EXIT_REFUSED: u8 = 2;

/// What `cronbyte import` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Write the entries to this file, or to standard output.
    Entries { output: Option<PathBuf> },
    /// Set the connections the config schedules to manual in Airbyte.
    TakeOver,
    /// Restore what a take-over recorded.
    GiveBack,
}

/// `cronbyte import`'s arguments.
#[derive(Clone, Debug)]
pub struct ImportArgs {
    pub mode: ImportMode,
    pub instance: Option<String>,
    /// The record file; beside the config when `None`.
    pub record: Option<PathBuf>,
    pub yes: bool,
}

/// `cronbyte import`.
pub async fn run_import(path: &Path, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.problems.len());
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let hidden = secrets(&config);
    let fail = |e: TakeOverError| anyhow::anyhow!(scrub(&e.to_string(), &hidden));
    let record = args.record.clone().unwrap_or_else(|| default_path(path));
    let options = HandOverOptions {
        instance: args.instance.as_deref(),
        record: &record,
        yes: args.yes,
    };
    let mut shown = Scrubbed::new(std::io::stdout(), hidden.clone());
    match &args.mode {
        ImportMode::Entries { output } => {
            let imported = import(&config, args.instance.as_deref(), Utc::now())
                .await
                .map_err(fail)?;
            for line in &imported.skipped {
                eprintln!("skipped: {}", scrub(line, &hidden));
            }
            match output {
                Some(file) => {
                    write_output(file, &imported.text).map_err(fail)?;
                    eprintln!(
                        "{}: {} connection(s), {} scheduled; {} skipped",
                        file.display(),
                        imported.entries,
                        imported.scheduled,
                        imported.skipped.len()
                    );
                }
                None => shown.write_all(imported.text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        ImportMode::TakeOver => {
            let done = take_over(&config, options, &mut ask_on_terminal, &mut shown)
                .await
                .map_err(fail)?;
            if done.refused.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(EXIT_REFUSED))
            }
        }
        ImportMode::GiveBack => {
            give_back(&config, options, &mut ask_on_terminal, &mut shown)
                .await
                .map_err(fail)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes the imported entries to `file`, which must not exist yet: a second import with
/// the first one included would otherwise replace its entries with none. Written whole or
/// not at all, readable by all (it holds no secret, and the daemon's user reads it).
fn write_output(file: &Path, text: &str) -> Result<(), TakeOverError> {
    let error = |detail: String| TakeOverError::Output {
        path: file.to_owned(),
        detail,
    };
    if file.exists() {
        return Err(error(
            "exists already: give another --output, or remove it first".into(),
        ));
    }
    write_atomically(file, text.as_bytes(), 0o644)
        .map_err(|e| error(format!("cannot be written: {e}")))
}

/// `cronbyte check --online`: every instance asked at once for the connections it schedules
/// itself; each one the config schedules too is a warning. An instance that cannot be asked
/// is an error naming it (exit 1).
pub async fn check_online(config: &Config) -> bool {
    let hidden = secrets(config);
    let mut reachable = true;
    for (instance, result) in watch::check_all(config).await {
        match result {
            Ok(twice) => {
                for double in twice {
                    eprintln!("warning: {}", scrub(&double.to_string(), &hidden));
                }
            }
            Err(error) => {
                eprintln!(
                    "error: Airbyte instance {instance:?} could not be checked: {}",
                    scrub(&error.to_string(), &hidden)
                );
                reachable = false;
            }
        }
    }
    reachable
}

/// A writer that scrubs the config's secrets from what it writes (Airbyte may echo what it
/// was sent in a message that ends up in a note), a line at a time, so a secret is never
/// split between two writes.
struct Scrubbed<W: Write> {
    inner: W,
    secrets: Vec<String>,
    pending: Vec<u8>,
}

impl<W: Write> Scrubbed<W> {
    fn new(inner: W, secrets: Vec<String>) -> Self {
        Self {
            inner,
            secrets,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, line: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(line);
        self.inner.write_all(scrub(&text, &self.secrets).as_bytes())
    }
}

impl<W: Write> Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.emit(&rest)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Scrubbed<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Asks on the terminal, as every command that changes Airbyte does.
fn ask_on_terminal(question: &str) -> bool {
    crate::commands::ask_on_terminal(question, "give --yes to go ahead without asking")
}
