//! Chaos: the `bpg` binary runs a 500-task pipeline (ten layers of fifty parallel Spark tasks,
//! `retries: 0` as in Airflow's default) through a connection whose backend fails a fifth of the
//! calls, and every task still succeeds with exactly one application each. Resilience comes from
//! the connection's default layers (retry, timeout), not from task retries.
//!
//! - `bpg+http://` against `MockGateway` (in this process; the CLI in another) injecting, on every
//!   route, 503 with and without `Retry-After`, dropped connections after the request was handled
//!   (a submit recorded, its answer lost) and 300 ms delays;
//! - `k8s://` against `MockApiServer` answering a fraction of calls with 500/503 and breaking
//!   watches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bpg_client::mock::{Fault, MockCluster, MockGateway};

const LAYERS: usize = 10;
const WIDTH: usize = 50;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bpg-cli lives in the workspace")
        .to_path_buf()
}

fn task_id(layer: usize, i: usize) -> String {
    format!("l{layer}_t{i}")
}

/// Ten layers of fifty Spark tasks; each task of a layer waits for two of the layer before.
fn pipeline(connection: &str) -> String {
    let mut yaml =
        "dag_id: chaos\ndefault_args: { retries: 0 }\nmax_active_tasks: 100\ntasks:\n".to_owned();
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            let id = task_id(layer, i);
            yaml.push_str(&format!(
                "  - id: {id}\n    kind: spark\n    connection: {connection}\n    \
                 application: {{ applicationName: \"{}\", sparkVersion: \"3.5\", type: Python, \
                 mainApplicationFile: \"local:///opt/jobs/{id}.py\" }}\n    \
                 labels: {{ sim/duration: 200ms, sim/log-lines: \"2\" }}\n",
                id.replace('_', "-")
            ));
            if layer > 0 {
                yaml.push_str(&format!(
                    "    depends_on: [{}, {}]\n",
                    task_id(layer - 1, i),
                    task_id(layer - 1, (i + 1) % WIDTH)
                ));
            }
        }
    }
    yaml
}

/// Runs `bpg run` on the chaos pipeline with `BPG_CONN_<name>` (and any extra variables) set;
/// returns the report's task states.
async fn run_pipeline(
    connection: &str,
    url: &str,
    env: Vec<(String, String)>,
) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("chaos.yaml");
    std::fs::write(&file, pipeline(connection)).expect("write the pipeline");
    let report = dir.path().join("report.json");
    let variable = format!("BPG_CONN_{}", connection.to_uppercase());
    let url = url.to_owned();
    let (file2, report2) = (file.clone(), report.clone());
    let out = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bpg"));
        command
            .args(["run", "--quiet", "--poll-interval", "100ms", "--json"])
            .arg(&report2)
            .arg(&file2)
            .current_dir(workspace_root());
        for (key, _) in std::env::vars() {
            if key.starts_with("BPG_CONN") || key == "RUST_LOG" || key == "KUBECONFIG" {
                command.env_remove(key);
            }
        }
        command.env(variable, url).envs(env);
        command.output().expect("the bpg binary runs")
    })
    .await
    .expect("the bpg process was waited for");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); exit {:?}, stderr:\n{stderr}", out.status));
    let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
    let states: BTreeMap<String, String> = report["tasks"]
        .as_object()
        .expect("tasks in the report")
        .iter()
        .map(|(id, task)| (id.clone(), task["state"].as_str().unwrap_or("?").to_owned()))
        .collect();
    let failed: Vec<String> = states
        .iter()
        .filter(|(_, s)| *s != "success")
        .map(|(id, s)| format!("{id}: {s} ({})", report["tasks"][id]["message"]))
        .take(10)
        .collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "exit {:?}; tasks not successful (first 10): {failed:#?}\nstderr (tail):\n{}",
        out.status,
        stderr.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_failing_a_fifth_of_all_calls_still_runs_every_task_once() {
    let gateway = MockGateway::builder()
        .cluster(MockCluster::new("analytics"))
        .max_log_hold(Duration::from_millis(300))
        .seed(12)
        .start()
        .await;
    // Four kinds of fault, 5.5% each, on every route: about a fifth of all calls fail.
    gateway.inject(Fault::status(503).retry_after(1).fraction(0.055));
    gateway.inject(Fault::status(503).fraction(0.055));
    gateway.inject(Fault::drop_connection().fraction(0.055));
    gateway.inject(Fault::delay(Duration::from_millis(300)).fraction(0.055));

    let url = gateway.uri().replace("http://", "bpg+http://airflow@");
    let states = run_pipeline("gw", &url, Vec::new()).await;
    assert_eq!(states.len(), LAYERS * WIDTH);

    // Exactly one application per task: no lost answer or retry made a second one.
    let mut per_app: BTreeMap<String, usize> = BTreeMap::new();
    for submission in gateway.submissions() {
        let name = submission.request["applicationName"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        *per_app.entry(name).or_default() += 1;
    }
    assert_eq!(per_app.len(), LAYERS * WIDTH, "one application per task");
    let twice: Vec<_> = per_app.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "applications submitted more than once: {twice:?}"
    );
    let faults = gateway
        .journal()
        .iter()
        .filter(|entry| entry.status.is_none_or(|s| s == 503))
        .count();
    assert!(faults > 200, "the gateway failed {faults} calls");
    println!(
        "gateway chaos: {faults} calls failed or lost, {} calls in all",
        gateway.journal().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_api_failing_a_fifth_of_all_calls_still_runs_every_task_once() {
    let server = bpg_backends::k8s::mock::MockApiServer::start_in("spark-jobs").await;
    server.chaos(0.2, 7);
    // Jobs of 200 simulated ms run about 400 ms: long enough that waiting for them watches.
    server.time_scale(Duration::from_secs(2));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("chaos")).expect("write the kubeconfig");

    let states = run_pipeline(
        "k8s",
        "k8s://chaos/spark-jobs",
        vec![("KUBECONFIG".to_owned(), kubeconfig.display().to_string())],
    )
    .await;
    assert_eq!(states.len(), LAYERS * WIDTH);
    // Exactly one SparkApplication per task.
    assert_eq!(server.created_count(), (LAYERS * WIDTH) as u64);
    assert_eq!(server.applications().len(), LAYERS * WIDTH);
    let (errors, cut) = server.chaos_injected();
    let all = server.received_requests().await.len();
    assert!(
        errors > 200 && cut > 0,
        "{errors} errors, {cut} watches cut"
    );
    println!("kubernetes chaos: {errors} errors and {cut} cut watches in {all} requests");
}
