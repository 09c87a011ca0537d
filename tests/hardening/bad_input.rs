//! Bad input: property tests (proptest, since cargo-fuzz needs a nightly toolchain) for the
//! config loader and validator, the cron-rule parser, and the decoders of every Airbyte
//! answer. Whatever the input: no panic, no hang (each case must end within seconds), and
//! no secret in any message.
//!
//! The budget is fixed (the case counts below) and so is the seed, so CI runs the same
//! cases every time; failures found earlier are replayed first from
//! `tests/hardening/proptest-regressions/bad_input.txt`. Longer by hand, with fresh cases:
//! `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo test --release --test hardening bad_input`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronbyte::airbyte::{
    ApiKind, Auth, Client, ClientSettings, Error as AirbyteError, RetryPolicy,
};
use cronbyte::config::{self, Format};
use cronbyte::cron::CronRule;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, RngSeed};
use serde_json::{Value, json};

/// The seed of every generator here, unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 0x00c0_b17e_2026;

/// A value that marks secrets: it must never come out in a message.
const MARK: &str = "S3CRETMARK";

/// `cases` cases from the fixed seed, unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say
/// otherwise; failures are kept in (and replayed from) the regression file.
fn budget(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(
        "tests/hardening/proptest-regressions/bad_input.txt",
    )));
    config
}

/// Runs `f` on a thread and fails if it takes longer than `limit` (a hang); a panic in `f`
/// is a panic here, so proptest sees it and shrinks the input.
fn within<T: Send + 'static>(
    limit: Duration,
    what: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker ends by sending or by panicking"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung for over {limit:?}: {what}")
        }
    }
}

// ---------------------------------------------------------------------------
// Config

/// Every key of every section, and a few near misses.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "airbyte",
        &[
            "base_url",
            "api",
            "request_timeout",
            "connect_timeout",
            "workspace",
            "baseurl",
        ],
    ),
    (
        "airbyte.auth",
        &[
            "kind",
            "username",
            "password",
            "password_file",
            "token",
            "token_file",
            "client_id",
            "client_secret",
            "client_secret_file",
            "secret",
        ],
    ),
    (
        "airbyte.retry",
        &[
            "max_retries",
            "initial_backoff",
            "max_backoff",
            "max_elapsed",
            "retries",
        ],
    ),
    ("store", &["path", "paht"]),
    ("server", &["listen", "token", "token_file", "tokens"]),
    (
        "workers",
        &[
            "poll_interval",
            "max_concurrent_syncs",
            "poll_concurrency",
            "poll_intervall",
        ],
    ),
    (
        "defaults",
        &[
            "timezone",
            "timeout",
            "on_overlap",
            "misfire",
            "jitter",
            "retries",
            "retry_backoff",
            "retry_backoff_max",
        ],
    ),
    ("metrics", &["success_ratio_window"]),
    ("log", &["level", "format"]),
];

/// Keys of the `[[...]]` lists.
const LISTS: &[(&str, &[&str])] = &[
    (
        "connections",
        &[
            "name",
            "connection_id",
            "cron",
            "group",
            "enabled",
            "timezone",
            "timeout",
            "on_overlap",
            "misfire",
            "jitter",
            "retries",
            "retry_backoff",
            "retry_backoff_max",
            "after",
            "source",
            "destination",
            "namespace_definition",
            "namespace_format",
            "prefix",
            "status",
            "streams",
            "crn",
        ],
    ),
    ("groups", &["name", "max_concurrent"]),
    ("notify", &["url", "url_file", "kind", "on", "timeout"]),
    ("sources", &["name", "definition", "configuration"]),
    ("destinations", &["name", "definition", "configuration"]),
];

/// Keys whose values are secrets.
fn is_secret(key: &str) -> bool {
    matches!(key, "password" | "token" | "client_secret" | "url")
}

