//! Credentials never reach logs (at TRACE level, HTTP stack included), `Debug` or errors.
//!
//! Alone in its test binary: the subscriber is global, so every callsite sees it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bpg_client::{Auth, BpgClient, RetryPolicy};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ID: &str = "minikube-0123456789abcdef0123456789abcdef";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_logs_debug_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .mount(&server)
        .await;
    let retry = RetryPolicy::default()
        .max_retries(1)
        .backoff_between(Duration::from_millis(1), Duration::from_millis(1));
    let mut rendered = String::new();
    for auth in [Auth::basic("alice", "pa55-w0rd"), Auth::bearer("pa55-w0rd")] {
        let builder = BpgClient::builder(server.uri())
            .auth(auth)
            .retry(retry.clone());
        let _ = write!(rendered, "{builder:?} ");
        let client = builder.build().unwrap();
        let error = client.status(ID).await.unwrap_err();
        let _ = write!(rendered, "{error} {error:?} {client:?}");
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("BPG request"),
        "the client logged nothing: {logs}"
    );
    assert!(logs.contains("retrying"), "{logs}");
    // Neither the secret nor its Basic encoding ("alice:pa55-w0rd").
    for text in [&logs, &rendered] {
        assert!(!text.contains("pa55-w0rd"), "{text}");
        assert!(!text.contains("YWxpY2U6cGE1NS13MHJk"), "{text}");
    }
}
