"""ltvfeed: personalised product feeds ranked for long-term revenue.

One import namespace over the top-level folders the design asks for (``pyproject.toml``'s ``package-dir`` maps
them): ``ltvfeed.infra`` is ``infra/`` (servers, the stack, MLflow's locations), ``ltvfeed.training`` is
``training/`` (the LTV and propensity models on plain frames), ``ltvfeed.serving`` is ``serving/`` (feed scoring,
the feed store, the feed API); everything else lives in this folder: ``warehouse`` (every read of raw and marts,
snapshots, the data's extent), ``cutoff`` (the as_of rule), ``frames`` (the catalogue and user batches as
arrays, and the pure rules on them that training and serving share), ``shards`` (which shard a user is in, in
Python and in SQL), ``orchestration`` (what the DAGs in ``dags/`` call), ``features`` (Feast, definitions in
``feature_repo/``), ``quality`` (Great Expectations), ``ingest``, ``collector``, ``experiments``, ``simulator``
and ``commands`` (the ``ltvfeed`` CLI).
"""
