"""The feed API against an in-process fakeredis: personal feeds with score components, classic fallback for
unknown users, degraded answers from memory when Redis refuses or hangs (through a TCP gate in front of the
server that the test cuts), readiness, Prometheus metrics, OpenAPI, bounded request heads and the freshness seam.
tests/integration/test_api.py runs the Redis-backed tests again against the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ltvfeed.errors import UserError
from ltvfeed.serving.api import FEED_ROUTE, ApiOptions, create_app
from ltvfeed.serving.api_models import FeedResponse
from ltvfeed.serving.config import FeedConfig
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.feed_service import classic_copy_path, open_serving_store, with_redis_timeouts
from ltvfeed.serving.feed_store import FeedStore
from ltvfeed.settings import Settings

FEED_LEN = 12
USERS = ["u0", "u1", "u2"]
# A generous timeout: the in-process fakeredis shares the GIL with the app, and CI runs these tests beside the
# Airflow-driven ones on 2 cores (load ~8), where 0.5 s was seen to run out and the answer degraded to the
# fallback. Tests of timeouts set their own.
OPTIONS = ApiOptions(redis_timeout_s=3.0, redis_cooldown_s=0.3)


def make_feed(user: str, tag: str, *, classic: bool = False) -> Feed:
    """Items named after ``tag`` (so the test can tell generations apart) with distinct components."""
    items = tuple(
        FeedItem(
            f"{tag}-i{k}",
            score=round(0.9 - k / 50, 6),
            commercial=round(0.8 - k / 40, 6),
            purchase=None if classic else round(0.5 - k / 30, 6),
            diversity=round(1.0 - k / 20, 6),
        )
        for k in range(FEED_LEN)
    )
    return Feed(user, items)


def publish(store: FeedStore, tag: str, users: Sequence[str] = USERS) -> str:
    gen = store.begin_generation(model_versions={"ltv": tag}, config=FeedConfig())
    store.write_shard(gen, 0, [make_feed(u, f"{tag}-{u}") for u in users])
    store.write_classic(gen, make_feed("any", f"{tag}-classic", classic=True))
    store.commit_generation(gen, expected_shards=1)
    return gen


def item_ids(body: dict) -> list[str]:
    return [it["item_id"] for it in body["items"]]


def metric_samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


class RedisGate:
    """A TCP forwarder in front of the real Redis that a test can cut: ``refuse()`` closes the port and drops
    every connection (connection refused / reset), ``hang()`` keeps connections open but forwards nothing (the
    client can only time out), ``open()`` forwards again."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = parts.path or "/0"
        self.mode = "open"
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.mode == "open":
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            s.close()

    def open(self) -> None:
        self.mode = "open"

    def hang(self) -> None:
        self.mode = "hang"

    def refuse(self) -> None:
        self.mode = "refused"
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    close = refuse


# ---- without Redis ------------------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_redis_down_from_the_start_is_503_not_500(tmp_path):
    """Nothing was ever cached: no valid feed exists, so 503 + Retry-After (never 500); the process is live."""
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_prefix="ltvfeed_test_nothing:", state_dir=tmp_path
    )
    with TestClient(create_app(settings, options=OPTIONS), raise_server_exceptions=False) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        start = time.perf_counter()
        response = client.get("/v1/users/u1/feed")
        assert time.perf_counter() - start < 1.0
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "no classic feed has been cached" in response.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert "Redis unavailable" in ready.json()["reason"]


def test_redis_url_gets_timeouts_but_keeps_explicit_ones():
    assert with_redis_timeouts("redis://h:1/0", 0.05) == "redis://h:1/0?socket_timeout=0.05&socket_connect_timeout=0.05"
    url = with_redis_timeouts("redis://h:1/2?socket_timeout=2&health_check_interval=5", 0.05)
    assert url == "redis://h:1/2?socket_timeout=2&health_check_interval=5&socket_connect_timeout=0.05"
    with pytest.raises(UserError, match="redis_timeout_s"):
        ApiOptions(redis_timeout_s=0)


