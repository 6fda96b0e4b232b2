//! `bpg route`: where an application would run under a rules file, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use bpg_core::formats::load_application_file;
use bpg_router::{ClusterView, RoutingRules};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::failure::{Failure, render};

/// What `bpg route` was asked.
#[derive(Debug)]
pub struct RouteArgs {
    /// Rules file.
    pub rules: PathBuf,
    /// Application file.
    pub file: PathBuf,
    /// Print the explanation.
    pub explain: bool,
    /// Print JSON.
    pub json: bool,
    /// Submitting user.
    pub user: Option<String>,
    /// RNG seed.
    pub seed: Option<u64>,
}

/// Routes the application; exit 1 when no cluster may take it.
pub fn route(args: &RouteArgs) -> Result<ExitCode, Failure> {
    let rules =
        RoutingRules::from_file(&args.rules).map_err(|d| Failure::config_diagnostics(&d))?;
    let parsed = load_application_file(&args.file).map_err(|d| Failure::invalid(&d))?;
    if !parsed.warnings.0.is_empty() {
        eprintln!("{}", render(&parsed.warnings));
    }
    let mut rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    // The CLI has no live load figures: every cluster counts as idle.
    let view = ClusterView::new();
    match rules.route_for_user(&parsed.job, args.user.as_deref(), &view, &mut rng) {
        Ok(decision) => {
            if args.json {
                outln!("{}", to_json(&decision));
            } else {
                outln!("{decision}");
                if args.explain {
                    outln!("{}", decision.explanation);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                let value =
                    serde_json::json!({ "error": e.to_string(), "explanation": e.explanation });
                outln!("{}", to_json(&value));
            } else if args.explain {
                outln!("{}", e.explanation);
            }
            Err(Failure::Failed(format!(
                "bpg: error: {} cannot be routed: {e}",
                parsed.job.name
            )))
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
