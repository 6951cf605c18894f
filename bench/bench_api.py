"""Benchmark of the feed API as it ships: latency and throughput of ``GET /v1/users/{user_id}/feed`` at a fixed
request rate (open loop) and flat out on ``--closed-connections`` connections (closed loop), with the request-time
freshness filter on (the default of ``ltvfeed serve``) and off, against a bare redis-py GET of the same feed key
measured in the same run.

    .venv/bin/python bench/bench_api.py                          # 500 req/s for 20 s, target p99 <= 10 ms
    .venv/bin/python bench/bench_api.py --rate 200 --duration 5  # lighter
    .venv/bin/python bench/bench_api.py --freshness on           # one configuration only

What runs: a generation of synthetic feeds is published under a fresh Redis prefix of the stack's Redis, with its
own warehouse database (empty marts built by dbt, so that Feast can be applied), the Feast definitions applied to
the prefix's project and every user's recent purchases pushed online (some of them items of the user's feed,
bought after the generation's cutoff, so the filter has something to drop). The API runs as ``ltvfeed serve``
(1 worker, no access log: the command people run, with its HTTP protocol and settings) in its own process on
127.0.0.1 only, once per freshness setting (``LTVFEED_API_FRESHNESS``). The load generator (this process,
asyncio, HTTP/1.1 keep-alive on at most ``--connections`` connections) sends request ``i`` at ``t0 + i / rate``
whatever happened before, and measures latency from that *intended* send time, so a stalled server shows up as
latency (no coordinated omission). It stops scheduling after ``--duration`` s (fixed count ``rate * duration``)
and gives up waiting ``--grace`` s later. The closed-loop phase then sends ``--closed-requests`` requests back to
back on ``--closed-connections`` connections (throughput). Users are known with probability
``1 - --unknown-share`` (personal feed), else unknown (classic fallback). Server CPU per request is read from
/proc for each phase. The prefix's keys, online features and warehouse database are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class Results:
    latency_s: list[float] = field(default_factory=list)  # from intended send time
    service_s: list[float] = field(default_factory=list)  # from actual send time
    statuses: dict[int, int] = field(default_factory=dict)
    personalised: int = 0
    degraded: int = 0
    freshness: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    scheduled: int = 0
    first_sent: float = 0.0
    last_done: float = 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values, 50) * 1e3,
        "p90_ms": percentile(values, 90) * 1e3,
        "p99_ms": percentile(values, 99) * 1e3,
        "max_ms": max(values) * 1e3 if values else float("nan"),
    }


# ---- data and server ----------------------------------------------------------------------------------------
def publish(redis_url: str, prefix: str, users: int, feed_len: int, seed: int) -> tuple[str, dict[str, list[str]]]:
    """A committed generation (as_of yesterday) of ranked synthetic feeds; also, per user, items to mark bought."""
    from ltvfeed.serving.feed import Feed, FeedItem
    from ltvfeed.serving.feed_store import FeedStore

    rng = random.Random(seed)
    bought: dict[str, list[str]] = {}

    def feed(user: str, classic: bool) -> Feed:
        items = []
        for k in range(feed_len):
            c, p, d = rng.random(), None if classic else rng.random(), rng.random()
            score = c if classic else 0.5 * c + 0.4 * p + 0.1 * d
            items.append(FeedItem(f"i{rng.randrange(100_000)}", score - k, c, p, d))  # "- k": ranked order
        return Feed(user, tuple(items))

    def personal(user: str) -> Feed:
        made = feed(user, False)
        bought[user] = [made.items[k].item_id for k in (0, 3)]  # two of the top 10, bought since the cutoff
        return made

    as_of = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    store = FeedStore(redis_url, prefix)
    gen = store.begin_generation(model_versions={"bench": "1"}, extra={"as_of": as_of})
    store.write_shard(gen, 0, (personal(f"u{i}") for i in range(users)), progress=True)
    store.write_classic(gen, feed("classic", True))
    store.commit_generation(gen, expected_shards=1)
    store.client.close()
    return gen, bought


def feast_online(stack, bought: dict[str, list[str]]) -> None:
    """Apply the Feast definitions to the bench's project (on empty marts built by dbt in the bench's own
    warehouse) and push every user's recent purchases online: what the freshness filter reads."""
    import pandas as pd
    from feast.data_source import PushMode

    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.features import apply, feature_store
    from ltvfeed.features.recent_purchases import ITEM_IDS, PUSH_SOURCE, REPEATABLE, TIMES

    as_of = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    with tempfile.TemporaryDirectory() as target:
        run_dbt(stack.env(), ["run", "--vars", json.dumps({"as_of": as_of})], target_path=Path(target))
    apply(stack)
    store = feature_store(stack)
    now = datetime.now(UTC)
    users = list(bought)
    for start in range(0, len(users), 5000):
        chunk = users[start : start + 5000]
        frame = pd.DataFrame(
            {
                "user_id": chunk,
                "feature_timestamp": pd.Series([now] * len(chunk), dtype="datetime64[us, UTC]"),
                ITEM_IDS: [bought[u] for u in chunk],
                TIMES: [[int(now.timestamp()) - 60] * len(bought[u]) for u in chunk],
                REPEATABLE: [[False] * len(bought[u]) for u in chunk],
            }
        )
        store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)


