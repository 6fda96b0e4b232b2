//! The submission-store test suite (feature `testkit`): what every [`SubmissionStore`] must do,
//! as one async function a store's own tests call ([`submission_store_suite`]). SQLite (file and
//! memory) and PostgreSQL stores all pass it.

use std::sync::Arc;

use bpg_core::{AppType, SparkJob};

use super::{
    AuditEntry, Phase, StateChange, StoredStatus, SubmissionRecord, SubmissionStore,
    SubmissionStoreExt,
};

/// A queued submission `id` of `user` to cluster `analytics`, named `app`, created at `at_ms`.
pub fn record(id: &str, user: &str, app: &str, at_ms: i64) -> SubmissionRecord {
    let mut job = SparkJob::new(app, AppType::Python, "3.5", "local:///pi.py");
    job.queue = Some("poc".into());
    let mut r = SubmissionRecord::new(id, "analytics", "spot", user, job);
    r.created_ms = at_ms;
    r.decision = Some(serde_json::json!({"rule": "default", "cluster": "analytics"}));
    r
}

/// Runs the suite against an empty `store`; panics with what failed.
pub async fn submission_store_suite(store: Arc<dyn SubmissionStore>) {
    round_trip(&*store).await;
    idempotency_keys(&*store).await;
    life_cycle(&*store).await;
    listings(&*store).await;
    concurrent_keys(store.clone()).await;
    audit_log(&*store).await;
    leases(store.clone()).await;
}

async fn leases(store: Arc<dyn SubmissionStore>) {
    // Earlier parts of the suite leave unfinished records with no owner: they are claimable.
    let leftover = store
        .claim_unfinished("sweeper", 0, 1, usize::MAX)
        .await
        .unwrap();
    assert!(
        leftover
            .iter()
            .all(|r| r.owner.as_deref() == Some("sweeper")),
        "{leftover:?}"
    );
    for r in &leftover {
        store
            .set_rejected(&r.id, "cleared for the lease test")
            .await
            .unwrap();
    }
    let mut held = record("le-1", "alice", "pi", 9_000);
    held.owner = Some("replica-a".into());
    held.lease_until_ms = Some(10_000);
    store.insert(&held).await.unwrap();
    let mut free = record("le-2", "alice", "pi", 9_001);
    free.owner = None;
    store.insert(&free).await.unwrap();
    store
        .insert(&record("le-3", "alice", "pi", 9_002))
        .await
        .unwrap();
    store
        .set_rejected("le-3", "finished: never claimed")
        .await
        .unwrap();

    let ids = |v: &[SubmissionRecord]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    // At 9,500 replica-a's lease holds: only the record nobody holds is taken.
    let taken = store
        .claim_unfinished("replica-b", 9_500, 12_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["le-2"]);
    assert_eq!(taken[0].owner.as_deref(), Some("replica-b"));
    assert_eq!(taken[0].lease_until_ms, Some(12_000));
    // replica-a renews; at 11,000 its lease (now 13,000) still holds.
    assert_eq!(store.renew_leases("replica-a", 13_000).await.unwrap(), 1);
    assert!(
        store
            .claim_unfinished("replica-b", 11_000, 14_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // replica-a dies: at 13,500 its record goes to replica-b, oldest first, with le-2, whose
    // lease replica-b let run out.
    let taken = store
        .claim_unfinished("replica-b", 13_500, 16_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["le-1", "le-2"]);
    assert_eq!(
        store.renew_leases("replica-a", 20_000).await.unwrap(),
        0,
        "it holds nothing now"
    );
    assert_eq!(store.renew_leases("replica-b", 20_000).await.unwrap(), 2);
    // A clean stop gives leases up: they are taken at once, whatever the time.
    assert_eq!(store.release_leases("replica-b").await.unwrap(), 2);
    let taken = store
        .claim_unfinished("replica-c", 0, 30_000, 1)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["le-1"], "at most `limit`, oldest first");
    assert_eq!(
        store.get("le-1").await.unwrap().unwrap().owner.as_deref(),
        Some("replica-c")
    );
    // A finished record is given up with its application.
    store.set_rejected("le-2", "done").await.unwrap();
    assert_eq!(store.renew_leases("replica-b", 40_000).await.unwrap(), 0);

    // Claimers at once never take the same record.
    for i in 0..40 {
        store
            .insert(&record(&format!("lc-{i:02}"), "bob", "pi", 50_000 + i))
            .await
            .unwrap();
    }
    let claims = (0..4).map(|k| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_unfinished(&format!("racer-{k}"), 60_000, 90_000, 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|r| r.id));
            }
        })
    });
    let mut all = Vec::new();
    for c in claims {
        all.extend(c.await.unwrap());
    }
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a record was claimed twice");
    assert!(all.iter().filter(|id| id.starts_with("lc-")).count() == 40);
}

