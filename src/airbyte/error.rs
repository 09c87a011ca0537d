//! The ways a call to Airbyte can fail, told apart by what the caller must do next.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

/// One failed call to Airbyte. `endpoint` is the method and path relative to the
/// configured base URL (`POST /jobs/get`), so messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Airbyte could not be reached, or the connection broke mid-answer.
    #[error("{endpoint}: could not reach Airbyte: {detail}")]
    Transport { endpoint: String, detail: String },

    /// No answer within the request timeout.
    #[error("{endpoint}: no answer within {after:?}")]
    Timeout { endpoint: String, after: Duration },

    /// 408, 429 or a 5xx: Airbyte or a proxy in front of it is struggling; the same
    /// call may well succeed later.
    #[error("{endpoint}: Airbyte answered {status}: {message}")]
    Unavailable {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// 409 on a sync: "a sync is already running" for this connection. When
    /// `after_lost_answer` is set, an earlier try of this same request may have
    /// started that very job before its answer was lost.
    #[error("{endpoint}: a sync is already running for connection {connection_id}")]
    AlreadyRunning {
        endpoint: String,
        connection_id: String,
        message: String,
        after_lost_answer: bool,
    },

    /// The connection is not active, so Airbyte refuses to sync it (a 500 on the
    /// Config API, a 409 `state-conflict` on the public API).
    #[error("{endpoint}: connection {connection_id} is not active: {message}")]
    Inactive {
        endpoint: String,
        connection_id: String,
        message: String,
    },

    /// The object does not exist. The Config API answers an unknown job id with a
    /// 500, and the public API with a 409 "Job is not currently running".
    #[error("{endpoint}: not found: {message}")]
    NotFound { endpoint: String, message: String },

    /// 401 or 403: the credentials were refused (after one token refresh).
    #[error("{endpoint}: Airbyte refused the credentials ({status}): {message}")]
    Auth {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// Any other 4xx: the request itself is wrong and retrying cannot help.
    #[error("{endpoint}: Airbyte rejected the request ({status}): {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// A 2xx whose body is not what the API promises.
    #[error("{endpoint}: the answer does not decode ({detail}); it begins: {excerpt}")]
    Decode {
        endpoint: String,
        detail: String,
        excerpt: String,
    },
}

impl Error {
    /// Whether the same call may succeed if made again later. Never true for a 4xx
    /// (a 409 included): those need a decision, not a retry.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. }
                | Self::Timeout { .. }
                | Self::Unavailable { .. }
                | Self::Decode { .. }
        )
    }

    /// Whether the request may have reached Airbyte and been acted on even though
    /// no usable answer came back.
    pub(crate) fn answer_was_lost(&self) -> bool {
        match self {
            // 408, 429 and 503 say the request was not taken; a 500, a 502 or a
            // gateway timeout may come after the server acted.
            Self::Unavailable { status, .. } => !matches!(status, 408 | 429 | 503),
            Self::Timeout { .. } | Self::Decode { .. } => true,
            // A refused connection never delivered the request; a reset mid-answer may have.
            Self::Transport { detail, .. } => !detail.contains("connect"),
            _ => false,
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            Self::Transport { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Unavailable { endpoint, .. }
            | Self::AlreadyRunning { endpoint, .. }
            | Self::Inactive { endpoint, .. }
            | Self::NotFound { endpoint, .. }
            | Self::Auth { endpoint, .. }
            | Self::Rejected { endpoint, .. }
            | Self::Decode { endpoint, .. } => endpoint,
        }
    }

    /// A short, bounded label for metrics (never the message itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "transport",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::AlreadyRunning { .. } => "already_running",
            Self::Inactive { .. } => "inactive",
            Self::NotFound { .. } => "not_found",
            Self::Auth { .. } => "auth",
            Self::Rejected { .. } => "rejected",
            Self::Decode { .. } => "decode",
        }
    }
}

/// Every error body Airbyte has used, read leniently into one shape:
/// `{message, exceptionClassName}` up to 1.6, `{errorId}` or `{message, errorId}`
/// from 2.0, and the public API's problem JSON `{status, type, title, detail, data}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub exception_class_name: Option<String>,
    #[serde(default)]
    pub error_id: Option<String>,
    #[serde(default, rename = "type")]
    pub problem_type: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub data: Option<ProblemData>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProblemData {
    #[serde(default)]
    pub message: Option<String>,
}

