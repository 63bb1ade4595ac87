"""Regression for issue 15.1's deeper fault: CPU-bound work on the worker's event loop starved the
lease renewal, so another worker's reaper presumed the job dead and started attempt 2 on the
same input (and every other job on that worker stalled with it).

A real worker runs here in this process (so a step of its pipeline can be made CPU-bound for
as long as the test likes) against a real gateway and Redis, next to a second worker process
whose reaper takes over any message whose lease lapses. The CPU-bound step holds the job for
three leases once the other worker is up; the message must still finish on attempt 1, with no
takeover.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from shared import keys
from shared.settings import Settings
from tests.stack import Proc, Stack
from worker import main as worker_main
from worker import offload, pipeline

LEASE_S = 2.0  # as the fault suite uses: a loaded machine must not lapse a healthy lease
ENV = {"AGENTSTREAM_LEASE_S": str(LEASE_S), "AGENTSTREAM_REAPER_INTERVAL_S": "0.2"}
# Long enough to be classified off the event loop (worker/offload.py): a short content is
# classified inline, where it takes well under a millisecond.
CONTENT = "hello there, " * (offload.INLINE_MAX_CHARS // 13 + 1)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(env=ENV)
    s.start_redis()
    s.start_gateway()
    yield s
    s.stop()


def _gateway(stack: Stack) -> Proc:
    return next(p for p in stack.procs if p.kind == "gateway")


@pytest.mark.timeout(90)
def test_a_job_held_in_a_cpu_bound_step_past_its_lease_is_not_taken_over(stack: Stack,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key, ns, _ = stack.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gw = _gateway(stack)
    sid = httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=headers).json()["session_id"]
    with httpx.stream("POST", f"{gw.url}/v1/agents/sessions/{sid}/messages", json={"content": CONTENT},
                      headers=headers, timeout=10) as r:
        assert r.status_code == 200
        mid = r.headers["x-message-id"]  # queued; no worker runs yet

    entered, release = threading.Event(), threading.Event()
    real = pipeline.classify

    loop_thread = threading.get_ident()
    off_loop: list[bool] = []

    def cpu_bound(text: str):  # type: ignore[no-untyped-def]
        off_loop.append(threading.get_ident() != loop_thread)
        entered.set()
        spins = 0
        while not release.is_set():  # pure Python arithmetic: holds the GIL except at switches
            spins += sum(range(2000))
        return real(text)

    monkeypatch.setattr(pipeline, "classify", cpu_bound)
    errors: list[BaseException] = []

    def hold_past_the_lease() -> None:
        try:
            assert entered.wait(30), "the job never reached its CPU-bound step"
            stack.start_worker()  # its reaper takes over any message whose lease lapsed
            r = redis.Redis.from_url(stack.redis_url)
            try:
                # Up before the hold is timed, or the hold proves nothing: a new worker process
                # starts slowly on a loaded machine.
                deadline = time.monotonic() + 60
                while r.zcard(keys.WORKERS) < 2:
                    assert time.monotonic() < deadline, "the second worker never came up"
                    time.sleep(0.1)
            finally:
                r.close()
            time.sleep(3 * LEASE_S)  # the other worker's reaper looks ten times per lease meanwhile
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            release.set()

    async def run_one_job() -> None:
        worker = worker_main.build(Settings.from_env(ENV), stack.redis_url, burst=True)
        try:
            await worker.async_run()
        finally:  # arq's own close() calls a deprecated redis-py method
            await asyncio.gather(*worker.tasks.values())
            await worker_main._shutdown(worker.ctx)
            await worker.pool.aclose(close_connection_pool=True)

    helper = threading.Thread(target=hold_past_the_lease)
    helper.start()
    try:
        asyncio.run(run_one_job())
    finally:
        release.set()
        helper.join()
    assert not errors, errors
    assert off_loop == [True], "the long content was classified on the event loop"

    def outcome(r: redis.Redis) -> tuple[bytes | None, list[bytes]]:
        attempt = r.hget(keys.message(sid, mid), "attempt")
        types = [f[b"t"] for _, f in r.xrange(keys.events(sid, mid))]
        return attempt, types

    client = redis.Redis.from_url(stack.redis_url)
    try:
        deadline = time.monotonic() + 20
        attempt, types = outcome(client)
        while (not types or types[-1] not in (b"done", b"error")) and time.monotonic() < deadline:
            time.sleep(0.1)
            attempt, types = outcome(client)
    finally:
        client.close()
    assert types[-1] == b"done", types
    assert b"reset" not in types and types.count(b"intent") == 1, types
    assert attempt == b"1", f"taken over: attempt {attempt!r}"
    for proc in [p for p in stack.procs if p.kind == "worker"]:
        stack.stop_proc(proc)
        assert proc.log is not None and "expired; restarting" not in proc.log.read_text()
