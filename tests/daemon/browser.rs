//! The status page in a real browser: Debian's headless Chromium, driven through
//! chromedriver over WebDriver, looks at the page a daemon on the emulator serves
//! and checks what a person would see. It saves a screenshot under
//! `target/tmp/browser/`. Without Chromium it says loudly that it did not run;
//! under CI (`CI` set, as `.ci/run` runs) it must run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cronbyte::emulator::JobPlan;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A connection name holding markup, which the page must show as text.
const HOSTILE: &str = "<i>crm</i>&export";

/// Whether the browser is here; when it is not, says so on stderr, and fails
/// under CI, where `.ci/run` installs it.
fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} or {CHROMEDRIVER} is missing under CI: .ci/run installs chromium and chromium-driver"
    );
    // Straight to stderr: the harness captures the output of passing tests.
    use std::io::Write;
    let _ = std::io::stderr().write_all(
        b"\n*** The browser test did NOT run: it needs Debian's chromium and chromium-driver \
          (apt-get install -y chromium chromium-driver), then: cargo test --test daemon browser ***\n",
    );
    false
}

/// chromedriver on a free port, ended when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status")).await.is_ok() {
                return Self { child, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                // As root, Chromium runs only without its sandbox.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,900"],
            }),
        );
        ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Looks again, for up to five seconds, while `look` fails: the page may be
/// loading after a click, or reloading itself (its meta refresh), which leaves
/// the elements of the page before stale.
async fn settled<T, F, Fut>(what: &str, look: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..50 {
        match look().await {
            Ok(found) => return found,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {last}");
}

async fn text(browser: &Client, css: &str) -> String {
    settled(css, || async {
        let element = browser
            .find(Locator::Css(css))
            .await
            .map_err(|e| e.to_string())?;
        element.text().await.map_err(|e| e.to_string())
    })
    .await
}

/// The text of the row of the connection named `name` (found by its data
/// attribute, which the page writes escaped) once `wanted` holds of it.
async fn row_text_when(browser: &Client, name: &str, wanted: impl Fn(&str) -> bool) -> String {
    settled(&format!("the row of {name}"), || async {
        for row in browser
            .find_all(Locator::Css("tr.connection"))
            .await
            .map_err(|e| e.to_string())?
        {
            if row
                .attr("data-name")
                .await
                .map_err(|e| e.to_string())?
                .as_deref()
                == Some(name)
            {
                let text = row.text().await.map_err(|e| e.to_string())?;
                return if wanted(&text) {
                    Ok(text)
                } else {
                    Err(format!("not yet: {text}"))
                };
            }
        }
        Err(format!("no row for {name}"))
    })
    .await
}

async fn row_text(browser: &Client, name: &str) -> String {
    row_text_when(browser, name, |_| true).await
}

/// The records a running sync shows on the page now, as the page writes them.
async fn records_shown(browser: &Client, run_id: i64) -> String {
    text(
        browser,
        &format!("section.running .live[data-run=\"{run_id}\"] .records"),
    )
    .await
}

fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("the artifact directory");
    dir.join(name)
}

/// What a person sees on the page: the connections, a running sync whose
/// numbers move between two looks, a failure with Airbyte's reason, a paused
/// connection marked, a name holding markup shown as text; then sign-in with
/// the control token and one action (pause) that takes effect.
#[tokio::test]
async fn a_person_sees_the_connections_live_numbers_failures_and_can_sign_in_and_pause() {
    if !browser_available() {
        return;
    }
    let harness = Harness::new().await;
    let orders = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_secs(40), 4_000_000, 400_000_000),
    );
    let crm = harness.connection(
        "crm",
        JobPlan::failing(
            Duration::from_millis(200),
            "Could not connect to crm.internal:5432: connection refused",
        ),
    );
    let quiet = harness.connection(
        "quiet",
        JobPlan::succeeding(Duration::from_millis(200), 1, 1),
    );
    let yearly = "0 0 1 1 *";
    let text_config = with_token(&harness.config_text(
        &(connection_toml("orders", orders, yearly)
            + &connection_toml(HOSTILE, crm, yearly)
            + &connection_toml("quiet", quiet, yearly)),
    ));
    let (daemon, _) = harness.start_from_file(&text_config).await;
    let url = daemon.url();
    let api = format!("{url}/api/v1");
    let (_, run) = call(
        Method::POST,
        &format!("{api}/connections/orders/trigger"),
        Some(TOKEN),
    )
    .await;
    let run_id = run["run"]["id"].as_i64().expect("a run");
    let hostile_path = cronbyte_encode(HOSTILE);
    call(
        Method::POST,
        &format!("{api}/connections/{hostile_path}/trigger"),
        Some(TOKEN),
    )
    .await;
    call(
        Method::POST,
        &format!("{api}/connections/quiet/trigger"),
        Some(TOKEN),
    )
    .await;
    harness
        .wait_for(
            Duration::from_secs(10),
            "the crm and quiet runs to end",
            |runs| {
                [HOSTILE, "quiet"].iter().all(|name| {
                    runs.iter()
                        .any(|r| r.connection == *name && !r.status.is_open())
                })
            },
        )
        .await;
    call(
        Method::POST,
        &format!("{api}/connections/quiet/pause"),
        Some(TOKEN),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let looked = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(look_and_act(
        &browser, &url, &api, run_id,
    )))
    .await;
    // Closed whatever happened: ending chromedriver alone leaves Chromium running.
    let closed = browser.close().await;
    drop(driver);
    daemon.stop().await;
    if let Err(panic) = looked {
        std::panic::resume_unwind(panic);
    }
    closed.expect("the browser closes");
}

