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
    assert_eq!(
        c.airbyte().unwrap().base_url,
        "http://localhost:8000/api/v1"
    );
    assert_eq!(c.airbyte().unwrap().api, ApiKind::Config);
    assert!(matches!(c.airbyte().unwrap().auth, Auth::None));
    assert_eq!(
        c.airbyte().unwrap().request_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        c.airbyte().unwrap().connect_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(c.airbyte().unwrap().workspace, None);
    assert_eq!(
        c.airbyte().unwrap().retry,
        RetrySettings {
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    );
    assert_eq!(c.store.path, std::path::PathBuf::from("cronbyte.db"));
    assert_eq!(c.store.retention, Some(Duration::from_secs(90 * 86_400)));
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
/// (`airbyte.auth.password_file`, `connections.cron`). The keys inside a connector's
/// `configuration` table are the connector's, not cronbyte's, so they are not collected.
fn documented_keys(example: &str) -> BTreeSet<String> {
    let header = |line: &str| {
        line.strip_prefix("[[")
            .and_then(|l| l.strip_suffix("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
            .map(str::to_string)
    };
    let mut out = BTreeSet::new();
    let mut section = String::new();
    // Under a commented-out header (the [instances.<name>] form, shown beside the
    // [airbyte] the example uses), keys are an illustration, not this file's keys.
    let mut illustration = false;
    for line in example.lines() {
        let line = line.trim();
        if let Some(header) = header(line) {
            section = header;
            illustration = false;
            out.insert(section.clone());
            continue;
        }
        if line
            .strip_prefix('#')
            .is_some_and(|body| header(body.trim()).is_some())
        {
            illustration = true;
            continue;
        }
        if illustration || section.ends_with(".configuration") {
            continue;
        }
        let body = line.trim_start_matches('#').trim();
        if let Some((key, _)) = body.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            if section.is_empty() {
                out.insert(key.to_string());
            } else {
                out.insert(format!("{section}.{key}"));
            }
        }
    }
    out
}

/// `connections[1].streams[0].name` as `connections.streams.name`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
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
            .map(|path| without_indices(path))
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
fn a_disabled_connection_needs_no_rule() {
    let c = toml(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[connections]]
        name = "by-hand"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        enabled = false
        "#,
    );
    assert!(c.connections[0].cron.is_none());
    assert!(!c.connections[0].enabled);
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
    assert_eq!(c.airbyte().unwrap().api, ApiKind::Public);
    match &c.airbyte().unwrap().auth {
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
    assert!(
        matches!(&c.airbyte().unwrap().auth, Auth::Bearer { token } if token.expose_secret() == "t0ken")
    );
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
        &c.airbyte().unwrap().auth,
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

#[test]
fn the_example_declares_a_source_a_destination_and_a_connection_between_them() {
    let config = toml(EXAMPLE);
    assert_eq!(config.sources[0].name, "ecommerce");
    assert_eq!(config.sources[0].definition, "Postgres");
    assert_eq!(
        config.sources[0].configuration.expose()["ssl_mode"]["mode"],
        "require"
    );
    assert_eq!(config.destinations[0].name, "bronze");
    let declared = config.connections[1]
        .declared
        .as_ref()
        .expect("a declared connection");
    assert_eq!(config.connections[1].connection_id, "");
    assert_eq!(
        (declared.source.as_str(), declared.destination.as_str()),
        ("ecommerce", "bronze")
    );
    assert_eq!(declared.streams[0].sync_mode, SyncMode::Incremental);
    assert_eq!(
        declared.streams[0].cursor_field,
        Some(vec!["updated_at".to_string()])
    );
    assert!(config.connections[0].declared.is_none());
}

/// A config with one Postgres source, one S3 destination and `connection` appended.
fn declaring(connection: &str) -> String {
    format!(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[sources]]
        name = "ecommerce"
        definition = "Postgres"
        configuration = {{ host = "db", port = 5432, schemas = ["public"] }}
        [[destinations]]
        name = "bronze"
        definition = "4816B78F-1489-44C1-9060-4B19D5FA9362"
        configuration = {{ format = {{ format_type = "Parquet" }} }}
        {connection}
        "#
    )
}

fn problems(text: &str) -> ConfigErrors {
    match from_str(text, Format::Toml) {
        Ok(_) => panic!("expected problems:\n{text}"),
        Err(errors) => errors,
    }
}

/// Whether some problem is at `path` and says `fragment`.
fn has_problem(errors: &ConfigErrors, path: &str, fragment: &str) -> bool {
    errors
        .problems
        .iter()
        .any(|p| p.path == path && p.message.contains(fragment))
}

#[test]
fn a_declared_connection_gets_stream_defaults_and_an_empty_id_to_resolve() {
    let c = toml(&declaring(
        r#"
        [[connections]]
        name = "ecommerce-to-bronze"
        source = "ecommerce"
        destination = "bronze"
        cron = "@daily"
        prefix = "raw_"
        namespace_definition = "customformat"
        namespace_format = "${SOURCE_NAMESPACE}_bronze"
        [[connections.streams]]
        name = "customers"
        [[connections.streams]]
        name = "orders"
        namespace = "public"
        sync_mode = "incremental"
        cursor_field = ["meta", "updated_at"]
        primary_key = ["id", "region"]
        "#,
    ));
    assert_eq!(
        c.destinations[0].definition,
        "4816b78f-1489-44c1-9060-4b19d5fa9362"
    );
    assert_eq!(c.sources[0].configuration.expose()["port"], 5432);
    let connection = &c.connections[0];
    assert_eq!(connection.connection_id, "");
    let declared = connection.declared.as_ref().expect("declared");
    assert_eq!(declared.prefix.as_deref(), Some("raw_"));
    assert_eq!(
        declared.namespace_definition,
        Some(NamespaceDefinition::CustomFormat)
    );
    // Airbyte's own placeholder passes through untouched outside connector configurations.
    assert_eq!(
        declared.namespace_format.as_deref(),
        Some("${SOURCE_NAMESPACE}_bronze")
    );
    assert_eq!(declared.status, ConnectionStatus::Active);
    let customers = &declared.streams[0];
    assert_eq!(customers.sync_mode, SyncMode::FullRefresh);
    assert_eq!(
        customers.destination_sync_mode,
        DestinationSyncMode::Overwrite
    );
    assert_eq!(customers.cursor_field, None);
    let orders = &declared.streams[1];
    assert_eq!(orders.namespace.as_deref(), Some("public"));
    assert_eq!(orders.destination_sync_mode, DestinationSyncMode::Append);
    assert_eq!(
        orders.cursor_field,
        Some(vec!["meta".to_string(), "updated_at".to_string()])
    );
    assert_eq!(
        orders.primary_key,
        Some(vec![vec!["id".to_string()], vec!["region".to_string()]])
    );
}

#[test]
fn a_connection_needs_an_id_or_both_a_source_and_a_destination() {
    let neither = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"",
    ));
    assert!(
        has_problem(
            &neither,
            "connections[0].connection_id",
            "or `source` and `destination`"
        ),
        "{neither}"
    );
    let half = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"\nsource = \"ecommerce\"\n\
         [[connections.streams]]\nname = \"orders\"",
    ));
    assert!(
        has_problem(&half, "connections[0].destination", "needs both"),
        "{half}"
    );
    let both = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"\n\
         connection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\"\nsource = \"ecommerce\"\n\
         destination = \"bronze\"",
    ));
    assert!(
        has_problem(&both, "connections[0].connection_id", "not both"),
        "{both}"
    );
    let no_streams = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"\nsource = \"ecommerce\"\n\
         destination = \"bronze\"",
    ));
    assert!(
        has_problem(&no_streams, "connections[0].streams", "missing"),
        "{no_streams}"
    );
}

