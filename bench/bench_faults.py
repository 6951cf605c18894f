"""Fault injection: kill -9 Redis under load against the feed API, and kill -9 PostgreSQL during an import.

    .venv/bin/python bench/bench_faults.py                 # both; 4 s per API phase, 4 client threads
    .venv/bin/python bench/bench_faults.py --only redis    # or: --only postgres

What runs, all of it this script's own (nothing of the machine's is touched): a ``redis-server`` on a free port
with its data dir under a temporary state dir (no persistence: the worst case, a restart that comes back empty),
a committed generation of synthetic feeds (archived under that state dir, as ``feeds generate`` does), and the
API as people run it (``ltvfeed serve``). Client threads request feeds for known users throughout; the script
prints the answers by status (and personal / degraded) before the kill, while Redis is down, after it came back
empty, and once the API has republished the generation by itself. It exits non-zero on any 500, any failed
request, or when personal feeds are not served again afterwards.

PostgreSQL: the embedded one (pgserver) under another temporary state dir, started by ``ltvfeed import`` itself
as on a fresh machine. A first file of orders is imported; a second, larger one is being imported (``ltvfeed
import``, a subprocess) when every PostgreSQL process is killed with SIGKILL, as soon as its COPY runs. The script
prints the import's exit status and last line, the rows before, after the crash (PostgreSQL restarted), after
re-running the same command, and after running it once more; it exits non-zero on any loss (fewer rows than the
files hold once re-run), any duplicate (an order id twice, or more rows than the files hold) or a traceback.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HOST = "127.0.0.1"
USERS = 500


def free_port() -> int:
    with socket.create_server((HOST, 0)) as s:
        return s.getsockname()[1]


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", str(data_dir)]
    cmd += ["--save", "", "--appendonly", "no"]  # no persistence: a restart comes back empty
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(host=HOST, port=port).ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def publish(redis_url: str, prefix: str, state_dir: Path) -> str:
    from ltvfeed.serving.feed import Feed, FeedItem
    from ltvfeed.serving.feed_archive import feed_archive_dir
    from ltvfeed.serving.feed_store import FeedStore

    def feed(user: str) -> Feed:
        return Feed(user, tuple(FeedItem(f"{user}-i{k}", 1.0 - k / 20, 0.5, 0.3, 0.1) for k in range(10)))

    store = FeedStore(redis_url, prefix, archive_dir=feed_archive_dir(state_dir, prefix))
    gen = store.begin_generation(model_versions={"bench": "faults"})
    store.write_shard(gen, 0, (feed(f"u{i}") for i in range(USERS)))
    store.write_classic(gen, Feed("classic", tuple(FeedItem(f"c{k}", 1.0 - k / 20, 0.5, None, 0.0) for k in range(10))))
    store.commit_generation(gen, expected_shards=1)
    store.client.close()
    return gen


def start_api(env: dict[str, str], port: int) -> subprocess.Popen:
    import httpx

    exe = shutil.which("ltvfeed", path=os.path.dirname(sys.executable)) or "ltvfeed"
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"ltvfeed serve exited with {proc.returncode}")
        time.sleep(0.2)
    raise SystemExit("ltvfeed serve did not become ready within 60 s")


class Load:
    """Closed-loop clients; every answer counted under the phase current when it arrived."""

    def __init__(self, port: int, threads: int) -> None:
        self.port, self.phase = port, "before"
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, seed: int) -> None:
        import random

        import httpx

        rng = random.Random(seed)
        with httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=5) as client:
            while not self.stop.is_set():
                phase = self.phase
                try:
                    response = client.get(f"/v1/users/u{rng.randrange(USERS)}/feed?n=5")
                    key = str(response.status_code)
                    if response.status_code == 200:
                        body = response.json()
                        key += " personal" if body["personalised"] else " degraded" if body["degraded"] else " classic"
                except httpx.HTTPError as exc:
                    key = f"failed ({type(exc).__name__})"
                with self.lock:
                    self.counts[phase][key] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def redis_fault(args: argparse.Namespace) -> bool:
    state_dir = Path(tempfile.mkdtemp(prefix="ltvfeed-faults-"))
    redis_port, api_port = free_port(), free_port()
    redis_url = f"redis://{HOST}:{redis_port}/0"
    prefix = f"faults_{uuid.uuid4().hex[:6]}:"
    env = {
        **os.environ,
        "LTVFEED_REDIS_URL": redis_url,
        "LTVFEED_REDIS_PREFIX": prefix,
        "LTVFEED_STATE_DIR": str(state_dir),
        "LTVFEED_API_FRESHNESS": "false",
    }
    redis_proc = start_redis(redis_port, state_dir / "redis")
    api = None
    try:
        gen = publish(redis_url, prefix, state_dir)
        api = start_api(env, api_port)
        with Load(api_port, args.threads) as load:
            time.sleep(args.phase_s)
            load.phase = "during (Redis killed)"
            redis_proc.send_signal(signal.SIGKILL)
            redis_proc.wait()
            time.sleep(args.phase_s)
            load.phase = "after (Redis back, empty)"
            redis_proc = start_redis(redis_port, state_dir / "redis")
            deadline = time.monotonic() + args.recover_s
            recovered_after = None
            start = time.monotonic()
            while time.monotonic() < deadline:
                import redis

                if redis.Redis.from_url(redis_url).get(f"{prefix}feed:current") is not None:
                    recovered_after = time.monotonic() - start
                    break
                time.sleep(0.05)
            time.sleep(0.5)  # answers in flight before the republish finish in "after"
            load.phase = "recovered"
            time.sleep(args.phase_s)
    finally:
        if api is not None:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(timeout=20)
        redis_proc.kill()
        redis_proc.wait()
        shutil.rmtree(state_dir, ignore_errors=True)

    print(f"\nfeed API under kill -9 of Redis (generation {gen}, {USERS} users, {args.threads} client threads)")
    bad = 0
    for phase, counts in load.counts.items():
        total = sum(counts.values())
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        print(f"  {phase:28} {total:6} requests  {shown}")
        bad += sum(v for k, v in counts.items() if k.startswith("5") or k.startswith("failed"))
    personal_after = load.counts["recovered"]["200 personal"]
    print(
        f"  generation republished by the API {recovered_after:.2f} s after Redis came back"
        if recovered_after is not None
        else f"  generation NOT republished within {args.recover_s:.0f} s"
    )
    ok = bad == 0 and recovered_after is not None and personal_after == sum(load.counts["recovered"].values())
    print(f"  verdict: {'PASS' if ok else 'FAIL'} (5xx or failed requests: {bad}; all personal once recovered)")
    return ok


# ---- PostgreSQL during an import ------------------------------------------------------------------------------
def write_orders(path: Path, first: int, count: int) -> None:
    with path.open("w") as f:
        f.write("order_id,user_id,ordered_at,amount\n")
        for i in range(first, first + count):
            f.write(f"o{i},u{i % 5000},2026-0{1 + i % 9}-1{i % 10}T10:00:00,{(i % 997) / 10:.2f}\n")


def postgres_pids(state_dir: Path) -> list[int]:
    """The embedded postmaster and every process it started (backends, checkpointer, ...)."""
    from ltvfeed.infra.embedded import postgres_status

    root = postgres_status(state_dir).pid
    if root is None:
        return []
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            pids.append(int(stat.parent.name))
    return pids


def count_orders(dsn: str) -> tuple[int, int]:
    """Rows of raw.orders and how many order ids occur more than once."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows, dupes = conn.execute("select count(*), count(*) - count(distinct order_id) from raw.orders").fetchone()
    return rows, dupes


