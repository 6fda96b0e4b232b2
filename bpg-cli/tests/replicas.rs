//! Replica failover: three `bpg gateway` processes on one PostgreSQL schema in front of one
//! Kubernetes cluster (a `MockApiServer` in this process). 5,000 submits from 20 concurrent
//! clients with `submissionIdSuffix`, spread over the replicas, while a replica is SIGKILLed and
//! restarted 10 times: every submit is answered (clients retry on another replica), no
//! application is lost or created twice, a status read on another replica right after a submit
//! never 404s, and every replica ends up reporting the same states. The time from a kill to a
//! survivor following the victim's submissions is printed.
//!
//! Needs PostgreSQL (`BPG_TEST_POSTGRES_URL`); skipped with a message without it, unless `CI` is
//! set.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpg_backends::k8s::mock::MockApiServer;
use serde_json::{Value, json};

const REPLICAS: usize = 3;
const CLIENTS: usize = 20;
const PER_CLIENT: usize = 250;
const KILLS: usize = 10;

fn postgres_url() -> Option<String> {
    match std::env::var("BPG_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("BPG_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL and sets it")
        }
        _ => {
            eprintln!("skipped: BPG_TEST_POSTGRES_URL is not set (a PostgreSQL URL for tests)");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway process, restarted on the same port.
struct Replica {
    port: u16,
    child: Child,
    /// Its name among replicas (from its start line).
    id: String,
    log: PathBuf,
}

// The child is handed to the caller, which waits for it (the lint does not follow the return).
#[allow(clippy::zombie_processes)]
fn spawn(config: &Path, state: &str, port: u16, log: &Path) -> (Child, String) {
    let before = std::fs::read_to_string(log).unwrap_or_default().len();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpg"))
        .arg("gateway")
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state", state])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(id) = text[before.min(text.len())..]
            .lines()
            .find_map(|l| l.split("replica: ").nth(1))
            .map(|r| r.trim_end_matches(')').to_owned())
        {
            return (child, id);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replica on port {port} did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn suffix_of(submission_id: &str) -> &str {
    submission_id.rsplit('-').next().unwrap_or("")
}

#[derive(Default)]
struct Tally {
    /// (suffix, submission id, index of the replica that answered, when).
    answered: Vec<(String, String, usize, Instant)>,
    /// Submits that failed even after retrying on every replica.
    failed: Vec<String>,
    /// Status reads right after a submit that answered 404.
    not_found: Vec<String>,
    /// Requests that failed and were retried (connection refused, 5xx).
    retried: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_ten_kills_without_losing_or_duplicating_a_submission() {
    let Some(pg) = postgres_url() else { return };
    let schema = format!("bpg_replicas_{}", std::process::id());
    let state = format!(
        "{pg}{}schema={schema}",
        if pg.contains('?') { '&' } else { '?' }
    );
    let cluster = MockApiServer::start_in("spark").await;
    // Jobs run 4 s of real time: kills land while many run.
    cluster.time_scale(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bpg.yaml");
    std::fs::write(
        &config,
        format!(
            "sparkClusters:\n  - id: k8s-cluster\n    weight: 100\n    masterUrl: {}\n    \
             userTokenSOPS: \"plaintext:test\"\n    sparkApplicationNamespace: spark\n    \
             sparkVersions: [\"3.5\"]\n    queues: [poc]\nqueues: [{{name: poc}}]\n\
             allowedUsers: [\"*\"]\nstatusCacheExpireMillis: 200\n",
            cluster.uri()
        ),
    )
    .unwrap();
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let port = free_port();
        let log = dir.path().join(format!("replica-{i}.log"));
        let (child, id) = spawn(&config, &state, port, &log);
        replicas.push(Replica {
            port,
            child,
            id,
            log,
        });
    }
    let ports: &'static [u16] = replicas.iter().map(|r| r.port).collect::<Vec<_>>().leak();
    let replicas = Arc::new(Mutex::new(replicas));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = move |i: usize| format!("http://127.0.0.1:{}/skatev2", ports[i % REPLICAS]);

    // The clients: each submit goes to a replica in turn, and on to the next when that one is
    // down; then its status is read on another replica.
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, tally, base) = (http.clone(), tally.clone(), base);
            tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let suffix = format!("c{c:02}n{n:04}");
                    let body = json!({
                        "sparkVersion": "3.5",
                        "mainApplicationFile": "local:///pi.py",
                        "submissionIdSuffix": suffix,
                        "driver": {"labels": {"sim/duration": "4s"}},
                    });
                    let mut answer = None;
                    for attempt in 0..60 {
                        let i = c + n + attempt;
                        let r = http
                            .post(format!("{}/spark", base(i)))
                            .header("User-Account", format!("client-{c}"))
                            .json(&body)
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap();
                                answer = Some((v["submissionId"].as_str().unwrap().to_owned(), i));
                                break;
                            }
                            Ok(r) if !r.status().is_server_error() => {
                                let status = r.status();
                                let text = r.text().await.unwrap_or_default();
                                panic!("submit {suffix}: {status}: {text}");
                            }
                            _ => {
                                tally.lock().unwrap().retried += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    let Some((id, i)) = answer else {
                        tally.lock().unwrap().failed.push(suffix);
                        continue;
                    };
                    tally.lock().unwrap().answered.push((
                        suffix.clone(),
                        id.clone(),
                        i % REPLICAS,
                        Instant::now(),
                    ));
                    // Right after: another replica knows it.
                    for attempt in 1..60 {
                        let r = http
                            .get(format!("{}/spark/{id}/status", base(i + attempt)))
                            .header("User-Account", format!("client-{c}"))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 200 => break,
                            Ok(r) if r.status() == 404 => {
                                tally.lock().unwrap().not_found.push(id.clone());
                                break;
                            }
                            _ => {
                                tally.lock().unwrap().retried += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    // Paced, so the run spans every kill.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        })
        .collect();

    // The killer: SIGKILL a replica, restart it on its port; measure how long until another
    // replica follows the submissions the victim held.
    let mut takeovers = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let victim = k % REPLICAS;
        let (victim_id, killed_at) = {
            let mut all = replicas.lock().unwrap();
            let r = &mut all[victim];
            r.child.kill().unwrap();
            r.child.wait().unwrap();
            (r.id.clone(), Instant::now())
        };
        // Submissions the victim answered in the last 2 s run for 4 s: it was following them.
        let held: Vec<String> = tally
            .lock()
            .unwrap()
            .answered
            .iter()
            .filter(|(_, _, i, at)| {
                *i == victim && killed_at.duration_since(*at) < Duration::from_secs(2)
            })
            .map(|(_, id, _, _)| id.clone())
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let mut all = replicas.lock().unwrap();
            let r = &mut all[victim];
            let (child, id) = spawn(&config, &state, r.port, &r.log);
            r.child = child;
            r.id = id;
        }
        if let Some(probe) = held.first() {
            let survivor = base(victim + 1);
            let deadline = killed_at + Duration::from_secs(60);
            loop {
                let explain: Value = match http
                    .get(format!("{survivor}/spark/{probe}/explain"))
                    .header("User-Account", "admin")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap(),
                    _ => Value::Null,
                };
                let state = explain["applicationState"].as_str().unwrap_or("");
                let followed_by = explain["followedBy"].as_str().unwrap_or("");
                if !followed_by.is_empty() && followed_by != victim_id {
                    takeovers.push((killed_at.elapsed(), held.len(), state.to_owned()));
                    break;
                }
                if explain["phase"] == "created" && state == "COMPLETED" && followed_by == victim_id
                {
                    // Finished before anyone took it: nothing was left to take over.
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "kill {k}: no replica took {probe} over from {victim_id}: {explain}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    let submit_time = started.elapsed();
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();

    // Every replica reports every submission finished, and all report the same.
    let ids: Vec<String> = tally
        .answered
        .iter()
        .map(|(_, id, _, _)| id.clone())
        .collect();
    let mut states: Vec<HashMap<String, String>> = Vec::new();
    for i in 0..REPLICAS {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r: Value = http
                .post(format!("{}/spark/statuses", base(i)))
                .header("User-Account", "admin")
                .json(&json!({"submissionIds": ids}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let seen: HashMap<String, String> = ids
                .iter()
                .map(|id| {
                    let s = r["statuses"][id]["applicationState"]
                        .as_str()
                        .unwrap_or("?");
                    (id.clone(), s.to_owned())
                })
                .collect();
            let done = seen.values().all(|s| s == "COMPLETED");
            if done || Instant::now() > deadline {
                states.push(seen);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let mut stopped = Vec::new();
    for r in replicas.lock().unwrap().iter_mut() {
        Command::new("kill")
            .args(["-TERM", &r.child.id().to_string()])
            .status()
            .unwrap();
        stopped.push(r.child.wait().unwrap());
    }

    // The cluster: one application per suffix, none missing.
    let mut per_suffix: HashMap<String, usize> = HashMap::new();
    for name in cluster.applications() {
        let name = name.rsplit('/').next().unwrap_or(&name);
        let app = cluster.application(name).unwrap();
        let id = app["metadata"]["labels"]["submissionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *per_suffix.entry(suffix_of(&id).to_owned()).or_default() += 1;
    }
    let duplicated: Vec<_> = per_suffix.iter().filter(|(_, n)| **n > 1).collect();
    let answered_suffixes: HashSet<&str> =
        tally.answered.iter().map(|(s, ..)| s.as_str()).collect();
    let lost: Vec<&&str> = answered_suffixes
        .iter()
        .filter(|s| !per_suffix.contains_key(**s))
        .collect();
    let disagreements = ids
        .iter()
        .filter(|id| states.iter().any(|s| s[*id] != states[0][*id]))
        .count();
    let unfinished = states[0].values().filter(|s| *s != "COMPLETED").count();

    let total = CLIENTS * PER_CLIENT;
    println!(
        "replicas: {total} submits in {submit_time:.1?} with {KILLS} kills; {} answered, {} failed after retries, {} requests retried; {} applications on the cluster",
        tally.answered.len(),
        tally.failed.len(),
        tally.retried,
        cluster.applications().len()
    );
    for (i, (took, held, state)) in takeovers.iter().enumerate() {
        println!(
            "takeover {i}: a survivor followed the victim's submissions {took:.2?} after the kill ({held} were running; probe {state})"
        );
    }
    let logs: String = replicas
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            let mut text = String::new();
            std::fs::File::open(&r.log)
                .and_then(|mut f| f.read_to_string(&mut text))
                .ok();
            text
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        tally.failed.len() * 1000 < total,
        "client-visible errors: {} of {total}",
        tally.failed.len()
    );
    assert_eq!(tally.answered.len() + tally.failed.len(), total);
    assert!(
        tally.not_found.is_empty(),
        "404 right after a submit: {:?}",
        tally.not_found
    );
    assert!(duplicated.is_empty(), "created twice: {duplicated:?}");
    assert!(lost.is_empty(), "answered but never created: {lost:?}");
    assert_eq!(disagreements, 0, "replicas disagree on states");
    assert_eq!(
        unfinished, 0,
        "submissions that never finished; logs:\n{logs}"
    );
    assert!(!takeovers.is_empty(), "no kill caught a running submission");
    for s in stopped {
        assert!(
            s.success(),
            "a replica did not stop cleanly: {s}; logs:\n{logs}"
        );
    }
}
