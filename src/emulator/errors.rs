//! The error answers of the emulator, shaped the way each Airbyte generation shapes them:
//! Config API bodies before 2.0 (`{message, exceptionClassName, ...}`), from 2.0 on
//! (`{errorId}`, plus `message` for 409), and the public API's problem JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ErrorStyle;

/// The Java frames real answers carry; clients sometimes log them, so they are not empty.
const HANDLER_STACK: [&str; 3] = [
    "io.airbyte.server.apis.controllers.ConnectionApiController.execute(ConnectionApiController.kt:311)",
    "io.micronaut.http.server.RouteExecutor.executeRoute(RouteExecutor.java:651)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
];

/// A failure of a Config API operation, independent of how it is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// `ConfigNotFoundException`: 404.
    NotFound {
        config_type: &'static str,
        id: String,
    },
    /// A `KnownException` such as `ValueConflictKnownException`: 409.
    Conflict { message: String },
    /// An uncaught exception: 500, with the exception's class and message.
    Internal {
        class: &'static str,
        message: String,
    },
    /// Bean validation of the request body: 400.
    InvalidInput {
        operation: &'static str,
        property: String,
    },
    /// The body is not JSON, or JSON of the wrong shape: 422.
    Unprocessable {
        class: &'static str,
        message: String,
    },
    /// A problem (`api-problems.yaml`) thrown by a handler, such as a cron validation:
    /// `AbstractThrowableProblemHandler` answers it as is, in every generation.
    Problem(Problem),
    /// Micronaut's own 404 for a path no controller serves.
    NoRoute { path: String },
    /// Micronaut's own 405 for a path served under another method.
    WrongMethod {
        path: String,
        method: String,
        allowed: &'static str,
    },
}

impl ApiError {
    pub(crate) fn not_found(config_type: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            config_type,
            id: id.to_string(),
        }
    }

    pub(crate) fn job_not_found(id: i64) -> Self {
        Self::Internal {
            class: "java.lang.RuntimeException",
            message: format!("Could not find job with id: {id}"),
        }
    }

    pub(crate) fn illegal_state(message: impl Into<String>) -> Self {
        Self::Internal {
            class: "java.lang.IllegalStateException",
            message: message.into(),
        }
    }

    pub(crate) fn missing(operation: &'static str, property: impl Into<String>) -> Self {
        Self::InvalidInput {
            operation,
            property: property.into(),
        }
    }

    pub(crate) fn unreadable(message: impl std::fmt::Display) -> Self {
        Self::Unprocessable {
            class: "com.fasterxml.jackson.databind.exc.MismatchedInputException",
            message: format!("Invalid json input. {message}"),
        }
    }

    /// `BadObjectSchemaKnownException`: 422, what a handler's `JsonValidationException`
    /// becomes (e.g. both schedule schemas in one `connections/create`).
    pub(crate) fn bad_schema(errors: impl std::fmt::Display) -> Self {
        Self::Unprocessable {
            class: "io.airbyte.commons.server.errors.BadObjectSchemaKnownException",
            message: format!(
                "The provided configuration does not fulfill the specification. Errors: {errors}"
            ),
        }
    }

    pub(crate) fn not_json(message: impl std::fmt::Display) -> Self {
        Self::Unprocessable {
            class: "com.fasterxml.jackson.core.JsonParseException",
            message: format!("Invalid json. {message}"),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } | Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Problem(problem) => problem.status,
        }
    }

    /// The body this error has in the given Airbyte generation.
    pub(crate) fn body(&self, style: ErrorStyle) -> Value {
        let stack: Vec<&str> = HANDLER_STACK.to_vec();
        // Micronaut answers unknown routes itself, identically in every version.
        match self {
            Self::NoRoute { path } => {
                return json!({
                    "message": "Page Not Found",
                    "_links": {"self": {"href": path, "templated": false}},
                    "_embedded": {"errors": [{"message": "Page Not Found"}]},
                });
            }
            Self::WrongMethod {
                path,
                method,
                allowed,
            } => {
                return json!({
                    "message": "Method Not Allowed",
                    "_links": {"self": {"href": path, "templated": false}},
                    "_embedded": {"errors": [{"message": format!(
                        "Method [{method}] not allowed for URI [{path}]. Allowed methods: [{allowed}]"
                    )}]},
                });
            }
            Self::Problem(problem) => return problem.body(),
            _ => {}
        }
        match style {
            ErrorStyle::V2 => match self {
                Self::Conflict { message } => {
                    json!({"message": message, "errorId": Uuid::new_v4()})
                }
                _ => json!({"errorId": Uuid::new_v4()}),
            },
            ErrorStyle::Legacy => match self {
                Self::NotFound { config_type, id } => json!({
                    "id": id,
                    "message": format!("Could not find configuration for {config_type}: {id}."),
                    "exceptionClassName": "io.airbyte.commons.server.errors.IdNotFoundKnownException",
                    "exceptionStack": stack,
                    "rootCauseExceptionClassName": "io.airbyte.data.exceptions.ConfigNotFoundException",
                    "rootCauseExceptionStack": stack,
                }),
                Self::Conflict { message } => json!({
                    "message": message,
                    "exceptionClassName": "io.airbyte.commons.server.errors.ValueConflictKnownException",
                    "exceptionStack": stack,
                }),
                Self::Internal { class, message } => json!({
                    "message": format!("Internal Server Error: {message}"),
                    "exceptionClassName": class,
                    "exceptionStack": stack,
                    "rootCauseExceptionClassName": class,
                    "rootCauseExceptionStack": stack,
                }),
                Self::InvalidInput {
                    operation,
                    property,
                } => json!({
                    "message": "Some properties contained invalid input.",
                    "exceptionClassName": "jakarta.validation.ConstraintViolationException",
                    "exceptionStack": stack,
                    "validationErrors": [{
                        "propertyPath": format!("{operation}.{property}"),
                        "message": "must not be null",
                    }],
                }),
                Self::Unprocessable { class, message } => json!({
                    "message": message,
                    "exceptionClassName": class,
                    "exceptionStack": stack,
                }),
                Self::NoRoute { .. } | Self::WrongMethod { .. } | Self::Problem(_) => Value::Null,
            },
        }
    }

    pub(crate) fn into_response(self, style: ErrorStyle) -> Response {
        json_response(self.status(), &self.body(style))
    }
}

