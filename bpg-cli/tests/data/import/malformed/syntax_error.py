from airflow import DAG
from airflow.operators.empty import EmptyOperator

with DAG("broken") as dag:
    start = EmptyOperator(task_id="start"
    end = EmptyOperator(task_id="end")