/// The looks and the action of the test above, in the browser it opened.
async fn look_and_act(browser: &Client, url: &str, api: &str, run_id: i64) {
    let browser = browser.clone();
    browser
        .goto(&format!("{url}/"))
        .await
        .expect("the page loads");

    // The connections, in config order.
    let names: Vec<String> = {
        let mut names = Vec::new();
        for link in browser
            .find_all(Locator::Css("tr.connection td.name > a"))
            .await
            .expect("links")
        {
            names.push(link.text().await.expect("a name"));
        }
        names
    };
    assert_eq!(names, ["orders", HOSTILE, "quiet"]);
    // The name holding markup is text: no <i> element came of it.
    assert!(
        browser
            .find_all(Locator::Css("tr.connection td.name i"))
            .await
            .expect("a query")
            .is_empty(),
        "the name's markup became an element"
    );

    // The running sync's numbers move between two looks.
    let first = records_shown(&browser, run_id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.refresh().await.expect("a reload");
    let second = records_shown(&browser, run_id).await;
    assert!(
        first.ends_with(" records") && second.ends_with(" records"),
        "{first} / {second}"
    );
    assert_ne!(first, second, "the records shown did not move");
    assert!(
        row_text(&browser, "orders")
            .await
            .contains(&format!("run {run_id}"))
    );

    // The failure, with Airbyte's reason, and the paused connection marked.
    let failures = text(&browser, "section.failures").await;
    assert!(failures.contains(HOSTILE), "{failures}");
    assert!(
        failures.contains("Could not connect to crm.internal:5432: connection refused"),
        "{failures}"
    );
    assert!(row_text(&browser, "quiet").await.contains("paused"));
    assert!(!row_text(&browser, "orders").await.contains("paused"));

    let shot = browser.screenshot().await.expect("a screenshot");
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artifact("status-page.png"), &shot).expect("the screenshot is saved");

    // Sign in with the control token, then pause orders from its row.
    browser
        .find(Locator::LinkText("Sign in to act"))
        .await
        .expect("the sign-in link")
        .click()
        .await
        .expect("a click");
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .expect("the token field")
        .send_keys(TOKEN)
        .await
        .expect("typing");
    browser
        .find(Locator::Css("form[action='/sign-in'] button"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("a click");
    assert_eq!(text(&browser, "span.signed").await, "signed in");
    settled("the pause button of orders", || async {
        for row in browser
            .find_all(Locator::Css("tr.connection"))
            .await
            .map_err(|e| e.to_string())?
        {
            if row
                .attr("data-name")
                .await
                .map_err(|e| e.to_string())?
                .as_deref()
                == Some("orders")
            {
                let button = row
                    .find(Locator::Css("button[data-action=pause]"))
                    .await
                    .map_err(|e| e.to_string())?;
                return button.click().await.map_err(|e| e.to_string());
            }
        }
        Err("no row for orders".to_owned())
    })
    .await;
    row_text_when(&browser, "orders", |t| t.contains("paused")).await;
    let (_, listing) = call(Method::GET, &format!("{api}/connections"), Some(TOKEN)).await;
    assert_eq!(listing["connections"][0]["name"], "orders");
    assert_eq!(listing["connections"][0]["paused"], true);

    let signed_in = browser.screenshot().await.expect("a screenshot");
    std::fs::write(artifact("status-page-signed-in.png"), &signed_in).expect("saved");
}

/// A connection name as one URL path segment.
fn cronbyte_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
