//! Submission ids: BPG's `<cluster>-<32 hex>[-<suffix>]`, a Kubernetes resource name.
//!
//! BPG recovers the cluster as the text before the first `-`, so its cluster ids cannot contain
//! `-`. This gateway looks ids up in its store instead, so any cluster id works; the shape is
//! still checked first, so a malformed id is a 400 and an unknown one a 404.

/// Hex digits of the random part.
pub const RANDOM_LEN: usize = 32;

/// A new id for a submission to `cluster`.
///
/// ```
/// let id = bpg_gateway::ids::new_id("spark-cluster-a", Some("pi-1"));
/// assert!(id.starts_with("spark-cluster-a-") && id.ends_with("-pi-1"));
/// assert!(bpg_gateway::ids::check_shape(&id).is_ok());
/// ```
pub fn new_id(cluster: &str, suffix: Option<&str>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    match suffix {
        Some(s) => format!("{cluster}-{random}-{s}"),
        None => format!("{cluster}-{random}"),
    }
}

/// Checks that `id` has the shape of a submission id; the error says what was expected.
///
/// ```
/// use bpg_gateway::ids::check_shape;
/// assert!(check_shape("analytics-0123456789abcdef0123456789abcdef").is_ok());
/// assert!(check_shape("no-dash-hex").is_err());
/// assert!(check_shape("../etc/passwd").is_err());
/// ```
pub fn check_shape(id: &str) -> Result<(), String> {
    let expected =
        "expected <cluster>-<32 hex digits>[-<suffix>], lowercase letters, digits, '-' and '.'";
    if id.is_empty() || id.len() > 253 {
        return Err(format!("invalid submission id: {expected}"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(format!("invalid submission id {id:?}: {expected}"));
    }
    let bytes = id.as_bytes();
    let found = (1..bytes.len()).any(|i| {
        bytes[i] == b'-'
            && bytes.len() >= i + 1 + RANDOM_LEN
            && bytes[i + 1..i + 1 + RANDOM_LEN]
                .iter()
                .all(|b| b.is_ascii_hexdigit())
            && (bytes.len() == i + 1 + RANDOM_LEN
                || (bytes[i + 1 + RANDOM_LEN] == b'-' && bytes.len() > i + 2 + RANDOM_LEN))
    });
    if found {
        Ok(())
    } else {
        Err(format!("invalid submission id {id:?}: {expected}"))
    }
}

/// Whether `suffix` keeps an id a valid resource name (BPG does not check, and Kubernetes then
/// refuses the application with a 500).
pub fn check_suffix(suffix: &str) -> Result<(), String> {
    let ok = !suffix.is_empty()
        && suffix.len() <= 100
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !suffix.ends_with('-')
        && !suffix.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "submissionIdSuffix {suffix:?} is invalid: expected at most 100 lowercase letters, digits and inner '-' (it ends the application's resource name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let hex = "0123456789abcdef0123456789abcdef";
        for ok in [
            format!("a-{hex}"),
            format!("spark-cluster-a-{hex}"),
            format!("a-{hex}-suffix-1"),
        ] {
            assert!(check_shape(&ok).is_ok(), "{ok}");
        }
        for bad in [
            String::new(),
            "nodash".into(),
            format!("-{hex}"),
            format!("a-{hex}-"),
            format!("A-{hex}"),
            format!("a-{}", &hex[..31]),
            format!("a-{hex}x"),
            "a/../b".into(),
            "a%2F".into(),
        ] {
            assert!(check_shape(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn suffixes() {
        assert!(check_suffix("pi-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a/b"] {
            assert!(check_suffix(bad).is_err(), "{bad}");
        }
    }
}