impl ErrorBody {
    /// Reads a body of any of the known styles; anything else (an HTML page from a
    /// proxy, say) becomes its first characters as the message.
    pub fn parse(body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(parsed) => parsed,
            Err(_) => ErrorBody {
                message: Some(excerpt(&strip_tags(body))),
                ..Default::default()
            },
        }
    }

    /// The most useful human message the body carries.
    pub fn text(&self) -> String {
        let message = self
            .data
            .as_ref()
            .and_then(|d| d.message.clone())
            .or_else(|| self.detail.clone())
            .or_else(|| self.message.clone())
            .or_else(|| self.title.clone());
        // Bounded: an answer may carry a huge message, and errors are logged.
        let message = message.map(|m| excerpt(&m));
        match (message, &self.error_id) {
            (Some(m), Some(id)) => format!("{m} (errorId {})", excerpt(id)),
            (Some(m), None) => m,
            (None, Some(id)) => format!("errorId {}", excerpt(id)),
            (None, None) => "no message".to_owned(),
        }
    }

    /// Every text field, for matching the few messages that decide behaviour.
    fn haystack(&self) -> String {
        [
            &self.message,
            &self.exception_class_name,
            &self.problem_type,
            &self.title,
            &self.detail,
            &self.data.as_ref().and_then(|d| d.message.clone()),
        ]
        .iter()
        .filter_map(|f| f.as_deref())
        .collect::<Vec<_>>()
        .join(" ")
    }

    pub fn says_inactive(&self) -> bool {
        let text = self.haystack();
        text.contains("active connection") || text.contains("state-conflict")
    }

    pub fn says_not_found(&self) -> bool {
        let text = self.haystack();
        text.contains("NotFound")
            || text.contains("Could not find")
            || text.contains("not currently running")
            || text.contains("not-found")
    }
}

/// What a call was about, which decides how an error status reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subject<'a> {
    /// Starting a sync of this connection.
    Sync { connection_id: &'a str },
    /// Reading or cancelling one job.
    Job,
    /// Anything else.
    Other,
}

/// Turns a non-2xx answer into the error the caller must act on.
pub(crate) fn classify(
    endpoint: &str,
    status: StatusCode,
    body: &str,
    subject: Subject<'_>,
) -> Error {
    let parsed = ErrorBody::parse(body);
    let endpoint = endpoint.to_owned();
    let message = parsed.text();
    let code = status.as_u16();
    match (code, subject) {
        (401 | 403, _) => Error::Auth {
            endpoint,
            status: code,
            message,
        },
        (404, _) => Error::NotFound { endpoint, message },
        (409 | 500, Subject::Sync { connection_id }) if parsed.says_inactive() => Error::Inactive {
            endpoint,
            connection_id: connection_id.to_owned(),
            message,
        },
        (409, Subject::Sync { connection_id }) => Error::AlreadyRunning {
            endpoint,
            connection_id: connection_id.to_owned(),
            message,
            after_lost_answer: false,
        },
        (409, Subject::Job) => Error::NotFound { endpoint, message },
        (500, Subject::Job) if parsed.says_not_found() => Error::NotFound { endpoint, message },
        (408 | 429, _) | (500..=599, _) => Error::Unavailable {
            endpoint,
            status: code,
            message,
        },
        _ => Error::Rejected {
            endpoint,
            status: code,
            message,
        },
    }
}

/// The first 200 characters of a body, on one line, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

