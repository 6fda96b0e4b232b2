//! Who may use the API and the UI, and Airflow 3's `POST /auth/token`.
//!
//! **Without an access file** (the default, on loopback only: `bpg scheduler --listen` refuses
//! anything else) every caller is let in, as Airflow's simple auth manager with
//! `simple_auth_manager_all_admins`; `/auth/token` hands a token to any user name.
//!
//! **With an access file** (the gateway's format: users with argon2id password hashes and
//! SHA-256 token hashes, see [`bpg_gateway::auth::Access`]) every call but the UI's static files,
//! `/auth/token`, `/api/v2/monitor/health` and `/api/v2/openapi.json` needs one of:
//! - `Authorization: Bearer <jwt>`, a token from `POST /auth/token` (HS256, signed with a key
//!   of this process unless one is given, valid for [`Auth::token_lifetime`]);
//! - `Authorization: Bearer <token>`, a token of the access file;
//! - `Authorization: Basic`, a user's password (for `curl`);
//! - the `_token` cookie `/auth/token` sets, what the UI and its `EventSource` use. It counts for
//!   reads; a change (POST, PATCH) by cookie must also carry `X-Requested-With`, which a page
//!   of another site cannot send without the browser asking first, so no other site can make a
//!   signed-in browser trigger or clear runs.
//!
//! Anything else is a 401 `{"detail": ...}` with `WWW-Authenticate: Bearer`, whichever part was
//! wrong. Failed passwords (at `/auth/token` or by Basic) are counted per user name
//! ([`FAILED_SIGN_INS_PER_MINUTE`]) and per address (five times that); past the limit the caller
//! gets a 429 with `Retry-After` until the minute is over, before any password is checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bpg_gateway::auth::Access;
use bpg_gateway::auth::limiter::FailureWindow;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::ApiState;
use crate::error::ApiError;

/// Failed sign-ins a minute per user name before the caller must wait (per address: 5×).
pub const FAILED_SIGN_INS_PER_MINUTE: u32 = 10;

/// The cookie `/auth/token` sets (Airflow's UI uses the same name).
pub const TOKEN_COOKIE: &str = "_token";

/// How callers are authenticated; see the [module docs](self).
#[derive(Clone)]
pub struct Auth {
    access: Option<Arc<RwLock<Arc<Access>>>>,
    key: Arc<[u8]>,
    token_lifetime: Duration,
    failed_users: Arc<FailureWindow>,
    failed_addresses: Arc<FailureWindow>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key never appears.
        f.debug_struct("Auth")
            .field(
                "access",
                &self
                    .access
                    .as_ref()
                    .map(|a| a.read().map(|a| format!("{a:?}")).ok()),
            )
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Everyone is let in (loopback development).
    pub fn open() -> Self {
        Auth {
            access: None,
            key: random_key(),
            token_lifetime: Duration::from_secs(24 * 3600),
            failed_users: Arc::new(FailureWindow::new(
                FAILED_SIGN_INS_PER_MINUTE,
                Duration::from_secs(60),
            )),
            failed_addresses: Arc::new(FailureWindow::new(
                FAILED_SIGN_INS_PER_MINUTE * 5,
                Duration::from_secs(60),
            )),
        }
    }

    /// Users of an access file only.
    pub fn users(access: Access) -> Self {
        Auth {
            access: Some(Arc::new(RwLock::new(Arc::new(access)))),
            ..Auth::open()
        }
    }

    /// Signs tokens with `key` (at least 32 bytes) instead of a key made for this process, so
    /// tokens outlive a restart and replicas accept each other's.
    pub fn signing_key(mut self, key: &[u8]) -> Self {
        self.key = Arc::from(key);
        self
    }

    /// How long a token from `/auth/token` is valid (default 24 h, Airflow's default).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Whether callers must authenticate.
    pub fn is_required(&self) -> bool {
        self.access.is_some()
    }

    /// Replaces the access file's users (on SIGHUP); tokens already handed out stay valid.
    pub fn reload(&self, access: Access) {
        if let Some(current) = &self.access {
            *current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(access);
        }
    }

