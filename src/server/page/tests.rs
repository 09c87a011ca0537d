//! The page's pieces without a server: what the templates write, how the
//! listing query is read, and how freshness is judged.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::run::Trigger;

const HOSTILE: &str = r#"<img src=x onerror="alert(1)">&amp;"#;

fn now() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn status(name: &str) -> ConnectionStatus {
    ConnectionStatus {
        name: name.to_owned(),
        connection_id: "4b5c6d7e-0000-4000-8000-000000000001".into(),
        cron: Some("0 * * * *".into()),
        timezone: "Europe/Paris".into(),
        enabled: true,
        paused: false,
        group: None,
        after: Vec::new(),
        next_run: Some(now() + Duration::minutes(30)),
        active_run: None,
        last_run: None,
        running: None,
    }
}

fn run(id: i64, status: RunStatus, error: Option<&str>) -> Run {
    Run {
        id,
        connection: HOSTILE.into(),
        connection_id: "c".into(),
        instance: "default".into(),
        trigger: Trigger::Schedule,
        scheduled_for: now() - Duration::minutes(60),
        claimed_at: now() - Duration::minutes(60),
        started_at: Some(now() - Duration::minutes(60)),
        finished_at: Some(now() - Duration::minutes(55)),
        status,
        job_id: Some(id),
        attempts: 1,
        records_synced: Some(10),
        bytes_synced: Some(100),
        error: error.map(str::to_owned),
        retry_of: None,
        cancel_requested_at: None,
    }
}

fn overview(rows: Vec<Row>, failures: Vec<Run>) -> Overview {
    Overview {
        matched: rows.len(),
        total: rows.len(),
        rows,
        listing: Listing::parse(&HashMap::new()).unwrap(),
        running: Vec::new(),
        failures,
        instances: vec![("default".into(), true), ("eu".into(), false)],
        replicas: None,
        now: now(),
    }
}

fn row(status: ConnectionStatus, recent: Vec<Run>) -> Row {
    Row {
        words: status.cron.as_deref().and_then(words::describe),
        status,
        recent,
        failures: 0,
        freshness: Freshness::Unjudged { since: None },
    }
}

#[test]
fn names_and_failure_messages_from_outside_are_written_as_text() {
    let failed = run(7, RunStatus::Failed, Some("<script>steal()</script> broke"));
    let page = view::index(
        &Viewer(None),
        &overview(
            vec![row(status(HOSTILE), vec![failed.clone()])],
            vec![failed],
        ),
    )
    .into_string();
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(!page.contains("<script>steal"), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;steal()&lt;/script&gt; broke"),
        "{page}"
    );
    // The link to the connection's page carries the name percent-encoded.
    assert!(page.contains("/connections/%3Cimg%20src%3Dx"), "{page}");
    // Every script the page has comes from the daemon's own file.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
}