fn scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "10s",
            "0s",
            "-1s",
            "1ms",
            "500ms",
            "2h 30m",
            "1day",
            "99999999999999999d",
            "18446744073709551615s",
            "5 minutes",
            "",
            " ",
            "none",
            "config",
            "public",
            "skip",
            "attach",
            "queue",
            "run_once",
            "none",
            "basic",
            "bearer",
            "client_credentials",
            "json",
            "human",
            "slack",
            "generic",
            "failed",
            "recovered",
            "timed_out",
            "trigger_failed",
            "full_refresh",
            "incremental",
            "append",
            "append_dedup",
            "overwrite",
            "source",
            "destination",
            "customformat",
            "active",
            "inactive",
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "Mars/Olympus",
            "+05:00",
            "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e",
            "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5",
            "not-a-uuid",
            "http://localhost:8000/api/v1",
            "https://api.airbyte.com/v1",
            "ftp://example",
            "http://",
            "localhost:8000",
            "127.0.0.1:9464",
            "0.0.0.0:0",
            "[::1]:80",
            "256.0.0.1:1",
            "127.0.0.1:99999",
            "/nonexistent/secret",
            "/etc/hostname",
            "/dev/null",
            "/tmp",
            "relative/path",
            "${CRONBYTE_FUZZ_UNSET}",
            "${HOME}",
            "${",
            "0 0 12 * * ?",
            "* * * * *",
            "61 * * * *",
            "@daily",
            "@never",
            "0 0 30 2 *",
            "info",
            "debug,cronbyte=trace",
            "info,[",
            "a",
            "a,b",
            "ecommerce",
            "orders",
            "warehouse",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,40}",
        cron_rule(),
    ]
}

/// A JSON value as a config holds them: scalars, lists and small tables.
fn config_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => scalar_text().prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), Just(0), Just(-1), 0..200i64].prop_map(Value::from),
        1 => prop_oneof![any::<f64>().prop_filter("finite", |f| f.is_finite()), Just(0.5), Just(1e300)].prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for `key`: a secret key's value always carries the mark somewhere.
fn value_for(key: &'static str) -> BoxedStrategy<Value> {
    if is_secret(key) {
        prop_oneof![
            "[a-z0-9]{0,8}".prop_map(|s| Value::String(format!("{MARK}{s}"))),
            "[a-z0-9]{0,8}".prop_map(|s| Value::String(format!("https://hooks.example/{MARK}{s}"))),
            "[a-z0-9]{0,8}".prop_map(|s| json!([format!("{MARK}{s}"), 1])),
            "[a-z0-9]{0,8}".prop_map(|s| json!({ "value": format!("{MARK}{s}") })),
            "[a-z0-9]{0,8}".prop_map(|s| json!(format!("ftp://{MARK}{s}"))),
        ]
        .boxed()
    } else if key == "base_url" {
        prop_oneof![
            3 => config_value(),
            1 => "[a-z0-9]{0,8}".prop_map(|s| Value::String(format!("http://airbyte:{MARK}{s}@localhost:8000/api/v1"))),
        ]
        .boxed()
    } else if key == "configuration" {
        prop::collection::btree_map("[a-z_]{1,10}", config_value(), 0..4)
            .prop_flat_map(|m| {
                "[a-z0-9]{0,8}".prop_map(move |s| {
                    let mut m: serde_json::Map<String, Value> = m.clone().into_iter().collect();
                    m.insert("password".into(), Value::String(format!("{MARK}{s}")));
                    Value::Object(m)
                })
            })
            .boxed()
    } else {
        config_value().boxed()
    }
}

/// A table of some of `keys` (a key may be left out, or come with any value).
fn table_of(
    keys: &'static [&'static str],
) -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::vec(prop::sample::select(keys.to_vec()), 0..keys.len().min(8))
        .prop_flat_map(|chosen| {
            let values: Vec<BoxedStrategy<(String, Value)>> = chosen
                .into_iter()
                .map(|k| value_for(k).prop_map(move |v| (k.to_owned(), v)).boxed())
                .collect();
            values
        })
        .prop_map(|pairs| pairs.into_iter().collect())
}

/// A config document: some sections, some lists, values mostly plausible, often wrong.
/// A config table, and a named one.
type Table = serde_json::Map<String, Value>;
type Named<T> = BoxedStrategy<(String, T)>;

