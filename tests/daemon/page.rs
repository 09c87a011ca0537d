//! The status page over HTTP: readable by anyone, 404 pages that name what was
//! asked for, sign-in with the control token, and actions that need the
//! session's CSRF token. (The browser test, `tests/browser.rs`, looks at it as
//! a person does.)

use std::time::{Duration, Instant};

use cronbyte::emulator::JobPlan;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};

use crate::helpers::*;

/// A client that does not follow redirects, so a 303 can be looked at.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A form body, as a browser posts it.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(url: String, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs))
}

async fn get(url: &str) -> (StatusCode, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/html; charset=utf-8",
        "{url}"
    );
    (status, response.text().await.unwrap())
}

/// Anyone who reaches the listener reads the page without a token; an unknown
/// run or connection is a 404 page naming what was asked for, and a listing the
/// page cannot show is a 400 page naming the parameter.
#[tokio::test]
async fn the_page_is_readable_without_sign_in_and_unknown_things_are_404_pages_naming_them() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(200), 5, 50),
    );
    let text = with_token(&harness.config_text(&connection_toml("orders", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let url = daemon.url();

    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"href="/connections/orders""#), "{page}");
    assert!(page.contains("Sign in to act"));
    assert!(!page.contains(TOKEN));

    let (status, page) = get(&format!("{url}/runs/424242")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("There is no run <q>424242</q>"), "{page}");
    let (status, page) = get(&format!("{url}/runs/not-a-run")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("<q>not-a-run</q>"), "{page}");
    let (status, page) = get(&format!("{url}/connections/ordrs%3Cb%3E")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        page.contains("There is no connection <q>ordrs&lt;b&gt;</q>"),
        "{page}"
    );
    let (status, page) = get(&format!("{url}/?sort=sideways")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("`sort` must be"), "{page}");
    let (status, page) = get(&format!("{url}/connections/orders")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>orders"), "{page}");
    daemon.stop().await;
}

/// Signing in with the control token gives an HttpOnly, SameSite=Strict session
/// cookie with a lifetime; an action needs that cookie and the session's CSRF
/// token, and does what it says. A wrong token is refused without detail, and
/// failures in a row are slowed.
#[tokio::test]
async fn sign_in_gives_a_strict_session_and_an_action_needs_its_csrf_token() {
    let harness = Harness::new().await;
    let id = harness.connection(
        "orders",
        JobPlan::succeeding(Duration::from_millis(200), 5, 50),
    );
    let text = with_token(&harness.config_text(&connection_toml("orders", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let url = daemon.url();
    let http = client();

    let mut waits = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let refused = post_form(format!("{url}/sign-in"), &[("token", "not-the-token")])
            .send()
            .await
            .unwrap();
        waits.push(started.elapsed());
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(SET_COOKIE).is_none());
        let body = refused.text().await.unwrap();
        assert!(body.contains("Sign-in refused."), "{body}");
        assert!(!body.contains("not-the-token") && !body.contains(TOKEN));
    }
    assert!(
        waits[2] >= Duration::from_millis(500),
        "the third failure waits: {waits:?}"
    );

    let signed = post_form(format!("{url}/sign-in"), &[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()[LOCATION], "/");
    let set = signed.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(!cookie.contains(TOKEN));

    let page = http
        .get(format!("{url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();

    let act = |csrf: String, cookie: Option<String>| {
        let mut request = post_form(
            format!("{url}/actions"),
            &[
                ("action", "pause"),
                ("target", "orders"),
                ("csrf", &csrf),
                ("back", "/connections/orders"),
            ],
        );
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    assert_eq!(
        act(csrf.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        act("forged".into(), Some(cookie.clone()))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let (_, listing) = call(
        reqwest::Method::GET,
        &format!("{url}/api/v1/connections"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        listing["connections"][0]["paused"], false,
        "refused actions change nothing"
    );

    let done = act(csrf, Some(cookie)).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()[LOCATION], "/connections/orders");
    let (_, listing) = call(
        reqwest::Method::GET,
        &format!("{url}/api/v1/connections"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(listing["connections"][0]["paused"], true);
    daemon.stop().await;
}
