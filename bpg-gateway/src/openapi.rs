//! The OpenAPI document of what this gateway serves, at `/openapi.yaml` and `/openapi.json`.
//!
//! Written for this gateway (not BPG's generated spec): it lists the fields BPG accepts but its
//! spec omits (`driver.labels`, `driver.serviceAccount`, `clusterId`, ...), `mySubmissions`, the
//! NDJSON admin listing and our extensions.

use std::sync::LazyLock;

/// The document as YAML.
pub const YAML: &str = include_str!("../openapi.yaml");

static JSON: LazyLock<String> = LazyLock::new(|| {
    serde_saphyr::from_str::<serde_json::Value>(YAML)
        .map(|v| v.to_string())
        .unwrap_or_else(|e| {
            format!("{{\"error\": \"the built-in OpenAPI document does not parse: {e}\"}}")
        })
});

/// The document as JSON.
pub fn json() -> &'static str {
    &JSON
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses() {
        let v: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        assert_eq!(v["openapi"], "3.0.3");
        assert!(v["paths"]["/spark"]["post"].is_object());
    }
}