fn config_document() -> impl Strategy<Value = Value> {
    let sections: Vec<Named<Table>> = SECTIONS
        .iter()
        .map(|(name, keys)| {
            table_of(keys)
                .prop_map(move |t| ((*name).to_owned(), t))
                .boxed()
        })
        .collect();
    let lists: Vec<Named<Vec<Table>>> = LISTS
        .iter()
        .map(|(name, keys)| {
            prop::collection::vec(table_of(keys), 0..3)
                .prop_map(move |t| ((*name).to_owned(), t))
                .boxed()
        })
        .collect();
    (
        sections,
        lists,
        prop::collection::vec(any::<bool>(), SECTIONS.len() + LISTS.len()),
    )
        .prop_map(|(sections, lists, keep)| {
            let mut root = serde_json::Map::new();
            for (i, (name, table)) in sections.into_iter().enumerate() {
                if !keep[i] && name != "airbyte" {
                    continue;
                }
                // `airbyte.auth` and `airbyte.retry` nest under `airbyte`.
                let mut path = name.split('.');
                let top = path.next().unwrap_or_default().to_owned();
                match path.next() {
                    Some(sub) => {
                        let parent = root.entry(top).or_insert_with(|| json!({}));
                        if let Value::Object(parent) = parent {
                            parent.insert(sub.to_owned(), Value::Object(table));
                        }
                    }
                    None => {
                        let entry = root.entry(top).or_insert_with(|| json!({}));
                        if let Value::Object(entry) = entry {
                            entry.extend(table);
                        }
                    }
                }
            }
            for (i, (name, tables)) in lists.into_iter().enumerate() {
                if keep[SECTIONS.len() + i] {
                    root.insert(
                        name,
                        Value::Array(tables.into_iter().map(Value::Object).collect()),
                    );
                }
            }
            Value::Object(root)
        })
}

/// A TOML value literal, sometimes broken.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => scalar_text().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_owned()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => Just("1979-05-27T07:32:00Z".to_owned()),
        1 => Just("nan".to_owned()),
        1 => Just("inf".to_owned()),
        1 => Just("[1, \"two\", [3]]".to_owned()),
        1 => Just("{ file = \"/nonexistent/secret\" }".to_owned()),
        1 => Just("\"unterminated".to_owned()),
        1 => "\\PC{0,20}",
    ]
}

