//! Broken configurations and the problems they must produce: each with the key path and a
//! fragment of the message, plus layering (env over file) and secrecy of messages.

use std::collections::HashMap;
use std::path::PathBuf;

use cronbyte::config::{self, ConfigErrors, Format};

/// A valid `[airbyte]` section, for cases about other sections.
const AIRBYTE: &str = r#"
[airbyte]
base_url = "http://localhost:8000/api/v1"
"#;

const ID_A: &str = "9f2b1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e";
const ID_B: &str = "1c6a8e52-7b3d-4f0e-9a1b-2c3d4e5f6a7b";

/// One broken configuration: what it is, its text, and the problem it must produce.
struct Case {
    what: &'static str,
    text: String,
    path: &'static str,
    fragment: &'static str,
}

fn case(
    what: &'static str,
    text: impl Into<String>,
    path: &'static str,
    fragment: &'static str,
) -> Case {
    Case {
        what,
        text: text.into(),
        path,
        fragment,
    }
}

/// `[airbyte]` plus `rest`.
fn with_airbyte(rest: &str) -> String {
    format!("{AIRBYTE}\n{rest}")
}

/// A `[[connections]]` entry with the given extra lines.
fn connection(name: &str, id: &str, extra: &str) -> String {
    format!("[[connections]]\nname = \"{name}\"\nconnection_id = \"{id}\"\n{extra}\n")
}

