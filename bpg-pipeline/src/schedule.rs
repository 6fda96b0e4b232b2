//! When a DAG runs: cron schedules and presets, data intervals and logical dates, catchup.
//!
//! The maths follows Airflow's cron data-interval timetable: a run covers the data interval
//! `[start, end)` between two consecutive schedule times, is created once `end` has passed, and its
//! logical date is `start`. Without `catchup` only the latest complete interval is run; with it,
//! every interval since `start_date`. All times are UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// What a schedule string may be, for error messages.
const EXPECTED: &str = "a 5-field cron expression (minute hour day-of-month month day-of-week) \
                        or one of @once, @hourly, @daily, @weekly, @monthly, @yearly, @annually";

/// A schedule string that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    /// The schedule as written.
    pub expression: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid schedule {:?}: {}; expected {EXPECTED}",
            self.expression, self.message
        )
    }
}

impl std::error::Error for ScheduleError {}

/// When a DAG's runs are created.
///
/// ```
/// use bpg_pipeline::schedule::{DataInterval, Schedule};
/// use chrono::{TimeZone, Utc};
///
/// let daily: Schedule = "@daily".parse().unwrap();
/// let jan2 = Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap();
/// let interval = daily.interval_starting(jan2).unwrap();
/// assert_eq!(interval, DataInterval { start: jan2, end: Utc.with_ymd_and_hms(2025, 1, 3, 0, 0, 0).unwrap() });
/// assert!("0 25 * * *".parse::<Schedule>().is_err());
/// ```
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Runs at every time the cron expression matches (presets are cron expressions too).
    Cron {
        /// The expression as written (`0 2 * * *`, `@daily`).
        expression: String,
        /// The parsed expression.
        cron: Box<Cron>,
    },
    /// Runs once, at the start date (`@once`).
    Once,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Cron { expression: a, .. }, Schedule::Cron { expression: b, .. }) => a == b,
            (Schedule::Once, Schedule::Once) => true,
            _ => false,
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let error = |message: String| ScheduleError {
            expression: text.to_owned(),
            message,
        };
        let cron_text = match trimmed.to_ascii_lowercase().as_str() {
            "@once" => return Ok(Schedule::Once),
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => return Err(error("unknown preset".into())),
            "" => return Err(error("it is empty".into())),
            _ => trimmed,
        };
        let fields = cron_text.split_whitespace().count();
        if fields != 5 {
            return Err(error(format!("it has {fields} fields")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(cron_text)
            .map_err(|e| error(e.to_string()))?;
        Ok(Schedule::Cron {
            expression: trimmed.to_owned(),
            cron: Box::new(cron),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { expression, .. } => f.write_str(expression),
            Schedule::Once => f.write_str("@once"),
        }
    }
}

/// The span of data a run covers: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataInterval {
    /// Inclusive start; the run's logical date.
    pub start: DateTime<Utc>,
    /// Exclusive end; the run is created once this time has passed.
    pub end: DateTime<Utc>,
}

/// The next run a schedule asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DagRunInfo {
    /// The run's logical date (the data interval's start).
    pub logical_date: DateTime<Utc>,
    /// The data the run covers.
    pub data_interval: DataInterval,
    /// The run is created at or after this time (the data interval's end).
    pub run_after: DateTime<Utc>,
}

/// The bounds a DAG puts on its schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleBounds {
    /// No interval starts before this. Without it, `catchup` has nothing to catch up from and
    /// only the latest complete interval runs (`@once` runs at the first look).
    pub start_date: Option<DateTime<Utc>>,
    /// No interval starts after this.
    pub end_date: Option<DateTime<Utc>>,
    /// Run every interval since `start_date`, not only the latest one.
    pub catchup: bool,
}

