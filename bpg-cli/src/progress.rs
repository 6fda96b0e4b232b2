//! Live progress of a pipeline run, from the runner's event stream: a per-task display on a
//! terminal, plain timestamped lines otherwise, and the summary table at the end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bpg_pipeline::{Event, EventStream, RunReport, TaskState};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// One timestamped line per event on stderr (logs, CI).
    Plain,
    /// A live line per task on stderr (indicatif).
    Terminal,
}

/// When each task started running and finished, as seen from the events.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    started: HashMap<String, Instant>,
    finished: HashMap<String, Instant>,
}

impl Timings {
    fn observe(&mut self, task: &str, state: TaskState) {
        let now = Instant::now();
        if state == TaskState::Running {
            self.started.entry(task.to_owned()).or_insert(now);
        }
        if state.is_finished() {
            self.finished.insert(task.to_owned(), now);
        }
    }

    /// From the first attempt's start to the end (retries included).
    pub fn duration(&self, task: &str) -> Option<Duration> {
        let start = self.started.get(task)?;
        let end = self
            .finished
            .get(task)
            .copied()
            .unwrap_or_else(Instant::now);
        Some(end.saturating_duration_since(*start))
    }
}

/// Consumes the run's events until the run ends, showing them as `mode` says.
pub async fn display(mut events: EventStream, task_ids: Vec<String>, mode: Mode) -> Timings {
    let mut timings = Timings::default();
    let mut terminal = (mode == Mode::Terminal).then(|| TerminalView::new(&task_ids));
    while let Some(event) = events.recv().await {
        if let Event::TaskState { task_id, state, .. } = &event {
            timings.observe(task_id, *state);
        }
        match mode {
            Mode::Quiet => {}
            Mode::Plain => {
                if let Some(line) = plain_line(&event) {
                    eprintln!("{} {line}", timestamp());
                }
            }
            Mode::Terminal => {
                if let Some(view) = terminal.as_mut() {
                    view.show(&event, &timings);
                }
            }
        }
    }
    if let Some(view) = terminal {
        view.finish();
    }
    if events.missed() > 0 && mode != Mode::Quiet {
        // The runner never waits for a slow display; say what was skipped rather than hide it.
        eprintln!("({} progress events were not shown)", events.missed());
    }
    timings
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The plain line for an event (none for events that say nothing new).
fn plain_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { dag_id, run_id } => format!("run {dag_id} {run_id} started"),
        Event::TaskState {
            task_id,
            state,
            try_number,
            message,
        } => {
            let mut line = format!("{task_id} {state}");
            if *try_number > 0 {
                let _ = write!(line, " (try {try_number})");
            }
            if let Some(m) = message {
                let _ = write!(line, ": {m}");
            }
            line
        }
        Event::TaskRetry {
            task_id,
            try_number,
            delay,
            error,
        } => format!(
            "{task_id} try {try_number} failed, retrying in {}: {error}",
            humantime::format_duration(*delay)
        ),
        Event::TaskSubmitted {
            task_id,
            submission_id,
            connection,
            ..
        } => format!("{task_id} submitted {submission_id} via {connection}"),
        Event::TaskLog { task_id, line, .. } => format!("[{task_id}] {line}"),
        Event::RunFinished { state } => format!("run finished: {state}"),
        _ => return None,
    })
}

struct TerminalView {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    running: ProgressStyle,
    done: ProgressStyle,
}