#[test]
fn streams_on_a_connection_given_by_id_are_a_problem() {
    let errors = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"\n\
         connection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\"\nprefix = \"x\"\n\
         [[connections.streams]]\nname = \"orders\"",
    ));
    assert!(
        has_problem(
            &errors,
            "connections[0].streams",
            "only a declared connection"
        ),
        "{errors}"
    );
    assert!(
        has_problem(
            &errors,
            "connections[0].prefix",
            "only a declared connection"
        ),
        "{errors}"
    );
}

#[test]
fn a_source_or_destination_name_that_is_not_declared_gets_a_suggestion() {
    let errors = problems(&declaring(
        "[[connections]]\nname = \"a\"\ncron = \"@daily\"\nsource = \"ecomerce\"\n\
         destination = \"bronz\"\n[[connections.streams]]\nname = \"orders\"",
    ));
    assert!(
        has_problem(
            &errors,
            "connections[0].source",
            "no [[sources]] entry is named \"ecomerce\"; did you mean \"ecommerce\"?"
        ),
        "{errors}"
    );
    assert!(
        has_problem(
            &errors,
            "connections[0].destination",
            "did you mean \"bronze\"?"
        ),
        "{errors}"
    );
}

#[test]
fn stream_settings_are_checked_with_their_key_paths() {
    let errors = problems(&declaring(
        r#"
        [[connections]]
        name = "a"
        cron = "@daily"
        source = "ecommerce"
        destination = "bronze"
        [[connections.streams]]
        name = "customers"
        [[connections.streams]]
        name = "orders"
        sync_mode = "incremetal"
        destination_sync_mode = "apend"
        [[connections.streams]]
        name = "products"
        sync_mode = "incremental"
        destination_sync_mode = "overwrite"
        [[connections.streams]]
        name = "refunds"
        cursor_field = "updated_at"
        curser = 1
        [[connections.streams]]
        name = "customers"
        "#,
    ));
    for (path, fragment) in [
        (
            "connections[0].streams[1].sync_mode",
            "did you mean \"incremental\"?",
        ),
        (
            "connections[0].streams[1].destination_sync_mode",
            "did you mean \"append\"?",
        ),
        (
            "connections[0].streams[2].destination_sync_mode",
            "use \"append\" or \"append_dedup\"",
        ),
        (
            "connections[0].streams[3].cursor_field",
            "only used with sync_mode = \"incremental\"",
        ),
        ("connections[0].streams[3].curser", "unknown key"),
        ("connections[0].streams[4].name", "duplicate stream"),
    ] {
        assert!(
            has_problem(&errors, path, fragment),
            "no {path}: {fragment}\n{errors}"
        );
    }
}

