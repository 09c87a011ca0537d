//! The HTTP side of the emulator: one handler that counts, delays, breaks, authenticates and
//! routes every request, so that even failures look like Airbyte's (no framework rejection
//! bodies ever reach a client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::errors::{ApiError, Problem, json_response, proxy_html};
use super::net::EmuListener;
use super::state::State as Data;
use super::{EmulatorAuth, ErrorStyle, Shared, api_config, api_public};

/// Larger bodies than this are no Airbyte request.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long tokens live when the emulator does not demand client credentials, as
/// `AB_AIRBYTE_AUTH_TOKEN_EXPIRATION_APPLICATION` defaults to.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

pub(crate) fn spawn(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    let router = Router::new()
        .fallback(dispatch)
        .with_state(Arc::clone(&shared));
    let listener = EmuListener::new(listener, addr, shared);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "emulator stopped serving");
        }
    })
}

/// Everything a handler may look at besides the state.
pub(crate) struct Call<'a> {
    pub(crate) now: Instant,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) body: &'a [u8],
    pub(crate) query: Vec<(String, String)>,
    /// `host[:port]` the client addressed, for links in answers.
    pub(crate) host: String,
    pub(crate) form_body: bool,
}

/// Which API a request is for, and the operation name it is counted under.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Config { op: String },
    Public { rest: String, name: String },
    Other { name: String },
}

impl Route {
    fn of(method: &Method, path: &str) -> Self {
        if let Some(op) = path.strip_prefix("/api/v1/") {
            return Self::Config {
                op: op.trim_end_matches('/').to_string(),
            };
        }
        if let Some(rest) = path
            .strip_prefix("/api/public/v1/")
            .or_else(|| (path == "/api/public/v1").then_some(""))
        {
            let rest = rest.trim_end_matches('/').to_string();
            let template = if rest.starts_with("jobs/") {
                "jobs/{jobId}"
            } else if rest.starts_with("connections/") {
                "connections/{connectionId}"
            } else {
                rest.as_str()
            };
            return Self::Public {
                name: format!("public:{method} /{template}"),
                rest,
            };
        }
        Self::Other {
            name: format!("other:{method} {path}"),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Config { op } => op,
            Self::Public { name, .. } | Self::Other { name } => name,
        }
    }

    fn is_health(&self) -> bool {
        match self {
            Self::Config { op } => op == "health",
            Self::Public { rest, .. } => rest == "health",
            Self::Other { .. } => false,
        }
    }

    fn is_token(&self) -> bool {
        match self {
            Self::Config { op } => op == "applications/token",
            Self::Public { rest, .. } => rest == "applications/token",
            Self::Other { .. } => false,
        }
    }

    fn is_public(&self) -> bool {
        matches!(self, Self::Public { .. })
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let route = Route::of(&parts.method, &path);
    let latency = {
        let mut state = shared.lock();
        state.count_request(route.name());
        state.faults.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "").into_response();
    };
    let response = answer(
        &shared,
        &route,
        &parts.method,
        &path,
        parts.uri.query(),
        &parts.headers,
        &body,
    );
    tracing::debug!(
        operation = route.name(),
        status = response.status().as_u16(),
        "emulator answered"
    );
    let (lose, answer_delay) = {
        let state = shared.lock();
        let lose = !route.is_health()
            && state.faults.lost_answer_rate > 0.0
            && rand::random::<f64>() < state.faults.lost_answer_rate;
        (lose, state.faults.answer_delay)
    };
    if !answer_delay.is_zero() && !route.is_health() {
        tokio::time::sleep(answer_delay).await;
    }
    if lose {
        // Acted on, but the answer never comes: the client's timeout ends the
        // exchange, as when a proxy or the network drops a response.
        tokio::time::sleep(LOST_ANSWER_STALL).await;
    }
    response
}