def free_port() -> int:
    with socket.create_server((HOST, 0)) as s:
        return s.getsockname()[1]


def start_api(env: dict[str, str], port: int, freshness: bool) -> subprocess.Popen:
    """``ltvfeed serve`` on ``port`` with the freshness filter on or off; checks that it says what was asked."""
    import shutil

    exe = shutil.which("ltvfeed", path=os.path.dirname(sys.executable)) or "ltvfeed"
    cmd = [exe, "serve", "--port", str(port), "--no-access-log"]
    env = {**env, "LTVFEED_API_FRESHNESS": "true" if freshness else "false"}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/v1/users/u0/feed", timeout=5) as answer:
                        said = json.loads(answer.read())["freshness"]
                    if said != ("applied" if freshness else "off"):
                        server.terminate()
                        raise SystemExit(f"ltvfeed serve answered freshness {said!r} with the filter asked {freshness}")
                    return server
        except OSError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"ltvfeed serve exited with {server.returncode}: {server.stdout.read()}")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"ltvfeed serve did not become ready within 180 s: {server.communicate(timeout=20)[0]}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# ---- load generator -----------------------------------------------------------------------------------------
class Connection:
    """Minimal HTTP/1.1 keep-alive GET client (much cheaper per request than a general client, so the generator
    disturbs the measurement less). Needs Content-Length responses, which uvicorn sends for JSON."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reused = False

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at < 0:
            raise RuntimeError("response without Content-Length")
        length = int(lower[at + 15 : lower.index(b"\r\n", at)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def request_paths(count: int, users: int, unknown_share: float, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"/v1/users/unknown{i}/feed?n={n}"
        if rng.random() < unknown_share
        else f"/v1/users/u{rng.randrange(users)}/feed?n={n}"
        for i in range(count)
    ]


async def load(port: int, paths: list[str], rate: float, connections: int, grace_s: float) -> Results:
    results = Results()
    idle: list[Connection] = []
    slots = asyncio.Semaphore(connections)

    async def one(path: str, intended: float) -> None:
        async with slots:
            conn = idle.pop() if idle else None
            sent = time.perf_counter()
            try:
                try:
                    conn = conn or await Connection.open(port)
                    status, body = await conn.get(path)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if conn is None or not conn.reused:
                        raise
                    # The server closed an idle keep-alive connection (uvicorn: after 5 s): like any HTTP
                    # client, send the (idempotent) GET again on a new connection; the reconnect is counted.
                    conn.close()
                    results.reconnects += 1
                    conn = await Connection.open(port)
                    status, body = await conn.get(path)
            except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
                results.errors += 1
                results.error_types[type(exc).__name__] = results.error_types.get(type(exc).__name__, 0) + 1
                if conn is not None:
                    conn.close()
                return
            done = time.perf_counter()
            conn.reused = True
            idle.append(conn)
        results.latency_s.append(done - intended)
        results.service_s.append(done - sent)
        results.statuses[status] = results.statuses.get(status, 0) + 1
        results.personalised += b'"personalised":true' in body
        results.degraded += b'"degraded":true' in body
        at = body.find(b'"freshness":"')
        said = body[at + 13 : body.index(b'"', at + 13)].decode() if at >= 0 else "-"
        results.freshness[said] = results.freshness.get(said, 0) + 1
        results.last_done = max(results.last_done, done)

    tasks = []
    t0 = time.perf_counter() + 0.05
    results.first_sent = t0
    for i, path in enumerate(paths):
        intended = t0 + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(path, intended)))
    results.scheduled = len(tasks)
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    results.errors += len(pending)
    if pending:
        results.error_types["no answer within grace"] = len(pending)
    for conn in idle:
        conn.close()
    return results


def redis_get_latency(redis_url: str, keys: list[str], rate: float) -> dict[str, list[float]]:
    """redis-py, one client, the same feed keys the API reads, paced at the same rate (it is what each API request
    does at least twice: the generation pointer and the feed)."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pointer_key = keys[0].rsplit(":", 2)[0] + ":current"
    client.get(keys[0])
    get, pointer_and_get = [], []
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        start = time.perf_counter()
        client.get(key)
        middle = time.perf_counter()
        client.get(pointer_key)
        client.get(key)
        get.append(middle - start)
        pointer_and_get.append(time.perf_counter() - middle)
    client.close()
    return {"get": get, "pointer_and_get": pointer_and_get}


