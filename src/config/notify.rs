//! `[[notify]]`: webhook receivers of failure and recovery notices.

use std::time::Duration;

use super::problem::Problem;
use super::reader::{Problems, Table};
use super::secret::value_or_file;
use super::sections::entry_table;
use crate::notify::{NotifyEvent, NotifyKind, NotifySettings};

/// How long one delivery may take before it counts as failed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn receivers(root: &mut Table, p: &mut Problems) -> Vec<NotifySettings> {
    let Some(items) = root.list("notify", "[[notify]] tables", p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Some(mut t) = entry_table(format!("notify[{i}]"), item, p) else {
            continue;
        };
        // The URL is a secret: a Slack webhook's path is its credential.
        t.declare("url_file");
        let url = match value_or_file(&mut t, "url", "url_file", p) {
            Some(Some(url)) => Some(url),
            Some(None) => {
                p.push(Problem::new(
                    t.key_path("url"),
                    "a receiver needs `url` or `url_file`",
                ));
                None
            }
            None => None,
        };
        if let Some(url) = &url {
            use secrecy::ExposeSecret;
            let text = url.expose_secret();
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                p.push(Problem::new(
                    t.key_path("url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        let kind = t
            .choice(
                "kind",
                &[
                    ("generic", NotifyKind::Generic),
                    ("slack", NotifyKind::Slack),
                ],
                p,
            )
            .unwrap_or_default();
        let on = match t.string_list("on", p) {
            None => NotifyEvent::ALL.to_vec(),
            Some(words) => {
                let mut events = Vec::new();
                for (j, word) in words.iter().enumerate() {
                    match serde_json::from_value::<NotifyEvent>(serde_json::Value::String(word.clone())) {
                        Ok(event) => events.push(event),
                        Err(_) => p.push(Problem::new(
                            format!("{}[{j}]", t.key_path("on")),
                            format!(
                                "expected one of \"failed\", \"timed_out\", \"trigger_failed\", \"recovered\", found {word:?}"
                            ),
                        )),
                    }
                }
                events
            }
        };
        let timeout = t.positive_duration("timeout", p).unwrap_or(DEFAULT_TIMEOUT);
        t.finish(p);
        if let Some(url) = url {
            out.push(NotifySettings {
                url,
                kind,
                on,
                timeout,
            });
        }
    }
    out
}
