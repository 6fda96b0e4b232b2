//! Bad rules files are refused with errors that name the file, the line and the field.

use std::path::Path;

use bpg_router::{RoutingRules, RulesConfig};

fn errors(yaml: &str) -> Vec<String> {
    RoutingRules::from_yaml(yaml, Some(Path::new("rules.yaml")))
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const CLUSTERS: &str = r#"
clusters:
  - id: phi-east
    connection: k8s_phi
    tags: {phi-compliant: "true"}
  - id: spot-1
    connection: emr_spot
    tags: {capacity: spot}
"#;

#[test]
fn unknown_fields_are_errors_with_line_and_field() {
    let yaml = format!(
        "{CLUSTERS}rules:\n  - name: r\n    route: {{clusters: [spot-1]}}\n    priority: 3\n"
    );
    assert_eq!(
        errors(&yaml),
        [
            "rules.yaml:12:5: error: priority: unknown field `priority`, expected one of name, match, route, deny"
        ]
    );
    let yaml = "clusters:\n  - id: a\n    conection: x\n";
    let e = errors(yaml);
    assert!(
        e[0].starts_with("rules.yaml:3:5: error: conection: unknown field `conection`"),
        "{e:?}"
    );
}

#[test]
fn wrong_types_name_the_field() {
    let yaml = "clusters:\n  - id: a\n    connection: x\n    weight: heavy\n";
    let e = errors(yaml);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("rules.yaml:4:13: error: weight: "),
        "{e:?}"
    );
    let yaml = "clusters:\n  - id: a\n    connection: x\nrules:\n  - name: r\n    match: {resources: {min_memory: lots}}\n    deny: no\n";
    let e = errors(yaml);
    assert!(e[0].starts_with("rules.yaml:6:"), "{e:?}");
    assert!(e[0].contains("match"), "{e:?}");
}

#[test]
fn malformed_yaml_is_located() {
    let e = errors("clusters: [\n");
    assert!(e[0].starts_with("rules.yaml:1:"), "{e:?}");
}

#[test]
fn references_and_names_are_validated_with_locations() {
    let yaml = format!(
        "{CLUSTERS}  - id: Spot_2\n    connection: ''\nrules:\n  - name: a\n    route:\n      clusters: [spot-1, nowhere, spot-1]\n  - name: a\n    deny: ''\n  - name: both\n    deny: x\n    route: {{clusters: [spot-1]}}\n"
    );
    let e = errors(&yaml);
    assert_eq!(
        e,
        [
            "rules.yaml:9:5: error: clusters[2].id: invalid cluster id \"Spot_2\": expected lowercase letters, digits and '-', at most 63, not starting or ending with '-'",
            "rules.yaml:9:5: error: clusters[2].connection: expected a connection name",
            "rules.yaml:14:26: error: rules[0].route.clusters[1]: unknown cluster \"nowhere\": expected one of the ids under clusters",
            "rules.yaml:14:35: error: rules[0].route.clusters[2]: cluster \"spot-1\" is listed twice in this route",
            "rules.yaml:15:5: error: rules[1].name: duplicate rule \"a\"",
            "rules.yaml:15:5: error: rules[1].deny: expected a reason",
            "rules.yaml:17:5: error: rules[2]: expected exactly one of `route` and `deny`",
        ]
    );
}

#[test]
fn a_leaky_rule_is_refused_naming_rule_cluster_and_constraint() {
    let yaml = format!(
        r#"{CLUSTERS}constraints:
  - name: phi-isolation
    when: {{labels: {{data-classification: phi}}}}
    require_tags: {{phi-compliant: "true"}}
rules:
  - name: phi
    match: {{labels: {{data-classification: phi}}, queues: [claims]}}
    route: {{clusters: [phi-east]}}
  - name: batch
    match: {{queues: [claims, billing]}}
    route:
      clusters: [phi-east]
      fallback: [spot-1]
default: {{clusters: [phi-east]}}
"#
    );
    // A PHI job in queue "billing" passes the first rule and reaches spot-1 through the fallback.
    assert_eq!(
        errors(&yaml),
        [
            "rules.yaml:21:18: error: rules[1].route.fallback[0]: rule \"batch\" can send jobs covered by constraint \"phi-isolation\" (label data-classification=phi, queue=billing) to cluster \"spot-1\", which lacks phi-compliant=true"
        ]
    );
}

#[test]
fn the_default_route_is_checked_too() {
    let yaml = format!(
        r#"{CLUSTERS}constraints:
  - name: phi-isolation
    when: {{labels: {{data-classification: [phi, pii]}}}}
    require_tags: {{phi-compliant: "true"}}
rules:
  - name: phi
    match: {{labels: {{data-classification: phi}}}}
    route: {{clusters: [phi-east]}}
default: {{clusters: [spot-1]}}
"#
    );
    assert_eq!(
        errors(&yaml),
        [
            "rules.yaml:17:22: error: default.clusters[0]: the default route can send jobs covered by constraint \"phi-isolation\" (label data-classification=pii) to cluster \"spot-1\", which lacks phi-compliant=true"
        ]
    );
}