def test_openapi_documents_the_feed_route():
    settings = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    client = TestClient(create_app(settings, options=OPTIONS))  # no lifespan: never touches Redis
    spec = client.get("/openapi.json").json()
    route = spec["paths"][FEED_ROUTE]["get"]
    n = next(p for p in route["parameters"] if p["name"] == "n")
    assert (n["in"], n["schema"]["minimum"], n["schema"]["maximum"], n["schema"]["default"]) == ("query", 1, 100, 10)
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedResponse")
    assert "503" in route["responses"] and "422" in route["responses"]
    feed_schema = spec["components"]["schemas"]["FeedResponse"]
    assert {"generation", "personalised", "fallback", "degraded", "items"} <= set(feed_schema["properties"])
    assert feed_schema["examples"][0]["items"][0]["components"]["commercial"] == 0.83
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "swagger" in client.get("/docs").text.lower()


# ---- against a Redis: in-process fakeredis here, the real server in tests/integration/test_api.py -----------
@pytest.fixture
def redis_url(fake_redis_url: str) -> str:
    return fake_redis_url


@pytest.fixture
def prefix(redis_url, run_id) -> Iterator[str]:
    prefix = f"ltvfeed_test_{run_id}:api{uuid.uuid4().hex[:6]}:"
    yield prefix
    cleaner = FeedStore(redis_url, prefix)
    keys = list(cleaner.client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        cleaner.client.delete(*keys)
    cleaner.client.close()


@pytest.fixture
def writer(redis_url, prefix, tmp_path) -> FeedStore:
    """Writes generations directly to Redis (never through the gate), archiving them under the test's state dir."""
    from ltvfeed.serving.feed_archive import feed_archive_dir

    return FeedStore(redis_url, prefix, archive_dir=feed_archive_dir(tmp_path, prefix))


@pytest.fixture
def gate(redis_url) -> Iterator[RedisGate]:
    g = RedisGate(redis_url)
    yield g
    g.close()


@pytest.fixture
def api(redis_url, prefix, tmp_path):
    """``api(redis_url=None, options=OPTIONS, **create_app kwargs)``: a TestClient of the app on this test's
    Redis (or the given URL, e.g. a gate's), key prefix and state dir."""

    def make(url: str | None = None, options: ApiOptions = OPTIONS, **kwargs) -> TestClient:
        store = open_serving_store(url or redis_url, prefix, timeout_s=options.redis_timeout_s)
        settings = Settings(redis_url=redis_url, redis_prefix=prefix, state_dir=tmp_path)
        return TestClient(create_app(settings, store, options=options, **kwargs), raise_server_exceptions=False)

    return make


def test_personal_feed_with_components_and_generation(api, writer):
    gen = publish(writer, "a")
    stored = make_feed("u1", "a-u1")
    with api() as client:
        body = client.get("/v1/users/u1/feed").json()
    FeedResponse.model_validate(body)  # the documented contract
    meta = writer.generation_meta(gen)
    assert (body["user_id"], body["generation"], body["generated_at"]) == ("u1", gen, meta.generated_at)
    assert (body["personalised"], body["fallback"], body["degraded"], body["freshness"]) == (True, None, False, "off")
    assert body["n"] == 10 and item_ids(body) == stored.item_ids[:10]
    for rank, (got, want) in enumerate(zip(body["items"], stored.items, strict=False), start=1):
        assert got["rank"] == rank and got["score"] == pytest.approx(want.score)
        assert got["components"] == pytest.approx(
            {"commercial": want.commercial, "purchase": want.purchase, "diversity": want.diversity}
        )


def test_n_is_respected_and_validated(api, writer):
    publish(writer, "a")
    with api() as client:
        assert item_ids(client.get("/v1/users/u2/feed?n=3").json()) == make_feed("u2", "a-u2").item_ids[:3]
        assert client.get("/v1/users/u2/feed", params={"n": 1}).json()["n"] == 1
        many = client.get("/v1/users/u2/feed?n=100").json()
        assert (many["n"], many["n_available"]) == (FEED_LEN, FEED_LEN)  # fewer stored than asked: said so
        assert client.get("/v1/users/u2/feed?n=3").json()["n_available"] == FEED_LEN
        assert client.get("/v1/users/nobody/feed?n=4").json()["n"] == 4
        for bad, kind in (("0", "greater_than_equal"), ("101", "less_than_equal"), ("ten", "int_parsing")):
            response = client.get(f"/v1/users/u2/feed?n={bad}")
            assert response.status_code == 422, bad
            error = response.json()["detail"][0]
            assert (error["loc"], error["type"]) == (["query", "n"], kind)


def test_unknown_user_gets_the_classic_feed_flagged(api, writer):
    gen = publish(writer, "a")
    classic = make_feed("any", "a-classic", classic=True)
    with api() as client:
        for user in ("nobody", "__classic__"):  # the reserved classic id is not a user either
            body = FeedResponse.model_validate(client.get(f"/v1/users/{user}/feed?n=5").json()).model_dump()
            assert (body["user_id"], body["generation"]) == (user, gen)
            assert (body["personalised"], body["fallback"], body["degraded"]) == (False, "classic", False)
            assert item_ids(body) == classic.item_ids[:5]
            assert body["items"][0]["components"]["purchase"] is None
        samples = metric_samples(client)
    assert samples[("ltvfeed_api_classic_fallbacks_total", frozenset())] == 2
    assert samples[("ltvfeed_api_degraded_responses_total", frozenset())] == 0


def test_readiness(api, writer):
    with api() as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {
            "status": "not_ready",
            "generation": None,
            "reason": "no committed feed generation yet (publish one first)",
        }
        no_feed = client.get("/v1/users/u1/feed")
        assert no_feed.status_code == 503 and no_feed.json() == {"detail": "no committed feed generation yet"}
        gen = publish(writer, "a")
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "generation": gen, "reason": None}
        assert client.get("/healthz").status_code == 200


