"""Profile one server under the live-delivery load: ``python -m bench.profile``.

Starts an embedded Redis, one server (``--kind project|naive|ceiling``), ``--streams`` open
streams and the producer at ``--rate`` events/s, and records the server with py-spy for
``--seconds`` (py-spy is a profiling tool, not a dependency: ``pip install py-spy``). Writes
the collapsed stacks (``--out``; any flame-graph tool renders them) and prints the functions
with the most samples, inclusive and self, which is what RESULTS.md quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
from pathlib import Path

from bench import gc_probe
from bench.context import QUICK, Ctx
from bench.fixtures import Fixtures
from bench.procs import Cluster, free_port, raise_nofile, wait_http
from bench.scenarios.live import Session
from shared import connect
from shared.settings import Settings


def top(collapsed: Path, n: int = 25) -> str:
    """Inclusive and self sample shares per function from py-spy's raw (collapsed) output."""
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        for f in set(frames):
            incl[f] += c
        self_[frames[-1]] += c
    out = [f"{total} samples", "", "inclusive:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(n)]
    out += ["", "self:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_.most_common(n)]
    return "\n".join(out)


async def record(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    """py-spy recording one process for ``seconds`` into ``out`` (raw, collapsed stacks)."""
    return await asyncio.create_subprocess_exec(
        shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
        "--duration", str(max(1, int(seconds))), "--rate", "200", "--format", "raw", "--output", str(out),
        "--nonblocking", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def profile(args: argparse.Namespace) -> None:
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="agentstream-profile-"))
    cluster = Cluster(tmp)
    try:
        cluster.start_redis()
        settings = Settings.from_env({"AGENTSTREAM_REDIS_URL": cluster.redis_url})
        redis = connect.client(cluster.redis_url)
        fx = Fixtures(redis, settings)
        counts = QUICK.__class__(**{**QUICK.__dict__, "streams": args.streams, "quiet_wait_s": 0.0})
        ctx = Ctx(cluster, redis, settings, fx, await fx.tenant(), counts, True)
        if args.gc:
            server = cluster.spawn("gateway", "bench.gc_probe", "gateway", port=free_port())
            await asyncio.to_thread(wait_http, server)
        else:
            start = {"project": cluster.gateway, "naive": cluster.naive_gateway, "ceiling": cluster.ceiling}[args.kind]
            server = await start()
        s = Session(ctx, server, args.kind)
        await s.open()
        await s.step(args.rate, 2.0)  # warm up
        spy = await record(server.pid, args.seconds, args.out)
        result = await s.step(args.rate, args.seconds)
        await spy.wait()
        await s.close()
        print(f"{args.kind} at {args.rate} ev/s over {args.streams} streams: "
              f"{result['gateway_us_per_event']:.1f} µs/event, p50 {result['lat_ms'].get('p50', 0):.2f} ms, "
              f"p99 {result['lat_ms'].get('p99', 0):.2f} ms, lost {result['lost']}, "
              f"CPU {', '.join(f'{k} {v:.0f}%' for k, v in result['core_pct'].items())}, "
              f"others {result['others_pct']:.0f}%")
        print(top(args.out))
        if args.gc:
            print("\ngarbage collections in the gateway (whole life of the process):")
            for gen, g in sorted(gc_probe.summarise(server.log.read_text()).items()):
                print(f"  {gen}: {g['n']:.0f} collections, {g['total_ms']:.0f} ms in all, longest {g['max_ms']:.1f} ms")
        await redis.aclose()
    finally:
        cluster.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("project", "naive", "ceiling"), default="project")
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/agentstream-gateway.collapsed"))
    p.add_argument("--gc", action="store_true", help="run the project gateway under bench.gc_probe and "
                                                     "report its garbage-collection pauses")
    asyncio.run(profile(p.parse_args()))


if __name__ == "__main__":
    main()
