"""The processes a bench run starts, and what it reads about them from /proc.

Every server is a real process on loopback, started the way production starts it
(``python -m cli.main gateway|worker``) or the way the baselines start (``python -m bench...``,
``node bench/peer/server.mjs``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli import embedded
from shared import connect, keys

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peer"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE_WANTED = 65_536


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise RLIMIT_NOFILE for this process; children (gateways, Redis, load) inherit it.
    The hard limit moves only with privilege; without it the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


_HANDED: set[int] = set()


def free_port(plus: int = 0) -> int:
    """A loopback port nothing listens on, for a server started next. Picked below the kernel's
    ephemeral range: a port got by binding to 0 comes from that range, and any outgoing
    connection can take it as its local port before the server binds it ("address already in
    use"). Never the same port twice in one process. ``plus``: port + plus must be free too (a
    Redis Cluster node also listens on its port + 10000)."""
    top = _ephemeral_low() - plus
    if top <= 11000:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    while True:
        port = random.randrange(10000, top)
        if port not in _HANDED and _bindable(port) and (not plus or _bindable(port + plus)):
            _HANDED.add(port)
            return port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat (all cores)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def tree_cpu_s(root: int | None = None) -> dict[int, float]:
    """CPU seconds of a process and all its descendants (this bench run, by default)."""
    root = root or os.getpid()
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    mine = {}
    for pid in used:
        p, hops = pid, 0
        while p and p != root and hops < 64:
            p, hops = parent.get(p, 0), hops + 1
        if p == root:
            mine[pid] = used[pid]
    return mine


def _delta(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(b[p] - a[p] for p in b if p in a)


async def quiet(threshold_pct: float, max_wait_s: float, sample_s: float = 0.4) -> dict[str, float]:
    """Wait until processes that are not this run use under threshold_pct of a core (other
    sessions share the machine); give up after max_wait_s and say how busy it still was."""
    t0 = time.monotonic()
    while True:
        mine0, m0, w0 = tree_cpu_s(), machine_busy_s()[0], time.monotonic()
        await asyncio.sleep(sample_s)
        m1, w1, mine1 = machine_busy_s()[0], time.monotonic(), tree_cpu_s()
        others = max(0.0, 100 * ((m1 - m0) - _delta(mine0, mine1)) / (w1 - w0))
        waited = time.monotonic() - t0
        if others < threshold_pct or waited >= max_wait_s:
            return {"others_core_pct": others, "waited_s": waited}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)


class CpuWindow:
    """CPU used by a set of processes (and the machine) between start() and stop()."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs
        self.t0 = 0.0
        self.c0: dict[str, float] = {}
        self.m0 = 0.0
        self.mine0: dict[int, float] = {}

    def start(self) -> CpuWindow:
        self.mine0 = tree_cpu_s()
        self.m0 = machine_busy_s()[0]
        self.c0 = {n: cpu_s(p) for n, p in self.procs.items()}
        self.t0 = time.monotonic()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        used = {n: cpu_s(p) - self.c0[n] for n, p in self.procs.items()}
        busy = machine_busy_s()[0] - self.m0
        mine = _delta(self.mine0, tree_cpu_s())
        return {
            "wall_s": wall,
            "cpu_s": used,
            "core_pct": {n: 100 * u / wall for n, u in used.items()},
            # in % of ONE core, like the rest (a 2-core machine is 200% busy at most)
            "machine_pct": 100 * busy / wall,
            # Not this run: other sessions, kernel irq. Approximate: a process's stime can include
            # softirq work that /proc/stat also counts, so it is floored at 0.
            "others_pct": max(0.0, 100 * (busy - mine) / wall),
        }


