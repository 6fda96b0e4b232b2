"""The seed's demo DAG: BPG requests posted to the gateway by BPGOperator."""
import json
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.empty import EmptyOperator

from bpg_airflow.operators.bpg import BPGOperator

BPG_CONNECTION = "bpg_connection"
SPARK_VERSION = "3.5"
APPS = "s3a://analytics-jobs/apps"

default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "email_on_failure": False,
}

CALCULATE_PI = json.dumps({
    "applicationName": "calculate-pi",
    "sparkVersion": SPARK_VERSION,
    "mainApplicationFile": f"{APPS}/pi.py",
    "arguments": ["1000"],
    "driver": {"cores": 1, "memory": "2g"},
    "executor": {"instances": 2, "cores": 1, "memory": "2g"},
})

with DAG(
    dag_id="seed_diamond",
    description="Pi and word count, then statistics",
    schedule="0 2 * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args=default_args,
    params={"corpus": "s3a://analytics-data/corpus.txt"},
    tags=["bpg", "demo"],
) as dag:
    start = EmptyOperator(task_id="start")

    calculate_pi = BPGOperator(
        task_id="calculate_pi",
        connection_id=BPG_CONNECTION,
        application_content='{"applicationName": "calculate-pi", "sparkVersion": "3.5", '
        '"mainApplicationFile": "s3a://analytics-jobs/apps/pi.py", "arguments": ["1000"], '
        '"driver": {"cores": 1, "memory": "2g"}, "executor": {"instances": 2, "memory": "2g"}}',
    )

    word_count = BPGOperator(
        task_id="word_count",
        connection_id=BPG_CONNECTION,
        application_content="""
{
  "applicationName": "word-count",
  "sparkVersion": "3.5",
  "mainApplicationFile": "s3a://analytics-jobs/apps/wordcount.py",
  "arguments": ["{{ params.corpus }}", "{{ ds }}"],
  "executor": {"instances": 4, "memory": "4g"}
}
""",
    )

    statistics_calc = BPGOperator(
        task_id="statistics_calc",
        connection_id=BPG_CONNECTION,
        application_file="apps/statistics-calc.json",
        retries=3,
    )

    end = EmptyOperator(task_id="end")

    start >> [calculate_pi, word_count] >> statistics_calc >> end
