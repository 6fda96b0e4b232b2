//! The run-store suite (`bpg_pipeline::store::testkit`) against every store: in memory, SQLite,
//! and PostgreSQL (feature `postgres`, server from `BPG_TEST_POSTGRES_URL`); plus what is
//! particular to each.

use std::sync::Arc;

use bpg_pipeline::store::testkit::{day, key, run, run_store_suite as suite, submission};
use bpg_pipeline::{InMemoryRunStore, RunStore, SqliteRunStore, TaskState};
use chrono::Utc;
use serde_json::json;

#[tokio::test]
async fn in_memory_store_passes_the_suite() {
    suite(Arc::new(InMemoryRunStore::new()), "mem").await;
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteRunStore::open(dir.path().join("runs.db"))
        .await
        .unwrap();
    suite(Arc::new(store), "sqlite").await;
}

#[tokio::test]
async fn sqlite_store_keeps_everything_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let k = key("durable", "manual__1");
    {
        let store = SqliteRunStore::open(&path).await.unwrap();
        store.begin_run(&run(&k, day(1))).await.unwrap();
        store
            .set_task_state(&k, "spark", TaskState::Running, 1)
            .await
            .unwrap();
        store
            .record_submission(&k, "spark", &submission("spark", 1))
            .await
            .unwrap();
        store.put_xcom(&k, "spark", "k", &json!("v")).await.unwrap();
    }
    let store = SqliteRunStore::open(&path).await.unwrap();
    let stored = store.load_run(&k).await.unwrap().unwrap();
    assert_eq!(
        stored.tasks["spark"].submissions,
        vec![submission("spark", 1)]
    );
    assert_eq!(stored.xcom["spark"]["k"], json!("v"));
    assert_eq!(store.list_runs("durable").await.unwrap().len(), 1);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use bpg_pipeline::PostgresRunStore;

    /// A store on a fresh schema of the test server, or `None` (locally) when there is none.
    async fn store() -> Option<PostgresRunStore> {
        let Ok(url) = std::env::var("BPG_TEST_POSTGRES_URL") else {
            if std::env::var_os("CI").is_some() {
                panic!("BPG_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL and sets it");
            }
            eprintln!("skipped: BPG_TEST_POSTGRES_URL is not set (a PostgreSQL URL for tests)");
            return None;
        };
        let schema = format!(
            "bpg_test_{}_{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        Some(
            PostgresRunStore::connect_in_schema(&url, &schema)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn postgres_store_passes_the_suite() {
        let Some(store) = store().await else { return };
        suite(Arc::new(store), "pg").await;
    }

    #[tokio::test]
    async fn two_runners_share_one_postgres_store() {
        let Some(a) = store().await else { return };
        // A second connection to the same schema: another runner.
        let b = a.reconnect().await.unwrap();
        assert_eq!(
            b.schema_version().await.unwrap(),
            a.schema_version().await.unwrap()
        );
        let k = key("shared", "manual__1");
        a.begin_run(&run(&k, day(1))).await.unwrap();
        b.set_task_state(&k, "t", TaskState::Running, 1)
            .await
            .unwrap();
        b.record_submission(&k, "t", &submission("t", 1))
            .await
            .unwrap();
        let seen = a.load_run(&k).await.unwrap().unwrap();
        assert_eq!(seen.tasks["t"].submissions, vec![submission("t", 1)]);
        // Both writing at once: every write lands.
        let writes = (0..20).map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let k = k.clone();
            tokio::spawn(async move {
                store
                    .put_xcom(&k, &format!("t{i}"), "i", &json!(i))
                    .await
                    .unwrap()
            })
        });
        for w in writes.collect::<Vec<_>>() {
            w.await.unwrap();
        }
        assert_eq!(a.load_run(&k).await.unwrap().unwrap().xcom.len(), 20);
    }

    #[tokio::test]
    async fn a_bad_postgres_url_is_reported_without_its_password() {
        let e =
            PostgresRunStore::connect("postgres://bpg:hunter2@127.0.0.1:1/runs?connect_timeout=2")
                .await
                .unwrap_err()
                .to_string();
        assert!(e.contains("127.0.0.1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