def test_redis_refused_gives_degraded_classic_fast(api, writer, gate):
    gen = publish(writer, "a")
    fast = ApiOptions(redis_timeout_s=0.075, redis_cooldown_s=0.3)  # what a dead connection may cost, once
    with api(gate.url, fast) as client:  # start-up caches the classic feed
        assert client.get("/v1/users/u1/feed").json()["personalised"] is True
        gate.refuse()
        latencies, bodies = [], []
        for user in ["u1", "nobody"] * 10:
            start = time.perf_counter()
            response = client.get(f"/v1/users/{user}/feed?n=4")
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200
            bodies.append(response.json())
        ready = client.get("/readyz")
        samples = metric_samples(client)
    classic_ids = make_feed("any", "a-classic", classic=True).item_ids[:4]
    for body in bodies:
        FeedResponse.model_validate(body)
        assert (body["personalised"], body["fallback"], body["degraded"]) == (False, "classic", True)
        assert (item_ids(body), body["generation"]) == (classic_ids, gen)
    assert max(latencies) < 0.5 and sum(latencies) < 2.0, latencies
    assert ready.status_code == 503 and "Redis unavailable" in ready.json()["reason"]
    assert samples[("ltvfeed_api_degraded_responses_total", frozenset())] == 20
    assert samples[("ltvfeed_api_redis_up", frozenset())] == 0
    assert samples[("ltvfeed_api_redis_errors_total", frozenset())] >= 1


def test_api_restarted_while_redis_is_down_serves_the_kept_classic_feed(api, writer, gate, prefix, tmp_path):
    """The last known classic feed outlives the process: a restart during a Redis outage still answers 200."""
    gen = publish(writer, "k")
    copy = classic_copy_path(tmp_path, prefix)
    with api(gate.url) as client:
        assert client.get("/v1/users/u1/feed").json()["personalised"] is True
    assert copy.exists()
    gate.refuse()
    with api(gate.url) as restarted:  # a new process: nothing in memory, Redis refused
        response = restarted.get("/v1/users/u1/feed?n=3")
    assert response.status_code == 200
    body = response.json()
    assert (body["personalised"], body["fallback"], body["degraded"], body["generation"]) == (
        False,
        "classic",
        True,
        gen,
    )
    assert item_ids(body) == make_feed("any", "k-classic", classic=True).item_ids[:3]
    copy.write_text("not a feed")  # a damaged copy is ignored: back to 503, never 500
    with api(gate.url) as damaged:
        assert damaged.get("/v1/users/u1/feed").status_code == 503


