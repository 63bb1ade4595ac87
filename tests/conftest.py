from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.stack import Proc, Stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One Redis, one gateway, one worker: the default integration stack."""
    s = Stack()
    s.up()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of the module's own (store, hub and worker tests that need no processes)."""
    s = Stack()
    s.start_redis()
    yield s.redis_url
    s.stop()


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.kind == "gateway")


@pytest.fixture
def tenant(stack: Stack) -> tuple[str, str, str]:
    return stack.new_tenant()


@pytest.fixture
def api(gateway: Proc, tenant: tuple[str, str, str]) -> Iterator[httpx.Client]:
    key, ns, _ = tenant
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
