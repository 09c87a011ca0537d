//! The `cronbyte` binary as operators use it: `check`, `history`, the commands
//! that talk to a running daemon, completions, and `run` stopping on SIGTERM.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cronbyte::config::{self, Format};
use cronbyte::daemon::Daemon;
use cronbyte::emulator::{Emulator, EmulatorOptions, JobPlan};
use cronbyte::run::{NewRun, Outcome, Progress, RunStatus, Trigger};
use cronbyte::store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

fn cronbyte(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(args)
        .env_remove("CRONBYTE_CONFIG")
        .env_remove("CRONBYTE_TOKEN")
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `check` lists every problem, each with its key path, and exits 2.
#[test]
fn check_reports_every_problem_with_its_key_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[airbyte]
base_url = "http://localhost:8001/api/v1"
[workers]
poll_intervall = "10s"
[[connections]]
name = "orders"
connection_id = "not-a-uuid"
cron = "61 * * * *"
"#,
    )
    .unwrap();
    let output = cronbyte(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("workers.poll_intervall"), "{text}");
    assert!(text.contains("poll_interval"), "did-you-mean: {text}");
    assert!(text.contains("connections[0].connection_id"), "{text}");
    assert!(text.contains("connections[0].cron"), "{text}");
}

/// The documented example config passes `check`.
#[test]
fn the_default_config_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    let example = cronbyte(&["default-config"]);
    assert!(example.status.success());
    std::fs::write(&path, &example.stdout).unwrap();
    let output = cronbyte(&["check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("OK"));
}

/// `history --format json` prints one object per line with the documented keys.
#[tokio::test]
async fn history_prints_one_json_object_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("history.db");
    let store = SqliteStore::open(&store_path).await.unwrap();
    for (i, connection) in ["orders", "customers", "orders"].iter().enumerate() {
        store
            .claim(NewRun {
                connection: (*connection).into(),
                connection_id: "0b9c8f1e-1111-4222-8333-944455556666".into(),
                instance: "default".into(),
                trigger: Trigger::Schedule,
                scheduled_for: chrono::DateTime::from_timestamp(1_800_000_000 + i as i64, 0)
                    .unwrap(),
                retry_of: None,
                claimed_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    store.close().await;
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(
        &config,
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8001/api/v1\"\n[store]\npath = \"{}\"\n",
            store_path.display()
        ),
    )
    .unwrap();
    let output = cronbyte(&[
        "history",
        "--config",
        config.to_str().unwrap(),
        "--connection",
        "orders",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for key in [
        "run_id",
        "connection",
        "connection_id",
        "instance",
        "job_id",
        "trigger",
        "scheduled_for",
        "started_at",
        "finished_at",
        "status",
        "attempts",
        "records_synced",
        "bytes_synced",
        "error",
    ] {
        assert!(lines[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(lines[0]["scheduled_for"], "2027-01-15T08:00:02Z");
    assert_eq!(lines[0]["trigger"], "schedule");
    assert_eq!(lines[0]["status"], "pending");
    assert_eq!(lines[0]["instance"], "default");
    let table = cronbyte(&["history", "--config", config.to_str().unwrap()]);
    assert!(stdout(&table).starts_with("RUN"), "{}", stdout(&table));
}

/// `status`, `trigger` and `pause` talk to a running daemon; an unreachable one
/// is a clear error and a non-zero exit.
#[tokio::test]
async fn control_commands_reach_a_running_daemon_and_say_when_they_cannot() {
    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .unwrap();
    let id = emulator.control().add_connection("orders");
    emulator
        .control()
        .set_plan(id, JobPlan::succeeding(Duration::from_millis(200), 1, 1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        format!(
            "[airbyte]\nbase_url = \"{}\"\n[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 1 1 *\"\n",
            emulator.config_api_base(),
            dir.path().join("history.db").display()
        ),
    )
    .unwrap();
    let config = config::load(&path).unwrap();
    let daemon = Daemon::build(config).await.unwrap();
    let url = format!("http://{}", daemon.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    let config_arg = path.to_str().unwrap().to_owned();

    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cronbyte(&args)
        })
    };
    let with = |cmd: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--config".into(),
            config_arg.clone(),
            "--url".into(),
            url.clone(),
        ]);
        args
    };
    let status = run(with(&["status"])).await.unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("orders"), "{}", stdout(&status));
    let trigger = run(with(&["trigger", "orders", "--format", "json"]))
        .await
        .unwrap();
    assert!(trigger.status.success(), "{}", stderr(&trigger));
    let answer: serde_json::Value = serde_json::from_str(stdout(&trigger).trim()).unwrap();
    assert_eq!(answer["run"]["trigger"], "manual");
    let pause = run(with(&["pause", "orders"])).await.unwrap();
    assert!(pause.status.success(), "{}", stderr(&pause));
    let unknown = run(with(&["trigger", "nope"])).await.unwrap();
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("nope"), "{}", stderr(&unknown));

    shutdown.cancel();
    task.await.unwrap().unwrap();
    let unreachable = run(with(&["status"])).await.unwrap();
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("cannot reach the cronbyte daemon"),
        "{}",
        stderr(&unreachable)
    );
}