#[test]
fn the_index_shows_rule_in_words_zone_marks_paused_health_and_no_actions_when_signed_out() {
    let mut paused = status("orders");
    paused.paused = true;
    let recent = vec![
        run(1, RunStatus::Succeeded, None),
        run(2, RunStatus::Failed, Some("disk full")),
        run(3, RunStatus::Succeeded, None),
    ];
    let page = view::index(
        &Viewer(None),
        &overview(vec![row(paused, recent)], Vec::new()),
    )
    .into_string();
    assert!(
        page.contains(r#"<span title="0 * * * *">hourly at :00</span>"#),
        "{page}"
    );
    assert!(page.contains("Europe/Paris"));
    assert!(
        page.contains(r#"class="badge paused-badge">paused"#),
        "{page}"
    );
    assert_eq!(page.matches(r#"class="mark s-succeeded""#).count(), 2);
    assert!(page.contains(r#"href="/runs/2""#));
    assert!(page.contains("2/3"), "success ratio: {page}");
    assert!(page.contains("eu: not answering"));
    assert!(page.contains(r#"http-equiv="refresh""#));
    assert!(
        !page.contains(r#"action="/actions""#),
        "no action form signed out"
    );
}

#[test]
fn a_signed_in_viewer_gets_action_forms_carrying_the_csrf_token() {
    let session = Session {
        csrf: "csrf-123".into(),
        expires: tokio::time::Instant::now() + session::LIFETIME,
    };
    let viewer = Viewer(Some(("id".into(), session)));
    let page = view::index(
        &viewer,
        &overview(vec![row(status("orders"), Vec::new())], Vec::new()),
    )
    .into_string();
    assert_eq!(
        page.matches(r#"action="/actions""#).count(),
        2,
        "trigger and pause"
    );
    // Each action form, and the sign-out form, carries the token.
    assert_eq!(
        page.matches(r#"name="csrf" value="csrf-123""#).count(),
        3,
        "{page}"
    );
}

#[test]
fn a_listing_query_outside_what_the_page_takes_is_refused_naming_it() {
    let query = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ok = Listing::parse(&query(&[
        ("q", "ord"),
        ("status", "failing"),
        ("sort", "last_failure"),
        ("page", "3"),
    ]))
    .unwrap();
    assert_eq!(
        (ok.name.as_str(), ok.show, ok.sort, ok.page),
        ("ord", Show::Failing, Sort::LastFailure, 3)
    );
    for (pairs, named) in [
        (vec![("status", "broken")], "`status`"),
        (vec![("sort", "<b>")], "`sort`"),
        (vec![("page", "0")], "`page`"),
        (vec![("page", "x")], "`page`"),
        (vec![("sort", "")], "`sort`"),
        (vec![("status", "")], "`status`"),
        (vec![("color", "red")], "`color`"),
    ] {
        let err = Listing::parse(&query(&pairs)).unwrap_err();
        assert!(err.contains(named), "{err}");
    }
}

#[test]
fn freshness_is_judged_against_the_rule_s_interval_or_the_upstreams() {
    let marks_of = |pairs: &[(&str, Option<DateTime<Utc>>)]| -> Vec<ConnectionMarks> {
        pairs
            .iter()
            .map(|(name, success)| ConnectionMarks {
                connection: name.to_string(),
                last_tick: None,
                last_claimed: None,
                last_success: *success,
                failures: 0,
            })
            .collect()
    };
    let all = marks_of(&[
        ("hourly-ok", Some(now() - Duration::minutes(90))),
        ("hourly-late", Some(now() - Duration::hours(3))),
        ("upstream", Some(now() - Duration::minutes(10))),
        ("follower", Some(now() - Duration::minutes(30))),
    ]);
    let marks: HashMap<&str, &ConnectionMarks> =
        all.iter().map(|m| (m.connection.as_str(), m)).collect();
    assert!(matches!(
        freshness(&status("hourly-ok"), &marks, now()),
        Freshness::Fresh { .. }
    ));
    let late = freshness(&status("hourly-late"), &marks, now());
    assert!(late.is_stale(), "{late:?}");
    assert!(freshness(&status("never"), &marks, now()).is_stale());
    let mut follower = status("follower");
    follower.cron = None;
    follower.after = vec!["upstream".into()];
    let judged = freshness(&follower, &marks, now());
    assert!(
        matches!(&judged, Freshness::Stale { why, .. } if why.contains("upstream")),
        "{judged:?}"
    );
    follower.active_run = Some(9);
    assert!(
        !freshness(&follower, &marks, now()).is_stale(),
        "running to catch up"
    );
    let mut paused = status("hourly-late");
    paused.paused = true;
    assert!(!freshness(&paused, &marks, now()).is_stale());
}

#[test]
fn the_not_found_page_says_what_was_asked_for_escaped() {
    let page = view::not_found(&Viewer(None), "run", "<b>42</b>").into_string();
    assert!(
        page.contains("There is no run <q>&lt;b&gt;42&lt;/b&gt;</q>."),
        "{page}"
    );
}

#[test]
fn an_action_goes_back_only_to_a_path_on_this_server() {
    assert_eq!(local_path(Some("/runs/4")), "/runs/4");
    assert_eq!(
        local_path(Some("/?status=all&page=2")),
        "/?status=all&page=2"
    );
    for elsewhere in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil",
        "/a b",
        "",
    ] {
        assert_eq!(local_path(Some(elsewhere)), "/", "{elsewhere}");
    }
    assert_eq!(local_path(None), "/");
}

#[test]
fn where_the_store_is_shared_the_index_names_each_replica_and_the_active_one() {
    let seen = |id: &str, active: bool| crate::store::ReplicaSeen {
        id: id.into(),
        host: "node-1".into(),
        settings_hash: "h".into(),
        active,
    };
    let mut shared = overview(Vec::new(), Vec::new());
    shared.replicas = Some((
        vec![seen("node-1-aaaa", true), seen("node-1-bbbb", false)],
        "node-1-bbbb".into(),
    ));
    let page = view::index(&Viewer(None), &shared).into_string();
    assert!(page.contains("node-1-aaaa on node-1: active"), "{page}");
    assert!(
        page.contains("node-1-bbbb on node-1: standby (this page)"),
        "{page}"
    );
    assert!(!page.contains("No replica is active"), "{page}");

    shared.replicas = Some((vec![seen("node-1-bbbb", false)], "node-1-bbbb".into()));
    let page = view::index(&Viewer(None), &shared).into_string();
    assert!(page.contains("No replica is active right now."), "{page}");

    let alone = view::index(&Viewer(None), &overview(Vec::new(), Vec::new())).into_string();
    assert!(!alone.contains("Replicas"), "{alone}");
}