#[test]
fn two_sources_with_one_name_and_a_missing_configuration_are_problems() {
    let errors = problems(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[sources]]
        name = "a"
        definition = "Postgres"
        configuration = { host = "db" }
        [[sources]]
        name = "a"
        definition = "MySQL"
        [[destinations]]
        name = "b"
        configuration = "host=db"
        "#,
    );
    assert!(
        has_problem(&errors, "sources[1].name", "duplicate source name"),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "sources[1].configuration", "missing"),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "destinations[0].definition", "missing"),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "destinations[0].configuration", "expected a table"),
        "{errors}"
    );
}

#[test]
fn secrets_come_from_the_environment_or_a_file_and_never_show_in_debug() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let secret_file = dir.path().join("s3-secret");
    std::fs::write(&secret_file, "file-secret-Zq9\n").expect("written");
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [airbyte]
            base_url = "http://localhost:8000/api/v1"
            [[sources]]
            name = "ecommerce"
            definition = "Postgres"
            [sources.configuration]
            host = "db"
            password = "${{PG_PASSWORD}}"
            url = "postgres://airbyte:${{PG_PASSWORD}}@db/ecommerce"
            tunnel_method = {{ tunnel_method = "SSH_KEY_AUTH", ssh_key = {{ file = {:?} }} }}
            "#,
            secret_file.display()
        ),
    )
    .expect("written");
    let env = HashMap::from([("PG_PASSWORD".to_string(), "env-secret-Zq9".to_string())]);
    let config = load_with_env(&path, env).expect("valid");
    let configuration = &config.sources[0].configuration;
    let json = configuration.expose();
    assert_eq!(json["password"], "env-secret-Zq9");
    assert_eq!(
        json["url"],
        "postgres://airbyte:env-secret-Zq9@db/ecommerce"
    );
    assert_eq!(json["tunnel_method"]["ssh_key"], "file-secret-Zq9");
    assert!(configuration.is_secret("/password"));
    assert!(configuration.is_secret("/tunnel_method/ssh_key"));
    assert!(!configuration.is_secret("/host"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("Zq9"), "{shown}");
}

