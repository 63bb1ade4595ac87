"""The Redis a bench run talks to: the embedded standalone server, or N Redis Cluster primaries
plus the plain queue Redis that arq needs on a cluster (issue 10).

``Topology`` starts Debian's ``redis-server`` (>= 7, no replicas, loopback ports) as N primaries
with the slots split evenly, plus the queue Redis. ``Redises`` is what a scenario needs from
either layout: the ``AGENTSTREAM_*`` variables for the gateway and worker, a client for the
data keys, the server pids for CPU windows, and ``used_memory`` summed over every server.

CPU windows name the servers ``redis.<port>`` (primaries) and ``redis.queue``; ``fold`` sums
them into ``redis`` (all of them, the queue included: Redis CPU per event) and keeps the
queue's share apart as ``redis_queue``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.procs import Cluster, free_port
from shared import backends, connect
from shared.settings import Settings

SLOTS = 16384
# name -> primaries (0: the embedded standalone Redis, queue and data in one server)
TOPOLOGIES = {"standalone": 0, "cluster1": 1, "cluster3": 3}
QUEUE = "redis.queue"
PRIMARY = "redis."  # prefix of a server's name in a CPU window


def primaries(name: str) -> int:
    """Primaries of a topology by name; a clear error naming the choices otherwise."""
    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise ValueError(f"unknown topology {name!r}: one of {', '.join(TOPOLOGIES)}") from None


def parse(text: str) -> tuple[str, ...]:
    """``"standalone,cluster1,cluster3"``: each checked, order kept, no repeats."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"no topology given: one or more of {', '.join(TOPOLOGIES)}")
    for n in names:
        primaries(n)
    return names


def fold(per_server: Mapping[str, float]) -> dict[str, float]:
    """Sum every ``redis.*`` entry into ``redis`` and keep the queue's share as ``redis_queue``;
    other entries (gateway, worker, load) pass through. A standalone window's one ``redis``
    entry stays as it is."""
    out: dict[str, float] = {}
    servers = [(n, v) for n, v in per_server.items() if n.startswith(PRIMARY)]
    for n, v in per_server.items():
        if not n.startswith(PRIMARY):
            out[n] = v
    if servers:
        out["redis"] = out.get("redis", 0.0) + sum(v for _, v in servers)
        out["redis_queue"] = sum(v for n, v in servers if n == QUEUE)
    return out


class Topology:
    """N cluster primaries (no replicas) and the queue Redis, on loopback ports."""

    def __init__(self, primaries: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="as-bench-cluster-"))
        self.ports = [free_port(plus=10000) for _ in range(primaries)]
        self.queue_port = free_port(plus=10000)
        self.procs: list[subprocess.Popen[bytes]] = []
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("a cluster topology needs redis-server >= 7 (apt-get install redis-server)")
        try:
            self._start(server, primaries)
        except BaseException:
            self.stop()
            raise

    def _start(self, server: str, primaries: int) -> None:
        for port in [*self.ports, self.queue_port]:
            cluster = ["--cluster-enabled", "yes", "--cluster-config-file", f"n{port}.conf"] if port != self.queue_port else []
            self.procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                 "--appendonly", "no", *cluster], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in [*self.ports, self.queue_port]:
            self._wait(lambda p=port: redis.Redis(port=p).ping())
        per = SLOTS // primaries
        for i, port in enumerate(self.ports):
            hi = SLOTS - 1 if i == primaries - 1 else (i + 1) * per - 1
            redis.Redis(port=port).execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, hi)
            if i:
                redis.Redis(port=port).execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        self._wait(lambda: all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                               and int(redis.Redis(port=p).cluster("info")["cluster_known_nodes"]) == primaries
                               for p in self.ports))
        self.env = {"AGENTSTREAM_REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{p}" for p in self.ports),
                    "AGENTSTREAM_QUEUE_URL": f"redis://127.0.0.1:{self.queue_port}/0"}

    @staticmethod
    def _wait(check: Any, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError("redis servers did not come up")

    @property
    def pids(self) -> dict[str, int]:
        """CPU-window names: ``redis.<port>`` per primary, ``redis.queue``."""
        names = [f"{PRIMARY}{p}" for p in self.ports] + [QUEUE]
        return {n: proc.pid for n, proc in zip(names, self.procs, strict=True)}

    def cpu_s(self, ports: list[int]) -> float:
        total = 0.0
        for p in ports:
            info = redis.Redis(port=p).info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Redises:
    """What a scenario needs from the Redis of one run, whatever its topology."""

    name: str
    settings: Settings
    env: dict[str, str]  # AGENTSTREAM_* for the gateway and worker (over the run's own)
    pids: dict[str, int]  # for CpuWindow: "redis" (standalone) or redis.<port> + redis.queue
    urls: list[str] = field(default_factory=list)  # every server, for used_memory
    topology: Topology | None = None

    def client(self) -> aioredis.Redis:
        return backends.from_settings(self.settings, self.urls[0] if self.topology is None else None).client()

    async def used_memory(self) -> int:
        total = 0
        for url in self.urls:
            r = connect.client(url, max_connections=1)
            try:
                total += int((await r.info("memory"))["used_memory"])
            finally:
                await r.aclose()
        return total

    async def queue_commands(self) -> int | None:
        """Commands the queue Redis has served (None without a queue Redis of its own): CPU ticks
        are too coarse to show that a short run used it."""
        if self.topology is None:
            return None
        r = connect.client(self.urls[-1], max_connections=1)
        try:
            return int((await r.info("stats"))["total_commands_processed"])
        finally:
            await r.aclose()

    def stop(self) -> None:
        if self.topology is not None:
            self.topology.stop()


def start(name: str, cluster: Cluster) -> Redises:
    """``standalone``: the run's embedded Redis (``cluster.start_redis``); otherwise a fresh
    ``Topology`` and no embedded Redis. The cluster's variables replace
    ``AGENTSTREAM_REDIS_URL`` (empty is unset: two topologies at once stop the process)."""
    n = primaries(name)
    if n == 0:
        cluster.start_redis()
        settings = Settings.from_env({"AGENTSTREAM_REDIS_URL": cluster.redis_url})
        return Redises(name, settings, {}, {"redis": cluster.redis_pid}, [cluster.redis_url])
    cluster.data_dir.mkdir(parents=True, exist_ok=True)  # the processes' logs
    topo = Topology(n)
    settings = Settings.from_env(topo.env)
    urls = [f"redis://127.0.0.1:{p}/0" for p in [*topo.ports, topo.queue_port]]
    return Redises(name, settings, {**topo.env, "AGENTSTREAM_REDIS_URL": ""}, topo.pids, urls, topo)
