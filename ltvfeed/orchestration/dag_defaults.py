"""What every ltvfeed DAG shares: when it may run and how many runs at once.

``start_date`` lies far in the past because a cutoff is a date in the shop's history, whenever that starts: a
run for any ``as_of`` (``ltvfeed pipeline run --as-of 2017-03-01``, a backfill of old cutoffs) must run every
task. Airflow leaves the tasks of a run whose logical date precedes the DAG's start date unscheduled and still
calls the run a success, so a recent start date silently turned old cutoffs into empty runs. ``catchup=False``
keeps unpausing from creating a run per day since then: only the latest scheduled run is created.
"""

from __future__ import annotations

import pendulum

START_DATE = pendulum.datetime(1970, 1, 1, tz="UTC")
DAG_DEFAULTS = {"start_date": START_DATE, "catchup": False, "max_active_runs": 1}
