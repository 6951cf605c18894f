"""Redis feed store: write rate of a generation, the atomic swap that serves it, and `read_feed` latency, beside
the bare Redis operations they are made of, measured in the same run on the same server.

    .venv/bin/python bench/bench_feed_store.py                  # 20,000 feeds of 10 items, 5,000 reads
    .venv/bin/python bench/bench_feed_store.py --users 2000     # smaller

Uses LTVFEED_REDIS_URL (or starts the embedded Redis under the state dir) with its own key prefix, removed at
the end. Printed: feeds/s written by `write_shard` and pipelined bare SETs of the same JSON (the baseline), the
commit (pointer swap) time over several generations, and `read_feed` p50/p99 against a bare GET of the same key.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import numpy as np


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10, help="items per feed")
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--swaps", type=int, default=5, help="generations committed (swap timed each time)")
    opts = parser.parse_args()

    from ltvfeed.infra.stack import up
    from ltvfeed.serving.feed import Feed, FeedItem
    from ltvfeed.serving.feed_store import FeedStore
    from ltvfeed.settings import Settings

    settings = Settings()
    stack = up(settings)
    prefix = f"{settings.redis_prefix}bench_store_{uuid.uuid4().hex[:6]}:"
    store = FeedStore(stack.redis_url, prefix)
    client = store.client  # the bare operations go through the same connection pool
    rng = np.random.default_rng(0)
    users = [f"u{i:07d}" for i in range(1, opts.users + 1)]

    def feeds() -> list[Feed]:
        return [
            Feed(u, tuple(FeedItem(f"i{j:05d}", float(s), float(s), float(s), 0.5) for j, s in
                          zip(rng.choice(10_000, opts.items, replace=False), rng.random(opts.items), strict=True)))
            for u in users
        ]  # fmt: skip

    try:
        batch = feeds()
        payload = [f.to_json() for f in batch]
        print(f"Redis {stack.redis_url}; {opts.users:,} feeds of {opts.items} items, ~{len(payload[0])} bytes each")

        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i, (u, body) in enumerate(zip(users, payload, strict=True)):
            pipe.set(f"{prefix}bare:{u}", body)
            if (i + 1) % 2000 == 0:
                pipe.execute()
        pipe.execute()
        bare_rate = opts.users / (time.perf_counter() - start)

        write_rates, swaps = [], []
        for _ in range(opts.swaps):
            generation = store.begin_generation()
            start = time.perf_counter()
            store.write_shard(generation, 0, batch)
            write_rates.append(opts.users / (time.perf_counter() - start))
            store.write_classic(generation, batch[0])
            start = time.perf_counter()
            store.commit_generation(generation, 1)
            swaps.append(time.perf_counter() - start)

        sample = [users[i] for i in rng.integers(0, len(users), opts.reads)]
        reads, gets = [], []
        for u in sample:
            start = time.perf_counter()
            client.get(f"{prefix}bare:{u}")
            gets.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert store.read_feed(u) is not None
            reads.append(time.perf_counter() - start)

        write = statistics.median(write_rates)
        print(f"write_shard        {write:9,.0f} feeds/s (median of {opts.swaps})  "
              f"bare pipelined SET {bare_rate:9,.0f} keys/s  ratio {write / bare_rate:.2f}")  # fmt: skip
        print(f"commit (swap)      median {statistics.median(swaps) * 1e3:.2f} ms, max {max(swaps) * 1e3:.2f} ms")
        print(f"read_feed          p50 {percentile_ms(reads, 50):.3f} ms  p99 {percentile_ms(reads, 99):.3f} ms  "
              f"bare GET p50 {percentile_ms(gets, 50):.3f} ms  p99 {percentile_ms(gets, 99):.3f} ms  "
              f"ratio p50 {percentile_ms(reads, 50) / percentile_ms(gets, 50):.1f}")  # fmt: skip
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i : i + 5000])


if __name__ == "__main__":
    main()
