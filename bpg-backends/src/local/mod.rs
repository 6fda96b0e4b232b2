//! [`LocalSparkBackend`]: runs jobs with `spark-submit --master local[*]` on this machine.
//!
//! Meant for development, CI and small jobs: the same [`SparkJob`] that goes to a cluster runs
//! in-process-group here, its driver output (stdout and stderr, interleaved as they arrive) is the
//! job's log, the exit code is its state, and cancel ends the whole process group (the JVM and the
//! Python driver it starts).
//!
//! ```no_run
//! use bpg_backends::local::LocalSparkBackend;
//! use bpg_core::{AppType, BackendExt, SparkJob, SubmitOptions, WaitOptions};
//!
//! # #[tokio::main] async fn main() -> bpg_core::Result<()> {
//! let local = LocalSparkBackend::builder().master("local[2]").build()?;
//! let job = SparkJob::new("pi", AppType::Python, "3.5", "/opt/jobs/pi.py").with_arguments(["10"]);
//! let (_, status) = local.submit_and_wait(&job, &SubmitOptions::new(), &WaitOptions::default()).await?;
//! println!("{}: {:?}", status.native_state, status.message);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bpg_core::{
    Backend, Capabilities, Error, IdempotencyKey, JobId, JobStatus, LogOptions, LogStream, Result,
    SparkJob, Submission, SubmitOptions,
};

mod discover;
mod process;

use process::LocalJob;

/// Runs each job as a `spark-submit --master local[*]` process on this machine.
///
/// Idempotency keys are honoured for the backend's lifetime (a second submit with a key returns
/// the first run); they are not persisted, so [`Capabilities::idempotent_submit`] is false.
/// Dropping the backend kills the runs it still has going.
#[derive(Clone)]
pub struct LocalSparkBackend {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    spark_submit: PathBuf,
    master: String,
    env: Vec<(OsString, OsString)>,
    working_dir: Option<PathBuf>,
    kill_grace: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, Arc<LocalJob>>,
    order: Vec<JobId>,
    by_key: HashMap<IdempotencyKey, JobId>,
    next_seq: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for job in state.jobs.values() {
            job.kill();
        }
    }
}

