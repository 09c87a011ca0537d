//! The status page on `GET /`: every connection with its rule, next run, last
//! runs, success ratio and freshness, the running syncs with their live numbers,
//! recent failures and Airbyte's health, rendered on the server as HTML that
//! works without scripts. Anyone who reaches the listener may read it, as
//! `/metrics`; actions (trigger, pause, resume, cancel) need a sign-in with the
//! control token ([`session`]). Every text from outside (connection names,
//! Airbyte's failure messages) goes through the template's escaping.

mod session;
mod view;
mod words;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;

use super::AppState;
use crate::engine::{ConnectionStatus, EngineError, LiveSync};
use crate::run::{Run, RunStatus};
use crate::store::{ConnectionMarks, HistoryFilter};
use session::{Session, Sessions};

/// Connections per page.
pub const PAGE_SIZE: usize = 50;

/// Marks per connection: its newest runs.
const MARKS: u32 = 20;

/// How many of the newest runs the "recent failures" section looks through.
const FAILURES_LOOKED_AT: u32 = 200;

/// The rows' history queries sent side by side.
const HISTORY_QUERIES_AT_ONCE: usize = 4;
const FAILURES_SHOWN: usize = 10;

/// Seconds between the page's own reloads (`<meta http-equiv=refresh>`).
pub const REFRESH_SECONDS: u32 = 10;

const CSS: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// What the page's handlers share: the server's state and the sessions.
#[derive(Clone)]
struct Page {
    app: AppState,
    sessions: Arc<Sessions>,
}

/// The page's routes, beside the API's.
pub fn router(app: AppState) -> Router<AppState> {
    let page = Page {
        app,
        sessions: Arc::default(),
    };
    Router::new()
        .route("/", get(index))
        .route("/connections/{name}", get(connection_page))
        .route("/runs/{id}", get(run_page))
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/actions", post(action))
        .route("/assets/page.css", get(css))
        .route("/assets/page.js", get(script))
        .with_state(page)
}

/// An HTML answer with the headers every page carries: no inline script or
/// style is allowed, nothing loads from elsewhere, no framing, no sniffing.
fn html(status: StatusCode, body: maud::Markup) -> Response {
    let mut response = (status, body.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The signed-in viewer, if any: their session id and session.
struct Viewer(Option<(String, Session)>);

impl Page {
    fn viewer(&self, headers: &HeaderMap) -> Viewer {
        Viewer(session::cookie_value(headers).and_then(|id| {
            let session = self.sessions.session(&id)?;
            Some((id, session))
        }))
    }

    /// An error page for what the engine said, with the status the API gives it.
    fn engine_error(&self, viewer: &Viewer, e: EngineError) -> Response {
        let status = match &e {
            EngineError::UnknownConnection(_) | EngineError::UnknownRun(_) => StatusCode::NOT_FOUND,
            EngineError::RunEnded(..)
            | EngineError::NotFollowedHere(_)
            | EngineError::JobEnded(..)
            | EngineError::CancellingForTimeout(_) => StatusCode::CONFLICT,
            EngineError::Airbyte(_) => StatusCode::BAD_GATEWAY,
            // Only the active replica acts; the message names it.
            EngineError::Standby(_)
            | EngineError::Store(crate::store::StoreError::Fenced { .. }) => StatusCode::CONFLICT,
            EngineError::Store(_) => {
                tracing::error!(error = %e, "the status page failed in the store");
                return html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    view::problem(
                        viewer,
                        "The history store failed",
                        "The daemon's log has the cause.",
                    ),
                );
            }
        };
        html(
            status,
            view::problem(viewer, "That did not work", &e.to_string()),
        )
    }
}

/// Which connections the index shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    All,
    Running,
    Failing,
    Paused,
    Stale,
}

impl Show {
    pub const ALL: [(Show, &'static str); 5] = [
        (Show::All, "all"),
        (Show::Running, "running"),
        (Show::Failing, "failing"),
        (Show::Paused, "paused"),
        (Show::Stale, "stale"),
    ];

    pub fn word(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("all", |(_, w)| w)
    }
}

/// How the index orders connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Soonest next run first; connections without one last.
    NextRun,
    /// Failing connections first, the newest failure first.
    LastFailure,
    /// As configured.
    Config,
}

