//! Why a command stopped early, and the exit code that says so.

use std::fmt;
use std::process::ExitCode;

use bpg_core::Diagnostics;

/// A command that could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// A usage or configuration error (exit 2): an unknown connection, an invalid connections or
    /// rules file, a flag the build cannot honour.
    Config(String),
    /// The work itself failed (exit 1): an invalid input file, a job the backend refused or lost.
    Failed(String),
}

impl Failure {
    /// 2 for configuration errors, 1 for failures.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) => ExitCode::from(2),
            Failure::Failed(_) => ExitCode::from(1),
        }
    }

    /// A configuration error listing every diagnostic.
    pub fn config_diagnostics(d: &Diagnostics) -> Self {
        Failure::Config(render(d))
    }

    /// A failure listing every diagnostic.
    pub fn invalid(d: &Diagnostics) -> Self {
        Failure::Failed(render(d))
    }

    /// Classifies a backend or registry error: configuration problems exit 2, the rest 1.
    pub fn from_error(context: &str, e: bpg_core::Error) -> Self {
        match e {
            bpg_core::Error::Config { .. } => {
                Failure::Config(format!("bpg: error: {context}: {e}"))
            }
            bpg_core::Error::InvalidSpec(d) => Failure::Failed(format!(
                "bpg: error: {context}: invalid application:\n{}",
                render(&d)
            )),
            other => Failure::Failed(format!("bpg: error: {context}: {other}")),
        }
    }
}

/// One diagnostic per line, FILE:LINE:COL: severity: field: message.
pub fn render(d: &Diagnostics) -> String {
    d.0.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}
