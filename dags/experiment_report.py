"""
### experiment_report

Daily read-out of every running A/B experiment on the feed:

1. **running**: the names of the running experiments (ops.experiments);
2. **build_metrics**: `dbt build` of `marts.experiment_user_metrics` (per experiment, arm and user, from the
   exposure log `raw.exposures`, events and orders);
3. **report**: one *mapped* task per running experiment: the HTML report under
   `<state_dir>/experiments/NAME.html`, logged to MLflow (experiment `ab_reports`). No running experiment:
   the mapped task is skipped.

Same as `ltvfeed experiments report NAME` for each of them. Runs daily at 06:00 UTC.
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag, task

from ltvfeed.orchestration.dag_defaults import DAG_DEFAULTS


@dag(
    dag_id="experiment_report",
    schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
    **DAG_DEFAULTS,
    tags=["ltvfeed", "experiments", "mlflow"],
    doc_md=__doc__,
)
def experiment_report():
    @task
    def running() -> list[str]:
        from ltvfeed.orchestration.experiment_tasks import running_experiments
        from ltvfeed.settings import Settings

        return running_experiments(Settings())

    @task
    def build_metrics() -> None:
        from ltvfeed.orchestration.experiment_tasks import build_metrics as build
        from ltvfeed.settings import Settings

        build(Settings())

    @task
    def report(name: str) -> dict:
        from ltvfeed.orchestration.experiment_tasks import report_experiment
        from ltvfeed.settings import Settings

        return report_experiment(Settings(), name)

    names = running()
    built = build_metrics()
    names >> built
    built >> report.expand(name=names)


experiment_report()