impl fmt::Debug for LocalSparkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Environment values may hold secrets: show only their names.
        let env: Vec<_> = self.inner.env.iter().map(|(k, _)| k).collect();
        f.debug_struct("LocalSparkBackend")
            .field("name", &self.inner.name)
            .field("spark_submit", &self.inner.spark_submit)
            .field("master", &self.inner.master)
            .field("env", &env)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LocalSparkBackend`].
#[derive(Clone, Debug)]
pub struct LocalSparkBackendBuilder {
    name: String,
    spark_submit: Option<PathBuf>,
    master: String,
    env: Vec<(OsString, OsString)>,
    working_dir: Option<PathBuf>,
    kill_grace: Duration,
}

impl Default for LocalSparkBackendBuilder {
    fn default() -> Self {
        LocalSparkBackendBuilder {
            name: "local".into(),
            spark_submit: None,
            master: "local[*]".into(),
            env: Vec::new(),
            working_dir: None,
            kill_grace: Duration::from_secs(10),
        }
    }
}

impl LocalSparkBackendBuilder {
    /// The backend's name (default `local`); job ids start with it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Uses this `spark-submit` instead of looking for one.
    pub fn spark_submit(mut self, path: impl Into<PathBuf>) -> Self {
        self.spark_submit = Some(path.into());
        self
    }

    /// The `--master` URL (default `local[*]`; `local[2]` keeps a shared machine usable).
    pub fn master(mut self, master: impl Into<String>) -> Self {
        self.master = master.into();
        self
    }

    /// Sets an environment variable for every run (e.g. `SPARK_LOCAL_IP`, `JAVA_HOME`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs spark-submit in this directory (default: the current one).
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// How long a cancelled run gets after SIGTERM before its group is killed (default 10 s).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The backend. Without an explicit path, `spark-submit` is looked up in `$SPARK_HOME/bin`,
    /// then on `PATH`, then inside the `pyspark` package of the `python3` on `PATH`.
    pub fn build(self) -> Result<LocalSparkBackend> {
        let mut env = self.env;
        let spark_submit = match self.spark_submit {
            Some(path) => path,
            None => {
                let found = discover::find_spark_submit(
                    std::env::var_os("SPARK_HOME").as_deref(),
                    std::env::var_os("PATH").as_deref(),
                )?;
                // A pip-installed Spark runs Python drivers with the Python it belongs to, unless told otherwise.
                if let Some(python) = found.python {
                    let set = std::env::var_os("PYSPARK_PYTHON").is_some()
                        || env.iter().any(|(k, _)| k == "PYSPARK_PYTHON");
                    if !set {
                        env.push(("PYSPARK_PYTHON".into(), python.into()));
                    }
                }
                found.spark_submit
            }
        };
        Ok(LocalSparkBackend {
            inner: Arc::new(Inner {
                name: self.name,
                spark_submit,
                master: self.master,
                env,
                working_dir: self.working_dir,
                kill_grace: self.kill_grace,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

impl LocalSparkBackend {
    /// A backend with the defaults (`local[*]`, spark-submit looked up as [`LocalSparkBackendBuilder::build`] says).
    pub fn new() -> Result<Self> {
        LocalSparkBackendBuilder::default().build()
    }

    /// A builder with the defaults.
    pub fn builder() -> LocalSparkBackendBuilder {
        LocalSparkBackendBuilder::default()
    }

    /// The `spark-submit` this backend runs.
    pub fn spark_submit_path(&self) -> &std::path::Path {
        &self.inner.spark_submit
    }

    /// Every run this backend started, oldest first.
    pub fn submissions(&self) -> Vec<Submission> {
        let state = self.lock();
        state
            .order
            .iter()
            .filter_map(|id| state.jobs.get(id))
            .map(|job| job.submission.clone())
            .collect()
    }

    /// The process id of a run's `spark-submit`, which is also the id of its process group.
    pub fn process_id(&self, id: &JobId) -> Option<u32> {
        self.lock().jobs.get(id).map(|job| job.group.id())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn job(&self, id: &JobId) -> Result<Arc<LocalJob>> {
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("local Spark run {id}"),
            })
    }
}

#[async_trait]
impl Backend for LocalSparkBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        caps.idempotent_submit = false;
        caps
    }

    async fn submit(&self, job: &SparkJob, options: &SubmitOptions) -> Result<Submission> {
        let args = bpg_core::formats::to_spark_submit_args(job, &self.inner.master)?;
        // The lock is held through the spawn so two submits with one key cannot both start a run.
        let mut state = self.lock();
        if let Some(key) = &options.idempotency_key
            && let Some(existing) = state.by_key.get(key).and_then(|id| state.jobs.get(id))
        {
            return Ok(existing.submission.clone());
        }
        state.next_seq += 1;
        let id = JobId::new(format!("{}-{:06}", self.inner.name, state.next_seq));
        let mut submission = Submission::new(id.clone(), self.inner.name.clone());
        submission.cluster = Some(self.inner.master.clone());
        submission.idempotency_key = options.idempotency_key.clone();

        let mut command = tokio::process::Command::new(&self.inner.spark_submit);
        command.args(&args).envs(self.inner.env.iter().cloned());
        if let Some(dir) = &self.inner.working_dir {
            command.current_dir(dir);
        }
        // Not the arguments: `--conf` values may carry credentials.
        tracing::debug!(backend = %self.inner.name, job = %id, app = ?job.main_application_file, "starting spark-submit");
        let run = LocalJob::spawn(command, submission.clone(), self.inner.kill_grace)?;
        state.jobs.insert(id.clone(), run);
        state.order.push(id.clone());
        if let Some(key) = &options.idempotency_key {
            state.by_key.insert(key.clone(), id);
        }
        Ok(submission)
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        Ok(self.job(id)?.status())
    }

    async fn logs(&self, id: &JobId, options: &LogOptions) -> Result<LogStream> {
        Ok(self.job(id)?.logs(options))
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.job(id)?.cancel(self.inner.kill_grace);
        Ok(())
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Submission>> {
        let state = self.lock();
        Ok(state
            .by_key
            .get(key)
            .and_then(|id| state.jobs.get(id))
            .map(|job| job.submission.clone()))
    }

    async fn next_status(
        &self,
        id: &JobId,
        previous: Option<&JobStatus>,
        poll_interval: Duration,
    ) -> Result<JobStatus> {
        Ok(self.job(id)?.next_status(previous, poll_interval).await)
    }
}

#[cfg(test)]
mod tests;
