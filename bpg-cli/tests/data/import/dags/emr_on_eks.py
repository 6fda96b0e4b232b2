"""EMR on EKS through EmrContainerOperator, as a @dag function."""
from datetime import datetime, timedelta

from airflow.decorators import dag
from airflow.operators.bash import BashOperator
from airflow.providers.amazon.aws.operators.emr import EmrContainerOperator
from airflow.providers.amazon.aws.sensors.emr import EmrContainerSensor

VIRTUAL_CLUSTER_ID = "abcdef1234567890"
JOB_ROLE_ARN = "arn:aws:iam::123456789012:role/emr-spark-job"
BUCKET = "s3://analytics-emr"

JOB_DRIVER = {
    "sparkSubmitJobDriver": {
        "entryPoint": f"{BUCKET}/jobs/sessions.py",
        "entryPointArguments": ["--date", "{{ ds }}"],
        "sparkSubmitParameters": "--conf spark.executor.instances=4 --conf spark.executor.memory=4G "
        "--conf spark.driver.cores=1 --py-files s3://analytics-emr/jobs/lib.zip",
    }
}

CONFIGURATION_OVERRIDES = {
    "applicationConfiguration": [
        {
            "classification": "spark-defaults",
            "properties": {"spark.dynamicAllocation.enabled": "false"},
        }
    ],
    "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"{BUCKET}/logs/"}},
}


@dag(
    dag_id="emr_sessions",
    schedule=timedelta(hours=6),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
)
def emr_sessions():
    sessions = EmrContainerOperator(
        task_id="sessions",
        name="web-sessions",
        virtual_cluster_id=VIRTUAL_CLUSTER_ID,
        execution_role_arn=JOB_ROLE_ARN,
        release_label="emr-7.2.0-latest",
        job_driver=JOB_DRIVER,
        configuration_overrides=CONFIGURATION_OVERRIDES,
        aws_conn_id="aws_analytics",
        wait_for_completion=False,
    )
    wait = EmrContainerSensor(
        task_id="wait_for_sessions",
        virtual_cluster_id=VIRTUAL_CLUSTER_ID,
        job_id="{{ task_instance.xcom_pull(task_ids='sessions') }}",
        aws_conn_id="aws_analytics",
    )
    publish = BashOperator(
        task_id="publish",
        bash_command="echo published sessions for {{ ds }}",
        env={"TARGET": "warehouse"},
    )
    sessions >> wait >> publish


emr_sessions()
