"""Retries, trigger rules, chain() and lists: a failing extract, cleanup that always runs and an
alert that runs only on failure."""
from datetime import datetime, timedelta

from airflow.models.baseoperator import chain, cross_downstream
from airflow.operators.bash import BashOperator
from airflow.operators.dummy import DummyOperator
from airflow.utils.trigger_rule import TriggerRule
from airflow import DAG

dag = DAG(
    dag_id="retries_and_rules",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    max_active_tasks=4,
    default_args={
        "retries": 0,
        "execution_timeout": timedelta(minutes=30),
        "depends_on_past": False,
    },
)

start = DummyOperator(task_id="start", dag=dag)
extract = BashOperator(
    task_id="extract",
    bash_command="echo extracting; exit 1",
    retries=1,
    retry_delay=timedelta(milliseconds=100),
    pool="etl",
    dag=dag,
)
transform = BashOperator(task_id="transform", bash_command="echo transform", dag=dag)
load = BashOperator(task_id="load", bash_command="echo load", dag=dag, depends_on_past=True)
cleanup = BashOperator(
    task_id="cleanup", bash_command="echo cleanup", trigger_rule=TriggerRule.ALL_DONE, dag=dag
)
alert = BashOperator(
    task_id="alert", bash_command="echo extract failed", trigger_rule="one_failed", dag=dag
)

audit_a = DummyOperator(task_id="audit_a", dag=dag)
audit_b = DummyOperator(task_id="audit_b", dag=dag)
report_a = DummyOperator(task_id="report_a", dag=dag)
report_b = DummyOperator(task_id="report_b", dag=dag)
archive_x = DummyOperator(task_id="archive_x", dag=dag)
archive_y = DummyOperator(task_id="archive_y", dag=dag)
finish = DummyOperator(task_id="finish", dag=dag, trigger_rule=TriggerRule.NONE_FAILED)

chain(start, extract, transform, load)
cleanup << load
extract.set_downstream(alert)
chain(start, [audit_a, audit_b], [report_a, report_b])
cross_downstream([report_a, report_b], [archive_x, archive_y])
finish.set_upstream([archive_x, archive_y])
