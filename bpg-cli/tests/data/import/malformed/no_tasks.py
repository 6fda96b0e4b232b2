from airflow import DAG

with DAG("empty_dag", schedule=None) as dag:
    pass
