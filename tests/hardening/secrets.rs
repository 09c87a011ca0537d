//! Secrets and the front door. A full run of the `cronbyte` binary, logging at debug level
//! in JSON, against an emulator that demands client credentials (and, in a second run, basic
//! auth), with a control token, webhook receivers whose URLs carry a token (one answering
//! 500 at first, one unreachable), a broken config next to the good one, and a pipeline
//! declaration whose connector secrets come from the environment. Every output is kept: the
//! daemon's stdout and stderr; `check`, `history`, `status`, `trigger`, `plan` and `apply`;
//! `/metrics`, `/healthz` and the control API's answers; the SQLite files themselves. No
//! secret may appear in any of them, and the store's files are readable by their owner only.
//!
//! `cargo test --test hardening secrets`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cronbyte::emulator::{EmulatorAuth, EmulatorHandle, Faults, JobPlan};
use cronbyte::run::RunStatus;
use tokio::process::Command;

use crate::support::*;

const CLIENT_SECRET: &str = "cs-Kx7Qp2Lm9Zr4Wv8N";
const BASIC_PASSWORD: &str = "pw-Hj3Tb6Yc1Ud5Ef0G";
const CONTROL_TOKEN: &str = "st-Rq8Sn2Vw4Xa6Bz1C";
const HOOK_TOKEN: &str = "nt-Lp5Mk9Oj3Ih7Gf2D";
const DEAD_HOOK_TOKEN: &str = "nt-Dd4Ee8Ff2Gg6Hh0J";
const PG_PASSWORD: &str = "pg-Ww3Xx7Yy1Zz5Aa9B";
const S3_SECRET: &str = "s3-Qq2Rr6Ss0Tt4Uu8V";

