//! Authentication and authorization: every endpoint × every kind of caller, from one table;
//! trusted proxies, failed sign-in and request limits, per-user in-flight and log stream limits,
//! impersonation, reloading the access file, and the audit log.

mod common;

use std::time::Duration;

use bpg_gateway::auth::{Access, hash_password, new_token};
use bpg_gateway::{Gateway, Settings};
use common::{fast_settings, http, serve, sim_builder};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ALICE_PW: &str = "alice-correct-horse";
const BOB_PW: &str = "bob-battery-staple";
const DAVE_PW: &str = "dave-tr0ub4dor";
const OPS_PW: &str = "ops-admin-pw";

/// Users: alice (password and token; the only one allowed on queue `restricted`), bob, dave,
/// ops (admin), airflow (impersonates, by token).
struct Fixture {
    access_yaml: String,
    alice_token: String,
    airflow_token: String,
}

fn fixture(extra: &str) -> Fixture {
    let (alice_token, alice_hash) = new_token();
    let (airflow_token, airflow_hash) = new_token();
    let access_yaml = format!(
        r#"
users:
  alice: {{password: "{}", tokens: ["{alice_hash}"], groups: [analytics]}}
  bob: {{password: "{}"}}
  dave: {{password: "{}"}}
  ops: {{password: "{}", admin: true}}
  airflow: {{tokens: ["{airflow_hash}"], impersonate: true}}
queues:
  restricted: {{users: [alice]}}
{extra}
"#,
        hash_password(ALICE_PW),
        hash_password(BOB_PW),
        hash_password(DAVE_PW),
        hash_password(OPS_PW),
    );
    Fixture {
        access_yaml,
        alice_token,
        airflow_token,
    }
}

async fn gateway(access: &str, settings: Settings) -> Gateway {
    sim_builder()
        .settings(settings)
        .access(Access::from_yaml(access, None).unwrap())
        .build()
        .await
        .unwrap()
}

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    WrongPassword,
    /// alice on her own submission (Basic).
    Owner,
    /// alice on her own submission (bearer token).
    OwnerByToken,
    /// bob on alice's submission.
    Other,
    /// dave, not allowed on queue `restricted`.
    NotOnQueue,
    Admin,
}

const EVERYONE: [Who; 7] = [
    Who::Nobody,
    Who::WrongPassword,
    Who::Owner,
    Who::OwnerByToken,
    Who::Other,
    Who::NotOnQueue,
    Who::Admin,
];

fn with(rb: reqwest::RequestBuilder, who: Who, f: &Fixture) -> reqwest::RequestBuilder {
    match who {
        Who::Nobody => rb,
        Who::WrongPassword => rb.basic_auth("alice", Some("not-her-password")),
        Who::Owner => rb.basic_auth("alice", Some(ALICE_PW)),
        Who::OwnerByToken => rb.bearer_auth(&f.alice_token),
        Who::Other => rb.basic_auth("bob", Some(BOB_PW)),
        Who::NotOnQueue => rb.basic_auth("dave", Some(DAVE_PW)),
        Who::Admin => rb.basic_auth("ops", Some(OPS_PW)),
    }
}

fn job(queue: &str, duration: &str) -> String {
    json!({
        "sparkVersion": "3.5",
        "mainApplicationFile": "local:///pi.py",
        "queue": queue,
        "driver": {"labels": {"sim/duration": duration}},
    })
    .to_string()
}

/// One row: an endpoint; `target` is a submission of alice's in queue `restricted`.
struct Row {
    name: &'static str,
    method: Method,
    path: fn(&str) -> String,
    body: fn(Who) -> Option<String>,
    /// Expected status per caller, in the order of [`EVERYONE`].
    expect: [u16; 7],
    /// Destructive: the row runs on a fresh submission for each caller.
    fresh: bool,
}

fn no_body(_: Who) -> Option<String> {
    None
}