impl Sort {
    pub const ALL: [(Sort, &'static str); 3] = [
        (Sort::NextRun, "next_run"),
        (Sort::LastFailure, "last_failure"),
        (Sort::Config, "config"),
    ];

    pub fn word(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("config", |(_, w)| w)
    }
}

/// The index's query, validated.
#[derive(Clone, Debug)]
pub struct Listing {
    pub name: String,
    pub show: Show,
    pub sort: Sort,
    /// From 1.
    pub page: usize,
}

impl Listing {
    fn parse(query: &HashMap<String, String>) -> Result<Self, String> {
        for key in query.keys() {
            if !["q", "status", "sort", "page"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown query parameter `{}`: the page takes q, status, sort and page",
                    key.chars().take(40).collect::<String>()
                ));
            }
        }
        // Only the name filter may be empty: the page's own links and form always
        // give the others a value.
        let word = |key: &str| query.get(key).map(String::as_str);
        let show = match word("status") {
            None => Show::All,
            Some(w) => Show::ALL
                .iter()
                .find(|(_, name)| *name == w)
                .map(|(s, _)| *s)
                .ok_or_else(|| {
                    format!(
                        "`status` must be one of all, running, failing, paused, stale, not `{}`",
                        w.chars().take(40).collect::<String>()
                    )
                })?,
        };
        let sort = match word("sort") {
            None => Sort::Config,
            Some(w) => Sort::ALL
                .iter()
                .find(|(_, name)| *name == w)
                .map(|(s, _)| *s)
                .ok_or_else(|| {
                    format!(
                        "`sort` must be next_run, last_failure or config, not `{}`",
                        w.chars().take(40).collect::<String>()
                    )
                })?,
        };
        let page = match word("page") {
            None => 1,
            Some(w) => w
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=1_000_000).contains(p))
                .ok_or_else(|| {
                    format!(
                        "`page` must be a page number from 1, not `{}`",
                        w.chars().take(40).collect::<String>()
                    )
                })?,
        };
        Ok(Self {
            name: word("q").unwrap_or_default().chars().take(200).collect(),
            show,
            sort,
            page,
        })
    }
}

/// How recent a connection's data is.
#[derive(Clone, Debug, PartialEq)]
pub enum Freshness {
    /// Its last success, and the span it is judged against (the rule's interval,
    /// or "its upstreams" for an `after`-only connection).
    Fresh { since: DateTime<Utc> },
    Stale {
        since: Option<DateTime<Utc>>,
        why: String,
    },
    /// No rule, no upstream, or disabled: nothing to be late for.
    Unjudged { since: Option<DateTime<Utc>> },
}

impl Freshness {
    pub fn is_stale(&self) -> bool {
        matches!(self, Freshness::Stale { .. })
    }
}

/// One connection's line on the index.
pub struct Row {
    pub status: ConnectionStatus,
    /// Its newest runs, oldest first (at most [`MARKS`]).
    pub recent: Vec<Run>,
    pub words: Option<String>,
    pub failures: u32,
    pub freshness: Freshness,
}

impl Row {
    /// Succeeded runs among the recent ones that count (succeeded, failed,
    /// timed out, not triggered), and how many count.
    pub fn ratio(&self) -> (usize, usize) {
        let counted: Vec<&Run> = self
            .recent
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RunStatus::Succeeded
                        | RunStatus::Failed
                        | RunStatus::TimedOut
                        | RunStatus::TriggerFailed
                )
            })
            .collect();
        let good = counted
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
        (good, counted.len())
    }
}

/// Everything the index shows.
pub struct Overview {
    pub rows: Vec<Row>,
    pub listing: Listing,
    /// Connections configured, and those the filter kept.
    pub total: usize,
    pub matched: usize,
    pub running: Vec<LiveSync>,
    pub failures: Vec<Run>,
    pub instances: Vec<(String, bool)>,
    /// Where the store is shared: the replicas seen, and this one's id.
    pub replicas: Option<(Vec<crate::store::ReplicaSeen>, String)>,
    pub now: DateTime<Utc>,
}

