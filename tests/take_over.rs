//! Taking schedules over from Airbyte against the emulated Airbyte: `cronbyte import` writing
//! entries (cron rules kept, basic schedules converted and phased on the last sync, manual and
//! inactive connections disabled, names made unique, known ids skipped) that pass `check` once
//! included; `--take-over` asking, refusing what the config does not schedule, recording
//! before changing, finishing when run again after an interruption; `--give-back` exact on
//! the Config API and as close as the public API allows; and double schedules caught by
//! `check --online`, at daemon start, on reload and on the gauge.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use cronbyte::airbyte::{AirbyteSchedule, ApiKind, BasicUnit, Client, ClientSettings};
use cronbyte::config::{self, Config};
use cronbyte::daemon::Daemon;
use cronbyte::emulator::{
    Emulator, EmulatorAuth, EmulatorControl, EmulatorHandle, EmulatorOptions, Faults, Schedule,
    TimeUnit,
};
use cronbyte::takeover::hand_over::{HandOverOptions, give_back, take_over};
use cronbyte::takeover::record::Record;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An emulated Airbyte and a directory for configs, outputs and the record.
struct World {
    emulator: EmulatorHandle,
    dir: tempfile::TempDir,
}

fn daily_at_noon_in_paris() -> Schedule {
    Schedule::Cron {
        expression: "0 0 12 * * ?".into(),
        zone: "Europe/Paris".into(),
    }
}

fn every_24_hours() -> Schedule {
    Schedule::Basic {
        units: 24,
        time_unit: TimeUnit::Hours,
    }
}

