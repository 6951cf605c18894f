"""Benchmark of the event collector as it ships (``ltvfeed collect``: 1 uvicorn worker, group commit), against
PostgreSQL COPY of the same rows measured in the same run, and an exact accounting of every event.

    .venv/bin/python bench/bench_collector.py                      # 1,000,000 events, then latency at half rate
    .venv/bin/python bench/bench_collector.py --events 100000      # lighter
    .venv/bin/python bench/bench_collector.py --faults             # also kill the collector's PostgreSQL
                                                                   # connections and its Redis during the load

Phases: (1) throughput — ``--senders`` threads send signed, gzipped batches of ``--batch`` events as fast as
the collector acknowledges them, retrying 429/503/connection errors with the same event ids (what
``EventClient`` does); (2) latency — batches sent open loop at half the measured rate, acknowledgement latency
measured from each batch's intended send time; (3) COPY of the same number of rows into a scratch table.
Afterwards rows in raw.events must equal events acknowledged as stored, with no event lost and none twice.
With ``--faults`` the collector gets its own redis-server (killed with SIGKILL mid-load: rate limiting fails
open, ingestion continues) and its PostgreSQL connections are terminated several times (503s, retried).
Exit status 1 on any 500, loss or duplicate. Uses its own warehouse database and Redis prefix, dropped at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

HOST = "127.0.0.1"
TYPES = (("view", 0.6), ("click", 0.25), ("add_to_cart", 0.1), ("search", 0.05))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_bodies(start: int, events: int, batch: int) -> list[bytes]:
    """Gzipped JSON batches of unique events (ids e<start>…); built before the clock starts."""
    now = datetime.now(UTC).isoformat()
    cumulative, acc = [], 0.0
    for name, share in TYPES:
        acc += share
        cumulative.append((acc, name))
    bodies = []
    for b in range(start, start + events, batch):
        rows = []
        for n in range(b, min(b + batch, start + events)):
            kind = next(name for limit, name in cumulative if (n * 0.6180339887 % 1.0) < limit)
            e = {"event_id": f"e{n}", "type": kind, "timestamp": now, "user_id": f"u{n % 100_000}"}
            if kind == "search":
                e["query"] = f"query {n % 977}"
            else:
                e["item_id"] = f"i{n % 5_000}"
            if kind == "view":
                e["dwell_seconds"] = n % 120
            rows.append(e)
        bodies.append(gzip.compress(json.dumps(rows).encode(), compresslevel=1))
    return bodies


class Sender:
    """Posts signed batches; retries with the same body (same event ids) until acknowledged."""

    def __init__(self, url: str, partner: str, secret: str) -> None:
        from ltvfeed.collector.signing import signed_headers

        self.url, self.partner, self.secret, self._sign = url + "/v1/events", partner, secret, signed_headers
        self.statuses: Counter[int] = Counter()
        self.acks: Counter[str] = Counter()
        self.lock = threading.Lock()

    def post(self, client: httpx.Client, body: bytes) -> None:
        for attempt in range(60):
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            headers.update(self._sign(self.partner, self.secret, body))
            try:
                r = client.post(self.url, content=body, headers=headers)
            except httpx.TransportError:
                with self.lock:
                    self.statuses[-1] += 1
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            with self.lock:
                self.statuses[r.status_code] += 1
            if r.status_code == 200:
                answer = r.json()
                with self.lock:
                    for key in ("stored", "duplicate", "rejected"):
                        self.acks[key] += answer[key]
                return
            if r.status_code in (429, 503):
                time.sleep(float(r.headers.get("Retry-After", "1")) if r.status_code == 429 else 0.2)
                continue
            raise SystemExit(f"unexpected {r.status_code}: {r.text[:200]}")
        raise SystemExit("a batch was never acknowledged after 60 tries")


def throughput(sender: Sender, bodies: list[bytes], senders: int) -> float:
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                sender.post(client, body)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def latency(sender: Sender, bodies: list[bytes], rate_batches: float, senders: int) -> list[float]:
    """Open loop: batch i is due at t0 + i / rate; latency from that intended time to its acknowledgement. The
    first batch of each sender (it opens the sender's connection) is sent but not timed."""
    due: queue.Queue[tuple[float, bytes]] = queue.Queue()
    t0 = time.perf_counter() + 0.2
    for i, body in enumerate(bodies):
        due.put((t0 + i / rate_batches, body))
    out: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                try:
                    when, body = due.get_nowait()
                except queue.Empty:
                    return
                wait = when - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sender.post(client, body)
                with lock:
                    out.append((time.perf_counter() - when, round((when - t0) * rate_batches)))

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = [(seconds, i) for seconds, i in out if i >= senders]
    slowest = sorted(out, reverse=True)[:3]
    print("slowest batches (seconds, batch number):", [(round(s, 3), i) for s, i in slowest], flush=True)
    return sorted(s for s, _ in out)


def copy_rate(dsn: str, rows: int) -> float:
    """Rows/s of a plain COPY of equivalent rows into a scratch copy of raw.events (the floor's reference)."""
    import psycopg

    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute("create table bench_copy (like raw.events including defaults)")
        t0 = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy bench_copy (event_id, event_type, occurred_at, user_id, partner_id, item_id, source) from stdin"
            ) as copy,
        ):
            for n in range(rows):
                copy.write_row((f"bench:e{n}", "view", now, f"u{n % 100_000}", "bench", f"i{n % 5000}", "collector"))
        conn.commit()
        elapsed = time.perf_counter() - t0
        conn.execute("drop table bench_copy")
        conn.commit()
    return rows / elapsed


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q / 100 * len(values)))] * 1e3 if values else float("nan")


