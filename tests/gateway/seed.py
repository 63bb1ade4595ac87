"""Seed a tenant's namespace with the demo documents, straight into the stack's Redis."""

from __future__ import annotations

import asyncio

from cli.demo_data import seed_demo
from dataplane.service import DataPlane
from tests.stack import Stack


def seed_demo_for(stack: Stack, tenant: tuple[str, str, str]) -> None:
    async def go() -> None:
        redis = stack.client()
        try:
            await seed_demo(DataPlane(redis), tenant[2])
        finally:
            await redis.aclose()

    asyncio.run(go())
