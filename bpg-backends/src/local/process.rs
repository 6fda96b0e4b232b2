//! One `spark-submit` process: its output as log lines, its exit as a state, its process group.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bpg_core::process::{GroupHandle, ProcessGroup};
use bpg_core::{Error, JobState, JobStatus, LogLine, LogOptions, LogStream, Result, Submission};
use chrono::Utc;
use futures::StreamExt;
use tokio::process::Command;
use tokio::sync::watch;

/// The driver's output so far, stdout and stderr interleaved in arrival order.
#[derive(Debug, Default)]
struct Output {
    lines: Vec<String>,
    /// Both pipes reached end of file: no more lines will come.
    closed: bool,
}

/// A spark-submit run the backend started.
#[derive(Debug)]
pub(crate) struct LocalJob {
    pub submission: Submission,
    /// The spark-submit process group (its id is spark-submit's process id).
    pub group: GroupHandle,
    output: Mutex<Output>,
    status: watch::Sender<JobStatus>,
    /// Bumped whenever lines arrive or the output closes, to wake followers.
    output_version: watch::Sender<u64>,
    cancel_requested: AtomicBool,
}

fn lock(output: &Mutex<Output>) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalJob {
    /// Starts `command` in its own process group and begins collecting its output.
    pub(crate) fn spawn(
        mut command: Command,
        submission: Submission,
        kill_grace: Duration,
    ) -> Result<Arc<LocalJob>> {
        // Its own process group, so cancel reaches the JVM and the Python driver it starts.
        command.kill_on_drop(false);
        let process = ProcessGroup::spawn(&mut command).map_err(|e| Error::Backend {
            backend: submission.backend.clone(),
            temporary: false,
            source: format!("cannot start spark-submit: {e}").into(),
        })?;
        let mut running = JobStatus::new(JobState::Running, "RUNNING");
        running.started_at = Some(submission.submitted_at);
        let job = Arc::new(LocalJob {
            submission,
            group: process.group(),
            output: Mutex::new(Output::default()),
            status: watch::Sender::new(running),
            output_version: watch::Sender::new(0),
            cancel_requested: AtomicBool::new(false),
        });
        tokio::spawn(job.clone().supervise(process, kill_grace));
        Ok(job)
    }

    fn push_line(&self, line: String) {
        lock(&self.output).lines.push(line);
        self.output_version.send_modify(|v| *v += 1);
    }

    /// Collects output until both pipes close, reaps the process, kills whatever it left in its
    /// group, then publishes the final state.
    async fn supervise(self: Arc<Self>, mut process: ProcessGroup, kill_grace: Duration) {
        let mut output = process.output();
        let reader = tokio::spawn({
            let job = self.clone();
            async move {
                while let Some(line) = output.next().await {
                    job.push_line(line);
                }
            }
        });
        let exit = process.wait().await;
        tokio::pin!(reader);
        // Processes the driver left behind keep the pipes open: give them the grace period to
        // finish writing, then end the group and collect what is left.
        if tokio::time::timeout(kill_grace, &mut reader).await.is_err() {
            self.group.kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut reader).await;
        }
        // Nothing of this run outlives it, even a process that closed its pipes.
        self.group.kill();
        lock(&self.output).closed = true;
        self.output_version.send_modify(|v| *v += 1);
        let status = self.final_status(exit);
        self.status.send_replace(status);
    }

    fn final_status(&self, exit: std::io::Result<ExitStatus>) -> JobStatus {
        use std::os::unix::process::ExitStatusExt;
        let cancelled = self.cancel_requested.load(Ordering::SeqCst);
        let mut status = match exit {
            Ok(exit) if cancelled => {
                JobStatus::new(JobState::Cancelled, describe(exit)).with_message("cancelled")
            }
            Ok(exit) if exit.success() => JobStatus::new(JobState::Succeeded, describe(exit)),
            Ok(exit) => {
                let mut message = match (exit.code(), exit.signal()) {
                    (Some(code), _) => format!("spark-submit exited with code {code}"),
                    (None, Some(sig)) => format!("spark-submit was killed by signal {sig}"),
                    (None, None) => "spark-submit ended abnormally".to_owned(),
                };
                if let Some(cause) = last_error_line(&lock(&self.output).lines) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
                JobStatus::new(JobState::Failed, describe(exit)).with_message(message)
            }
            Err(e) => JobStatus::new(JobState::Unknown, "UNKNOWN")
                .with_message(format!("cannot wait for spark-submit: {e}")),
        };
        status.started_at = Some(self.submission.submitted_at);
        status.finished_at = Some(Utc::now());
        status
    }

    pub(crate) fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// Waits until the status differs from `previous` or `patience` passes, then returns it.
    pub(crate) async fn next_status(
        &self,
        previous: Option<&JobStatus>,
        patience: Duration,
    ) -> JobStatus {
        let mut rx = self.status.subscribe();
        if let Some(previous) = previous {
            let changed = rx.wait_for(|now| now != previous);
            let _ = tokio::time::timeout(patience, changed).await;
        }
        rx.borrow().clone()
    }

    /// SIGTERM to the group now, SIGKILL after `grace` if the driver is still there.
    pub(crate) fn cancel(self: &Arc<Self>, grace: Duration) {
        if self.status().is_terminal() || self.cancel_requested.swap(true, Ordering::SeqCst) {
            return;
        }
        self.status.send_modify(|s| {
            if !s.is_terminal() {
                s.state = JobState::Cancelling;
                s.native_state = "CANCELLING".into();
            }
        });
        self.group.terminate();
        let job = self.clone();
        tokio::spawn(async move {
            let mut rx = job.status.subscribe();
            let ended = tokio::time::timeout(grace, rx.wait_for(|s| s.is_terminal())).await;
            if ended.is_err() {
                job.group.kill();
            }
        });
    }

    /// Kills the group at once (the backend is going away).
    pub(crate) fn kill(&self) {
        if !self.status().is_terminal() {
            self.cancel_requested.store(true, Ordering::SeqCst);
            self.group.kill();
        }
    }

    pub(crate) fn logs(self: &Arc<Self>, options: &LogOptions) -> LogStream {
        if !options.follow {
            let output = lock(&self.output);
            let total = output.lines.len() as u64;
            let first = match options.tail {
                Some(n) => total.saturating_sub(n).max(options.from_line),
                None => options.from_line,
            };
            let lines: Vec<Result<LogLine>> = output
                .lines
                .iter()
                .enumerate()
                .skip(usize::try_from(first).unwrap_or(usize::MAX))
                .map(|(i, text)| {
                    Ok(LogLine {
                        position: i as u64,
                        text: text.clone(),
                    })
                })
                .collect();
            return futures::stream::iter(lines).boxed();
        }
        let rx = self.output_version.subscribe();
        futures::stream::unfold(
            (self.clone(), rx, options.from_line),
            |(job, mut rx, next)| async move {
                loop {
                    let (batch, closed) = {
                        let output = lock(&job.output);
                        let start = usize::try_from(next).unwrap_or(usize::MAX);
                        let batch: Vec<Result<LogLine>> = output
                            .lines
                            .iter()
                            .enumerate()
                            .skip(start)
                            .map(|(i, text)| {
                                Ok(LogLine {
                                    position: i as u64,
                                    text: text.clone(),
                                })
                            })
                            .collect();
                        (batch, output.closed)
                    };
                    if !batch.is_empty() {
                        let after = next + batch.len() as u64;
                        return Some((batch, (job, rx, after)));
                    }
                    if closed {
                        return None;
                    }
                    // A closed channel cannot happen while we hold the job; end the stream if it does.
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
        .flat_map(futures::stream::iter)
        .boxed()
    }
}

fn describe(exit: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (exit.code(), exit.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "exit ?".into(),
    }
}

/// The line that most likely says why the driver failed: the last one naming an error or
/// exception as `SomethingError: text` / `SomethingException: text` (a Python traceback's last
/// line, a JVM exception, spark-submit's own `Error: ...`).
fn last_error_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| {
            let Some((head, _)) = l.split_once(':') else {
                return false;
            };
            !head.contains(' ')
                && (head == "Error" || head.ends_with("Error") || head.ends_with("Exception"))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_of_a_failure_is_the_last_error_or_exception_line() {
        let lines: Vec<String> = [
            "25/11/24 01:02:03 INFO SparkContext: Running Spark version 4.0",
            "Traceback (most recent call last):",
            "  File \"/tmp/fail.py\", line 9, in <module>",
            "RuntimeError: the input table is empty",
            "25/11/24 01:02:04 INFO ShutdownHookManager: Shutdown hook called",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            last_error_line(&lines).as_deref(),
            Some("RuntimeError: the input table is empty")
        );
        let jvm = vec!["Error: Failed to load class NoSuchClass.".to_owned()];
        assert_eq!(
            last_error_line(&jvm).as_deref(),
            Some("Error: Failed to load class NoSuchClass.")
        );
        let none = vec!["25/11/24 INFO Utils: Successfully started service".to_owned()];
        assert_eq!(last_error_line(&none), None);
    }
}
