//! Command tasks: a local process in its own process group, its output lines as log events.

use std::time::Duration;

use tokio::time::Instant;

use bpg_core::process::ProcessGroup;
use futures::StreamExt;

use super::attempt::{Attempt, AttemptResult};
use super::spark_attempt::LOG_DRAIN_GRACE;
use crate::dag::{CommandLine, CommandTask};

impl Attempt {
    pub(super) async fn run_command(
        &self,
        task: &CommandTask,
        deadline: Option<(Instant, Duration)>,
    ) -> AttemptResult {
        let env = &self.env;
        let task_id = self.task_id().clone();
        let render = |s: &str| {
            env.templates
                .render(s, &task_id, self.try_number)
                .map(|c| c.into_owned())
        };
        let mut command = match &task.command {
            CommandLine::Shell(line) => match render(line) {
                Ok(line) => {
                    let mut c = tokio::process::Command::new("sh");
                    c.arg("-c").arg(line);
                    c
                }
                Err(e) => return AttemptResult::failed(e),
            },
            CommandLine::Argv(argv) => {
                let argv: std::result::Result<Vec<String>, String> =
                    argv.iter().map(|a| render(a)).collect();
                match argv {
                    Ok(argv) if !argv.is_empty() => {
                        let mut c = tokio::process::Command::new(&argv[0]);
                        c.args(&argv[1..]);
                        c
                    }
                    Ok(_) => return AttemptResult::failed("empty command"),
                    Err(e) => return AttemptResult::failed(e),
                }
            }
        };
        for (k, v) in &task.env {
            match render(v) {
                Ok(v) => {
                    command.env(k, v);
                }
                Err(e) => return AttemptResult::failed(e),
            }
        }
        command
            .env("BPG_DAG_ID", env.run.dag_id.as_ref())
            .env("BPG_RUN_ID", env.run.run_id.as_ref())
            .env("BPG_TASK_ID", task_id.as_ref())
            .env("BPG_TRY_NUMBER", self.try_number.to_string())
            .kill_on_drop(true);
        if let Some(dir) = task
            .cwd
            .as_deref()
            .map(|d| env.dag.resolve_path(d))
            .or(env.dag.base_dir.clone())
        {
            command.current_dir(dir);
        }
        // Its own process group: `sh -c` children must not outlive the task.
        let mut process = match ProcessGroup::spawn(&mut command) {
            Ok(process) => process,
            Err(e) => return AttemptResult::failed(format!("cannot start command: {e}")),
        };
        let pump = {
            let mut output = process.output();
            let events = env.events.clone();
            let task_id = task_id.clone();
            let try_number = self.try_number;
            tokio::spawn(async move {
                while let Some(line) = output.next().await {
                    events.log(&task_id, try_number, line);
                }
            })
        };
        let ended = tokio::select! {
            status = process.wait() => Ok(status),
            stop = self.stopped(deadline) => Err(stop),
        };
        let result = match ended {
            Ok(Ok(status)) if status.success() => AttemptResult::success(),
            Ok(Ok(status)) => AttemptResult::failed(format!("command exited with {status}")),
            Ok(Err(e)) => AttemptResult::failed(format!("waiting for the command failed: {e}")),
            Err(stop) => {
                process.kill().await;
                Self::stop_result(stop)
            }
        };
        // Output still buffered is delivered; a grandchild holding the pipes open is not waited for.
        let abort = pump.abort_handle();
        if tokio::time::timeout(LOG_DRAIN_GRACE, pump).await.is_err() {
            abort.abort();
        }
        result
    }
}