#[test]
fn an_unset_variable_or_unreadable_file_is_a_problem_naming_where_without_the_value() {
    let errors = problems(
        r#"
        [airbyte]
        base_url = "http://localhost:8000/api/v1"
        [[sources]]
        name = "ecommerce"
        definition = "Postgres"
        [sources.configuration]
        password = "hunter2-${CRONBYTE_TEST_SURELY_UNSET_VARIABLE}"
        ssl = { mode = "verify-full", ca_certificate = { file = "/nonexistent/ca.pem" } }
        "#,
    );
    assert!(
        has_problem(
            &errors,
            "sources[0].configuration.password",
            "the environment variable CRONBYTE_TEST_SURELY_UNSET_VARIABLE is not set"
        ),
        "{errors}"
    );
    assert!(
        has_problem(
            &errors,
            "sources[0].configuration.ssl.ca_certificate.file",
            "cannot read /nonexistent/ca.pem"
        ),
        "{errors}"
    );
    assert!(
        !format!("{errors}{errors:?}").contains("hunter2"),
        "{errors}"
    );
}

#[test]
fn a_pipeline_declared_in_yaml_reads_like_toml() {
    let c = from_str(
        "airbyte:\n  base_url: http://localhost:8000/api/v1\n\
         sources:\n  - name: ecommerce\n    definition: Postgres\n    configuration:\n      \
         host: db\n      port: 5432\n      ssl_mode: {mode: prefer}\n\
         destinations:\n  - name: bronze\n    definition: S3\n    configuration:\n      \
         format: {format_type: Parquet, compression_codec: SNAPPY}\n\
         connections:\n  - name: a\n    source: ecommerce\n    destination: bronze\n    \
         cron: '@daily'\n    streams:\n      - name: orders\n        sync_mode: incremental\n        \
         cursor_field: updated_at\n",
        Format::Yaml,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sources[0].configuration.expose()["port"], 5432);
    assert_eq!(
        c.destinations[0].configuration.expose()["format"]["compression_codec"],
        "SNAPPY"
    );
    let declared = c.connections[0].declared.as_ref().expect("declared");
    assert_eq!(declared.streams[0].name, "orders");
}

/// Writes `files` (name, text) into a temp dir and loads the first.
fn load_files(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a directory");
        }
        std::fs::write(path, text).expect("written");
    }
    let loaded = load_with_env(&dir.path().join(files[0].0), HashMap::new());
    (dir, loaded)
}

#[test]
fn an_included_file_adds_its_pipeline_after_the_main_files_connections() {
    let (_dir, loaded) = load_files(&[
        (
            "cronbyte.toml",
            "include = [\"pipelines/shop.yaml\"]\n[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n\
             [[connections]]\nname = \"legacy\"\nconnection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\"\n\
             cron = \"@daily\"\n",
        ),
        (
            "pipelines/shop.yaml",
            "sources:\n  - name: shop\n    definition: Postgres\n    configuration: {host: db}\n\
             destinations:\n  - name: lake\n    definition: S3\n    configuration: {s3_bucket_name: b}\n\
             connections:\n  - name: shop-to-lake\n    source: shop\n    destination: lake\n    \
             after: [legacy]\n    streams:\n      - name: orders\n",
        ),
    ]);
    let c = loaded.unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["legacy", "shop-to-lake"]);
    assert_eq!(c.sources[0].name, "shop");
    assert!(c.connections[1].declared.is_some());
}

#[test]
fn a_problem_in_an_included_file_names_the_file_and_its_own_entry() {
    let (dir, loaded) = load_files(&[
        (
            "cronbyte.toml",
            "include = [\"shop.toml\", \"missing.toml\", \"settings.toml\"]\n[airbyte]\n\
             base_url = \"http://localhost:8000/api/v1\"\n[[connections]]\nname = \"legacy\"\n\
             connection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\"\ncron = \"@daily\"\n",
        ),
        (
            "shop.toml",
            "[[connections]]\nname = \"shop\"\nconnection_id = \"1c6a8e52-7b3d-4f0e-9a1b-2c3d4e5f6a7b\"\n\
             cron = \"61 * * * *\"\n",
        ),
        ("settings.toml", "[workers]\npoll_interval = \"5s\"\n"),
    ]);
    let errors = loaded.expect_err("broken");
    let shop = dir.path().join("shop.toml").display().to_string();
    assert!(
        has_problem(
            &errors,
            &format!("{shop}: connections[0].cron"),
            "minute field"
        ),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "include[1]", "cannot read"),
        "{errors}"
    );
    assert!(
        has_problem(
            &errors,
            "include[2]",
            "`workers` can't be in an included file"
        ),
        "{errors}"
    );
}

