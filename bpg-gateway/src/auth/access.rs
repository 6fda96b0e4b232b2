//! The access file: who may call the gateway (users with argon2id password hashes and hashed
//! bearer tokens, their roles and groups), who may submit to which queue, and which addresses
//! are proxies trusted to name the user in `User-Account`.
//!
//! ```yaml
//! users:
//!   alice:
//!     password: "$argon2id$v=19$m=19456,t=2,p=1$..."   # bpg gateway hash-password
//!     groups: [analytics]
//!   airflow:
//!     tokens: ["sha256:9f86d081884c7d65..."]         # bpg gateway new-token
//!     impersonate: true     # may submit as ?dagUser=<user>, as BPG's airflow_system_account
//!   ops:
//!     password: "$argon2id$..."
//!     admin: true           # reads, lists and deletes every submission
//! queues:                   # who may submit to a queue; a queue not listed is open to every user
//!   phi: {users: [carol], groups: [clinical]}
//! trusted_proxies: [127.0.0.1, 10.0.0.0/8]   # User-Account is honoured only from these
//! ```
//!
//! Only hashes are stored: a password as an argon2id PHC string, a token as the SHA-256 of the
//! token. `Debug` shows names, never a hash.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2};
use base64::Engine;
use bpg_core::{Diagnostic, Diagnostics};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The prefix of a stored token hash.
const TOKEN_HASH_PREFIX: &str = "sha256:";

/// An argon2id PHC string for `password` (random salt, argon2's default cost), what the access
/// file's `password` holds.
///
/// ```
/// let hash = bpg_gateway::auth::hash_password("correct horse");
/// assert!(hash.starts_with("$argon2id$"));
/// assert!(bpg_gateway::auth::verify_password(&hash, "correct horse"));
/// assert!(!bpg_gateway::auth::verify_password(&hash, "wrong horse"));
/// ```
pub fn hash_password(password: &str) -> String {
    match Argon2::default().hash_password(password.as_bytes()) {
        Ok(hash) => hash.to_string(),
        // Only an unusable random source fails here; no hash can be made without one.
        Err(e) => panic!("cannot hash a password: {e}"),
    }
}

/// Whether `password` matches the PHC string `hash` (compared in constant time by argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The hash an unknown user's password is checked against, so that checking takes as long.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()))
}

