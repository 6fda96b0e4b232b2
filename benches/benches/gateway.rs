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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpg_core::{AppType, Backend, SimBackend, SparkJob};
use bpg_gateway::store::{SqliteStore, SubmissionRecord, SubmissionStore};
use bpg_gateway::{Gateway, Settings};
use bpg_router::RoutingRules;
use criterion::{Criterion, Throughput};

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

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
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
    if filter.is_empty() || filter.iter().any(|f| "load".contains(f.as_str())) {
        load();
    }
}
