//! Who is calling, and what they may do: the authentication BPG never had.
//!
//! **Authentication**, with an [`Access`] file, in this order:
//! 1. `User-Account: <name>`, honoured only from an address of the file's `trusted_proxies` (a
//!    sidecar or ingress that authenticated the caller itself); from anywhere else it is ignored.
//! 2. `Authorization: Bearer <token>`: the token's SHA-256 is looked up among the users' hashed
//!    tokens.
//! 3. `Authorization: Basic`: the password is checked against the user's argon2id hash, on a
//!    blocking thread (argon2 is slow on purpose). A verified name and password are remembered for
//!    [`VERIFIED_FOR`] under a keyed hash held only in memory, so a client sending Basic auth
//!    with every poll costs one argon2 verification, not one per request. An unknown user is
//!    checked against a dummy hash, so the time taken does not tell whether the user exists.
//!
//! Any failure is BPG's 401 (`{"code":"401","message":"HTTP 401 Unauthorized."}`), the same
//! whichever part was wrong. Failed attempts are counted per user name and per address
//! ([`Limits::failed_sign_ins_per_minute`], five times that per address); past the limit the
//! caller gets a 429 with `Retry-After` until the minute is over, before any password is checked.
//!
//! BPG's `allowedUsers` and `blockedUsers` still apply after authentication, and its
//! `adminUsers` are admins (BPG parses that list and never enforces it).
//!
//! **Without an access file** the gateway is in development mode: any user name is taken at its
//! word (from `User-Account` or the Basic user name; the password is not checked), and every user
//! is an admin unless `adminUsers` names some. `bpg gateway` refuses to listen on anything but
//! loopback in this mode.
//!
//! **Authorization** ([`Principal`]): a user reads, follows and deletes only their own
//! submissions; admins all; an account that may impersonate (`impersonate: true`, or BPG's
//! `airflow_system_account`) submits as `?dagUser=` and, since it may submit as anyone, acts on
//! every user's submissions (that is how Airflow's account follows what it submitted).
//! A queue listed in the access file takes submissions only from its users and groups. Denials
//! are 403s with the reason in BPG's body, and are audited.

mod access;
pub mod limiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

pub use access::{Access, QueueAccess, hash_password, hash_token, new_token, verify_password};

use crate::api::AIRFLOW_SYSTEM_ACCOUNT;
use crate::error::ApiError;
use crate::service::Settings;
use limiter::{FailureWindow, RateLimiter};

/// How long a verified Basic name and password are remembered.
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Remembered verifications, at most; past that the memory starts afresh.
const VERIFIED_MAX: usize = 10_000;

/// Limits that keep one user or address from taking the gateway for themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Requests a second per user (bursts of twice that); more are answered 429 with
    /// `Retry-After`. Default: none.
    pub requests_per_second: Option<u32>,
    /// Submissions per user not yet finished (waiting, created or running); a submit past it is
    /// answered 429. Default: none.
    pub max_in_flight_per_user: Option<u32>,
    /// Log streams followed at once, in all (a followed log holds a connection to a cluster).
    /// Default 256.
    pub max_log_streams: usize,
    /// Failed sign-ins a minute per user name (and five times that per address) before the
    /// caller waits out the minute. Default 10.
    pub failed_sign_ins_per_minute: u32,
    /// How long a client may take to send a request's headers. Default 10 s.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second: None,
            max_in_flight_per_user: None,
            max_log_streams: 256,
            failed_sign_ins_per_minute: 10,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// An authenticated caller and what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Principal {
    /// The user name.
    pub name: String,
    /// Reads, lists and deletes every submission; uses the admin endpoints.
    pub admin: bool,
    /// Submits as other users (`?dagUser=`), and so acts on every user's submissions.
    pub impersonate: bool,
    /// Groups, for queue permissions.
    pub groups: Vec<String>,
}

impl Principal {
    /// Whether the caller may read, follow and delete a submission of `owner`.
    pub fn may_act_on(&self, owner: &str) -> bool {
        self.admin || self.impersonate || self.name == owner
    }
}

/// Why a caller was not let in.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The name the caller gave, when they gave one.
    pub name: Option<String>,
    /// Whether credentials were presented (a failed attempt, not a bare request).
    pub attempted: bool,
    pub error: ApiError,
}

impl Refused {
    fn unauthenticated(name: Option<String>, attempted: bool) -> Self {
        Refused {
            name,
            attempted,
            error: ApiError::unauthorized(),
        }
    }

    fn limited(name: Option<String>, wait: Duration, what: &str) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        Refused {
            name,
            attempted: true,
            error: ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{what}; try again in {secs} s"),
                )
            },
        }
    }
}

/// The gateway's authenticator: the access file (replaced on reload) and what it counts.
pub(crate) struct Authenticator {
    access: RwLock<Option<Arc<Access>>>,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Keys the remembered verifications; never leaves memory.
    key: [u8; 32],
    failed_users: FailureWindow,
    failed_addresses: FailureWindow,
    requests: Option<RateLimiter>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("access", &self.access())
            .finish_non_exhaustive()
    }
}

fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Authenticator {
    pub(crate) fn new(access: Option<Access>, limits: &Limits) -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        let per_minute = limits.failed_sign_ins_per_minute.max(1);
        Authenticator {
            access: RwLock::new(access.map(Arc::new)),
            verified: Mutex::default(),
            key,
            failed_users: FailureWindow::new(per_minute, Duration::from_secs(60)),
            failed_addresses: FailureWindow::new(
                per_minute.saturating_mul(5),
                Duration::from_secs(60),
            ),
            requests: limits
                .requests_per_second
                .map(|r| RateLimiter::new(r, r.saturating_mul(2))),
        }
    }

    pub(crate) fn access(&self) -> Option<Arc<Access>> {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a reloaded access file in place; remembered verifications are forgotten, so a
    /// changed password takes effect at once.
    pub(crate) fn replace(&self, access: Access) {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(access));
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Development mode: no access file, names taken at their word.
    pub(crate) fn is_dev(&self) -> bool {
        self.access().is_none()
    }

    /// Who is calling, from the request's headers and the address it came from.
    pub(crate) async fn authenticate(
        &self,
        settings: &Settings,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Principal, Refused> {
        let address = peer.map(|p| p.to_string());
        if let Some(wait) = address
            .as_deref()
            .and_then(|a| self.failed_addresses.blocked(a))
        {
            return Err(Refused::limited(
                None,
                wait,
                "too many failed sign-ins from this address",
            ));
        }
        let user_account = headers
            .get(bpg_client::USER_ACCOUNT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(access) = self.access() else {
            // Development mode, as BPG: `User-Account` first, else the Basic user name.
            let name = user_account
                .map(str::to_owned)
                .or_else(|| authorization.and_then(basic_credentials).map(|(u, _)| u));
            return match name {
                Some(name) => self.admit(settings, None, name),
                None => Err(Refused::unauthenticated(None, false)),
            };
        };
        if let Some(name) = user_account
            && peer.is_some_and(|p| access.trusts(p))
        {
            return self.admit(settings, Some(&access), name.to_owned());
        }
        let Some(authorization) = authorization else {
            return Err(Refused::unauthenticated(
                user_account.map(str::to_owned),
                false,
            ));
        };
        if let Some(token) = bearer_token(authorization) {
            return match access.token_user(token) {
                Some(name) => self.admit(settings, Some(&access), name.to_owned()),
                None => Err(self.failed(None, address.as_deref())),
            };
        }
        let Some((name, password)) = basic_credentials(authorization) else {
            return Err(self.failed(None, address.as_deref()));
        };
        if let Some(wait) = self.failed_users.blocked(&name) {
            return Err(Refused::limited(
                Some(name),
                wait,
                "too many failed sign-ins for this user",
            ));
        }
        if self.verify(&access, &name, &password).await {
            self.admit(settings, Some(&access), name)
        } else {
            Err(self.failed(Some(name), address.as_deref()))
        }
    }

    /// Counts a failed attempt and answers it.
    fn failed(&self, name: Option<String>, address: Option<&str>) -> Refused {
        if let Some(n) = &name {
            self.failed_users.fail(n);
        }
        if let Some(a) = address {
            self.failed_addresses.fail(a);
        }
        Refused::unauthenticated(name, true)
    }

    /// Whether `password` is `name`'s, remembered for [`VERIFIED_FOR`] when it is.
    async fn verify(&self, access: &Access, name: &str, password: &str) -> bool {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        let remembered: [u8; 32] = hasher.finalize().into();
        let now = Instant::now();
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified
                .get(&remembered)
                .is_some_and(|at| now < *at + VERIFIED_FOR)
            {
                return true;
            }
        }
        let hash = access.user(name).and_then(|u| u.password.clone());
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| access::dummy_hash().to_owned());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if known && matches {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
            verified.insert(remembered, now);
        }
        known && matches
    }

    /// Lets `name` in, unless BPG's lists keep them out; what they are comes from the file.
    fn admit(
        &self,
        settings: &Settings,
        access: Option<&Access>,
        name: String,
    ) -> Result<Principal, Refused> {
        if settings.blocked_users.iter().any(|b| b == &name)
            || settings
                .allowed_users
                .as_ref()
                .is_some_and(|allowed| !allowed.iter().any(|a| a == "*" || a == &name))
        {
            return Err(Refused::unauthenticated(Some(name), true));
        }
        let entry = access.and_then(|a| a.user(&name));
        let listed_admin = settings.admin_users.iter().any(|a| a == &name);
        let dev_admin = access.is_none() && settings.admin_users.is_empty();
        let principal = Principal {
            admin: dev_admin || listed_admin || entry.is_some_and(|e| e.admin),
            impersonate: name == AIRFLOW_SYSTEM_ACCOUNT || entry.is_some_and(|e| e.impersonate),
            groups: entry.map(|e| e.groups.clone()).unwrap_or_default(),
            name,
        };
        if let Some(limiter) = &self.requests
            && let Err(wait) = limiter.take(&principal.name)
        {
            return Err(Refused::limited(
                Some(principal.name),
                wait,
                "too many requests from this user",
            ));
        }
        Ok(principal)
    }

    /// Whether `user` (with `groups`) may submit to `queue`, and why not.
    pub(crate) fn may_submit(&self, user: &str, queue: Option<&str>) -> Result<(), String> {
        let Some(access) = self.access() else {
            return Ok(());
        };
        let Some(queue) = queue else { return Ok(()) };
        let Some(allowed) = access.queue(queue) else {
            return Ok(());
        };
        let groups = access
            .user(user)
            .map(|u| u.groups.as_slice())
            .unwrap_or(&[]);
        if allowed.users.iter().any(|u| u == user)
            || allowed.groups.iter().any(|g| groups.contains(g))
        {
            return Ok(());
        }
        Err(format!(
            "{user} may not submit to queue {queue}: it takes submissions only from {}",
            describe_allowed(allowed)
        ))
    }
}

fn describe_allowed(q: &QueueAccess) -> String {
    let mut parts = Vec::new();
    if !q.users.is_empty() {
        parts.push(format!("users {}", q.users.join(", ")));
    }
    if !q.groups.is_empty() {
        parts.push(format!("groups {}", q.groups.join(", ")));
    }
    if parts.is_empty() {
        "nobody (no users or groups are listed)".into()
    } else {
        parts.join(" and ")
    }
}
