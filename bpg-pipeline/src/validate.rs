//! DAG validation: every problem at once, located when the DAG came from a file.

use std::collections::{HashMap, HashSet};

use bpg_core::{Diagnostic, Diagnostics};

use crate::dag::{CommandLine, Dag, TaskKind};

/// Pool every task may use without declaring it (Airflow's `default_pool`).
pub const DEFAULT_POOL: &str = "default_pool";
/// Slots of the implicit `default_pool` (Airflow's default).
pub const DEFAULT_POOL_SLOTS: u32 = 128;

fn located(dag: &Dag, field: String, message: String) -> Diagnostic {
    let mut d = Diagnostic::error(field.clone(), message);
    if let Some(file) = &dag.source.file {
        d = d.with_file(file);
    }
    if let Some((line, column)) = dag.source.position(&field) {
        d = d.at(line, column);
    }
    d
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn validate(dag: &Dag) -> Diagnostics {
    let mut out = Diagnostics::new();
    if !valid_id(&dag.dag_id) {
        out.push(located(
            dag,
            "dag_id".into(),
            format!(
                "{:?} is not a valid id: expected 1-250 letters, digits, '_', '-' or '.'",
                dag.dag_id
            ),
        ));
    }
    if let Some(schedule) = &dag.schedule
        && let Err(e) = schedule.parse::<crate::schedule::Schedule>()
    {
        out.push(located(dag, "schedule".into(), e.to_string()));
    }
    if dag.max_active_runs == 0 {
        out.push(located(
            dag,
            "max_active_runs".into(),
            "expected at least 1".into(),
        ));
    }
    if let (Some(start), Some(end)) = (dag.start_date, dag.end_date)
        && end < start
    {
        out.push(located(
            dag,
            "end_date".into(),
            format!("{end} is before start_date {start}"),
        ));
    }
    if dag.max_active_tasks == 0 {
        out.push(located(
            dag,
            "max_active_tasks".into(),
            "expected at least 1".into(),
        ));
    }
    for (name, slots) in &dag.pools {
        if *slots == 0 {
            out.push(located(
                dag,
                format!("pools.{name}"),
                "a pool needs at least 1 slot".into(),
            ));
        }
    }
    if dag.tasks.is_empty() {
        out.push(located(
            dag,
            "tasks".into(),
            "a DAG needs at least one task".into(),
        ));
    }

    let mut first_index: HashMap<&str, usize> = HashMap::with_capacity(dag.tasks.len());
    for (i, task) in dag.tasks.iter().enumerate() {
        if !valid_id(&task.id) {
            out.push(located(
                dag,
                format!("tasks[{i}].id"),
                format!(
                    "{:?} is not a valid task id: expected 1-250 letters, digits, '_', '-' or '.'",
                    task.id
                ),
            ));
        }
        if let Some(first) = first_index.get(task.id.as_str()) {
            out.push(located(
                dag,
                format!("tasks[{i}].id"),
                format!(
                    "duplicate task id {:?} (first declared as tasks[{first}])",
                    task.id
                ),
            ));
        } else {
            first_index.insert(&task.id, i);
        }
    }

    for (i, task) in dag.tasks.iter().enumerate() {
        // Short lists (the usual case) are checked for repeats without allocating.
        let mut seen = (task.depends_on.len() > 16).then(HashSet::new);
        for (j, dep) in task.depends_on.iter().enumerate() {
            let field = || format!("tasks[{i}].depends_on[{j}]");
            let repeated = match &mut seen {
                Some(set) => !set.insert(dep.as_str()),
                None => task.depends_on[..j].contains(dep),
            };
            if dep == &task.id {
                out.push(located(
                    dag,
                    field(),
                    format!("task {:?} depends on itself (a cycle)", task.id),
                ));
            } else if !first_index.contains_key(dep.as_str()) {
                out.push(located(
                    dag,
                    field(),
                    format!(
                        "task {:?} depends on unknown task {dep:?}{}",
                        task.id,
                        suggestion(dep, first_index.keys().copied())
                    ),
                ));
            } else if repeated {
                out.push(
                    located(dag, field(), format!("{dep:?} is listed twice"))
                        .with_severity_warning(),
                );
            }
        }
        let settings = task.settings.or(&dag.default_args);
        let pool_slots = settings.pool_slots.unwrap_or(1);
        if pool_slots == 0 {
            out.push(located(
                dag,
                format!("tasks[{i}].pool_slots"),
                "expected at least 1".into(),
            ));
        }
        if let Some(pool) = &settings.pool {
            let slots = dag
                .pools
                .get(pool)
                .copied()
                .or((pool == DEFAULT_POOL).then_some(DEFAULT_POOL_SLOTS));
            match slots {
                None => out.push(located(
                    dag,
                    format!("tasks[{i}].pool"),
                    format!("unknown pool {pool:?}: declare it under `pools:`"),
                )),
                Some(slots) if pool_slots > slots => out.push(located(
                    dag,
                    format!("tasks[{i}].pool_slots"),
                    format!("task needs {pool_slots} slots but pool {pool:?} has only {slots}"),
                )),
                Some(_) => {}
            }
        }
        match &task.kind {
            TaskKind::Spark(spark) if spark.connection.is_empty() => out.push(located(
                dag,
                format!("tasks[{i}].connection"),
                "a spark task needs a connection name".into(),
            )),
            TaskKind::Command(command) => {
                let empty = match &command.command {
                    CommandLine::Shell(line) => line.trim().is_empty(),
                    CommandLine::Argv(argv) => argv.first().is_none_or(|p| p.is_empty()),
                };
                if empty {
                    out.push(located(
                        dag,
                        format!("tasks[{i}].command"),
                        "a command task needs a non-empty `command:` (a shell line, or a list of program and arguments)".into(),
                    ));
                }
            }
            _ => {}
        }
    }

    for cycle in find_cycles(dag, &first_index) {
        let names: Vec<&str> = cycle.iter().map(|&i| dag.tasks[i].id.as_str()).collect();
        let first = cycle[0];
        out.push(located(
            dag,
            format!("tasks[{first}].depends_on"),
            format!("dependency cycle: {} -> {}", names.join(" -> "), names[0]),
        ));
    }
    out
}

trait WarningExt {
    fn with_severity_warning(self) -> Self;
}

impl WarningExt for Diagnostic {
    fn with_severity_warning(mut self) -> Self {
        self.severity = bpg_core::Severity::Warning;
        self
    }
}

/// One cycle (as task indices in dependency order) per strongly connected component that has one.
fn find_cycles(dag: &Dag, index: &HashMap<&str, usize>) -> Vec<Vec<usize>> {
    let n = dag.tasks.len();
    // Edges upstream -> downstream, only between known, distinct, first-declared tasks.
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, task) in dag.tasks.iter().enumerate() {
        if index.get(task.id.as_str()) != Some(&i) {
            continue;
        }
        for dep in &task.depends_on {
            if let Some(&u) = index.get(dep.as_str())
                && u != i
            {
                downstream[u].push(i);
            }
        }
    }
    let components = strongly_connected(&downstream);
    let mut cycles = Vec::new();
    for comp in components.into_iter().filter(|c| c.len() > 1) {
        let members: HashSet<usize> = comp.iter().copied().collect();
        let start = *comp.iter().min().unwrap_or(&comp[0]);
        // Every member has an edge to another member, so walking inside the component revisits a node.
        let mut path = vec![start];
        let mut at_position: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut node = start;
        while let Some(&next) = downstream[node].iter().find(|d| members.contains(d)) {
            if let Some(&pos) = at_position.get(&next) {
                cycles.push(path[pos..].to_vec());
                break;
            }
            at_position.insert(next, path.len());
            path.push(next);
            node = next;
        }
    }
    cycles.sort();
    cycles
}

