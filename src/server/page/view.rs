//! The page's HTML, written with maud: the templates are Rust, checked when the
//! daemon is compiled, and every `(value)` spliced in is escaped. Nothing here
//! writes text from outside unescaped; the only raw markup is none at all (the
//! style sheet and the script are files of their own).

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};

use super::{Freshness, Overview, PAGE_SIZE, REFRESH_SECONDS, Row, Show, Sort, Viewer};
use crate::engine::{ConnectionStatus, LiveSync, RunDetail};
use crate::remote::encode;
use crate::run::{Run, RunStatus};
use crate::units;

/// The frame of every page: title, style, script, the header with sign-in.
fn layout(viewer: &Viewer, title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh {
                    meta http-equiv="refresh" content=(REFRESH_SECONDS);
                }
                title { (title) " · cronbyte" }
                link rel="stylesheet" href="/assets/page.css";
                script src="/assets/page.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "cronbyte" }
                    span.version { "v" (env!("CARGO_PKG_VERSION")) }
                    span.grow {}
                    @match &viewer.0 {
                        Some((_, session)) => {
                            span.signed { "signed in" }
                            form.inline method="post" action="/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                        None => { a href="/sign-in" { "Sign in to act" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An instant as UTC text, marked up so the script can show it in the viewer's
/// zone, with UTC on hover.
fn instant(at: DateTime<Utc>) -> Markup {
    let iso = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let utc = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(iso) title=(utc) { (utc) } }
}

/// "in 3m05s" or "3m05s ago".
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    if seconds >= 0 {
        format!("in {}", units::duration(seconds))
    } else {
        format!("{} ago", units::duration(-seconds))
    }
}

fn run_duration(run: &Run) -> Option<i64> {
    Some((run.finished_at? - run.started_at?).num_seconds())
}

/// The CSS class of a run status.
fn class(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Pending => "s-pending",
        RunStatus::Running => "s-running",
        RunStatus::Succeeded => "s-succeeded",
        RunStatus::Failed => "s-failed",
        RunStatus::Cancelled => "s-cancelled",
        RunStatus::TimedOut => "s-timed_out",
        RunStatus::Skipped => "s-skipped",
        RunStatus::TriggerFailed => "s-trigger_failed",
    }
}

/// A query string for the index, keeping the listing but for what changes.
fn listing_href(overview: &Overview, page: usize) -> String {
    let l = &overview.listing;
    let mut href = format!(
        "/?status={}&sort={}&page={page}",
        l.show.word(),
        l.sort.word()
    );
    if !l.name.is_empty() {
        href.push_str("&q=");
        href.push_str(&encode(&l.name));
    }
    href
}

/// An action button: a form posting the action with the session's CSRF token.
fn action(viewer: &Viewer, action: &str, target: &str, label: &str, back: &str) -> Markup {
    match &viewer.0 {
        Some((_, session)) => html! {
            form.inline method="post" action="/actions" {
                input type="hidden" name="action" value=(action);
                input type="hidden" name="target" value=(target);
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="back" value=(back);
                button type="submit" data-action=(action) { (label) }
            }
        },
        None => html! {},
    }
}

fn live_numbers(live: &LiveSync) -> Markup {
    html! {
        span.live data-run=(live.run_id) {
            span.records { (live.records.map_or("-".into(), units::count)) " records" }
            " · "
            span.bytes { (live.bytes.map_or("-".into(), units::bytes)) }
            " · "
            (live.records_per_second.map_or("rate -".into(), |r| units::per_second(r, units::count)))
            " · ran " (units::duration(live.elapsed_seconds))
            " · "
            @if live.overdue {
                strong.overdue { "longer than usual (" (live.usual_seconds.map_or("-".into(), units::duration)) ")" }
            } @else {
                @match live.estimated_seconds_left {
                    Some(left) => { "~" (units::duration(left)) " left" }
                    None => { "no estimate yet" }
                }
            }
        }
    }
}

