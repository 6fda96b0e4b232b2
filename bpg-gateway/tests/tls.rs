//! HTTPS with rustls from PEM files, a certificate reloaded in place, files that cannot be used
//! named in the error, and a slow client cut off at the header read timeout.

mod common;

use std::path::Path;
use std::time::Duration;

use bpg_gateway::{Gateway, Tls, TlsFiles};
use common::{fast_settings, sim_builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "gateway.test";

/// A self-signed certificate for [`HOST`], written as `name.crt` and `name.key`; its PEM.
fn certificate(dir: &Path, name: &str) -> (TlsFiles, String) {
    let generated = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    let pem = generated.cert.pem();
    std::fs::write(&files.cert, &pem).unwrap();
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
    (files, pem)
}

fn client_trusting(pem: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn gateway() -> Gateway {
    sim_builder().build().await.unwrap()
}

#[tokio::test]
async fn https_is_served_and_a_reloaded_certificate_is_used_for_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (files, first_pem) = certificate(dir.path(), "gateway");
    let tls = Tls::from_files(files.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(
        gateway()
            .await
            .serve_tls(listener, tls.clone(), async move {
                let _ = stopped.await;
            }),
    );
    let url = format!("https://{HOST}:{}/skatev2/spark/mySubmissions", addr.port());

    let first = client_trusting(&first_pem, addr);
    let r = first
        .get(&url)
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthcheck", addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A new certificate in the same files: reloaded, new connections present it.
    let (_, second_pem) = {
        let generated = certificate(dir.path(), "next");
        std::fs::copy(&generated.0.cert, &files.cert).unwrap();
        std::fs::copy(&generated.0.key, &files.key).unwrap();
        generated
    };
    tls.reload().unwrap();
    let second = client_trusting(&second_pem, addr);
    let r = second
        .get(&url)
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A new client (no TLS session to resume) trusting only the old certificate is refused.
    assert!(
        client_trusting(&first_pem, addr)
            .get(&url)
            .send()
            .await
            .is_err(),
        "the old certificate is no longer presented"
    );

    // A reload that fails keeps the certificate in place.
    std::fs::write(&files.key, "not a key").unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("gateway.key"), "{err}");
    let r = second
        .get(&url)
        .header("User-Account", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

#[test]
fn files_that_cannot_be_used_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = certificate(dir.path(), "a");
    let (other, _) = certificate(dir.path(), "b");
    let missing = Tls::from_files(TlsFiles {
        cert: dir.path().join("missing.crt"),
        key: files.key.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(missing.contains("missing.crt"), "{missing}");
    std::fs::write(dir.path().join("empty.crt"), "").unwrap();
    let empty = Tls::from_files(TlsFiles {
        cert: dir.path().join("empty.crt"),
        key: files.key.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(
        empty.contains("empty.crt") && empty.contains("no certificate"),
        "{empty}"
    );
    let mismatched = Tls::from_files(TlsFiles {
        cert: files.cert.clone(),
        key: other.key.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(mismatched.contains("does not fit"), "{mismatched}");
    let key_text = std::fs::read_to_string(&other.key).unwrap();
    let body = key_text.lines().nth(1).unwrap();
    assert!(!mismatched.contains(body), "the key is never shown");
}

#[tokio::test(start_paused = true)]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    let mut settings = fast_settings();
    settings.limits.header_read_timeout = Duration::from_secs(5);
    let gateway = sim_builder().settings(settings).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed before the timeout"
    );
    // A client that sends its headers in time is answered.
    let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
    quick
        .write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    quick.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