/// TOML text line by line: headers, `key = value` lines, and garbage.
fn toml_text() -> impl Strategy<Value = String> {
    let mut headers: Vec<String> = SECTIONS.iter().map(|(s, _)| format!("[{s}]")).collect();
    headers.extend(LISTS.iter().map(|(s, _)| format!("[[{s}]]")));
    headers.extend(
        [
            "[sources.configuration]",
            "[[connections.streams]]",
            "[airbyte",
            "[[]]",
            "[a.b.c]",
        ]
        .map(str::to_owned),
    );
    let keys: Vec<&'static str> = SECTIONS
        .iter()
        .chain(LISTS)
        .flat_map(|(_, k)| k.iter().copied())
        .collect();
    let line = prop_oneof![
        2 => prop::sample::select(headers),
        6 => (prop::sample::select(keys), toml_value(), "[a-z0-9]{0,6}").prop_map(|(k, v, s)| {
            // A secret key's value carries the mark, whatever its type.
            let v = match (is_secret(k), s.len() % 3) {
                (false, _) => v,
                (true, 0) => format!("\"{MARK}{s}\""),
                (true, 1) => format!("[\"{MARK}{s}\", 1]"),
                (true, _) => format!("{{ value = \"{MARK}{s}\" }}"),
            };
            format!("{k} = {v}")
        }),
        1 => "\\PC{0,30}",
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// Loads `text`; on success also asks for the warnings. Returns every message produced,
/// and the config's Debug text.
fn load(text: String, format: Format) -> (Vec<String>, String) {
    match config::from_str(&text, format) {
        Ok(config) => {
            let mut messages: Vec<String> = config
                .warnings()
                .into_iter()
                .map(|w| format!("{}: {}", w.path, w.message))
                .collect();
            messages.push(String::new());
            (messages, format!("{config:?}"))
        }
        Err(errors) => {
            let mut messages: Vec<String> = errors
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            messages.push(errors.to_string());
            (messages, String::new())
        }
    }
}

fn check_config(text: String, format: Format) -> Result<(), TestCaseError> {
    let (messages, debug) = within(Duration::from_secs(5), text.clone(), move || {
        load(text, format)
    });
    for message in &messages {
        prop_assert!(!message.contains(MARK), "a secret in a message: {message}");
    }
    prop_assert!(
        !debug.contains(MARK),
        "a secret in the config's Debug: {debug}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(budget(384))]

    /// Any text as TOML or YAML: a config or a list of problems, never a panic or a hang.
    #[test]
    fn any_text_loads_or_is_refused_with_problems(text in "\\PC{0,300}", yaml in any::<bool>()) {
        let format = if yaml { Format::Yaml } else { Format::Toml };
        check_config(text, format)?;
    }

    /// TOML made of real sections and keys with wrong, odd and right values.
    #[test]
    fn toml_configs_never_panic_or_show_a_secret(text in toml_text()) {
        check_config(text, Format::Toml)?;
    }

    /// YAML documents with every section and list, and secrets that must stay hidden.
    #[test]
    fn yaml_configs_never_panic_or_show_a_secret(doc in config_document()) {
        let text = serde_norway::to_string(&doc).expect("YAML writes");
        check_config(text, Format::Yaml)?;
    }

    /// The same documents with environment overrides on top, valid or not.
    #[test]
    fn environment_overrides_never_panic_or_show_a_secret(
        doc in config_document(),
        env in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec![
                        "CRONBYTE__AIRBYTE__BASE_URL", "CRONBYTE__AIRBYTE__AUTH__KIND", "CRONBYTE__AIRBYTE__AUTH__PASSWORD",
                        "CRONBYTE__AIRBYTE__AUTH__TOKEN", "CRONBYTE__SERVER__TOKEN", "CRONBYTE__WORKERS__POLL_INTERVAL",
                        "CRONBYTE__AIRBYTE__RETRY__MAX_RETRIES", "CRONBYTE__CONNECTIONS", "CRONBYTE__", "CRONBYTE____X",
                        "cronbyte__log__level", "CRONBYTE__A-B",
                    ]).prop_map(str::to_owned),
                    "CRONBYTE__[A-Z_]{1,20}",
                ],
                scalar_text(),
            ),
            0..4,
        ),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cronbyte.yaml");
        std::fs::write(&path, serde_norway::to_string(&doc).expect("YAML writes")).expect("written");
        let env: HashMap<String, String> = env
            .into_iter()
            .map(|(k, v)| {
                let secret = k.contains("PASSWORD") || k.contains("TOKEN");
                (k, if secret { format!("{MARK}{v}") } else { v })
            })
            .collect();
        let shown = format!("{env:?}");
        let messages = within(Duration::from_secs(5), shown, move || match config::load_with_env(&path, env) {
            Ok(config) => vec![format!("{config:?}")],
            Err(errors) => vec![errors.to_string()],
        });
        for message in messages {
            prop_assert!(!message.contains(MARK), "a secret shown: {message}");
        }
    }
}

// ---------------------------------------------------------------------------
// Cron rules

/// One field of a rule: what Quartz, Vixie and croner accept, and what they do not.
fn cron_field() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        3 => (0u32..70).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "*", "?", "L", "W", "LW", "5L", "15W", "3#2", "6#5", "0#1", "MON", "mon", "SUN", "FRI", "JAN", "dec", "FOO",
            "4294967296", "99999999999999999999", "-1", "", "*/0", "0/0", "1-", "-5", "5-1", "L-3", "#", "##", "1#9", "?/2",
        ]).prop_map(str::to_owned),
        1 => "\\PC{1,3}",
    ];
    let ranged = (
        atom.clone(),
        prop::option::of(atom.clone()),
        prop::option::of(0u32..100),
    )
        .prop_map(|(a, b, step)| {
            let mut f = a;
            if let Some(b) = b {
                f = format!("{f}-{b}");
            }
            if let Some(step) = step {
                f = format!("{f}/{step}");
            }
            f
        });
    prop::collection::vec(ranged, 1..4).prop_map(|parts| parts.join(","))
}