fn strip_tags(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC: Subject<'static> = Subject::Sync {
        connection_id: "c0ffee00-0000-0000-0000-000000000001",
    };

    #[test]
    fn a_409_on_sync_in_the_legacy_style_is_already_running() {
        let body = r#"{"message":"A sync is already running for: c0ffee00-0000-0000-0000-000000000001","exceptionClassName":"io.airbyte.commons.server.errors.ValueConflictKnownException"}"#;
        let err = classify("POST /connections/sync", StatusCode::CONFLICT, body, SYNC);
        assert!(
            matches!(err, Error::AlreadyRunning { ref message, .. } if message.contains("already running"))
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_409_on_sync_in_the_2_0_style_is_already_running() {
        let body = r#"{"message":"A sync is already running for: x","errorId":"6f1e2a52-1b1c-4a53-8d6c-3c1f0f6a8e11"}"#;
        let err = classify("POST /connections/sync", StatusCode::CONFLICT, body, SYNC);
        assert!(matches!(err, Error::AlreadyRunning { .. }));
    }

    #[test]
    fn a_public_try_again_later_problem_is_already_running() {
        let body = r#"{"status":409,"type":"https://reference.airbyte.com/reference/errors#try-again-later","title":"try-again-later","detail":"A sync is already running for: x"}"#;
        let err = classify("POST /jobs", StatusCode::CONFLICT, body, SYNC);
        assert!(matches!(err, Error::AlreadyRunning { .. }));
    }

    #[test]
    fn an_inactive_connection_is_told_apart_on_both_apis() {
        let legacy = r#"{"message":"Internal Server Error: Can only sync an active connection","exceptionClassName":"java.lang.IllegalStateException"}"#;
        let err = classify(
            "POST /connections/sync",
            StatusCode::INTERNAL_SERVER_ERROR,
            legacy,
            SYNC,
        );
        assert!(matches!(err, Error::Inactive { .. }), "{err:?}");
        let public = r#"{"status":409,"type":"https://reference.airbyte.com/reference/errors#state-conflict","title":"state-conflict","detail":"Can only sync an active connection"}"#;
        let err = classify("POST /jobs", StatusCode::CONFLICT, public, SYNC);
        assert!(matches!(err, Error::Inactive { .. }), "{err:?}");
    }

    #[test]
    fn an_unknown_job_answered_with_500_is_not_found() {
        let body = r#"{"message":"Internal Server Error: Could not find job with id: 42","exceptionClassName":"io.airbyte.data.exceptions.ConfigNotFoundException"}"#;
        let err = classify(
            "POST /jobs/get",
            StatusCode::INTERNAL_SERVER_ERROR,
            body,
            Subject::Job,
        );
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_bare_2_0_500_stays_retryable_since_it_cannot_be_told_from_an_outage() {
        let body = r#"{"errorId":"0b4e7a8e-5f1e-4b5a-9d0c-1f2e3d4c5b6a"}"#;
        let err = classify(
            "POST /jobs/get",
            StatusCode::INTERNAL_SERVER_ERROR,
            body,
            Subject::Job,
        );
        assert!(
            matches!(err, Error::Unavailable { status: 500, ref message, .. } if message.contains("0b4e7a8e"))
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn a_public_409_for_a_job_means_it_is_not_there() {
        let body = r#"{"status":409,"type":"https://reference.airbyte.com/reference/errors#state-conflict","title":"state-conflict","detail":"Job is not currently running"}"#;
        let err = classify("GET /jobs/7", StatusCode::CONFLICT, body, Subject::Job);
        assert!(matches!(err, Error::NotFound { .. }));
    }

    #[test]
    fn throttling_and_gateway_errors_are_retryable_with_an_html_body_shortened() {
        for code in [408u16, 429, 502, 503, 504] {
            let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
            let err = classify(
                "POST /jobs/list",
                StatusCode::from_u16(code).unwrap(),
                html,
                Subject::Other,
            );
            assert!(err.is_retryable(), "{code}");
            assert!(!err.to_string().contains('<'), "{err}");
        }
    }

    #[test]
    fn credentials_refused_is_auth_and_other_4xx_is_rejected() {
        let err = classify(
            "POST /jobs/list",
            StatusCode::UNAUTHORIZED,
            "",
            Subject::Other,
        );
        assert!(matches!(err, Error::Auth { status: 401, .. }));
        let err = classify(
            "POST /jobs/list",
            StatusCode::BAD_REQUEST,
            r#"{"errorId":"e"}"#,
            Subject::Other,
        );
        assert!(matches!(err, Error::Rejected { status: 400, .. }));
        assert!(!err.is_retryable());
        let err = classify(
            "POST /sources/get",
            StatusCode::NOT_FOUND,
            "{}",
            Subject::Other,
        );
        assert!(matches!(err, Error::NotFound { .. }));
    }

    #[test]
    fn an_excerpt_is_bounded_and_on_one_line() {
        let long = "x\n".repeat(500);
        let e = excerpt(&long);
        assert!(e.chars().count() <= 201);
        assert!(!e.contains('\n'));
    }
}
