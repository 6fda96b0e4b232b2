"""Helpers, not a DAG."""
RETRIES = 3
