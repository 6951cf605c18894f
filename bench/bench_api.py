"""Benchmark of the feed API: latency and throughput of ``GET /v1/users/{user_id}/feed`` at a fixed request rate
(open loop), against a bare redis-py GET of the same feed key measured in the same run.

    .venv/bin/python bench/bench_api.py                          # 500 req/s for 20 s, target p99 <= 10 ms
    .venv/bin/python bench/bench_api.py --rate 200 --duration 5  # lighter

What runs: a generation of synthetic feeds is published under a fresh Redis prefix of the stack's Redis; the API
runs as ``uvicorn --factory ltvfeed.serving.api:create_app_from_env`` (1 worker, uvloop + httptools, no access
log) in its own process on 127.0.0.1 only; the load generator (this process, asyncio, HTTP/1.1 keep-alive on at
most ``--connections`` connections) sends request ``i`` at ``t0 + i / rate`` whatever happened before, and
measures latency from that *intended* send time, so a stalled server shows up as latency (no coordinated
omission). It stops scheduling after ``--duration`` s (fixed count ``rate * duration``) and gives up waiting
``--grace`` s later. Users are known with probability ``1 - --unknown-share`` (personal feed), else unknown
(classic fallback). The prefix's keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class Results:
    latency_s: list[float] = field(default_factory=list)  # from intended send time
    service_s: list[float] = field(default_factory=list)  # from actual send time
    statuses: dict[int, int] = field(default_factory=dict)
    personalised: int = 0
    degraded: int = 0
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
def publish(redis_url: str, prefix: str, users: int, feed_len: int, seed: int) -> str:
    from ltvfeed.serving.feed import Feed, FeedItem
    from ltvfeed.serving.feed_store import FeedStore

    rng = random.Random(seed)

    def feed(user: str, classic: bool) -> Feed:
        items = []
        for k in range(feed_len):
            c, p, d = rng.random(), None if classic else rng.random(), rng.random()
            score = c if classic else 0.5 * c + 0.4 * p + 0.1 * d
            items.append(FeedItem(f"i{rng.randrange(100_000)}", score - k, c, p, d))  # "- k": ranked order
        return Feed(user, tuple(items))

    store = FeedStore(redis_url, prefix)
    gen = store.begin_generation(model_versions={"bench": "1"})
    store.write_shard(gen, 0, (feed(f"u{i}", False) for i in range(users)), progress=True)
    store.write_classic(gen, feed("classic", True))
    store.commit_generation(gen, expected_shards=1)
    store.client.close()
    return gen


def free_port() -> int:
    with socket.create_server((HOST, 0)) as s:
        return s.getsockname()[1]


def start_api(redis_url: str, prefix: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "LTVFEED_REDIS_URL": redis_url, "LTVFEED_REDIS_PREFIX": prefix}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "ltvfeed.serving.api:create_app_from_env",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"API server exited with {server.returncode}")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("API server did not become ready within 60 s")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="Target requests per second (open loop).")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of scheduled load.")
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds to wait for late answers after that.")
    parser.add_argument("--connections", type=int, default=64, help="Most concurrent connections.")
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

    from ltvfeed.infra.stack import up
    from ltvfeed.settings import get_settings

    settings = get_settings()
    stack = up(settings)
    prefix = f"{settings.redis_prefix}bench_api_{uuid.uuid4().hex[:6]}:"
    server = None
    try:
        gen = publish(stack.redis_url, prefix, args.users, args.feed_len, args.seed)
        port = free_port()
        server = start_api(stack.redis_url, prefix, port)
        warm = request_paths(300, args.users, args.unknown_share, args.n, args.seed + 1)
        asyncio.run(load(port, warm, rate=1000, connections=4, grace_s=10))  # imports, pools, caches
        paths = request_paths(round(args.rate * args.duration), args.users, args.unknown_share, args.n, args.seed)
        load_before = os.getloadavg()[0]
        cpu_before = cpu_seconds(server.pid)
        try:
            import uvloop

            results = uvloop.run(load(port, paths, args.rate, args.connections, args.grace))
        except ImportError:
            results = asyncio.run(load(port, paths, args.rate, args.connections, args.grace))
        server_cpu = cpu_seconds(server.pid) - cpu_before
        keys = [f"{prefix}feed:{gen}:u{random.Random(i).randrange(args.users)}" for i in range(args.redis_samples)]
        redis_lat = redis_get_latency(stack.redis_url, keys, args.rate)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        import redis

        client = redis.Redis.from_url(stack.redis_url)
        stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(stale), 1000):
            client.delete(*stale[i : i + 1000])
        client.close()

    completed = len(results.latency_s)
    elapsed = results.last_done - results.first_sent if completed else float("nan")
    api = summary_ms(results.latency_s)
    report = {
        "machine": {"cpus": os.cpu_count(), "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "api": {
            "scheduled": results.scheduled,
            "completed": completed,
            "errors": results.errors,
            "error_types": results.error_types,
            "reconnects_after_idle_close": results.reconnects,
            "statuses": results.statuses,
            "throughput_rps": completed / elapsed if completed else 0.0,
            "latency_from_intended_send": api,
            "service_time": summary_ms(results.service_s),
            "personalised_share": results.personalised / completed if completed else 0.0,
            "degraded": results.degraded,
            "server_cpu_ms_per_request": 1e3 * server_cpu / completed if completed else float("nan"),
        },
        "redis_py": {
            "get_feed_key": summary_ms(redis_lat["get"]),
            "pointer_get_plus_feed_get": summary_ms(redis_lat["pointer_and_get"]),
        },
        "target_p99_ms": 10.0,
        "target_met": api["p99_ms"] <= 10.0 and results.errors == 0 and set(results.statuses) == {200},
    }
    print(
        f"\nfeed API at {args.rate:.0f} req/s target for {args.duration:.0f} s, "
        f"n={args.n} of {args.feed_len} stored items"
    )
    a = report["api"]
    print(
        f"  completed {completed}/{results.scheduled}, errors {results.errors} {results.error_types or ''}, "
        f"statuses {results.statuses}, reconnects {results.reconnects}, "
        f"throughput {a['throughput_rps']:.1f} req/s, personalised {a['personalised_share']:.1%}, "
        f"degraded {results.degraded}, server CPU {a['server_cpu_ms_per_request']:.2f} ms/request"
    )
    for label, s in (
        ("API latency (from intended send)", api),
        ("API service time (from actual send)", a["service_time"]),
        ("redis-py GET feed key", report["redis_py"]["get_feed_key"]),
        ("redis-py GET pointer + GET feed", report["redis_py"]["pointer_get_plus_feed_get"]),
    ):
        print(
            f"  {label:38} p50 {s['p50_ms']:7.3f} ms  p90 {s['p90_ms']:7.3f}  "
            f"p99 {s['p99_ms']:7.3f}  max {s['max_ms']:8.3f}"
        )
    print(f"  target p99 <= 10 ms at {args.rate:.0f} req/s: {'met' if report['target_met'] else 'NOT met'}")
    m = report["machine"]
    print(
        f"  load average (1 min) {m['loadavg_1m_before']:.2f} before the load, {m['loadavg_1m_after']:.2f} after, "
        f"on {m['cpus']} CPUs (shared machine)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
