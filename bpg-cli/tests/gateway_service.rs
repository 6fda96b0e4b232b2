//! `bpg gateway` as a process: the healthtech pipeline runs through it with `bpg run` (PHI work
//! landing on the compliant cluster), `bpg status --explain` explains a decision, a non-loopback
//! address is refused without users, and SIGTERM drains and exits 0.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bpg_in, workspace_root};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET as user `healthtech` (taken at its word in development mode), answered with (status
/// line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    get_with(port, path, "User-Account: healthtech")
}

/// A GET with one more header line, answered with (status line, body).
fn get_with(port: u16, path: &str, header: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{header}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

struct Gateway {
    child: Child,
    port: u16,
}

impl Gateway {
    fn start(dir: &std::path::Path, args: &[&str]) -> Gateway {
        Gateway::start_on(dir, "127.0.0.1", args)
    }

    fn start_on(dir: &std::path::Path, host: &str, args: &[&str]) -> Gateway {
        let port = free_port();
        let listen = format!("{host}:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_bpg"))
            .current_dir(workspace_root())
            .arg("gateway")
            .args(args)
            .args(["--listen", &listen, "--state"])
            .arg(dir.join("gateway.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while get(port, "/healthcheck").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the gateway did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Gateway { child, port }
    }

    /// SIGTERM, then the exit code and what it printed.
    fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn the_healthtech_pipeline_runs_through_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(
        dir.path(),
        &["--config", "examples/gateway/healthtech.yaml"],
    );
    let connections = dir.path().join("connections.yaml");
    std::fs::write(
        &connections,
        format!(
            "connections:\n  bpg_connection: {{ url: \"bpg+http://healthtech@127.0.0.1:{}/skatev2\" }}\n",
            gateway.port
        ),
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let run = bpg_in(
        &workspace_root(),
        &[
            "run",
            "examples/pipelines/healthtech.yaml",
            "--connections",
            connections.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
            "--poll-interval",
            "100ms",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.transcript());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["state"], "success");
    let id = |task: &str| {
        report["tasks"][task]["submission_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // statistics_calc reads patient outcomes (labelled PHI): the compliant cluster only.
    assert!(
        id("statistics_calc").starts_with("datascience-"),
        "{report}"
    );
    assert!(id("calculate_pi").starts_with("analytics-"), "{report}");

    // And the decision is explained.
    let connections = connections.to_str().unwrap();
    let explained = bpg_in(
        &workspace_root(),
        &[
            "status",
            "--connection",
            "bpg_connection",
            "--connections",
            connections,
            "--explain",
            &id("statistics_calc"),
        ],
        &[],
    );
    assert_eq!(explained.code, 0, "{}", explained.transcript());
    assert!(
        explained.stdout.contains("phi-to-compliant"),
        "{}",
        explained.transcript()
    );
    assert!(
        explained.stdout.contains("phi-isolation"),
        "{}",
        explained.transcript()
    );

    let (code, stderr) = gateway.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("bpg gateway stopped"), "{stderr}");
}

#[test]
fn without_users_the_gateway_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = bpg_in(
        &workspace_root(),
        &[
            "gateway",
            "--listen",
            "0.0.0.0:0",
            "--state",
            dir.path().join("g.db").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(
        out.stderr.contains("listens on loopback only"),
        "{}",
        out.transcript()
    );
}

#[test]
fn the_embedded_default_says_it_is_in_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path(), &[]);
    let (status, body) = get(gateway.port, "/skatev2/admin/version").unwrap();
    assert!(status.contains("200"), "{status} {body}");
    let (code, stderr) = gateway.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("development mode"), "{stderr}");
    assert!(
        stderr.contains("clusters: analytics, datascience"),
        "{stderr}"
    );
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}")
}

fn hash_password(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpg"))
        .args(["gateway", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    hash
}

#[test]
fn with_an_access_file_it_listens_anywhere_checks_passwords_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = bpg_in(&workspace_root(), &["gateway", "new-token"], &[]);
    assert_eq!(tokens.code, 0, "{}", tokens.transcript());
    let field = |name: &str| {
        tokens
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (token, token_hash) = (field("token:"), field("hash:"));
    let access = dir.path().join("access.yaml");
    let write_access = |password: &str| {
        let text = format!(
            "users:\n  alice: {{password: \"{}\", tokens: [\"{token_hash}\"]}}\n",
            hash_password(password)
        );
        std::fs::write(&access, text).unwrap();
    };
    write_access("first-password");
    let gateway = Gateway::start_on(
        dir.path(),
        "0.0.0.0",
        &["--access", access.to_str().unwrap(), "--allow-http"],
    );
    let path = "/skatev2/spark/mySubmissions";
    let status = |header: &str| get_with(gateway.port, path, header).unwrap().0;
    assert!(status(&basic("alice", "first-password")).contains("200"));
    assert!(status(&basic("alice", "wrong")).contains("401"));
    assert!(status(&format!("Authorization: Bearer {token}")).contains("200"));
    assert!(
        status("User-Account: alice").contains("401"),
        "a name alone is not enough"
    );

    write_access("second-password");
    let pid = gateway.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let started = Instant::now();
    while !status(&basic("alice", "second-password")).contains("200") {
        assert!(started.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status(&basic("alice", "first-password")).contains("401"));
    let (code, stderr) = gateway.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("reloaded the access file"), "{stderr}");
    assert!(!stderr.contains("development mode"), "{stderr}");
    for secret in ["first-password", "second-password", token.as_str()] {
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

#[test]
fn plain_http_beyond_loopback_needs_to_be_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.yaml");
    std::fs::write(
        &access,
        format!(
            "users:\n  alice: {{password: \"{}\"}}\n",
            hash_password("plain-http-password")
        ),
    )
    .unwrap();
    let out = bpg_in(
        &workspace_root(),
        &[
            "gateway",
            "--listen",
            "0.0.0.0:0",
            "--access",
            access.to_str().unwrap(),
            "--state",
            dir.path().join("g.db").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.transcript());
    assert!(
        out.stderr.contains("refusing to serve plain HTTP") && out.stderr.contains("--tls-cert"),
        "{}",
        out.transcript()
    );
}