@pytest.mark.timeout(60, method="thread")
def test_hanging_redis_costs_one_timeout_then_recovers(api, writer, gate):
    """A Redis that accepts but never answers: bounded by the socket timeout, then the breaker answers from
    memory at once; the cached classic feed is the one of the newest generation seen while Redis answered."""
    publish(writer, "a")
    # the cooldown outlasts the five requests even on a loaded machine; an unbounded wait hits the test's timeout
    options = ApiOptions(redis_timeout_s=0.075, redis_cooldown_s=3.0)
    with api(gate.url, options) as client:
        gen_b = publish(writer, "b")
        assert client.get("/v1/users/u0/feed").json()["generation"] == gen_b  # refreshes the cached classic
        gate.hang()
        for _ in range(5):
            body = client.get("/v1/users/u0/feed?n=3").json()
            assert body["degraded"] is True and body["generation"] == gen_b
            assert item_ids(body) == make_feed("any", "b-classic", classic=True).item_ids[:3]
        # one Redis attempt, bounded by the timeout; the others skip Redis during the cooldown
        assert metric_samples(client)[("ltvfeed_api_redis_errors_total", frozenset())] == 1
        gate.open()
        time.sleep(options.redis_cooldown_s + 0.05)
        body = client.get("/v1/users/u0/feed?n=3").json()
        assert (body["personalised"], body["degraded"]) == (True, False)
        assert item_ids(body) == make_feed("u0", "b-u0").item_ids[:3]


def test_metrics_expose_requests_latency_fallbacks_and_generation(api, writer):
    gen = publish(writer, "a")
    with api() as client:
        for path in ("/v1/users/u1/feed", "/v1/users/u2/feed", "/v1/users/nobody/feed", "/v1/users/u1/feed?n=0"):
            client.get(path)
        samples = metric_samples(client)

    def requests(status: str) -> float:
        labels = frozenset({"route": FEED_ROUTE, "method": "GET", "status": status}.items())
        return samples.get(("ltvfeed_api_requests_total", labels), 0)

    assert (requests("200"), requests("422"), requests("500")) == (3, 1, 0)
    assert samples[("ltvfeed_api_request_duration_seconds_count", frozenset({"route": FEED_ROUTE}.items()))] == 4
    assert (
        samples[("ltvfeed_api_request_duration_seconds_bucket", frozenset({"route": FEED_ROUTE, "le": "+Inf"}.items()))]
        == 4
    )
    assert samples[("ltvfeed_api_classic_fallbacks_total", frozenset())] == 1
    info = [labels for (name, labels) in samples if name == "ltvfeed_api_feed_generation_info"]
    assert len(info) == 1 and dict(info[0])["generation"] == gen
    assert samples[("ltvfeed_api_redis_up", frozenset())] == 1


class DropItems:
    """A freshness filter for the seam's contract: drops given items, records what it was called with."""

    def __init__(self, dropped: set[str], fail: bool = False, delay_s: float = 0.0) -> None:
        self.dropped, self.fail, self.delay_s, self.calls = dropped, fail, delay_s, []

    async def __call__(self, user_id: str, items: Sequence[FeedItem], since: datetime | None) -> Sequence[FeedItem]:
        self.calls.append((user_id, len(items), since))
        if self.fail:
            raise TimeoutError("online store did not answer")
        await asyncio.sleep(self.delay_s)
        return [it for it in items if it.item_id not in self.dropped]