/// How long a lost answer stalls: longer than any client timeout in tests.
const LOST_ANSWER_STALL: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Everything after the body arrived; synchronous, so the state lock is never held across
/// an await.
fn answer(
    shared: &Shared,
    route: &Route,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    let style = state.options.error_style;
    if let Some(response) = injected_fault(&state, route) {
        return response;
    }
    if let Some(rejection) = authorize(&state, route, headers, now) {
        return rejection;
    }
    let call = Call {
        now,
        method,
        path,
        body,
        query: query.map(parse_urlencoded).unwrap_or_default(),
        host: headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default(),
        form_body: headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")),
    };
    let ok = |state: &Data, value: Value| match value {
        Value::Null => StatusCode::OK.into_response(),
        value => ok_response(state, &value),
    };
    match route {
        Route::Config { op } if op == "applications/token" => {
            if *method == Method::POST {
                issue_token(&mut state, &call, false)
            } else {
                wrong_method(&call, style)
            }
        }
        Route::Public { rest, .. } if rest == "applications/token" => {
            if *method == Method::POST {
                issue_token(&mut state, &call, true)
            } else {
                wrong_method(&call, style)
            }
        }
        Route::Config { op } => match api_config::handle(&mut state, op, &call) {
            // The deletes answer 204 with no body, as the spec declares.
            Ok(Value::Null) if op.ends_with("/delete") => StatusCode::NO_CONTENT.into_response(),
            Ok(value) => ok(&state, value),
            Err(error) => error.into_response(style),
        },
        Route::Public { rest, .. } if !api_public::serves(rest) => ApiError::NoRoute {
            path: path.to_string(),
        }
        .into_response(style),
        Route::Public { rest, .. } => match api_public::handle(&mut state, rest, &call) {
            Ok(value) => ok(&state, value),
            Err(problem) => problem.into_response(),
        },
        Route::Other { .. } => ApiError::NoRoute {
            path: path.to_string(),
        }
        .into_response(style),
    }
}

fn wrong_method(call: &Call<'_>, style: ErrorStyle) -> Response {
    ApiError::WrongMethod {
        path: call.path.to_string(),
        method: call.method.to_string(),
        allowed: "POST",
    }
    .into_response(style)
}

/// A 200 answer, cut short now and then when the faults ask for malformed bodies.
fn ok_response(state: &Data, value: &Value) -> Response {
    let text = value.to_string();
    let rate = state.faults.malformed_rate;
    if rate > 0.0 && rand::rng().random::<f64>() < rate {
        let cut = text.len() / 2;
        let truncated: String = text.chars().take(cut).collect();
        let mut response = (StatusCode::OK, truncated).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    json_response(StatusCode::OK, value)
}

fn injected_fault(state: &Data, route: &Route) -> Option<Response> {
    if route.is_health() {
        return None;
    }
    let faults = &state.faults;
    let style = state.options.error_style;
    let server_error = |status: StatusCode| {
        if route.is_public() {
            Problem::unexpected("UNAVAILABLE: io exception")
                .with_status(status)
                .into_response()
        } else {
            let error = ApiError::Internal {
                class: "io.grpc.StatusRuntimeException",
                message: "UNAVAILABLE: io exception".into(),
            };
            json_response(status, &error.body(style))
        }
    };
    if route.is_token() && faults.token_endpoint_fails {
        return Some(server_error(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let failing_now = faults
        .failing_operations_after
        .iter()
        .any(|(o, after)| o == route.name() && state.requests.get(o) > *after);
    if failing_now || faults.failing_operations.iter().any(|o| o == route.name()) {
        return Some(server_error(StatusCode::SERVICE_UNAVAILABLE));
    }
    if faults.error_rate.is_nan() || faults.error_rate <= 0.0 {
        return None;
    }
    let mut rng = rand::rng();
    if rng.random::<f64>() >= faults.error_rate {
        return None;
    }
    let status = match faults
        .error_status
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        Some(status) => status,
        None => [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][rng.random_range(0..3)],
    };
    if rng.random::<f64>() < faults.html_share {
        return Some(proxy_html(status));
    }
    Some(server_error(status))
}

fn unauthorized(www_authenticate: &'static str) -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(www_authenticate),
    );
    response
}

fn credentials<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The rejection of a request that lacks the credentials demanded, if it does.
fn authorize(state: &Data, route: &Route, headers: &HeaderMap, now: Instant) -> Option<Response> {
    if route.is_health() {
        return None;
    }
    match &state.auth {
        EmulatorAuth::None => None,
        EmulatorAuth::Basic { username, password } => {
            let expected = base64(format!("{username}:{password}").as_bytes(), false);
            if credentials(headers, "Basic") == Some(expected.as_str()) {
                None
            } else {
                // The nginx of old docker-compose installs guarded everything this way.
                let mut response = proxy_html(StatusCode::UNAUTHORIZED);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Airbyte\""),
                );
                Some(response)
            }
        }
        EmulatorAuth::Bearer { token } => {
            if route.is_token() || credentials(headers, "Bearer") == Some(token.as_str()) {
                None
            } else {
                Some(unauthorized("Bearer"))
            }
        }
        EmulatorAuth::ClientCredentials { .. } => {
            let valid = credentials(headers, "Bearer")
                .is_some_and(|token| state.token_is_valid(token, now));
            if route.is_token() || valid {
                None
            } else {
                Some(unauthorized("Bearer"))
            }
        }
    }
}