fn broken_configs() -> Vec<Case> {
    vec![
        case(
            "a cron rule with a minute out of range",
            with_airbyte(&connection("a", ID_A, r#"cron = "61 * * * *""#)),
            "connections[0].cron",
            "minute field `61`",
        ),
        case(
            "a cron rule with too few fields",
            with_airbyte(&connection("a", ID_A, r#"cron = "* * *""#)),
            "connections[0].cron",
            "has 3 field(s)",
        ),
        case(
            "a misspelt key in a connection",
            with_airbyte(&connection(
                "a",
                ID_A,
                "cron = \"@daily\"\ncrn = \"@daily\"",
            )),
            "connections[0].crn",
            "unknown key; did you mean `cron`?",
        ),
        case(
            "a misspelt section",
            with_airbyte("[worker]\npoll_interval = \"5s\""),
            "worker",
            "did you mean `workers`?",
        ),
        case(
            "a misspelt key in a section",
            with_airbyte("[workers]\npoll_intervall = \"5s\""),
            "workers.poll_intervall",
            "did you mean `poll_interval`?",
        ),
        case(
            "two connections with one name",
            with_airbyte(&format!(
                "{}{}",
                connection("a", ID_A, r#"cron = "@daily""#),
                connection("a", ID_B, r#"cron = "@daily""#)
            )),
            "connections[1].name",
            "duplicate name \"a\" (also connections[0])",
        ),
        case(
            "a connection id that is not a UUID",
            with_airbyte(&connection("a", "not-a-uuid", r#"cron = "@daily""#)),
            "connections[0].connection_id",
            "is not a UUID",
        ),
        case(
            "two connections with one connection id, written differently",
            with_airbyte(&format!(
                "{}{}",
                connection("a", ID_A, r#"cron = "@daily""#),
                connection("b", &ID_A.to_uppercase(), r#"cron = "@daily""#)
            )),
            "connections[1].connection_id",
            "duplicate connection_id",
        ),
        case(
            "a misspelt time zone",
            with_airbyte(&connection(
                "a",
                ID_A,
                "cron = \"@daily\"\ntimezone = \"Europe/Pari\"",
            )),
            "connections[0].timezone",
            "did you mean \"Europe/Paris\"?",
        ),
        case(
            "a duration with an unknown unit",
            with_airbyte("[workers]\npoll_interval = \"5 sex\""),
            "workers.poll_interval",
            "expected a duration such as \"10s\"",
        ),
        case(
            "a duration without a unit",
            with_airbyte("[metrics]\nsuccess_ratio_window = 3600"),
            "metrics.success_ratio_window",
            "expected a duration with a unit",
        ),
        case(
            "a string where a number belongs",
            with_airbyte("[workers]\nmax_concurrent_syncs = \"many\""),
            "workers.max_concurrent_syncs",
            "expected a whole number, found the string \"many\"",
        ),
        case(
            "no syncs allowed at all",
            with_airbyte("[workers]\nmax_concurrent_syncs = 0"),
            "workers.max_concurrent_syncs",
            "must be at least 1",
        ),
        case(
            "a negative retry count",
            with_airbyte("[defaults]\nretries = -1"),
            "defaults.retries",
            "must not be negative",
        ),
        case(
            "a cycle in after",
            with_airbyte(&format!(
                "{}{}",
                connection("a", ID_A, "cron = \"@daily\"\nafter = [\"b\"]"),
                connection("b", ID_B, r#"after = ["a"]"#)
            )),
            "connections[0].after",
            "cycle: a -> b -> a",
        ),
        case(
            "a connection after itself",
            with_airbyte(&connection("a", ID_A, "cron = \"@daily\"\nafter = [\"a\"]")),
            "connections[0].after",
            "cycle: a -> a",
        ),
        case(
            "after naming no connection",
            with_airbyte(&format!(
                "{}{}",
                connection("orders", ID_A, r#"cron = "@daily""#),
                connection("b", ID_B, r#"after = ["order"]"#)
            )),
            "connections[1].after[0]",
            "no connection is named \"order\"; did you mean \"orders\"?",
        ),
        case(
            "an unknown group",
            with_airbyte(&format!(
                "[[groups]]\nname = \"warehouse\"\nmax_concurrent = 1\n{}",
                connection("a", ID_A, "cron = \"@daily\"\ngroup = \"warehous\"")
            )),
            "connections[0].group",
            "no [[groups]] entry is named \"warehous\"; did you mean \"warehouse\"?",
        ),
        case(
            "a group without its limit",
            with_airbyte("[[groups]]\nname = \"g\""),
            "groups[0].max_concurrent",
            "missing",
        ),
        case(
            "a connection with neither cron nor after",
            with_airbyte(&connection("a", ID_A, "")),
            "connections[0].cron",
            "needs `cron`, `after`, or both",
        ),
        case(
            "a connection without an id",
            with_airbyte("[[connections]]\nname = \"a\"\ncron = \"@daily\""),
            "connections[0].connection_id",
            "missing",
        ),
        case(
            "an on_overlap word that does not exist",
            with_airbyte("[defaults]\non_overlap = \"atach\""),
            "defaults.on_overlap",
            "did you mean \"attach\"?",
        ),
        case(
            "a boolean written as a word",
            with_airbyte(&connection(
                "a",
                ID_A,
                "cron = \"@daily\"\nenabled = \"yes\"",
            )),
            "connections[0].enabled",
            "expected true or false",
        ),
        case(
            "a password given both inline and as a file",
            r#"
            [airbyte]
            base_url = "http://localhost:8000/api/v1"
            [airbyte.auth]
            kind = "basic"
            username = "u"
            password = "p"
            password_file = "/run/secrets/p"
            "#,
            "airbyte.auth.password",
            "either `password` or `password_file`, not both",
        ),
        case(
            "a password file that does not exist",
            r#"
            [airbyte]
            base_url = "http://localhost:8000/api/v1"
            [airbyte.auth]
            kind = "basic"
            username = "u"
            password_file = "/nonexistent/cronbyte/password"
            "#,
            "airbyte.auth.password_file",
            "cannot read /nonexistent/cronbyte/password",
        ),
        case(
            "basic auth without a password",
            r#"
            [airbyte]
            base_url = "http://localhost:8000/api/v1"
            [airbyte.auth]
            kind = "basic"
            username = "u"
            "#,
            "airbyte.auth.password",
            "kind = \"basic\" needs `password` or `password_file`",
        ),
        case(
            "a token left over after switching to basic auth",
            r#"
            [airbyte]
            base_url = "http://localhost:8000/api/v1"
            [airbyte.auth]
            kind = "basic"
            username = "u"
            password = "p"
            token = "t"
            "#,
            "airbyte.auth.token",
            "does not belong to kind = \"basic\"",
        ),
        case(
            "an auth kind that does not exist",
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[airbyte.auth]\nkind = \"oauth\"",
            "airbyte.auth.kind",
            "expected one of \"none\", \"basic\", \"bearer\", \"client_credentials\"",
        ),
        case(
            "no base_url",
            "[airbyte]\napi = \"public\"",
            "airbyte.base_url",
            "missing",
        ),
        case(
            "a base_url that is not http",
            "[airbyte]\nbase_url = \"ftp://airbyte/api/v1\"",
            "airbyte.base_url",
            "http:// or https://",
        ),
        case(
            "a base_url with credentials in it",
            "[airbyte]\nbase_url = \"https://user:pw@airbyte.example.com/api/v1\"",
            "airbyte.base_url",
            "must not contain credentials",
        ),
        case(
            "a zero request timeout",
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\nrequest_timeout = \"0s\"",
            "airbyte.request_timeout",
            "must be more than zero",
        ),
        case(
            "a retry backoff longer than its maximum",
            with_airbyte("[defaults]\nretry_backoff = \"2h\"\nretry_backoff_max = \"1h\""),
            "defaults.retry_backoff",
            "2h is more than retry_backoff_max (1h)",
        ),
        case(
            "a listen address that is a host name",
            with_airbyte("[server]\nlisten = \"localhost:9464\""),
            "server.listen",
            "expected an IP address and port",
        ),
        case(
            "a misspelt log level",
            with_airbyte("[log]\nlevel = \"inf0\""),
            "log.level",
            "did you mean \"info\"?",
        ),
        case(
            "log directives with a level that is not one",
            with_airbyte("[log]\nlevel = \"info,cronbyte=loud\""),
            "log.level",
            "not a valid log filter \"info,cronbyte=loud\"",
        ),
        case(
            "connections written as one table",
            with_airbyte("[connections]\nname = \"a\""),
            "connections",
            "expected a list of [[connections]] tables",
        ),
        case(
            "a section that is not a table",
            "airbyte = \"http://localhost:8000\"",
            "airbyte",
            "expected a table, found the string",
        ),
    ]
}

#[test]
fn every_broken_configuration_reports_its_problem_at_its_key() {
    let cases = broken_configs();
    assert!(
        cases.len() >= 30,
        "the issue asks for at least 30 broken configs"
    );
    let mut failures = Vec::new();
    for c in &cases {
        match config::from_str(&c.text, Format::Toml) {
            Ok(_) => failures.push(format!("{}: accepted", c.what)),
            Err(errors) => {
                let hit = errors
                    .problems
                    .iter()
                    .any(|p| p.path == c.path && p.message.contains(c.fragment));
                if !hit {
                    failures.push(format!(
                        "{}: expected `{}: ...{}...`, got:\n{errors}",
                        c.what, c.path, c.fragment
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// Writes `text` to a file named `name` in a fresh directory.
fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("written");
    (dir, path)
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_broken_yaml_file_reports_its_problems_by_key_path() {
    let (_dir, path) = file(
        "cronbyte.yaml",
        &format!(
            "airbyte:\n  base_url: http://localhost:8000/api/v1\nconnections:\n  - name: a\n    \
             connection_id: {ID_A}\n    cron: '0 0 25 * * ?'\n    crn: x\n"
        ),
    );
    let errors = config::load_with_env(&path, HashMap::new()).expect_err("broken");
    assert!(errors.has("connections[0].cron"), "{errors}");
    assert!(errors.has("connections[0].crn"), "{errors}");
    assert!(errors.to_string().contains("hour field `25`"), "{errors}");
}

#[test]
fn a_yaml_file_that_does_not_parse_is_one_problem_naming_the_file() {
    let (_dir, path) = file("cronbyte.yml", "airbyte:\n  base_url: [unclosed\n");
    let errors = config::load_with_env(&path, HashMap::new()).expect_err("broken");
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert_eq!(errors.problems[0].path, path.display().to_string());
    assert!(
        errors.problems[0].message.contains("not valid YAML"),
        "{errors}"
    );
}

#[test]
fn a_missing_file_is_one_problem_naming_the_file() {
    let path = PathBuf::from("/nonexistent/cronbyte.toml");
    let errors = config::load_with_env(&path, HashMap::new()).expect_err("missing");
    assert_eq!(errors.problems.len(), 1);
    assert_eq!(errors.problems[0].path, "/nonexistent/cronbyte.toml");
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/cronbyte.toml: cannot read"),
        "{errors}"
    );
}

#[test]
fn a_toml_file_that_does_not_parse_is_one_problem_naming_the_file() {
    let (_dir, path) = file("cronbyte.toml", "[airbyte\nbase_url = 1\n");
    let errors = config::load_with_env(&path, HashMap::new()).expect_err("broken");
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert_eq!(errors.problems[0].path, path.display().to_string());
    assert!(
        errors.problems[0].message.contains("not valid TOML"),
        "{errors}"
    );
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let text = format!(
        r#"
        [airbyte]
        request_timeout = "soon"
        [workers]
        max_concurrent_syncs = "many"
        [defaults]
        timezone = "Mars/Olympus"
        [[connections]]
        name = "a"
        connection_id = "nope"
        cron = "99 * * * *"
        crn = "x"
        [[connections]]
        name = "a"
        connection_id = "{ID_B}"
        after = ["zzz"]
        "#
    );
    let errors = config::from_str(&text, Format::Toml).expect_err("broken");
    let paths: Vec<&str> = errors.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "airbyte.base_url",
        "airbyte.request_timeout",
        "workers.max_concurrent_syncs",
        "defaults.timezone",
        "connections[0].connection_id",
        "connections[0].cron",
        "connections[0].crn",
        "connections[1].name",
        "connections[1].after[0]",
    ] {
        assert!(
            paths.contains(&expected),
            "no problem at {expected}:\n{errors}"
        );
    }
    // One line per problem.
    assert_eq!(errors.to_string().lines().count(), errors.problems.len());
}

#[test]
fn the_environment_overrides_the_file() {
    let (_dir, path) = file(
        "cronbyte.toml",
        "[airbyte]\nbase_url = \"http://file/api/v1\"\n[workers]\npoll_interval = \"30s\"\n",
    );
    let config = config::load_with_env(
        &path,
        env(&[
            ("CRONBYTE__AIRBYTE__BASE_URL", "http://env:8001/api/v1"),
            ("CRONBYTE__WORKERS__POLL_INTERVAL", "5s"),
            ("cronbyte__log__format", "json"),
            ("UNRELATED", "ignored"),
        ]),
    )
    .expect("valid");
    assert_eq!(config.airbyte().unwrap().base_url, "http://env:8001/api/v1");
    assert_eq!(
        config.workers.poll_interval,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(config.log.format, config::LogFormat::Json);
}

#[test]
fn an_environment_value_for_a_number_is_read_as_a_number() {
    let (_dir, path) = file("cronbyte.toml", AIRBYTE);
    let config = config::load_with_env(
        &path,
        env(&[
            ("CRONBYTE__AIRBYTE__RETRY__MAX_RETRIES", "5"),
            ("CRONBYTE__WORKERS__MAX_CONCURRENT_SYNCS", "007"),
            ("CRONBYTE__AIRBYTE__WORKSPACE", "000123"),
        ]),
    )
    .expect("valid");
    assert_eq!(config.airbyte().unwrap().retry.max_retries, 5);
    assert_eq!(config.workers.max_concurrent_syncs, 7);
    // Strings stay strings: no "000123" → 123.
    assert_eq!(
        config.airbyte().unwrap().workspace.as_deref(),
        Some("000123")
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let (_dir, path) = file("cronbyte.toml", AIRBYTE);
    let errors = config::load_with_env(
        &path,
        env(&[
            ("CRONBYTE__WORKERS__POLL_INTERVAL", "often"),
            ("CRONBYTE__WORKERS__POLL_INTERVALL", "5s"),
        ]),
    )
    .expect_err("broken");
    let text = errors.to_string();
    assert!(
        text.contains("workers.poll_interval: expected a duration")
            && text.contains("CRONBYTE__WORKERS__POLL_INTERVAL)"),
        "{text}"
    );
    assert!(
        text.contains("workers.poll_intervall: unknown key; did you mean `poll_interval`?"),
        "{text}"
    );
}

#[test]
fn connections_can_not_come_from_the_environment() {
    let (_dir, path) = file("cronbyte.toml", AIRBYTE);
    let errors = config::load_with_env(&path, env(&[("CRONBYTE__CONNECTIONS__NAME", "a")]))
        .expect_err("broken");
    assert!(errors.has("connections"), "{errors}");
    assert!(
        errors
            .to_string()
            .contains("can't be set through environment variables"),
        "{errors}"
    );
}

/// Every problem's text, for searching.
fn all_text(errors: &ConfigErrors) -> String {
    format!("{errors}\n{errors:?}")
}

#[test]
fn a_secret_never_appears_in_a_problem() {
    const SECRET: &str = "hunter2-Zq9";
    let (_dir, secret_file) = file("secret", &format!("{SECRET}\n"));
    let secret_file = secret_file.display();
    let texts = [
        // Inline and file both given.
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[airbyte.auth]\nkind = \"basic\"\n\
             username = \"u\"\npassword = \"{SECRET}\"\npassword_file = \"{secret_file}\"\n"
        ),
        // A secret under the wrong kind.
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[airbyte.auth]\nkind = \"bearer\"\n\
             token = \"t\"\nclient_secret = \"{SECRET}\"\nclient_secret_file = \"{secret_file}\"\n"
        ),
        // A secret file under no kind, and a server token with its file.
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[airbyte.auth]\n\
             password_file = \"{secret_file}\"\n[server]\ntoken = \"{SECRET}\"\n\
             token_file = \"{secret_file}\"\n"
        ),
        // A secret in a URL.
        format!("[airbyte]\nbase_url = \"http://u:{SECRET}@airbyte/api/v1\"\n"),
        // A secret on a line that does not parse.
        format!("[airbyte.auth]\npassword = \"{SECRET}\n"),
        // A secret misspelt as an unknown key, and a secret of the wrong type.
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[airbyte.auth]\nkind = \"bearer\"\n\
             tokn = \"{SECRET}\"\ntoken = [\"{SECRET}\"]\n"
        ),
    ];
    for text in &texts {
        let errors = config::from_str(text, Format::Toml).expect_err("broken");
        let shown = all_text(&errors);
        assert!(!shown.contains(SECRET), "the secret leaked:\n{shown}");
    }

    // From the environment too.
    let (_dir2, path) = file("cronbyte.toml", AIRBYTE);
    let errors = config::load_with_env(
        &path,
        env(&[
            ("CRONBYTE__AIRBYTE__AUTH__TOKEN", SECRET),
            ("CRONBYTE__AIRBYTE__AUTH__PASSWORD", SECRET),
        ]),
    )
    .expect_err("no kind");
    assert!(!all_text(&errors).contains(SECRET), "{errors}");
}

#[test]
fn the_example_file_loads_from_disk_and_validates() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/cronbyte.example.toml");
    let config = config::load_with_env(&path, HashMap::new()).expect("the example validates");
    assert_eq!(config.connections.len(), 2);
}
