"""Real Redis topologies on loopback ports: standalone, a 3-primary/3-replica Cluster (plus the
plain Redis its arq queue lives on) and a primary/replica pair watched by 3 sentinels.

Debian's ``redis-server`` (7.0) runs them; a test that needs one FAILS when it is missing
(``.ci/run`` installs it). Each deployment starts once per test session (tests/backends_suite/conftest.py) and exposes the
``AGENTSTREAM_*`` variables that point a gateway or worker at it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from bench.procs import free_port

SERVICE = "mymaster"
NODE_TIMEOUT_MS = 1000  # a dead primary is failed over within a few seconds


def redis_server() -> str:
    """Path of a redis-server >= 7; the test fails (not skips) without one."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server >= 7 is required for the Cluster/Sentinel tests: "
                    "apt-get install -y redis-server (.ci/run does)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    version = out.split("v=")[1].split()[0] if "v=" in out else "0"
    if int(version.split(".")[0]) < 7:
        pytest.fail(f"redis-server {version} at {path}: the Cluster/Sentinel tests need >= 7")
    return path


def free_ports(n: int) -> list[int]:
    """Free loopback ports whose port + 10000 is free too: a cluster node listens there (bus)."""
    return [free_port(plus=10000) for _ in range(n)]


@dataclass
class Deployment:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="as-redis-")))
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # port -> server

    def start(self, port: int, *args: str, conf: str | None = None) -> subprocess.Popen[bytes]:
        cmd = [redis_server()]
        if conf is not None:
            path = self.dir / f"{port}.conf"
            path.write_text(conf)
            cmd.append(str(path))
        cmd += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                "--appendonly", "no", "--logfile", str(self.dir / f"{port}.log"), *args]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs[port] = p
        return p

    def _start(self) -> None:
        raise NotImplementedError

    def boot(self) -> None:
        """Start the servers; if that fails, stop what did start and say why, with their logs."""
        try:
            self._start()
        except BaseException as exc:
            tails = self.log_tails()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{tails}") from exc

    def log_tails(self) -> str:
        """The end of every server's log, for a start-up that failed."""
        out = []
        for port, p in self.procs.items():
            path = self.dir / f"{port}.log"
            tail = path.read_text(errors="replace").splitlines()[-5:] if path.exists() else []
            out.append(f"--- {port} (exit code {p.poll()}):\n" + "\n".join(tail))
        return "\n".join(out)

    def kill(self, port: int) -> None:
        p = self.procs.pop(port)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(check, what: str, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} (last error: {last})")


def ping(port: int) -> bool:
    return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())


class Cluster(Deployment):
    """3 primaries with a replica each, and the plain Redis that holds arq's queue."""

    def __init__(self) -> None:
        super().__init__("cluster")
        self.boot()

    def _start(self) -> None:
        ports = free_ports(7)
        self.nodes, self.queue_port = ports[:6], ports[6]
        for port in self.nodes:
            self.start(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                       "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0",
                       "--cluster-require-full-coverage", "no", "--cluster-allow-reads-when-down", "no")
        self.start(self.queue_port)
        for port in ports:
            wait_for(lambda p=port: ping(p), f"redis-server on {port}")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for(self.healthy, "cluster_state:ok on every node with 3 replicas linked")
        self.env = {"AGENTSTREAM_REDIS_URL": "",
                    "AGENTSTREAM_REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{p}" for p in self.nodes[:3]),
                    "AGENTSTREAM_QUEUE_URL": f"redis://127.0.0.1:{self.queue_port}/0"}

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def healthy(self) -> bool:
        for port in self.procs:
            if port == self.queue_port:
                continue
            info = self.node(port).cluster("info")
            if info.get("cluster_state") != "ok":
                return False
        replicas = [p for p in self.procs if p != self.queue_port and self.role(p) == "slave"]
        linked = all(self.node(p).info("replication").get("master_link_status") == "up" for p in replicas)
        return len(replicas) == 3 and linked

    def role(self, port: int) -> str:
        return str(self.node(port).info("replication")["role"])

    def owner(self, key: str) -> int:
        """Port of the primary that serves ``key`` now."""
        slot = self.node(self.live_primary()).cluster("keyslot", key)
        for port in self.procs:
            if port == self.queue_port or self.role(port) != "master":
                continue
            for row in self.node(port).cluster("slots"):
                if row[0] <= slot <= row[1] and row[2][1] == port:
                    return port
        raise LookupError(f"no primary serves slot {slot}")

    def live_primary(self) -> int:
        return next(p for p in self.procs if p != self.queue_port and self.role(p) == "master")

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.live_primary())


class Sentinels(Deployment):
    """A primary and its replica, watched by 3 sentinels (quorum 2)."""

    def __init__(self) -> None:
        super().__init__("sentinel")
        self.boot()

    def _start(self) -> None:
        ports = free_ports(5)
        self.primary, self.replica, self.sentinels = ports[0], ports[1], ports[2:]
        self.start(self.primary)
        self.start(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in (self.primary, self.replica):
            wait_for(lambda p=port: ping(p), f"redis-server on {port}")
        for port in self.sentinels:
            conf = (f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}\n"
                    f"sentinel failover-timeout {SERVICE} 5000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n")
            self.start(port, "--sentinel", conf=conf)
        wait_for(self.healthy, "sentinels agree on the primary and see its replica")
        self.env = {"AGENTSTREAM_REDIS_URL": "",
                    "AGENTSTREAM_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinels),
                    "AGENTSTREAM_REDIS_SENTINEL_SERVICE": SERVICE}

    def healthy(self) -> bool:
        for port in self.sentinels:
            s = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            if int(s.sentinel_master(SERVICE)["num-other-sentinels"]) < 2 or not s.sentinel_slaves(SERVICE):
                return False
        return redis.Redis(host="127.0.0.1", port=self.replica, socket_timeout=1).info("replication").get("master_link_status") == "up"

    def current_primary(self) -> int:
        host, port = redis.Redis(host="127.0.0.1", port=self.sentinels[0], socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)


def env_for(deployment: Deployment | None) -> dict[str, str]:
    return dict(deployment.env) if deployment is not None else {}


if os.environ.get("AS_TEST_KEEP_REDIS"):  # debugging: leave the servers up
    Deployment.stop = lambda self: None  # type: ignore[method-assign]
