"""SparkKubernetesOperator with an application file and with a template_spec, each watched by a
SparkKubernetesSensor. Airflow 3 import paths."""
from datetime import timedelta

import pendulum
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.cncf.kubernetes.sensors.spark_kubernetes import SparkKubernetesSensor
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

NAMESPACE = "spark-jobs"
REGISTRY = "registry.example.com/data"
IMAGE = f"{REGISTRY}/spark-etl:3.5.1"

ETL_TEMPLATE = {
    "spark": {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "nightly-etl"},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "sparkVersion": "3.5.1",
            "restartPolicy": {"type": "Never"},
            "driver": {
                "serviceAccount": "spark",
                "container_resources": {"cpu": {"request": 1, "limit": "1200m"}, "memory": {"limit": "1400m"}},
            },
            "executor": {
                "instances": 2,
                "container_resources": {"cpu": {"request": 2}, "memory": {"limit": "2800m"}},
            },
        },
    },
    "kubernetes": {
        "env_vars": [{"name": "RUN_DATE", "value": "{{ ds }}"}],
        "from_env_secret": ["warehouse-credentials"],
        "node_selector": {"karpenter.sh/nodepool": "spark"},
        "tolerations": [{"key": "spark", "operator": "Exists", "effect": "NoSchedule"}],
        "image_pull_secrets": "registry-credentials",
    },
}

with DAG(
    "spark_on_k8s",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 3, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
) as dag:
    begin = EmptyOperator(task_id="begin")

    submit_pi = SparkKubernetesOperator(
        task_id="submit_pi",
        namespace=NAMESPACE,
        application_file="apps/spark-pi.yaml",
        kubernetes_conn_id="analytics_k8s",
        do_xcom_push=True,
    )
    watch_pi = SparkKubernetesSensor(
        task_id="watch_pi",
        namespace=NAMESPACE,
        application_name="{{ task_instance.xcom_pull(task_ids='submit_pi')['metadata']['name'] }}",
        kubernetes_conn_id="analytics_k8s",
    )

    nightly_etl = SparkKubernetesOperator(
        task_id="nightly_etl",
        namespace=NAMESPACE,
        template_spec=ETL_TEMPLATE,
        image=IMAGE,
        code_path="local:///opt/etl/nightly.py",
        kubernetes_conn_id="analytics_k8s",
        execution_timeout=timedelta(hours=2),
    )
    watch_etl = SparkKubernetesSensor(
        task_id="watch_etl",
        namespace=NAMESPACE,
        application_name="nightly-etl",
        kubernetes_conn_id="analytics_k8s",
    )

    done = EmptyOperator(task_id="done")

    begin >> submit_pi >> watch_pi >> nightly_etl >> watch_etl >> done
