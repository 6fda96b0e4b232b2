//! Local processes in their own process group: their output as lines, the whole group ended.
//!
//! A command task's `sh -c` and a local `spark-submit` both start children of their own (a
//! pipeline, a JVM, a Python driver). Started with [`ProcessGroup::spawn`], the process leads a
//! new process group, so one signal reaches everything it started and nothing outlives a
//! timeout or a cancel. Its stdout and stderr are read as lines ([`ProcessGroup::output`]) until
//! end of file, whatever bytes they hold: a line that is not UTF-8 is converted lossily and
//! reading goes on, so the process never dies of a closed pipe.
//!
//! ```
//! use bpg_core::process::ProcessGroup;
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! # if cfg!(not(unix)) { return Ok(()); }
//! let mut command = tokio::process::Command::new("sh");
//! command.arg("-c").arg("echo one; printf 'two \\377\\n' >&2; echo three");
//! let mut process = ProcessGroup::spawn(&mut command)?;
//! let lines: Vec<String> = process.output().collect().await;
//! assert!(process.wait().await?.success());
//! assert_eq!(lines.len(), 3);
//! assert!(lines.contains(&"two \u{FFFD}".to_string()));
//! # Ok(())
//! # }
//! ```

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Lines of a process's output, stdout and stderr interleaved as they arrive, without their line
/// endings. Ends when both pipes are closed.
pub type OutputLines = BoxStream<'static, String>;

/// A child process leading its own process group, with stdout and stderr piped.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    group: GroupHandle,
}

/// Signals a process group; a cheap copy that stays usable after the [`ProcessGroup`] moved.
///
/// Signalling a group that is gone already does nothing. Off Unix there are no process groups:
/// only [`ProcessGroup::kill`] (the process itself) has an effect there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHandle {
    pid: u32,
}

impl GroupHandle {
    /// The group id: the process id of its leader.
    pub fn id(self) -> u32 {
        self.pid
    }

    /// Asks every process of the group to stop (SIGTERM).
    pub fn terminate(self) {
        #[cfg(unix)]
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Kills every process of the group at once (SIGKILL).
    pub fn kill(self) {
        #[cfg(unix)]
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    #[cfg(unix)]
    fn signal(self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group, stdin from `/dev/null`, stdout and
    /// stderr piped (read them with [`ProcessGroup::output`]). Everything else about the command
    /// (arguments, environment, directory, `kill_on_drop`) is the caller's.
    ///
    /// A spawn that fails with "text file busy" is tried again a few times: an executable that
    /// was just written may still be held open for writing by another thread's fork for a few
    /// milliseconds.
    pub fn spawn(command: &mut Command) -> io::Result<ProcessGroup> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        command.process_group(0);
        let mut busy_retries = 0;
        let child = loop {
            match command.spawn() {
                Ok(child) => break child,
                #[cfg(unix)]
                Err(e)
                    if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32)
                        && busy_retries < 5 =>
                {
                    busy_retries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        let Some(pid) = child.id() else {
            return Err(io::Error::other(
                "the process exited before it could be tracked",
            ));
        };
        Ok(ProcessGroup {
            child,
            group: GroupHandle { pid },
        })
    }

    /// The handle that signals this process's group.
    pub fn group(&self) -> GroupHandle {
        self.group
    }

    /// The process's output lines, stdout and stderr interleaved. The first call takes the
    /// pipes; later calls return an empty stream.
    ///
    /// Lines are read until end of file; bytes that are not UTF-8 are replaced with U+FFFD.
    /// The stream reads only while it is polled: poll it until it ends, or the process may block
    /// on a full pipe.
    pub fn output(&mut self) -> OutputLines {
        let stdout = self.child.stdout.take().map(lines);
        let stderr = self.child.stderr.take().map(lines);
        match (stdout, stderr) {
            (Some(out), Some(err)) => futures::stream::select(out, err).boxed(),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => futures::stream::empty().boxed(),
        }
    }

    /// Waits for the group's leader to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the whole group at once and reaps the leader.
    pub async fn kill(&mut self) {
        self.group.kill();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Reads `reader` as lines until end of file (or a read error), converting each lossily.
pub fn lines<R: AsyncRead + Unpin + Send + 'static>(reader: R) -> OutputLines {
    futures::stream::unfold(BufReader::new(reader), |mut reader| async move {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                Some((String::from_utf8_lossy(&line).into_owned(), reader))
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_go_on_past_bytes_that_are_not_utf8() {
        let input: &[u8] = b"first\nbad \xff\xfe line\r\nlast without newline";
        let got: Vec<String> = lines(input).collect().await;
        assert_eq!(
            got,
            ["first", "bad \u{FFFD}\u{FFFD} line", "last without newline"]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn kill_ends_the_whole_group() {
        // The shell's child would keep the pipes open if it outlived the kill.
        let mut command = Command::new("sh");
        command.arg("-c").arg("sleep 30 & echo started; wait");
        let mut process = ProcessGroup::spawn(&mut command).unwrap();
        let mut output = process.output();
        assert_eq!(output.next().await.as_deref(), Some("started"));
        process.kill().await;
        let rest = tokio::time::timeout(Duration::from_secs(5), output.collect::<Vec<_>>())
            .await
            .expect("no process of the group holds the pipes open");
        assert!(rest.is_empty());
    }
}