    fn access(&self) -> Option<Arc<Access>> {
        self.access
            .as_ref()
            .map(|a| a.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A signed token for `user`.
    pub fn issue(&self, user: &str) -> String {
        let now = unix_now();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "sub": user,
            "iss": "bpg",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime.as_secs(),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&signing_input).finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    fn mac(&self, input: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(input.as_bytes());
        mac
    }

    /// The user a token from [`Auth::issue`] names, if it is ours and still valid.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.mac(signing_input).verify_slice(&signature).ok()?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "HS256" {
            return None;
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let now = unix_now();
        let exp = claims.get("exp")?.as_u64()?;
        let nbf = claims.get("nbf").and_then(|v| v.as_u64()).unwrap_or(0);
        if now >= exp || now + 60 < nbf {
            return None;
        }
        Some(claims.get("sub")?.as_str()?.to_owned())
    }

    /// Checks a password on a blocking thread, within the failed sign-in limits: `Err` with the
    /// wait when the user or the address is over them.
    async fn check_password(
        &self,
        access: Arc<Access>,
        user: String,
        password: String,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, Duration> {
        let address = peer.map(|ip| ip.to_string());
        let waits = [
            self.failed_users.blocked(&user),
            address
                .as_deref()
                .and_then(|a| self.failed_addresses.blocked(a)),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        let name = user.clone();
        let ok = tokio::task::spawn_blocking(move || access.check_password(&name, &password))
            .await
            .unwrap_or(false);
        if ok {
            return Ok(Some(user));
        }
        self.failed_users.fail(&user);
        if let Some(a) = &address {
            self.failed_addresses.fail(a);
        }
        Ok(None)
    }

    /// Who is calling: `Ok(None)` when no credentials presented are good, `Err` with the wait
    /// when the caller is over the failed sign-in limits.
    async fn caller(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, Duration> {
        let Some(access) = self.access() else {
            return Ok(Some("admin".to_owned()));
        };
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let Some((scheme, credentials)) = value.split_once(' ') else {
                return Ok(None);
            };
            let credentials = credentials.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                return Ok(self
                    .verify(credentials)
                    .or_else(|| access.user_of_token(credentials).map(str::to_owned)));
            }
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = STANDARD
                    .decode(credentials)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':'))
                else {
                    return Ok(None);
                };
                return self
                    .check_password(access, user.to_owned(), password.to_owned(), peer)
                    .await;
            }
            return Ok(None);
        }
        let Some(cookie) = cookie(headers, TOKEN_COOKIE) else {
            return Ok(None);
        };
        let safe = matches!(*method, Method::GET | Method::HEAD);
        if !safe && !headers.contains_key("x-requested-with") {
            return Ok(None);
        }
        Ok(self.verify(cookie))
    }
}

fn random_key() -> Arc<[u8]> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    Arc::from(&key[..])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The authenticated caller, for handlers that record who acted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

/// Paths served to anyone: the UI's files (its page asks for a sign-in itself), signing in,
/// health and the API's description.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/index.html"
            | "/ui/app.js"
            | "/ui/app.css"
            | "/auth/token"
            | "/api/v2/monitor/health"
            | "/api/v2/openapi.json"
    )
}

/// The middleware that lets callers in (see the [module docs](self)).
pub(crate) async fn require_caller(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let peer = peer_of(&request);
    match state
        .auth
        .caller(request.method(), request.headers(), peer)
        .await
    {
        Ok(Some(user)) => {
            request.extensions_mut().insert(Caller(user));
            next.run(request).await
        }
        Ok(None) => ApiError::unauthorized("Not authenticated: sign in with POST /auth/token, then send Authorization: Bearer <access_token>").into_response(),
        Err(wait) => too_many(wait),
    }
}

/// The caller's address, when served by [`crate::SchedulerWeb::serve`].
fn peer_of<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// 429 with `Retry-After`, for a caller over the failed sign-in limits.
fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed sign-ins: try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// `POST /auth/token`'s body (JSON, or a form as Airflow's login page posts).
#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /auth/token`: 201 `{"access_token": ...}` and the `_token` cookie.
pub(crate) async fn token(State(state): State<ApiState>, request: Request<Body>) -> Response {
    let peer = peer_of(&request);
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let bytes = match axum::body::to_bytes(request.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the body: {e}")).into_response();
        }
    };
    let parsed: Result<Credentials, String> = if is_form {
        serde_urlencoded_credentials(&bytes)
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let credentials = match parsed {
        Ok(c) => c,
        Err(e) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("expected {{\"username\": ..., \"password\": ...}}: {e}"),
            )
            .into_response();
        }
    };
    let user = match state.auth.access() {
        None => Some(credentials.username),
        Some(access) => {
            let Credentials { username, password } = credentials;
            match state
                .auth
                .check_password(access, username, password, peer)
                .await
            {
                Ok(user) => user,
                Err(wait) => return too_many(wait),
            }
        }
    };
    let Some(user) = user else {
        tracing::info!("a sign-in failed");
        return ApiError::unauthorized("Invalid credentials").into_response();
    };
    let token = state.auth.issue(&user);
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        state.auth.token_lifetime.as_secs()
    );
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({ "access_token": token })),
    )
        .into_response();
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A form body `username=...&password=...`.
fn serde_urlencoded_credentials(bytes: &[u8]) -> Result<Credentials, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut username = None;
    let mut password = String::new();
    for (k, v) in crate::query::pairs(text) {
        match k.as_str() {
            "username" => username = Some(v),
            "password" => password = v,
            _ => {}
        }
    }
    Ok(Credentials {
        username: username.ok_or("missing field `username`")?,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_and_expire() {
        let auth = Auth::open();
        let token = auth.issue("alice");
        assert_eq!(auth.verify(&token).as_deref(), Some("alice"));
        // Another process's key, a changed payload, a truncated signature: refused.
        assert_eq!(Auth::open().verify(&token), None);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":99999999999}"#)
        );
        assert_eq!(auth.verify(&forged), None);
        assert_eq!(auth.verify(&token[..token.len() - 2]), None);
        let expired = Auth::open().token_lifetime(Duration::ZERO);
        assert_eq!(expired.verify(&expired.issue("alice")), None);
    }

    #[test]
    fn forms_are_decoded() {
        let c = serde_urlencoded_credentials(b"username=al%20ice&password=a+b%3D").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("al ice", "a b=")
        );
    }
}
