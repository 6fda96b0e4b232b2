//! The submission-store suite (`bpg_gateway::store::testkit`) against every store: SQLite in
//! memory and in a file, and PostgreSQL (server from `BPG_TEST_POSTGRES_URL`); plus what is
//! particular to each, and a gateway whose state is on PostgreSQL.

use std::sync::Arc;

use bpg_gateway::store::testkit::{record, submission_store_suite as suite};
use bpg_gateway::store::{self, SqliteStore, SubmissionStore, SubmissionStoreExt};

#[tokio::test]
async fn sqlite_in_memory_passes_the_suite() {
    suite(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn sqlite_file_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(
        SqliteStore::open(dir.path().join("gateway.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn open_picks_the_store_from_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.db");
    let store = store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.location(), path.display().to_string());
    store
        .insert(&record("a-1", "alice", "pi", 1))
        .await
        .unwrap();
    let again = store::open(path.to_str().unwrap()).await.unwrap();
    assert!(again.get("a-1").await.unwrap().is_some());
    // A URL that is not PostgreSQL's grammar is an error naming what was expected.
    let err = store::open("postgres://alice:s3cret@[::1:5432/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected postgres://"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

mod postgres {
    use super::*;
    use bpg_gateway::store::PostgresStore;
    use bpg_gateway::{Gateway, Settings};
    use bpg_router::RoutingRules;

    fn url() -> Option<String> {
        match std::env::var("BPG_TEST_POSTGRES_URL") {
            Ok(url) => Some(url),
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("BPG_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL and sets it")
            }
            Err(_) => {
                eprintln!("skipped: BPG_TEST_POSTGRES_URL is not set (a PostgreSQL URL for tests)");
                None
            }
        }
    }

    fn fresh_schema(what: &str) -> String {
        format!(
            "bpg_gw_{what}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
    }

    #[tokio::test]
    async fn postgres_passes_the_suite() {
        let Some(url) = url() else { return };
        let store = PostgresStore::connect_in_schema(&url, &fresh_schema("suite"))
            .await
            .unwrap();
        suite(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn replicas_share_submissions_and_idempotency_keys() {
        let Some(url) = url() else { return };
        let a = PostgresStore::connect_in_schema(&url, &fresh_schema("replicas"))
            .await
            .unwrap();
        let b = a.reconnect().await.unwrap();
        let first = record("r-1", "alice", "pi", 1).with_dedupe("alice", "suffix-1");
        assert!(a.insert(&first).await.unwrap().is_none());
        // The same submit retried against another replica returns the first submission.
        let retried = record("r-2", "alice", "pi", 2).with_dedupe("alice", "suffix-1");
        assert_eq!(b.insert(&retried).await.unwrap().unwrap().id, "r-1");
        b.set_created("r-1", "backend-1").await.unwrap();
        assert_eq!(
            a.get("r-1").await.unwrap().unwrap().backend_id.as_deref(),
            Some("backend-1")
        );
        assert_eq!(a.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn replicas_migrating_at_once_agree_on_one_schema() {
        let Some(url) = url() else { return };
        let schema = fresh_schema("migrate");
        let opens = (0..4).map(|_| PostgresStore::connect_in_schema(&url, &schema));
        let stores = futures::future::join_all(opens).await;
        for store in stores {
            assert_eq!(store.unwrap().count().await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn errors_and_debug_never_show_the_password() {
        // Nothing listens on port 1: the connection is refused.
        let err = PostgresStore::connect("postgres://alice:s3cret-pw@127.0.0.1:1/db")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://alice@127.0.0.1:1/db"), "{err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
        let Some(url) = url() else { return };
        let store = PostgresStore::connect_in_schema(&url, &fresh_schema("debug"))
            .await
            .unwrap();
        let shown = format!("{store:?} {}", store.location());
        if let Some(password) = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, pw)| pw)
        {
            assert!(!shown.contains(password), "{shown}");
        }
        let bad = PostgresStore::connect_in_schema(&url, "Robert'); DROP TABLE x;--")
            .await
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not a lowercase SQL identifier"), "{bad}");
    }

    #[tokio::test]
    async fn a_gateway_restarted_on_postgres_resumes_what_it_recorded() {
        let Some(url) = url() else { return };
        let store = PostgresStore::connect_in_schema(&url, &fresh_schema("gateway"))
            .await
            .unwrap();
        let rules = RoutingRules::from_yaml(
            "clusters:\n  - {id: analytics, connection: sim}\ndefault: {clusters: [analytics]}\n",
            None,
        )
        .unwrap();
        let job = bpg_core::SparkJob::new("pi", bpg_core::AppType::Python, "3.5", "local:///pi.py");
        // A record a previous gateway wrote but never sent.
        store
            .insert(&bpg_gateway::store::SubmissionRecord::new(
                "analytics-33333333333333333333333333333333",
                "analytics",
                "sim",
                "alice",
                job,
            ))
            .await
            .unwrap();
        let sim = Arc::new(bpg_core::SimBackend::builder().name("analytics").build());
        let gateway = Gateway::builder(rules)
            .backend("sim", sim.clone())
            .settings(Settings::default())
            .store(Arc::new(store.reconnect().await.unwrap()))
            .build()
            .await
            .unwrap();
        let mut created = false;
        for _ in 0..200 {
            let r = store
                .get("analytics-33333333333333333333333333333333")
                .await
                .unwrap()
                .unwrap();
            if r.backend_id.is_some() {
                created = true;
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            created,
            "the reconciled submission was created on the cluster"
        );
        assert_eq!(sim.accepted_count(), 1);
        gateway.shutdown().await;
    }
}
