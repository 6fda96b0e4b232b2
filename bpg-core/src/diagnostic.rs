//! Located problems in input files: the one type every parser and validator in the workspace reports.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input is invalid.
    Error,
    /// The input is accepted, but something in it is probably a mistake (e.g. an unknown field in a manifest).
    Warning,
}

/// One problem found in an input file, with where it is and what was expected.
///
/// Displays as `FILE:LINE:COL: error: FIELD: MESSAGE`, the format editors and CI annotate.
///
/// ```
/// use bpg_core::Diagnostic;
/// let d = Diagnostic::error("driver.memory", "expected a memory quantity such as \"2g\"")
///     .with_file("apps/pi.yaml")
///     .at(4, 11);
/// assert_eq!(d.to_string(), "apps/pi.yaml:4:11: error: driver.memory: expected a memory quantity such as \"2g\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, when the input came from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the offending field (`driver.memory`, `tasks[2].depends_on`); empty for the whole document.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// An error about `field`.
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A warning about `field`.
    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(field, message)
        }
    }

    /// A located error from a serde-saphyr failure on `text`: the message without the library's
    /// position prefix or snippet, the line and column, and as field the mapping key written on
    /// that line (`  weight: x` gives `weight`), when there is one.
    ///
    /// ```
    /// use bpg_core::Diagnostic;
    /// let text = "name: a\nweight: heavy\n";
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Rule { name: String, weight: u32 }
    /// let err = serde_saphyr::from_str::<Rule>(text).unwrap_err();
    /// let d = Diagnostic::from_yaml_error(&err, text);
    /// assert_eq!((d.line, d.field.as_str()), (Some(2), "weight"));
    /// assert!(!d.message.starts_with("line "), "{}", d.message);
    /// ```
    pub fn from_yaml_error(err: &serde_saphyr::Error, text: &str) -> Self {
        let located = err.location().filter(|l| l.line() > 0);
        let plain = err.without_snippet().to_string();
        let message = strip_yaml_position(&plain);
        // Say what is wrong with the file, not which library option would accept it.
        let message = message
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(&message)
            .to_owned();
        let field = located
            .and_then(|l| key_on_line(text, usize::try_from(l.line()).ok()?))
            .unwrap_or_default();
        let mut d = Diagnostic::error(field, message);
        if let Some(l) = located {
            d = d.at(
                usize::try_from(l.line()).unwrap_or(0),
                usize::try_from(l.column()).unwrap_or(0),
            );
        }
        d
    }

    /// Sets the file the problem is in.
    pub fn with_file(mut self, file: impl AsRef<Path>) -> Self {
        self.file = Some(file.as_ref().to_path_buf());
        self
    }

    /// Sets the 1-based line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// True for errors, false for warnings.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("<input>")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one or more inputs; an error when at least one is an error.
///
/// Displays one diagnostic per line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// No problems.
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    /// Adds one problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Sets `file` on every diagnostic that has none.
    pub fn with_file(mut self, file: impl AsRef<Path>) -> Self {
        for d in &mut self.0 {
            if d.file.is_none() {
                d.file = Some(file.as_ref().to_path_buf());
            }
        }
        self
    }

    /// True when there are no diagnostics at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many diagnostics there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The candidate a misspelt name most likely meant, for "did you mean" hints: the closest by edit
/// distance (ignoring case), if it is within 2 edits (3 for names longer than 8 characters).
///
/// ```
/// use bpg_core::closest_match;
/// assert_eq!(closest_match("sparkVersoin", ["sparkVersion", "mainClass"]), Some("sparkVersion"));
/// assert_eq!(closest_match("queue", ["sparkVersion", "mainClass"]), None);
/// ```
pub fn closest_match<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let name_lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&name_lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, _)| d <= 2 || (d <= 3 && name.len() > 8))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// A serde-saphyr message without its `error: line L column C: ` prefix or trailing position.
fn strip_yaml_position(message: &str) -> String {
    let m = message.strip_prefix("error: ").unwrap_or(message);
    let m = match m
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, rest)) => rest,
        None => m,
    };
    // Some messages repeat the position at the end.
    match m.rfind(" at line ") {
        Some(i) if m[i..].contains(", column ") => m[..i].to_owned(),
        _ => m.to_owned(),
    }
}

/// The mapping key written on a 1-based line (`  - weight: x` gives `weight`).
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let l = l.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = l.split_once(':')?;
    let key = key.trim().trim_matches(['"', '\'']);
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_owned())
}
