//! Routing rules for Spark jobs across several clusters (filled by the bpg-router issue).
