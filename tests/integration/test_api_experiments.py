"""The feed API's exposures under running experiments, against the real PostgreSQL: every answer served under an
experiment is logged exactly once, naming the feed actually served. The arms themselves are tested in
tests/unit/test_api_experiments.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ltvfeed.serving.api import create_app
from ltvfeed.settings import Settings
from tests.unit import test_api_experiments as unit_half
from tests.unit.test_api_experiments import USERS, _expected_feed, _variant_bodies

shop, variant_shop = unit_half.shop, unit_half.variant_shop  # the unit half's fixtures, requested by name


@pytest.mark.integration
def test_exposures_are_logged_once_per_answer(shop, warehouse_dsn: str) -> None:
    from ltvfeed.db import connect
    from ltvfeed.experiments.exposures import ExposureLog
    from ltvfeed.experiments.registry import ensure_schema

    ensure_schema(warehouse_dsn)
    log = ExposureLog(warehouse_dsn).start()
    s = Settings(redis_url=shop["url"], redis_prefix=shop["prefix"], state_dir=shop["state"])
    with TestClient(create_app(s, exposures=log, options=unit_half.OPTIONS)) as client:
        bodies = [client.get(f"/v1/users/{u}/feed?n=5").json() for u in USERS for _ in range(2)]
    served = {b["feed_id"]: b for b in bodies if b["feed_id"]}
    with connect(warehouse_dsn) as conn:
        rows = conn.execute(
            "select exposure_id, experiment, arm, user_id, item_ids, feed from raw.exposures"
        ).fetchall()
    assert len(rows) == len(served) > 300
    for exposure_id, experiment, arm, user_id, item_ids, feed in rows:
        body = served[exposure_id]
        assert (experiment, arm, user_id) == (body["experiment"], body["arm"], body["user_id"])
        assert item_ids == [i["item_id"] for i in body["items"]]
        assert feed == ("classic" if arm == "control" else "personalised")


@pytest.mark.integration
def test_exposures_log_the_feed_actually_served(variant_shop, warehouse_dsn: str) -> None:
    from ltvfeed.db import connect
    from ltvfeed.experiments.exposures import ExposureLog
    from ltvfeed.experiments.registry import ensure_schema

    ensure_schema(warehouse_dsn)
    log = ExposureLog(warehouse_dsn).start()
    s = Settings(redis_url=variant_shop["url"], redis_prefix=variant_shop["prefix"], state_dir=variant_shop["state"])
    with TestClient(create_app(s, exposures=log, options=unit_half.OPTIONS)) as client:
        bodies = {b["feed_id"]: b for b in _variant_bodies(client).values()}
    with connect(warehouse_dsn) as conn:
        rows = conn.execute("select exposure_id, arm, feed from raw.exposures").fetchall()
    assert len(rows) == len(USERS)
    for exposure_id, arm, feed in rows:
        assert feed == bodies[exposure_id]["feed"] == _expected_feed(arm)[0]