impl TerminalView {
    fn new(task_ids: &[String]) -> Self {
        let width = task_ids.iter().map(String::len).max().unwrap_or(4);
        let running = ProgressStyle::with_template(&format!(
            "{{spinner:.cyan}} {{prefix:<{width}}} {{msg}} [{{elapsed}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let done = ProgressStyle::with_template(&format!("  {{prefix:<{width}}} {{msg}}"))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let multi = MultiProgress::new();
        let mut bars = HashMap::new();
        for id in task_ids {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(done.clone());
            bar.set_prefix(id.clone());
            bar.set_message("none");
            bars.insert(id.clone(), bar);
        }
        TerminalView {
            multi,
            bars,
            running,
            done,
        }
    }

    fn show(&mut self, event: &Event, timings: &Timings) {
        match event {
            Event::TaskState {
                task_id,
                state,
                try_number,
                message,
            } => {
                let Some(bar) = self.bars.get(task_id.as_ref()) else {
                    return;
                };
                let tries = if *try_number > 1 {
                    format!(" (try {try_number})")
                } else {
                    String::new()
                };
                let why = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                if *state == TaskState::Running {
                    bar.set_style(self.running.clone());
                    bar.reset_elapsed();
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar.set_message(format!("running{tries}"));
                } else if state.is_finished() {
                    let took = timings
                        .duration(task_id)
                        .map(|d| format!(" in {}", short_duration(d)))
                        .unwrap_or_default();
                    bar.set_style(self.done.clone());
                    bar.finish_with_message(format!("{state}{took}{tries}{why}"));
                } else {
                    bar.set_message(format!("{state}{tries}{why}"));
                }
            }
            Event::TaskRetry {
                task_id,
                try_number,
                delay,
                error,
            } => {
                if let Some(bar) = self.bars.get(task_id.as_ref()) {
                    bar.set_message(format!(
                        "up_for_retry (try {try_number} failed: {error}; next in {})",
                        humantime::format_duration(*delay)
                    ));
                }
            }
            Event::TaskLog { task_id, line, .. } => {
                let _ = self.multi.println(format!("[{task_id}] {line}"));
            }
            Event::TaskSubmitted {
                task_id,
                submission_id,
                connection,
                ..
            } => {
                let _ = self.multi.println(format!(
                    "[{task_id}] submitted {submission_id} via {connection}"
                ));
            }
            _ => {}
        }
    }

    fn finish(self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

/// Milliseconds under ten seconds, tenths of seconds above.
pub fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The table printed after a run: one row per task in declaration order, then the run's state.
pub fn summary(report: &RunReport, task_ids: &[String], timings: &Timings) -> String {
    let width = task_ids.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<15}  {:>5}  {:>9}  SUBMISSION\n",
        "TASK", "STATE", "TRIES", "DURATION"
    );
    for id in task_ids {
        let Some(task) = report.tasks.get(id) else {
            continue;
        };
        let took = timings
            .duration(id)
            .map(short_duration)
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "{id:<width$}  {:<15}  {:>5}  {took:>9}  {}",
            task.state.as_str(),
            task.try_number,
            task.submission_id.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        out,
        "run {} {}: {}",
        report.dag_id, report.run_id, report.state
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bpg_pipeline::{RunState, TaskReport};

    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_millis(302)), "302ms");
        assert_eq!(short_duration(Duration::from_millis(12_345)), "12.3s");
    }

    #[test]
    fn plain_lines_prefix_logs_with_the_task_id() {
        let log = Event::TaskLog {
            task_id: Arc::from("pi"),
            try_number: 1,
            line: "Pi is roughly 3.14".into(),
        };
        assert_eq!(plain_line(&log).as_deref(), Some("[pi] Pi is roughly 3.14"));
        let retry = Event::TaskRetry {
            task_id: Arc::from("pi"),
            try_number: 1,
            delay: Duration::from_secs(30),
            error: "boom".into(),
        };
        assert_eq!(
            plain_line(&retry).as_deref(),
            Some("pi try 1 failed, retrying in 30s: boom")
        );
    }

    #[test]
    fn summary_lists_tasks_in_declaration_order() {
        let task = |state, try_number, submission_id: Option<&str>| TaskReport {
            state,
            try_number,
            submission_id: submission_id.map(str::to_owned),
            backend: None,
        };
        let report = RunReport {
            dag_id: "d".into(),
            run_id: "r".into(),
            state: RunState::Failed,
            tasks: BTreeMap::from([
                ("a".to_owned(), task(TaskState::Failed, 3, Some("sim-1"))),
                ("b".to_owned(), task(TaskState::UpstreamFailed, 0, None)),
            ]),
        };
        let ids = vec!["b".to_owned(), "a".to_owned()];
        let text = summary(&report, &ids, &Timings::default());
        assert_eq!(
            text,
            "TASK  STATE            TRIES   DURATION  SUBMISSION\n\
             b     upstream_failed      0          -  -\n\
             a     failed               3          -  sim-1\n\
             run d r: failed\n"
        );
    }
}
