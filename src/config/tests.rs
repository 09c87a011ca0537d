//! Unit tests of loading: defaults, the example file, inheritance from `[defaults]`, auth
//! kinds and warnings. The table of broken configurations is in `tests/config_check.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::reader::KNOWN_KEYS;
use super::*;
use crate::airbyte::{ApiKind, Auth};

const MINIMAL: &str = r#"
[airbyte]
base_url = "http://localhost:8000/api/v1/"
"#;

fn toml(text: &str) -> Config {
    match from_str(text, Format::Toml) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

#[test]
fn the_example_configuration_validates() {
    let config = toml(EXAMPLE);
    assert_eq!(config.connections.len(), 2);
    assert_eq!(config.groups.len(), 1);
    let quartz = config.connections[0].cron.as_ref().expect("a rule");
    assert_eq!(quartz.expr(), "0 0 12 * * ?");
    assert_eq!(config.connections[1].timezone, chrono_tz::Europe::Paris);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn a_minimal_configuration_gets_the_documented_defaults() {
    let c = toml(MINIMAL);
    assert_eq!(c.airbyte.base_url, "http://localhost:8000/api/v1");
    assert_eq!(c.airbyte.api, ApiKind::Config);
    assert!(matches!(c.airbyte.auth, Auth::None));
    assert_eq!(c.airbyte.request_timeout, Duration::from_secs(30));
    assert_eq!(c.airbyte.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.airbyte.workspace, None);
    assert_eq!(
        c.airbyte.retry,
        RetrySettings {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    );
    assert_eq!(c.store.path, std::path::PathBuf::from("cronbyte.db"));
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9464");
    assert!(c.server.token.is_none());
    assert_eq!(c.workers.poll_interval, Duration::from_secs(10));
    assert_eq!(c.workers.max_concurrent_syncs, 100);
    assert_eq!(c.workers.poll_concurrency, 4);
    assert_eq!(c.defaults.timezone, chrono_tz::UTC);
    assert_eq!(c.defaults.timeout, Some(Duration::from_secs(86_400)));
    assert_eq!(c.defaults.on_overlap, OnOverlap::Attach);
    assert_eq!(c.defaults.misfire, Misfire::RunOnce);
    assert_eq!(c.defaults.jitter, Duration::ZERO);
    assert_eq!(c.defaults.retries, 0);
    assert_eq!(c.defaults.retry_backoff, Duration::from_secs(300));
    assert_eq!(c.defaults.retry_backoff_max, Duration::from_secs(3600));
    assert_eq!(c.metrics.success_ratio_window, Duration::from_secs(86_400));
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Human);
    assert!(c.groups.is_empty());
    assert!(c.connections.is_empty());
}

/// The keys each `[section]` of the example mentions, set or commented out, as paths
/// (`airbyte.auth.password_file`, `connections.cron`).
fn documented_keys(example: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut section = String::new();
    for line in example.lines() {
        let line = line.trim();
        if let Some(header) = line
            .strip_prefix("[[")
            .and_then(|l| l.strip_suffix("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        {
            section = header.to_string();
            out.insert(section.clone());
            continue;
        }
        let body = line.trim_start_matches('#').trim();
        if let Some((key, _)) = body.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            out.insert(format!("{section}.{key}"));
        }
    }
    out
}

#[test]
fn the_example_documents_every_key_and_no_other() {
    KNOWN_KEYS.with(|k| k.borrow_mut().clear());
    toml(EXAMPLE);
    let known: BTreeSet<String> = KNOWN_KEYS.with(|k| {
        k.borrow()
            .iter()
            .map(|path| {
                path.replace("connections[0]", "connections")
                    .replace("connections[1]", "connections")
            })
            .map(|path| path.replace("groups[0]", "groups"))
            .collect()
    });
    let documented = documented_keys(EXAMPLE);
    let undocumented: Vec<_> = known.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from the example: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "the example documents keys that don't exist: {stale:?}"
    );
}

#[test]
fn a_connection_inherits_what_it_does_not_set_from_defaults() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [defaults]
        timezone = "America/New_York"
        timeout = "none"
        on_overlap = "queue"
        misfire = "skip"
        jitter = "30s"
        retries = 3
        retry_backoff = "1m"
        retry_backoff_max = "10m"
        [[connections]]
        name = "inherits"
        connection_id = "9F2B1C3E-4D5A-4B6C-8D7E-0F1A2B3C4D5E"
        cron = "0 6 * * *"
        [[connections]]
        name = "overrides"
        connection_id = "1c6a8e52-7b3d-4f0e-9a1b-2c3d4e5f6a7b"
        cron = "0 6 * * *"
        timezone = "Asia/Tokyo"
        timeout = "1h"
        on_overlap = "skip"
        misfire = "run_once"
        jitter = "0s"
        retries = 1
        retry_backoff = "2m"
        retry_backoff_max = "4m"
        enabled = false
        "#,
    );
    let a = &c.connections[0];
    assert_eq!(a.connection_id, "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e");
    assert_eq!(a.timezone, chrono_tz::America::New_York);
    assert_eq!(
        a.cron.as_ref().map(|r| r.timezone()),
        Some(chrono_tz::America::New_York)
    );
    assert_eq!(a.timeout, None);
    assert_eq!(a.on_overlap, OnOverlap::Queue);
    assert_eq!(a.misfire, Misfire::Skip);
    assert_eq!(a.jitter, Duration::from_secs(30));
    assert_eq!(a.retries, 3);
    assert_eq!(a.retry_backoff, Duration::from_secs(60));
    assert_eq!(a.retry_backoff_max, Duration::from_secs(600));
    assert!(a.enabled);
    let b = &c.connections[1];
    assert_eq!(b.timezone, chrono_tz::Asia::Tokyo);
    assert_eq!(
        b.cron.as_ref().map(|r| r.timezone()),
        Some(chrono_tz::Asia::Tokyo)
    );
    assert_eq!(b.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(b.on_overlap, OnOverlap::Skip);
    assert_eq!(b.misfire, Misfire::RunOnce);
    assert_eq!(b.jitter, Duration::ZERO);
    assert_eq!(b.retries, 1);
    assert_eq!(b.retry_backoff, Duration::from_secs(120));
    assert_eq!(b.retry_backoff_max, Duration::from_secs(240));
    assert!(!b.enabled);
}

