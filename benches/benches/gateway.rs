//! bpg-gateway: what a gateway in front of many clusters costs.
//!
//! - `gateway/store/submit`: one durable submission record (SQLite file, WAL, one transaction).
//!   Goal: 1,000/s. `gateway/store_postgres/*`: the same on PostgreSQL, when
//!   `BPG_TEST_POSTGRES_URL` names a server.
//! - `gateway/http/submit`: a whole `POST /spark` over loopback HTTP on a simulated cluster
//!   (parse, route, record, create), one at a time. Goal: p99 under 20 ms.
//! - `gateway/http/batch_status_10k`: `POST /spark/statuses` for 10,000 live submissions.
//!   Goal: under 50 ms.
//! - `load` (after the groups, unless a filter excludes it): status requests per second and p99 with
//!   10,000 live submissions, 64 clients for 5 s, against a bare axum hello-world served the same
//!   way in the same process; RSS with 100,000 stored submissions. Goal: at least half the
//!   hello-world throughput; RSS under 200 MB.
//! - `fleet`: 20 `MockApiServer` clusters behind one gateway: the time from a submit to its
//!   SparkApplication existing on the chosen cluster (1,000 submits; goal p50 under 50 ms, p99
//!   under 250 ms); then a burst of 5,000 submits at a cluster capped at 100 in flight: the most
//!   in flight at once as the cluster saw it (must not pass 100) and the time until all 5,000
//!   were created and ended.
//! - `soak`: 200 clients for 60 s with authentication on (status polls, followed logs, submits
//!   at a per-user cap): errors other than the cap's 429s (goal: none), status p99, RSS at the
//!   start, middle and end (goal: stable).
//! - `follow`: one runner (`GatewayBackend`, as `bpg run` uses it) following 10,000 running jobs
//!   through the gateway for 10 s, the gateway and the runner on runtimes of their own: the CPU
//!   each uses, from `/proc/self/task`. Goal: under 0.25 core each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpg_core::{AppType, Backend, SimBackend, SparkJob};
use bpg_gateway::store::{SqliteStore, SubmissionRecord, SubmissionStore};
use bpg_gateway::{Gateway, Settings};
use bpg_router::RoutingRules;
use common::rss_mb;
use criterion::{Criterion, Throughput};

mod common;

const RULES: &str =
    "clusters:\n  - {id: analytics, connection: analytics}\ndefault: {clusters: [analytics]}\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn job() -> SparkJob {
    SparkJob::new("bench", AppType::Python, "3.5", "local:///bench.py")
        .with_label("sim/duration", "1h")
}