/// Shell completions are printed for bash, zsh and fish.
#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = cronbyte(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        assert!(stdout(&output).contains("trigger"), "{shell}");
    }
}

/// `cronbyte run` exits 0 within 10 s of SIGTERM.
#[cfg(unix)]
#[tokio::test]
async fn run_exits_cleanly_within_ten_seconds_of_sigterm() {
    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .unwrap();
    let id = emulator.control().add_connection("orders");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    let text = format!(
        "[airbyte]\nbase_url = \"{}\"\n[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
         [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"* * * * * *\"\n",
        emulator.config_api_base(),
        dir.path().join("history.db").display()
    );
    config::from_str(&text, Format::Toml).unwrap();
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it fire a few ticks so jobs are in flight.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(child.try_wait().unwrap().is_none(), "the daemon is running");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        !emulator.control().jobs().is_empty(),
        "the daemon did trigger syncs"
    );
}

/// The name of an environment variable no test sets: a secret that is not available.
const UNSET_SECRET: &str = "CRONBYTE_TEST_SECRET_THAT_IS_NEVER_SET";

/// A config whose Airbyte password file does not exist and whose source reads a secret
/// from an unset variable, with `[store]` and `[server]` sections of its own.
fn config_with_unavailable_secrets(dir: &std::path::Path, store_and_server: &str) -> String {
    format!(
        "[airbyte]\nbase_url = \"http://localhost:8001/api/v1\"\n\
         [airbyte.auth]\nkind = \"basic\"\nusername = \"airbyte\"\n\
         password_file = \"{}\"\n\
         {store_and_server}\n\
         [[sources]]\nname = \"ecommerce\"\ndefinition = \"Postgres\"\n\
         [sources.configuration]\nhost = \"postgres.internal\"\npassword = \"${{{UNSET_SECRET}}}\"\n",
        dir.join("no-such-password-file").display(),
    )
}

/// `migrate` and `history` read only `[store]`: an Airbyte password file the operator
/// cannot read and a source secret that is not set do not stop them, while `check` (which
/// reads everything) still reports both.
#[test]
fn history_and_migrate_run_without_the_secrets_they_do_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("history.db");
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        config_with_unavailable_secrets(
            dir.path(),
            &format!("[store]\npath = \"{}\"", store.display()),
        ),
    )
    .unwrap();
    let config_arg = path.to_str().unwrap();

    let migrate = cronbyte(&["migrate", "--config", config_arg]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stdout(&migrate).contains("migration(s) applied"),
        "{}",
        stdout(&migrate)
    );
    assert!(store.exists(), "migrate created the store at [store].path");

    let history = cronbyte(&["history", "--config", config_arg]);
    assert!(history.status.success(), "{}", stderr(&history));
    assert!(
        stdout(&history).contains("(no runs yet)"),
        "{}",
        stdout(&history)
    );

    let check = cronbyte(&["check", "--config", config_arg]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    let text = stderr(&check);
    assert!(text.contains("airbyte.auth.password_file"), "{text}");
    assert!(text.contains("sources[0].configuration.password"), "{text}");
    assert!(text.contains(UNSET_SECRET), "{text}");
}

/// `history` still refuses a `[store]` section it cannot read, naming the key path.
#[test]
fn history_names_the_key_path_of_a_broken_store_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        config_with_unavailable_secrets(dir.path(), "[store]\npath = 5\npaht = \"x.db\""),
    )
    .unwrap();
    let output = cronbyte(&["history", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("store.path: expected a string"), "{text}");
    assert!(text.contains("store.paht: unknown key"), "{text}");
    assert!(
        !text.contains("airbyte.auth"),
        "only [store] is read: {text}"
    );
    assert!(!text.contains(UNSET_SECRET), "only [store] is read: {text}");
}

