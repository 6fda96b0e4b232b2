//! [`ApiError`]: every error answer, in Airflow's body (`{"detail": "..."}`) with the status an
//! Airflow client expects.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bpg_core::Error;
use serde_json::json;

/// An error answer. Handlers return `Result<_, ApiError>`; `bpg_core::Error`s convert into it
/// with the status a client can act on (never a 5xx for a problem with the request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub detail: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: no such thing.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 404 for a DAG, in Airflow's words.
    pub fn no_dag(dag_id: &str) -> Self {
        ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
    }

    /// 404 for a run, in Airflow's words.
    pub fn no_run(dag_id: &str, run_id: &str) -> Self {
        ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        ))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match &e {
            Error::InvalidSpec(_) | Error::Denied { .. } | Error::Config { .. } => {
                ApiError::bad_request(detail)
            }
            Error::NotFound { .. } => ApiError::not_found(detail),
            Error::Forbidden { .. } => ApiError::new(StatusCode::FORBIDDEN, detail),
            Error::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, detail),
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // FastAPI answers a body of the wrong shape 422 and one that is not JSON 400; so do we.
        let status = match &r {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
