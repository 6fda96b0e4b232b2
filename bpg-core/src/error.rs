//! The one public error type of the workspace, with its retry classification.

use std::time::Duration;

use crate::diagnostic::Diagnostics;

/// A boxed error from a backend's own stack (HTTP client, Kubernetes client, AWS SDK, process).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a backend or reading a job, classified for retry logic.
///
/// Backend-internal errors stay private to their crate and convert into this enum. Messages never
/// contain credentials.
///
/// ```
/// use bpg_core::Error;
/// let e = Error::Unavailable { message: "gateway answered 503".into() };
/// assert!(e.is_temporary());
/// assert!(!Error::NotFound { what: "submission x".into() }.is_temporary());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job or file is invalid; every problem found is listed.
    #[error("invalid spec:\n{0}")]
    InvalidSpec(Diagnostics),
    /// Configuration (connections, rules, flags) is invalid.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and what was expected.
        message: String,
    },
    /// The job, submission or resource does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// Credentials are missing or were rejected.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The server's explanation.
        message: String,
    },
    /// Authenticated, but not allowed.
    #[error("forbidden: {message}")]
    Forbidden {
        /// The server's explanation.
        message: String,
    },
    /// The resource already exists or is in a state that forbids the operation.
    #[error("conflict: {message}")]
    Conflict {
        /// The server's explanation.
        message: String,
    },
    /// The server asked us to slow down.
    #[error("rate limited: {message}")]
    RateLimited {
        /// When the server said to come back, if it did.
        retry_after: Option<Duration>,
        /// The server's explanation.
        message: String,
    },
    /// The server or cluster is temporarily unavailable (5xx, connection refused or dropped, full queue).
    #[error("unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// An operation did not finish within its deadline.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The backend cannot do this (e.g. follow logs, cancel).
    #[error("{backend} does not support {operation}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// The operation asked for.
        operation: String,
    },
    /// Routing rules refused the job.
    #[error("routing denied: {reason}")]
    Denied {
        /// Which rule denied it and why.
        reason: String,
    },
    /// The operation was cancelled by the caller.
    #[error("cancelled: {what}")]
    Cancelled {
        /// What was cancelled.
        what: String,
    },
    /// Any other failure inside a backend.
    #[error("{backend}: {source}")]
    Backend {
        /// Backend name.
        backend: String,
        /// Whether retrying may succeed.
        temporary: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether retrying the same request later may succeed. Retry layers use only this.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Backend { temporary, .. } => *temporary,
            _ => false,
        }
    }

    /// The server's requested delay before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Wraps a backend-internal error.
    pub fn backend(
        backend: impl Into<String>,
        temporary: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            temporary,
            source: source.into(),
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::InvalidSpec(d)
    }
}
