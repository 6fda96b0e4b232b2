//! [`ApiError`]: every error answer of the gateway, with BPG's body (`{"code": 400, "message":
//! "..."}`, and the 401 whose `code` is a string) and the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bpg_core::Error;
use serde_json::json;

/// An error answer. Handlers return `Result<_, ApiError>`; `bpg_core::Error`s convert into it with
/// the status a client can act on (never a 5xx for a problem with the request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 401 with BPG's body and a Basic challenge.
    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "HTTP 401 Unauthorized.")
    }

    /// 403: authenticated, not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 503: try again later.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match &e {
            Error::InvalidSpec(_) | Error::Denied { .. } | Error::Config { .. } => {
                ApiError::bad_request(message)
            }
            Error::NotFound { .. } => ApiError::not_found(message),
            Error::Forbidden { .. } => ApiError::forbidden(message),
            Error::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, message),
            Error::Unsupported { .. } => ApiError::new(StatusCode::NOT_IMPLEMENTED, message),
            Error::RateLimited { retry_after, .. } => ApiError {
                retry_after: Some(retry_after.map_or(1, |d| d.as_secs().max(1))),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            },
            // A cluster the gateway cannot reach, or that fails, is the gateway's upstream problem.
            Error::Unauthorized { .. } | Error::Backend { .. } if !e.is_temporary() => {
                ApiError::new(StatusCode::BAD_GATEWAY, message)
            }
            _ => ApiError::unavailable(message, e.retry_after().map_or(1, |d| d.as_secs().max(1))),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.status == StatusCode::UNAUTHORIZED {
            // BPG's 401 body carries the code as a string.
            json!({"code": "401", "message": self.message})
        } else {
            json!({"code": self.status.as_u16(), "message": self.message})
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"bpg\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