/// The run id Airflow gives a scheduled run: `scheduled__<logical date>`.
pub fn scheduled_run_id(logical_date: DateTime<Utc>) -> String {
    format!(
        "scheduled__{}",
        logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Whether `run_id` names a run the schedule created (rather than a manual trigger).
pub fn is_scheduled_run_id(run_id: &str) -> bool {
    run_id.starts_with("scheduled__")
}

impl Schedule {
    /// The first schedule time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, .. } = self else {
            return None;
        };
        // Schedule times are whole seconds; a fractional `t` lies after its truncation.
        let base = t.trunc_subsecs(0);
        cron.find_next_occurrence(&base, false).ok()
    }

    /// The last schedule time strictly before `t`.
    pub fn prev_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, .. } = self else {
            return None;
        };
        let base = t.trunc_subsecs(0);
        cron.find_previous_occurrence(&base, base != t).ok()
    }

    /// `t` if it is a schedule time, else the next one.
    pub fn align_to_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, .. } = self else {
            return Some(t);
        };
        let base = t.trunc_subsecs(0);
        cron.find_next_occurrence(&base, base == t).ok()
    }

    /// `t` if it is a schedule time, else the previous one.
    pub fn align_to_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, .. } = self else {
            return Some(t);
        };
        let base = t.trunc_subsecs(0);
        cron.find_previous_occurrence(&base, true).ok()
    }

    /// The data interval that starts at schedule time `start` (for `@once`, the empty interval).
    pub fn interval_starting(&self, start: DateTime<Utc>) -> Option<DataInterval> {
        match self {
            Schedule::Once => Some(DataInterval { start, end: start }),
            Schedule::Cron { .. } => Some(DataInterval {
                start,
                end: self.next_after(start)?,
            }),
        }
    }

    /// Start of the latest interval that is complete at `now`.
    fn latest_complete_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last_start = self.prev_before(now)?;
        let next_start = self.next_after(last_start)?;
        if next_start == now {
            Some(last_start)
        } else {
            self.prev_before(last_start)
        }
    }

    /// The run that should follow `last` (the latest scheduled run's data interval, if any), as
    /// Airflow's timetable decides it; `None` when the schedule has no more runs. The run is due
    /// once `now` reaches its `run_after`.
    ///
    /// ```
    /// use bpg_pipeline::schedule::{Schedule, ScheduleBounds};
    /// use chrono::{TimeZone, Utc};
    ///
    /// let daily: Schedule = "@daily".parse().unwrap();
    /// let start_date = Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    /// let now = Utc.with_ymd_and_hms(2025, 1, 5, 10, 0, 0).unwrap();
    /// // Catchup: the first interval since the start date.
    /// let first = daily
    ///     .next_dagrun_info(None, &ScheduleBounds { start_date, end_date: None, catchup: true }, now)
    ///     .unwrap();
    /// assert_eq!(first.logical_date, start_date.unwrap());
    /// // No catchup: only the latest complete interval, [Jan 4, Jan 5).
    /// let latest = daily
    ///     .next_dagrun_info(None, &ScheduleBounds { start_date, end_date: None, catchup: false }, now)
    ///     .unwrap();
    /// assert_eq!(latest.logical_date, Utc.with_ymd_and_hms(2025, 1, 4, 0, 0, 0).unwrap());
    /// assert_eq!(latest.run_after, Utc.with_ymd_and_hms(2025, 1, 5, 0, 0, 0).unwrap());
    /// ```
    pub fn next_dagrun_info(
        &self,
        last: Option<&DataInterval>,
        bounds: &ScheduleBounds,
        now: DateTime<Utc>,
    ) -> Option<DagRunInfo> {
        let start = match self {
            Schedule::Once => {
                if last.is_some() {
                    return None;
                }
                bounds.start_date.unwrap_or(now)
            }
            Schedule::Cron { .. } => {
                let earliest = match bounds.start_date {
                    Some(start_date) if bounds.catchup => Some(self.align_to_next(start_date)?),
                    start_date => {
                        let latest = self.latest_complete_start(now)?;
                        match start_date {
                            Some(s) => Some(latest.max(self.align_to_next(s)?)),
                            None => Some(latest),
                        }
                    }
                };
                match (last, earliest) {
                    (Some(last), Some(earliest)) => self.align_to_prev(last.end)?.max(earliest),
                    (Some(last), None) => self.align_to_prev(last.end)?,
                    (None, Some(earliest)) => earliest,
                    (None, None) => return None,
                }
            }
        };
        if bounds.end_date.is_some_and(|end| start > end) {
            return None;
        }
        let data_interval = self.interval_starting(start)?;
        Some(DagRunInfo {
            logical_date: start,
            data_interval,
            run_after: data_interval.end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn bounds(start: Option<DateTime<Utc>>, catchup: bool) -> ScheduleBounds {
        ScheduleBounds {
            start_date: start,
            end_date: None,
            catchup,
        }
    }

    #[test]
    fn presets_are_the_cron_expressions_airflow_uses() {
        let cases = [
            ("@hourly", t(2025, 1, 1, 10, 30), t(2025, 1, 1, 11, 0)),
            ("@daily", t(2025, 1, 1, 10, 30), t(2025, 1, 2, 0, 0)),
            // 2025-01-01 is a Wednesday: the next Sunday midnight is the 5th.
            ("@weekly", t(2025, 1, 1, 10, 30), t(2025, 1, 5, 0, 0)),
            ("@monthly", t(2025, 1, 1, 10, 30), t(2025, 2, 1, 0, 0)),
            ("@yearly", t(2025, 1, 1, 10, 30), t(2026, 1, 1, 0, 0)),
            ("@annually", t(2025, 1, 1, 10, 30), t(2026, 1, 1, 0, 0)),
            ("30 2 * * 1-5", t(2025, 1, 3, 3, 0), t(2025, 1, 6, 2, 30)),
        ];
        for (text, from, next) in cases {
            let schedule: Schedule = text.parse().unwrap();
            assert_eq!(schedule.next_after(from), Some(next), "{text}");
            assert_eq!(schedule.to_string(), text);
        }
        assert_eq!("@ONCE".parse::<Schedule>().unwrap(), Schedule::Once);
    }

    #[test]
    fn bad_schedules_say_what_was_expected() {
        for (text, wanted) in [
            ("0 25 * * *", "invalid schedule \"0 25 * * *\""),
            ("@fortnightly", "unknown preset"),
            ("* * * *", "it has 4 fields"),
            ("0 0 * * * *", "it has 6 fields"),
            ("", "it is empty"),
        ] {
            let e = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
            assert!(e.contains("expected a 5-field cron expression"), "{e}");
        }
    }

    #[test]
    fn stepping_and_alignment_are_strict_and_whole_seconds() {
        let hourly: Schedule = "@hourly".parse().unwrap();
        let on = t(2025, 1, 1, 10, 0);
        let frac = on + chrono::Duration::milliseconds(500);
        assert_eq!(hourly.next_after(on), Some(t(2025, 1, 1, 11, 0)));
        assert_eq!(hourly.next_after(frac), Some(t(2025, 1, 1, 11, 0)));
        assert_eq!(hourly.prev_before(on), Some(t(2025, 1, 1, 9, 0)));
        assert_eq!(hourly.prev_before(frac), Some(on));
        assert_eq!(hourly.align_to_next(on), Some(on));
        assert_eq!(hourly.align_to_next(frac), Some(t(2025, 1, 1, 11, 0)));
        assert_eq!(hourly.align_to_prev(frac), Some(on));
        assert_eq!(hourly.align_to_prev(on), Some(on));
    }

    #[test]
    fn catchup_walks_every_interval_since_the_start_date() {
        let daily: Schedule = "@daily".parse().unwrap();
        // A start date between schedule times aligns to the next one.
        let b = bounds(Some(t(2025, 1, 1, 6, 0)), true);
        let now = t(2025, 1, 5, 10, 0);
        let mut last = None;
        let mut due = Vec::new();
        while let Some(info) = daily.next_dagrun_info(last.as_ref(), &b, now) {
            if info.run_after > now {
                assert_eq!(info.logical_date, t(2025, 1, 5, 0, 0));
                break;
            }
            assert_eq!(info.data_interval.start, info.logical_date);
            assert_eq!(info.run_after, info.data_interval.end);
            due.push(info.logical_date);
            last = Some(info.data_interval);
        }
        assert_eq!(
            due,
            vec![
                t(2025, 1, 2, 0, 0),
                t(2025, 1, 3, 0, 0),
                t(2025, 1, 4, 0, 0)
            ]
        );
    }

    #[test]
    fn without_catchup_only_the_latest_complete_interval_runs() {
        let daily: Schedule = "@daily".parse().unwrap();
        let b = bounds(Some(t(2025, 1, 1, 0, 0)), false);
        // Between boundaries: [Jan 4, Jan 5) is the latest complete interval.
        let info = daily
            .next_dagrun_info(None, &b, t(2025, 1, 5, 10, 0))
            .unwrap();
        assert_eq!(
            info.data_interval,
            DataInterval {
                start: t(2025, 1, 4, 0, 0),
                end: t(2025, 1, 5, 0, 0)
            }
        );
        // On a boundary, the interval that just ended.
        let info = daily
            .next_dagrun_info(None, &b, t(2025, 1, 5, 0, 0))
            .unwrap();
        assert_eq!(info.logical_date, t(2025, 1, 4, 0, 0));
        // After a long pause, an old last run does not bring back the missed intervals.
        let old = DataInterval {
            start: t(2025, 1, 1, 0, 0),
            end: t(2025, 1, 2, 0, 0),
        };
        let info = daily
            .next_dagrun_info(Some(&old), &b, t(2025, 1, 5, 10, 0))
            .unwrap();
        assert_eq!(info.logical_date, t(2025, 1, 4, 0, 0));
        // Once the latest ran, the next one is due at the end of the current interval.
        let info = daily
            .next_dagrun_info(Some(&info.data_interval), &b, t(2025, 1, 5, 10, 0))
            .unwrap();
        assert_eq!(info.logical_date, t(2025, 1, 5, 0, 0));
        assert_eq!(info.run_after, t(2025, 1, 6, 0, 0));
        // A start date in the future holds the first run back.
        let b = bounds(Some(t(2025, 2, 1, 0, 0)), false);
        let info = daily
            .next_dagrun_info(None, &b, t(2025, 1, 5, 10, 0))
            .unwrap();
        assert_eq!(info.logical_date, t(2025, 2, 1, 0, 0));
        // Without a start date, catchup has nothing to catch up from.
        let info = daily
            .next_dagrun_info(None, &bounds(None, true), t(2025, 1, 5, 10, 0))
            .unwrap();
        assert_eq!(info.logical_date, t(2025, 1, 4, 0, 0));
    }

    #[test]
    fn end_date_and_once_stop_the_schedule() {
        let daily: Schedule = "@daily".parse().unwrap();
        let b = ScheduleBounds {
            start_date: Some(t(2025, 1, 1, 0, 0)),
            end_date: Some(t(2025, 1, 2, 0, 0)),
            catchup: true,
        };
        let now = t(2025, 1, 10, 0, 0);
        let first = daily.next_dagrun_info(None, &b, now).unwrap();
        let second = daily
            .next_dagrun_info(Some(&first.data_interval), &b, now)
            .unwrap();
        assert_eq!(second.logical_date, t(2025, 1, 2, 0, 0));
        assert_eq!(
            daily.next_dagrun_info(Some(&second.data_interval), &b, now),
            None
        );

        let once = Schedule::Once;
        let b = bounds(Some(t(2025, 1, 3, 0, 0)), false);
        let info = once.next_dagrun_info(None, &b, now).unwrap();
        assert_eq!(info.logical_date, t(2025, 1, 3, 0, 0));
        assert_eq!(info.run_after, t(2025, 1, 3, 0, 0));
        assert_eq!(
            once.next_dagrun_info(Some(&info.data_interval), &b, now),
            None
        );
        let info = once
            .next_dagrun_info(None, &bounds(None, false), now)
            .unwrap();
        assert_eq!(info.logical_date, now);
    }

    #[test]
    fn scheduled_run_ids_are_recognised() {
        let id = scheduled_run_id(t(2025, 1, 4, 0, 0));
        assert_eq!(id, "scheduled__2025-01-04T00:00:00Z");
        assert!(is_scheduled_run_id(&id));
        assert!(!is_scheduled_run_id("manual__2025-01-04T00:00:00Z"));
    }
}
