//! The CLI's side of the control API: `cronbyte status`, `trigger`, `cancel`,
//! `pause`, `resume` and `reload` ask the running daemon over HTTP, with the
//! address and token its config gives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::commands::{OutputFormat, table};
use crate::config::ServerSettings;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "cannot reach the cronbyte daemon at {url}: {detail} (is it running, and is [server].listen right?)"
    )]
    Unreachable { url: String, detail: String },
    #[error("the daemon refused: {message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("the daemon's answer does not decode: {0}")]
    Decode(String),
}

/// A client of one daemon's control API.
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The address to reach a daemon listening on `listen`: a wildcard listen is
/// reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl Remote {
    /// The daemon `server` (the config's `[server]`) describes, or the one at `url`; the
    /// token comes from `CRONBYTE_TOKEN` when set, else from `[server].token`.
    pub fn new(server: &ServerSettings, url: Option<&str>) -> Result<Self, RemoteError> {
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(server.listen)),
        };
        let token = std::env::var("CRONBYTE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| server.token.as_ref().map(|t| t.expose_secret().to_owned()));
        crate::tls::install();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: base.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self { base, token, http })
    }

    pub(crate) async fn call(&self, method: Method, path: &str) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| RemoteError::Unreachable {
            url: self.base.clone(),
            detail: e.without_url().to_string(),
        })?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| RemoteError::Decode(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned();
            return Err(RemoteError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        Ok(body)
    }
}

fn time(value: &Value) -> String {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| "-".into())
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(value: &Value) {
    println!("{value}");
}

/// What a control command does, once the daemon is known.
pub enum Action {
    Status,
    Trigger(String),
    Cancel(i64),
    Pause(String),
    Resume(String),
    Reload,
}

