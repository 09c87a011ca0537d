//! The control API answers as `docs/control-api.yaml` says: every route it
//! documents exists, and every refusal (a path or query parameter the document
//! does not allow, a body, no token, an unknown route or method) is a status the
//! document lists for that route, with the JSON error body it defines.

use cronbyte::emulator::JobPlan;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn document() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/control-api.yaml"
    ))
    .expect("the document reads");
    serde_norway::from_str(&text).expect("the document is YAML")
}

/// The statuses the document lists for `method` on `path` (as written there).
fn documented_statuses(doc: &Value, method: &Method, path: &str) -> Vec<String> {
    doc["paths"][path][method.as_str().to_lowercase()]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
        .keys()
        .cloned()
        .collect()
}

/// `status` is listed for `method path` and `body` is the document's `Error`
/// with `code`; returns the message.
fn assert_documented_error(
    doc: &Value,
    (method, path): (&Method, &str),
    (status, body): (StatusCode, &Value),
    code: &str,
) -> String {
    let statuses = documented_statuses(doc, method, path);
    assert!(
        statuses.contains(&status.as_u16().to_string()),
        "{method} {path} answered {status}, documented: {statuses:?}"
    );
    let error = jsonschema::validator_for(&doc["components"]["schemas"]["Error"])
        .expect("the Error schema compiles");
    assert!(
        error.is_valid(body),
        "{method} {path}: {body} is not the Error shape"
    );
    assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A daemon with the control token and one connection, `a`, that never fires.
async fn daemon_with_token(harness: &Harness) -> Running {
    let id = harness.connection("a", JobPlan::hanging());
    let text = with_token(&harness.config_text(&connection_toml("a", id, "0 0 1 1 *")));
    harness.start_from_file(&text).await.0
}

/// Every route `docs/control-api.yaml` documents exists: none answers the
/// router's own 404.
#[tokio::test]
async fn every_documented_route_exists() {
    let spec = document();
    let harness = Harness::new().await;
    let id = harness.connection("a", JobPlan::hanging());
    let text = with_token(&harness.config_text(&connection_toml("a", id, "0 0 1 1 *")));
    let (daemon, _) = harness.start_from_file(&text).await;
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                daemon.url(),
                path.replace("{name}", "a").replace("{id}", "999999")
            );
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = reqwest::Client::new()
                .request(method.clone(), &url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                !(status == StatusCode::NOT_FOUND && body.contains("no such route"))
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status} {body}"
            );
        }
    }
    daemon.stop().await;
}

/// Every route under `/api/v1` lists 401, and answers it (no token, or a wrong
/// one) as the JSON error, without repeating the token it was given.
#[tokio::test]
async fn every_control_route_documents_its_401_and_answers_it_as_a_json_error() {
    let doc = document();
    let harness = Harness::new().await;
    let daemon = daemon_with_token(&harness).await;
    let mut routes = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = format!(
                "{}{}",
                daemon.url(),
                path.replace("{name}", "a").replace("{id}", "1")
            );
            let wrong = format!("{TOKEN}-but-wrong");
            for token in [None, Some(wrong.as_str())] {
                let (status, body) = call(method.clone(), &url, token).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                assert_documented_error(&doc, (&method, path), (status, &body), "unauthorized");
                assert!(!body.to_string().contains(TOKEN), "{body}");
            }
            routes += 1;
        }
    }
    assert_eq!(routes, 8);
    daemon.stop().await;
}