#[test]
fn a_connection_can_run_only_after_another() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[connections]]
        name = "a"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "@daily"
        [[connections]]
        name = "b"
        connection_id = "1c6a8e52-7b3d-4f0e-9a1b-2c3d4e5f6a7b"
        after = ["a"]
        "#,
    );
    assert!(c.connections[1].cron.is_none());
    assert_eq!(c.connections[1].after, vec!["a".to_string()]);
}

#[test]
fn basic_auth_reads_its_password_from_a_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").expect("written");
    let c = toml(&format!(
        r#"
        [airbyte]
        base_url = "https://airbyte.example.com/api/v1"
        api = "public"
        [airbyte.auth]
        kind = "basic"
        username = "airbyte"
        password_file = {file:?}
        "#
    ));
    assert_eq!(c.airbyte.api, ApiKind::Public);
    match &c.airbyte.auth {
        Auth::Basic { username, password } => {
            assert_eq!(username, "airbyte");
            assert_eq!(password.expose_secret(), "s3cret");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
}

#[test]
fn bearer_and_client_credentials_auth_are_read() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "https://api.airbyte.com/v1"
        [airbyte.auth]
        kind = "bearer"
        token = "t0ken"
        "#,
    );
    assert!(matches!(&c.airbyte.auth, Auth::Bearer { token } if token.expose_secret() == "t0ken"));
    let c = toml(
        r#"
        [airbyte]
        base_url = "https://api.airbyte.com/v1"
        [airbyte.auth]
        kind = "client_credentials"
        client_id = "id"
        client_secret = "shh"
        "#,
    );
    assert!(matches!(
        &c.airbyte.auth,
        Auth::ClientCredentials { client_id, client_secret }
            if client_id == "id" && client_secret.expose_secret() == "shh"
    ));
}

#[test]
fn a_yaml_configuration_reads_like_toml() {
    let c = from_str(
        "airbyte:\n  base_url: http://localhost:8000/api/v1\nworkers:\n  poll_interval: 5s\n\
         connections:\n  - name: a\n    connection_id: 9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\n    \
         cron: '0 0 12 * * ?'\n    after: []\n",
        Format::Yaml,
    )
    .expect("valid");
    assert_eq!(c.workers.poll_interval, Duration::from_secs(5));
    assert_eq!(c.connections[0].name, "a");
}

#[test]
fn the_format_follows_the_file_extension() {
    use std::path::Path;
    assert_eq!(Format::of_path(Path::new("a.yaml")), Format::Yaml);
    assert_eq!(Format::of_path(Path::new("a.YML")), Format::Yaml);
    assert_eq!(Format::of_path(Path::new("a.toml")), Format::Toml);
    assert_eq!(Format::of_path(Path::new("cronbyte")), Format::Toml);
}

#[test]
fn listening_beyond_loopback_without_a_token_is_a_warning() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [server]
        listen = "0.0.0.0:9464"
        "#,
    );
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "server.token");
    let with_token = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [server]
        listen = "0.0.0.0:9464"
        token = "x"
        "#,
    );
    assert!(with_token.warnings().is_empty());
}

#[test]
fn a_rule_that_never_fires_again_and_an_unused_group_are_warnings() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[groups]]
        name = "idle"
        max_concurrent = 1
        [[connections]]
        name = "past"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "0 0 12 * * ? 2020"
        "#,
    );
    let paths: Vec<String> = c.warnings().into_iter().map(|w| w.path).collect();
    assert_eq!(paths, vec!["connections[0].cron", "groups[0]"]);
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_line_it_is_on() {
    let err = from_str("[airbyte.auth]\npassword = \"hunter2\n", Format::Toml).expect_err("broken");
    let text = err.to_string();
    assert_eq!(err.problems.len(), 1);
    assert!(text.contains("not valid TOML"), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_required_key_that_is_given_but_wrong_is_reported_once() {
    let errors = from_str(
        r#"
        [airbyte]
        base_url = 42
        [airbyte.auth]
        kind = "basic"
        username = ""
        password = "p"
        [[groups]]
        name = "g"
        max_concurrent = 0
        [[connections]]
        name = ""
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "@daily"
        "#,
        Format::Toml,
    )
    .expect_err("broken");
    let lines: Vec<String> = errors.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "airbyte.base_url: expected a URL string such as \"http://localhost:8000/api/v1\"",
            "airbyte.auth.username: must not be empty",
            "groups[0].max_concurrent: must be at least 1",
            "connections[0].name: must not be empty",
        ]
    );
}

#[test]
fn a_list_entry_that_is_not_a_table_is_one_problem() {
    let errors = from_str(
        "connections = [\"a\"]\n[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n",
        Format::Toml,
    )
    .expect_err("broken");
    assert_eq!(
        errors.to_string(),
        "connections[0]: expected a table, found the string \"a\""
    );
}
