"""A DAG with parts bpg cannot convert: each is reported with its line, the rest converts."""
from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import PythonOperator
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.utils.task_group import TaskGroup

from company.config import load_settings

SETTINGS = load_settings()


def notify(**context):
    print("done", context["ds"])


@task
def summarize():
    return 42


with DAG("partly_supported", schedule="@hourly", start_date=datetime(2025, 1, 1), catchup=False,
         dagrun_timeout=None) as dag:
    start = EmptyOperator(task_id="start")
    python = PythonOperator(task_id="notify", python_callable=notify)
    pod = KubernetesPodOperator(task_id="pod", image="busybox", cmds=["true"])
    configured = EmptyOperator(task_id="configured", pool=SETTINGS["pool"])
    summary = summarize()

    for region in ["eu", "us"]:
        start >> EmptyOperator(task_id=f"load_{region}")

    with TaskGroup("reports") as reports:
        report = EmptyOperator(task_id="report")

    start >> [python, pod, configured] >> summary >> report