def run_configs(env: dict[str, str], modes: list[bool], args: argparse.Namespace) -> dict[str, dict[str, list]]:
    """One ``ltvfeed serve`` process per freshness setting, all up at once; ``--rounds`` times, each one's open-loop
    phase then each one's closed-loop phase, in turn, so that both see the same machine load. Figures per phase."""
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    figures: dict[str, dict[str, list]] = {}
    try:
        for freshness in modes:
            port = free_port()
            servers["on" if freshness else "off"] = (start_api(env, port, freshness), port)
        for mode, (_, port) in servers.items():
            warm = request_paths(300, args.users, args.unknown_share, args.n, args.seed + 1)
            asyncio.run(load(port, warm, rate=1000, connections=4, grace_s=10))  # imports, pools, caches
            figures[mode] = {"open": [], "closed": []}
        open_paths = request_paths(round(args.rate * args.duration), args.users, args.unknown_share, args.n, args.seed)
        closed_paths = request_paths(100_000, args.users, args.unknown_share, args.n, args.seed + 2)
        for _ in range(args.rounds):
            for phase in ("open", "closed"):
                for mode, (server, port) in servers.items():
                    load_before = os.getloadavg()[0]
                    cpu_before = cpu_seconds(server.pid)
                    if phase == "open":
                        results = run_load(load(port, open_paths, args.rate, args.connections, args.grace))
                    else:
                        results = run_load(closed_loop(port, closed_paths, args.closed_connections, args.closed_s))
                    server_cpu = cpu_seconds(server.pid) - cpu_before
                    figures[mode][phase].append(summarise(results, server_cpu, load_before))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=20)
    return figures


