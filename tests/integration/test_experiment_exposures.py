"""The exposure log against real PostgreSQL: every served feed is stored exactly once under concurrency, and a
full queue or an unreachable warehouse drops and counts instead of blocking. serving_arm is tested in
tests/unit/test_experiment_exposures.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from ltvfeed.experiments.exposures import ExposureLog


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select exposure_id, experiment, arm, user_id, generation, feed, item_ids, positions from raw.exposures"
        ).fetchall()


@pytest.mark.integration
def test_concurrent_exposures_are_stored_exactly_once(warehouse_dsn: str) -> None:
    n_threads, per_thread = 8, 6_250  # 50,000 exposures
    writer = ExposureLog(warehouse_dsn, batch_size=2_000).start()

    def serve(t: int) -> None:
        for i in range(per_thread):
            ok = writer.log(
                f"f{t}-{i}", "exp", "treatment" if i % 2 else "control", f"u{i % 997}", [f"i{i}", f"i{i + 1}", "x"],
                generation="g1", feed="personalised", served_at=datetime(2024, 3, 1, tzinfo=UTC),
            )  # fmt: skip
            assert ok
        for i in range(0, per_thread, 50):  # a retried response repeats its feed id: no second row
            writer.log(f"f{t}-{i}", "exp", "control", "someone-else", ["y"])

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.close()
    rows = _rows(warehouse_dsn)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == n_threads * per_thread
    assert writer.stored == n_threads * per_thread
    assert writer.duplicates == n_threads * len(range(0, per_thread, 50))
    assert writer.dropped == 0
    by_id = {r[0]: r for r in rows}
    assert by_id["f3-7"] == ("f3-7", "exp", "treatment", "u7", "g1", "personalised", ["i7", "i8", "x"], [1, 2, 3])
    assert by_id["f0-50"][2:4] == ("control", "u50")  # the first write won


@pytest.mark.integration
def test_full_queue_drops_and_counts_without_blocking(warehouse_dsn: str) -> None:
    writer = ExposureLog(warehouse_dsn, max_queue=10)  # not started: nothing drains the queue
    results: list[bool] = []
    caller = threading.Thread(
        target=lambda: results.extend(writer.log(f"f{i}", "e", "a", "u", ["i"]) for i in range(25))
    )
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "log() blocked on a full queue"
    assert results == [True] * 10 + [False] * 15
    assert (writer.dropped_full, writer.pending) == (15, 10)
    assert writer.log("", "e", "a", "u", ["i"]) is False and writer.dropped_invalid == 1
    assert writer.log("z", "e", "a", "u", "not-a-list") is False and writer.dropped_invalid == 2
    writer.close()  # flushes what was queued
    assert sorted(r[0] for r in _rows(warehouse_dsn)) == sorted(f"f{i}" for i in range(10))
    assert writer.log("late", "e", "a", "u", ["i"]) is False and writer.dropped_closed == 1
    assert writer.dropped == 15 + 2 + 1


@pytest.mark.integration
def test_unreachable_warehouse_drops_and_counts(stack) -> None:
    writer = ExposureLog("postgresql://postgres@127.0.0.1:1/none", retries=2, retry_delay_s=0.01).start()
    assert writer.log("f1", "e", "a", "u", ["i"])
    writer.close()
    assert (writer.stored, writer.dropped_failed) == (0, 1)