/// Tarjan's algorithm, iterative (DAGs of 100k tasks must not overflow the stack).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut components = Vec::new();
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        call.push((root, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut edge)) = call.last_mut() {
            if *edge < edges[v].len() {
                let w = edges[v][*edge];
                *edge += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    components.push(comp);
                }
            }
        }
    }
    components
}

fn suggestion<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    match bpg_core::closest_match(name, candidates) {
        Some(c) => format!(" (did you mean {c:?}?)"),
        None => String::new(),
    }
}

/// The cheap checks the executor needs before running an already built DAG: a sound graph,
/// at least one task slot, and pools that exist and are big enough. When this fails,
/// [`validate`] says why.
pub(crate) fn runnable(dag: &Dag, graph: &crate::scheduler::Graph) -> bool {
    graph.is_sound()
        && !dag.tasks.is_empty()
        && dag.max_active_tasks > 0
        && dag.pools.values().all(|&slots| slots > 0)
        && (0..graph.len()).all(|i| {
            let settings = graph.settings(i);
            settings.pool_slots > 0
                && match &settings.pool {
                    None => true,
                    Some(pool) => dag
                        .pools
                        .get(pool)
                        .copied()
                        .or((pool == DEFAULT_POOL).then_some(DEFAULT_POOL_SLOTS))
                        .is_some_and(|slots| settings.pool_slots <= slots),
                }
        })
}