/// A problem (`api-problems.yaml`): every public API error, and some Config API ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    status: StatusCode,
    /// The whole `type`: a URL on the public API, `error:...` from Config API handlers.
    kind: String,
    title: &'static str,
    detail: &'static str,
    data: Option<Value>,
}

const ERRORS_URL: &str = "https://reference.airbyte.com/reference/errors";

impl Problem {
    /// `TryAgainLaterConflictProblem`: a sync is already running.
    pub(crate) fn try_again_later(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: format!("{ERRORS_URL}#try-again-later"),
            title: "try-again-later",
            detail: "Please try again later.",
            data: Some(json!({"message": message.into()})),
        }
    }

    /// `StateConflictProblem`: inactive connection, unknown or finished job.
    pub(crate) fn state_conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: format!("{ERRORS_URL}#409-state-conflict"),
            title: "state-conflict",
            detail: "State conflict",
            data: Some(json!({"message": message.into()})),
        }
    }

    pub(crate) fn not_found(resource_type: &str, resource_id: impl ToString) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: format!("{ERRORS_URL}#resource-not-found"),
            title: "resource-not-found",
            detail: "The requested resource could not be found.",
            data: Some(
                json!({"resourceType": resource_type, "resourceId": resource_id.to_string()}),
            ),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: format!("{ERRORS_URL}#bad-request"),
            title: "bad-request",
            detail: "The request could not be understood by the server due to malformed syntax.",
            data: Some(json!({"message": message.into()})),
        }
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: format!("{ERRORS_URL}#unprocessable-entity"),
            title: "unprocessable-entity",
            detail: "The body of the request was not understood",
            data: Some(json!({"message": message.into()})),
        }
    }

    pub(crate) fn unexpected(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: ERRORS_URL.to_string(),
            title: "unexpected-problem",
            detail: "An unexpected problem has occurred. If this is an error that needs to be addressed, please submit a pull request or github issue.",
            data: Some(json!({"message": message.into()})),
        }
    }

    /// A problem a Config API handler throws, with the `type`, `title` and `detail` its
    /// schema in `api-problems.yaml` gives as defaults.
    pub(crate) fn config(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: &'static str,
        data: Option<Value>,
    ) -> Self {
        Self {
            status,
            kind: kind.to_string(),
            title,
            detail,
            data,
        }
    }

    /// The same problem under another status, as a proxy or a dying server answers.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = json!({
            "status": self.status.as_u16(),
            "type": self.kind,
            "title": self.title,
            "detail": self.detail,
        });
        if let (Some(data), Some(map)) = (&self.data, body.as_object_mut()) {
            map.insert("data".into(), data.clone());
        }
        body
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What an nginx or ingress in front of Airbyte sends when the server behind it is down.
pub(crate) fn proxy_html(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_conflict_names_the_value_conflict_exception() {
        let body = ApiError::Conflict {
            message: "A sync is already running for: x".into(),
        }
        .body(ErrorStyle::Legacy);
        assert_eq!(body["message"], "A sync is already running for: x");
        assert_eq!(
            body["exceptionClassName"],
            "io.airbyte.commons.server.errors.ValueConflictKnownException"
        );
    }

    #[test]
    fn a_v2_conflict_keeps_its_message_and_other_errors_only_carry_an_error_id() {
        let conflict = ApiError::Conflict {
            message: "m".into(),
        }
        .body(ErrorStyle::V2);
        assert_eq!(conflict["message"], "m");
        assert!(conflict["errorId"].is_string());
        let internal = ApiError::job_not_found(42).body(ErrorStyle::V2);
        let keys: Vec<&String> = internal
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, vec!["errorId"]);
    }

    #[test]
    fn a_legacy_internal_error_prefixes_its_message() {
        let body = ApiError::job_not_found(42).body(ErrorStyle::Legacy);
        assert_eq!(
            body["message"],
            "Internal Server Error: Could not find job with id: 42"
        );
    }

    #[test]
    fn a_try_again_later_problem_uses_the_documented_type() {
        let body = Problem::try_again_later("busy").body();
        assert_eq!(
            body["type"],
            "https://reference.airbyte.com/reference/errors#try-again-later"
        );
        assert_eq!(body["status"], 409);
        assert_eq!(body["data"]["message"], "busy");
    }
}