/// The first part of every token the emulator issues: base64url of `{"alg":"HS256","typ":"JWT"}`.
const ISSUED_TOKEN_PREFIX: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credentials {
    ClientCredentials,
    Basic,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_of_a_full_run_with_client_credentials() {
    full_run(Credentials::ClientCredentials).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_of_a_full_run_with_basic_auth() {
    full_run(Credentials::Basic).await;
}

/// Everything a run printed or served, by where it came from.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, label: impl Into<String>, text: impl Into<String>) {
        self.0.push((label.into(), text.into()));
    }

    fn add_command(&mut self, label: &str, output: &std::process::Output) {
        self.add(
            format!("{label} (stdout)"),
            String::from_utf8_lossy(&output.stdout),
        );
        self.add(
            format!("{label} (stderr)"),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    fn text(&self, label: &str) -> String {
        self.0
            .iter()
            .filter(|(l, _)| l.starts_with(label))
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every (output, secret) pair where the secret shows, with its context.
    fn leaks(&self, secrets: &[(&str, String)]) -> Vec<String> {
        let mut leaks = Vec::new();
        for (label, text) in &self.0 {
            for (name, secret) in secrets {
                if let Some(at) = text.find(secret.as_str()) {
                    let start = text[..at]
                        .char_indices()
                        .rev()
                        .nth(80)
                        .map_or(0, |(i, _)| i);
                    let context: String = text[start..].chars().take(200).collect();
                    leaks.push(format!("{name} in {label}: …{context}…"));
                }
            }
        }
        leaks
    }
}

/// A webhook receiver at `/hooks/{token}`: its first delivery is answered 500, the rest
/// 200. Returns its address and the count of deliveries.
async fn receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hooks/{token}",
        axum::routing::post(move || {
            let count = Arc::clone(&count);
            async move {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// A loopback port nothing listens on.
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs `cronbyte args...` to its end.
async fn cronbyte(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("CRONBYTE_CONFIG")
        .env_remove("CRONBYTE_TOKEN")
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("cronbyte {args:?} did not end within a minute"))
        .expect("cronbyte runs")
}

async fn http_get(url: String, token: Option<&'static str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the daemon answers");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// `[airbyte]` and its auth for `credentials`, the store, the control token, JSON logs at
/// debug, and two webhook receivers.
fn run_config(
    emulator: &EmulatorHandle,
    dir: &Path,
    credentials: Credentials,
    hook: SocketAddr,
    dead: u16,
) -> String {
    let auth = match credentials {
        Credentials::ClientCredentials => format!(
            "[airbyte.auth]\nkind = \"client_credentials\"\nclient_id = \"cronbyte-app\"\nclient_secret = \"{CLIENT_SECRET}\"\n"
        ),
        Credentials::Basic => {
            let file = dir.join("airbyte-password");
            std::fs::write(&file, format!("{BASIC_PASSWORD}\n")).expect("password file");
            format!(
                "[airbyte.auth]\nkind = \"basic\"\nusername = \"airbyte\"\npassword_file = \"{}\"\n",
                file.display()
            )
        }
    };
    format!(
        "[airbyte]\nbase_url = \"{}\"\nrequest_timeout = \"1s\"\n{auth}\
         [airbyte.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_elapsed = \"2s\"\n\
         [store]\npath = \"{}\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\ntoken = \"{CONTROL_TOKEN}\"\n\
         [workers]\npoll_interval = \"200ms\"\n\
         [log]\nlevel = \"debug\"\nformat = \"json\"\n\
         [[notify]]\nurl = \"http://{hook}/hooks/{HOOK_TOKEN}\"\n\
         [[notify]]\nurl = \"http://127.0.0.1:{dead}/hooks/{DEAD_HOOK_TOKEN}\"\ntimeout = \"1s\"\n",
        emulator.config_api_base(),
        dir.join("history.db").display(),
    )
}

async fn full_run(credentials: Credentials) {
    let emulator = emulator().await;
    let control = emulator.control();
    let auth = match credentials {
        Credentials::ClientCredentials => EmulatorAuth::ClientCredentials {
            client_id: "cronbyte-app".into(),
            client_secret: CLIENT_SECRET.into(),
            token_lifetime: Duration::from_secs(3),
        },
        Credentials::Basic => EmulatorAuth::Basic {
            username: "airbyte".into(),
            password: BASIC_PASSWORD.into(),
        },
    };
    control.set_auth(auth.clone());
    let ok = control.add_connection("ok");
    control.set_plan(
        ok,
        JobPlan::succeeding(Duration::from_millis(400), 10, 1_000),
    );
    let bad = control.add_connection("bad");
    control.set_plan(
        bad,
        JobPlan::failing(
            Duration::from_millis(300),
            "planned failure: connector said no",
        ),
    );

    let dir = WorkDir::new("secrets");
    let (hook, delivered) = receiver().await;
    let dead = dead_port().await;
    let text = run_config(&emulator, dir.path(), credentials, hook, dead)
        + &connection_block("ok", ok, "*/2 * * * * *", "")
        + &connection_block(
            "bad",
            bad,
            "*/3 * * * * *",
            "retries = 1\nretry_backoff = \"1s\"",
        );
    let config = dir.path().join("cronbyte.toml");
    std::fs::write(&config, valid(&text)).expect("config written");
    let config_arg = config.to_str().expect("utf-8 path").to_owned();
    let mut out = Outputs::default();

    // `check`, on the config and on a broken copy of it.
    out.add_command(
        "check",
        &cronbyte(&["check", "--config", &config_arg], &[]).await,
    );
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        text.replace(
            "poll_interval = \"200ms\"",
            "poll_interval = \"soon\"\npoll_intervall = 1",
        )
        .replace("kind = \"basic\"", "kind = \"basic\"\npassword = 12")
        .replace(
            "client_id = \"cronbyte-app\"",
            "client_id = [\"cronbyte-app\"]",
        ),
    )
    .expect("broken config written");
    let checked = cronbyte(&["check", "--config", broken.to_str().expect("utf-8")], &[]).await;
    assert_eq!(
        checked.status.code(),
        Some(2),
        "a broken config fails `check`"
    );
    out.add_command("check (broken config)", &checked);

    let daemon = DaemonProcess::spawn(
        &config,
        &dir.path().join("logs"),
        "run",
        &[("RUST_LOG", "debug")],
    );
    let addr = daemon.listen_addr(Duration::from_secs(20)).await;
    let url = format!("http://{addr}");
    let store = dir.path().join("history.db");

    // Some runs end both ways, and a notice is delivered after a 500 and fails to the dead
    // receiver; then Airbyte misbehaves for a while, each way logging its own errors.
    eventually(
        Duration::from_secs(30),
        "a success, a failure and two deliveries",
        || async {
            let runs = history(&store).await;
            let succeeded = runs.iter().any(|r| r.status == RunStatus::Succeeded);
            let failed = runs.iter().any(|r| r.status == RunStatus::Failed);
            let deliveries = delivered.load(Ordering::SeqCst);
            (succeeded && failed && deliveries >= 2)
                .then_some(())
                .ok_or(format!(
                    "succeeded {succeeded}, failed {failed}, {deliveries} deliveries"
                ))
        },
    )
    .await;
    let phases = [
        Faults {
            error_rate: 0.5,
            html_share: 0.5,
            ..Faults::default()
        },
        Faults {
            malformed_rate: 0.5,
            ..Faults::default()
        },
        Faults {
            token_endpoint_fails: true,
            ..Faults::default()
        },
    ];
    for faults in phases {
        control.set_faults(faults);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    control.set_faults(Faults::default());
    // Credentials Airbyte no longer accepts, then the right ones again.
    control.set_auth(match credentials {
        Credentials::ClientCredentials => EmulatorAuth::ClientCredentials {
            client_id: "cronbyte-app".into(),
            client_secret: "another-secret".into(),
            token_lifetime: Duration::from_secs(3),
        },
        Credentials::Basic => EmulatorAuth::Basic {
            username: "airbyte".into(),
            password: "another-password".into(),
        },
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    control.set_auth(auth);

    // What operators look at while it runs.
    for (label, path, token) in [
        ("/metrics", "/metrics", None),
        ("/healthz", "/healthz", None),
        ("control API without token", "/api/v1/connections", None),
        (
            "control API with a wrong token",
            "/api/v1/connections",
            Some("st-wrong"),
        ),
        (
            "control API connections",
            "/api/v1/connections",
            Some(CONTROL_TOKEN),
        ),
        (
            "control API runs",
            "/api/v1/connections/bad/runs?limit=50",
            Some(CONTROL_TOKEN),
        ),
    ] {
        let (status, body) = http_get(format!("{url}{path}"), token).await;
        out.add(format!("{label} ({status})"), body);
    }
    assert!(
        out.text("control API without token")
            .contains("unauthorized"),
        "{}",
        out.text("control API without token")
    );
    for args in [
        vec!["status", "--config", &config_arg, "--url", &url],
        vec![
            "status",
            "--config",
            &config_arg,
            "--url",
            &url,
            "--format",
            "json",
        ],
        vec![
            "trigger",
            "ok",
            "--config",
            &config_arg,
            "--url",
            &url,
            "--format",
            "json",
        ],
        vec!["history", "--config", &config_arg, "--limit", "1000"],
        vec![
            "history",
            "--config",
            &config_arg,
            "--limit",
            "1000",
            "--format",
            "json",
        ],
    ] {
        let output = cronbyte(&args, &[]).await;
        assert!(
            output.status.success(),
            "cronbyte {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out.add_command(
            &format!("cronbyte {}", args[..args.len().min(2)].join(" ")),
            &output,
        );
    }

    let (stdout, stderr) = (daemon.stdout.clone(), daemon.stderr.clone());
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "cronbyte run stopped badly: {status:?}");
    out.add("cronbyte run (stdout)", read(&stdout));
    out.add("cronbyte run (stderr)", read(&stderr));
    // `history` once more with the daemon gone, and the store's bytes themselves.
    out.add_command(
        "history after stop",
        &cronbyte(
            &["history", "--config", &config_arg, "--format", "json"],
            &[],
        )
        .await,
    );
    let store_files = store_files(&store);
    for file in &store_files {
        out.add(
            file.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(file).expect("store file")),
        );
    }

    // Pipelines as code: connector secrets from the environment, through plan and apply.
    plan_and_apply(&emulator, dir.path(), credentials, &mut out).await;

    // None of it may show a secret, in any form the daemon ever held it.
    let mut secrets: Vec<(&str, String)> = vec![
        ("the control token", CONTROL_TOKEN.into()),
        ("the webhook URL's token", HOOK_TOKEN.into()),
        (
            "the unreachable webhook URL's token",
            DEAD_HOOK_TOKEN.into(),
        ),
        (
            "a connector password from the environment",
            PG_PASSWORD.into(),
        ),
        ("a connector secret from the environment", S3_SECRET.into()),
    ];
    match credentials {
        Credentials::ClientCredentials => {
            secrets.push(("the client secret", CLIENT_SECRET.into()));
            secrets.push(("a token Airbyte issued", ISSUED_TOKEN_PREFIX.into()));
        }
        Credentials::Basic => {
            secrets.push(("the basic-auth password", BASIC_PASSWORD.into()));
            secrets.push((
                "the basic-auth header",
                base64(&format!("airbyte:{BASIC_PASSWORD}")),
            ));
        }
    }
    let leaks = out.leaks(&secrets);
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));

    // And the run really went down the paths where secrets could leak.
    let logs = out.text("cronbyte run (stderr)");
    let refused = match credentials {
        Credentials::Basic => "refused the credentials",
        Credentials::ClientCredentials => "could not obtain an Airbyte access token",
    };
    for (what, needles) in [
        ("debug-level logs", &["\"level\":\"DEBUG\""][..]),
        (
            "an Airbyte error",
            &["retrying Airbyte call", "Airbyte did not answer some polls"][..],
        ),
        (
            "a notice that could not be delivered",
            &["could not deliver a notice"][..],
        ),
        ("credentials refused by Airbyte", &[refused][..]),
    ] {
        assert!(
            needles.iter().any(|n| logs.contains(n)),
            "the run never logged {what} ({needles:?})"
        );
    }
    assert!(
        out.text("/metrics").contains("cronbyte_syncs_total"),
        "metrics were served"
    );
    assert!(
        out.text("cronbyte status").contains("ok"),
        "status listed the connections"
    );
    let panicked: Vec<&(String, String)> = out
        .0
        .iter()
        .filter(|(_, t)| t.contains("panicked"))
        .collect();
    assert!(panicked.is_empty(), "something panicked: {panicked:?}");

    // The store and its journal files are the owner's alone.
    #[cfg(unix)]
    for file in &store_files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
    emulator.shutdown().await;
}

/// The history file and whichever of its WAL and shared-memory files exist.
fn store_files(store: &Path) -> Vec<PathBuf> {
    let mut files = vec![store.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", store.display()));
        if file.exists() {
            files.push(file);
        }
    }
    files
}

/// `plan`, `apply` and `plan` again on a config declaring a source and a destination whose
/// secrets come from environment variables.
async fn plan_and_apply(
    emulator: &EmulatorHandle,
    dir: &Path,
    credentials: Credentials,
    out: &mut Outputs,
) {
    let auth = match credentials {
        Credentials::ClientCredentials => format!(
            "[airbyte.auth]\nkind = \"client_credentials\"\nclient_id = \"cronbyte-app\"\nclient_secret = \"{CLIENT_SECRET}\"\n"
        ),
        Credentials::Basic => format!(
            "[airbyte.auth]\nkind = \"basic\"\nusername = \"airbyte\"\npassword = \"{BASIC_PASSWORD}\"\n"
        ),
    };
    let text = format!(
        "[airbyte]\nbase_url = \"{}\"\n{auth}\
         [store]\npath = \"{}\"\n\
         [[sources]]\nname = \"shop\"\ndefinition = \"Postgres\"\n\
         [sources.configuration]\nhost = \"db\"\nport = 5432\ndatabase = \"shop\"\nschemas = [\"public\"]\nusername = \"airbyte\"\n\
         password = \"${{CRONBYTE_TEST_PG_PASSWORD}}\"\nssl_mode = {{ mode = \"disable\" }}\nreplication_method = {{ method = \"Standard\" }}\n\
         [[destinations]]\nname = \"lake\"\ndefinition = \"S3\"\n\
         [destinations.configuration]\ns3_bucket_name = \"lake\"\ns3_bucket_path = \"shop\"\ns3_bucket_region = \"eu-west-1\"\n\
         access_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"${{CRONBYTE_TEST_S3_SECRET}}\"\n\
         format = {{ format_type = \"Parquet\", compression_codec = \"SNAPPY\" }}\n\
         [[connections]]\nname = \"shop-to-lake\"\nsource = \"shop\"\ndestination = \"lake\"\ncron = \"0 0 2 * * ?\"\n\
         [[connections.streams]]\nname = \"orders\"\nsync_mode = \"incremental\"\ndestination_sync_mode = \"append\"\ncursor_field = \"updated_at\"\n",
        emulator.config_api_base(),
        dir.join("pipeline.db").display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("pipeline config written");
    let path = path.to_str().expect("utf-8");
    let env = [
        ("CRONBYTE_TEST_PG_PASSWORD", PG_PASSWORD),
        ("CRONBYTE_TEST_S3_SECRET", S3_SECRET),
    ];
    let plan = cronbyte(&["plan", "--config", path], &env).await;
    assert_eq!(
        plan.status.code(),
        Some(2),
        "plan shows changes: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("shop") && shown.contains("(secret)"),
        "plan lists the source, secrets masked: {shown}"
    );
    out.add_command("cronbyte plan", &plan);
    let apply = cronbyte(&["apply", "--config", path], &env).await;
    assert!(
        apply.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&apply.stderr)
    );
    out.add_command("cronbyte apply", &apply);
    // A changed secret alone is not seen as a change (Airbyte masks stored secrets), so
    // this plan shows the declaration as Airbyte now has it.
    out.add_command(
        "cronbyte plan after apply",
        &cronbyte(&["plan", "--config", path], &env).await,
    );
}

/// Standard base64 with padding, as HTTP basic auth sends credentials.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn the_basic_auth_header_value_is_computed_as_http_sends_it() {
    assert_eq!(base64("airbyte:password"), "YWlyYnl0ZTpwYXNzd29yZA==");
    assert_eq!(base64("f"), "Zg==");
    assert_eq!(base64("fo"), "Zm8=");
}

/// Without `[server].listen` the control API listens on loopback only.
#[test]
fn the_control_api_listens_on_loopback_unless_told_otherwise() {
    let config = cronbyte::config::from_str(
        "[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n",
        cronbyte::config::Format::Toml,
    )
    .expect("a minimal config loads");
    assert!(
        config.server.listen.ip().is_loopback(),
        "default listen {}",
        config.server.listen
    );
}

/// `check` warns when the control API listens beyond loopback without a token, and only then.
#[tokio::test]
async fn check_warns_when_a_non_loopback_listen_has_no_token() {
    let dir = WorkDir::new("check-listen");
    let cases: HashMap<&str, (&str, bool)> = HashMap::from([
        ("wildcard, no token", ("listen = \"0.0.0.0:9464\"\n", true)),
        (
            "wildcard, a token",
            (
                "listen = \"0.0.0.0:9464\"\ntoken = \"t0ken-for-check\"\n",
                false,
            ),
        ),
        (
            "loopback, no token",
            ("listen = \"127.0.0.1:9464\"\n", false),
        ),
    ]);
    for (what, (server, warns)) in cases {
        let path = dir.path().join("cronbyte.toml");
        std::fs::write(
            &path,
            format!("[airbyte]\nbase_url = \"http://localhost:8000/api/v1\"\n[server]\n{server}"),
        )
        .expect("config written");
        let output = cronbyte(&["check", "--config", path.to_str().expect("utf-8")], &[]).await;
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let warned =
            stderr.contains("warning: server.token") && stderr.contains("not a loopback address");
        assert_eq!(warned, warns, "{what}: {stderr}");
        assert!(
            !stderr.contains("t0ken-for-check"),
            "{what}: the token shown: {stderr}"
        );
    }
}