#[tokio::test]
async fn every_endpoint_answers_every_caller_as_the_table_says() {
    let f = fixture("");
    let uploads = tempfile::tempdir().unwrap();
    let mut settings = fast_settings();
    settings.upload_dir = Some(uploads.path().to_path_buf());
    // The wrong-password column fails once per row; the limit is tested on its own below.
    settings.limits.failed_sign_ins_per_minute = 1_000;
    let served = serve(gateway(&f.access_yaml, settings).await).await;
    let base = served.base();
    let client = http();

    let submit_as_alice = || async {
        let r = with(client.post(format!("{base}/spark")), Who::Owner, &f)
            .body(job("restricted", "100ms"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["submissionId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let target = submit_as_alice().await;
    // Wait for it to finish, so its log is whole and reads do not follow.
    for _ in 0..100 {
        let s: Value = with(
            client.get(format!("{base}/spark/{target}/status")),
            Who::Owner,
            &f,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if s["applicationState"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    use Who::*;
    const READ: [u16; 7] = [401, 401, 200, 200, 403, 403, 200];
    const ADMIN_ONLY: [u16; 7] = [401, 401, 403, 403, 403, 403, 200];
    const ANY_USER: [u16; 7] = [401, 401, 200, 200, 200, 200, 200];
    const PUBLIC: [u16; 7] = [200; 7];
    let rows = [
        Row {
            name: "submit to a restricted queue",
            method: Method::POST,
            path: |_| "/spark".into(),
            body: |who| {
                // bob submits to an open queue (his own submission); the rest to `restricted`.
                Some(job(
                    if who == Other { "open" } else { "restricted" },
                    "50ms",
                ))
            },
            expect: [401, 401, 200, 200, 200, 403, 200],
            fresh: false,
        },
        Row {
            name: "status",
            method: Method::GET,
            path: |id| format!("/spark/{id}/status"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "spec",
            method: Method::GET,
            path: |id| format!("/spark/{id}/spec"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "driver",
            method: Method::GET,
            path: |id| format!("/spark/{id}/driver"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "describe",
            method: Method::GET,
            path: |id| format!("/spark/{id}/describe"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "explain",
            method: Method::GET,
            path: |id| format!("/spark/{id}/explain"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "log",
            method: Method::GET,
            path: |id| format!("/log?subId={id}"),
            body: no_body,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "batch status (the id's own answer)",
            method: Method::POST,
            path: |_| "/spark/statuses".into(),
            body: |_| None,
            expect: READ,
            fresh: false,
        },
        Row {
            name: "delete",
            method: Method::DELETE,
            path: |id| format!("/spark/{id}"),
            body: no_body,
            expect: READ,
            fresh: true,
        },
        Row {
            name: "mySubmissions",
            method: Method::GET,
            path: |_| "/spark/mySubmissions".into(),
            body: no_body,
            expect: ANY_USER,
            fresh: false,
        },
        Row {
            name: "admin submissions",
            method: Method::GET,
            path: |_| "/admin/submissions".into(),
            body: no_body,
            expect: ADMIN_ONLY,
            fresh: false,
        },
        Row {
            name: "admin audit",
            method: Method::GET,
            path: |_| "/admin/audit".into(),
            body: no_body,
            expect: ADMIN_ONLY,
            fresh: false,
        },
        Row {
            name: "upload",
            method: Method::POST,
            path: |_| "/s3/deps.zip?folder=matrix".into(),
            body: |_| Some("zip bytes".into()),
            expect: ANY_USER,
            fresh: false,
        },
        Row {
            name: "healthcheck status",
            method: Method::GET,
            path: |_| "/healthcheck/status".into(),
            body: no_body,
            expect: ANY_USER,
            fresh: false,
        },
        Row {
            name: "version",
            method: Method::GET,
            path: |_| "/admin/version".into(),
            body: no_body,
            expect: PUBLIC,
            fresh: false,
        },
        Row {
            name: "openapi",
            method: Method::GET,
            path: |_| "/openapi.json".into(),
            body: no_body,
            expect: PUBLIC,
            fresh: false,
        },
    ];

    let mut mismatches = Vec::new();
    let mut unexpected_allowances = 0;
    let mut cells = 0;
    for row in &rows {
        for (who, expected) in EVERYONE.iter().zip(row.expect) {
            let id = if row.fresh {
                submit_as_alice().await
            } else {
                target.clone()
            };
            let url = format!("{base}{}", (row.path)(&id));
            let mut rb = with(client.request(row.method.clone(), &url), *who, &f);
            rb = match (row.name.starts_with("batch"), (row.body)(*who)) {
                (true, _) => rb.json(&json!({"submissionIds": [id]})),
                (false, Some(b)) => rb.body(b),
                (false, None) => rb,
            };
            let response = rb.send().await.unwrap();
            let mut status = response.status().as_u16();
            let text = response.text().await.unwrap();
            if row.name.starts_with("batch") && status == 200 {
                // The request succeeds; each id answers for itself.
                let body: Value = serde_json::from_str(&text).unwrap();
                if let Some(code) = body["statuses"][&id]["error"]["code"].as_u64() {
                    status = code as u16;
                }
            }
            if row.name == "mySubmissions" && status == 200 {
                let listed = text.contains(&target);
                let owns = matches!(who, Owner | OwnerByToken);
                assert_eq!(listed, owns, "{who:?}'s mySubmissions: {text}");
            }
            cells += 1;
            if status != expected {
                mismatches.push(format!(
                    "{} as {who:?}: expected {expected}, got {status}: {text}",
                    row.name
                ));
                if (200..300).contains(&status) && !(200..300).contains(&expected) {
                    unexpected_allowances += 1;
                }
            }
            match expected {
                401 => {
                    assert!(text.contains(r#""code":"401""#), "BPG's 401 body: {text}");
                    assert!(
                        !text.contains("password"),
                        "no hint which part was wrong: {text}"
                    );
                }
                403 => assert!(text.contains("may not"), "a 403 says why: {text}"),
                _ => {}
            }
        }
    }
    assert_eq!(cells, rows.len() * EVERYONE.len());
    assert_eq!(unexpected_allowances, 0, "{mismatches:#?}");
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // The audit log has the submits, deletes and denials, with who and from where.
    let audit = with(
        client.get(format!("{base}/admin/audit?limit=10000")),
        Admin,
        &f,
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |action: &str, user: &str, outcome: &str| {
        lines.iter().any(|l| {
            l["action"] == action
                && l["user"] == user
                && l["outcome"] == outcome
                && l["address"] == "127.0.0.1"
        })
    };
    assert!(has("submit", "alice", "accepted"), "{audit}");
    assert!(has("submit", "dave", "denied"), "{audit}");
    assert!(has("read", "bob", "denied"), "{audit}");
    assert!(has("delete", "alice", "deleted"), "{audit}");
    assert!(has("delete", "bob", "denied"), "{audit}");
    assert!(has("sign-in", "alice", "unauthenticated"), "{audit}");
    assert!(has("list every submission", "alice", "denied"), "{audit}");
    let submitted = lines
        .iter()
        .find(|l| l["action"] == "submit" && l["outcome"] == "accepted")
        .unwrap();
    assert_eq!(submitted["queue"], "restricted");
    assert_eq!(submitted["cluster"], "analytics");
    for secret in [
        ALICE_PW,
        BOB_PW,
        DAVE_PW,
        OPS_PW,
        "not-her-password",
        &f.alice_token,
    ] {
        assert!(!audit.contains(secret), "the audit log holds no secret");
    }
    served.stop().await;
}

#[tokio::test]
async fn user_account_is_honoured_only_from_a_trusted_proxy() {
    let trusting = fixture("trusted_proxies: [127.0.0.0/8]");
    let served = serve(gateway(&trusting.access_yaml, fast_settings()).await).await;
    let r = http()
        .get(format!("{}/spark/mySubmissions", served.base()))
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "loopback is a trusted proxy here");
    served.stop().await;

    let untrusting = fixture("trusted_proxies: [10.0.0.0/8]");
    let served = serve(gateway(&untrusting.access_yaml, fast_settings()).await).await;
    let url = format!("{}/spark/mySubmissions", served.base());
    let r = http()
        .get(&url)
        .header("User-Account", "ops")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "User-Account from an untrusted address is ignored"
    );
    let r = http()
        .get(&url)
        .header("User-Account", "ops")
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the caller is who their credentials say");
    served.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_limited_before_any_password_is_checked() {
    let f = fixture("");
    let mut settings = fast_settings();
    settings.limits.failed_sign_ins_per_minute = 3;
    let served = serve(gateway(&f.access_yaml, settings).await).await;
    let url = format!("{}/spark/mySubmissions", served.base());
    for _ in 0..3 {
        let r = http()
            .get(&url)
            .basic_auth("bob", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http()
        .get(&url)
        .basic_auth("bob", Some(BOB_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let r = http()
        .get(&url)
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "another user from the same address is under its own limit"
    );
    // Unknown users count against the address: 5 × 3 failures from one address in all.
    for i in 0..12 {
        let r = http()
            .get(&url)
            .basic_auth(format!("nobody-{i}"), Some("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = http()
        .get(&url)
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address waits now"
    );
    served.stop().await;
}

#[tokio::test]
async fn per_user_limits_answer_429_with_retry_after() {
    let f = fixture("");
    let mut settings = fast_settings();
    settings.limits.max_in_flight_per_user = Some(1);
    settings.limits.max_log_streams = 1;
    let served = serve(gateway(&f.access_yaml, settings).await).await;
    let base = served.base();
    let submit = |who: Who| {
        with(http().post(format!("{base}/spark")), who, &f)
            .body(job("open", "1h"))
            .send()
    };
    let first = submit(Who::Owner).await.unwrap();
    assert_eq!(first.status(), 200);
    let id = first.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = submit(Who::Owner).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers().contains_key("retry-after"));
    let text = second.text().await.unwrap();
    assert!(
        text.contains("alice has 1 submissions not finished"),
        "{text}"
    );
    assert_eq!(
        submit(Who::Other).await.unwrap().status(),
        200,
        "bob has his own count"
    );

    // One log stream at a time: alice follows her running job; a second follower waits.
    let follower = with(http().get(format!("{base}/log?subId={id}")), Who::Owner, &f)
        .send()
        .await
        .unwrap();
    assert_eq!(follower.status(), 200);
    let second = with(http().get(format!("{base}/log?subId={id}")), Who::Admin, &f)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        second
            .text()
            .await
            .unwrap()
            .contains("log streams are open")
    );
    drop(follower);
    // Deleting the job finishes it: alice has nothing in flight, and may submit again.
    let deleted = with(http().delete(format!("{base}/spark/{id}")), Who::Owner, &f)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        submit(Who::Owner).await.unwrap().status(),
        200,
        "a slot is free again"
    );
    served.stop().await;

    // Requests per second per user: a burst of twice the rate, then 429s.
    let mut settings = fast_settings();
    settings.limits.requests_per_second = Some(2);
    let served = serve(gateway(&f.access_yaml, settings).await).await;
    let url = format!("{}/spark/mySubmissions", served.base());
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = with(http().get(&url), Who::Owner, &f).send().await.unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(&codes[..4], [200; 4], "{codes:?}");
    assert!(codes[4..].contains(&429), "{codes:?}");
    let r = with(http().get(&url), Who::Other, &f).send().await.unwrap();
    assert_eq!(r.status(), 200, "bob has his own bucket");
    served.stop().await;
}

#[tokio::test]
async fn an_impersonating_account_submits_for_a_user_who_then_owns_it() {
    let f = fixture("");
    let served = serve(gateway(&f.access_yaml, fast_settings()).await).await;
    let base = served.base();
    let r = http()
        .post(format!("{base}/spark?dagUser=alice"))
        .bearer_auth(&f.airflow_token)
        .body(job("restricted", "1s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "alice may use queue restricted");
    let id = r.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = |who: Who| with(http().get(format!("{base}/spark/{id}/status")), who, &f).send();
    assert_eq!(
        status(Who::Owner).await.unwrap().status(),
        200,
        "alice owns it"
    );
    assert_eq!(status(Who::Other).await.unwrap().status(), 403);
    let airflow = http()
        .get(format!("{base}/spark/{id}/status"))
        .bearer_auth(&f.airflow_token)
        .send()
        .await
        .unwrap();
    assert_eq!(airflow.status(), 200, "the submitting account follows it");
    // Impersonating bob on a queue bob may not use is refused; others' dagUser is ignored.
    let r = http()
        .post(format!("{base}/spark?dagUser=bob"))
        .bearer_auth(&f.airflow_token)
        .body(job("restricted", "1s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("bob may not submit to queue restricted")
    );
    let r = with(
        http().post(format!("{base}/spark?dagUser=alice")),
        Who::Other,
        &f,
    )
    .body(job("open", "1s"))
    .send()
    .await
    .unwrap();
    let id = r.json::<Value>().await.unwrap()["submissionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let spec: Value = with(
        http().get(format!("{base}/spark/{id}/spec")),
        Who::Other,
        &f,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        spec["proxyUser"], "bob",
        "bob may not impersonate: it runs as bob"
    );
    served.stop().await;
}

#[tokio::test]
async fn a_reloaded_access_file_takes_effect_at_once() {
    let f = fixture("");
    let gateway = gateway(&f.access_yaml, fast_settings()).await;
    let served = serve(gateway.clone()).await;
    let url = format!("{}/spark/mySubmissions", served.base());
    let as_bob = |pw: &str| http().get(&url).basic_auth("bob", Some(pw)).send();
    assert_eq!(as_bob(BOB_PW).await.unwrap().status(), 200);
    let changed = format!(
        "users:\n  bob: {{password: \"{}\"}}\n",
        hash_password("bob-new-password")
    );
    gateway.reload_access(Access::from_yaml(&changed, None).unwrap());
    assert_eq!(
        as_bob(BOB_PW).await.unwrap().status(),
        401,
        "the old password, though verified a moment ago, no longer works"
    );
    assert_eq!(as_bob("bob-new-password").await.unwrap().status(), 200);
    let alice = http()
        .get(&url)
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(alice.status(), 401, "alice is no longer in the file");
    served.stop().await;
}
