"""The scheduled chain ingest → train → evaluate → register → score → monitor: its steps as plain functions
(:mod:`stellar.orchestration.tasks`) and an Airflow DAG over them (:mod:`stellar.orchestration.dag`, the
``airflow`` extra)."""