fn cron_rule() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (prop::collection::vec(cron_field(), 1..9), prop::sample::select(vec![" ", "  ", "\t", " \t "]))
            .prop_map(|(fields, sep)| fields.join(sep)),
        1 => prop::sample::select(vec![
            "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@reboot", "@", "@daily extra",
            "0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 * 2025", "0 0 12 * * ? 1970", "0 0 12 * * ? 5000", "0 0 0 1 1 ? 9999",
            "59 59 23 31 12 ? 5000", "* * * * * * *", "0 0 L * ?", "0 0 LW * ?", "0 0 ? * 6#5", "0 0 ? * L",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,40}",
    ]
}

/// An instant from 1970 to 2200: what a clock can say. (chrono itself panics converting
/// instants near its limits, some 262,000 years away, to a local time.)
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..7_258_118_400).prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range"))
}

proptest! {
    #![proptest_config(budget(512))]

    /// Any rule parses or is refused with a message naming it; a parsed rule's next and
    /// latest fire instants are where they must be, in every time zone.
    #[test]
    fn cron_rules_parse_or_are_refused_and_never_hang(
        expr in cron_rule(),
        tz in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()),
        t in instant(),
        back in 0i64..100_000_000,
    ) {
        let shown = format!("{expr:?} in {tz} at {t}");
        let outcome = within(Duration::from_secs(10), shown, move || {
            let rule = match CronRule::parse(&expr, tz) {
                Err(e) => return Err(e.to_string()),
                Ok(rule) => rule,
            };
            let since = t - chrono::Duration::seconds(back);
            Ok((rule.expr().to_owned(), expr, rule.next_after(t), rule.latest_at_or_before(t, since), since))
        });
        match outcome {
            Err(message) => prop_assert!(!message.is_empty()),
            Ok((kept, expr, next, latest, since)) => {
                prop_assert_eq!(kept, expr);
                if let Some(next) = next {
                    prop_assert!(next > t, "next_after({t}) = {next}");
                }
                if let Some(latest) = latest {
                    prop_assert!(latest <= t && latest >= since, "latest in [{since}, {t}] = {latest}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Airbyte answers

const ID: &str = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e";

fn attempt() -> Value {
    json!({
        "id": 0, "status": "failed", "createdAt": 1_700_000_000, "updatedAt": 1_700_000_100, "endedAt": 1_700_000_100,
        "bytesSynced": 5, "recordsSynced": 1,
        "totalStats": {"recordsEmitted": 2, "bytesEmitted": 20, "recordsCommitted": 1, "bytesCommitted": 5},
        "failureSummary": {"failures": [{"failureOrigin": "source", "failureType": "system_error",
            "externalMessage": "disk full", "internalMessage": "java.io.IOException", "timestamp": 1_700_000_100_000i64}]}
    })
}

fn job_read() -> Value {
    json!({
        "id": 7, "configType": "sync", "configId": ID, "createdAt": 1_700_000_000, "updatedAt": 1_700_000_100,
        "startedAt": 1_700_000_001, "status": "running",
        "aggregatedStats": {"recordsEmitted": 10, "bytesEmitted": 100, "recordsCommitted": 10, "bytesCommitted": 100}
    })
}

fn public_job() -> Value {
    json!({"jobId": 7, "status": "running", "jobType": "sync", "startTime": "2023-08-01T11:47Z", "connectionId": ID,
        "lastUpdatedAt": "2023-08-01T11:48:05Z", "duration": "PT1M", "bytesSynced": 1, "rowsSynced": 2})
}

fn actor(kind: &str) -> Value {
    json!({
        format!("{kind}Id"): ID, format!("{kind}DefinitionId"): ID, "workspaceId": ID, "name": "orders",
        format!("{kind}Name"): "Postgres", "connectionConfiguration": {"host": "db", "password": "**********"}
    })
}

fn connection_read() -> Value {
    json!({"connectionId": ID, "name": "orders", "sourceId": ID, "destinationId": ID, "status": "active",
        "syncCatalog": {"streams": [{"stream": {"name": "users", "jsonSchema": {}}, "config": {"selected": true}}]},
        "scheduleType": "manual", "workspaceId": ID})
}

/// Real answers of every shape the client reads, to mutate.
fn templates() -> Vec<Value> {
    vec![
        json!({"job": job_read(), "attempts": [{"attempt": attempt()}, {"attempt": attempt()}]}),
        json!({"jobs": [{"job": job_read(), "attempts": [attempt()]}], "totalJobCount": 1}),
        json!({"data": [public_job(), public_job()], "next": null, "previous": null}),
        public_job(),
        json!({"available": true}),
        json!({"workspaces": [{"workspaceId": ID, "name": "Default Workspace", "organizationId": ID}]}),
        json!({"sourceDefinitions": [{"sourceDefinitionId": ID, "name": "Postgres", "dockerRepository": "airbyte/source-postgres"}]}),
        json!({"destinationDefinitions": [{"destinationDefinitionId": ID, "name": "S3", "dockerImageTag": "1.0.0"}]}),
        actor("source"),
        json!({"sources": [actor("source")]}),
        actor("destination"),
        json!({"destinations": [actor("destination")]}),
        connection_read(),
        json!({"connections": [connection_read()]}),
        json!({"status": "succeeded", "message": null}),
        json!({"catalog": {"streams": []}, "catalogId": ID, "jobInfo": {"succeeded": false, "failureReason": {"externalMessage": "no"}}}),
        json!({"access_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig", "token_type": "Bearer", "expires_in": 900}),
        json!({"message": "A sync is already running for: x", "exceptionClassName": "ValueConflictKnownException"}),
        json!({"message": "Internal Server Error: Could not find job with id: 42", "exceptionClassName": "ConfigNotFoundException"}),
        json!({"errorId": "0b4e7a8e-5f1e-4b5a-9d0c-1f2e3d4c5b6a"}),
        json!({"status": 409, "type": "https://reference.airbyte.com/reference/errors#state-conflict", "title": "state-conflict",
            "detail": "Can only sync an active connection", "data": {"message": "m"}}),
    ]
}

/// Any JSON value, numbers at their edges included. Counts stay below 2^56 so that no
/// sum over a job's attempts can overflow: `counts_summed_over_attempts_do_not_overflow`
/// covers the edge (a known defect).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![0..(1i64 << 56), Just(-1i64), Just(i64::MIN), Just(0)].prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::String),
        prop::sample::select(vec![
            "succeeded",
            "failed",
            "cancelled",
            "running",
            "pending",
            "incomplete",
            "queued",
            "paused",
            "2023-08-01T11:47Z",
            "not a time",
            "**********",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        (1usize..20_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,16}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces (or removes) what `path` leads to in `value` with `with`.
fn mutate(value: &mut Value, path: &[usize], with: Option<Value>) {
    let Some((&step, rest)) = path.split_first() else {
        if let Some(with) = with {
            *value = with;
        }
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(step % map.len())
                .cloned()
                .unwrap_or_default();
            if rest.is_empty() && with.is_none() {
                map.remove(&key);
            } else if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, with);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = step % items.len();
            if rest.is_empty() && with.is_none() {
                items.remove(i);
            } else {
                mutate(&mut items[i], rest, with);
            }
        }
        _ => {
            if let Some(with) = with {
                *value = with;
            }
        }
    }
}

/// A real answer bent out of shape.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(templates()),
        prop::collection::vec(
            (
                prop::collection::vec(any::<usize>(), 0..5),
                prop::option::of(any_json()),
            ),
            0..6,
        ),
    )
        .prop_map(|(mut template, mutations)| {
            for (path, with) in mutations {
                mutate(&mut template, &path, with);
            }
            template.to_string().into_bytes()
        })
}

/// An answer body: a real one bent out of shape, cut short, or not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => mutated(),
        2 => (mutated(), any::<prop::sample::Index>()).prop_map(|(body, cut)| body[..cut.index(body.len() + 1)].to_vec()),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => Just(b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => Just(Vec::new()),
        1 => (1usize..5_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

/// What the canned server answers next.
#[derive(Clone)]
struct Canned {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Held while a test sets the canned answer and makes its call: tests run in parallel.
static TURN: Mutex<()> = Mutex::new(());

/// One server for every case, answering whatever the case put in `ANSWER`.
static ANSWER: LazyLock<Arc<Mutex<Canned>>> = LazyLock::new(|| {
    Arc::new(Mutex::new(Canned {
        status: 200,
        content_type: "application/json",
        body: Vec::new(),
    }))
});

static SERVER: LazyLock<(tokio::runtime::Runtime, String)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(|| async {
            let canned = ANSWER.lock().unwrap_or_else(|p| p.into_inner()).clone();
            axum::response::Response::builder()
                .status(canned.status)
                .header("content-type", canned.content_type)
                .body(axum::body::Body::from(canned.body))
                .expect("a response")
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    (runtime, base)
});

/// Clients without credentials, for the Config API and the public API.
static CLIENTS: std::sync::OnceLock<[Client; 2]> = std::sync::OnceLock::new();

/// The calls the engine and `plan`/`apply` make, on either API.
async fn call(client: &Client, which: u8) -> Result<String, AirbyteError> {
    let since = DateTime::from_timestamp(1_700_000_000, 0).expect("in range");
    Ok(match which % 20 {
        0 => format!("{:?}", client.trigger_sync(ID).await?),
        1 => format!("{:?}", client.poll_job(7).await?),
        2 => format!("{:?}", client.cancel_job(7).await?),
        3 => format!("{:?}", client.connection_jobs(ID, 5).await?),
        4 => format!(
            "{:?}",
            client
                .jobs_updated_since(&[ID.to_owned()], since, 200, 0)
                .await?
        ),
        5 => format!("{:?}", client.health().await?),
        6 => format!("{:?}", client.list_workspaces().await?),
        7 => format!("{:?}", client.list_workspaces_by_organization(ID).await?),
        8 => format!("{:?}", client.list_source_definitions().await?),
        9 => format!("{:?}", client.list_destination_definitions().await?),
        10 => format!("{:?}", client.get_source(ID).await?),
        11 => format!("{:?}", client.list_sources(ID).await?),
        12 => format!("{:?}", client.check_source(ID).await?),
        13 => format!("{:?}", client.discover_source_schema(ID).await?),
        14 => format!("{:?}", client.get_destination(ID).await?),
        15 => format!("{:?}", client.list_destinations(ID).await?),
        16 => format!("{:?}", client.get_connection(ID).await?),
        17 => format!("{:?}", client.list_connections(ID).await?),
        18 => format!("{:?}", client.delete_connection(ID).await?),
        _ => format!("{:?}", client.job(7).await?),
    })
}

fn client(base: &str, api: ApiKind, tokens: bool) -> Client {
    let mut settings = ClientSettings::new(
        match api {
            ApiKind::Config => format!("{base}/api/v1"),
            ApiKind::Public => format!("{base}/api/public/v1"),
        },
        api,
    );
    settings.request_timeout = Duration::from_secs(5);
    settings.retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    if tokens {
        settings.auth = Auth::ClientCredentials {
            client_id: "fuzz".into(),
            client_secret: format!("{MARK}-client-secret").into(),
        };
    }
    Client::new(settings).expect("client")
}

proptest! {
    #![proptest_config(budget(512))]

    /// Every answer of any status and body, to every call on both APIs: an answer or an
    /// error, never a panic or a hang; an error's text stays short (it goes to logs and
    /// the history) and 5xx-style failures stay retryable while 4xx ones do not.
    #[test]
    fn every_airbyte_answer_decodes_or_is_an_error(
        status in prop_oneof![
            4 => Just(200u16),
            1 => prop::sample::select(vec![201u16, 204, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504]),
            1 => 200u16..600,
        ],
        body in body(),
        html in any::<bool>(),
        which in any::<u8>(),
        public in any::<bool>(),
        tokens in prop::bool::weighted(0.1),
    ) {
        let (runtime, base) = &*SERVER;
        let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        *ANSWER.lock().unwrap_or_else(|p| p.into_inner()) = Canned {
            status,
            content_type: if html { "text/html" } else { "application/json" },
            body: body.clone(),
        };
        let api = if public { ApiKind::Public } else { ApiKind::Config };
        // A client caches its token, so a case about the token endpoint needs its own;
        // the others share one per API (building one loads every root certificate).
        let client = if tokens {
            client(base, api, true)
        } else {
            CLIENTS.get_or_init(|| [client(base, ApiKind::Config, false), client(base, ApiKind::Public, false)])
                [usize::from(public)]
                .clone()
        };
        let outcome = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), call(&client, which)).await
        });
        let Ok(outcome) = outcome else {
            return Err(TestCaseError::fail(format!("call {which} hung on {status} {}", String::from_utf8_lossy(&body))));
        };
        if let Err(error) = outcome {
            let text = error.to_string();
            // Text from a JSON body (an error's `message`, serde's complaint about a value)
            // is copied whole: a known defect, covered by
            // `an_error_stays_short_whatever_the_answer`. Other bodies are cut to an excerpt.
            if serde_json::from_slice::<Value>(&body).is_err() {
                let length = text.chars().count();
                prop_assert!(length <= 1_000, "an error of {length} chars: {text:.300}");
            }
            prop_assert!(!text.contains(MARK), "the client secret in an error: {text}");
            let retryable = error.is_retryable();
            // A throttled token endpoint is a known defect, covered on its own by
            // `a_throttled_token_endpoint_is_retried_not_taken_for_refused_credentials`.
            let throttled_token = tokens && matches!(status, 408 | 429);
            match status {
                _ if throttled_token => {}
                408 | 429 | 502..=504 => prop_assert!(retryable, "{status} not retryable: {text}"),
                400..=499 => prop_assert!(!retryable, "{status} retryable: {text}"),
                _ => {}
            }
        }
    }
}

/// Counts summed over a job's attempts must not overflow, whatever Airbyte reports.
#[test]
fn counts_summed_over_attempts_do_not_overflow() {
    let attempt = |records: u64| {
        json!({"attempt": {"id": 0, "status": "succeeded", "createdAt": 1_700_000_000, "updatedAt": 1_700_000_001,
            "totalStats": {"recordsCommitted": records, "bytesCommitted": records}}})
    };
    let mut job = job_read();
    job.as_object_mut()
        .expect("object")
        .remove("aggregatedStats");
    let body = json!({"job": job, "attempts": [attempt(u64::MAX), attempt(1)]});
    let (runtime, base) = &*SERVER;
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    *ANSWER.lock().unwrap_or_else(|p| p.into_inner()) = Canned {
        status: 200,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
    };
    let job = runtime
        .block_on(client(base, ApiKind::Config, false).poll_job(7))
        .expect("the answer decodes");
    assert_eq!(
        job.records_synced,
        Some(u64::MAX),
        "a saturated sum, not a wrapped one"
    );
}

/// A token endpoint answering 408 or 429 is throttling, not refusing the credentials: the
/// call must stay retryable (else a sync request fails as `trigger_failed`).
#[test]
fn a_throttled_token_endpoint_is_retried_not_taken_for_refused_credentials() {
    let (runtime, base) = &*SERVER;
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    for status in [408, 429] {
        *ANSWER.lock().unwrap_or_else(|p| p.into_inner()) = Canned {
            status,
            content_type: "application/json",
            body: br#"{"message":"slow down"}"#.to_vec(),
        };
        let error = runtime
            .block_on(client(base, ApiKind::Config, true).trigger_sync(ID))
            .expect_err("no token, no sync");
        assert!(
            error.is_retryable(),
            "{status} from the token endpoint: {error}"
        );
    }
}

/// Whatever Airbyte answers, the error made of it is short: it goes to the logs on every
/// retry and may end in the history.
#[test]
fn an_error_stays_short_whatever_the_answer() {
    let (runtime, base) = &*SERVER;
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let long = "x".repeat(1_000_000);
    let answers = [
        (200, json!({"job": {"id": long}, "attempts": []})),
        (
            400,
            json!({"message": long, "exceptionClassName": "InvalidInputException"}),
        ),
        (
            503,
            json!({"status": 503, "title": "unavailable", "detail": long}),
        ),
    ];
    for (status, body) in answers {
        *ANSWER.lock().unwrap_or_else(|p| p.into_inner()) = Canned {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        };
        let error = runtime
            .block_on(client(base, ApiKind::Config, false).poll_job(7))
            .expect_err("no job in that answer");
        let length = error.to_string().len();
        assert!(length <= 1_000, "{status}: an error of {length} bytes");
    }
}