/// A file whose Airbyte password file and source secret are not available, with `extra`
/// (the `[store]` and `[server]` sections under test) appended.
fn file_with_unavailable_secrets(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("cronbyte.toml");
    let text = format!(
        "[airbyte]\nbase_url = \"http://localhost:8001/api/v1\"\n\
         [airbyte.auth]\nkind = \"basic\"\nusername = \"u\"\npassword_file = \"{}\"\n\
         [[sources]]\nname = \"s\"\ndefinition = \"Postgres\"\n\
         [sources.configuration]\npassword = \"${{NOT_SET_ANYWHERE}}\"\n{extra}\n",
        dir.join("missing").display()
    );
    std::fs::write(&path, text).expect("written");
    path
}

#[test]
fn the_server_section_loads_with_its_token_file_whatever_the_other_secrets() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("token"), "s3cret-token\n").expect("written");
    let path = file_with_unavailable_secrets(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:9999\"\ntoken_file = \"{}\"",
            dir.path().join("token").display()
        ),
    );
    assert!(
        load_with_env(&path, HashMap::new()).is_err(),
        "the whole file is not valid"
    );
    let server = load_section(&path, HashMap::new(), Vec::new(), sections::read_server)
        .expect("[server] alone is valid");
    assert_eq!(server.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(
        server.token.as_ref().map(|t| t.expose_secret().to_owned()),
        Some("s3cret-token".to_owned())
    );
}

#[test]
fn one_section_gets_its_defaults_and_environment_overrides() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = file_with_unavailable_secrets(dir.path(), "");
    let env = HashMap::from([(
        "CRONBYTE__SERVER__LISTEN".to_owned(),
        "127.0.0.1:7000".to_owned(),
    )]);
    let server = load_section(&path, env, Vec::new(), sections::read_server).expect("valid");
    assert_eq!(server.listen.to_string(), "127.0.0.1:7000");
    assert!(server.token.is_none());
    let store =
        load_section(&path, HashMap::new(), Vec::new(), sections::read_store).expect("valid");
    assert_eq!(store.path, std::path::PathBuf::from("cronbyte.db"));
    assert!(sets_section("CRONBYTE__SERVER__LISTEN", "server"));
    assert!(sets_section("cronbyte__Store__path", "store"));
    assert!(!sets_section("CRONBYTE__AIRBYTE__AUTH__PASSWORD", "server"));
    assert!(!sets_section("CRONBYTE__SERVERS__LISTEN", "server"));
}

#[test]
fn a_broken_section_that_is_read_is_reported_with_its_key_paths() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = file_with_unavailable_secrets(
        dir.path(),
        &format!(
            "[server]\nlisten = \"everywhere\"\nlisen = \"x\"\ntoken_file = \"{}\"",
            dir.path().join("no-token").display()
        ),
    );
    let errors =
        load_section(&path, HashMap::new(), Vec::new(), sections::read_server).expect_err("broken");
    let paths: Vec<&str> = errors.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["server.listen", "server.token_file", "server.lisen"],
        "{errors}"
    );
    assert!(
        errors.to_string().contains("did you mean `listen`?"),
        "{errors}"
    );
}

/// Two instances, `eu` and `us`, with `body` appended.
fn two_instances(body: &str) -> String {
    format!(
        r#"
        [instances.eu]
        base_url = "http://airbyte-eu:8001/api/v1"
        workspace = "EU"
        [instances.eu.retry]
        max_retries = 2
        [instances.us]
        base_url = "https://api.airbyte.com/v1"
        api = "public"
        [instances.us.auth]
        kind = "bearer"
        token = "us-token"
        {body}
        "#
    )
}