@dataclass
class Cluster:
    """One embedded Redis and the servers of the run, under one temporary directory."""

    data_dir: Path
    redis_url: str = ""
    redis_proc: subprocess.Popen[bytes] | None = None
    procs: list[Proc] = field(default_factory=list)

    def start_redis(self) -> None:
        self.redis_proc = embedded.start(self.data_dir / "redis")
        self.redis_url = connect.url_for(self.data_dir / "redis")

    @property
    def redis_pid(self) -> int:
        assert self.redis_proc is not None
        return self.redis_proc.pid

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
        # The bench's one key opens thousands of streams: the per-key stream limit (a tenant
        # safeguard, 500 by default) is off here; the per-process ceiling stays.
        env.update({"AGENTSTREAM_REDIS_URL": self.redis_url, "AGENTSTREAM_LOG_LEVEL": "warning",
                    "AGENTSTREAM_FALLBACK_TO_BUILTIN": "true", "AGENTSTREAM_MAX_STREAMS_PER_KEY": "0",
                    "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def spawn(self, name: str, module: str, *args: str, port: int | None = None, env: dict[str, str] | None = None,
              **extra: str) -> Proc:
        return self.spawn_argv(name, [sys.executable, "-m", module, *args], port, {**extra, **(env or {})})

    def spawn_argv(self, name: str, argv: list[str], port: int | None = None,
                   env: dict[str, str] | None = None) -> Proc:
        log = self.data_dir / f"{name}-{len(self.procs)}.log"
        env = self.env(**({"AGENTSTREAM_PORT": str(port)} if port else {}), **(env or {}))
        with log.open("wb") as out:  # the child keeps its own descriptor
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        return proc

    async def gateway(self, **extra: str) -> Proc:
        return await self._http("gateway", "cli.main", "gateway", **extra)

    async def naive_gateway(self, **extra: str) -> Proc:
        return await self._http("naive", "bench.baselines.naive_gateway", **extra)

    async def ceiling(self) -> Proc:
        return await self._http("ceiling", "bench.baselines.ceiling")

    def worker(self, **extra: str) -> Proc:
        return self.spawn("worker", "cli.main", "worker", env=extra)

    def poll_worker(self) -> Proc:
        """arq's own worker loop with its default 0.5 s poll and no inbound wake-up."""
        return self.spawn("pollworker", "bench.baselines.poll_worker", AGENTSTREAM_FALLBACK_POLL_S="0.5")

    def naive_worker(self, **extra: str) -> Proc:
        """The poll worker that also appends each event with its own plain XADD."""
        return self.spawn("naiveworker", "bench.baselines.naive_worker", env={"AGENTSTREAM_FALLBACK_POLL_S": "0.5", **extra})

    async def peer(self) -> Proc:
        """Vercel's resumable-stream in one Node process (``bench/peer``, installed by ensure_peer)."""
        port = free_port()
        proc = self.spawn_argv("peer", [node(), str(PEER / "server.mjs")], port)
        await asyncio.to_thread(wait_http, proc)
        return proc

    async def _http(self, name: str, module: str, *args: str, **extra: str) -> Proc:
        port = free_port()
        proc = self.spawn(name, module, *args, port=port, env=extra)
        await asyncio.to_thread(wait_http, proc)
        return proc

    def stop(self, proc: Proc, timeout_s: float = 15) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, timeout_s: float = 15) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout_s)
        embedded.stop(self.redis_proc, self.data_dir / "redis")


async def worker_up(cluster: Cluster, worker: Proc, timeout_s: float = 30, client: Any = None) -> None:
    """A worker is up once its heartbeat (id ``host:pid:...``) is in the workers set. ``client``:
    where that set lives when it is not the run's embedded Redis (a cluster); not closed here."""
    deadline = time.monotonic() + timeout_s
    redis = client or connect.client(cluster.redis_url, max_connections=1)
    try:
        while time.monotonic() < deadline:
            if worker.popen.poll() is not None:
                raise RuntimeError(f"{worker.name} exited: {worker.log.read_text()[-2000:]}")
            if any(f":{worker.pid}:" in m.decode() for m in await redis.zrange(keys.WORKERS, 0, -1)):
                return
            await asyncio.sleep(0.05)
    finally:
        if client is None:
            await redis.aclose()
    raise TimeoutError(f"{worker.name} sent no heartbeat within {timeout_s}s")


def node() -> str:
    path = shutil.which("node")
    if path is None:
        raise RuntimeError("the peer (bench/peer) needs Node.js >= 18 on the PATH")
    return path


def ensure_peer() -> None:
    """``npm ci`` in bench/peer when node_modules is missing or older than the lock file. After
    the first install it works offline (npm's cache); the lock file pins every package."""
    installed = PEER / "node_modules" / ".package-lock.json"  # npm writes it on every install
    if installed.exists() and installed.stat().st_mtime >= (PEER / "package-lock.json").stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the peer (bench/peer) needs npm (Node.js >= 18) on the PATH")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], cwd=PEER,
                   check=True, stdout=sys.stderr)


def wait_http(proc: Proc, path: str = "/healthz", timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{tail(proc.log)}")
        try:
            with urllib.request.urlopen(proc.url + path, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} on port {proc.port} did not answer {path}")


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Child:
    """A load or producer process driven by JSON lines over stdin/stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, cluster: Cluster, name: str, module: str, spec: dict[str, Any]) -> Child:
        spec_path = cluster.data_dir / f"{name}-{os.urandom(3).hex()}.json"
        spec_path.write_text(json.dumps(spec))
        log = spec_path.with_suffix(".log")
        with log.open("wb") as err:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, str(spec_path), cwd=ROOT, env=cluster.env(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                limit=64 * 1024 * 1024)
        return cls(name, proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def read(self, timeout_s: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
        out: dict[str, Any] = json.loads(line)
        return out

    async def ask(self, command: dict[str, Any], timeout_s: float = 120) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(timeout_s)

    async def close(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
