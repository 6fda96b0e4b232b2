//! Typed async client for the Batch Processing Gateway REST API (filled by the bpg-client issue).
