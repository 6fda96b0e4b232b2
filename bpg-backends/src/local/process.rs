//! One `spark-submit` process: its output as log lines, its exit as a state, its process group.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bpg_core::{Error, JobState, JobStatus, LogLine, LogOptions, LogStream, Result, Submission};
use chrono::Utc;
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
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
    /// The spark-submit process id, which is also its process group id.
    pub pid: u32,
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
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so cancel reaches the JVM and the Python driver it starts.
            .process_group(0)
            .kill_on_drop(false);
        let mut busy_retries = 0;
        let mut child = loop {
            match command.spawn() {
                Ok(child) => break child,
                // "Text file busy": another thread's fork still holds the script open for
                // writing (it was just installed); it is released within milliseconds.
                Err(e)
                    if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
                        && busy_retries < 5 =>
                {
                    busy_retries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(Error::Backend {
                        backend: submission.backend.clone(),
                        temporary: false,
                        source: format!("cannot start spark-submit: {e}").into(),
                    });
                }
            }
        };
        let Some(pid) = child.id() else {
            return Err(Error::backend(
                submission.backend.clone(),
                false,
                "spark-submit exited before it could be tracked",
            ));
        };
        let mut running = JobStatus::new(JobState::Running, "RUNNING");
        running.started_at = Some(submission.submitted_at);
        let job = Arc::new(LocalJob {
            submission,
            pid,
            output: Mutex::new(Output::default()),
            status: watch::Sender::new(running),
            output_version: watch::Sender::new(0),
            cancel_requested: AtomicBool::new(false),
        });
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        tokio::spawn(job.clone().supervise(child, stdout, stderr, kill_grace));
        Ok(job)
    }

    fn push_line(&self, line: String) {
        lock(&self.output).lines.push(line);
        self.output_version.send_modify(|v| *v += 1);
    }

    async fn read_lines(self: Arc<Self>, pipe: Option<impl AsyncRead + Unpin>) {
        let Some(pipe) = pipe else { return };
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    self.push_line(String::from_utf8_lossy(&buf).into_owned());
                }
            }
        }
    }

    /// Collects output until both pipes close, reaps the process, kills whatever it left in its
    /// group, then publishes the final state.
    async fn supervise(
        self: Arc<Self>,
        mut child: Child,
        stdout: Option<impl AsyncRead + Unpin + Send + 'static>,
        stderr: Option<impl AsyncRead + Unpin + Send + 'static>,
        kill_grace: Duration,
    ) {
        let out = tokio::spawn(self.clone().read_lines(stdout));
        let err = tokio::spawn(self.clone().read_lines(stderr));
        let exit = child.wait().await;
        let readers = async {
            let _ = out.await;
            let _ = err.await;
        };
        tokio::pin!(readers);
        // Processes the driver left behind keep the pipes open: give them the grace period to
        // finish writing, then end the group and collect what is left.
        if tokio::time::timeout(kill_grace, &mut readers)
            .await
            .is_err()
        {
            self.signal_group(Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut readers).await;
        }
        // Nothing of this run outlives it, even a process that closed its pipes.
        self.signal_group(Signal::SIGKILL);
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

    /// Sends `signal` to the whole process group; a group that is already gone is fine.
    fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
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
        self.signal_group(Signal::SIGTERM);
        let job = self.clone();
        tokio::spawn(async move {
            let mut rx = job.status.subscribe();
            let ended = tokio::time::timeout(grace, rx.wait_for(|s| s.is_terminal())).await;
            if ended.is_err() {
                job.signal_group(Signal::SIGKILL);
            }
        });
    }

    /// Kills the group at once (the backend is going away).
    pub(crate) fn kill(&self) {
        if !self.status().is_terminal() {
            self.cancel_requested.store(true, Ordering::SeqCst);
            self.signal_group(Signal::SIGKILL);
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
