//! What the integration tests that drive the `bpg` binary share.
#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

/// A finished `bpg` process.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code, stdout and stderr in one text, for a snapshot or a failure message.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bpg-cli lives in the workspace")
        .to_path_buf()
}

/// Runs `bpg args...` from `dir` with a clean environment for connections and logging.
pub fn bpg_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bpg"));
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("BPG_CONN") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("the bpg binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `bpg args...` from the workspace root.
pub fn bpg(args: &[&str]) -> Output {
    bpg_in(&workspace_root(), args, &[])
}
