//! bpg-pipeline: scheduling and executor overhead per task, and the cost of tracking many
//! concurrently running Spark jobs.
//!
//! - `pipeline/run/*`: whole runs of 1k and 10k zero-duration Spark tasks on SimBackend (chain,
//!   wide fan-out, layered). Throughput is in tasks; µs per task is printed after each group.
//!   Targets: ≤ 5 µs per task, and a 10k chain ≤ 1.2× the per-task cost of a 1k chain.
//! - `pipeline/run_functions/chain/*`: the same runner with Rust function tasks, no backend.
//! - `pipeline/sim_baseline/*`: SimBackend alone (submit and wait, no runner): the backend's share.
//! - `pipeline/scheduler/*`: the pure scheduler alone on the same shapes.
//! - `concurrent_10k` (after the criterion groups, when no filter excludes it): 10,000 Spark jobs
//!   running at once for 20 s with 1 s status polling; prints peak RSS and CPU use.
//!   Targets: ≤ 200 MB, ≤ 1 core.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpg_core::{AppType, SimBackend, SimScript, SparkJob};
use bpg_pipeline::scheduler::{AttemptOutcome, Graph, Scheduler};
use bpg_pipeline::{Dag, Runner, Task};

/// Connections by name: the benchmarks build their backends themselves.
type Backends = std::collections::HashMap<String, Arc<dyn bpg_core::Backend>>;
use criterion::{BenchmarkId, Criterion, Throughput};

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// t0 >> t1 >> ... >> tn.
    Chain,
    /// root >> [t1 .. tn].
    FanOut,
    /// 10 layers; each task depends on two tasks of the layer before.
    Layered,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::FanOut => "fan_out",
            Shape::Layered => "layered",
        }
    }
}

fn dag(shape: Shape, n: usize) -> Dag {
    let job = SparkJob::new("bench", AppType::Python, "3.5", "local:///bench.py");
    let task = |i: usize| Task::spark(format!("t{i}"), "sim", job.clone());
    let mut b = Dag::builder(format!("{}_{n}", shape.name())).max_active_tasks(n);
    match shape {
        Shape::Chain => {
            b = b.task(task(0));
            for i in 1..n {
                b = b.task(task(i).depends_on([format!("t{}", i - 1)]));
            }
        }
        Shape::FanOut => {
            b = b.task(task(0));
            for i in 1..n {
                b = b.task(task(i).depends_on(["t0"]));
            }
        }
        Shape::Layered => {
            let width = n / 10;
            for i in 0..n {
                let (layer, pos) = (i / width, i % width);
                let t = if layer == 0 {
                    task(i)
                } else {
                    let prev = (layer - 1) * width;
                    task(i).depends_on([
                        format!("t{}", prev + pos),
                        format!("t{}", prev + (pos + 1) % width),
                    ])
                };
                b = b.task(t);
            }
        }
    }
    b.build().expect("benchmark DAG is valid")
}

/// A registry with a zero-duration SimBackend, and the backend (returned from the measured
/// routine so that dropping the simulation's 10k jobs is not counted as the runner's cost).
fn zero_duration_sim() -> (Backends, SimBackend) {
    let script = SimScript::from_query("duration=0s").expect("valid sim script");
    let sim = SimBackend::builder().default_script(script).build();
    let mut registry = Backends::new();
    registry.insert("sim".to_string(), Arc::new(sim.clone()));
    (registry, sim)
}

/// Benchmark-name filters given on the command line (criterion's own filtering is the reference).
fn filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