pub async fn run(
    remote: &Remote,
    action: Action,
    format: OutputFormat,
) -> Result<ExitCode, RemoteError> {
    let (method, path) = match &action {
        Action::Status => (Method::GET, "/api/v1/connections".to_owned()),
        Action::Trigger(name) => (
            Method::POST,
            format!("/api/v1/connections/{}/trigger", encode(name)),
        ),
        Action::Cancel(id) => (Method::POST, format!("/api/v1/runs/{id}/cancel")),
        Action::Pause(name) => (
            Method::POST,
            format!("/api/v1/connections/{}/pause", encode(name)),
        ),
        Action::Resume(name) => (
            Method::POST,
            format!("/api/v1/connections/{}/resume", encode(name)),
        ),
        Action::Reload => (Method::POST, "/api/v1/reload".to_owned()),
    };
    let answer = remote.call(method, &path).await?;
    if format == OutputFormat::Json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    match action {
        Action::Status => print!("{}", status_table(&answer)),
        Action::Trigger(name) => println!(
            "triggered {name}: run {} ({})",
            text(&answer["run"]["id"]),
            text(&answer["run"]["status"])
        ),
        Action::Cancel(id) => match answer["outcome"].as_str() {
            Some("requested") => println!("run {id}: Airbyte was asked to cancel its job"),
            _ => println!("run {id}: cancelled"),
        },
        Action::Pause(name) => println!("{name}: paused"),
        Action::Resume(name) => println!("{name}: resumed"),
        Action::Reload => print!("{}", reload_text(&answer["summary"])),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a reload did, a line for each kind of change it made or could not make.
fn reload_text(summary: &Value) -> String {
    let mut text = String::from("config reloaded\n");
    for (key, label) in [
        ("added", "added"),
        ("removed", "removed"),
        ("changed", "changed (applied)"),
        ("needs_restart", "changed, applied at the next restart"),
        (
            "needs_apply",
            "changed, for `cronbyte apply` to carry to Airbyte",
        ),
    ] {
        let names: Vec<&str> = summary[key]
            .as_array()
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            text.push_str(&format!("  {label}: {}\n", names.join(", ")));
        }
    }
    if text.lines().count() == 1 {
        text.push_str("  nothing changed\n");
    }
    text
}

fn status_table(answer: &Value) -> String {
    let empty = Vec::new();
    let connections = answer["connections"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = connections
        .iter()
        .map(|c| {
            let state = if c["paused"].as_bool() == Some(true) {
                "paused"
            } else if c["enabled"].as_bool() == Some(false) {
                "disabled"
            } else {
                "active"
            };
            let last = &c["last_run"];
            let last_run = if last.is_null() {
                "-".to_owned()
            } else {
                format!(
                    "{} {} ({})",
                    text(&last["id"]),
                    text(&last["status"]),
                    time(&last["scheduled_for"])
                )
            };
            let mut row = vec![
                text(&c["name"]),
                state.to_owned(),
                text(&c["cron"]),
                text(&c["timezone"]),
                time(&c["next_run"]),
                last_run,
                text(&c["active_run"]),
            ];
            row.extend(live_columns(&c["running"]));
            row
        })
        .collect();
    if rows.is_empty() {
        return "(no connections configured)\n".into();
    }
    table(
        &[
            "CONNECTION",
            "STATE",
            "CRON",
            "TIMEZONE",
            "NEXT RUN",
            "LAST RUN",
            "ACTIVE RUN",
            "RECORDS",
            "RATE",
            "ELAPSED",
            "LEFT",
        ],
        &rows,
    )
}

/// The running sync's records so far, its rate, how long it has run and how
/// long it has left (`overdue` past its usual duration), or dashes.
fn live_columns(running: &Value) -> [String; 4] {
    if running.is_null() {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let left = if running["overdue"].as_bool() == Some(true) {
        "overdue".to_owned()
    } else {
        or_dash(
            running["estimated_seconds_left"]
                .as_i64()
                .map(|s| format!("~{}", crate::units::duration(s))),
        )
    };
    [
        or_dash(running["records"].as_u64().map(crate::units::count)),
        or_dash(
            running["records_per_second"]
                .as_f64()
                .map(|r| crate::units::per_second(r, crate::units::count)),
        ),
        or_dash(
            running["elapsed_seconds"]
                .as_i64()
                .map(crate::units::duration),
        ),
        left,
    ]
}

/// A connection name as one URL path segment.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_told_a_line_per_kind_of_change() {
        let summary = serde_json::json!({
            "added": ["orders"],
            "removed": [],
            "changed": ["customers", "[[notify]]"],
            "needs_restart": ["[workers]"],
            "needs_apply": ["[[sources]]"],
        });
        assert_eq!(
            reload_text(&summary),
            "config reloaded\n  added: orders\n  changed (applied): customers, [[notify]]\n  \
             changed, applied at the next restart: [workers]\n  \
             changed, for `cronbyte apply` to carry to Airbyte: [[sources]]\n"
        );
        assert_eq!(
            reload_text(&serde_json::json!({})),
            "config reloaded\n  nothing changed\n"
        );
    }

    #[test]
    fn status_shows_a_running_sync_s_records_rate_elapsed_and_time_left() {
        let answer = serde_json::json!({ "connections": [
            { "name": "orders", "paused": false, "enabled": true, "cron": "0 * * * *",
              "timezone": "UTC", "next_run": null, "last_run": null, "active_run": 7,
              "running": { "run_id": 7, "records": 123_456, "records_per_second": 1_500.0,
                           "elapsed_seconds": 185, "estimated_seconds_left": 600, "overdue": false } },
            { "name": "late", "paused": false, "enabled": true, "cron": "0 * * * *",
              "timezone": "UTC", "next_run": null, "last_run": null, "active_run": 8,
              "running": { "run_id": 8, "records": null, "records_per_second": null,
                           "elapsed_seconds": 4_000, "estimated_seconds_left": 0, "overdue": true } },
            { "name": "idle", "paused": true, "enabled": true, "cron": "0 * * * *",
              "timezone": "UTC", "next_run": null, "last_run": null, "active_run": null,
              "running": null }
        ]});
        let table = status_table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].ends_with("RECORDS  RATE    ELAPSED  LEFT"),
            "{table}"
        );
        assert!(
            lines[1].ends_with("123.5k   1.5k/s  3m05s    ~10m00s"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("-        -       1h06m    overdue"),
            "{table}"
        );
        assert!(lines[3].starts_with("idle        paused"), "{table}");
        assert!(
            lines[3].ends_with("-           -        -       -        -"),
            "{table}"
        );
    }
}
