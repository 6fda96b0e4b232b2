//! Templating of application files, arguments and commands with minijinja: `ds`, `ts`, `run_id`,
//! `dag_id`, `task_id`, `try_number`, `params` and `xcom(task, key)`, plus Airflow's
//! `task_instance`/`ti` (`task_id`, `dag_id`, `run_id`, `try_number`) so templates written for
//! Airflow (`spark-pi-{{ ds }}-{{ task_instance.try_number }}`) render the same.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::context::{RunInfo, XComs};

/// True when `text` contains template syntax (plain strings skip rendering entirely).
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A JSON value as a template value.
fn json_to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

/// One run's template environment (its `xcom()` reads the run's XCom).
pub(crate) struct Templates {
    env: Environment<'static>,
    run: Arc<RunInfo>,
}

impl Templates {
    pub(crate) fn new(run: Arc<RunInfo>, xcoms: Arc<XComs>) -> Self {
        let mut env = Environment::new();
        // A misspelt variable is an error, not an empty string in a Spark argument.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_function(
            "xcom",
            move |task: String, key: Option<String>| -> Result<Value, minijinja::Error> {
                let key = key.unwrap_or_else(|| "return_value".to_owned());
                match xcoms.pull(&task, &key) {
                    Some(value) => Ok(json_to_value(&value)),
                    None => Err(minijinja::Error::new(
                        ErrorKind::UndefinedError,
                        format!("no XCom value {key:?} from task {task:?}"),
                    )),
                }
            },
        );
        Templates { env, run }
    }

    fn context(&self, task_id: &str, try_number: u32) -> Value {
        let run = &self.run;
        let task_instance = minijinja::context! {
            task_id => task_id,
            dag_id => run.dag_id.as_ref(),
            run_id => run.run_id.as_ref(),
            try_number => try_number,
        };
        minijinja::context! {
            task_instance => task_instance.clone(),
            ti => task_instance,
            ds => run.logical_date.format("%Y-%m-%d").to_string(),
            ds_nodash => run.logical_date.format("%Y%m%d").to_string(),
            ts => run.logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            logical_date => run.logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            run_id => run.run_id.as_ref(),
            dag_id => run.dag_id.as_ref(),
            task_id => task_id,
            try_number => try_number,
            params => Value::from_pairs(run.params.iter().map(|(k, v)| (k.as_str(), json_to_value(v)))),
        }
    }

    /// Renders `text` for one task attempt; plain text is returned as is.
    pub(crate) fn render<'a>(
        &self,
        text: &'a str,
        task_id: &str,
        try_number: u32,
    ) -> Result<Cow<'a, str>, String> {
        if !is_template(text) {
            return Ok(Cow::Borrowed(text));
        }
        self.env
            .render_str(text, self.context(task_id, try_number))
            .map(Cow::Owned)
            .map_err(|e| {
                // A whole application file is too long to quote; its line is in `e`.
                let mut message = if text.len() > 120 || text.contains('\n') {
                    format!("template: {e}")
                } else {
                    format!("template {text:?}: {e}")
                };
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                message
            })
    }

    /// Renders every string inside a JSON value (keys stay as they are).
    pub(crate) fn render_json(
        &self,
        value: &mut serde_json::Value,
        task_id: &str,
        try_number: u32,
    ) -> Result<(), String> {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(rendered) = self.render(s, task_id, try_number)? {
                    *s = rendered;
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.render_json(item, task_id, try_number)?;
                }
            }
            serde_json::Value::Object(map) => {
                for (_, item) in map.iter_mut() {
                    self.render_json(item, task_id, try_number)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn templates() -> (Templates, Arc<XComs>) {
        let dag = crate::Dag::builder("daily")
            .task(crate::Task::empty("pi"))
            .task(crate::Task::empty("stats"))
            .build()
            .unwrap();
        let xcoms = Arc::new(XComs::new(Arc::new(crate::scheduler::Graph::new(&dag))));
        let mut params = serde_json::Map::new();
        params.insert("region".into(), "us-west-2".into());
        let run = Arc::new(RunInfo {
            dag_id: "daily".into(),
            run_id: "manual__2025-05-01T00:00:00Z".into(),
            logical_date: chrono::Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap(),
            params,
        });
        (Templates::new(run, xcoms.clone()), xcoms)
    }

    #[test]
    fn renders_airflow_variables_params_and_xcom() {
        let (t, xcoms) = templates();
        assert!(xcoms.push("pi", "submission_id", "sim-42".into()));
        assert!(!xcoms.push("not_in_dag", "k", 1.into()));
        let out = t
            .render(
                "{{ dag_id }} {{ run_id }} {{ task_id }} {{ ds }} {{ ts }} {{ params.region }} {{ xcom('pi', 'submission_id') }} {{ task_instance.try_number }}{{ ti.task_id }}",
                "stats",
                1,
            )
            .unwrap();
        assert_eq!(
            out,
            "daily manual__2025-05-01T00:00:00Z stats 2025-05-01 2025-05-01T00:00:00Z us-west-2 sim-42 1stats"
        );
    }

    #[test]
    fn undefined_names_and_missing_xcom_are_errors() {
        let (t, _) = templates();
        let e = t.render("{{ params.nope }}", "a", 1).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let e = t.render("{{ xcom('ghost', 'k') }}", "a", 1).unwrap_err();
        assert!(e.contains("no XCom value \"k\" from task \"ghost\""), "{e}");
    }

    #[test]
    fn plain_text_is_not_rendered() {
        let (t, _) = templates();
        assert!(matches!(
            t.render("no templates here", "a", 1),
            Ok(Cow::Borrowed(_))
        ));
    }
}
