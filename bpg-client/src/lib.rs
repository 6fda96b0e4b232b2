//! # bpg-client
//!
//! A typed async client for the Batch Processing Gateway (BPG) REST API: submit (JSON or YAML),
//! status, spec, driver info, describe, delete, my-submissions, logs as a `Stream` of lines
//! (snapshot or followed until the job ends), artifact upload, the admin listing (NDJSON),
//! healthcheck and version.
//!
//! - Base URL plus context path: `/skatev2` by default, `/apiv2` for older gateways, or any custom path.
//! - Auth: HTTP Basic, bearer token or the `User-Account` header ([`Auth`]); secrets are
//!   [`secrecy`] types and never appear in `Debug`, errors or logs.
//! - rustls TLS with optional extra CA roots, connect and request timeouts.
//! - Retries with exponential backoff and `Retry-After`, only for idempotent requests and only on
//!   temporary failures ([`RetryPolicy`]). A submit is never retried blindly: find a submission
//!   whose answer was lost with [`BpgClient::find_by_suffix`].
//! - Errors are [`bpg_core::Error`]s with a correct `is_temporary()`; HTTP errors keep BPG's status
//!   and `{"code","message"}` body ([`ApiError`]).
//! - Submission ids encode their cluster unambiguously even when cluster ids contain `-`
//!   ([`SubmissionId`]).
//!
//! With the `mock` feature, [`mock::MockGateway`] is a stateful BPG stand-in on wiremock: the way
//! to test your own pipelines without a cluster.
//!
//! ```
//! use std::time::Duration;
//! use bpg_client::{Auth, BpgClient, RetryPolicy};
//!
//! # fn main() -> bpg_core::Result<()> {
//! let client = BpgClient::builder("https://gateway.internal")
//!     .context_path("/apiv2")
//!     .auth(Auth::user_account("airflow"))
//!     .request_timeout(Duration::from_secs(20))
//!     .retry(RetryPolicy::default().max_retries(5))
//!     .build()?;
//! assert_eq!(client.base_url().as_str(), "https://gateway.internal/apiv2");
//! // client.submit(&request).await?, client.status(&id).await?, client.logs(&LogRequest::submission(id).follow()).await? ...
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod lines;
mod request;
mod submission_id;
mod types;

#[cfg(feature = "mock")]
pub mod mock;

pub use client::{BpgClient, BpgClientBuilder, NO_LOGS_NOTICE};
pub use config::{
    Auth, DEFAULT_CONTEXT_PATH, LEGACY_CONTEXT_PATH, RetryPolicy, USER_ACCOUNT_HEADER,
};
pub use error::ApiError;
pub use request::{LogRequest, LogTarget, SubmitBody};
pub use submission_id::{SubmissionId, SubmissionIdError, UUID_HEX_LEN, validate_cluster_id};
pub use types::{
    DeleteSubmissionResponse, DriverInfo, HealthcheckResponse, SparkApplicationSpec,
    SubmissionStatus, SubmissionSummary, SubmitApplicationResponse, UploadResponse, VersionInfo,
};
