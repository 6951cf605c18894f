"""Fault injection against the feed API: kill -9 Redis under load, bring it back empty, and count the answers.

    .venv/bin/python bench/bench_faults.py                 # 4 s per phase, 4 client threads
    .venv/bin/python bench/bench_faults.py --phase-s 2     # quicker

What runs, all of it this script's own (nothing of the machine's is touched): a ``redis-server`` on a free port
with its data dir under a temporary state dir (no persistence: the worst case, a restart that comes back empty),
a committed generation of synthetic feeds (archived under that state dir, as ``feeds generate`` does), and the
API as people run it (``ltvfeed serve``). Client threads request feeds for known users throughout; the script
prints the answers by status (and personal / degraded) before the kill, while Redis is down, after it came back
empty, and once the API has republished the generation by itself. It exits non-zero on any 500, any failed
request, or when personal feeds are not served again afterwards.

Not covered here: kill -9 PostgreSQL during ``ltvfeed import`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import collections
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase-s", type=float, default=4.0, help="Seconds of load per phase.")
    parser.add_argument("--threads", type=int, default=4, help="Client threads.")
    parser.add_argument("--recover-s", type=float, default=30.0, help="Most seconds to wait for personal feeds.")
    args = parser.parse_args()

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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