fn freshness(f: &Freshness, now: DateTime<Utc>) -> Markup {
    match f {
        Freshness::Fresh { since } => html! {
            span.fresh title="last success" { "fresh · " (relative(*since, now)) }
        },
        Freshness::Stale { since, why } => html! {
            span.stale title=(why) {
                "stale · "
                (since.map_or("never succeeded".into(), |s| relative(s, now)))
            }
        },
        Freshness::Unjudged { since } => html! {
            span.muted { (since.map_or("-".into(), |s| relative(s, now))) }
        },
    }
}

fn rule(status: &ConnectionStatus, words: Option<&str>) -> Markup {
    html! {
        @match (&status.cron, words) {
            (Some(expr), Some(words)) => { span title=(expr) { (words) } }
            (Some(expr), None) => { code { (expr) } }
            (None, _) => {}
        }
        @if !status.after.is_empty() {
            @if status.cron.is_some() { " and " } @else { "" }
            "after " (status.after.join(", "))
        }
        " "
        span.zone { (status.timezone) }
    }
}

fn marks(recent: &[Run]) -> Markup {
    html! {
        span.marks {
            @for run in recent {
                @let took = run_duration(run).map_or(String::new(), |d| format!(" · {}", units::duration(d)));
                a.mark.(class(run.status)) href=(format!("/runs/{}", run.id))
                    title=(format!("run {} {}{} · {}", run.id, run.status, took, run.scheduled_for.format("%Y-%m-%d %H:%M UTC"))) {
                    span.sr { (run.status) }
                }
            }
        }
    }
}

fn row(viewer: &Viewer, r: &Row, now: DateTime<Utc>, back: &str) -> Markup {
    let c = &r.status;
    let href = format!("/connections/{}", encode(&c.name));
    let (good, counted) = r.ratio();
    html! {
        tr.connection.paused[c.paused] data-name=(c.name) {
            td.name {
                a href=(href) { (c.name) }
                @if c.paused { " " span.badge.paused-badge { "paused" } }
                @if !c.enabled { " " span.badge { "disabled" } }
                @if r.failures > 0 { " " span.badge.failing-badge { "failing ×" (r.failures) } }
            }
            td.rule { (rule(c, r.words.as_deref())) }
            td.next {
                @match c.next_run {
                    Some(at) => { (instant(at)) br; span.muted { (relative(at, now)) } }
                    None => { span.muted { "-" } }
                }
            }
            td { (marks(&r.recent)) }
            td.ratio {
                @if counted > 0 { (good) "/" (counted) } @else { span.muted { "-" } }
            }
            td { (freshness(&r.freshness, now)) }
            td.now {
                @if let Some(live) = &c.running {
                    a href=(format!("/runs/{}", live.run_id)) { "run " (live.run_id) } ": " (live_numbers(live))
                } @else if let Some(active) = c.active_run {
                    a href=(format!("/runs/{active}")) { "run " (active) } " starting"
                }
            }
            @if viewer.0.is_some() {
                td.actions {
                    (action(viewer, "trigger", &c.name, "Run now", back))
                    @if c.paused {
                        (action(viewer, "resume", &c.name, "Resume", back))
                    } @else {
                        (action(viewer, "pause", &c.name, "Pause", back))
                    }
                    @if let Some(active) = c.active_run {
                        (action(viewer, "cancel", &active.to_string(), "Cancel", back))
                    }
                }
            }
        }
    }
}