/// Errors in Spark tasks' applications that can be found before running: every application file
/// and inline application without template syntax is parsed (templated ones are parsed when
/// their task runs, after rendering).
pub(crate) fn check_applications(dag: &Dag, source_text: Option<&str>) -> Diagnostics {
    use crate::dag::ApplicationSource;
    use crate::template::is_template;
    let mut out = Diagnostics::new();
    for (i, task) in dag.tasks.iter().enumerate() {
        let TaskKind::Spark(spark) = &task.kind else {
            continue;
        };
        match &spark.application {
            ApplicationSource::Job(_) => {}
            ApplicationSource::File(path) => {
                let resolved = dag.resolve_path(path);
                // A missing file is reported by the loader.
                let Ok(text) = std::fs::read_to_string(&resolved) else {
                    continue;
                };
                if is_template(&text) {
                    continue;
                }
                if let Err(errors) = bpg_core::formats::parse_application(&text, Some(&resolved)) {
                    out.0
                        .extend(errors.into_iter().filter(Diagnostic::is_error));
                }
            }
            ApplicationSource::Inline(value) => {
                if has_template(value) {
                    continue;
                }
                // From the pipeline file's own text where there is one, so every problem points
                // at its line and column there; a DAG built in code has only the value.
                let embedded =
                    source_text.zip(dag.source.positions.get(&format!("tasks[{i}].application")));
                let parsed = match embedded {
                    Some((text, &(line, column))) => bpg_core::formats::parse_embedded_application(
                        text,
                        dag.source.file.as_deref(),
                        line,
                        column,
                    ),
                    None => bpg_core::formats::application_from_value(value),
                };
                if let Err(errors) = parsed {
                    for mut e in errors.into_iter().filter(Diagnostic::is_error) {
                        e.field = if e.field.is_empty() {
                            format!("tasks[{i}].application")
                        } else {
                            format!("tasks[{i}].application.{}", e.field)
                        };
                        if e.line.is_none() {
                            // Placeless (a missing field, or no file): at the application.
                            let at = located(dag, format!("tasks[{i}].application"), String::new());
                            e.file = at.file;
                            e.line = at.line;
                            e.column = at.column;
                        }
                        out.push(e);
                    }
                }
            }
        }
    }
    out
}

fn has_template(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => crate::template::is_template(s),
        serde_json::Value::Array(items) => items.iter().any(has_template),
        serde_json::Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

pub(crate) fn check_connections(dag: &Dag, known: impl Fn(&str) -> bool) -> Diagnostics {
    let mut out = Diagnostics::new();
    for (i, task) in dag.tasks.iter().enumerate() {
        if let TaskKind::Spark(spark) = &task.kind
            && !spark.connection.is_empty()
            && !known(&spark.connection)
        {
            out.push(located(
                dag,
                format!("tasks[{i}].connection"),
                format!(
                    "task {:?} uses unknown connection {:?}: define it in the connections file or as BPG_CONN_{}",
                    task.id,
                    spark.connection,
                    spark.connection.to_uppercase()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::Task;

    #[test]
    fn reports_every_problem_at_once() {
        let dag = Dag::builder("bad dag")
            .task(Task::empty("a").depends_on(["c"]))
            .task(Task::empty("b").depends_on(["a"]))
            .task(Task::empty("c").depends_on(["b"]))
            .task(Task::empty("a"))
            .task(Task::empty("d").depends_on(["ghost", "d"]))
            .task(Task::empty("e").pool("nope", 1));
        let err = dag.build().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"bad dag\" is not a valid id"), "{text}");
        assert!(text.contains("duplicate task id \"a\""), "{text}");
        assert!(text.contains("unknown task \"ghost\""), "{text}");
        assert!(text.contains("depends on itself"), "{text}");
        assert!(
            text.contains("dependency cycle: a -> b -> c -> a"),
            "{text}"
        );
        assert!(text.contains("unknown pool \"nope\""), "{text}");
        assert_eq!(err.errors().count(), 6, "{text}");
    }

    #[test]
    fn suggests_close_names() {
        let dag = Dag::builder("d")
            .task(Task::empty("word_count"))
            .task(Task::empty("stats").depends_on(["word_cont"]));
        let text = dag.build().unwrap_err().to_string();
        assert!(text.contains("did you mean \"word_count\"?"), "{text}");
    }

    #[test]
    fn long_chain_has_no_cycle_and_no_stack_overflow() {
        let mut b = Dag::builder("chain").task(Task::empty("t0"));
        for i in 1..100_000 {
            b = b.task(Task::empty(format!("t{i}")).depends_on([format!("t{}", i - 1)]));
        }
        assert!(b.build().is_ok());
    }
}
