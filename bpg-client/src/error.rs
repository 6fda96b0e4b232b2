//! The client's own error type and its conversion into [`bpg_core::Error`].
//!
//! [`ClientError`] stays inside the crate; callers see `bpg_core::Error`. An HTTP error from BPG
//! that has no more specific `bpg_core::Error` variant becomes `Error::Backend` with an
//! [`ApiError`] source, which callers can downcast to read the status, code and message.

use std::fmt;
use std::time::Duration;

use bpg_core::{Diagnostic, Diagnostics, Error};

/// The backend name used in [`bpg_core::Error::Backend`].
pub(crate) const BACKEND: &str = "bpg";

/// An HTTP error answer from BPG: the status and the `{"code", "message"}` body.
///
/// BPG's code is the HTTP status as a number, except in the 401 body where it is a string; both
/// are kept as text. The message starts with the Java exception class, which is kept as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The body's `code`, when the body had one.
    pub code: Option<String>,
    /// The body's `message`, or the raw body (shortened) when it was not BPG's error shape.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BPG answered HTTP {}", self.status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Everything that can go wrong in one call, before classification into `bpg_core::Error`.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// BPG answered with an error status.
    Api {
        /// Status and body.
        error: ApiError,
        /// The `Retry-After` header, when sent.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer: connect failure, reset, dropped body.
    Transport {
        /// What was being done (`GET /skatev2/spark/x/status`).
        operation: String,
        /// reqwest's description (never contains credentials: URLs carry none).
        message: String,
    },
    /// No answer within the configured time.
    Timeout {
        /// What was being done.
        operation: String,
        /// The limit.
        after: Duration,
    },
    /// BPG answered 2xx with a body that is not what the API documents.
    Decode {
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// Whether retrying an idempotent request may help.
    pub(crate) fn is_temporary(&self) -> bool {
        match self {
            ClientError::Api { error, .. } => error.status == 429 || error.status >= 500,
            ClientError::Transport { .. } | ClientError::Timeout { .. } => true,
            ClientError::Decode { .. } => false,
        }
    }

    /// The server's requested delay.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies into the workspace error. `what` names the thing operated on (`submission x`)
    /// for `NotFound`; `is_submit` turns a 400 into `InvalidSpec`.
    pub(crate) fn into_core(self, what: &str, is_submit: bool) -> Error {
        match self {
            ClientError::Api { error, retry_after } => match error.status {
                400 if is_submit => Error::InvalidSpec(Diagnostics::from(Diagnostic::error(
                    rejected_field(&error.message).unwrap_or_default(),
                    format!("BPG rejected the request: {}", error.message),
                ))),
                401 => Error::Unauthorized {
                    message: error.to_string(),
                },
                403 => Error::Forbidden {
                    message: error.to_string(),
                },
                404 => Error::NotFound {
                    what: format!("{what} ({error})"),
                },
                409 => Error::Conflict {
                    message: error.to_string(),
                },
                429 => Error::RateLimited {
                    retry_after,
                    message: error.to_string(),
                },
                s if s >= 500 => Error::Unavailable {
                    message: format!("{what}: {error}"),
                },
                _ => Error::backend(BACKEND, false, error),
            },
            ClientError::Transport { operation, message } => Error::Unavailable {
                message: format!("{operation}: {message}"),
            },
            ClientError::Timeout { operation, after } => Error::Timeout {
                what: operation,
                after,
            },
            ClientError::Decode { operation, message } => Error::backend(
                BACKEND,
                false,
                format!("{operation}: unexpected response: {message}"),
            ),
        }
    }
}

/// The field named by a Jackson "Unrecognized field" rejection, e.g. `Unrecognized field "annotations"`.
fn rejected_field(message: &str) -> Option<String> {
    let rest = message.split("Unrecognized field \"").nth(1)?;
    rest.split('"').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> ClientError {
        ClientError::Api {
            error: ApiError {
                status,
                code: Some(status.to_string()),
                message: message.to_owned(),
            },
            retry_after: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn statuses_map_to_core_errors_with_the_right_temporariness() {
        type Case = (u16, bool, fn(&Error) -> bool, bool);
        let cases: [Case; 8] = [
            (400, true, |e| matches!(e, Error::InvalidSpec(_)), false),
            (400, false, |e| matches!(e, Error::Backend { .. }), false),
            (
                401,
                false,
                |e| matches!(e, Error::Unauthorized { .. }),
                false,
            ),
            (403, false, |e| matches!(e, Error::Forbidden { .. }), false),
            (404, false, |e| matches!(e, Error::NotFound { .. }), false),
            (409, false, |e| matches!(e, Error::Conflict { .. }), false),
            (500, false, |e| matches!(e, Error::Unavailable { .. }), true),
            (503, false, |e| matches!(e, Error::Unavailable { .. }), true),
        ];
        for (status, submit, is_variant, temporary) in cases {
            let client_error = api(status, "jakarta.ws.rs.WebApplicationException: boom");
            assert_eq!(client_error.is_temporary(), temporary, "{status}");
            let core = client_error.into_core("submission x", submit);
            assert!(is_variant(&core), "{status}: {core:?}");
            assert_eq!(core.is_temporary(), temporary, "{status}");
            assert!(core.to_string().contains("boom"), "{status}: {core}");
        }
    }

    #[test]
    fn rate_limits_keep_retry_after() {
        let core = api(429, "Too many requests").into_core("list", false);
        assert!(core.is_temporary());
        assert_eq!(core.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn other_statuses_keep_the_api_error_for_downcasting() {
        let core = api(405, "HTTP 405 Method Not Allowed").into_core("x", false);
        let Error::Backend {
            source, temporary, ..
        } = core
        else {
            panic!("expected Backend");
        };
        assert!(!temporary);
        let api = source.downcast_ref::<ApiError>().expect("ApiError source");
        assert_eq!(api.status, 405);
    }

    #[test]
    fn unrecognized_fields_are_named_in_the_diagnostic() {
        let core = api(
            400,
            "Unrecognized field \"annotations\" (class com.apple.spark.api.SubmitApplicationRequest), not marked as ignorable",
        )
        .into_core("submit", true);
        let Error::InvalidSpec(diagnostics) = core else {
            panic!("expected InvalidSpec");
        };
        assert_eq!(diagnostics.0[0].field, "annotations");
    }

    #[test]
    fn transport_errors_are_temporary_unavailable() {
        let e = ClientError::Transport {
            operation: "GET /skatev2/healthcheck/status".into(),
            message: "connection refused".into(),
        };
        assert!(e.is_temporary());
        let core = e.into_core("healthcheck", false);
        assert!(matches!(core, Error::Unavailable { .. }) && core.is_temporary());
    }
}
