//! Behaviour wiremock cannot show: a body that stalls mid-stream.

use std::time::Duration;

use bpg_client::{BpgClient, LogRequest, RetryPolicy};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ID: &str = "minikube-0123456789abcdef0123456789abcdef";

/// A server that answers one request with a chunked body of `first`, then stalls.
async fn stalling_server(first: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = format!("{:x}\r\n{first}\r\n", first.len());
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(chunk.as_bytes()).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_snapshot_ends_at_the_first_pause_of_a_live_stream() {
    let url = stalling_server("line 1\nline 2\npartial").await;
    let client = BpgClient::builder(url)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let request = LogRequest::submission(ID).idle_timeout(Duration::from_millis(200));
    let lines: Vec<String> = client
        .logs(&request)
        .await
        .unwrap()
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(lines, ["line 1", "line 2", "partial"]);
}

#[tokio::test]
async fn lines_of_a_live_stream_arrive_before_it_ends() {
    let url = stalling_server("first\n").await;
    let client = BpgClient::builder(url)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let mut stream = client.logs(&LogRequest::submission(ID)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert_eq!(first.unwrap().unwrap().text, "first");
    // Dropping the stream stops reading (the server would stall for 30 s).
    drop(stream);
}