/// A served gateway over one simulated cluster, `live` submissions already running on it.
async fn gateway(store: Arc<dyn SubmissionStore>, live: usize) -> (Gateway, String, Vec<String>) {
    let mut ids = Vec::with_capacity(live);
    for i in 0..live {
        let id = format!("analytics-{i:032x}");
        store
            .insert(&SubmissionRecord::new(
                id.clone(),
                "analytics",
                "analytics",
                "bench",
                job(),
            ))
            .await
            .expect("recorded");
        ids.push(id);
    }
    let sim: Arc<dyn Backend> = Arc::new(SimBackend::builder().name("analytics").build());
    let mut settings = Settings::default();
    settings.max_body_bytes = 64 << 20;
    let gateway = Gateway::builder(RoutingRules::from_yaml(RULES, None).expect("rules"))
        .backend("analytics", sim)
        .settings(settings)
        .store(store)
        .build()
        .await
        .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/skatev2", listener.local_addr().expect("addr"));
    tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
    // Wait for the reconciled submissions to be created and followed.
    let client = reqwest::Client::new();
    if let Some(last) = ids.last() {
        loop {
            let s: serde_json::Value = client
                .get(format!("{url}/spark/{last}/status"))
                .header("User-Account", "bench")
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            if s["applicationState"] == "RUNNING" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (gateway, url, ids)
}

fn store_group(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("dir");
    let sqlite: Arc<dyn SubmissionStore> =
        Arc::new(SqliteStore::open(dir.path().join("bench.db")).expect("store"));
    store_benches(c, &rt, "gateway/store", &sqlite);
    // The same on PostgreSQL when a server is given (as `.ci/run` gives the tests one).
    match std::env::var("BPG_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("bpg_bench_{}", std::process::id());
            let pg: Arc<dyn SubmissionStore> = Arc::new(
                rt.block_on(bpg_gateway::store::PostgresStore::connect_in_schema(
                    &url, &schema,
                ))
                .expect("postgres store"),
            );
            store_benches(c, &rt, "gateway/store_postgres", &pg);
        }
        Err(_) => println!("gateway/store_postgres: skipped, BPG_TEST_POSTGRES_URL is not set"),
    }
}

fn store_benches(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    store: &Arc<dyn SubmissionStore>,
) {
    let mut n = 0u64;
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("submit", |b| {
        b.iter(|| {
            n += 1;
            let record = SubmissionRecord::new(
                format!("analytics-{n:032x}"),
                "analytics",
                "analytics",
                "bench",
                job(),
            )
            .with_dedupe("bench", &n.to_string());
            rt.block_on(store.insert(&record)).expect("recorded");
        })
    });
    let ids: Vec<String> = (1..=10_000u64)
        .map(|n| format!("analytics-{n:032x}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("get_many_10k", |b| {
        b.iter(|| rt.block_on(store.get_many(&refs)).expect("read"))
    });
    g.bench_function("statuses_many_10k", |b| {
        b.iter(|| rt.block_on(store.statuses_many(&refs)).expect("read"))
    });
    g.finish();
}

fn http_group(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("dir");
    let (_gateway, url, ids) = rt.block_on(gateway(
        Arc::new(SqliteStore::open(dir.path().join("g.db")).expect("store")),
        10_000,
    ));
    let client = reqwest::Client::new();
    let mut g = c.benchmark_group("gateway/http");
    g.sample_size(20);
    g.bench_function("submit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client
                    .post(format!("{url}/spark"))
                    .header("User-Account", "bench")
                    .body(r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///b.py","driver":{"labels":{"sim/duration":"1h"}}}"#)
                    .send()
                    .await
                    .expect("submit");
                assert_eq!(r.status(), 200);
            })
        })
    });
    let body = serde_json::json!({ "submissionIds": ids }).to_string();
    g.bench_function("batch_status_10k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client
                    .post(format!("{url}/spark/statuses"))
                    .header("User-Account", "bench")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("statuses");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("body");
            })
        })
    });
    g.finish();
}

/// Requests per second and latencies (sorted) of `clients` concurrent clients for `for_how_long`.
async fn hammer(
    urls: Arc<Vec<String>>,
    clients: usize,
    for_how_long: Duration,
) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while started.elapsed() < for_how_long {
                let t = Instant::now();
                let r = client
                    .get(&urls[i % urls.len()])
                    .header("User-Account", "bench")
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.expect("body");
                lat.push(t.elapsed());
                i += clients;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, all)
}

fn p(lat: &[Duration], q: f64) -> Duration {
    lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)]
}

