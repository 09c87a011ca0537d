//! `cronbyte plan` and `cronbyte apply`: load the config, talk to Airbyte, print, and turn
//! the outcome into an exit status CI can gate on.
//!
//! | command | 0 | 1 | 2 |
//! |---|---|---|---|
//! | `plan` | Airbyte matches the config | the config is invalid, or Airbyte failed | `apply` would change something |
//! | `apply` | applied (or nothing to do) | the config is invalid, a check failed, a stream was refused, Airbyte failed | — |

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::PipelineError;
use super::apply::{Applied, ApplyOptions, apply_plan};
use super::plan::{Plan, build_plan};
use super::render::{self, Output, render_plan};
use crate::airbyte::Client;
use crate::config::{self, Config};
use crate::daemon::client_settings;
use crate::store::Store;

/// `plan`: Airbyte matches the config.
pub const EXIT_NO_CHANGES: u8 = 0;
/// Anything that went wrong (kept apart from 2, so drift is never mistaken for a failure).
pub const EXIT_FAILURE: u8 = 1;
/// `plan`: `apply` would change something.
pub const EXIT_CHANGES: u8 = 2;

/// `cronbyte plan --config F`: prints what `apply` would do; exit 0 when nothing, 2 when
/// something would change.
pub async fn plan(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::from(EXIT_FAILURE));
    };
    let mut stdout = std::io::stdout();
    match run_plan(&config, &mut stdout).await {
        Ok(plans) if plans.iter().any(Plan::has_changes) => Ok(ExitCode::from(EXIT_CHANGES)),
        Ok(_) => Ok(ExitCode::from(EXIT_NO_CHANGES)),
        Err(err) => Err(scrubbed(&config, &err)),
    }
}

/// `cronbyte apply --config F [--yes] [--prune]`: makes Airbyte match the config. Deleting
/// (with `prune`) is asked on the terminal unless `yes`.
pub async fn apply(path: &Path, yes: bool, prune: bool) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::from(EXIT_FAILURE));
    };
    let mut stdout = std::io::stdout();
    let options = ApplyOptions { prune, yes };
    match run_apply(&config, options, &mut ask_on_terminal, &mut stdout).await {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(err) => Err(scrubbed(&config, &err)),
    }
}

/// Plans against every Airbyte instance `config` names, one after the other in name order,
/// and writes each plan to `out`.
pub async fn run_plan(config: &Config, out: &mut dyn Write) -> Result<Vec<Plan>, PipelineError> {
    let mut plans = Vec::new();
    for (name, settings) in &config.instances {
        let part = config.on_instance(name);
        let client = Client::new(client_settings(settings))?;
        let plan = build_plan(&client, &part, false).await?;
        let mut out = Output::new(&mut *out, config);
        for line in render_plan(&plan) {
            out.line(&line)?;
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Plans, writes the plan to `out`, and applies it, recording the ids in the config's store.
pub async fn run_apply(
    config: &Config,
    options: ApplyOptions,
    confirm: &mut dyn FnMut(&str) -> bool,
    out: &mut dyn Write,
) -> Result<Applied, PipelineError> {
    let store = crate::store::open(&config.store).await?;
    let applied = apply_each_instance(config, options, confirm, store.as_ref(), out).await;
    store.close().await;
    applied
}

/// Plans and applies on every instance in name order; stops at the first that fails.
async fn apply_each_instance(
    config: &Config,
    options: ApplyOptions,
    confirm: &mut dyn FnMut(&str) -> bool,
    store: &dyn Store,
    out: &mut dyn Write,
) -> Result<Applied, PipelineError> {
    let mut total = Applied::default();
    for (name, settings) in &config.instances {
        let part = config.on_instance(name);
        let client = Client::new(client_settings(settings))?;
        let plan = build_plan(&client, &part, options.prune).await?;
        {
            let mut shown = Output::new(&mut *out, config);
            for line in render_plan(&plan) {
                shown.line(&line)?;
            }
        }
        let applied = apply_plan(
            &client,
            &part,
            &plan,
            options,
            confirm,
            Some(store),
            &mut *out,
        )
        .await?;
        total.created += applied.created;
        total.updated += applied.updated;
        total.deleted += applied.deleted;
        total.ids.extend(applied.ids);
    }
    Ok(total)
}

/// The config, or `None` after printing every problem.
fn load(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprintln!("{}: {} problem(s):", path.display(), errors.problems.len());
            eprintln!("{errors}");
            None
        }
    }
}

/// The error as `main` will print it, with any secret of the config scrubbed from the text
/// (an Airbyte error message may quote what it was sent).
fn scrubbed(config: &Config, err: &PipelineError) -> anyhow::Error {
    let secrets = render::secrets(config);
    anyhow::anyhow!(render::scrub(&err.to_string(), &secrets))
}

/// Asks on the terminal, as every command that changes Airbyte does.
fn ask_on_terminal(question: &str) -> bool {
    crate::commands::ask_on_terminal(question, "give --yes to delete")
}
