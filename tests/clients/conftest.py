from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.clients.harness import FAKE_KEY, FAULT_ENV, TRIM_ENV, FaultController, Faulty, diverging
from tests.fakes.anthropic_server import FakeAnthropic
from tests.gateway.seed import seed_demo_for
from tests.proxy import CuttingProxy
from tests.stack import Stack


@pytest.fixture(scope="package")
def faulty() -> Iterator[Faulty]:
    """Two gateways and two workers behind one cutting proxy; Claude sessions on a paced fake."""
    with FakeAnthropic(responder=diverging(itertools.count())) as fake:
        env = {**FAULT_ENV, "AGENTSTREAM_ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": FAKE_KEY}
        s = Stack()
        try:
            s.start_redis()
            s.start_worker(**env)
            s.start_worker(**env)
            a = s.start_gateway(**env)
            b = s.start_gateway(**env)
            s.wait_ready(a)
            warm_up(s, a.url)
            with CuttingProxy([a.port or 0, b.port or 0], seed=20261201) as proxy:
                yield Faulty(s, proxy, fake, env)
        finally:
            s.stop()


def warm_up(stack: Stack, url: str) -> None:
    """One answer per worker before the tests: a worker's first job warms caches on its event
    loop, which on a loaded machine can outlast the short lease these tests use (the reaper
    then ends that message with ``job_lost``); the tests are about the clients, not that."""
    key, ns, _ = stack.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}

    def one(_: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            sid = c.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
            c.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "hello", "stream": False})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(4)))


@pytest.fixture(scope="package")
def trim() -> Iterator[tuple[Stack, CuttingProxy]]:
    """One gateway and worker whose message streams are capped at a few entries."""
    s = Stack(env=TRIM_ENV)
    try:
        s.start_redis()
        # MAXLEN ~ trims whole radix-tree nodes: small nodes make a small cap bite.
        s.redis_call(lambda r: r.config_set("stream-node-max-entries", 2))
        s.start_worker()
        gw = s.start_gateway()
        s.wait_ready(gw)
        with CuttingProxy([gw.port or 0], seed=7) as proxy:
            yield s, proxy
    finally:
        s.stop()


@pytest.fixture(scope="package")
def controller(faulty: Faulty, trim: tuple[Stack, CuttingProxy]) -> Iterator[FaultController]:
    with FaultController(faulty, trim[0]) as ctl:
        yield ctl


@pytest.fixture
def tenant(faulty: Faulty) -> tuple[str, str, str]:
    t = faulty.stack.new_tenant()
    seed_demo_for(faulty.stack, t)
    return t
