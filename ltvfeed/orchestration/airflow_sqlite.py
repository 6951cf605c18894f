"""SQLAlchemy connect arguments for Airflow's SQLite metadata database (``[database]
sql_alchemy_connect_args`` names :data:`CONNECT_ARGS` by import path).

Why: the scheduler, the execution API and every ``airflow`` command write to the one SQLite file. Python's
sqlite3 gives up on a lock after 5 s ("database is locked"), which a busy 2-core machine reaches: a clean-clone
CI's ``airflow backfill create`` failed so, clearing a finished run while the scheduler held the lock. Waiting up
to a minute turns that into a delay. Kept free of imports: Airflow imports it while it sets itself up."""

CONNECT_ARGS = {"timeout": 60.0}  # seconds sqlite3 waits for another process's lock before it fails