def fault_injector(stop: threading.Event, dsn: str, redis_proc: subprocess.Popen | None, log: list[str]) -> None:
    import psycopg

    from ltvfeed.collector.writer import APPLICATION_NAME

    time.sleep(2)
    if redis_proc is not None:
        redis_proc.send_signal(signal.SIGKILL)
        log.append(f"{time.strftime('%X')} redis-server SIGKILL (rate limiting fails open)")
    for _ in range(5):
        if stop.wait(1.5):
            return
        with psycopg.connect(dsn, autocommit=True) as conn:
            n = conn.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where application_name = %s and datname = current_database()",
                (APPLICATION_NAME,),
            ).fetchone()[0]
        log.append(f"{time.strftime('%X')} terminated {n} collector connection(s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument(
        "--latency-batch", type=int, default=100, help="events per request in the latency phase (a sender's flush)"
    )
    parser.add_argument("--faults", action="store_true")
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    from ltvfeed.collector.partners import add_partner, ensure_collector_schema, fernet
    from ltvfeed.db import connect, drop_database
    from ltvfeed.infra.stack import up
    from ltvfeed.settings import Settings

    tag = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="ltvfeed-bench-collector-"))
    os.environ["LTVFEED_COLLECTOR_KEY"] = Fernet.generate_key().decode()
    settings = Settings(state_dir=state, warehouse_db=f"ltvfeed_bench_coll_{tag}", redis_prefix=f"bench_coll_{tag}:")
    stack = up(settings)
    ensure_collector_schema(stack.warehouse_dsn)
    secret = add_partner(stack.warehouse_dsn, fernet(settings), "bench")
    redis_proc, redis_url = None, stack.redis_url
    if args.faults:
        rport = free_port()
        redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", HOST, "--save", "", "--dir", str(state)],
            stdout=subprocess.DEVNULL,
        )
        redis_url = f"redis://{HOST}:{rport}/0"
    port = free_port()
    env = {
        **os.environ,
        **stack.env(),
        "LTVFEED_STATE_DIR": str(state),
        "LTVFEED_WAREHOUSE_DB": settings.warehouse_db,
        "LTVFEED_REDIS_PREFIX": settings.redis_prefix,
        "LTVFEED_REDIS_URL": redis_url,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ltvfeed.cli", "collect", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(state / "collector.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    failed = False
    try:
        url = f"http://{HOST}:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("collector did not start: " + (state / "collector.log").read_text()[-500:])
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
        bodies = make_bodies(0, args.events, args.batch)
        sender = Sender(url, "bench", secret)
        stop, fault_log = threading.Event(), []
        injector = None
        if args.faults:
            injector = threading.Thread(target=fault_injector, args=(stop, stack.warehouse_dsn, redis_proc, fault_log))
            injector.start()
        elapsed = throughput(sender, bodies, args.senders)
        stop.set()
        if injector:
            injector.join()
        rate = args.events / elapsed
        phase1 = dict(sender.statuses)
        print(f"throughput: {args.events:,} events in {elapsed:.1f} s = {rate:,.0f} events/s; statuses {phase1}")
        for line in fault_log:
            print(f"  fault: {line}")

        lat_batch = args.latency_batch
        lat_events = min(args.events, max(lat_batch * 200, int(rate / 2 * 20)))
        lat_bodies = make_bodies(args.events, lat_events, lat_batch)
        half = rate / 2 / lat_batch
        lat = latency(sender, lat_bodies, half, args.senders)
        print(
            f"latency at half rate ({half * lat_batch:,.0f} events/s, {len(lat)} timed batches of {lat_batch}): "
            f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {lat[-1] * 1e3:.1f} ms"
        )
        total = args.events + lat_events
        with connect(stack.warehouse_dsn) as conn:
            rows, distinct = conn.execute("select count(*), count(distinct event_id) from raw.events").fetchone()
        copy = copy_rate(stack.warehouse_dsn, args.events)
        print(f"COPY of {args.events:,} rows: {copy:,.0f} rows/s; collector / COPY = {rate / copy:.2f}")
        acks = dict(sender.acks)
        lost, duplicated = total - rows, rows - distinct
        print(
            f"accounting: sent {total:,} unique events; acknowledged {acks}; rows {rows:,}; "
            f"lost {lost}; duplicated {duplicated}; HTTP 500s {sender.statuses.get(500, 0)}"
        )
        failed = lost != 0 or duplicated != 0 or sender.statuses.get(500, 0) > 0 or acks.get("stored", 0) != rows
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        if redis_proc is not None and redis_proc.poll() is None:
            redis_proc.kill()
        drop_database(stack.pg_dsn, settings.warehouse_db)
        import redis

        client = redis.Redis.from_url(stack.redis_url)
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(state, ignore_errors=True)
    print("FAIL" if failed else "OK: every event stored exactly once")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