/// A new bearer token and the hash to put in the access file.
///
/// ```
/// let (token, hash) = bpg_gateway::auth::new_token();
/// assert!(token.starts_with("bpg_"));
/// assert_eq!(bpg_gateway::auth::hash_token(&token), hash);
/// ```
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "bpg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a bearer token: `sha256:<hex>`.
pub fn hash_token(token: &str) -> String {
    format!(
        "{TOKEN_HASH_PREFIX}{}",
        hex(&Sha256::digest(token.as_bytes()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An address or a network (`10.0.0.0/8`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("expected an IP address or network such as 10.0.0.0/8, got {s:?}")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            // An IPv4 peer seen on an IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One user of the access file.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct UserEntry {
    pub password: Option<String>,
    pub admin: bool,
    pub impersonate: bool,
    pub groups: Vec<String>,
}

/// Who may submit to a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAccess {
    /// Users who may.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups whose members may.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A loaded access file; see the [module docs](self).
#[derive(Clone, Default)]
pub struct Access {
    users: BTreeMap<String, UserEntry>,
    /// SHA-256 of a token → its user.
    tokens: HashMap<String, String>,
    queues: BTreeMap<String, QueueAccess>,
    trusted_proxies: Vec<Network>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.len())
            .field("queues", &self.queues)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
    #[serde(default)]
    queues: BTreeMap<String, QueueAccess>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    impersonate: bool,
}

/// The first line and column where `needle` appears, to locate a value the parser accepted.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
}

impl Access {
    /// Reads an access file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Access, Diagnostics> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error("", format!("cannot read the access file: {e}")).with_file(path),
            )
        })?;
        Access::from_yaml(&text, Some(path))
    }

    /// Reads an access file's text; `file` names it in diagnostics. Every problem is reported
    /// with its line, none with a secret.
    ///
    /// ```
    /// use bpg_gateway::auth::Access;
    /// let err = Access::from_yaml("users:\n  alice: {password: hunter2}\n", None).unwrap_err();
    /// let text = err.to_string();
    /// assert!(text.contains("users.alice.password") && text.contains("argon2id"), "{text}");
    /// assert!(!text.contains("hunter2"), "a mistaken plain password is not repeated");
    /// ```
    pub fn from_yaml(text: &str, file: Option<&Path>) -> Result<Access, Diagnostics> {
        let located = |d: Diagnostic| match file {
            Some(f) => d.with_file(f),
            None => d,
        };
        let raw: RawFile = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics::from(located(Diagnostic::from_yaml_error(&e, text))))?;
        let mut problems = Diagnostics::new();
        let at = |field: String, needle: &str, message: String| {
            let d = Diagnostic::error(field, message);
            located(match locate(text, needle) {
                Some((l, c)) => d.at(l, c),
                None => d,
            })
        };
        let mut access = Access::default();
        for (name, u) in raw.users {
            if let Some(hash) = &u.password {
                let parsed = PasswordHash::new(hash);
                let ok = parsed
                    .as_ref()
                    .is_ok_and(|h| h.algorithm.as_str() == Algorithm::Argon2id.as_str());
                if !ok {
                    problems.push(at(
                        format!("users.{name}.password"),
                        &format!("{name}:"),
                        "expected an argon2id hash ($argon2id$v=19$...), as `bpg gateway hash-password` prints; plain passwords are not accepted".into(),
                    ));
                }
            }
            for (i, t) in u.tokens.iter().enumerate() {
                let digest = t.strip_prefix(TOKEN_HASH_PREFIX).unwrap_or("");
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(at(
                        format!("users.{name}.tokens[{i}]"),
                        &format!("{name}:"),
                        "expected a token hash (sha256:<64 hex digits>), as `bpg gateway new-token` prints; plain tokens are not accepted".into(),
                    ));
                    continue;
                }
                let hash = t.to_ascii_lowercase();
                if let Some(other) = access.tokens.insert(hash, name.clone()) {
                    problems.push(at(
                        format!("users.{name}.tokens[{i}]"),
                        &format!("{name}:"),
                        format!("this token is also {other}'s: every token must be one user's"),
                    ));
                }
            }
            access.users.insert(
                name,
                UserEntry {
                    password: u.password,
                    admin: u.admin,
                    impersonate: u.impersonate,
                    groups: u.groups,
                },
            );
        }
        for (i, p) in raw.trusted_proxies.iter().enumerate() {
            match Network::parse(p) {
                Ok(n) => access.trusted_proxies.push(n),
                Err(e) => problems.push(at(format!("trusted_proxies[{i}]"), p, e)),
            }
        }
        access.queues = raw.queues;
        if problems.has_errors() {
            return Err(problems);
        }
        Ok(access)
    }

    /// The user `name`, when the file lists them.
    pub(crate) fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// The user holding the token.
    pub(crate) fn token_user(&self, token: &str) -> Option<&str> {
        self.tokens.get(&hash_token(token)).map(String::as_str)
    }

    /// Whether `ip` is a proxy trusted to name the user.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }

    /// Who may submit to `queue`: `None` when every user may (the queue is not listed).
    pub(crate) fn queue(&self, queue: &str) -> Option<&QueueAccess> {
        self.queues.get(queue)
    }

    /// Whether `password` is `name`'s. Slow on purpose (argon2): call it on a blocking thread.
    /// An unknown user is checked against a dummy hash, so the time taken does not tell whether
    /// the user exists.
    ///
    /// ```
    /// use bpg_gateway::auth::{Access, hash_password};
    /// let file = format!("users:\n  alice: {{password: \"{}\"}}\n", hash_password("s3cret"));
    /// let access = Access::from_yaml(&file, None).unwrap();
    /// assert!(access.check_password("alice", "s3cret"));
    /// assert!(!access.check_password("alice", "guess"));
    /// assert!(!access.check_password("mallory", "s3cret"));
    /// ```
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        match self.user(name).and_then(|u| u.password.as_deref()) {
            Some(hash) => verify_password(hash, password),
            None => {
                verify_password(dummy_hash(), password);
                false
            }
        }
    }

    /// The user holding the bearer token `token`, looked up by its SHA-256.
    pub fn user_of_token(&self, token: &str) -> Option<&str> {
        self.token_user(token)
    }

    /// Whether the file makes `name` an admin.
    pub fn is_admin(&self, name: &str) -> bool {
        self.user(name).is_some_and(|u| u.admin)
    }

    /// User names, for messages and tests.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.0.0.9".parse().unwrap()),
            "IPv4 mapped in IPv6"
        );
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Network::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("proxy.local").is_err());
    }

    #[test]
    fn a_file_with_mistakes_names_each_with_its_line() {
        let text = "users:\n  alice:\n    password: \"$2b$12$bcrypt\"\n  bob:\n    tokens: [abc]\ntrusted_proxies: [10.0.0.0/99]\n";
        let err = Access::from_yaml(text, Some(Path::new("access.yaml"))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("access.yaml:2:3: error: users.alice.password"),
            "{text}"
        );
        assert!(
            text.contains("access.yaml:4:3: error: users.bob.tokens[0]"),
            "{text}"
        );
        assert!(
            text.contains("access.yaml:6:19: error: trusted_proxies[0]"),
            "{text}"
        );
        let unknown = Access::from_yaml("users:\n  alice: {passwd: x}\n", None).unwrap_err();
        assert!(unknown.to_string().contains("passwd"), "{unknown}");
    }

    #[test]
    fn tokens_are_found_by_their_hash_only() {
        let (token, hash) = new_token();
        let text = format!("users:\n  svc: {{tokens: [\"{hash}\"]}}\n");
        let access = Access::from_yaml(&text, None).unwrap();
        assert_eq!(access.token_user(&token), Some("svc"));
        assert_eq!(
            access.token_user(&hash),
            None,
            "the stored hash is not a token"
        );
        assert!(!format!("{access:?}").contains(&hash));
    }
}