/// A run id that is not one (not a number, not UTF-8, zero, beyond int64) and a
/// connection name that is not UTF-8 are JSON 400s naming the parameter, not
/// axum's plain-text `Invalid URL`.
#[tokio::test]
async fn a_path_parameter_that_does_not_parse_is_a_json_400_naming_it() {
    let doc = document();
    let harness = Harness::new().await;
    let daemon = daemon_with_token(&harness).await;
    let cancel = (&Method::POST, "/api/v1/runs/{id}/cancel");
    for id in [
        "%1E%C3%A7",
        "%C3",
        "abc",
        "0",
        "-4",
        "9223372036854775808",
        "1.5",
    ] {
        let url = format!("{}/api/v1/runs/{id}/cancel", daemon.url());
        let (status, body) = call(Method::POST, &url, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{id}: {body}");
        let message = assert_documented_error(&doc, cancel, (status, &body), "bad_request");
        assert!(message.contains("`id`"), "{id}: {message}");
    }
    let url = format!("{}/api/v1/connections/%C3/trigger", daemon.url());
    let (status, body) = call(Method::POST, &url, Some(TOKEN)).await;
    let trigger = (&Method::POST, "/api/v1/connections/{name}/trigger");
    let message = assert_documented_error(&doc, trigger, (status, &body), "bad_request");
    assert!(message.contains("`name`"), "{message}");
    // A well-formed id of no run is still a 404.
    let url = format!("{}/api/v1/runs/9223372036854775807/cancel", daemon.url());
    let (status, body) = call(Method::POST, &url, Some(TOKEN)).await;
    assert_documented_error(&doc, cancel, (status, &body), "not_found");
    daemon.stop().await;
}

/// `limit` is 1 to 1000 as the document says: outside that, or not a whole
/// number, it is a JSON 400 naming it; its bounds are accepted.
#[tokio::test]
async fn a_limit_outside_one_to_a_thousand_is_a_json_400_and_its_bounds_are_accepted() {
    let doc = document();
    let harness = Harness::new().await;
    let daemon = daemon_with_token(&harness).await;
    let runs = (&Method::GET, "/api/v1/connections/{name}/runs");
    let base = format!("{}/api/v1/connections/a/runs", daemon.url());
    for limit in ["0", "1001", "-1", "abc", "2.5", "", "99999999999"] {
        let (status, body) = call(Method::GET, &format!("{base}?limit={limit}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={limit}: {body}");
        let message = assert_documented_error(&doc, runs, (status, &body), "bad_request");
        assert!(message.contains("`limit`"), "{message}");
        assert!(message.contains("1 to 1000"), "{message}");
    }
    let (status, body) = call(Method::GET, &format!("{base}?limit=1&limit=2"), Some(TOKEN)).await;
    assert_documented_error(&doc, runs, (status, &body), "bad_request");
    for limit in ["1", "1000"] {
        let (status, body) = call(Method::GET, &format!("{base}?limit={limit}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "limit={limit}: {body}");
        assert!(body["runs"].is_array());
    }
    daemon.stop().await;
}

/// The control routes take no body: one sent anyway (JSON, text, garbage) is a
/// JSON 400 and the route does nothing.
#[tokio::test]
async fn a_request_body_on_a_control_route_is_a_json_400_and_changes_nothing() {
    let doc = document();
    let harness = Harness::new().await;
    let daemon = daemon_with_token(&harness).await;
    let api = format!("{}/api/v1", daemon.url());
    let client = reqwest::Client::new();
    let sent = [
        ("application/json", "{\"paused\": true}"),
        ("text/plain", "please"),
        ("application/json", "{not json"),
    ];
    for (route, template) in [
        ("connections/a/pause", "/api/v1/connections/{name}/pause"),
        (
            "connections/a/trigger",
            "/api/v1/connections/{name}/trigger",
        ),
        ("reload", "/api/v1/reload"),
    ] {
        for (content_type, body) in sent {
            let response = client
                .post(format!("{api}/{route}"))
                .bearer_auth(TOKEN)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}: {answer}");
            let message = assert_documented_error(
                &doc,
                (&Method::POST, template),
                (status, &answer),
                "bad_request",
            );
            assert!(message.contains("takes no request body"), "{message}");
        }
    }
    for (route, template) in [
        ("connections", "/api/v1/connections"),
        ("connections/a/runs", "/api/v1/connections/{name}/runs"),
    ] {
        let response = client
            .get(format!("{api}/{route}"))
            .bearer_auth(TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_documented_error(
            &doc,
            (&Method::GET, template),
            (status, &answer),
            "bad_request",
        );
    }
    let (_, listed) = call(Method::GET, &format!("{api}/connections"), Some(TOKEN)).await;
    assert_eq!(listed["connections"][0]["paused"], false);
    assert!(
        harness.runs().await.is_empty(),
        "a rejected trigger claimed a run"
    );
    // An empty body is no body.
    let response = client
        .post(format!("{api}/connections/a/pause"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    daemon.stop().await;
}

/// A path no route serves is the JSON 404, and a route asked with a method it
/// does not take is the JSON 405 with an `Allow` header, with or without the
/// token (they say only which routes exist).
#[tokio::test]
async fn an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405_with_allow() {
    let harness = Harness::new().await;
    let daemon = daemon_with_token(&harness).await;
    let (status, body) = call(
        Method::GET,
        &format!("{}/api/v1/nowhere", daemon.url()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nowhere")
    );
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (Method::GET, "/api/v1/reload", "POST"),
        (Method::DELETE, "/api/v1/connections", "GET,HEAD"),
        (Method::PUT, "/metrics", "GET,HEAD"),
        (Method::POST, "/healthz", "GET,HEAD"),
    ] {
        let response = client
            .request(method.clone(), format!("{}{path}", daemon.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
    let (status, body) = call(
        Method::GET,
        &format!("{}/api/v1/reload", daemon.url()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    daemon.stop().await;
}