def test_freshness_filter_runs_before_truncation_and_its_failure_is_not_fatal(api, writer):
    gen = publish(writer, "a")
    ids = make_feed("u1", "a-u1").item_ids
    fresh = DropItems({ids[0], ids[2]})
    with api(freshness=fresh) as client:
        body = client.get("/v1/users/u1/feed?n=3").json()
    assert body["freshness"] == "applied" and item_ids(body) == [ids[1], ids[3], ids[4]]
    since = datetime.fromisoformat(writer.generation_meta(gen).generated_at)
    assert fresh.calls == [("u1", FEED_LEN, since)]
    failing = DropItems(set(), fail=True)
    with api(freshness=failing) as client:
        body = client.get("/v1/users/u1/feed?n=3").json()
        samples = metric_samples(client)
    assert body["freshness"] == "unavailable" and item_ids(body) == ids[:3]
    assert samples[("ltvfeed_api_freshness_failures_total", frozenset())] == 1
    slow = DropItems({ids[0]}, delay_s=5.0)  # cancelled after ApiOptions.freshness_timeout_s
    with api(freshness=slow) as client:
        start = time.perf_counter()
        body = client.get("/v1/users/u1/feed?n=3").json()
        assert time.perf_counter() - start < 1.0
    assert body["freshness"] == "unavailable" and item_ids(body) == ids[:3]


def test_degraded_answers_skip_the_freshness_filter(api, writer, gate):
    """With Redis down the answer comes from memory at once: the filter (whose online store is that Redis) is
    not waited on, and the response says the feed is unfiltered."""
    publish(writer, "a")
    fresh = DropItems({"a-classic-i0"})
    with api(gate.url, freshness=fresh) as client:
        assert client.get("/v1/users/nobody/feed?n=2").json()["freshness"] == "applied"
        gate.refuse()
        body = client.get("/v1/users/nobody/feed?n=2").json()
    assert (body["degraded"], body["freshness"]) == (True, "unavailable")
    assert item_ids(body) == make_feed("any", "a-classic", classic=True).item_ids[:2] and len(fresh.calls) == 1