/// `status` reads `[server]` and the control token (here from a file) and nothing else:
/// unavailable Airbyte and source secrets do not stop it from asking the daemon.
#[tokio::test]
async fn control_commands_run_without_the_secrets_they_do_not_use() {
    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .unwrap();
    let id = emulator.control().add_connection("orders");
    let dir = tempfile::tempdir().unwrap();
    let daemon_config = config::from_str(
        &format!(
            "[airbyte]\nbase_url = \"{}\"\n[store]\npath = \"{}\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken-from-a-file\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 1 1 *\"\n",
            emulator.config_api_base(),
            dir.path().join("history.db").display()
        ),
        Format::Toml,
    )
    .unwrap();
    let daemon = Daemon::build(daemon_config).await.unwrap();
    let url = format!("http://{}", daemon.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));

    let token_file = dir.path().join("control-token");
    std::fs::write(&token_file, "t0ken-from-a-file\n").unwrap();
    let path = dir.path().join("operator.toml");
    std::fs::write(
        &path,
        config_with_unavailable_secrets(
            dir.path(),
            &format!("[server]\ntoken_file = \"{}\"", token_file.display()),
        ),
    )
    .unwrap();
    let args: Vec<String> = ["status", "--config", path.to_str().unwrap(), "--url", &url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let status = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cronbyte(&args)
    })
    .await
    .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("orders"), "{}", stdout(&status));
    assert!(
        !stdout(&status).contains("t0ken"),
        "the token is never printed"
    );
    assert!(
        !stderr(&status).contains("t0ken"),
        "the token is never printed"
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Runs the daemon with stderr piped (as systemd and log shippers see it) until it has
/// logged, then stops it and returns what it wrote to stderr.
#[cfg(unix)]
async fn stderr_of_a_daemon_with(log_section: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        format!(
            "[airbyte]\nbase_url = \"http://127.0.0.1:9/api/v1\"\n[store]\npath = \"{}\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\n{log_section}\n",
            dir.path().join("history.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "it stops");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut logged = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut logged).unwrap();
    logged
}

/// Log lines written to a pipe (the journal, a log shipper) carry no ANSI escape codes,
/// in the human format and in JSON.
#[cfg(unix)]
#[tokio::test]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let mut coloured = Vec::new();
    for format in ["human", "json"] {
        let logged = stderr_of_a_daemon_with(&format!("[log]\nformat = \"{format}\"")).await;
        let text = String::from_utf8_lossy(&logged).into_owned();
        assert!(text.contains("cronbyte stopped"), "{format}: {text}");
        if logged.contains(&0x1b) {
            coloured.push(format!("{format}: {text:?}"));
        }
    }
    assert!(coloured.is_empty(), "ESC bytes in the log:\n{coloured:#?}");
}

/// Once older runs were pruned, `history` says so (and when), after the runs.
#[tokio::test]
async fn history_says_when_older_runs_were_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("history.db");
    let store = SqliteStore::open(&store_path).await.unwrap();
    for i in 0..3 {
        let run = store
            .claim(NewRun {
                connection: "orders".into(),
                connection_id: "0b9c8f1e-1111-4222-8333-944455556666".into(),
                instance: "default".into(),
                trigger: Trigger::Schedule,
                scheduled_for: chrono::DateTime::from_timestamp(1_800_000_000 + i, 0).unwrap(),
                retry_of: None,
                claimed_at: chrono::Utc::now(),
            })
            .await
            .unwrap()
            .unwrap();
        let outcome = Outcome {
            status: RunStatus::Succeeded,
            finished_at: chrono::DateTime::from_timestamp(1_800_000_100 + i, 0).unwrap(),
            progress: Progress::default(),
            error: None,
        };
        store
            .finish(&[cronbyte::store::Closing::only(run.id, outcome)])
            .await
            .unwrap();
    }
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(
        &config,
        format!(
            "[airbyte]\nbase_url = \"http://localhost:8001/api/v1\"\n[store]\npath = \"{}\"\nretention = \"30d\"\n",
            store_path.display()
        ),
    )
    .unwrap();
    let history = || cronbyte(&["history", "--config", config.to_str().unwrap()]);
    let before = history();
    assert!(before.status.success(), "{}", stderr(&before));
    assert!(!stdout(&before).contains("pruned"), "{}", stdout(&before));

    let cut = chrono::DateTime::from_timestamp(1_800_000_102, 0).unwrap();
    assert_eq!(store.prune(cut, 10).await.unwrap(), 2);
    store.close().await;
    let after = history();
    assert!(after.status.success(), "{}", stderr(&after));
    assert!(
        stdout(&after).contains(
            "runs that ended before 2027-01-15T08:01:42Z were pruned (retention 30d; last pruned"
        ),
        "{}",
        stdout(&after)
    );
}

/// `next` reads only `[defaults]` and `[[connections]]`: with secrets that are not
/// available it prints the rule's next instants in its zone and in UTC, the offset
/// change of a DST day on its own line, and a bad `--count` or an unknown name is
/// an error saying what is wrong.
#[test]
fn next_prints_fire_instants_in_zone_and_utc_without_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    let mut text = config_with_unavailable_secrets(dir.path(), "");
    text.push_str(
        "[defaults]\ntimezone = \"Europe/Berlin\"\n\
         [[connections]]\nname = \"hourly\"\nconnection_id = \"4b5c6d7e-0000-4000-8000-000000000001\"\n\
         cron = \"0 * * * *\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let config_arg = path.to_str().unwrap();

    let next = cronbyte(&["next", "hourly", "--config", config_arg, "--count", "3"]);
    assert!(next.status.success(), "{}", stderr(&next));
    let out = stdout(&next);
    assert!(
        out.starts_with("hourly: `0 * * * *` in Europe/Berlin\n"),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.ends_with("Z")).count(), 3, "{out}");
    assert!(
        out.contains(":00:00 +0"),
        "local times carry their offset: {out}"
    );

    let json = cronbyte(&[
        "next", "hourly", "--config", config_arg, "-n", "2", "--format", "json",
    ]);
    let lines: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["timezone"], "Europe/Berlin");

    let unknown = cronbyte(&["next", "hourli", "--config", config_arg]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("did you mean `hourly`?"),
        "{}",
        stderr(&unknown)
    );
    let zero = cronbyte(&["next", "hourly", "--config", config_arg, "--count", "0"]);
    assert!(!zero.status.success());
    assert!(stderr(&zero).contains("--count"), "{}", stderr(&zero));
}

