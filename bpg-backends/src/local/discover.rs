//! Finding `spark-submit`: `SPARK_HOME`, then `PATH`, then an installed `pyspark` package.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use bpg_core::{Error, Result};

/// Where a `spark-submit` was found, and the Python it goes with when it came from a pyspark package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub spark_submit: PathBuf,
    pub python: Option<PathBuf>,
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn on_path(path_var: Option<&OsStr>, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Looks in `spark_home/bin`, then on `path_var`, then asks each Python on `path_var`
/// (`python3`, `python`) where its `pyspark` package lives (pip installs `bin/spark-submit` inside it).
pub(crate) fn find_spark_submit(
    spark_home: Option<&OsStr>,
    path_var: Option<&OsStr>,
) -> Result<Found> {
    if let Some(home) = spark_home.filter(|h| !h.is_empty()) {
        let candidate = Path::new(home).join("bin").join("spark-submit");
        if executable(&candidate) {
            return Ok(Found {
                spark_submit: candidate,
                python: None,
            });
        }
    }
    if let Some(p) = on_path(path_var, "spark-submit") {
        return Ok(Found {
            spark_submit: p,
            python: None,
        });
    }
    for python in ["python3", "python"] {
        let Some(python) = on_path(path_var, python) else {
            continue;
        };
        let out = std::process::Command::new(&python)
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(out) = out {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let candidate = Path::new(&dir).join("bin").join("spark-submit");
            if out.status.success() && !dir.is_empty() && executable(&candidate) {
                return Ok(Found {
                    spark_submit: candidate,
                    python: Some(python),
                });
            }
        }
    }
    Err(Error::config(
        "spark-submit not found: set SPARK_HOME to a Spark distribution, put spark-submit on PATH, \
         or `pip install pyspark` into the python3 on PATH",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_program(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn spark_home_wins_over_path() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("bin")).unwrap();
        let in_home = fake_program(&home.path().join("bin"), "spark-submit", "exit 0");
        let elsewhere = tempfile::tempdir().unwrap();
        fake_program(elsewhere.path(), "spark-submit", "exit 0");
        let found = find_spark_submit(
            Some(home.path().as_os_str()),
            Some(elsewhere.path().as_os_str()),
        )
        .unwrap();
        assert_eq!(found.spark_submit, in_home);
    }

    #[test]
    fn path_is_searched_and_non_executables_skipped() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("spark-submit"), "not executable").unwrap();
        let b = tempfile::tempdir().unwrap();
        let good = fake_program(b.path(), "spark-submit", "exit 0");
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let found = find_spark_submit(None, Some(&path)).unwrap();
        assert_eq!(found.spark_submit, good);
        assert_eq!(found.python, None);
    }

    #[test]
    fn a_pyspark_package_is_found_through_python() {
        let pkg = tempfile::tempdir().unwrap();
        std::fs::create_dir(pkg.path().join("bin")).unwrap();
        let submit = fake_program(&pkg.path().join("bin"), "spark-submit", "exit 0");
        let bin = tempfile::tempdir().unwrap();
        let python = fake_program(
            bin.path(),
            "python3",
            &format!("echo '{}'", pkg.path().display()),
        );
        let found = find_spark_submit(None, Some(bin.path().as_os_str())).unwrap();
        assert_eq!(found.spark_submit, submit);
        assert_eq!(found.python, Some(python));
    }

    #[test]
    fn nothing_found_says_what_to_do() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_spark_submit(None, Some(empty.path().as_os_str())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("SPARK_HOME") && text.contains("pyspark"),
            "{text}"
        );
    }
}