def import_cmd(env: dict[str, str], path: Path) -> subprocess.Popen:
    exe = shutil.which("ltvfeed", path=os.path.dirname(sys.executable)) or "ltvfeed"
    cmd = [exe, "import", "orders", str(path), "--no-push-online"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def postgres_fault(args: argparse.Namespace) -> bool:
    import psycopg

    from ltvfeed.infra.stack import down, up
    from ltvfeed.settings import Settings

    state_dir = Path(tempfile.mkdtemp(prefix="ltvfeed-faults-pg-"))
    settings = Settings(pg_dsn=None, redis_url=None, state_dir=state_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("LTVFEED_PG_DSN", "LTVFEED_REDIS_URL")}
    env["LTVFEED_STATE_DIR"] = str(state_dir)
    small, big = state_dir / "orders-1.csv", state_dir / "orders-2.csv"
    write_orders(small, 0, 1000)
    write_orders(big, 1000, args.import_rows)
    rows: dict[str, tuple[int, int]] = {}
    problems: list[str] = []
    try:
        first = import_cmd(env, small)
        out = first.communicate(timeout=600)[0]
        if first.returncode != 0:
            raise SystemExit(f"the first import failed: {out}")
        dsn = up(settings).warehouse_dsn
        rows["before"] = count_orders(dsn)
        crashed = import_cmd(env, big)
        deadline = time.monotonic() + 300
        killed = []
        with psycopg.connect(dsn, autocommit=True) as watcher:
            while time.monotonic() < deadline and crashed.poll() is None:
                copying = watcher.execute(
                    "select count(*) from pg_stat_activity where query ilike 'copy%' and pid <> pg_backend_pid()"
                ).fetchone()[0]
                if copying:
                    time.sleep(0.2)  # well into the COPY
                    for pid in postgres_pids(state_dir):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                            killed.append(pid)
                    break
                time.sleep(0.02)
        out = crashed.communicate(timeout=300)[0]
        print(f"\nltvfeed import under kill -9 of PostgreSQL (embedded, {len(killed)} processes killed mid-COPY)")
        print(f"  killed import: exit {crashed.returncode}, last line: {last_line(out)!r}")
        if not killed:
            problems.append("the import finished before PostgreSQL could be killed (use more --import-rows)")
        if crashed.returncode == 0 and killed:
            problems.append("the import said success although PostgreSQL died under it")
        if "Traceback" in out:
            problems.append("the killed import printed a traceback")
        from ltvfeed.infra.embedded import postgres_status

        gone = time.monotonic() + 30  # the killed processes reaped, so that `up` sees PostgreSQL down
        while postgres_status(state_dir).running and time.monotonic() < gone:
            time.sleep(0.1)
        dsn = up(settings).warehouse_dsn  # restarts it (crash recovery)
        rows["after the crash"] = count_orders(dsn)
        for label in ("after re-running the command", "after running it once more"):
            again = import_cmd(env, big)
            out = again.communicate(timeout=600)[0]
            print(f"  {label}: exit {again.returncode}, last line: {last_line(out)!r}")
            if again.returncode != 0:
                problems.append(f"{label}: exit {again.returncode}")
            rows[label] = count_orders(dsn)
    finally:
        with contextlib.suppress(Exception):
            down(settings)
        shutil.rmtree(state_dir, ignore_errors=True)
    expected = {
        "before": 1000,
        "after the crash": 1000,
        "after re-running the command": 1000 + args.import_rows,
        "after running it once more": 1000 + args.import_rows,
    }
    for label, (count, dupes) in rows.items():
        print(f"  rows {label:30} {count:8}  (expected {expected[label]}, duplicate order ids {dupes})")
        if count < expected[label]:
            problems.append(f"{expected[label] - count} rows lost {label}")
        if count > expected[label] or dupes:
            problems.append(f"duplicates {label}: {count} rows, {dupes} duplicate ids")
    print(f"  verdict: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["redis", "postgres"], help="Run one of the two faults.")
    parser.add_argument("--phase-s", type=float, default=4.0, help="Seconds of API load per phase.")
    parser.add_argument("--threads", type=int, default=4, help="Client threads.")
    parser.add_argument("--recover-s", type=float, default=30.0, help="Most seconds to wait for personal feeds.")
    parser.add_argument("--import-rows", type=int, default=300_000, help="Orders in the file whose import is cut.")
    args = parser.parse_args()
    ok = True
    if args.only in (None, "redis"):
        ok &= redis_fault(args)
    if args.only in (None, "postgres"):
        ok &= postgres_fault(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
