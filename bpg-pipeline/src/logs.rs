//! Stored task logs: every line of every try (a Spark driver's log, a command's output, the
//! runner's own lines about the try), kept after the run and across restarts, and read from the
//! end so that a huge log opens on its last lines at once.
//!
//! One append-only file per task try, `<dir>/<dag_id>/<run_id>/<task_id>/<try>.log`, one line
//! per log line (a line's own newlines become spaces). Names are percent-encoded where a file
//! name could not hold them, so no id reaches outside `dir`. A line is written with one `write`
//! call as it arrives, so a reader following the file, or a runner killed a moment later, loses
//! nothing that was handed over.
//!
//! Reading: [`TaskLogs::tail`] reads backwards from the end in blocks until it has the lines
//! asked for (a 1 GB log costs what its last lines cost); [`TaskLogs::read`] reads forward from
//! a byte offset, whole lines only, and answers the offset to continue from: what a continuation
//! token or a live follower needs. [`TaskLogs::remove_older_than`] applies a retention.
//!
//! ```
//! use bpg_pipeline::logs::{LogKey, TaskLogs};
//! let dir = tempfile::tempdir().unwrap();
//! let logs = TaskLogs::open(dir.path()).unwrap();
//! let key = LogKey::new("healthtech_daily", "manual__2026-12-06T10:00:00+00:00", "calculate_pi", 1);
//! for i in 0..1000 {
//!     logs.append(&key, &format!("line {i}")).unwrap();
//! }
//! let tail = logs.tail(&key, 2).unwrap();
//! assert_eq!(tail.lines, ["line 998", "line 999"]);
//! // Read on from where the tail ends: nothing new yet.
//! assert!(logs.read(&key, tail.end, 1 << 20).unwrap().lines.is_empty());
//! logs.append(&key, "line 1000").unwrap();
//! assert_eq!(logs.read(&key, tail.end, 1 << 20).unwrap().lines, ["line 1000"]);
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Which log: a try of a task in a run of a DAG.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogKey {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// The try, from 1.
    pub try_number: u32,
}

impl LogKey {
    /// The log of try `try_number` of `task_id` in run `run_id` of `dag_id`.
    pub fn new(
        dag_id: impl Into<String>,
        run_id: impl Into<String>,
        task_id: impl Into<String>,
        try_number: u32,
    ) -> Self {
        LogKey {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
            task_id: task_id.into(),
            try_number,
        }
    }
}

/// Some lines of a log and where they are in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    /// The lines, oldest first, without their newlines.
    pub lines: Vec<String>,
    /// Byte offset of the first line.
    pub start: u64,
    /// Byte offset just past the last line: where to read on from.
    pub end: u64,
    /// The log's size when it was read.
    pub size: u64,
}

/// Logs kept under one directory; see the [module docs](self). Cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskLogs {
    dir: PathBuf,
    /// Files being written, kept open while their try runs.
    open: Arc<Mutex<HashMap<LogKey, Arc<File>>>>,
}

/// A name as one path segment: ASCII letters, digits, `-`, `_` and `.` as they are, anything else
/// (and a name of only dots) percent-encoded.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() || out.bytes().all(|b| b == b'.') {
        out = out.replace('.', "%2E");
        if out.is_empty() {
            out.push_str("%00");
        }
    }
    out
}

/// Blocks read backwards at a time by [`TaskLogs::tail`].
const TAIL_BLOCK: u64 = 64 * 1024;

impl TaskLogs {
    /// Logs under `dir` (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> io::Result<TaskLogs> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        Ok(TaskLogs {
            dir,
            open: Arc::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run_dir(&self, dag_id: &str, run_id: &str) -> PathBuf {
        self.dir.join(segment(dag_id)).join(segment(run_id))
    }

    /// The file of a log.
    pub fn path(&self, key: &LogKey) -> PathBuf {
        self.run_dir(&key.dag_id, &key.run_id)
            .join(segment(&key.task_id))
            .join(format!("{}.log", key.try_number))
    }

