"""Task logic and environment for the Airflow DAGs; the DAG files in dags/ only wire these together."""