async def closed_loop(port: int, paths: list[str], connections: int, duration_s: float) -> Results:
    """``connections`` clients, each sending its next request as soon as the last one is answered, for
    ``duration_s`` seconds: the throughput the server sustains."""
    results = Results()
    todo = iter(paths)
    results.first_sent = time.perf_counter()
    stop_at = results.first_sent + duration_s

    async def client() -> None:
        conn = await Connection.open(port)
        try:
            for path in todo:
                if time.perf_counter() >= stop_at:
                    return
                sent = time.perf_counter()
                status, body = await conn.get(path)
                done = time.perf_counter()
                results.latency_s.append(done - sent)
                results.service_s.append(done - sent)
                results.statuses[status] = results.statuses.get(status, 0) + 1
                results.personalised += b'"personalised":true' in body
                results.degraded += b'"degraded":true' in body
                at = body.find(b'"freshness":"')
                said = body[at + 13 : body.index(b'"', at + 13)].decode() if at >= 0 else "-"
                results.freshness[said] = results.freshness.get(said, 0) + 1
                results.last_done = done
        except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
            results.errors += 1
            results.error_types[type(exc).__name__] = results.error_types.get(type(exc).__name__, 0) + 1
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    results.scheduled = len(results.latency_s) + results.errors
    return results