async fn audit_log(store: &dyn SubmissionStore) {
    assert_eq!(store.audit_log(10).await.unwrap(), []);
    let mut written = Vec::new();
    for i in 0..5 {
        let mut e = AuditEntry::new("submit", format!("user-{i}"), "accepted");
        e.at_ms = 1_000 + i;
        e.address = (i % 2 == 0).then(|| "10.0.0.7".to_owned());
        e.submission = Some(format!("analytics-{i:032x}"));
        e.queue = Some("poc".into());
        e.cluster = (i != 3).then(|| "analytics".to_owned());
        e.message = format!("entry {i}");
        store.append_audit(&e).await.unwrap();
        written.push(e);
    }
    // Written in the same millisecond, lines keep the order they were written in.
    let mut same = AuditEntry::new("delete", "zed", "denied");
    same.at_ms = 1_004;
    store.append_audit(&same).await.unwrap();
    written.push(same);
    assert_eq!(store.audit_log(100).await.unwrap(), written);
    assert_eq!(store.audit_log(2).await.unwrap(), written[4..]);
}

async fn round_trip(store: &dyn SubmissionStore) {
    let r = record("rt-1", "alice", "pi", 1_000);
    assert_eq!(store.insert(&r).await.unwrap(), None);
    assert_eq!(store.get("rt-1").await.unwrap().as_ref(), Some(&r));
    assert_eq!(store.get("rt-unknown").await.unwrap(), None);
    let events = store.events("rt-1").await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, "Routed");
    assert_eq!(events[0].at_ms, 1_000);
    assert!(events[0].message.contains("analytics"), "{events:?}");
}

async fn idempotency_keys(store: &dyn SubmissionStore) {
    let first = record("key-1", "alice", "pi", 2_000).with_dedupe("alice", "k");
    assert_eq!(store.insert(&first).await.unwrap(), None);
    // The same user and key: nothing written, the first comes back.
    let again = SubmissionRecord {
        id: "key-2".into(),
        ..first.clone()
    };
    let existing = store.insert(&again).await.unwrap().expect("key taken");
    assert_eq!(existing.id, "key-1");
    assert_eq!(store.get("key-2").await.unwrap(), None);
    assert!(store.events("key-2").await.unwrap().is_empty());
    // Keys are per user.
    let bob = SubmissionRecord {
        id: "key-3".into(),
        user: "bob".into(),
        ..record("key-3", "bob", "pi", 2_001).with_dedupe("bob", "k")
    };
    assert_eq!(store.insert(&bob).await.unwrap(), None);
    // A rejected submission gives its key up and ends FAILED.
    store.set_rejected("key-1", "invalid image").await.unwrap();
    let rejected = store.get("key-1").await.unwrap().unwrap();
    assert_eq!(rejected.phase, Phase::Rejected);
    assert_eq!(rejected.dedupe, None);
    assert_eq!(rejected.native_state.as_deref(), Some("FAILED"));
    assert_eq!(rejected.message.as_deref(), Some("invalid image"));
    assert!(rejected.terminated_ms.is_some());
    assert_eq!(store.insert(&again).await.unwrap(), None);
    assert_eq!(
        store.get("key-2").await.unwrap().unwrap().phase,
        Phase::Queued
    );
}

async fn life_cycle(store: &dyn SubmissionStore) {
    store
        .insert(&record("lc-1", "carol", "etl", 3_000))
        .await
        .unwrap();
    store.set_created("lc-1", "backend-1").await.unwrap();
    // Only a queued submission moves to created.
    store.set_created("lc-1", "backend-2").await.unwrap();
    let r = store.get("lc-1").await.unwrap().unwrap();
    assert_eq!(r.phase, Phase::Created);
    assert_eq!(r.backend_id.as_deref(), Some("backend-1"));
    assert!(
        store
            .unfinished()
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == "lc-1")
    );

    let running = StateChange {
        native_state: "RUNNING",
        message: Some("driver up"),
        spark_app_id: Some("spark-app-1"),
        attempts: Some(1),
        started_ms: Some(3_100),
        terminated_ms: None,
    };
    store.set_state("lc-1", &running).await.unwrap();
    // Unknown fields keep what was known; the first start time stays.
    let finished = StateChange {
        native_state: "COMPLETED",
        started_ms: Some(9_999),
        terminated_ms: Some(3_500),
        ..StateChange::default()
    };
    store.set_state("lc-1", &finished).await.unwrap();
    let r = store.get("lc-1").await.unwrap().unwrap();
    assert_eq!(r.native_state.as_deref(), Some("COMPLETED"));
    assert_eq!(r.message, None);
    assert_eq!(r.spark_app_id.as_deref(), Some("spark-app-1"));
    assert_eq!(r.attempts, Some(1));
    assert_eq!(r.started_ms, Some(3_100));
    assert_eq!(r.terminated_ms, Some(3_500));
    assert_statuses_agree(store, &["lc-1"]).await;
    assert!(
        !store
            .unfinished()
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == "lc-1")
    );
    assert_eq!(
        store
            .by_spark_app_id("spark-app-1")
            .await
            .unwrap()
            .map(|r| r.id),
        Some("lc-1".to_owned())
    );

    store.set_deleted("lc-1", "carol").await.unwrap();
    let r = store.get("lc-1").await.unwrap().unwrap();
    assert_eq!(r.phase, Phase::Deleted);
    assert_eq!(r.deleted_by.as_deref(), Some("carol"));
    assert_eq!(
        r.terminated_ms,
        Some(3_500),
        "an end time already known stays"
    );
    assert_eq!(store.by_spark_app_id("spark-app-1").await.unwrap(), None);
    assert_statuses_agree(store, &["lc-1"]).await;
    let reasons: Vec<String> = store
        .events("lc-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "Routed",
            "Created",
            "Created",
            "RUNNING",
            "COMPLETED",
            "Deleted"
        ]
    );
}

