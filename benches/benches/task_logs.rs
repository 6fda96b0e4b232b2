//! Stored task logs: opening the tail of a 1 GB task log (goal: under 500 ms, RSS growth under
//! 20 MB), and appending lines as a running task does.
//!
//! The 1 GB log is written once into a temporary directory (about a minute on a slow disk) and
//! removed at the end.

use std::io::Write;
use std::time::{Duration, Instant};

use bpg_pipeline::logs::{LogKey, TaskLogs};
use common::rss_mb;
use criterion::{Criterion, Throughput};

mod common;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().expect("dir");
    let logs = TaskLogs::open(dir.path()).expect("logs");
    let key = LogKey::new("big", "manual__1", "calculate_pi", 1);

    let mut g = c.benchmark_group("task_logs");
    g.throughput(Throughput::Elements(1));
    let line = format!(
        "{} INFO SparkContext: {}",
        "2026-12-06 10:00:00,000",
        "x".repeat(90)
    );
    g.bench_function("append", |b| {
        b.iter(|| logs.append(&key, &line).expect("append"))
    });
    g.finish();

    // A 1 GB log: ~8.9 million lines of 120 bytes, written straight to the file.
    let path = logs.path(&key);
    let target: u64 = 1 << 30;
    {
        let mut f = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("file"),
        );
        let mut written = std::fs::metadata(&path).expect("meta").len();
        let mut i = 0u64;
        while written < target {
            let l = format!("{i:012} {line}\n");
            f.write_all(l.as_bytes()).expect("write");
            written += l.len() as u64;
            i += 1;
        }
        f.flush().expect("flush");
    }
    let size = std::fs::metadata(&path).expect("meta").len();
    // Cold-ish: the first open after writing, then the steady figure.
    let before = rss_mb();
    let started = Instant::now();
    let page = logs.tail(&key, 1_000).expect("tail");
    let first = started.elapsed();
    let after = rss_mb();
    assert_eq!(page.lines.len(), 1_000);
    let mut g = c.benchmark_group("task_logs_1gb");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("tail_1000_lines", |b| {
        b.iter(|| logs.tail(&key, 1_000).expect("tail"))
    });
    g.bench_function("read_64k_from_middle", |b| {
        b.iter(|| logs.read(&key, size / 2, 64 << 10).expect("read"))
    });
    g.finish();
    c.final_summary();
    println!(
        "\ntask logs: tail of 1,000 lines of a {:.2} GB log: {first:.2?} the first time; RSS {before:.1} MB -> {after:.1} MB",
        size as f64 / f64::from(1u32 << 30)
    );
}