/// `applications/token` on either API.
fn issue_token(state: &mut Data, call: &Call<'_>, public: bool) -> Response {
    let style = state.options.error_style;
    let fields: Vec<(String, String)> = if call.form_body {
        parse_urlencoded(&String::from_utf8_lossy(call.body))
    } else {
        match serde_json::from_slice::<Value>(call.body) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect(),
            Ok(_) => Vec::new(),
            Err(error) => {
                return if public {
                    Problem::bad_request(format!("Invalid json. {error}")).into_response()
                } else {
                    ApiError::not_json(error).into_response(style)
                };
            }
        }
    };
    let field = |names: [&str; 2]| {
        fields
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone())
    };
    let (Some(client_id), Some(client_secret)) = (
        field(["client_id", "clientId"]),
        field(["client_secret", "clientSecret"]),
    ) else {
        return if public {
            Problem::bad_request("client_id and client_secret are required").into_response()
        } else {
            ApiError::missing(
                "applicationTokenRequest",
                "applicationTokenRequest.client_id",
            )
            .into_response(style)
        };
    };
    let lifetime = match &state.auth {
        EmulatorAuth::ClientCredentials {
            client_id: id,
            client_secret: secret,
            token_lifetime,
        } => {
            if *id != client_id || *secret != client_secret {
                return unauthorized("Bearer");
            }
            *token_lifetime
        }
        EmulatorAuth::None | EmulatorAuth::Basic { .. } => DEFAULT_TOKEN_LIFETIME,
        // A fixed token is all there is: no application can log in.
        EmulatorAuth::Bearer { .. } => return unauthorized("Bearer"),
    };
    let issued = state.clock.epoch_secs(call.now);
    let expires_in = lifetime.as_secs().max(1);
    let token = jwt(
        &client_id,
        issued,
        issued + i64::try_from(expires_in).unwrap_or(i64::MAX / 2),
    );
    state.remember_token(token.clone(), call.now + lifetime, call.now);
    let answer = if public {
        json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
    } else {
        json!({"access_token": token})
    };
    ok_response(state, &answer)
}

/// A token shaped like the JWTs Airbyte issues, so clients that peek at `exp` can.
fn jwt(subject: &str, issued: i64, expires: i64) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "iss": "airbyte-server",
        "aud": "airbyte-server",
        "sub": subject,
        "typ": "io.airbyte.auth.application",
        "roles": ["ORGANIZATION_ADMIN", "WORKSPACE_ADMIN"],
        "iat": issued,
        "exp": expires,
        "jti": Uuid::new_v4(),
    });
    let mut signature = [0u8; 32];
    rand::rng().fill(&mut signature);
    format!(
        "{}.{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true),
        base64(&signature, true)
    )
}

/// Standard base64 with padding, or the unpadded URL-safe flavour JWTs use.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
            } else if !url_safe {
                out.push('=');
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs, as in query strings and token forms.
pub(crate) fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    fn hex(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|digit| u8::try_from(digit).ok())
    }
    fn decode(part: &str) -> String {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(byte)) => {
                    out.push(byte);
                    i += 2;
                }
                (b'+', None) => out.push(b' '),
                (other, None) => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b"", false), "");
        assert_eq!(base64(b"f", false), "Zg==");
        assert_eq!(base64(b"fo", false), "Zm8=");
        assert_eq!(base64(b"foo", false), "Zm9v");
        assert_eq!(base64(b"foob", true), "Zm9vYg");
        assert_eq!(
            base64(b"airbyte:password", false),
            "YWlyYnl0ZTpwYXNzd29yZA=="
        );
        assert_eq!(base64(&[0xfb, 0xff], true), "-_8");
    }

    #[test]
    fn urlencoded_pairs_are_decoded() {
        assert_eq!(
            parse_urlencoded("a=1&b=x%20y+z&c&d=%zz&e=%4"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz".into()),
                ("e".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn operations_are_named_after_their_path() {
        assert_eq!(
            Route::of(&Method::POST, "/api/v1/jobs/get").name(),
            "jobs/get"
        );
        assert_eq!(
            Route::of(&Method::GET, "/api/public/v1/jobs/17").name(),
            "public:GET /jobs/{jobId}"
        );
        assert_eq!(
            Route::of(&Method::POST, "/api/public/v1/jobs").name(),
            "public:POST /jobs"
        );
        assert_eq!(
            Route::of(
                &Method::PATCH,
                "/api/public/v1/connections/0b8a2f9e-8c4f-4a53-9d47-0c7e5b5a1f00"
            )
            .name(),
            "public:PATCH /connections/{connectionId}"
        );
        assert_eq!(
            Route::of(&Method::GET, "/metrics").name(),
            "other:GET /metrics"
        );
        assert!(Route::of(&Method::GET, "/api/v1/health").is_health());
    }

    #[test]
    fn tokens_look_like_jwts() {
        let token = jwt("client", 1, 2);
        assert_eq!(token.split('.').count(), 3);
        assert!(!token.contains('='));
    }
}
