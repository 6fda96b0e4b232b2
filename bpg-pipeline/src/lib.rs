//! The embeddable DAG runner (filled by the bpg-pipeline issue).
