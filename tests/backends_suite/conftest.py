"""The same test bodies on a Redis Cluster and on Sentinel (standalone runs them in their own
modules): one deployment of each per test session, one stack (gateway + workers) per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends_suite.servers import Cluster, Deployment, Sentinels
from tests.stack import Proc, Stack


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[Sentinels]:
    s = Sentinels()
    yield s
    s.stop()


def deployment(request: pytest.FixtureRequest, name: str) -> Deployment:
    return request.getfixturevalue({"cluster": "redis_cluster", "sentinel": "redis_sentinel"}[name])


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(topology=deployment(request, request.param).env, env=getattr(request.module, "STACK_ENV", {}))
    s.up(workers=getattr(request.module, "WORKERS", 1))
    yield s
    s.stop()


# tests/conftest.py's gateway is per session; this one follows the per-module stack (its
# tenant and api fixtures then use this stack).
@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.kind == "gateway")