fn selected(id: &str) -> bool {
    let filters = filters();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

fn runs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("pipeline/run");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for shape in [Shape::Chain, Shape::FanOut, Shape::Layered] {
        for n in [1_000usize, 10_000] {
            let dag = Arc::new(dag(shape, n));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(shape.name(), n), &n, |b, _| {
                b.iter_batched(
                    || (dag.clone(), zero_duration_sim()),
                    |(dag, (registry, sim))| {
                        let report = rt
                            .block_on(Runner::new(dag, registry).run_id("bench").run())
                            .expect("run starts");
                        assert!(report.is_success());
                        (report, sim)
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
            let id = format!("pipeline/run/{}/{n}", shape.name());
            if selected(&id) {
                let per_task = per_task_micros(&rt, &dag);
                println!("{id}: {per_task:.2} µs per task (best of 5 runs)");
            }
        }
    }
    group.finish();
}

/// The runner without a backend: chains of Rust function tasks that return at once. Separates
/// the executor's own cost (and its scaling) from SimBackend's.
fn function_chains(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("pipeline/run_functions");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for n in [1_000usize, 10_000] {
        let mut b = Dag::builder(format!("fn_chain_{n}"))
            .task(Task::function("t0", |_| async { Ok(None) }));
        for i in 1..n {
            b = b.task(
                Task::function(format!("t{i}"), |_| async { Ok(None) })
                    .depends_on([format!("t{}", i - 1)]),
            );
        }
        let dag = Arc::new(b.build().expect("valid DAG"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("chain", n), &n, |b, _| {
            b.iter(|| {
                let report = rt
                    .block_on(Runner::new(dag.clone(), Backends::new()).run())
                    .expect("run starts");
                assert!(report.is_success());
                report
            })
        });
    }
    group.finish();
}

/// A direct measurement for the per-task figure (criterion's own estimate is the reference).
fn per_task_micros(rt: &tokio::runtime::Runtime, dag: &Arc<Dag>) -> f64 {
    let rounds = 5;
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let (registry, sim) = zero_duration_sim();
        let started = Instant::now();
        let report = rt
            .block_on(Runner::new(dag.clone(), registry).run_id("bench").run())
            .expect("run starts");
        let elapsed = started.elapsed();
        drop(sim);
        assert!(report.is_success());
        best = best.min(elapsed.as_secs_f64() * 1e6 / dag.tasks.len() as f64);
    }
    best
}

/// The backend's share of a task: submitting and waiting for 1k/10k zero-duration jobs on
/// SimBackend directly, one after another, with no runner.
fn backend_baseline(c: &mut Criterion) {
    use bpg_core::{BackendExt, IdempotencyKey, SubmitOptions, WaitOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("pipeline/sim_baseline");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    let job = SparkJob::new("bench", AppType::Python, "3.5", "local:///bench.py");
    for n in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("submit_and_wait", n), &n, |b, &n| {
            b.iter_batched(
                || zero_duration_sim().1,
                |sim| {
                    rt.block_on(async {
                        for i in 0..n {
                            let key = IdempotencyKey::for_task("bench", "bench", "t", i as u32);
                            let options = SubmitOptions::new().with_idempotency_key(key);
                            let (_, status) = sim
                                .submit_and_wait(&job, &options, &WaitOptions::default())
                                .await
                                .expect("sim job");
                            black_box(status);
                        }
                    });
                    sim
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn scheduler(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline/scheduler");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    for shape in [Shape::Chain, Shape::FanOut, Shape::Layered] {
        for n in [1_000usize, 10_000] {
            let graph = Arc::new(Graph::new(&dag(shape, n)));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(shape.name(), n), &n, |b, _| {
                b.iter(|| {
                    let mut s = Scheduler::new(graph.clone(), "bench");
                    while let Some(i) = s.pop_ready() {
                        s.attempt_started(i);
                        s.attempt_finished(i, AttemptOutcome::Success);
                    }
                    black_box(s.run_state())
                })
            });
        }
    }
    group.finish();
}

/// Peak resident set (VmHWM) in MiB, from /proc.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// User + system CPU time of this process, from /proc (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// 10,000 Spark tasks running at once on SimBackend for 20 s, status polled every second.
fn concurrent_10k() {
    const JOBS: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let job = SparkJob::new("tracked", AppType::Python, "3.5", "local:///tracked.py")
        .with_label("sim/duration", "20s");
    let dag = Dag::builder("concurrent_10k")
        .max_active_tasks(JOBS)
        .tasks((0..JOBS).map(|i| Task::spark(format!("t{i}"), "sim", job.clone())))
        .build()
        .expect("valid DAG");
    let sim = SimBackend::new();
    let mut registry = Backends::new();
    registry.insert("sim".to_string(), Arc::new(sim.clone()));
    let rss_before = peak_rss_mib().unwrap_or(f64::NAN);
    let cpu_before = cpu_seconds().unwrap_or(f64::NAN);
    let started = Instant::now();
    let report = rt.block_on(async {
        let runner = Runner::new(dag, registry)
            .run_id("concurrent")
            .poll_interval(Duration::from_secs(1));
        let run = tokio::spawn(runner.run());
        // Wait until every job is running, then measure the steady state separately.
        while sim.running_count() < JOBS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ramp = started.elapsed();
        let cpu_ramp = cpu_seconds().unwrap_or(f64::NAN);
        let steady_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let steady = steady_from.elapsed();
        let cpu_steady = cpu_seconds().unwrap_or(f64::NAN) - cpu_ramp;
        println!(
            "concurrent_10k: all {JOBS} running after {:.2} s; steady tracking: {:.3} cores ({:.2} CPU-s over {:.1} s, {} status polls/s)",
            ramp.as_secs_f64(),
            cpu_steady / steady.as_secs_f64(),
            cpu_steady,
            steady.as_secs_f64(),
            JOBS
        );
        run.await.expect("run task").expect("run starts")
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(f64::NAN) - cpu_before;
    assert!(report.is_success());
    assert_eq!(sim.accepted_count(), JOBS);
    println!(
        "concurrent_10k: {JOBS} jobs of 20 s with 1 s polling: wall {wall:.1} s, CPU {cpu:.2} s = {:.3} cores on average, peak RSS {:.1} MiB (process before the run: {rss_before:.1} MiB)",
        cpu / wall,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    runs(&mut criterion);
    function_chains(&mut criterion);
    backend_baseline(&mut criterion);
    scheduler(&mut criterion);
    criterion.final_summary();
    // The concurrency measurement runs unless a filter names other benchmarks only.
    if selected("concurrent_10k") {
        concurrent_10k();
    }
}
