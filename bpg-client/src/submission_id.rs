//! BPG submission ids, and recovering the cluster from one even when cluster ids contain `-`.
//!
//! BPG issues `<clusterId>-<32 lowercase hex>[-<submissionIdSuffix>]` and recovers the cluster as
//! everything before the first `-`, which breaks for cluster ids such as `spark-cluster-a`. The
//! 32-hex segment is the unambiguous separator instead: the cluster is everything before the first
//! `-`-delimited segment of exactly 32 lowercase hex digits, the suffix everything after it. The
//! format on the wire is unchanged, so ids stay valid for upstream BPG; the only rule is that a
//! cluster id must not itself contain a 32-hex segment ([`validate_cluster_id`]).

use std::fmt;

/// Length of the random (UUID without dashes) part of a submission id.
pub const UUID_HEX_LEN: usize = 32;

/// A parsed submission id: `<cluster>-<uuid hex>[-<suffix>]`.
///
/// BPG issues `<clusterId>-<32 lowercase hex>[-<submissionIdSuffix>]` and recovers the cluster as
/// everything before the first `-`, which breaks for cluster ids such as `spark-cluster-a`. Here
/// the 32-hex segment is the separator: the cluster is everything before the first `-`-delimited
/// segment of exactly 32 lowercase hex digits, the suffix everything after it. The wire format is
/// unchanged (ids stay valid for upstream BPG); the one rule is that a cluster id must not itself
/// contain a 32-hex segment, which [`validate_cluster_id`] checks.
///
/// ```
/// use bpg_client::SubmissionId;
/// let id = SubmissionId::parse("spark-cluster-a-9a2e2598d1ee4ff4b33ee7ebcdb63a6c-daily-pi-1").unwrap();
/// assert_eq!(id.cluster, "spark-cluster-a");
/// assert_eq!(id.uuid, "9a2e2598d1ee4ff4b33ee7ebcdb63a6c");
/// assert_eq!(id.suffix.as_deref(), Some("daily-pi-1"));
/// assert_eq!(id.to_string(), "spark-cluster-a-9a2e2598d1ee4ff4b33ee7ebcdb63a6c-daily-pi-1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubmissionId {
    /// The cluster the submission went to.
    pub cluster: String,
    /// The 32 lowercase hex digits BPG generated.
    pub uuid: String,
    /// The `submissionIdSuffix` of the request, if it had one.
    pub suffix: Option<String>,
}

/// Why a string is not a submission id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid submission id {id:?}: {reason}")]
pub struct SubmissionIdError {
    /// The string that was given.
    pub id: String,
    /// What was expected.
    pub reason: &'static str,
}

fn is_uuid_segment(segment: &str) -> bool {
    segment.len() == UUID_HEX_LEN
        && segment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SubmissionId {
    /// Parses `<cluster>-<32 hex>[-<suffix>]`.
    pub fn parse(id: &str) -> Result<SubmissionId, SubmissionIdError> {
        let error = |reason| SubmissionIdError {
            id: id.to_owned(),
            reason,
        };
        let segments: Vec<&str> = id.split('-').collect();
        let at = segments
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, s)| is_uuid_segment(s))
            .map(|(i, _)| i)
            .ok_or_else(|| error("expected <cluster>-<32 lowercase hex digits>[-<suffix>]"))?;
        let cluster = segments[..at].join("-");
        if cluster.is_empty() || segments[..at].iter().any(|s| s.is_empty()) {
            return Err(error("the cluster part is empty or has an empty segment"));
        }
        let suffix = if at + 1 < segments.len() {
            let suffix = segments[at + 1..].join("-");
            if suffix.is_empty() {
                return Err(error("the suffix after the 32 hex digits is empty"));
            }
            Some(suffix)
        } else {
            None
        };
        Ok(SubmissionId {
            cluster,
            uuid: segments[at].to_owned(),
            suffix,
        })
    }

    /// The cluster of `id`, or `None` when `id` is not a submission id.
    pub fn cluster_of(id: &str) -> Option<String> {
        SubmissionId::parse(id).ok().map(|p| p.cluster)
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.cluster, self.uuid)?;
        if let Some(suffix) = &self.suffix {
            write!(f, "-{suffix}")?;
        }
        Ok(())
    }
}

/// Checks that `cluster` can prefix submission ids: lowercase letters, digits and `-` (a DNS-1123
/// label, as the id becomes a Kubernetes resource name), not starting or ending with `-`, no empty
/// segment, and no segment of 32 hex digits (which would be taken for the id's random part).
///
/// ```
/// use bpg_client::validate_cluster_id;
/// assert!(validate_cluster_id("spark-cluster-a").is_ok());
/// assert!(validate_cluster_id("Analytics").is_err());
/// ```
pub fn validate_cluster_id(cluster: &str) -> Result<(), String> {
    if cluster.is_empty() {
        return Err("a cluster id must not be empty".into());
    }
    if !cluster
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "cluster id {cluster:?} may only contain lowercase letters, digits and '-'"
        ));
    }
    if cluster.split('-').any(str::is_empty) {
        return Err(format!(
            "cluster id {cluster:?} must not start or end with '-' or contain \"--\""
        ));
    }
    if cluster.split('-').any(is_uuid_segment) {
        return Err(format!(
            "cluster id {cluster:?} must not contain a segment of {UUID_HEX_LEN} hex digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn upstream_ids_parse() {
        let id = SubmissionId::parse(&format!("minikube-{HEX}")).unwrap();
        assert_eq!(id.cluster, "minikube");
        assert_eq!(id.suffix, None);
    }

    #[test]
    fn hyphenated_clusters_and_suffixes_are_unambiguous() {
        let id = SubmissionId::parse(&format!("spark-cluster-a-{HEX}-x-{HEX}")).unwrap();
        assert_eq!(id.cluster, "spark-cluster-a");
        assert_eq!(id.uuid, HEX);
        assert_eq!(id.suffix.as_deref(), Some(&*format!("x-{HEX}")));
        assert_eq!(id.to_string(), format!("spark-cluster-a-{HEX}-x-{HEX}"));
    }

    #[test]
    fn malformed_ids_are_rejected_with_a_reason() {
        for bad in [
            "nohyphen".to_owned(),
            HEX.to_owned(),
            format!("-{HEX}"),
            format!("a--b-{HEX}"),
            format!("c-{HEX}-"),
            format!("c-{}", HEX.to_uppercase()),
            "c-0123".to_owned(),
        ] {
            let err = SubmissionId::parse(&bad).unwrap_err();
            assert!(err.to_string().contains(&bad), "{err}");
        }
    }

    #[test]
    fn cluster_id_rules() {
        assert!(validate_cluster_id("a1-b2").is_ok());
        assert!(validate_cluster_id("").is_err());
        assert!(validate_cluster_id("-a").is_err());
        assert!(validate_cluster_id("a_b").is_err());
        assert!(validate_cluster_id(&format!("x-{HEX}")).is_err());
    }
}