impl World {
    async fn new() -> Self {
        let emulator = Emulator::bind("127.0.0.1:0".parse().unwrap(), EmulatorOptions::default())
            .await
            .expect("the emulator starts");
        Self {
            emulator,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn control(&self) -> EmulatorControl {
        self.emulator.control()
    }

    /// A connection in Airbyte with `schedule`.
    fn connection(&self, name: &str, schedule: Schedule) -> Uuid {
        let id = self.control().add_connection(name);
        self.control().set_schedule(id, schedule);
        id
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("history.db")
    }

    /// A config for the emulator's Config API (or its public API) with `rest` after it.
    /// Requests are not retried, so a failure is reported at once.
    fn config_text(&self, api: ApiKind, rest: &str) -> String {
        let (base, api) = match api {
            ApiKind::Config => (self.emulator.config_api_base(), "config"),
            ApiKind::Public => (self.emulator.public_api_base(), "public"),
        };
        format!(
            "[airbyte]\nbase_url = \"{base}\"\napi = \"{api}\"\n[airbyte.retry]\nmax_retries = 0\n\
             [store]\npath = \"{}\"\n\n{rest}",
            self.store().display()
        )
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    /// Writes the config and loads it as the commands do.
    fn config(&self, api: ApiKind, rest: &str) -> (PathBuf, Config) {
        let path = self.write("cronbyte.toml", &self.config_text(api, rest));
        let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        (path, config)
    }

    /// Starts a sync of the connection, so it has a last sync; when its job was created.
    async fn sync(&self, id: Uuid) -> DateTime<Utc> {
        let client = Client::new(ClientSettings::new(
            self.emulator.config_api_base(),
            ApiKind::Config,
        ))
        .unwrap();
        let job = client.trigger_sync(&id.to_string()).await.expect("a sync");
        job.created_at.expect("a creation time")
    }

    fn schedule(&self, id: Uuid) -> Schedule {
        self.control().schedule(id).expect("a connection")
    }

    fn record(&self) -> PathBuf {
        self.path("cronbyte.takeover.json")
    }
}

/// The `cronbyte` binary, with no terminal on standard input. Awaited, so the emulator
/// in this test's runtime keeps answering meanwhile.
async fn cronbyte(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(args)
        .env_remove("CRONBYTE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn all(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The `[[connections]]` entry of the output whose `connection_id` is `id`, with the
/// comment lines above it.
fn entry(output: &str, id: Uuid) -> String {
    let at = output
        .find(&format!("connection_id = \"{id}\""))
        .unwrap_or_else(|| panic!("no entry for {id}:\n{output}"));
    let start = output[..at].rfind("\n\n").map_or(0, |i| i + 2);
    let end = output[at..].find("\n\n").map_or(output.len(), |i| at + i);
    output[start..end].to_owned()
}

/// Runs `cronbyte import` on `config` and returns what it printed.
async fn import(config: &Path) -> String {
    let output = cronbyte(&["import", "--config", config.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", all(&output));
    text(&output.stdout)
}

#[tokio::test]
async fn an_airbyte_cron_rule_is_kept_as_written_in_its_zone() {
    let world = World::new().await;
    let id = world.connection("Orders", daily_at_noon_in_paris());
    let (path, _) = world.config(ApiKind::Config, "");
    let out = entry(&import(&path).await, id);
    assert!(
        out.contains("cron = \"0 0 12 * * ?\"\ntimezone = \"Europe/Paris\""),
        "{out}"
    );
    assert!(out.contains("kept as written"), "{out}");
    assert!(!out.contains("enabled = false"), "{out}");
}

#[tokio::test]
async fn a_basic_schedule_becomes_the_nearest_rule_phased_on_the_last_sync_with_a_comment() {
    let world = World::new().await;
    let id = world.connection("Orders", every_24_hours());
    // The last sync was hours ago, so its time of day is not the test's.
    world
        .control()
        .set_clock_behind(Duration::from_secs(5 * 3600 + 17 * 60));
    let last = world.sync(id).await;
    let (path, _) = world.config(ApiKind::Config, "");
    let out = entry(&import(&path).await, id);
    let (h, m) = (last.hour(), last.minute());
    assert!(
        out.contains(&format!("cron = \"0 {m} {h} * * ?\"\ntimezone = \"UTC\"")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Every 24 hours from the last sync at {h:02}:{m:02} UTC -> daily at {h:02}:{m:02} UTC."
        )),
        "{out}"
    );
}

#[tokio::test]
async fn a_basic_schedule_without_an_exact_rule_says_what_was_chosen() {
    let world = World::new().await;
    let id = world.connection(
        "Events",
        Schedule::Basic {
            units: 45,
            time_unit: TimeUnit::Minutes,
        },
    );
    let last = world.sync(id).await;
    let (path, _) = world.config(ApiKind::Config, "");
    let out = entry(&import(&path).await, id);
    let start = last.minute() % 30;
    assert!(
        out.contains(&format!("cron = \"0 {start}/30 * * * ?\"")),
        "{out}"
    );
    assert!(
        out.contains("no cron rule repeats every 45 minutes"),
        "{out}"
    );
    assert!(out.contains("more often than Airbyte did"), "{out}");
}

#[tokio::test]
async fn manual_inactive_and_never_synced_connections_are_written_disabled_with_a_comment() {
    let world = World::new().await;
    let manual = world.connection("By hand", Schedule::Manual);
    let inactive = world.connection("Paused", daily_at_noon_in_paris());
    world.control().set_connection_active(inactive, false);
    let never = world.connection("New", every_24_hours());
    let (path, _) = world.config(ApiKind::Config, "");
    let out = import(&path).await;

    let manual = entry(&out, manual);
    assert!(manual.contains("enabled = false"), "{manual}");
    assert!(
        !manual.contains("\ncron ="),
        "no rule is invented: {manual}"
    );
    assert!(manual.contains("Manual in Airbyte"), "{manual}");

    let inactive = entry(&out, inactive);
    assert!(inactive.contains("enabled = false"), "{inactive}");
    assert!(
        inactive.contains("cron = \"0 0 12 * * ?\""),
        "its rule is kept: {inactive}"
    );
    assert!(inactive.contains("Inactive in Airbyte"), "{inactive}");

    let never = entry(&out, never);
    assert!(never.contains("enabled = false"), "{never}");
    assert!(!never.contains("\ncron ="), "no phase is invented: {never}");
    assert!(never.contains("never synced"), "{never}");
}

#[tokio::test]
async fn colliding_airbyte_names_are_made_unique_and_keep_airbyte_s_name_in_a_comment() {
    let world = World::new().await;
    let first = world.connection("Orders → S3", daily_at_noon_in_paris());
    let second = world.connection("Orders → S3", daily_at_noon_in_paris());
    let third = world.connection("orders s3", daily_at_noon_in_paris());
    let (path, _) = world.config(ApiKind::Config, "");
    let out = import(&path).await;
    // Airbyte lists by name, so which of the two alike comes first is up to their ids.
    let (first, second) = (entry(&out, first), entry(&out, second));
    let (earlier, later) = if first.contains("name = \"orders-s3\"\n") {
        (first, second)
    } else {
        (second, first)
    };
    assert!(earlier.contains("name = \"orders-s3\"\n"), "{out}");
    assert!(later.contains("name = \"orders-s3-2\"\n"), "{later}");
    assert!(later.contains("Airbyte: \"Orders → S3\""), "{later}");
    assert!(
        entry(&out, third).contains("name = \"orders-s3-3\"\n"),
        "{out}"
    );
}

#[tokio::test]
async fn connections_the_config_has_by_id_are_skipped_and_named_on_stderr() {
    let world = World::new().await;
    let known = world.connection("Orders", daily_at_noon_in_paris());
    let new = world.connection("Customers", daily_at_noon_in_paris());
    let (path, _) = world.config(
        ApiKind::Config,
        &format!(
            "[[connections]]\nname = \"orders\"\nconnection_id = \"{known}\"\ncron = \"@daily\"\n"
        ),
    );
    let output = cronbyte(&["import", "--config", path.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", all(&output));
    let out = text(&output.stdout);
    assert!(!out.contains(&known.to_string()), "{out}");
    assert!(out.contains(&new.to_string()), "{out}");
    let err = text(&output.stderr);
    assert!(
        err.contains(&format!("skipped: \"Orders\" ({known})")) && err.contains("\"orders\""),
        "{err}"
    );
    // A new connection named like one of the config's gets another name.
    assert!(!out.contains("name = \"orders\""), "{out}");
}

#[tokio::test]
async fn the_output_passes_check_when_the_config_includes_it() {
    let world = World::new().await;
    world.connection("Orders", daily_at_noon_in_paris());
    let synced = world.connection("Events", every_24_hours());
    world.sync(synced).await;
    world.connection("By hand", Schedule::Manual);
    world.connection("Orders", every_24_hours());
    world.connection(
        "Odd zone",
        Schedule::Cron {
            expression: "0 0 12 * * ?".into(),
            zone: "+05:30".into(),
        },
    );
    let existing = world.connection("Customers", daily_at_noon_in_paris());
    let rest = format!(
        "[[connections]]\nname = \"orders\"\nconnection_id = \"{existing}\"\ncron = \"@daily\"\n"
    );
    let path = world.write("cronbyte.toml", &world.config_text(ApiKind::Config, &rest));
    let imported = world.path("imported.toml");
    let output = cronbyte(&[
        "import",
        "--config",
        path.to_str().unwrap(),
        "--output",
        imported.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", all(&output));
    assert!(
        text(&output.stderr).contains("5 connection(s)"),
        "{}",
        all(&output)
    );
    // `include` is a top-level key: it comes before the first table.
    let with_include = format!(
        "include = [\"imported.toml\"]\n{}",
        world.config_text(ApiKind::Config, &rest)
    );
    let path = world.write("cronbyte.toml", &with_include);
    let check = cronbyte(&["check", "--config", path.to_str().unwrap()]).await;
    assert!(
        check.status.success(),
        "{}\n{}",
        all(&check),
        std::fs::read_to_string(&imported).unwrap()
    );
    assert!(
        text(&check.stdout).contains("OK (6 connection(s), 3 enabled)"),
        "{}",
        all(&check)
    );

    // A second import would replace the first one's entries with none: refused.
    let again = cronbyte(&[
        "import",
        "--config",
        path.to_str().unwrap(),
        "--output",
        imported.to_str().unwrap(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(1), "{}", all(&again));
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        all(&again)
    );
}

#[tokio::test]
async fn an_unreachable_instance_is_named_and_nothing_is_written() {
    let world = World::new().await;
    world.connection("Orders", daily_at_noon_in_paris());
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text_of = format!(
        "[instances.eu]\nbase_url = \"{}\"\n[instances.eu.retry]\nmax_retries = 0\n\
         [instances.us]\nbase_url = \"http://127.0.0.1:{port}/api/v1\"\n[instances.us.retry]\nmax_retries = 0\n\
         [store]\npath = \"{}\"\n",
        world.emulator.config_api_base(),
        world.store().display()
    );
    let path = world.write("cronbyte.toml", &text_of);
    let imported = world.path("imported.toml");
    let output = cronbyte(&[
        "import",
        "--config",
        path.to_str().unwrap(),
        "--output",
        imported.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", all(&output));
    let err = text(&output.stderr);
    assert!(err.contains("Airbyte instance \"us\""), "{err}");
    assert!(err.contains("could not"), "{err}");
    assert!(!imported.exists(), "no partial output");
    let leftovers: Vec<String> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cronbyte.toml")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The reachable instance alone imports, and names its instance on every entry.
    let output = cronbyte(&[
        "import",
        "--config",
        path.to_str().unwrap(),
        "--instance",
        "eu",
    ])
    .await;
    assert!(output.status.success(), "{}", all(&output));
    assert!(
        text(&output.stdout).contains("instance = \"eu\""),
        "{}",
        all(&output)
    );
}

#[tokio::test]
async fn an_unknown_instance_is_refused_with_a_did_you_mean() {
    let world = World::new().await;
    let (path, _) = world.config(ApiKind::Config, "");
    let output = cronbyte(&[
        "import",
        "--config",
        path.to_str().unwrap(),
        "--instance",
        "defualt",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", all(&output));
    assert!(
        text(&output.stderr).contains("--instance \"defualt\": the config has no such Airbyte instance; did you mean \"default\"?"),
        "{}",
        all(&output)
    );
}

/// Two connections Airbyte schedules that the config schedules too, and one it does not.
struct TakeOverWorld {
    world: World,
    path: PathBuf,
    orders: Uuid,
    events: Uuid,
    stranger: Uuid,
}

async fn take_over_world(api: ApiKind) -> TakeOverWorld {
    let world = World::new().await;
    let orders = world.connection("Orders", every_24_hours());
    let events = world.connection("Events", daily_at_noon_in_paris());
    let stranger = world.connection("Stranger", every_24_hours());
    let rest = format!(
        "[[connections]]\nname = \"orders\"\nconnection_id = \"{orders}\"\ncron = \"0 17 3 * * ?\"\n\
         [[connections]]\nname = \"events\"\nconnection_id = \"{events}\"\ncron = \"0 0 12 * * ?\"\n\
         timezone = \"Europe/Paris\"\n"
    );
    let (path, _) = world.config(api, &rest);
    TakeOverWorld {
        world,
        path,
        orders,
        events,
        stranger,
    }
}

async fn run_take_over(
    path: &Path,
    record: &Path,
    answer: bool,
) -> (
    Result<cronbyte::takeover::hand_over::TakenOver, String>,
    String,
    Vec<String>,
) {
    let config = config::load(path).unwrap();
    let mut asked = Vec::new();
    let mut confirm = |question: &str| {
        asked.push(question.to_owned());
        answer
    };
    let mut out = Vec::new();
    let options = HandOverOptions {
        instance: None,
        record,
        yes: false,
    };
    let result = take_over(&config, options, &mut confirm, &mut out)
        .await
        .map_err(|e| e.to_string());
    (result, text(&out), asked)
}

#[tokio::test]
async fn take_over_shows_what_it_will_change_and_a_no_changes_nothing() {
    let t = take_over_world(ApiKind::Config).await;
    let record = t.world.record();
    let (result, out, asked) = run_take_over(&t.path, &record, false).await;
    assert!(result.unwrap_err().contains("not confirmed"));
    assert_eq!(asked, ["Set 2 connection(s) to manual in Airbyte?"]);
    assert!(
        out.contains("\"orders\"") && out.contains("basic: every 24 hours -> manual"),
        "{out}"
    );
    assert_eq!(t.world.schedule(t.orders), every_24_hours());
    assert_eq!(t.world.schedule(t.events), daily_at_noon_in_paris());
    assert!(!record.exists(), "nothing recorded either");
    assert_eq!(t.world.control().requests().get("connections/update"), 0);
}

#[tokio::test]
async fn take_over_without_a_terminal_or_yes_refuses_and_changes_nothing() {
    let t = take_over_world(ApiKind::Config).await;
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", all(&output));
    assert!(
        text(&output.stderr).contains("No terminal to ask on: give --yes"),
        "{}",
        all(&output)
    );
    assert_eq!(t.world.schedule(t.orders), every_24_hours());
    assert_eq!(t.world.control().requests().get("connections/update"), 0);
}

#[tokio::test]
async fn take_over_with_yes_makes_scheduled_connections_manual_and_refuses_unscheduled_ones() {
    let t = take_over_world(ApiKind::Config).await;
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "some were refused: {}",
        all(&output)
    );
    let out = all(&output);
    assert!(
        out.contains(&format!("refused: \"Stranger\" ({})", t.stranger))
            && out.contains("the config does not have it"),
        "{out}"
    );
    assert_eq!(t.world.schedule(t.orders), Schedule::Manual);
    assert_eq!(t.world.schedule(t.events), Schedule::Manual);
    assert_eq!(
        t.world.schedule(t.stranger),
        every_24_hours(),
        "nobody else syncs it"
    );
    assert!(out.contains("Took over 2 connection(s)"), "{out}");

    // Run again: nothing left to take, the record keeps Airbyte's schedules, not manual.
    let again = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert!(
        all(&again).contains("Nothing to take over."),
        "{}",
        all(&again)
    );
    let record = Record::load(&t.world.record()).unwrap();
    assert_eq!(record.connections.len(), 2);
    assert!(
        record
            .connections
            .iter()
            .all(|c| c.schedule != cronbyte::airbyte::AirbyteSchedule::Manual)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_record_is_a_json_file_of_its_own_readable_by_its_owner_only_and_the_store_is_untouched()
 {
    use std::os::unix::fs::PermissionsExt;
    let t = take_over_world(ApiKind::Config).await;
    let record = t.world.path("records/takeover.json");
    std::fs::create_dir(t.world.path("records")).unwrap();
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", all(&output));
    let mode = std::fs::metadata(&record).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["connections"].as_array().unwrap().len(), 2);
    assert!(!t.world.store().exists(), "the history store is not opened");
    let stray: Vec<String> = std::fs::read_dir(t.world.path("records"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stray, ["takeover.json"], "no temporary file is left");
}

/// Airbyte's `connections/update` fails from the second one on, as if Airbyte went down
/// half-way through.
fn fail_after_one_update(world: &World) {
    world.control().set_faults(Faults {
        failing_operations_after: vec![("connections/update".into(), 1)],
        ..Faults::default()
    });
}

/// The world after a take-over that stopped half-way, with the ids of the connection it
/// left manual in Airbyte and of the one it took first. Airbyte lists connections by name,
/// so "Customers" is taken first and "Events" is the one that fails.
async fn interrupted_take_over() -> (TakeOverWorld, Uuid, Uuid) {
    let t = take_over_world(ApiKind::Config).await;
    // A third connection the config schedules, and one it schedules that is manual already.
    let third = t.world.connection("Customers", every_24_hours());
    let manual = t.world.connection("By hand", Schedule::Manual);
    let text_of = std::fs::read_to_string(&t.path).unwrap()
        + &format!(
            "[[connections]]\nname = \"customers\"\nconnection_id = \"{third}\"\ncron = \"@daily\"\n\
             [[connections]]\nname = \"by-hand\"\nconnection_id = \"{manual}\"\ncron = \"@daily\"\n"
        );
    std::fs::write(&t.path, text_of).unwrap();
    fail_after_one_update(&t.world);
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", all(&output));
    let err = text(&output.stderr);
    assert!(err.contains("could not set connection \"events\""), "{err}");
    assert!(err.contains("after 1 of 3 were"), "{err}");
    assert!(err.contains("--give-back"), "{err}");
    assert_eq!(t.world.schedule(third), Schedule::Manual);
    assert_eq!(t.world.schedule(t.events), daily_at_noon_in_paris());
    assert_eq!(t.world.schedule(t.orders), every_24_hours());
    t.world.control().set_faults(Faults::default());
    (t, manual, third)
}

#[tokio::test]
async fn an_interrupted_take_over_finishes_when_run_again() {
    let (t, _, first) = interrupted_take_over().await;
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "the stranger is still refused: {}",
        all(&output)
    );
    assert!(
        all(&output).contains("Took over 2 connection(s)"),
        "{}",
        all(&output)
    );
    assert_eq!(t.world.schedule(t.events), Schedule::Manual);
    let record = Record::load(&t.world.record()).unwrap();
    assert_eq!(record.connections.len(), 3);
    let taken_first = record.get("default", &first.to_string()).unwrap();
    assert_eq!(
        taken_first.schedule,
        cronbyte::airbyte::AirbyteSchedule::Basic {
            units: 24,
            time_unit: cronbyte::airbyte::BasicUnit::Hours
        },
        "the schedule taken in the first run is kept, not the manual one it left"
    );
}

#[tokio::test]
async fn give_back_after_an_interrupted_take_over_restores_what_was_taken_and_nothing_else() {
    let (t, manual, first) = interrupted_take_over().await;
    let updates_before = t.world.control().requests().get("connections/update");
    let output = cronbyte(&[
        "import",
        "--give-back",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", all(&output));
    assert_eq!(t.world.schedule(first), every_24_hours());
    assert_eq!(t.world.schedule(t.orders), every_24_hours());
    assert_eq!(t.world.schedule(t.events), daily_at_noon_in_paris());
    assert_eq!(
        t.world.schedule(manual),
        Schedule::Manual,
        "never taken, not given"
    );
    assert_eq!(
        t.world.control().requests().get("connections/update") - updates_before,
        1,
        "one connection was taken, one is given back"
    );
    assert!(!t.world.record().exists(), "nothing is left to give back");
    assert!(
        all(&output).contains("syncs twice"),
        "the config still schedules them: {}",
        all(&output)
    );
}

#[tokio::test]
async fn give_back_restores_each_schedule_exactly_on_the_config_api() {
    let t = take_over_world(ApiKind::Config).await;
    let record = t.world.record();
    let (result, _, _) = run_take_over(&t.path, &record, true).await;
    assert_eq!(result.unwrap().taken.len(), 2);
    let config = config::load(&t.path).unwrap();
    let mut out = Vec::new();
    let mut asked = Vec::new();
    let mut confirm = |q: &str| {
        asked.push(q.to_owned());
        true
    };
    let options = HandOverOptions {
        instance: None,
        record: &record,
        yes: false,
    };
    let back = give_back(&config, options, &mut confirm, &mut out)
        .await
        .unwrap();
    assert_eq!(
        asked,
        ["Give 2 connection(s) their schedule back in Airbyte?"]
    );
    assert_eq!(back.restored.len(), 2);
    assert!(back.approximated.is_empty(), "{:?}", back.approximated);
    assert_eq!(t.world.schedule(t.orders), every_24_hours());
    assert_eq!(t.world.schedule(t.events), daily_at_noon_in_paris());
    assert!(!record.exists());
}

#[tokio::test]
async fn give_back_on_the_public_api_restores_as_closely_as_it_allows_and_says_so() {
    let t = take_over_world(ApiKind::Public).await;
    let utc = t.world.connection(
        "Nightly",
        Schedule::Cron {
            expression: "0 30 2 * * ?".into(),
            zone: "UTC".into(),
        },
    );
    let text_of = std::fs::read_to_string(&t.path).unwrap()
        + &format!(
            "[[connections]]\nname = \"nightly\"\nconnection_id = \"{utc}\"\ncron = \"0 30 2 * * ?\"\n"
        );
    std::fs::write(&t.path, text_of).unwrap();
    let last = t.world.sync(t.orders).await;
    let (h, m) = (last.hour(), last.minute());
    // The public listing shows a rule with its zone appended and a basic timing as text.
    let imported = import(&t.path).await;
    let stranger = entry(&imported, t.stranger);
    assert!(
        stranger.contains("enabled = false") && stranger.contains("basic: every 24 hours"),
        "never synced: {stranger}"
    );
    let other = t.world.connection("Other", daily_at_noon_in_paris());
    assert!(
        entry(&import(&t.path).await, other)
            .contains("cron = \"0 0 12 * * ?\"\ntimezone = \"Europe/Paris\""),
        "{imported}"
    );
    t.world.control().set_connection_active(other, false);
    let output = cronbyte(&[
        "import",
        "--take-over",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", all(&output));
    assert_eq!(t.world.schedule(t.orders), Schedule::Manual);
    assert_eq!(t.world.schedule(utc), Schedule::Manual);
    assert!(
        t.world
            .control()
            .requests()
            .get("public:PATCH /connections/{connectionId}")
            >= 3
    );

    let output = cronbyte(&[
        "import",
        "--give-back",
        "--yes",
        "--config",
        t.path.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", all(&output));
    let out = all(&output);
    // A rule in UTC comes back exactly.
    assert_eq!(
        t.world.schedule(utc),
        Schedule::Cron {
            expression: "0 30 2 * * ?".into(),
            zone: "UTC".into()
        }
    );
    // A basic schedule as the nearest rule in UTC, phased on the last sync.
    assert_eq!(
        t.world.schedule(t.orders),
        Schedule::Cron {
            expression: format!("0 {m} {h} * * ?"),
            zone: "UTC".into()
        }
    );
    assert!(
        out.contains("the public API cannot set a basic schedule"),
        "{out}"
    );
    // A rule in Paris moved to UTC at today's offset.
    match t.world.schedule(t.events) {
        Schedule::Cron { expression, zone } => {
            assert_eq!(zone, "UTC");
            assert!(
                expression == "0 0 10 * * ?" || expression == "0 0 11 * * ?",
                "{expression}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        out.contains("the public API keeps cron rules in UTC only"),
        "{out}"
    );
    assert!(!t.world.record().exists());
}

#[tokio::test]
async fn no_secret_of_the_config_appears_in_what_import_prints() {
    let world = World::new().await;
    let password = "Basic-Secret-7731";
    let id = world.connection("Orders", every_24_hours());
    world.sync(id).await;
    world.control().set_auth(EmulatorAuth::Basic {
        username: "airbyte".into(),
        password: password.into(),
    });
    let text_of = world
        .config_text(
            ApiKind::Config,
            &format!("[[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"@daily\"\n"),
        )
        .replace(
            "[airbyte.retry]",
            &format!("[airbyte.auth]\nkind = \"basic\"\nusername = \"airbyte\"\npassword = \"{password}\"\n[airbyte.retry]"),
        );
    let path = world.write("cronbyte.toml", &text_of);
    let mut outputs = Vec::new();
    for args in [
        vec!["import"],
        vec!["import", "--take-over", "--yes"],
        vec!["import", "--give-back", "--yes"],
        vec!["check", "--online"],
    ] {
        let mut args = args.clone();
        args.extend(["--config", path.to_str().unwrap()]);
        let output = cronbyte(&args).await;
        assert!(output.status.success(), "{args:?}: {}", all(&output));
        outputs.push(all(&output));
    }
    // With the wrong password, Airbyte's refusal is shown, not the password.
    let wrong = text_of.replace(password, "Wrong-Secret-4411");
    let path = world.write("cronbyte.toml", &wrong);
    let output = cronbyte(&["import", "--config", path.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    outputs.push(all(&output));
    for out in outputs {
        assert!(
            !out.contains(password) && !out.contains("Wrong-Secret-4411"),
            "{out}"
        );
    }
}

#[tokio::test]
async fn a_large_workspace_is_listed_page_by_page_without_catalogs_and_every_connection_is_seen() {
    let world = World::new().await;
    let count = 1_234;
    for k in 0..count {
        world.connection(&format!("connection {k:04}"), every_24_hours());
    }
    let client = Client::new(ClientSettings::new(
        world.emulator.config_api_base(),
        ApiKind::Config,
    ))
    .unwrap();
    let workspace = world.control().workspace_id().to_string();
    let listed = client.connection_schedules(&[workspace]).await.unwrap();
    assert_eq!(listed.len(), count);
    let distinct: std::collections::HashSet<&str> =
        listed.iter().map(|c| c.connection_id.as_str()).collect();
    assert_eq!(distinct.len(), count, "no connection is listed twice");
    assert!(listed.iter().all(|c| c.schedule
        == Ok(AirbyteSchedule::Basic {
            units: 24,
            time_unit: BasicUnit::Hours
        })));
    let requests = world.control().requests();
    assert_eq!(
        requests.get("web_backend/connections/list"),
        3,
        "pages of 500"
    );
    assert_eq!(requests.get("connections/list"), 0, "no catalog is read");
}

#[tokio::test]
async fn check_online_warns_about_a_connection_airbyte_also_schedules() {
    let world = World::new().await;
    let twice = world.connection("Orders", every_24_hours());
    let once = world.connection("Events", Schedule::Manual);
    let (path, _) = world.config(
        ApiKind::Config,
        &format!(
            "[[connections]]\nname = \"orders\"\nconnection_id = \"{twice}\"\ncron = \"@daily\"\n\
             [[connections]]\nname = \"events\"\nconnection_id = \"{once}\"\ncron = \"@daily\"\n"
        ),
    );
    let offline = cronbyte(&["check", "--config", path.to_str().unwrap()]).await;
    assert!(
        !all(&offline).contains("scheduled twice"),
        "{}",
        all(&offline)
    );
    let output = cronbyte(&["check", "--online", "--config", path.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", all(&output));
    let err = text(&output.stderr);
    assert!(
        err.contains("warning: connection \"orders\"")
            && err.contains("scheduled twice: by cronbyte (cron \"@daily\" in UTC) and by Airbyte itself (basic: every 24 hours)"),
        "{err}"
    );
    assert!(!err.contains("\"events\""), "{err}");

    // An instance that cannot be asked is an error naming it.
    world.control().set_faults(Faults {
        failing_operations: vec!["web_backend/connections/list".into()],
        ..Faults::default()
    });
    let output = cronbyte(&["check", "--online", "--config", path.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1), "{}", all(&output));
    assert!(text(&output.stderr).contains("Airbyte instance \"default\" could not be checked"));
}

/// The value of `cronbyte_connection_scheduled_twice` for `connection` (on the one
/// instance these configs have), if exported.
fn scheduled_twice(metrics: &str, connection: &str) -> Option<String> {
    let prefix = format!(
        "cronbyte_connection_scheduled_twice{{connection=\"{connection}\",airbyte_instance=\"default\"}} "
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("a body")
}

/// Waits up to 10 s for `what` to hold.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_double_schedule_is_warned_about_at_daemon_start_and_set_on_the_gauge() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let world = World::new().await;
    let id = world.connection("Orders", daily_at_noon_in_paris());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let text_of = world.config_text(
        ApiKind::Config,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 0 1 1 ?\"\n"
        ),
    );
    let path = world.write("cronbyte.toml", &text_of);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cronbyte"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("scheduled twice") {
                return line;
            }
        }
        panic!("the daemon stopped without the warning");
    })
    .await
    .expect("a warning within 10 s");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("connection \"orders\"")
            && warning.contains("cron \"0 0 0 1 1 ?\" in UTC")
            && warning.contains("cron \"0 0 12 * * ?\" in Europe/Paris"),
        "{warning}"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the gauge is 1", || async {
        scheduled_twice(&metrics(addr).await, "orders").as_deref() == Some("1")
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn a_reload_looks_for_double_schedules_at_once_and_the_gauge_falls_to_0_once_fixed() {
    let world = World::new().await;
    let id = world.connection("Orders", every_24_hours());
    let entry_of = |enabled: bool| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 0 1 1 ?\"\nenabled = {enabled}\n"
        )
    };
    let (path, config) = world.config(ApiKind::Config, &entry_of(false));
    // Checks would come only hourly: what is seen here comes from the start and the reload.
    let daemon = Daemon::build(config)
        .await
        .unwrap()
        .with_config_path(path.clone())
        .with_double_schedule_interval(Duration::from_secs(3600));
    let addr = daemon.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    eventually("the daemon answers", || async {
        reqwest::get(format!("http://{addr}/healthz")).await.is_ok()
    })
    .await;
    assert_eq!(
        scheduled_twice(&metrics(addr).await, "orders"),
        None,
        "disabled: not twice"
    );

    std::fs::write(&path, world.config_text(ApiKind::Config, &entry_of(true))).unwrap();
    let reload = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/reload"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert!(reload.status().is_success(), "{:?}", reload.text().await);
    eventually("the gauge is 1 after the reload", || async {
        scheduled_twice(&metrics(addr).await, "orders").as_deref() == Some("1")
    })
    .await;

    // Fixed in Airbyte; the next look (here, another reload) sets it back to 0.
    world.control().set_schedule(id, Schedule::Manual);
    reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/reload"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    eventually("the gauge is 0 once fixed", || async {
        scheduled_twice(&metrics(addr).await, "orders").as_deref() == Some("0")
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_daemon_looks_again_every_interval() {
    let world = World::new().await;
    let id = world.connection("Orders", Schedule::Manual);
    let (_, config) = world.config(
        ApiKind::Config,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [[connections]]\nname = \"orders\"\nconnection_id = \"{id}\"\ncron = \"0 0 0 1 1 ?\"\n"
        ),
    );
    let daemon = Daemon::build(config)
        .await
        .unwrap()
        .with_double_schedule_interval(Duration::from_millis(200));
    let addr = daemon.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    // Someone sets a schedule in Airbyte's UI while the daemon runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.control().set_schedule(id, every_24_hours());
    eventually("the gauge is 1", || async {
        scheduled_twice(&metrics(addr).await, "orders").as_deref() == Some("1")
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_declared_connection_is_known_by_its_name_before_its_id_is_resolved() {
    let world = World::new().await;
    let id = world.connection("orders", every_24_hours());
    let (path, _) = world.config(
        ApiKind::Config,
        "[[sources]]\nname = \"ecommerce\"\ndefinition = \"Postgres\"\nconfiguration = { host = \"db\" }\n\
         [[destinations]]\nname = \"warehouse\"\ndefinition = \"S3\"\nconfiguration = { bucket = \"b\" }\n\
         [[connections]]\nname = \"orders\"\nsource = \"ecommerce\"\ndestination = \"warehouse\"\ncron = \"@daily\"\n\
         [[connections.streams]]\nname = \"orders\"\n",
    );
    let output = cronbyte(&["import", "--config", path.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", all(&output));
    assert!(
        !text(&output.stdout).contains(&id.to_string()),
        "{}",
        all(&output)
    );
    assert!(
        text(&output.stderr).contains("skipped: \"orders\""),
        "{}",
        all(&output)
    );
    let check = cronbyte(&["check", "--online", "--config", path.to_str().unwrap()]).await;
    assert!(
        text(&check.stderr).contains(&format!("connection \"orders\" ({id})")),
        "{}",
        all(&check)
    );
}
