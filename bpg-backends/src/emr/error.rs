//! AWS SDK errors → [`bpg_core::Error`], classified for retry logic.

use std::fmt;

use aws_sdk_emrcontainers::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bpg_core::Error;

/// An AWS API error the canonical variants have no field for, kept as the source of
/// [`Error::Backend`].
#[derive(Debug)]
pub(crate) struct AwsApiError {
    pub(crate) operation: &'static str,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl fmt::Display for AwsApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.operation, self.code, self.message
        )
    }
}

impl std::error::Error for AwsApiError {}

/// Where a call went, for messages about unreachable or failing servers.
#[derive(Clone, Debug)]
pub(crate) struct CallContext<'a> {
    pub(crate) backend: &'a str,
    pub(crate) operation: &'static str,
    /// `http://127.0.0.1:5000` or `AWS us-east-1`.
    pub(crate) endpoint: &'a str,
    /// What the call was about (`job run 0000000abc`, `virtual cluster vc1`).
    pub(crate) subject: String,
}

/// Whether a `ValidationException` is EMR's back-pressure from a full virtual cluster queue
/// (`SchedulerConfiguration.maxConcurrentJobRuns` / `maxInQueueJobRuns`), which clears by itself.
fn is_queue_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "queue",
        "concurrent",
        "maxinqueue",
        "limit exceeded",
        "too many",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Converts an SDK error of any operation.
pub(crate) fn convert<E>(ctx: &CallContext<'_>, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let op = ctx.operation;
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            let code = inner.code().unwrap_or("").to_owned();
            let message = inner.message().unwrap_or("").to_owned();
            classify(ctx, status, code, message)
        }
        SdkError::TimeoutError(_) => Error::Unavailable {
            message: format!("{op} to {} timed out", ctx.endpoint),
        },
        SdkError::DispatchFailure(failure) => {
            let why = DisplayErrorContext(&err).to_string();
            if failure.is_user() || failure.is_other() {
                Error::backend(
                    ctx.backend,
                    false,
                    format!("{op} to {}: {why}", ctx.endpoint),
                )
            } else {
                Error::Unavailable {
                    message: format!("{op}: {} unreachable: {why}", ctx.endpoint),
                }
            }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            let why = DisplayErrorContext(&err).to_string();
            Error::backend(
                ctx.backend,
                status >= 500,
                format!(
                    "{op}: unreadable response from {} (HTTP {status}): {why}",
                    ctx.endpoint
                ),
            )
        }
        // Building the request failed: bad input or configuration, never fixed by retrying.
        _ => Error::config(format!(
            "{op} for {}: {}",
            ctx.subject,
            DisplayErrorContext(&err)
        )),
    }
}

/// Maps a service error by its `x-amzn-ErrorType` code, falling back to the HTTP status.
pub(crate) fn classify(ctx: &CallContext<'_>, status: u16, code: String, message: String) -> Error {
    let op = ctx.operation;
    let subject = &ctx.subject;
    match code.as_str() {
        "ResourceNotFoundException" => Error::NotFound {
            what: format!("{subject} ({message})"),
        },
        "ValidationException" if is_queue_limit(&message) => Error::Unavailable {
            message: format!("{op}: virtual cluster queue is full, try again later: {message}"),
        },
        "InternalServerException" | "ServiceUnavailableException" | "InternalFailure" => {
            Error::Unavailable {
                message: format!("{op}: {code}: {message}"),
            }
        }
        "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "Throttling"
        | "RequestThrottled" => Error::RateLimited {
            retry_after: None,
            message: format!("{op}: {code}: {message}"),
        },
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => Error::Unauthorized {
            message: format!("{op}: {code}: {message}"),
        },
        "AccessDeniedException" => Error::Forbidden {
            message: format!("{op}: {code}: {message}"),
        },
        _ => match status {
            401 => Error::Unauthorized {
                message: format!("{op}: {code}: {message}"),
            },
            403 => Error::Forbidden {
                message: format!("{op}: {code}: {message}"),
            },
            404 => Error::NotFound {
                what: format!("{subject} ({code}: {message})"),
            },
            429 => Error::RateLimited {
                retry_after: None,
                message: format!("{op}: {code}: {message}"),
            },
            500.. => Error::Unavailable {
                message: format!("{op}: HTTP {status} {code}: {message}"),
            },
            _ => Error::backend(
                ctx.backend,
                false,
                AwsApiError {
                    operation: op,
                    code: if code.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        code
                    },
                    message,
                },
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext<'static> {
        CallContext {
            backend: "emr",
            operation: "StartJobRun",
            endpoint: "http://127.0.0.1:1",
            subject: "job run abc".into(),
        }
    }

    #[test]
    fn codes_map_to_canonical_errors() {
        type Case = (u16, &'static str, &'static str, fn(&Error) -> bool, bool);
        let cases: [Case; 9] = [
            (
                400,
                "ResourceNotFoundException",
                "no such vc",
                |e| matches!(e, Error::NotFound { .. }),
                false,
            ),
            (
                400,
                "ValidationException",
                "Job run queue is full: maxInQueueJobRuns reached",
                |e| matches!(e, Error::Unavailable { .. }),
                true,
            ),
            (
                400,
                "ValidationException",
                "entryPoint must not be empty",
                |e| {
                    matches!(
                        e,
                        Error::Backend {
                            temporary: false,
                            ..
                        }
                    )
                },
                false,
            ),
            (
                500,
                "InternalServerException",
                "oops",
                |e| matches!(e, Error::Unavailable { .. }),
                true,
            ),
            (
                400,
                "ThrottlingException",
                "slow down",
                |e| matches!(e, Error::RateLimited { .. }),
                true,
            ),
            (
                403,
                "AccessDeniedException",
                "no",
                |e| matches!(e, Error::Forbidden { .. }),
                false,
            ),
            (
                403,
                "UnrecognizedClientException",
                "bad key",
                |e| matches!(e, Error::Unauthorized { .. }),
                false,
            ),
            (
                503,
                "",
                "",
                |e| matches!(e, Error::Unavailable { .. }),
                true,
            ),
            (
                418,
                "Teapot",
                "short and stout",
                |e| {
                    matches!(
                        e,
                        Error::Backend {
                            temporary: false,
                            ..
                        }
                    )
                },
                false,
            ),
        ];
        for (status, code, message, is_expected, temporary) in cases {
            let e = classify(&ctx(), status, code.into(), message.into());
            assert!(is_expected(&e), "{status} {code}: {e:?}");
            assert_eq!(e.is_temporary(), temporary, "{status} {code}: {e}");
            assert!(e.to_string().contains(message), "{e}");
        }
    }
}
