//! Bad input, with authentication on: malformed JSON and YAML, bodies of 10 and 17 MB, unknown
//! fields, invalid quantities, ids of every wrong shape, path traversal in upload names, header
//! and label injection. Each is a 4xx whose message says what was expected, nothing is stored,
//! nothing is written outside the upload directory, and nothing answers 5xx.

mod common;

use bpg_gateway::auth::{Access, hash_password};
use common::{fast_settings, http, serve, sim_builder};
use reqwest::Method;

const PASSWORD: &str = "bad-input-pw";

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// A piece of the message that says what was wrong.
    says: &'static str,
}

fn case(name: &'static str, method: Method, path: &str, status: u16, says: &'static str) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: None,
        body: Vec::new(),
        status,
        says,
    }
}

fn submit(name: &'static str, content_type: &'static str, body: &str, says: &'static str) -> Case {
    Case {
        content_type: Some(content_type),
        body: body.as_bytes().to_vec(),
        ..case(name, Method::POST, "/spark", 400, says)
    }
}

#[tokio::test]
async fn every_bad_request_is_a_clear_4xx_and_stores_nothing() {
    // The upload directory two levels down a directory of the test's own: an upload that
    // escaped it by `..` would land in that directory, which nothing else writes to.
    let outside = tempfile::tempdir().unwrap();
    let upload_dir = outside.path().join("state").join("up");
    let mut settings = fast_settings();
    settings.upload_dir = Some(upload_dir.clone());
    let access = Access::from_yaml(
        &format!(
            "users:\n  alice: {{password: \"{}\", impersonate: true, admin: true}}\n",
            hash_password(PASSWORD)
        ),
        None,
    )
    .unwrap();
    let gateway = sim_builder()
        .settings(settings)
        .access(access)
        .build()
        .await
        .unwrap();
    let served = serve(gateway.clone()).await;
    let good = r#"{"sparkVersion": "3.5", "mainApplicationFile": "local:///pi.py"}"#;
    let hex = "0123456789abcdef0123456789abcdef";
    let mut cases = vec![
        submit(
            "malformed JSON",
            "application/json",
            r#"{"sparkVersion": "3.5", "#,
            "request.json",
        ),
        submit(
            "malformed YAML",
            "application/yaml",
            "sparkVersion: [3.5\nmainApplicationFile: x\n",
            "request.yaml",
        ),
        submit(
            "JSON of the wrong type",
            "application/json",
            r#"["a", "list"]"#,
            "expected",
        ),
        submit(
            "a wrong field type",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "driver": {"cores": "two"}}"#,
            "cores",
        ),
        submit(
            "an unknown top-level field",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "bogus": 1}"#,
            "bogus",
        ),
        submit(
            "a memory without a unit",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "driver": {"memory": "512"}}"#,
            "memory",
        ),
        submit(
            "an unknown memory unit",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "executor": {"memory": "12parsecs"}}"#,
            "memory",
        ),
        submit(
            "negative executors",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "executor": {"instances": -3}}"#,
            "instances",
        ),
        submit("an empty body", "application/json", "", "empty"),
        submit("a body that is not UTF-8", "application/json", "", "UTF-8"),
        submit(
            "a suffix with a header in it",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "submissionIdSuffix": "a\r\nX-Injected: 1"}"#,
            "submissionIdSuffix",
        ),
        submit(
            "a suffix with a path in it",
            "application/json",
            r#"{"sparkVersion": "3.5", "mainApplicationFile": "x", "submissionIdSuffix": "../../etc"}"#,
            "submissionIdSuffix",
        ),
        Case {
            content_type: Some("application/json"),
            body: good.as_bytes().to_vec(),
            ..case(
                "a dagUser with a newline",
                Method::POST,
                "/spark?dagUser=eve%0D%0AX-Injected:%201",
                400,
                "dagUser",
            )
        },
        Case {
            content_type: Some("application/json"),
            body: vec![b' '; 10 << 20],
            ..case("10 MB of nothing", Method::POST, "/spark", 400, "empty")
        },
        Case {
            content_type: Some("application/json"),
            body: vec![b'x'; 17 << 20],
            ..case("17 MB, over the limit", Method::POST, "/spark", 413, "")
        },
        case(
            "an id without a cluster",
            Method::GET,
            "/spark/0123/status",
            400,
            "submission id",
        ),
        case(
            "an id of just a dash",
            Method::GET,
            "/spark/-/status",
            400,
            "submission id",
        ),
        case(
            "an id with short hex",
            Method::GET,
            &format!("/spark/analytics-{}/status", &hex[..31]),
            400,
            "submission id",
        ),
        case(
            "an id with non-hex",
            Method::GET,
            "/spark/analytics-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz/spec",
            400,
            "submission id",
        ),
        case(
            "an id with a traversal",
            Method::GET,
            "/spark/..%2F..%2Fetc%2Fpasswd/status",
            400,
            "submission id",
        ),
        case(
            "an id with a NUL",
            Method::GET,
            &format!("/spark/analytics-{hex}%00/driver"),
            400,
            "submission id",
        ),
        case(
            "a very long id",
            Method::GET,
            &format!("/spark/analytics-{}/status", "a".repeat(10_000)),
            400,
            "submission id",
        ),
        case(
            "an unknown id of the right shape",
            Method::GET,
            &format!("/spark/analytics-{hex}/status"),
            404,
            "not found",
        ),
        case(
            "a delete of an unknown id",
            Method::DELETE,
            &format!("/spark/analytics-{hex}"),
            404,
            "not found",
        ),
        case("a log of nothing", Method::GET, "/log", 400, "submissionId"),
        case(
            "a log of a malformed id",
            Method::GET,
            "/log?subId=nohyphen",
            400,
            "submission id",
        ),
        case(
            "a log query of the wrong type",
            Method::GET,
            "/admin/audit?limit=many",
            400,
            "invalid query",
        ),
        // The client resolves `..` away before sending: no such route.
        case(
            "an upload named ..",
            Method::POST,
            "/s3/..",
            404,
            "no route",
        ),
        case(
            "an upload with an encoded path",
            Method::POST,
            "/s3/..%2F..%2Fescaped.txt",
            400,
            "file name",
        ),
        case(
            "an upload with a backslash",
            Method::POST,
            "/s3/a%5C..%5Cb",
            400,
            "file name",
        ),
        case(
            "an upload into a parent folder",
            Method::POST,
            "/s3/ok.txt?folder=../../escaped",
            400,
            "folder",
        ),
        case(
            "an upload into an absolute folder",
            Method::POST,
            "/s3/ok.txt?folder=/etc/x/../..",
            400,
            "folder",
        ),
        Case {
            content_type: Some("application/json"),
            body: br#"{"submissionIds": "not-a-list"}"#.to_vec(),
            ..case(
                "batch status of the wrong type",
                Method::POST,
                "/spark/statuses",
                400,
                "submissionIds",
            )
        },
        Case {
            content_type: Some("application/json"),
            body: br#"{"submissionIds": [], "extra": true}"#.to_vec(),
            ..case(
                "batch status with an unknown field",
                Method::POST,
                "/spark/statuses",
                400,
                "extra",
            )
        },
        case("a wrong method", Method::PUT, "/spark", 405, "not served"),
        case(
            "an unknown route",
            Method::GET,
            "/spark/a/b/c/d",
            404,
            "no route",
        ),
    ];
    // Not UTF-8: invalid bytes.
    cases[9].body = vec![0xff, 0xfe, b'{'];
    let client = http();
    let base = served.base();
    let mut problems = Vec::new();
    for c in &cases {
        let mut rb = client
            .request(c.method.clone(), format!("{base}{}", c.path))
            .basic_auth("alice", Some(PASSWORD));
        if let Some(ct) = c.content_type {
            rb = rb.header("content-type", ct);
        }
        if !c.body.is_empty() {
            rb = rb.body(c.body.clone());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status >= 500 {
            problems.push(format!("{}: a 5xx ({status}): {text}", c.name));
        } else if status != c.status || !text.to_lowercase().contains(&c.says.to_lowercase()) {
            problems.push(format!(
                "{}: expected {} saying {:?}, got {status}: {}",
                c.name,
                c.status,
                c.says,
                &text[..text.len().min(300)]
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        gateway.store().count().await.unwrap(),
        0,
        "nothing was stored"
    );
    assert!(
        walk(outside.path()).is_empty(),
        "nothing was written, in the upload directory or beside it: {:?}",
        walk(outside.path())
    );
    served.stop().await;
}

/// Every file below `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