/// How fresh `c`'s data is at `now`: stale when its last success is older than
/// twice its rule's interval, or, for an `after`-only connection, older than a
/// success of one of its upstreams while it is not running.
fn freshness(
    c: &ConnectionStatus,
    marks: &HashMap<&str, &ConnectionMarks>,
    now: DateTime<Utc>,
) -> Freshness {
    let since = marks.get(c.name.as_str()).and_then(|m| m.last_success);
    if !c.enabled || c.paused {
        return Freshness::Unjudged { since };
    }
    if let Some(rule) = c.cron.as_deref().and_then(|expr| {
        let tz = c.timezone.parse().ok()?;
        crate::cron::CronRule::parse(expr, tz).ok()
    }) {
        let interval = rule
            .next_after(now)
            .and_then(|a| Some(rule.next_after(a)? - a));
        let Some(interval) = interval else {
            return Freshness::Unjudged { since };
        };
        return match since {
            Some(at) if now - at <= interval * 2 => Freshness::Fresh { since: at },
            Some(at) => Freshness::Stale {
                since: Some(at),
                why: format!(
                    "no success for {}, over twice the rule's interval ({})",
                    crate::units::duration((now - at).num_seconds()),
                    crate::units::duration(interval.num_seconds())
                ),
            },
            None => Freshness::Stale {
                since: None,
                why: "never succeeded".into(),
            },
        };
    }
    if c.after.is_empty() {
        return Freshness::Unjudged { since };
    }
    let newer_upstream = c.after.iter().find(|u| {
        let upstream = marks.get(u.as_str()).and_then(|m| m.last_success);
        match (upstream, since) {
            (Some(up), Some(ours)) => up > ours,
            (Some(_), None) => true,
            _ => false,
        }
    });
    match (newer_upstream, since) {
        (Some(upstream), _) if c.active_run.is_none() => Freshness::Stale {
            since,
            why: format!("`{upstream}` succeeded since its last success"),
        },
        (_, Some(at)) => Freshness::Fresh { since: at },
        (_, None) => Freshness::Unjudged { since: None },
    }
}

