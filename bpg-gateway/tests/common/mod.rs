//! Starting a gateway for tests: on a loopback port, over simulated clusters or given backends.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bpg_core::{Backend, SimBackend};
use bpg_gateway::{Gateway, GatewayBuilder, Settings};
use bpg_router::RoutingRules;

/// Two clusters, `analytics` and `datascience-cluster` (PHI-compliant; its id has `-` in it).
pub const RULES: &str = r#"
clusters:
  - {id: analytics, connection: analytics, tags: {capacity: spot}, spark_versions: ["3.4", "3.5"]}
  - {id: datascience-cluster, connection: datascience, tags: {phi-compliant: "true"}, spark_versions: ["3.4", "3.5"]}
constraints:
  - name: phi-isolation
    when: {labels: {data-classification: phi}}
    require_tags: {phi-compliant: "true"}
rules:
  - name: phi-to-compliant
    match: {labels: {data-classification: phi}}
    route: {clusters: [datascience-cluster]}
default: {clusters: [analytics]}
"#;

pub fn rules() -> RoutingRules {
    RoutingRules::from_yaml(RULES, None).unwrap()
}

pub fn fast_settings() -> Settings {
    let mut s = Settings::default();
    s.poll_interval = Duration::from_millis(50);
    s.submit_wait = Duration::from_secs(5);
    s
}

pub fn sim(name: &str) -> Arc<dyn Backend> {
    Arc::new(SimBackend::builder().name(name).build())
}

/// A builder over the test rules with two simulated clusters.
pub fn sim_builder() -> GatewayBuilder {
    Gateway::builder(rules())
        .backend("analytics", sim("analytics"))
        .backend("datascience", sim("datascience"))
        .settings(fast_settings())
}

/// A served gateway and its base URL (`http://127.0.0.1:PORT`).
pub struct Served {
    pub gateway: Gateway,
    pub root: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// `root` + `/skatev2`.
    pub fn base(&self) -> String {
        format!("{}/skatev2", self.root)
    }

    /// Stops it and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

pub async fn serve(gateway: Gateway) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(gateway.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    Served {
        gateway,
        root,
        stop: Some(tx),
        handle: Some(handle),
    }
}

pub async fn serve_sim() -> Served {
    serve(sim_builder().build().await.unwrap()).await
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