/// `watch`, piped, prints plain lines: the next syncs due, a running sync's
/// records, its end; an unknown name is an error naming it; Ctrl-C (SIGINT)
/// ends it at once with success.
#[tokio::test]
async fn watch_prints_plain_lines_when_piped_and_ends_cleanly_on_ctrl_c() {
    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .unwrap();
    let id = emulator.control().add_connection("orders");
    emulator.control().set_plan(
        id,
        JobPlan::succeeding(Duration::from_millis(1_500), 90_000, 9_000_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronbyte.toml");
    std::fs::write(
        &path,
        format!(
            "[airbyte]\nbase_url = \"{}\"\n[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n[workers]\npoll_interval = \"200ms\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 1 1 *\"\n",
            emulator.config_api_base(),
            dir.path().join("history.db").display()
        ),
    )
    .unwrap();
    let daemon = Daemon::build(config::load(&path).unwrap()).await.unwrap();
    let url = format!("http://{}", daemon.local_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    let config_arg = path.to_str().unwrap().to_owned();

    // The daemon runs on this test's runtime: the binary is waited for off it.
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cronbyte(&args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let unknown = run(args(&[
        "watch",
        "ordres",
        "--config",
        &config_arg,
        "--url",
        &url,
    ]))
    .await
    .unwrap();
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("did you mean `orders`?"),
        "{}",
        stderr(&unknown)
    );

    let child = Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args([
            "watch",
            "orders",
            "--interval",
            "200ms",
            "--config",
            &config_arg,
            "--url",
            &url,
        ])
        .env_remove("CRONBYTE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trigger = run(args(&[
        "trigger",
        "orders",
        "--config",
        &config_arg,
        "--url",
        &url,
    ]))
    .await
    .unwrap();
    assert!(trigger.status.success(), "{}", stderr(&trigger));
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let asked = Instant::now();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "Ctrl-C ends it at once"
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("next: orders in "), "{text}");
    assert!(text.contains("orders: run 1 started"), "{text}");
    assert!(text.contains("orders #1: "), "a progress line: {text}");
    assert!(text.contains("orders: run 1 succeeded in "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no terminal control when piped: {text:?}"
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