impl Page {
    async fn overview(&self, listing: Listing) -> Result<Overview, EngineError> {
        let app = &self.app;
        let now = Utc::now();
        // The runs of the rows shown are read below; the other connections need
        // only what the engine holds and their marks.
        let engine = app.role.engine();
        // A standby's pauses are the active replica's, read from the store.
        engine.refresh_standby_pauses().await?;
        let connections = engine.standing_connections();
        let marks = app.store.marks().await.map_err(EngineError::Store)?;
        let marks: HashMap<&str, &ConnectionMarks> =
            marks.iter().map(|m| (m.connection.as_str(), m)).collect();
        let total = connections.len();
        let needle = listing.name.to_lowercase();
        // Freshness parses the connection's rule: judged for every connection only
        // when the listing filters on it, else for the rows shown.
        let mut kept: Vec<(ConnectionStatus, Option<Freshness>, u32)> = connections
            .into_iter()
            .filter(|c| needle.is_empty() || c.name.to_lowercase().contains(&needle))
            .map(|c| {
                let fresh = (listing.show == Show::Stale).then(|| freshness(&c, &marks, now));
                let failures = marks.get(c.name.as_str()).map_or(0, |m| m.failures);
                (c, fresh, failures)
            })
            .filter(|(c, fresh, failures)| match listing.show {
                Show::All => true,
                Show::Running => c.active_run.is_some(),
                Show::Failing => *failures > 0,
                Show::Paused => c.paused,
                Show::Stale => fresh.as_ref().is_some_and(Freshness::is_stale),
            })
            .collect();
        match listing.sort {
            Sort::Config => {}
            Sort::NextRun => kept.sort_by_key(|(c, _, _)| (c.next_run.is_none(), c.next_run)),
            // A failing connection's newest run failed: its claim dates the failure.
            Sort::LastFailure => kept.sort_by_key(|(c, _, failures)| {
                let failed_at = marks
                    .get(c.name.as_str())
                    .filter(|_| *failures > 0)
                    .and_then(|m| m.last_claimed);
                (failed_at.is_none(), std::cmp::Reverse(failed_at))
            }),
        }
        let matched = kept.len();
        let start = (listing.page - 1).saturating_mul(PAGE_SIZE);
        let shown: Vec<_> = kept.into_iter().skip(start).take(PAGE_SIZE).collect();
        // The rows' runs, a few queries at a time: the store's read pool serves
        // them side by side.
        let store = Arc::clone(&app.store);
        let names: Vec<String> = shown.iter().map(|(c, _, _)| c.name.clone()).collect();
        let histories: Vec<Result<Vec<Run>, _>> = futures::stream::iter(names)
            .map(|name| {
                let store = Arc::clone(&store);
                async move {
                    let filter = HistoryFilter {
                        connection: Some(name),
                        limit: MARKS,
                    };
                    store.history(&filter).await
                }
            })
            .buffered(HISTORY_QUERIES_AT_ONCE)
            .collect()
            .await;
        let mut rows = Vec::with_capacity(shown.len());
        for ((mut status, fresh, failures), recent) in shown.into_iter().zip(histories) {
            let mut recent = recent?;
            recent.reverse();
            status.last_run = recent.last().cloned();
            rows.push(Row {
                words: status.cron.as_deref().and_then(words::describe),
                freshness: fresh.unwrap_or_else(|| freshness(&status, &marks, now)),
                status,
                recent,
                failures,
            });
        }
        let failures = app
            .store
            .history(&HistoryFilter {
                connection: None,
                limit: FAILURES_LOOKED_AT,
            })
            .await?
            .into_iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RunStatus::Failed | RunStatus::TimedOut | RunStatus::TriggerFailed
                )
            })
            .take(FAILURES_SHOWN)
            .collect();
        Ok(Overview {
            rows,
            listing,
            total,
            matched,
            running: app.role.engine().running_syncs(),
            failures,
            instances: app
                .airbyte_up
                .instances()
                .into_iter()
                .map(|(name, up)| (name.to_owned(), up))
                .collect(),
            replicas: app
                .election
                .is_shared()
                .then(|| (app.election.replicas(), app.replica.clone())),
            now,
        })
    }
}

async fn index(
    State(page): State<Page>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let viewer = page.viewer(&headers);
    let listing = match Listing::parse(&query) {
        Ok(listing) => listing,
        Err(message) => {
            return html(
                StatusCode::BAD_REQUEST,
                view::problem(&viewer, "That is not a listing the page can show", &message),
            );
        }
    };
    match page.overview(listing).await {
        Ok(overview) => html(StatusCode::OK, view::index(&viewer, &overview)),
        Err(e) => page.engine_error(&viewer, e),
    }
}

async fn connection_page(
    State(page): State<Page>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let viewer = page.viewer(&headers);
    let Ok(Path(name)) = name else {
        return html(
            StatusCode::NOT_FOUND,
            view::not_found(&viewer, "connection", "(a name that is not UTF-8)"),
        );
    };
    let connections = match page.app.role.engine().connections().await {
        Ok(all) => all,
        Err(e) => return page.engine_error(&viewer, e),
    };
    let Some(status) = connections.into_iter().find(|c| c.name == name) else {
        return html(
            StatusCode::NOT_FOUND,
            view::not_found(&viewer, "connection", &name),
        );
    };
    match page.app.role.engine().runs(&name, 100).await {
        Ok(runs) => html(
            StatusCode::OK,
            view::connection(
                &viewer,
                &status,
                status.cron.as_deref().and_then(words::describe),
                &runs,
                Utc::now(),
            ),
        ),
        Err(e) => page.engine_error(&viewer, e),
    }
}