async fn listings(store: &dyn SubmissionStore) {
    for (i, (id, user, app)) in [
        ("ls-3", "dave", "b"),
        ("ls-1", "dave", "a"),
        ("ls-2", "erin", "a"),
    ]
    .into_iter()
    .enumerate()
    {
        // Inserted out of order: listings are by creation time.
        let at = [4_300, 4_100, 4_200][i];
        store.insert(&record(id, user, app, at)).await.unwrap();
    }
    let ids = |v: Vec<SubmissionRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.by_user("dave").await.unwrap()), ["ls-1", "ls-3"]);
    assert!(store.by_user("nobody").await.unwrap().is_empty());
    assert_eq!(store.unfinished_count("dave").await.unwrap(), 2);
    store.set_rejected("ls-1", "no").await.unwrap();
    store.set_created("ls-3", "b-3").await.unwrap();
    assert_eq!(
        store.unfinished_count("dave").await.unwrap(),
        1,
        "a rejected submission has finished, a created one has not"
    );
    assert_eq!(store.unfinished_count("nobody").await.unwrap(), 0);
    let named_a: Vec<String> = ids(store.all(Some("a")).await.unwrap());
    assert_eq!(named_a, ["ls-1", "ls-2"]);
    let everything = store.all(None).await.unwrap();
    assert_eq!(everything.len() as u64, store.count().await.unwrap());
    assert!(
        everything
            .windows(2)
            .all(|w| (w[0].created_ms, &w[0].id) <= (w[1].created_ms, &w[1].id)),
        "all() is oldest first"
    );
    let many = store
        .get_many(&["ls-2", "ls-missing", "ls-1", "ls-2"])
        .await
        .unwrap();
    let got: Vec<Option<&str>> = many
        .iter()
        .map(|r| r.as_ref().map(|r| r.id.as_str()))
        .collect();
    assert_eq!(got, [Some("ls-2"), None, Some("ls-1"), Some("ls-2")]);
    assert!(store.get_many(&[]).await.unwrap().is_empty());
    assert_statuses_agree(store, &["ls-2", "ls-missing", "ls-1", "ls-2"]).await;
    // Longer lists too (a store may read those differently), with and without repeats.
    let distinct = ["ls-1", "m-1", "ls-2", "m-2", "m-3", "m-4"];
    assert_statuses_agree(store, &distinct).await;
    assert_statuses_agree(store, &["ls-2", "m-1", "ls-1", "ls-2", "m-2", "ls-1"]).await;
    assert!(store.statuses_many(&[]).await.unwrap().is_empty());
}

/// `statuses_many` answers what `get_many` does, field for field, in the order asked.
async fn assert_statuses_agree(store: &dyn SubmissionStore, ids: &[&str]) {
    let expected: Vec<Option<StoredStatus>> = store
        .get_many(ids)
        .await
        .unwrap()
        .iter()
        .map(|r| r.as_ref().map(StoredStatus::from))
        .collect();
    assert_eq!(
        store.statuses_many(ids).await.unwrap(),
        expected,
        "statuses_many({ids:?}) agrees with get_many()"
    );
}

async fn concurrent_keys(store: Arc<dyn SubmissionStore>) {
    // Twenty submits of one user and key at once: one is recorded, every caller gets it.
    let calls = (0..20).map(|i| {
        let store = store.clone();
        async move {
            let r = record(&format!("cc-{i}"), "frank", "pi", 5_000 + i)
                .with_dedupe("frank", "same-key");
            match store.insert(&r).await.unwrap() {
                None => r.id,
                Some(existing) => existing.id,
            }
        }
    });
    let winners = futures::future::join_all(calls).await;
    assert!(winners.iter().all(|w| *w == winners[0]), "{winners:?}");
    assert_eq!(store.by_user("frank").await.unwrap().len(), 1);
}