fn load() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let (gateway, url, ids) = gateway(Arc::new(SqliteStore::open(dir.path().join("load.db")).expect("store")), 10_000).await;
        let status_urls: Arc<Vec<String>> = Arc::new(ids.iter().map(|id| format!("{url}/spark/{id}/status")).collect());
        let hello = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let hello_url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, hello).await });
        let run = Duration::from_secs(5);
        let (hello_rps, hello_lat) = hammer(Arc::new(vec![hello_url]), 64, run).await;
        let (status_rps, status_lat) = hammer(status_urls, 64, run).await;
        println!("\nload (64 clients, 5 s each, 10,000 live submissions):");
        println!("  hello world  {hello_rps:>9.0} req/s  p50 {:>8.2?}  p99 {:>8.2?}", p(&hello_lat, 0.5), p(&hello_lat, 0.99));
        println!("  status       {status_rps:>9.0} req/s  p50 {:>8.2?}  p99 {:>8.2?}", p(&status_lat, 0.5), p(&status_lat, 0.99));
        println!("  status / hello world: {:.2}", status_rps / hello_rps);
        gateway.shutdown().await;

        // 100,000 stored submissions (ended), 10,000 of them still running: the process's RSS.
        let before = rss_mb();
        let store = Arc::new(SqliteStore::open(dir.path().join("big.db")).expect("store"));
        for i in 0..100_000u64 {
            let id = format!("analytics-{:032x}", i + 1_000_000);
            store.insert(&SubmissionRecord::new(id.clone(), "analytics", "analytics", "bench", job())).await.expect("recorded");
            store.set_rejected(&id, "ended").await.expect("ended");
        }
        let (big, _, _) = gateway_with(store, 10_000).await;
        println!("  RSS: {before:.0} MB before, {:.0} MB with 100,000 stored and 10,000 live submissions", rss_mb());
        big.shutdown().await;
    });
}

async fn gateway_with(
    store: Arc<dyn SubmissionStore>,
    live: usize,
) -> (Gateway, String, Vec<String>) {
    gateway(store, live).await
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    store_group(&mut c);
    http_group(&mut c);
    c.final_summary();
    // Filters are the arguments that are neither flags nor a flag's value.
    let mut filter = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a.starts_with("--") {
            if !a.contains('=')
                && ![
                    "--bench",
                    "--test",
                    "--list",
                    "--exact",
                    "--noplot",
                    "--quiet",
                    "--verbose",
                ]
                .contains(&a.as_str())
            {
                args.next();
            }
        } else {
            filter.push(a);
        }
    }
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wants("load") {
        load();
    }
    if wants("fleet") {
        fleet();
    }
    if wants("follow") {
        follow();
    }
    if wants("soak") {
        soak();
    }
}

/// What one soak client saw.
#[derive(Default)]
struct Seen {
    status: Vec<Duration>,
    ok: u64,
    limited: u64,
    errors: Vec<String>,
    streams: u64,
    log_bytes: u64,
    submits: u64,
}

