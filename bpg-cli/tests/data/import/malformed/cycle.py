from airflow import DAG
from airflow.operators.empty import EmptyOperator

with DAG("cyclic", schedule=None) as dag:
    a = EmptyOperator(task_id="a")
    b = EmptyOperator(task_id="b")
    c = EmptyOperator(task_id="c")
    a >> b >> c >> a
