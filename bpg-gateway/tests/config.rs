//! Gateway configurations users already have: BPG's example config and the AWS sample's Helm
//! values (`plainConfig:`) load, with every unsupported key named at its line; ours loads from
//! files; bad input is located.

use std::path::{Path, PathBuf};

use bpg_gateway::config::{ConfigKind, GatewayConfig};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn bpgs_example_config_loads_with_its_unsupported_keys_named() {
    // The copy of BPG's helm/.../config.example.yaml kept with the router's tests.
    let path = workspace().join("bpg-router/tests/data/bpg-config.example.yaml");
    let config = GatewayConfig::from_file(&path).unwrap();
    assert_eq!(config.kind, ConfigKind::Bpg);
    let clusters: Vec<&str> = config.rules.cluster_ids().collect();
    assert_eq!(clusters, ["cluster-id-1", "cluster-id-2"]);
    let warnings: Vec<String> = config.warnings.warnings().map(|w| w.to_string()).collect();
    let s3 = warnings
        .iter()
        .find(|w| w.contains("s3Bucket"))
        .expect("s3Bucket reported");
    assert!(s3.contains("bpg-config.example.yaml:183:"), "{s3}");
    assert!(
        warnings.iter().any(|w| w.contains("dbStorageSOPS")),
        "{warnings:#?}"
    );
    assert!(!config.settings.default_spark_conf.is_empty());
    assert!(!config.settings.spark_images.is_empty());
    // Its tokens are secrets: never in Debug output.
    let text = std::fs::read_to_string(&path).unwrap();
    let debug = format!("{config:?}");
    for line in text.lines().filter(|l| l.contains("userTokenSOPS:")) {
        let token = line.split_once(':').unwrap().1.trim();
        if token.len() > 4 {
            assert!(!debug.contains(token));
        }
    }
}

#[test]
fn the_aws_samples_helm_values_load_and_its_empty_clusters_are_reported() {
    let dir = std::env::var_os("BPG_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/corpus"));
    let path = dir.join("bpg-samples/values.template.yaml");
    if !path.exists() {
        let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !under_ci,
            "the corpus is missing under CI: {}",
            path.display()
        );
        eprintln!(
            "skipped: the corpus is not at {} (set BPG_CORPUS_DIR)",
            path.display()
        );
        return;
    }
    let config = GatewayConfig::from_file(&path).unwrap();
    assert_eq!(config.kind, ConfigKind::Bpg);
    let clusters: Vec<&str> = config.rules.cluster_ids().collect();
    assert_eq!(clusters, ["spark-cluster-a", "spark-cluster-b"]);
    let warnings: Vec<String> = config.warnings.warnings().map(|w| w.to_string()).collect();
    // Its masterUrls are empty: the gateway starts, and says jobs for them wait.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spark-cluster-a has neither masterUrl nor connection")),
        "{warnings:#?}"
    );
    let db = warnings
        .iter()
        .find(|w| w.contains("dbStorageSOPS"))
        .unwrap();
    assert!(db.contains("values.template.yaml:85:"), "{db}");
    // Helm's own keys (image, replicas, ingress) are the chart's, not reported.
    assert!(
        !warnings.iter().any(|w| w.contains("replicas")),
        "{warnings:#?}"
    );
    assert_eq!(config.settings.spark_images[0].version, "3.5.0");
    assert_eq!(
        config.settings.clusters["spark-cluster-a"].spark_conf["spark.kubernetes.allocation.batch.size"],
        "2000"
    );
}

#[test]
fn our_config_loads_from_its_files_and_errors_are_located() {
    let path = workspace().join("examples/gateway/healthtech.yaml");
    let config = GatewayConfig::from_file(&path).unwrap();
    assert_eq!(config.kind, ConfigKind::Gateway);
    assert_eq!(
        config.rules.cluster_ids().collect::<Vec<_>>(),
        ["analytics", "datascience"]
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("gateway.yaml");
    std::fs::write(&bad, "gateway:\n  poll_interval: soon\n  colour: blue\nrules: missing.yaml\nconnections: missing.yaml\n").unwrap();
    let err = GatewayConfig::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("gateway.yaml:3:"), "{err}");
    assert!(err.contains("colour"), "{err}");

    std::fs::write(
        &bad,
        "gateway:\n  poll_interval: soon\nrules: missing.yaml\nconnections: missing.yaml\n",
    )
    .unwrap();
    let err = GatewayConfig::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("gateway.yaml:2:") && err.contains("poll_interval"),
        "{err}"
    );
    assert!(err.contains("missing.yaml"), "{err}");

    std::fs::write(&bad, "sparkClusters:\n  - {weight: 1}\n").unwrap();
    let err = GatewayConfig::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("needs an id"), "{err}");

    std::fs::write(&bad, "dag_id: x\n").unwrap();
    let err = GatewayConfig::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("not a gateway configuration"), "{err}");
}
