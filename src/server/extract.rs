//! What the control API reads from a request, with every way it can be wrong
//! answered as the API's JSON error (400 `bad_request`), never as axum's plain
//! text: path parameters, the query string, the (absent) body, and the ranges
//! `docs/control-api.yaml` gives each parameter.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// How much of a rejected value an error message repeats.
const SHOWN: usize = 40;

/// `value` for an error message: quoted, escaped, and cut to a few dozen characters.
fn shown(value: &str) -> String {
    let mut cut: String = value.chars().take(SHOWN).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// `Path`, rejected as the API's JSON error.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    // A route whose parameters do not fit its extractor is a mistake here, not
    // the caller's.
    let internal = || {
        tracing::error!(rejection = %rejection.body_text(), "a route's path parameters do not fit its extractor");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the route's parameters could not be read",
        )
    };
    let PathRejection::FailedToDeserializePathParams(failed) = &rejection else {
        return internal();
    };
    let message = match failed.kind() {
        ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. } => {
            return internal();
        }
        ErrorKind::InvalidUtf8InPathParam { key } => {
            format!("path parameter `{key}` is not UTF-8 once percent-decoded")
        }
        ErrorKind::ParseErrorAtKey { key, value, .. } => {
            format!("path parameter `{key}` cannot be read: {}", shown(value))
        }
        ErrorKind::ParseError { value, .. } | ErrorKind::ParseErrorAtIndex { value, .. } => {
            format!("a path parameter cannot be read: {}", shown(value))
        }
        _ => format!(
            "the path's parameters cannot be read: {}",
            failed.body_text()
        ),
    };
    bad_request(message)
}

/// `Query`, rejected as the API's JSON error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(bad_request(format!(
                "the query string cannot be read: {}",
                e.body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
            ))),
            Err(other) => Err(bad_request(format!(
                "the query string cannot be read: {}",
                other.body_text()
            ))),
        }
    }
}

/// No request body: every control route acts on its path and query alone, so a
/// body (which the document does not describe) is refused rather than ignored.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let route = format!("{} {}", request.method(), request.uri().path());
        // A limit of zero bytes: an empty body passes, any byte is an error.
        match axum::body::to_bytes(request.into_body(), 0).await {
            Ok(_) => Ok(Self),
            Err(_) => Err(bad_request(format!(
                "{} takes no request body",
                shown_route(&route)
            ))),
        }
    }
}

fn shown_route(route: &str) -> String {
    let cut: String = route.chars().take(SHOWN * 2).collect();
    format!("`{cut}`")
}

/// The `limit` query parameter of a connection's runs: 1 to 1000, 20 when absent.
#[derive(serde::Deserialize)]
pub struct LimitQuery {
    limit: Option<String>,
}

/// The range `docs/control-api.yaml` gives `limit`.
pub const LIMIT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
const DEFAULT_LIMIT: u32 = 20;

impl LimitQuery {
    /// The limit asked for, or why it is refused.
    pub fn limit(&self) -> Result<u32, ApiError> {
        let Some(text) = &self.limit else {
            return Ok(DEFAULT_LIMIT);
        };
        whole_number(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| LIMIT_RANGE.contains(n))
            .ok_or_else(|| {
                bad_request(format!(
                    "query parameter `limit` must be a whole number from {} to {}, not {}",
                    LIMIT_RANGE.start(),
                    LIMIT_RANGE.end(),
                    shown(text)
                ))
            })
    }
}

/// A run id from the path: a whole number from 1 to `i64::MAX`.
pub fn run_id(text: &str) -> Result<i64, ApiError> {
    whole_number(text)
        .and_then(|n| i64::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            bad_request(format!(
                "path parameter `id` must be a run id, a whole number from 1 to {}, not {}",
                i64::MAX,
                shown(text)
            ))
        })
}

/// Decimal digits with an optional sign, as JSON writes an integer; anything
/// else (spaces, `+`, a fraction, an exponent) is not one.
fn whole_number(text: &str) -> Option<i128> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_a_positive_whole_number_within_int64() {
        assert_eq!(run_id("1").ok(), Some(1));
        assert_eq!(run_id("9223372036854775807").ok(), Some(i64::MAX));
        for bad in [
            "0",
            "-3",
            "9223372036854775808",
            "1.0",
            "+1",
            " 1",
            "",
            "1e3",
            "\u{1e}ç",
        ] {
            assert!(run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_limit_is_absent_or_within_its_documented_range() {
        let limit = |l: Option<&str>| {
            LimitQuery {
                limit: l.map(str::to_owned),
            }
            .limit()
            .ok()
        };
        assert_eq!(limit(None), Some(20));
        assert_eq!(limit(Some("1")), Some(1));
        assert_eq!(limit(Some("1000")), Some(1000));
        for bad in [
            "0",
            "1001",
            "-1",
            "",
            "abc",
            "5.5",
            "99999999999999999999999",
        ] {
            assert_eq!(limit(Some(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn a_long_rejected_value_is_cut_in_the_message() {
        let message = shown(&"9".repeat(500));
        assert!(message.chars().count() < 50, "{message}");
        assert!(message.ends_with("…\""), "{message}");
    }
}