#[test]
fn instances_tables_name_several_airbytes_and_each_entry_says_which_it_is_on() {
    let config = toml(&two_instances(
        r#"
        [[connections]]
        name = "orders"
        instance = "eu"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "0 * * * *"
        [[connections]]
        name = "billing"
        instance = "us"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5f"
        cron = "0 * * * *"
        "#,
    ));
    let names: Vec<&str> = config.instances.keys().map(String::as_str).collect();
    assert_eq!(names, ["eu", "us"]);
    let eu = &config.instances["eu"];
    assert_eq!(eu.base_url, "http://airbyte-eu:8001/api/v1");
    assert_eq!(eu.workspace.as_deref(), Some("EU"));
    assert_eq!(eu.retry.max_retries, 2);
    assert_eq!(eu.section, "instances.eu");
    let us = &config.instances["us"];
    assert_eq!(us.api, ApiKind::Public);
    assert!(matches!(&us.auth, Auth::Bearer { token } if token.expose_secret() == "us-token"));
    assert_eq!(config.connections[0].instance, "eu");
    assert_eq!(config.connections[1].instance, "us");
    assert_eq!(config.on_instance("us").connections.len(), 1);
    let us_part = config.on_instance("us");
    assert_eq!(us_part.instances.keys().collect::<Vec<_>>(), ["us"]);
    assert!(us_part.connections.iter().all(|c| c.instance == "us"));
}

#[test]
fn airbyte_alone_is_the_instance_named_default_and_entries_are_on_it() {
    let config = toml(&format!(
        "{MINIMAL}\n[[connections]]\nname = \"a\"\nconnection_id = \"9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e\"\ncron = \"0 * * * *\"\n"
    ));
    assert_eq!(
        config.instances.keys().collect::<Vec<_>>(),
        [DEFAULT_INSTANCE]
    );
    assert_eq!(config.airbyte().unwrap().section, "airbyte");
    assert_eq!(config.connections[0].instance, DEFAULT_INSTANCE);
}

#[test]
fn airbyte_and_instances_together_are_refused() {
    let errors = problems(&format!(
        "{MINIMAL}\n[instances.eu]\nbase_url = \"http://eu:8001/api/v1\"\n"
    ));
    assert!(has_problem(&errors, "airbyte", "not both"), "{errors}");
}

#[test]
fn an_unknown_instance_is_named_at_its_key_with_a_suggestion() {
    let errors = problems(&two_instances(
        r#"
        [[connections]]
        name = "orders"
        instance = "euw"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "0 * * * *"
        [[sources]]
        name = "pg"
        instance = "asia"
        definition = "Postgres"
        configuration = { host = "db" }
        "#,
    ));
    assert!(
        has_problem(
            &errors,
            "connections[0].instance",
            "no Airbyte instance is named \"euw\""
        ) && has_problem(&errors, "connections[0].instance", "did you mean \"eu\"")
            && has_problem(
                &errors,
                "connections[0].instance",
                "(the instances: eu, us)"
            ),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "sources[0].instance", "\"asia\""),
        "{errors}"
    );
}

#[test]
fn with_several_instances_and_none_named_default_an_entry_must_name_one() {
    let errors = problems(&two_instances(
        r#"
        [[connections]]
        name = "orders"
        connection_id = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"
        cron = "0 * * * *"
        "#,
    ));
    assert!(
        has_problem(&errors, "connections[0].instance", "eu, us"),
        "{errors}"
    );
}

#[test]
fn an_instance_name_is_lower_case_letters_digits_dashes_and_underscores() {
    let errors = problems("[instances.\"eu west\"]\nbase_url = \"http://eu:8001/api/v1\"\n");
    assert!(
        has_problem(&errors, "instances.eu west", "lower-case"),
        "{errors}"
    );
    toml("[instances.eu-west_2]\nbase_url = \"http://eu:8001/api/v1\"\n");
}

#[test]
fn an_incomplete_instance_is_reported_at_its_own_keys() {
    let errors = problems("[instances.eu]\napi = \"config\"\n[instances.us]\nbase_url = 5\n");
    assert!(
        has_problem(&errors, "instances.eu.base_url", "missing"),
        "{errors}"
    );
    assert!(
        has_problem(&errors, "instances.us.base_url", ""),
        "{errors}"
    );
}

