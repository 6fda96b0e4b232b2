//! Query strings as Airflow's clients send them: repeated keys (`state=a&state=b`) included.

use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// The decoded `key=value` pairs of a query string or form body.
pub(crate) fn pairs(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed query: look values up by name.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Params(raw.map(|r| pairs(r).collect()).unwrap_or_default())
    }

    /// Every value of `key` (comma-separated values split, as Airflow's lists).
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    unprocessable(format!(
                        "query.{key}: expected a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.get(key)
            .map(|v| match v {
                "true" | "True" | "1" => Ok(true),
                "false" | "False" | "0" => Ok(false),
                _ => Err(unprocessable(format!(
                    "query.{key}: expected true or false, got {v:?}"
                ))),
            })
            .transpose()
    }

    pub(crate) fn date(&self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(key)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| {
                        unprocessable(format!(
                            "query.{key}: expected an RFC 3339 date-time, got {v:?}: {e}"
                        ))
                    })
            })
            .transpose()
    }
}

fn unprocessable(detail: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_encoded() {
        let p = Params::parse(Some(
            "state=running&state=queued,failed&d=2026-01-01T00%3A00%3A00%2B00%3A00&x=100%25&y=%zz",
        ));
        assert_eq!(p.all("state"), ["running", "queued", "failed"]);
        assert!(p.date("d").unwrap().is_some());
        assert_eq!(p.get("x"), Some("100%"));
        assert_eq!(p.get("y"), Some("%zz"));
        assert!(p.usize("x").is_err());
    }
}