#[test]
fn shadowed_routes_are_not_leaks() {
    // Every PHI job is caught (or denied) before the catch-all rule, so the config is safe.
    let yaml = format!(
        r#"{CLUSTERS}constraints:
  - name: phi-isolation
    when: {{labels: {{data-classification: phi}}}}
    require_tags: {{phi-compliant: "true"}}
rules:
  - name: phi-big
    match: {{labels: {{data-classification: phi}}, resources: {{min_cores: 500}}}}
    deny: too big
  - name: phi
    match: {{labels: {{data-classification: phi}}}}
    route: {{clusters: [phi-east]}}
  - name: everything
    route: {{clusters: [spot-1, phi-east]}}
default: {{clusters: [spot-1]}}
"#
    );
    RoutingRules::from_yaml(&yaml, None).unwrap();
}

#[test]
fn unreadable_files_name_the_file() {
    let e = RoutingRules::from_file("/nonexistent/rules.yaml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/rules.yaml: error: cannot read rules file"),
        "{e}"
    );
}

#[test]
fn bpg_config_imports_into_equivalent_rules() {
    let text = include_str!("data/bpg-config.example.yaml");
    let config = RulesConfig::from_bpg_config(text, None, Some("bpg_gateway")).unwrap();
    insta::assert_snapshot!("bpg_import", config.to_yaml());
    let rules = RoutingRules::new(config).unwrap();
    assert_eq!(rules.connection_of("cluster-id-2"), Some("bpg_gateway"));
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let inputs = [
        "",
        "[]",
        "clusters: 5",
        "clusters: []",
        "clusters:\n  - id: a\n",
        "clusters:\n  - id: a\n    connection: c\n    weight: -1\n",
        "clusters:\n  - id: a\n    connection: c\nrules:\n  - name: r\n    match: {labels: {k: []}}\n    deny: x\n",
        "clusters:\n  - id: a\n    connection: c\nrules:\n  - name: r\n    match: {resources: {min_cores: 5, max_cores: 1}}\n    deny: x\n",
        "clusters:\n  - id: a\n    connection: c\nrules:\n  - name: r\n    route: {clusters: []}\n",
        "clusters:\n  - id: a\n    connection: c\nconstraints:\n  - name: k\n    when: {}\n    require_tags: {}\n",
        "clusters:\n  - id: a\n    connection: c\ndefault: {clusters: [{cluster: a, weight: 1, extra: 2}]}\n",
        "clusters:\n  - id: a\n    connection: c\ndefault: {clusters: [[a]]}\n",
        "clusters:\n  - id: a\n    connection: c\ndefault: {strategy: fastest, clusters: [a]}\n",
        "clusters:\n  - &x {id: a, connection: c}\n  - *x\n",
    ];
    for input in inputs {
        let e = RoutingRules::from_yaml(input, Some(Path::new("r.yaml"))).expect_err(input);
        assert!(e.has_errors(), "{input}");
        for d in e.0 {
            assert_eq!(d.file.as_deref(), Some(Path::new("r.yaml")), "{input}: {d}");
        }
    }
}

#[test]
fn versions_and_tags_keep_their_text() {
    let yaml = "clusters:\n  - id: a\n    connection: c\n    spark_versions: [3.10, 3.5]\n    tags: {phi-compliant: true, gen: 3.10}\nconstraints:\n  - name: k\n    when: {spark_versions: [3.10], labels: {gen: \"3.10\", tier: [3.10]}}\n    require_tags: {gen: [3.10]}\n";
    let config = RulesConfig::from_yaml(yaml, None).unwrap();
    assert_eq!(config.clusters[0].spark_versions, ["3.10", "3.5"]);
    assert_eq!(config.clusters[0].tags["gen"], "3.10");
    assert_eq!(config.clusters[0].tags["phi-compliant"], "true");
    assert_eq!(config.constraints[0].when.spark_versions, ["3.10"]);
    assert_eq!(config.constraints[0].when.labels["gen"].0, ["3.10"]);
    assert_eq!(config.constraints[0].when.labels["tier"].0, ["3.10"]);
    assert_eq!(config.constraints[0].require_tags["gen"].0, ["3.10"]);
    // A lone unquoted number has lost its text by the time it is read: refused, not guessed.
    let e = RulesConfig::from_yaml(
        &yaml.replace("gen: \"3.10\"", "gen: 3.10"),
        Some(Path::new("r.yaml")),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("r.yaml:8:"), "{e}");
    assert!(e.contains("must be quoted"), "{e}");
}

#[test]
fn intricate_configs_are_refused_rather_than_guessed_safe() {
    // Each earlier rule tests two labels, so the jobs slipping past n of them form 2^n boxes; past the
    // proof's work bound the checker keeps the larger set and refuses, saying it could not decide.
    let mut yaml = format!(
        "{CLUSTERS}constraints:\n  - name: phi-isolation\n    when: {{labels: {{dc: phi}}}}\n    require_tags: {{phi-compliant: \"true\"}}\nrules:\n"
    );
    for i in 0..12 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    match: {{labels: {{a{i}: x, b{i}: y}}}}\n    route: {{clusters: [phi-east]}}\n"
        ));
    }
    yaml.push_str("  - name: rest\n    route: {clusters: [spot-1]}\n");
    let e = errors(&yaml);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("rule \"rest\" may send jobs covered by constraint \"phi-isolation\""),
        "{e:?}"
    );
    assert!(e[0].contains("too many or too intricate"), "{e:?}");
}

#[test]
fn bpg_config_errors_are_located() {
    let e = RulesConfig::from_bpg_config(
        "sparkClusters:\n  - id: a\n    weight: lots\n",
        Some(Path::new("bpg.yaml")),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("bpg.yaml:3:13: error: weight: "), "{e}");
}