def run_load(coroutine) -> Results:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def summarise(results: Results, server_cpu: float, load_before: float) -> dict:
    completed = len(results.latency_s)
    elapsed = results.last_done - results.first_sent if completed else float("nan")
    return {
        "scheduled": results.scheduled,
        "completed": completed,
        "errors": results.errors,
        "error_types": results.error_types,
        "reconnects_after_idle_close": results.reconnects,
        "statuses": results.statuses,
        "freshness": results.freshness,
        "throughput_rps": completed / elapsed if completed else 0.0,
        "latency_from_intended_send": summary_ms(results.latency_s),
        "service_time": summary_ms(results.service_s),
        "personalised_share": results.personalised / completed if completed else 0.0,
        "degraded": results.degraded,
        "server_cpu_ms_per_request": 1e3 * server_cpu / completed if completed else float("nan"),
        "loadavg_1m_before": load_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="Target requests per second (open loop).")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of scheduled load.")
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds to wait for late answers after that.")
    parser.add_argument("--connections", type=int, default=64, help="Most concurrent connections (open loop).")
    parser.add_argument("--closed-connections", type=int, default=8, help="Connections of the closed-loop phase.")
    parser.add_argument("--closed-s", type=float, default=10.0, help="Seconds of each closed-loop phase.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of (open, closed) phases per setting.")
    parser.add_argument("--freshness", choices=["both", "on", "off"], default="both", help="Filter settings run.")
    parser.add_argument("--users", type=int, default=5000, help="Users with a personal feed.")
    parser.add_argument("--feed-len", type=int, default=50, help="Items stored per feed.")
    parser.add_argument("--n", type=int, default=10, help="Items asked for per request.")
    parser.add_argument("--unknown-share", type=float, default=0.1, help="Share of requests for unknown users.")
    parser.add_argument("--redis-samples", type=int, default=5000, help="Bare Redis GETs measured.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1 or not 0 <= args.unknown_share <= 1:
        parser.error("rate and duration must be > 0, connections >= 1, unknown-share in [0, 1]")

    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up
    from ltvfeed.settings import get_settings

    base = get_settings()
    tag = uuid.uuid4().hex[:6]
    settings = base.model_copy(
        update={"redis_prefix": f"{base.redis_prefix}bench_api_{tag}:", "warehouse_db": f"ltvfeed_bench_api_{tag}"}
    )
    stack = up(settings)
    prefix = settings.redis_prefix
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.freshness]
    figures: dict[str, dict[str, list]] = {}
    try:
        gen, bought = publish(stack.redis_url, prefix, args.users, args.feed_len, args.seed)
        if True in modes:
            feast_online(stack, bought)
        env = {**os.environ, **stack.env()}
        figures = run_configs(env, modes, args)
        keys = [f"{prefix}feed:{gen}:u{random.Random(i).randrange(args.users)}" for i in range(args.redis_samples)]
        redis_lat = redis_get_latency(stack.redis_url, keys, args.rate)
    finally:
        import redis

        from ltvfeed.features import clear_online

        if True in modes:
            try:
                clear_online(stack)
            except Exception as exc:  # cleaning up must not hide the figures' error
                print(f"could not clear the bench's online features: {exc}", file=sys.stderr)
        client = redis.Redis.from_url(stack.redis_url)
        stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(stale), 1000):
            client.delete(*stale[i : i + 1000])
        client.close()
        drop_database(stack.pg_dsn, settings.warehouse_db)

    report = {
        "machine": {"cpus": os.cpu_count(), "loadavg_1m_after": os.getloadavg()[0]},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "freshness": figures,
        "redis_py": {
            "get_feed_key": summary_ms(redis_lat["get"]),
            "pointer_get_plus_feed_get": summary_ms(redis_lat["pointer_and_get"]),
        },
        "target_p99_ms": 10.0,
    }
    print(f"\nfeed API (ltvfeed serve, 1 worker), n={args.n} of {args.feed_len} stored items, {args.users} users")
    for mode, phases in figures.items():
        for phase, rounds in phases.items():
            what = (
                f"open loop {args.rate:.0f} req/s x {args.duration:.0f} s"
                if phase == "open"
                else f"closed loop {args.closed_connections} conns {args.closed_s:.0f} s"
            )
            for a in rounds:
                print(
                    f"  freshness {mode:3} {what:28} completed {a['completed']}/{a['scheduled']}, "
                    f"errors {a['errors']} {a['error_types'] or ''}, statuses {a['statuses']}, "
                    f"degraded {a['degraded']}, freshness {a['freshness']}, "
                    f"throughput {a['throughput_rps']:.0f} req/s, "
                    f"server CPU {a['server_cpu_ms_per_request']:.3f} ms/req, "
                    f"load {a['loadavg_1m_before']:.2f}"
                )
                if phase == "open":
                    s = a["latency_from_intended_send"]
                    print(
                        f"  {'':14}{'latency from intended send':28} p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f}  "
                        f"p99 {s['p99_ms']:.3f}  max {s['max_ms']:.3f}  (target p99 <= 10 ms: "
                        f"{'met' if s['p99_ms'] <= 10 and a['errors'] == 0 else 'NOT met'})"
                    )
    medians = {
        mode: {
            phase: {
                key: statistics.median(r[key] for r in rounds)
                for key in ("server_cpu_ms_per_request", "throughput_rps")
            }
            for phase, rounds in phases.items()
        }
        for mode, phases in figures.items()
    }
    report["medians"] = medians
    for mode, phases in medians.items():
        for phase, m in phases.items():
            print(
                f"  median of {args.rounds} rounds, freshness {mode:3} {phase:6}: "
                f"server CPU {m['server_cpu_ms_per_request']:.3f} ms/req, throughput {m['throughput_rps']:.0f} req/s"
            )
    if set(medians) == {"on", "off"}:
        for phase in ("open", "closed"):
            on, off = medians["on"][phase], medians["off"][phase]
            print(
                f"  on/off {phase:6}: CPU per request "
                f"x{on['server_cpu_ms_per_request'] / off['server_cpu_ms_per_request']:.2f}, "
                f"throughput x{on['throughput_rps'] / off['throughput_rps']:.2f}"
            )
    for label, s in (
        ("redis-py GET feed key", report["redis_py"]["get_feed_key"]),
        ("redis-py GET pointer + GET feed", report["redis_py"]["pointer_get_plus_feed_get"]),
    ):
        print(f"  {label:38} p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f}  max {s['max_ms']:8.3f}")
    print(f"  load average (1 min) {report['machine']['loadavg_1m_after']:.2f} at the end on {os.cpu_count()} CPUs")
    unavailable = sum(
        r["freshness"].get("unavailable", 0)
        for phases in figures.values()
        for rounds in phases.values()
        for r in rounds
    )
    print(f"  answers with freshness 'unavailable': {unavailable}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