    fn writer(&self, key: &LogKey) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(key) {
            return Ok(f.clone());
        }
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = Arc::new(OpenOptions::new().create(true).append(true).open(path)?);
        open.insert(key.clone(), file.clone());
        Ok(file)
    }

    /// Appends a line (its own newlines become spaces).
    pub fn append(&self, key: &LogKey, line: &str) -> io::Result<()> {
        let file = self.writer(key)?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend(
            line.bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        bytes.push(b'\n');
        // One write of the whole line: appends from several writers never interleave within it.
        (&*file).write_all(&bytes)
    }

    /// The try is over: its file is closed (it stays readable).
    pub fn finish(&self, key: &LogKey) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The tries of a task that have a log, in order.
    pub fn tries(&self, dag_id: &str, run_id: &str, task_id: &str) -> Vec<u32> {
        let dir = self.run_dir(dag_id, run_id).join(segment(task_id));
        let mut tries: Vec<u32> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        tries.sort_unstable();
        tries
    }

    /// The last `lines` lines of a log (fewer when it has fewer); an empty page when the log
    /// does not exist.
    pub fn tail(&self, key: &LogKey, lines: usize) -> io::Result<LogPage> {
        let Some(mut file) = self.reader(key)? else {
            return Ok(LogPage::default());
        };
        let size = file.metadata()?.len();
        // Read back block by block until `lines` newlines precede the last line's end.
        let mut start = size;
        let mut buf: Vec<u8> = Vec::new();
        let mut newlines = 0usize;
        while start > 0 && newlines <= lines {
            let from = start.saturating_sub(TAIL_BLOCK);
            let mut block = vec![0u8; (start - from) as usize];
            file.seek(SeekFrom::Start(from))?;
            file.read_exact(&mut block)?;
            newlines += block.iter().filter(|b| **b == b'\n').count();
            block.extend_from_slice(&buf);
            buf = block;
            start = from;
        }
        // Only whole lines: a line still being written (no newline yet) is left for later.
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(whole);
        let end = start + whole as u64;
        let mut all: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        all.pop(); // after the last newline
        // The first piece may be a partial line when the read began mid-file.
        let skip = all.len().saturating_sub(lines);
        let first_offset = start + all[..skip].iter().map(|l| l.len() as u64 + 1).sum::<u64>();
        Ok(LogPage {
            lines: all[skip..]
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
            start: first_offset,
            end,
            size,
        })
    }

    /// Whole lines from byte `from` on, about `max_bytes` of them (at least one line when there is
    /// one); an empty page when the log does not exist or has nothing new.
    pub fn read(&self, key: &LogKey, from: u64, max_bytes: usize) -> io::Result<LogPage> {
        let Some(mut file) = self.reader(key)? else {
            return Ok(LogPage {
                start: from,
                end: from,
                ..LogPage::default()
            });
        };
        let size = file.metadata()?.len();
        let from = from.min(size);
        file.seek(SeekFrom::Start(from))?;
        let want = (size - from).min(max_bytes.max(1) as u64);
        let mut buf = vec![0u8; want as usize];
        file.read_exact(&mut buf)?;
        let mut whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole == 0 && want < size - from {
            // One line longer than `max_bytes`: read on to its end.
            let mut rest = Vec::new();
            let mut byte = [0u8; 8192];
            loop {
                let n = file.read(&mut byte)?;
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&byte[..n]);
                if let Some(i) = byte[..n].iter().position(|b| *b == b'\n') {
                    rest.truncate(rest.len() - n + i + 1);
                    break;
                }
            }
            buf.extend(rest);
            whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        }
        buf.truncate(whole);
        let mut lines: Vec<String> = buf
            .split(|b| *b == b'\n')
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        lines.pop();
        Ok(LogPage {
            lines,
            start: from,
            end: from + whole as u64,
            size,
        })
    }

    fn reader(&self, key: &LogKey) -> io::Result<Option<File>> {
        match File::open(self.path(key)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the logs of runs not written to for `age` (the retention); how many runs' logs
    /// were removed. Logs being written are kept.
    pub fn remove_older_than(&self, age: Duration) -> io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let writing: Vec<PathBuf> = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|k| self.run_dir(&k.dag_id, &k.run_id))
            .collect();
        let mut removed = 0;
        for dag in std::fs::read_dir(&self.dir)?.flatten() {
            if !dag.path().is_dir() {
                continue;
            }
            for run in std::fs::read_dir(dag.path())?.flatten() {
                let path = run.path();
                if writing.contains(&path) || newest_write(&path)? >= cutoff {
                    continue;
                }
                std::fs::remove_dir_all(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// When a log under `dir` was last written (the epoch when there is none).
fn newest_write(dir: &Path) -> io::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_write(&path)?
        } else {
            entry.metadata()?.modified()?
        };
        newest = newest.max(t);
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(task: &str) -> LogKey {
        LogKey::new("dag", "run 1", task, 1)
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let logs = TaskLogs::open(dir.path()).unwrap();
        for name in ["..", ".", "../../etc", "a/b", "", "x\0y"] {
            let k = LogKey::new(name, name, name, 1);
            let path = logs.path(&k);
            assert!(path.starts_with(dir.path()), "{name:?}: {}", path.display());
            assert!(
                path.components().all(|c| matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::RootDir
                )),
                "{name:?}: {}",
                path.display()
            );
            logs.append(&k, "ok").unwrap();
        }
        assert_eq!(
            segment("manual__2026-12-06T10:00:00+00:00"),
            "manual__2026-12-06T10%3A00%3A00%2B00%3A00"
        );
    }

    #[test]
    fn the_tail_is_read_from_the_end_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let logs = TaskLogs::open(dir.path()).unwrap();
        let k = key("t");
        // Lines long enough that the tail spans several blocks.
        let line = |i: usize| format!("{i:06} {}", "x".repeat(3_000));
        for i in 0..200 {
            logs.append(&k, &line(i)).unwrap();
        }
        for n in [0, 1, 2, 25, 199, 200, 500] {
            let page = logs.tail(&k, n).unwrap();
            let expected: Vec<String> = (200 - n.min(200)..200).map(line).collect();
            assert_eq!(page.lines, expected, "tail of {n}");
            assert_eq!(page.end, page.size);
            // The page's start is where its first line begins.
            let from_start = logs.read(&k, page.start, usize::MAX).unwrap();
            assert_eq!(from_start.lines, expected);
        }
        assert_eq!(logs.tail(&key("missing"), 10).unwrap(), LogPage::default());
    }

    #[test]
    fn reading_on_gives_whole_lines_and_where_to_continue() {
        let dir = tempfile::tempdir().unwrap();
        let logs = TaskLogs::open(dir.path()).unwrap();
        let k = key("t");
        logs.append(&k, "one").unwrap();
        logs.append(&k, "two\nlines").unwrap();
        let page = logs.read(&k, 0, 5).unwrap();
        assert_eq!(page.lines, ["one"], "at most about 5 bytes, whole lines");
        let page = logs.read(&k, page.end, 2).unwrap();
        assert_eq!(
            page.lines,
            ["two lines"],
            "a line longer than the budget comes whole"
        );
        // A half-written line is not read until it ends.
        let path = logs.path(&k);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"half").unwrap();
        let next = logs.read(&k, page.end, 1 << 20).unwrap();
        assert!(next.lines.is_empty());
        assert_eq!(next.end, page.end);
        assert_eq!(logs.tail(&k, 1).unwrap().lines, ["two lines"]);
        f.write_all(b" done\n").unwrap();
        assert_eq!(
            logs.read(&k, page.end, 1 << 20).unwrap().lines,
            ["half done"]
        );
        // Past the end: nothing, no error.
        assert!(logs.read(&k, 1 << 40, 10).unwrap().lines.is_empty());
        assert_eq!(logs.tries("dag", "run 1", "t"), [1]);
    }

    #[test]
    fn retention_removes_old_runs_and_keeps_runs_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let logs = TaskLogs::open(dir.path()).unwrap();
        let old = LogKey::new("dag", "old", "t", 1);
        logs.append(&old, "x").unwrap();
        logs.finish(&old);
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7_200);
        File::options()
            .write(true)
            .open(logs.path(&old))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let recent = LogKey::new("dag", "recent", "t", 1);
        logs.append(&recent, "x").unwrap();
        logs.finish(&recent);
        let live = LogKey::new("dag", "live", "t", 1);
        logs.append(&live, "x").unwrap();
        File::options()
            .write(true)
            .open(logs.path(&live))
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        assert_eq!(
            logs.remove_older_than(Duration::from_secs(3_600)).unwrap(),
            1
        );
        assert_eq!(logs.tail(&recent, 1).unwrap().lines, ["x"]);
        assert!(
            logs.tail(&LogKey::new("dag", "old", "t", 1), 1)
                .unwrap()
                .lines
                .is_empty()
        );
        assert_eq!(
            logs.tail(&live, 1).unwrap().lines,
            ["x"],
            "being written: kept"
        );
    }
}
