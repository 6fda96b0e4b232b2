//! `bpg graph`: a pipeline's tasks and edges as Mermaid or Graphviz dot.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use bpg_pipeline::{Dag, Task, TaskKind, load_dag_file};

use crate::GraphFormat;
use crate::failure::Failure;

/// Prints the graph; exit 1 when the pipeline is invalid (a cycle, an unknown dependency, ...).
pub fn graph(pipeline: &Path, format: GraphFormat) -> Result<ExitCode, Failure> {
    let dag = load_dag_file(pipeline).map_err(|d| Failure::invalid(&d))?;
    let text = match format {
        GraphFormat::Mermaid => mermaid(&dag),
        GraphFormat::Dot => dot(&dag),
    };
    out!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn label(task: &Task) -> String {
    match &task.kind {
        TaskKind::Spark(spark) => format!("{} (spark via {})", task.id, spark.connection),
        other => format!("{} ({})", task.id, other.name()),
    }
}

/// Mermaid flowchart. Nodes get positional ids (`t0`, `t1`, ...) because task ids may be Mermaid
/// keywords (`end`) or hold characters Mermaid ids cannot.
pub fn mermaid(dag: &Dag) -> String {
    let index = |id: &str| dag.tasks.iter().position(|t| t.id == id);
    let mut out = String::from("flowchart LR\n");
    for (i, task) in dag.tasks.iter().enumerate() {
        let _ = writeln!(out, "    t{i}[\"{}\"]", label(task).replace('"', "#quot;"));
    }
    for (i, task) in dag.tasks.iter().enumerate() {
        for up in &task.depends_on {
            if let Some(u) = index(up) {
                let _ = writeln!(out, "    t{u} --> t{i}");
            }
        }
    }
    out
}

/// Graphviz dot, task ids as quoted node names.
pub fn dot(dag: &Dag) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph {} {{\n    rankdir=LR;\n    node [shape=box];\n",
        quote(&dag.dag_id)
    );
    for task in &dag.tasks {
        let _ = writeln!(
            out,
            "    {} [label={}];",
            quote(&task.id),
            quote(&label(task))
        );
    }
    for task in &dag.tasks {
        for up in &task.depends_on {
            let _ = writeln!(out, "    {} -> {};", quote(up), quote(&task.id));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use bpg_pipeline::{Dag, Task};

    use super::*;

    /// Ids Mermaid cannot take as node ids: a keyword, a dot, a dash.
    fn dag() -> Dag {
        Dag::builder("daily.v2")
            .task(Task::empty("start"))
            .task(Task::empty("load.v2-eu").depends_on(["start"]))
            .task(Task::empty("end").depends_on(["load.v2-eu"]))
            .build()
            .expect("valid DAG")
    }

    #[test]
    fn mermaid_uses_positional_ids_and_task_ids_as_labels() {
        assert_eq!(
            mermaid(&dag()),
            "flowchart LR\n    t0[\"start (empty)\"]\n    t1[\"load.v2-eu (empty)\"]\n    t2[\"end (empty)\"]\n    t0 --> t1\n    t1 --> t2\n"
        );
    }

    #[test]
    fn dot_quotes_every_name() {
        let text = dot(&dag());
        assert!(text.starts_with("digraph \"daily.v2\" {"), "{text}");
        assert!(text.contains("\"load.v2-eu\" -> \"end\";"), "{text}");
    }
}
