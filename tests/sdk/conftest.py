"""Fixtures of the SDK compatibility tests: an SDK client per tenant, and a seeded namespace."""

from __future__ import annotations

from collections.abc import Iterator

import mixpeek
import pytest

from tests.sdk.helpers import sdk_client, seed
from tests.stack import Proc, Stack


@pytest.fixture
def sdk(gateway: Proc, tenant: tuple[str, str, str]) -> Iterator[mixpeek.AgentSessionsApi]:
    key, ns, _ = tenant
    with sdk_client(gateway.url, key, ns) as api:
        yield api


@pytest.fixture
def other_sdk(gateway: Proc, stack: Stack) -> Iterator[mixpeek.AgentSessionsApi]:
    """A second tenant: another key in another namespace."""
    key, ns, _ = stack.new_tenant()
    with sdk_client(gateway.url, key, ns) as api:
        yield api


@pytest.fixture
def seeded(stack: Stack, tenant: tuple[str, str, str]) -> tuple[str, str, str]:
    """The tenant's namespace holds the demo collection (``demo-docs``)."""
    seed(stack, tenant[2])
    return tenant