async fn run_page(
    State(page): State<Page>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let viewer = page.viewer(&headers);
    let text = match id {
        Ok(Path(text)) => text,
        Err(_) => "(an id that is not UTF-8)".to_owned(),
    };
    let Some(id) = text.parse::<i64>().ok().filter(|id| *id >= 1) else {
        return html(
            StatusCode::NOT_FOUND,
            view::not_found(&viewer, "run", &text),
        );
    };
    match page.app.role.engine().run_detail(id).await {
        Ok(Some(detail)) => html(StatusCode::OK, view::run(&viewer, &detail, Utc::now())),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            view::not_found(&viewer, "run", &text),
        ),
        Err(e) => page.engine_error(&viewer, e),
    }
}

async fn sign_in_form(State(page): State<Page>, headers: HeaderMap) -> Response {
    let viewer = page.viewer(&headers);
    html(
        StatusCode::OK,
        view::sign_in(&viewer, page.app.token.is_some(), None),
    )
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

async fn sign_in(
    State(page): State<Page>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let viewer = page.viewer(&headers);
    let Some(expected) = &page.app.token else {
        return html(StatusCode::FORBIDDEN, view::sign_in(&viewer, false, None));
    };
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            view::sign_in(&viewer, true, Some("The form must post `token`.")),
        );
    };
    match page.sessions.sign_in(expected, &form.token).await {
        Some(id) => {
            let mut response = see_other("/");
            if let Ok(value) = HeaderValue::from_str(&session::cookie(&id)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => html(
            StatusCode::UNAUTHORIZED,
            view::sign_in(&viewer, true, Some("Sign-in refused.")),
        ),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: Option<String>,
}

async fn sign_out(
    State(page): State<Page>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf).unwrap_or_default();
    // Only the page's own form ends a session; anything else leaves it be.
    if let Viewer(Some((id, session))) = page.viewer(&headers)
        && Sessions::csrf_matches(&session, &csrf)
    {
        page.sessions.sign_out(&id);
    }
    let mut response = see_other("/");
    if let Ok(value) = HeaderValue::from_str(&session::expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A `303 See Other` to `to`, a path on this server.
fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `back` when it is a path on this server, else `/`: an action never sends the
/// browser elsewhere.
fn local_path(back: Option<&str>) -> &str {
    match back {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.chars().all(|c| c.is_ascii_graphic()) =>
        {
            path
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
struct ActionForm {
    action: String,
    target: String,
    csrf: String,
    back: Option<String>,
}

async fn action(
    State(page): State<Page>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let viewer = page.viewer(&headers);
    let Some((_, session)) = &viewer.0 else {
        return html(
            StatusCode::UNAUTHORIZED,
            view::problem(
                &viewer,
                "Sign in first",
                "Actions need a sign-in with the control token.",
            ),
        );
    };
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            view::problem(
                &viewer,
                "That form is not one of the page's",
                "An action posts action, target and csrf.",
            ),
        );
    };
    if !Sessions::csrf_matches(session, &form.csrf) {
        return html(
            StatusCode::FORBIDDEN,
            view::problem(
                &viewer,
                "That form is out of date",
                "Reload the page and try again.",
            ),
        );
    }
    let engine = &page.app.role.engine();
    let done = match form.action.as_str() {
        "trigger" => engine.trigger_now(&form.target).await.map(|_| ()),
        "pause" => engine.pause(&form.target).await.map(|_| ()),
        "resume" => engine.resume(&form.target).await.map(|_| ()),
        "cancel" => match form.target.parse::<i64>() {
            Ok(id) => engine.cancel(id).await.map(|_| ()),
            Err(_) => {
                return html(
                    StatusCode::NOT_FOUND,
                    view::not_found(&viewer, "run", &form.target),
                );
            }
        },
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                view::problem(
                    &viewer,
                    "No such action",
                    "The page's actions are trigger, pause, resume and cancel.",
                ),
            );
        }
    };
    match done {
        Ok(()) => {
            tracing::info!(action = %form.action, target = %form.target, "action taken from the status page");
            see_other(local_path(form.back.as_deref()))
        }
        Err(e) => page.engine_error(&viewer, e),
    }
}

#[cfg(test)]
mod tests;