#[test]
fn source_names_are_unique_per_instance_and_a_connection_joins_its_own_instance_s() {
    let source = |instance: &str| {
        format!(
            "[[sources]]\nname = \"pg\"\ninstance = \"{instance}\"\ndefinition = \"Postgres\"\nconfiguration = {{ host = \"db\" }}\n"
        )
    };
    let destination = "[[destinations]]\nname = \"lake\"\ninstance = \"us\"\ndefinition = \"S3\"\nconfiguration = { bucket = \"b\" }\n";
    // The same name on two instances is two sources.
    toml(&two_instances(&format!("{}{}", source("eu"), source("us"))));
    let errors = problems(&two_instances(&format!("{}{}", source("eu"), source("eu"))));
    assert!(
        has_problem(&errors, "sources[1].name", "on instance \"eu\""),
        "{errors}"
    );
    // A declared connection on `eu` cannot join a destination declared on `us`.
    let errors = problems(&two_instances(&format!(
        "{}{destination}[[connections]]\nname = \"pg-to-lake\"\ninstance = \"eu\"\nsource = \"pg\"\ndestination = \"lake\"\ncron = \"0 * * * *\"\n",
        source("eu")
    )));
    assert!(
        has_problem(
            &errors,
            "connections[0].destination",
            "no [[destinations]] entry on instance \"eu\" is named \"lake\""
        ),
        "{errors}"
    );
}

#[test]
fn an_environment_variable_reaches_an_instance_by_its_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(&path, two_instances("")).expect("written");
    let env = HashMap::from([(
        "CRONBYTE__INSTANCES__EU__BASE_URL".to_string(),
        "http://env-eu:8001/api/v1".to_string(),
    )]);
    let config = load_with_env(&path, env).expect("valid");
    assert_eq!(config.instances["eu"].base_url, "http://env-eu:8001/api/v1");
    assert_eq!(
        config.instances["us"].base_url,
        "https://api.airbyte.com/v1"
    );
}

#[test]
fn a_postgres_url_selects_that_store_and_takes_its_password_from_a_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let password = dir.path().join("store-password");
    std::fs::write(&password, "pg-Pass-77\n").expect("written");
    let config = toml(&format!(
        "{MINIMAL}\n[store]\nurl = \"postgres://cronbyte@db:5432/history\"\npassword_file = {:?}\n",
        password.display().to_string()
    ));
    let url = config.store.url.as_ref().expect("a url");
    assert_eq!(
        url.expose_secret(),
        "postgres://cronbyte:pg-Pass-77@db:5432/history"
    );
    assert!(!format!("{config:?}").contains("pg-Pass-77"));
}

#[test]
fn a_bad_store_url_is_named_at_its_key_without_showing_it() {
    for (url, fragment) in [
        ("mysql://root:hunter2@db/x", "postgres://"),
        ("not a url hunter2", "not a URL"),
        ("postgres://u:hunter2@db:port/x", "not a URL"),
    ] {
        let errors = problems(&format!("{MINIMAL}\n[store]\nurl = {url:?}\n"));
        assert!(
            has_problem(&errors, "store.url", fragment),
            "{url}: {errors}"
        );
        assert!(!errors.to_string().contains("hunter2"), "{errors}");
    }
    let errors = problems(&format!(
        "{MINIMAL}\n[store]\npath = \"x.db\"\nurl = \"postgres://db/x\"\n"
    ));
    assert!(has_problem(&errors, "store.path", "not both"), "{errors}");
    let errors = problems(&format!(
        "{MINIMAL}\n[store]\nurl = \"postgres://u:one@db/x\"\npassword = \"two\"\n"
    ));
    assert!(
        has_problem(&errors, "store.password", "one place"),
        "{errors}"
    );
}

#[test]
fn store_retention_is_a_duration_or_forever_and_never_zero_or_nonsense() {
    let read = |value: &str| {
        from_str(
            &format!("{MINIMAL}\n[store]\nretention = {value}\n"),
            Format::Toml,
        )
    };
    let kept = |value: &str| {
        read(value)
            .unwrap_or_else(|e| panic!("{e}"))
            .store
            .retention
    };
    assert_eq!(kept("\"30d\""), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(kept("\"forever\""), None);
    assert_eq!(kept("\"Forever\""), None);
    for (value, fragment) in [
        ("\"0s\"", "more than zero"),
        ("\"soon\"", "forever"),
        ("90", "with a unit"),
        ("\"1000years\"", "at most 100 years"),
    ] {
        let errors = problems(&format!("{MINIMAL}\n[store]\nretention = {value}\n"));
        assert!(
            has_problem(&errors, "store.retention", fragment),
            "{value}: {errors}"
        );
    }
}