pub fn index(viewer: &Viewer, o: &Overview) -> Markup {
    let pages = o.matched.div_ceil(PAGE_SIZE).max(1);
    let back = listing_href(o, o.listing.page);
    let body = html! {
        section.health {
            h2 { "Airbyte" }
            ul.instances {
                @for (name, up) in &o.instances {
                    li.up[*up].down[!*up] { (name) ": " @if *up { "up" } @else { "not answering" } }
                }
            }
        }
        @if let Some((replicas, this)) = &o.replicas {
            section.replicas {
                h2 { "Replicas" }
                @if replicas.iter().all(|r| !r.active) {
                    p.down { "No replica is active right now." }
                }
                ul.instances {
                    @for r in replicas {
                        li.up[r.active] {
                            (r.id) " on " (r.host) ": "
                            @if r.active { "active" } @else { "standby" }
                            @if r.id == *this { " (this page)" }
                        }
                    }
                }
            }
        }
        section.running {
            h2 { "Running now (" (o.running.len()) ")" }
            @if o.running.is_empty() {
                p.muted { "No sync is running." }
            } @else {
                ul {
                    @for live in &o.running {
                        li {
                            a href=(format!("/connections/{}", encode(&live.connection))) { (live.connection) }
                            " · " a href=(format!("/runs/{}", live.run_id)) { "run " (live.run_id) }
                            " · job " (live.job_id) " · "
                            (live_numbers(live))
                        }
                    }
                }
            }
        }
        section.failures {
            h2 { "Recent failures" }
            @if o.failures.is_empty() {
                p.muted { "None among the newest runs." }
            } @else {
                ul {
                    @for run in &o.failures {
                        li {
                            span.mark.(class(run.status)) {}
                            " "
                            a href=(format!("/connections/{}", encode(&run.connection))) { (run.connection) }
                            " · " a href=(format!("/runs/{}", run.id)) { "run " (run.id) }
                            " · " (run.status) " "
                            @if let Some(at) = run.finished_at { (relative(at, o.now)) }
                            @if let Some(error) = &run.error { ": " q.reason { (error) } }
                        }
                    }
                }
            }
        }
        section.connections {
            h2 { "Connections (" (o.matched) " of " (o.total) ")" }
            form.filter method="get" action="/" {
                label { "Name " input type="search" name="q" value=(o.listing.name) placeholder="part of a name"; }
                label { "Status "
                    select name="status" {
                        @for (show, word) in Show::ALL {
                            option value=(word) selected[show == o.listing.show] { (word) }
                        }
                    }
                }
                label { "Sort "
                    select name="sort" {
                        @for (sort, word) in Sort::ALL {
                            option value=(word) selected[sort == o.listing.sort] { (word.replace('_', " ")) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            div.scroll {
                table {
                    thead {
                        tr {
                            th { "Connection" } th { "Rule" } th { "Next run" } th { "Last runs" }
                            th { "Success" } th { "Freshness" } th { "Now" }
                            @if viewer.0.is_some() { th { "Actions" } }
                        }
                    }
                    tbody {
                        @for r in &o.rows { (row(viewer, r, o.now, &back)) }
                    }
                }
            }
            @if o.rows.is_empty() { p.muted { "No connection matches." } }
            nav.pages {
                @if o.listing.page > 1 { a rel="prev" href=(listing_href(o, o.listing.page - 1)) { "← newer page" } " " }
                "page " (o.listing.page) " of " (pages)
                @if o.listing.page < pages { " " a rel="next" href=(listing_href(o, o.listing.page + 1)) { "next page →" } }
            }
        }
        footer.muted { "Reloads every " (REFRESH_SECONDS) " s. Times are UTC without scripts, your zone with them (UTC on hover)." }
    };
    layout(viewer, "Status", true, body)
}

fn run_rows(runs: &[Run], now: DateTime<Utc>) -> Markup {
    html! {
        table.runs {
            thead { tr { th { "Run" } th { "Status" } th { "Trigger" } th { "Scheduled" } th { "Took" } th { "Records" } th { "Bytes" } th { "Error" } } }
            tbody {
                @for run in runs {
                    tr {
                        td { a href=(format!("/runs/{}", run.id)) { (run.id) } }
                        td { span.mark.(class(run.status)) {} " " (run.status) }
                        td { (run.trigger) }
                        td { (instant(run.scheduled_for)) " " span.muted { (relative(run.scheduled_for, now)) } }
                        td { (run_duration(run).map_or("-".into(), units::duration)) }
                        td { (run.records_synced.map_or("-".into(), units::count)) }
                        td { (run.bytes_synced.map_or("-".into(), units::bytes)) }
                        td.reason { (run.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

pub fn connection(
    viewer: &Viewer,
    c: &ConnectionStatus,
    words: Option<String>,
    runs: &[Run],
    now: DateTime<Utc>,
) -> Markup {
    let back = format!("/connections/{}", encode(&c.name));
    let body = html! {
        h1 { (c.name) @if c.paused { " " span.badge.paused-badge { "paused" } } }
        dl {
            dt { "Rule" } dd { (rule(c, words.as_deref())) }
            dt { "Airbyte connection" } dd { code { (c.connection_id) } }
            dt { "Next run" } dd { @match c.next_run { Some(at) => { (instant(at)) " (" (relative(at, now)) ")" } None => { "-" } } }
            @if let Some(group) = &c.group { dt { "Group" } dd { (group) } }
            @if let Some(live) = &c.running { dt { "Running" } dd { a href=(format!("/runs/{}", live.run_id)) { "run " (live.run_id) } ": " (live_numbers(live)) } }
        }
        @if viewer.0.is_some() {
            p.actions {
                (action(viewer, "trigger", &c.name, "Run now", &back))
                @if c.paused { (action(viewer, "resume", &c.name, "Resume", &back)) }
                @else { (action(viewer, "pause", &c.name, "Pause", &back)) }
            }
        }
        h2 { "Newest runs" }
        div.scroll { (run_rows(runs, now)) }
    };
    layout(viewer, &c.name, true, body)
}

pub fn run(viewer: &Viewer, d: &RunDetail, now: DateTime<Utc>) -> Markup {
    let r = &d.run;
    let back = format!("/runs/{}", r.id);
    let body = html! {
        h1 { "Run " (r.id) " of " a href=(format!("/connections/{}", encode(&r.connection))) { (r.connection) } }
        p { span.mark.(class(r.status)) {} " " strong.status { (r.status) } }
        @if let Some(live) = &d.live { p { (live_numbers(live)) } }
        @if let Some(error) = &r.error { p { "Reason: " q.reason { (error) } } }
        dl {
            dt { "Trigger" } dd { (r.trigger) }
            dt { "Airbyte instance" } dd { (r.instance) }
            dt { "Job" } dd { (r.job_id.map_or("-".into(), |j| j.to_string())) }
            dt { "Attempts" } dd { (r.attempts) }
            dt { "Scheduled for" } dd { (instant(r.scheduled_for)) }
            dt { "Claimed" } dd { (instant(r.claimed_at)) }
            dt { "Started" } dd { @match r.started_at { Some(at) => { (instant(at)) } None => { "-" } } }
            dt { "Finished" } dd { @match r.finished_at { Some(at) => { (instant(at)) " (" (relative(at, now)) ")" } None => { "-" } } }
            dt { "Took" } dd { (run_duration(r).map_or("-".into(), units::duration)) }
            dt { "Records" } dd { (r.records_synced.map_or("-".into(), |n| n.to_string())) }
            dt { "Bytes" } dd { (r.bytes_synced.map_or("-".into(), |n| n.to_string())) }
            @if let Some(at) = r.cancel_requested_at { dt { "Cancel asked" } dd { (instant(at)) } }
        }
        @if r.status.is_open() { p.actions { (action(viewer, "cancel", &r.id.to_string(), "Cancel", &back)) } }
        @if d.chain.len() > 1 {
            h2 { "Retry chain" }
            div.scroll { (run_rows(&d.chain, now)) }
        }
    };
    layout(viewer, &format!("Run {}", r.id), r.status.is_open(), body)
}

pub fn sign_in(viewer: &Viewer, enabled: bool, refused: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if !enabled {
            p { "Actions are off: the daemon has no control token ([server].token or token_file)." }
        } @else if viewer.0.is_some() {
            p { "You are signed in. " a href="/" { "Back to the status" } }
        } @else {
            @if let Some(message) = refused { p.refused role="alert" { (message) } }
            p.muted { "The control token lets you trigger, pause, resume and cancel from the page. On plain HTTP it crosses the network readable: sign in over a tunnel, a TLS proxy or loopback." }
            form method="post" action="/sign-in" {
                label { "Control token " input type="password" name="token" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        }
    };
    layout(viewer, "Sign in", false, body)
}

pub fn not_found(viewer: &Viewer, what: &str, asked: &str) -> Markup {
    let body = html! {
        h1 { "No such " (what) }
        p.missing { "There is no " (what) " " q { (asked) } "." }
        p { a href="/" { "Back to the status" } }
    };
    layout(viewer, &format!("No such {what}"), false, body)
}

pub fn problem(viewer: &Viewer, title: &str, message: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        p.problem { (message) }
        p { a href="/" { "Back to the status" } }
    };
    layout(viewer, title, false, body)
}