/// 200 clients with authentication on (bearer tokens) for `BPG_BENCH_SOAK_SECS` (60): 150 poll a
/// running job's status every 100 ms, 40 follow driver logs (reconnecting every 5 s), each as a
/// user of their own; 10 submit as fast as they can as one user, capped (as every user is) at
/// 50 requests a second. Every answer is a 200
/// or, for the capped user, a 429; the status p99 and the process's RSS at the start, middle
/// and end are reported.
fn soak() {
    use bpg_gateway::auth::{Access, hash_token, new_token};
    let secs: u64 = std::env::var("BPG_BENCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let gateway_rt = named_runtime("bench-gateway");
    let clients_rt = named_runtime("bench-clients");
    let dir = tempfile::tempdir().expect("dir");
    // A user per polling or following client (each well under the cap), and one for the
    // submitters, who share it and so run into the cap.
    let users = 190;
    let tokens: Vec<String> = (0..=users).map(|_| new_token().0).collect();
    let mut access = String::from("users:\n");
    for (i, t) in tokens.iter().enumerate() {
        access.push_str(&format!("  user{i}: {{tokens: [\"{}\"]}}\n", hash_token(t)));
    }
    let submitter = tokens[users].clone();
    let (gateway, url) = gateway_rt.block_on(async {
        let rules = RoutingRules::from_yaml(RULES, None).expect("rules");
        let mut settings = Settings::default();
        settings.limits.requests_per_second = Some(50);
        let gateway = Gateway::builder(rules)
            .backend(
                "analytics",
                Arc::new(SimBackend::builder().name("analytics").build()) as Arc<dyn Backend>,
            )
            .settings(settings)
            .store(Arc::new(
                SqliteStore::open(dir.path().join("soak.db")).expect("store"),
            ))
            .access(Access::from_yaml(&access, None).expect("access"))
            .build()
            .await
            .expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port");
        let url = format!("http://{}/skatev2", listener.local_addr().expect("addr"));
        tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
        (gateway, url)
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    // One long job per polling and following client, each its user's.
    let long = r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///soak.py","driver":{"labels":{"sim/duration":"2h","sim/log-lines":"20000"}}}"#;
    let short = r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///soak.py","driver":{"labels":{"sim/duration":"2s"}}}"#;
    let jobs: Vec<(String, String)> = clients_rt.block_on(async {
        let mut jobs = Vec::new();
        for c in 0..190 {
            let token = tokens[c % users].clone();
            let r: serde_json::Value = client
                .post(format!("{url}/spark"))
                .bearer_auth(&token)
                .body(long)
                .send()
                .await
                .expect("submit")
                .json()
                .await
                .expect("json");
            jobs.push((r["submissionId"].as_str().expect("id").to_owned(), token));
        }
        jobs
    });
    let run = Duration::from_secs(secs);
    let started = Instant::now();
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for (c, (id, token)) in jobs.into_iter().enumerate() {
        let (client, url, seen) = (client.clone(), url.clone(), seen.clone());
        tasks.push(clients_rt.spawn(async move {
            if c < 150 {
                let mut interval = tokio::time::interval(Duration::from_millis(100));
                while started.elapsed() < run {
                    interval.tick().await;
                    let t = Instant::now();
                    let r = client
                        .get(format!("{url}/spark/{id}/status"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    let mut s = seen.lock().expect("seen");
                    match r {
                        Ok(r) if r.status() == 200 => {
                            s.status.push(t.elapsed());
                            s.ok += 1;
                        }
                        Ok(r) => s.errors.push(format!("status: {}", r.status())),
                        Err(e) => s.errors.push(format!("status: {e}")),
                    }
                }
            } else {
                while started.elapsed() < run {
                    let r = client
                        .get(format!("{url}/log?subId={id}"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    match r {
                        Ok(mut r) if r.status() == 200 => {
                            seen.lock().expect("seen").streams += 1;
                            let until = Instant::now() + Duration::from_secs(5);
                            while Instant::now() < until && started.elapsed() < run {
                                match tokio::time::timeout_at(until.into(), r.chunk()).await {
                                    Ok(Ok(Some(b))) => {
                                        seen.lock().expect("seen").log_bytes += b.len() as u64
                                    }
                                    Ok(Ok(None)) | Err(_) => break,
                                    Ok(Err(e)) => {
                                        seen.lock().expect("seen").errors.push(format!("log: {e}"));
                                        break;
                                    }
                                }
                            }
                        }
                        Ok(r) => seen
                            .lock()
                            .expect("seen")
                            .errors
                            .push(format!("log: {}", r.status())),
                        Err(e) => seen.lock().expect("seen").errors.push(format!("log: {e}")),
                    }
                }
            }
        }));
    }
    for _ in 0..10 {
        let (client, url, seen, token) =
            (client.clone(), url.clone(), seen.clone(), submitter.clone());
        tasks.push(clients_rt.spawn(async move {
            while started.elapsed() < run {
                let r = client
                    .post(format!("{url}/spark"))
                    .bearer_auth(&token)
                    .body(short)
                    .send()
                    .await;
                let limited = {
                    let mut s = seen.lock().expect("seen");
                    match r {
                        Ok(r) if r.status() == 200 => {
                            s.submits += 1;
                            false
                        }
                        Ok(r) if r.status() == 429 => {
                            s.limited += 1;
                            true
                        }
                        Ok(r) => {
                            s.errors.push(format!("submit: {}", r.status()));
                            false
                        }
                        Err(e) => {
                            s.errors.push(format!("submit: {e}"));
                            false
                        }
                    }
                };
                if limited {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let mut rss = vec![(0u64, rss_mb())];
    for at in [secs / 2, secs] {
        while started.elapsed() < Duration::from_secs(at) {
            std::thread::sleep(Duration::from_millis(100));
        }
        rss.push((at, rss_mb()));
    }
    clients_rt.block_on(async {
        for t in tasks {
            t.await.expect("client");
        }
    });
    let mut seen = Arc::try_unwrap(seen)
        .ok()
        .expect("one owner")
        .into_inner()
        .expect("seen");
    seen.status.sort();
    println!(
        "\nsoak: 200 clients for {secs} s, authentication on (150 polling status, 40 following logs, 10 submitting at a 50 req/s cap):"
    );
    println!(
        "  status: {} answered, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        seen.ok,
        p(&seen.status, 0.5),
        p(&seen.status, 0.99),
        seen.status.last().copied().unwrap_or_default()
    );
    println!(
        "  logs: {} streams opened, {} KiB read",
        seen.streams,
        seen.log_bytes / 1024
    );
    println!(
        "  submits: {} accepted, {} answered 429 (the cap), {} other errors",
        seen.submits,
        seen.limited,
        seen.errors.len()
    );
    for e in seen.errors.iter().take(5) {
        println!("    {e}");
    }
    println!(
        "  RSS: {}",
        rss.iter()
            .map(|(t, mb)| format!("{mb:.0} MB at {t} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    clients_rt.shutdown_background();
    gateway_rt.block_on(gateway.shutdown());
}

/// A runtime whose worker threads are named `name`, so their CPU can be told apart.
fn named_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// CPU seconds (user and system) used so far by this process's threads named `name`.
fn cpu_seconds(name: &str) -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for i in [11, 12] {
                ticks += fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

async fn submit_one(client: &reqwest::Client, url: &str, body: &'static str) -> Duration {
    let started = Instant::now();
    let r = client
        .post(format!("{url}/spark"))
        .header("User-Account", "bench")
        .body(body)
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    started.elapsed()
}

fn fleet() {
    use bpg_backends::k8s::mock::MockApiServer;
    let rt = runtime();
    rt.block_on(async {
        // 20 clusters, weighted alike: the router spreads submits over all of them.
        let mut servers = Vec::new();
        let mut rules = String::from("clusters:\n");
        let mut builder_backends: Vec<(String, Arc<dyn Backend>)> = Vec::new();
        for i in 0..20 {
            let server = MockApiServer::start_in(&format!("spark-{i}")).await;
            rules.push_str(&format!("  - {{id: c{i}, connection: c{i}}}\n"));
            builder_backends.push((format!("c{i}"), Arc::new(server.backend().expect("backend"))));
            servers.push(server);
        }
        let all: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        rules.push_str(&format!("default: {{clusters: [{}]}}\n", all.join(", ")));
        let dir = tempfile::tempdir().expect("dir");
        let mut builder = Gateway::builder(RoutingRules::from_yaml(&rules, None).expect("rules"))
            .store(Arc::new(SqliteStore::open(dir.path().join("fleet.db")).expect("store")));
        for (name, backend) in builder_backends {
            builder = builder.backend(&name, backend);
        }
        let gateway = builder.build().await.expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/skatev2", listener.local_addr().expect("addr"));
        tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
        let client = reqwest::Client::new();
        const BODY: &str = r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///f.py","driver":{"labels":{"sim/duration":"1h"}}}"#;
        let mut latencies = Vec::new();
        for n in 1..=1_000u64 {
            latencies.push(submit_one(&client, &url, BODY).await);
            // The answer came once the application existed on its cluster.
            let created: u64 = servers.iter().map(MockApiServer::created_count).sum();
            assert_eq!(created, n, "submit {n} answered before its application existed");
        }
        latencies.sort();
        let used = servers.iter().filter(|s| s.created_count() > 0).count();
        println!("\nfleet: 1,000 submits over 20 MockApiServer clusters ({used} used), one at a time:");
        println!("  submit to SparkApplication created: p50 {:.2?}  p99 {:.2?}  max {:.2?}", p(&latencies, 0.5), p(&latencies, 0.99), p(&latencies, 1.0));
        gateway.shutdown().await;

        // A burst of 5,000 at one cluster capped at 100 in flight.
        let server = MockApiServer::start_in("burst").await;
        server.time_scale(Duration::from_millis(10));
        let mut settings = Settings::default();
        settings
            .clusters
            .insert("analytics".into(), bpg_gateway::ClusterSettings::new().max_in_flight(100));
        settings.submit_wait = Duration::from_millis(50);
        let gateway = Gateway::builder(RoutingRules::from_yaml(RULES, None).expect("rules"))
            .backend("analytics", Arc::new(server.backend().expect("backend")))
            .settings(settings)
            .store(Arc::new(SqliteStore::open(dir.path().join("burst.db")).expect("store")))
            .build()
            .await
            .expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let url = format!("http://{}/skatev2", listener.local_addr().expect("addr"));
        tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
        // 20 simulated seconds each: 200 ms of real time on the cluster.
        const BURST: &str = r#"{"sparkVersion":"3.5","mainApplicationFile":"local:///b.py","driver":{"labels":{"sim/queue-delay":"0s","sim/duration":"20s"}}}"#;
        let started = Instant::now();
        let senders = (0..50).map(|_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                for _ in 0..100 {
                    submit_one(&client, &url, BURST).await;
                }
            }
        });
        futures_join_all(senders).await;
        let answered = started.elapsed();
        while server.created_count() < 5_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let created = started.elapsed();
        println!("fleet: burst of 5,000 submits at a cluster capped at 100 in flight:");
        println!("  all answered in {answered:.2?}; all 5,000 created after {created:.2?}; most in flight at once on the cluster: {} (cap 100)", server.peak_in_flight());
        assert!(server.peak_in_flight() <= 100, "the cap was exceeded");
        gateway.shutdown().await;
    });
}

/// Runs `futures` concurrently (the bench crate has no `futures` dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for h in handles {
        h.await.expect("task");
    }
}

fn follow() {
    use bpg_backends::gateway::{GatewayBackend, GatewayConfig};
    use bpg_core::{Backend as _, JobId};
    let gateway_rt = named_runtime("bench-gateway");
    let runner_rt = named_runtime("bench-runner");
    let dir = tempfile::tempdir().expect("dir");
    let (gateway, url, ids) = gateway_rt.block_on(gateway(
        Arc::new(SqliteStore::open(dir.path().join("follow.db")).expect("store")),
        10_000,
    ));
    let backend_url = url.replace("http://", "bpg+http://bench@");
    let backend = runner_rt.block_on(async {
        Arc::new(
            GatewayBackend::new(
                GatewayConfig::from_url(&backend_url)
                    .expect("url")
                    .name("bpg"),
            )
            .expect("backend"),
        )
    });
    // Every job followed as the pipeline executor follows one: next_status, over and over.
    for id in ids {
        let backend = backend.clone();
        runner_rt.spawn(async move {
            let id = JobId::new(id);
            let mut previous = backend.status(&id).await.ok();
            loop {
                match backend
                    .next_status(&id, previous.as_ref(), Duration::from_secs(1))
                    .await
                {
                    Ok(status) => previous = Some(status),
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
    }
    // Let every follower make its first call, then measure a steady 10 s.
    std::thread::sleep(Duration::from_secs(3));
    let (g0, r0) = (cpu_seconds("bench-gateway"), cpu_seconds("bench-runner"));
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let (g1, r1) = (cpu_seconds("bench-gateway"), cpu_seconds("bench-runner"));
    let secs = window.as_secs_f64();
    println!("\nfollow: one runner following 10,000 running jobs through the gateway (10 s):");
    println!(
        "  gateway {:.3} core, runner {:.3} core",
        (g1 - g0) / secs,
        (r1 - r0) / secs
    );
    runner_rt.shutdown_background();
    gateway_rt.block_on(gateway.shutdown());
}