# ---- hostile clients: bounded request heads ------------------------------------------------------------------
@contextlib.contextmanager
def served(app, http) -> Iterator[int]:
    """``app`` under uvicorn (httptools, as ``ltvfeed serve`` runs it) in a thread; yields the port."""
    import uvicorn

    port = closed_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_status(sock: socket.socket) -> int | None:
    """The status code of the answer on ``sock``, None if the server closed without one."""
    sock.settimeout(5)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def probe_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    """/healthz over and over on its own keep-alive connection while another client misbehaves."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while not stop.is_set():
            start = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            out.append(time.perf_counter() - start)
            time.sleep(0.01)


class QuickHeadTimeout:
    """The shipped protocol with a short head timeout, so that the test need not wait 10 s."""

    @staticmethod
    def make():
        from ltvfeed.serving.http_limits import LimitedHttpToolsProtocol

        return type("QuickProtocol", (LimitedHttpToolsProtocol,), {"head_timeout_s": 0.5})


def test_huge_header_is_refused_fast_and_others_are_served_meanwhile():
    """100 MB of header: 431 after the first 32 KiB (not buffered in full), while another client's requests are
    answered throughout; a client trickling its head is cut off (408) without holding anybody else up."""
    from ltvfeed.serving.http_limits import MAX_HEAD_BYTES

    settings = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    app = create_app(settings, options=OPTIONS)  # /healthz needs no Redis
    with served(app, QuickHeadTimeout.make()) as port:
        stop, latencies = threading.Event(), []
        probe = threading.Thread(target=probe_latencies, args=(port, stop, latencies), daemon=True)
        probe.start()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port)) as hostile:
            start = time.perf_counter()
            hostile.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk, sent = b"a" * 65536, 0
            with contextlib.suppress(OSError):  # the server closes the connection mid-send
                while sent < 100 * 2**20:
                    hostile.sendall(chunk)
                    sent += len(chunk)
            status = raw_status(hostile)
            elapsed = time.perf_counter() - start
        assert status == 431 or status is None, status  # a reset can overtake the answer
        assert sent < 512 * MAX_HEAD_BYTES and elapsed < 2.0, (sent, elapsed)  # kernel buffers hold some MB
        with socket.create_connection(("127.0.0.1", port)) as slow:
            start = time.perf_counter()
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            for _ in range(3):
                time.sleep(0.1)
                with contextlib.suppress(OSError):
                    slow.sendall(b"X-Slow: 1\r\n")
            assert raw_status(slow) == 408 and time.perf_counter() - start < 2.0
        answered = len(latencies)
        deadline = time.monotonic() + 10
        while len(latencies) < answered + 3 and time.monotonic() < deadline:  # still answering afterwards
            time.sleep(0.05)
        stop.set()
        probe.join(timeout=10)
    # 36 s for the 100 MB head and others held up for seconds before the limit; a loaded machine adds some 100 ms
    assert len(latencies) >= 3 and max(latencies) < 1.5, (len(latencies), max(latencies, default=None))


# ---- Redis back, but empty: degraded answers, then the generation republished from its archive ---------------
def lose_everything(client_store: FeedStore) -> int:
    """What a Redis restarted without its data looks like to this prefix: no key left."""
    keys = list(client_store.client.scan_iter(match=f"{client_store.prefix}*", count=1000))
    return client_store.client.delete(*keys) if keys else 0


@pytest.mark.parametrize("heal", ["by hand", "by itself"])
def test_generation_lost_from_redis_is_served_degraded_then_republished(api, writer, heal):
    from ltvfeed.serving.feed_archive import republish

    archive = writer.archive_dir
    gen = publish(writer, "r")
    assert (archive / f"{gen}.parquet").exists()
    options = dataclasses.replace(OPTIONS, self_heal=heal == "by itself", heal_interval_s=0.2)
    with api(options=options) as client:
        assert client.get("/v1/users/u1/feed").json()["personalised"] is True
        assert lose_everything(writer) > len(USERS)
        response = client.get("/v1/users/u1/feed?n=3")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["personalised"], body["fallback"], body["degraded"], body["generation"]) == (
            False,
            "classic",
            True,
            gen,
        )
        assert item_ids(body) == make_feed("any", "r-classic", classic=True).item_ids[:3]
        if heal == "by hand":
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "ltvfeed feeds republish" in ready.json()["reason"]
            assert writer.current_generation() is None  # nothing republished behind the operator's back
            restored = republish(writer, archive)
            assert (restored.generation, restored.n_feeds) == (gen, len(USERS) + 1)
        deadline = time.monotonic() + 10
        while (body := client.get("/v1/users/u1/feed?n=3").json())["degraded"]:
            assert time.monotonic() < deadline, "the generation was not republished within 10 s"
            time.sleep(0.05)
        assert (body["personalised"], body["generation"]) == (True, gen)
        assert item_ids(body) == make_feed("u1", "r-u1").item_ids[:3]
        assert client.get("/readyz").json() == {"status": "ready", "generation": gen, "reason": None}
        republished = ("ltvfeed_api_generations_republished_total", frozenset())
        while (samples := metric_samples(client))[republished] != (heal == "by itself"):  # counted after the swap
            assert time.monotonic() < deadline, samples[republished]
            time.sleep(0.05)
    statuses = {dict(labels).get("status") for (name, labels) in samples if name == "ltvfeed_api_requests_total"}
    assert "503" not in statuses or heal == "by hand"  # only /readyz may say not ready
    meta = writer.generation_meta(gen)
    assert (meta.status, meta.n_users, writer.committed_generations()) == ("committed", len(USERS), [gen])
    assert writer.read_classic().item_ids == make_feed("any", "r-classic", classic=True).item_ids


# ---- /docs offline, in a real browser -------------------------------------------------------------------------
@pytest.mark.browser
def test_docs_render_offline_in_a_browser(tmp_path, headless_browser):
    """Swagger UI at /docs draws every operation with no network but the API's own port: every asset the page
    loads comes from the API itself (the browser runs with background networking off)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", state_dir=tmp_path)
    with served(create_app(settings, options=OPTIONS), "httptools") as port:
        browser = headless_browser()
        browser.get(f"http://127.0.0.1:{port}/docs")
        paths = WebDriverWait(browser, 30).until(
            lambda b: [e.text for e in b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")] or None
        )
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert {FEED_ROUTE, "/healthz", "/readyz", "/metrics"} <= {p.replace("\u200b", "") for p in paths}, paths
    assert loaded and all(url.startswith(f"http://127.0.0.1:{port}/") for url in loaded), loaded
