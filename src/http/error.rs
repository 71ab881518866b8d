//! The one error type every handler returns, and its mapping to HTTP.
//!
//! Client errors say what is wrong (and which field) in a JSON body
//! `{"error": "...", "field": "..."}`; internal errors are logged with their
//! context and answer a bare 500.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    /// The body cannot be read at all (not JSON, wrong content type).
    #[error("{0}")]
    Malformed(String),
    /// No valid session: sign in first.
    #[error("sign in first")]
    Unauthorized,
    /// Sign-in failed; the same answer for an unknown email and a wrong password.
    #[error("the email or password is wrong")]
    BadCredentials,
    /// Signed in, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named in the path does not exist (or is not visible to you).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with what is stored.
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    /// The body is larger than this route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The body is of a type this route does not accept.
    #[error("{0}")]
    Unsupported(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// Throttled (too many sign-ins, sign-ups or emails asked for): the
    /// answer carries `Retry-After` so a client knows when to try again.
    #[error("{message}")]
    Throttled { message: String, retry_after: std::time::Duration },
    /// The server is overloaded (no database connection came free in time):
    /// nothing was done; the same request may be sent again shortly.
    #[error("the server is busy: try again in a few seconds")]
    Busy,
    /// Anything else: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in words a person can act on.
    pub error: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: Some(field.to_string()), message: message.into() }
    }
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict { field: Some(field.to_string()), message: message.into() }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }
    /// A 429 saying what was refused and, in words and in `Retry-After`,
    /// when to try again.
    pub fn throttled(what: &str, retry_after: std::time::Duration) -> Self {
        let minutes = retry_after.as_secs().div_ceil(60);
        let when = if retry_after.as_secs() < 60 {
            format!("{} seconds", retry_after.as_secs().max(1))
        } else {
            format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
        };
        ApiError::Throttled { message: format!("{what}; try again in {when}"), retry_after }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Under a storm (hundreds joining at once on a small machine) every
            // connection can stay taken past the pool's timeout: a retryable
            // 503, not a 500.
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("no database connection came free in time: answering 503");
                ApiError::Busy
            }
            e => ApiError::Internal(anyhow::Error::new(e).context("database error")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            ApiError::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, field.clone()),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, None),
            ApiError::Unauthorized | ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::Conflict { field, .. } => (StatusCode::CONFLICT, field.clone()),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ApiError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, None),
            ApiError::Throttled { retry_after, .. } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let body = Json(ErrorBody { error: self.to_string(), field: None });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, seconds.max(1).to_string())],
                    body,
                )
                    .into_response();
            }
            ApiError::Busy => {
                let body = Json(ErrorBody { error: self.to_string(), field: None });
                return (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "3")], body)
                    .into_response();
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                let body = ErrorBody { error: "internal server error".into(), field: None };
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
            }
        };
        (status, Json(ErrorBody { error: self.to_string(), field })).into_response()
    }
}

/// Serde reports a missing or bad field as "missing field `email`" or
/// "email: invalid type ..."; pull out the field name for the client.
fn field_of(message: &str) -> Option<String> {
    if let Some((path, _)) = message.split_once(": ") {
        let path = path.trim();
        if !path.is_empty() && !path.contains([' ', '`']) && path != "." {
            return Some(path.to_string());
        }
    }
    let start = message.find('`')?;
    let rest = &message[start + 1..];
    rest.find('`').map(|end| rest[..end].to_string())
}

/// "missing field `email` at line 1 column 51" reads better without the position.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let message = match &r {
            JsonRejection::JsonDataError(e) => {
                let detail = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
                let detail = without_position(&detail);
                return ApiError::Invalid { field: field_of(&detail), message: detail };
            }
            JsonRejection::JsonSyntaxError(e) => {
                let detail = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
                format!("malformed JSON: {detail}")
            }
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with Content-Type: application/json".to_string()
            }
            other => other.body_text(),
        };
        ApiError::Malformed(message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Invalid { field: Some("path".into()), message: r.body_text() }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let detail = r.body_text();
        ApiError::Invalid { field: field_of(detail.rsplit(": ").next().unwrap_or("")), message: detail }
    }
}

#[cfg(test)]
mod tests {
    use super::{field_of, ApiError};
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn a_database_pool_that_stays_busy_answers_a_retryable_503() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(100))
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let _held = pool.acquire().await.unwrap();
        let timed_out = pool.acquire().await.unwrap_err();
        let response = ApiError::from(timed_out).into_response();
        assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "3");
    }

    #[test]
    fn field_names_come_out_of_serde_messages() {
        assert_eq!(field_of("missing field `email` at line 1 column 2").as_deref(), Some("email"));
        assert_eq!(field_of("capacity: invalid value: integer `-1`").as_deref(), Some("capacity"));
        assert_eq!(field_of("expected value at line 1 column 1"), None);
    }
}
