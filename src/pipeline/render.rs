//! How a plan and an apply are shown: one line per object and per changed field, through
//! an output that scrubs every secret value of the config from whatever it writes.

use std::io::Write;

use serde_json::Value;

use super::PipelineError;
use super::diff::{SECRET_SHOWN, looks_secret};
use super::plan::{Action, Plan};
use crate::config::Config;

/// Secrets shorter than this are not scrubbed from output text: replacing every `ab` would
/// garble it, and values that short are masked where they are shown anyway.
const SHORTEST_SCRUBBED: usize = 4;

/// Where plan and apply write, line by line, never showing a secret of the config.
pub(crate) struct Output<'a> {
    out: &'a mut dyn Write,
    secrets: Vec<String>,
}

impl<'a> Output<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, config: &Config) -> Self {
        Self {
            out,
            secrets: secrets(config),
        }
    }

    /// Writes `text` and a newline, any secret in it replaced by `(secret)`.
    pub(crate) fn line(&mut self, text: &str) -> Result<(), PipelineError> {
        writeln!(self.out, "{}", scrub(text, &self.secrets))?;
        Ok(())
    }
}

/// Every secret value in the declared configurations: those read from the environment or a
/// file, and string values under keys that name secrets.
pub(crate) fn secrets(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for actor in config.sources.iter().chain(&config.destinations) {
        let configuration = &actor.configuration;
        out.extend(configuration.secret_values().map(str::to_string));
        named_secrets(configuration.expose(), false, &mut out);
    }
    out.retain(|s| s.chars().count() >= SHORTEST_SCRUBBED);
    // Longest first, so a secret that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn named_secrets(value: &Value, secret: bool, out: &mut Vec<String>) {
    match value {
        Value::String(text) if secret => out.push(text.clone()),
        Value::Object(map) => {
            for (key, child) in map {
                named_secrets(child, secret || looks_secret(key), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                named_secrets(item, secret, out);
            }
        }
        _ => {}
    }
}

/// `text` with every one of `secrets` replaced by `(secret)`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), SECRET_SHOWN);
        }
    }
    text
}

/// The plan as text: the instance (unless it is the only, default one), the workspace, a
/// line per object with its fields, and the counts.
pub fn render_plan(plan: &Plan) -> Vec<String> {
    let instance = if plan.instance == crate::config::DEFAULT_INSTANCE {
        String::new()
    } else {
        format!("Airbyte instance {:?}, ", plan.instance)
    };
    let mut lines = vec![format!(
        "{instance}Airbyte workspace {:?} ({})",
        plan.workspace_name, plan.workspace_id
    )];
    for change in &plan.changes {
        let (mark, verb) = match change.action {
            Action::Create => ("+", "create"),
            Action::Update => ("~", "update"),
            Action::Unchanged => ("=", "unchanged"),
            Action::Delete => ("-", "delete"),
            Action::LeftAlone => ("?", "left alone"),
        };
        let id = change
            .airbyte_id
            .as_deref()
            .map(|id| format!(" [{id}]"))
            .unwrap_or_default();
        let summary = if change.summary.is_empty() {
            String::new()
        } else {
            format!(" ({})", change.summary)
        };
        lines.push(format!(
            "{mark} {verb} {} {:?}{summary}{id}",
            change.kind.as_str(),
            change.name
        ));
        for field in &change.fields {
            let line = match (&field.before, &field.after) {
                (None, Some(after)) => format!("      {}: {after}", field.field),
                (Some(before), Some(after)) => {
                    format!("      {}: {before} → {after}", field.field)
                }
                (Some(before), None) => format!("      {}: {before} → (removed)", field.field),
                (None, None) => format!("      {}", field.field),
            };
            lines.push(line);
        }
    }
    let left_alone = plan.count(Action::LeftAlone);
    let mut counts = format!(
        "Plan: {} to create, {} to update, {} to delete, {} unchanged",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Delete),
        plan.count(Action::Unchanged),
    );
    if left_alone > 0 {
        counts.push_str(&format!(
            "; {left_alone} in Airbyte but not in the config, left alone (`apply --prune` \
             deletes what no kept connection uses)"
        ));
    }
    counts.push('.');
    lines.push(counts);
    if !plan.has_changes() {
        lines.push("No changes: Airbyte matches the config.".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_replaces_the_longest_secret_first() {
        let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        assert_eq!(
            scrub("a hunter2-long and a hunter2", &secrets),
            "a (secret) and a (secret)"
        );
    }
}
