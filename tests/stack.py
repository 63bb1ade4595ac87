"""Real processes for integration tests: an embedded Redis, gateways and workers.

Each Stack has its own Redis (its own data dir), so stacks with different settings (paced
tokens, short leases) never share a queue.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.procs import free_port
from cli import embedded
from shared import backends, connect
from shared.settings import Settings
from shared.stores.tenancy import TenantStore, new_api_key

ROOT = Path(__file__).resolve().parent.parent




@dataclass
class Proc:
    kind: str
    popen: subprocess.Popen[bytes]
    port: int | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="as-test-")))
    redis_proc: subprocess.Popen[bytes] | None = None
    procs: list[Proc] = field(default_factory=list)
    redis_url: str = ""
    # AGENTSTREAM_* pointing at a Cluster or Sentinel deployment (tests/backends_suite) instead
    # of this stack's own embedded Redis
    topology: dict[str, str] = field(default_factory=dict)

    def start_redis(self) -> None:
        if self.topology:
            return
        external = os.environ.get("AGENTSTREAM_TEST_EXTERNAL_REDIS")
        if external:
            self.redis_url = external
            return
        self.redis_proc = embedded.start(self.data_dir)
        self.redis_url = connect.url_for(self.data_dir)

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # The caller's own service settings (and any real Anthropic or OpenAI key, base URL or
        # organisation, which the SDKs would read by themselves) never leak into a test stack.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AGENTSTREAM_", "ANTHROPIC_", "OPENAI_"))}
        # No drain period on SIGTERM unless a test asks for one (tests/gateway/test_drain.py): the
        # suite stops gateways often, and 2 s each adds up.
        env.update({"AGENTSTREAM_REDIS_URL": self.redis_url, "AGENTSTREAM_LOG_LEVEL": "warning",
                    "AGENTSTREAM_FALLBACK_TO_BUILTIN": "true", "AGENTSTREAM_GATEWAY_DRAIN_S": "0",
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.topology)
        env.update(self.env)
        env.update(extra or {})
        return env

    def start_gateway(self, **extra: str) -> Proc:
        # free_port() frees its port before the gateway binds it: anything on the machine (an
        # outgoing connection's ephemeral port) can take it meanwhile. Only that case is retried.
        for tries_left in (2, 1, 0):
            port = free_port()
            log = self.data_dir / f"gateway-{port}.log"
            with log.open("wb") as out:  # the child keeps its own descriptor
                p = subprocess.Popen([sys.executable, "-m", "cli.main", "gateway"], cwd=ROOT,
                                     env=self._env({"AGENTSTREAM_PORT": str(port), **extra}),
                                     stdout=out, stderr=subprocess.STDOUT)
            proc = Proc("gateway", p, port, log)
            self.procs.append(proc)
            try:
                self._wait_http(proc)
            except RuntimeError:
                self.procs.remove(proc)
                if tries_left and "address already in use" in log.read_text().lower():
                    continue
                raise
            return proc
        raise AssertionError("unreachable")

    def start_worker(self, **extra: str) -> Proc:
        log = self.data_dir / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            p = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT, env=self._env(extra),
                                 stdout=out, stderr=subprocess.STDOUT)
        proc = Proc("worker", p, None, log)
        self.procs.append(proc)
        return proc

    def _wait_http(self, proc: Proc, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.kind} exited: {proc.log.read_text() if proc.log else ''}")
            try:
                if httpx.get(proc.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{proc.kind} on {proc.port} did not start")

    def up(self, workers: int = 1) -> Proc:
        """Redis, ``workers`` workers and a gateway, ready to serve: the stack most tests want."""
        self.start_redis()
        for _ in range(workers):
            self.start_worker()
        gw = self.start_gateway()
        self.wait_ready(gw)
        return gw

    def wait_ready(self, gateway: Proc, timeout_s: float = 60) -> None:
        # A deadline against hangs: a worker's first heartbeat waits for its interpreter to
        # start, which takes seconds on a loaded machine. A slow probe is a "not yet", not a failure.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("stack not ready (no worker heartbeat?)")

    def stop_proc(self, proc: Proc, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.popen.returncode

    def stop(self) -> None:
        for proc in list(self.procs):
            self.stop_proc(proc)
        embedded.stop(self.redis_proc, self.data_dir)

    def client(self):  # type: ignore[no-untyped-def]
        """A command client for this stack's Redis, whatever its topology."""
        if not self.topology:
            return connect.client(self.redis_url)
        return backends.from_settings(Settings.from_env(self.topology)).client()

    def queue_client(self):  # type: ignore[no-untyped-def]
        """A client for arq's keys and the inbound stream (the queue Redis on a cluster)."""
        if not self.topology:
            return connect.client(self.redis_url)
        return backends.from_settings(Settings.from_env(self.topology)).queue_client()

    def redis_call(self, fn):  # type: ignore[no-untyped-def]
        """Run ``await fn(redis)`` against this stack's Redis and return its result."""

        async def go():  # type: ignore[no-untyped-def]
            redis = self.client()
            try:
                return await fn(redis)
            finally:
                await redis.aclose()

        return asyncio.run(go())

    def new_tenant(self, namespace: str | None = None) -> tuple[str, str, str]:
        """A fresh API key in a fresh namespace: (key, namespace name, ns id)."""
        name = namespace or f"ns-{os.urandom(4).hex()}"

        async def go() -> tuple[str, str]:
            redis = self.client()
            try:
                key = new_api_key()
                ns_id, _ = await TenantStore(redis).register_key(key, name)
                return key, ns_id
            finally:
                await redis.aclose()

        key, ns_id = asyncio.run(go())
        return key, name, ns_id
