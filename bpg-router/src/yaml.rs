//! Reading rules files: YAML errors as located diagnostics, and where each entry sits in the file so
//! that later validation errors can point at it too.

use std::collections::HashMap;
use std::path::Path;

use bpg_core::{Diagnostic, Diagnostics};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::Spanned;

/// Line and column of entries of a rules file, keyed by field path (`rules[2].route.clusters[0]`).
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceMap {
    pub file: Option<std::path::PathBuf>,
    positions: HashMap<String, (usize, usize)>,
}

impl SourceMap {
    /// A diagnostic about `field`, located when the field's position is known.
    pub(crate) fn error(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        let mut d = Diagnostic::error(field, message);
        if let Some(file) = &self.file {
            d = d.with_file(file);
        }
        // Fall back to the closest enclosing entry that has a position.
        let mut path = field;
        loop {
            if let Some(&(line, col)) = self.positions.get(path) {
                return d.at(line, col);
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return d,
            }
        }
    }

    pub(crate) fn line(&self, field: &str) -> Option<usize> {
        self.positions.get(field).map(|&(line, _)| line)
    }

    fn put<T>(&mut self, field: String, s: &Spanned<T>) {
        let (line, col) = (s.referenced.line(), s.referenced.column());
        if line > 0 {
            self.positions.insert(
                field,
                (
                    usize::try_from(line).unwrap_or(0),
                    usize::try_from(col).unwrap_or(0),
                ),
            );
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileLocs {
    clusters: Vec<Spanned<IgnoredAny>>,
    queues: Vec<Spanned<IgnoredAny>>,
    constraints: Vec<Spanned<IgnoredAny>>,
    rules: Vec<Spanned<RuleLocs>>,
    default: Option<Spanned<RouteLocs>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuleLocs {
    route: Option<Spanned<RouteLocs>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RouteLocs {
    clusters: Vec<Spanned<IgnoredAny>>,
    fallback: Vec<Spanned<IgnoredAny>>,
}

impl SourceMap {
    /// Positions of the entries of a rules file that parsed; empty when it did not.
    pub(crate) fn of_rules_file(text: &str, file: Option<&Path>) -> SourceMap {
        let mut map = SourceMap {
            file: file.map(Path::to_path_buf),
            positions: HashMap::new(),
        };
        let Ok(locs) = serde_saphyr::from_str::<FileLocs>(text) else {
            return map;
        };
        for (i, c) in locs.clusters.iter().enumerate() {
            map.put(format!("clusters[{i}]"), c);
        }
        for (i, q) in locs.queues.iter().enumerate() {
            map.put(format!("queues[{i}]"), q);
        }
        for (i, c) in locs.constraints.iter().enumerate() {
            map.put(format!("constraints[{i}]"), c);
        }
        let route = |map: &mut SourceMap, at: String, r: &Spanned<RouteLocs>| {
            map.put(at.clone(), r);
            for (j, t) in r.value.clusters.iter().enumerate() {
                map.put(format!("{at}.clusters[{j}]"), t);
            }
            for (j, t) in r.value.fallback.iter().enumerate() {
                map.put(format!("{at}.fallback[{j}]"), t);
            }
        };
        for (i, r) in locs.rules.iter().enumerate() {
            map.put(format!("rules[{i}]"), r);
            if let Some(m) = &r.value.matches {
                map.put(format!("rules[{i}].match"), m);
            }
            if let Some(rt) = &r.value.route {
                route(&mut map, format!("rules[{i}].route"), rt);
            }
        }
        if let Some(d) = &locs.default {
            route(&mut map, "default".into(), d);
        }
        map
    }
}

/// Parses YAML into `T`, turning a parse error into a diagnostic with file, line, column and the key
/// on the offending line as the field.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    file: Option<&Path>,
) -> Result<T, Diagnostics> {
    parse_with(text, file, serde_saphyr::Options::default())
}

/// [`parse`] with reader options.
pub(crate) fn parse_with<T: DeserializeOwned>(
    text: &str,
    file: Option<&Path>,
    options: serde_saphyr::Options,
) -> Result<T, Diagnostics> {
    serde_saphyr::from_str_with_options::<T>(text, options).map_err(|e| {
        let mut d = Diagnostic::from_yaml_error(&e, text);
        if let Some(file) = file {
            d = d.with_file(file);
        }
        Diagnostics::from(d)
    })
}
