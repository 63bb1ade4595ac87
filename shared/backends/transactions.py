"""MULTI/EXEC (and WATCH) on a Redis Cluster, where redis-py 5's cluster pipeline refuses them.

A transaction is legal on a cluster when every key it touches hashes to one slot: it then runs
on the node that owns that slot, over a plain connection to that node. The stores' transactions
all keep to one slot (a session's keys share its hash tag; a namespace's data-plane keys share
the namespace's); one over two slots is refused here, loudly, rather than run non-atomically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ExecAbortError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

RETRIES = 3


class CrossSlotTransaction(RedisClusterException):
    """A transaction's keys live in two slots: no node can run it atomically."""


NodeFor = Callable[[Iterable[Any]], Awaitable[aioredis.Redis]]


def _moved(exc: Exception) -> bool:
    if isinstance(exc, (MovedError, AskError, ClusterDownError, TryAgainError, RedisConnectionError,
                        ExecAbortError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("MOVED", "ASK", "CLUSTERDOWN"))


class SlotTransaction:
    """Quacks like redis-py's transactional ``Pipeline``: queue commands, then ``execute()``;
    or ``watch()``, read, ``multi()``, queue, ``execute()``. Every command's first argument is
    its key."""

    def __init__(self, node_for: NodeFor, refresh: Callable[[], Awaitable[None]]) -> None:
        self._node_for = node_for
        self._refresh = refresh
        self._pipe: Any = None  # the node's own Pipeline, once WATCH pinned the node
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> SlotTransaction:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reset()

    async def reset(self) -> None:
        if self._pipe is not None:
            await self._pipe.reset()
            self._pipe = None
        self._queued.clear()

    async def watch(self, *names: Any) -> None:
        client = await self._node_for(names)
        self._pipe = client.pipeline(transaction=True)
        await self._pipe.watch(*names)

    def multi(self) -> None:
        if self._pipe is None:
            raise RedisClusterException("multi() without watch(): queue commands and execute() instead")
        self._pipe.multi()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._pipe is not None:
            return getattr(self._pipe, name)

        def queue(*args: Any, **kwargs: Any) -> SlotTransaction:
            self._queued.append((name, args, kwargs))
            return self

        return queue

    def __len__(self) -> int:
        return len(self._pipe) if self._pipe is not None else len(self._queued)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._pipe is not None:  # WATCH pinned the node; a move shows as a failed EXEC
            return await self._pipe.execute(raise_on_error)  # type: ignore[no-any-return]
        if not self._queued:
            return []
        keys = [args[0] for _, args, _ in self._queued]
        for attempt in range(RETRIES):
            client = await self._node_for(keys)
            pipe = client.pipeline(transaction=True)
            for name, args, kwargs in self._queued:
                getattr(pipe, name)(*args, **kwargs)
            try:
                result: list[Any] = await pipe.execute(raise_on_error)
                self._queued.clear()
                return result
            except Exception as exc:  # noqa: BLE001 - only slot moves and lost nodes are retried
                if not _moved(exc) or attempt == RETRIES - 1:
                    raise
                await self._refresh()
            finally:
                await pipe.reset()
        raise AssertionError("unreachable")


class Sequential:
    """Quacks like a transactional ``Pipeline`` for writes across slots (``backends.pipeline``):
    queued commands run one after the other, in order, when executed; not atomic."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> Sequential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queued.clear()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> Sequential:
            self._queued.append((name, args, kwargs))
            return self

        return queue

    async def execute(self) -> list[Any]:
        queued, self._queued = self._queued, []
        return [await getattr(self._client, name)(*args, **kwargs) for name, args, kwargs in queued]
