"""End-to-end capacity (issue 16): C conversations against real processes, per server kind.

Each (kind, point) runs on a fresh embedded Redis with fresh processes, so no queue, session or
memory figure leaks from one to the next:

* ``project``: ``agentstream gateway`` + ``agentstream worker`` of this checkout, defaults, the
  built-in model paced by ``AGENTSTREAM_BUILTIN_FIRST_TOKEN_DELAY_MS`` / ``..._TOKEN_DELAY_MS``;
* ``naive``: the naive gateway (one ``XREAD BLOCK`` per client) + the naive worker (arq's own
  0.5 s poll, one plain ``XADD`` round trip per event), same model, same pacing;
* ``peer``: Vercel's resumable-stream producing and serving the same paced answers from one
  Node process (``bench/peer``), its Redis client on the same kind of Redis;
* ``ceiling``: one Python process pacing the same answers straight into SSE, no Redis.

The conversations (``bench.conversations``, its own process) each send a message, read its SSE
to the end and send the next. CPU comes from /proc (utime + stime) over the measured window,
per process: gateway (for the peer and the ceiling: their one server process), worker, Redis,
load generator. Lost events are the stream's entries (XLEN) minus the distinct events received,
per message (project, naive); for the peer and the ceiling, the answer's known length.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import context, profile, soak, topology
from bench.fixtures import Fixtures
from bench.procs import ROOT, Child, Cluster, CpuWindow, Proc, quiet, worker_up
from shared import keys

KINDS = ("project", "naive", "peer", "ceiling")
CONTENT = "hello, how are you?"  # the built-in model's greeting: 17 tokens, no tools
DEFAULT_TOKENS = 17  # tokens of the peer's and ceiling's answers until the project's are counted
PATH = "/v1/agents/sessions/{session}/messages"
PROFILES = ROOT / "bench" / "results"  # py-spy's collapsed stacks, for flame graphs


@dataclass(frozen=True)
class Point:
    conversations: int
    token_ms: int

    @property
    def label(self) -> str:
        return f"{self.conversations} at {1000 / self.token_ms:g} tok/s"


@dataclass(frozen=True)
class Plan:
    points: tuple[Point, ...]
    first_token_ms: int = 200
    seconds: float = 15.0  # from the first send to the end of the measured window
    warmup_s: float = 3.0  # not measured: conversations start, queues fill
    ramp_s: float = 1.0  # conversations start spread over this
    drain_s: float = 30.0  # after the window, messages in flight get this long to end
    warm: int = 2  # messages sent one after another before the run (imports, script loads)
    kinds: tuple[str, ...] = KINDS
    content: str = CONTENT
    quiet_wait_s: float = 20.0  # before each window, wait this long at most for other load to stop
    profile: str = ""  # "worker" or "gateway": py-spy on that project process in each window
    extra: dict[str, str] = field(default_factory=dict)  # AGENTSTREAM_* for the project's processes
    topology: str = "standalone"  # bench.topology: the project's Redis (a cluster: project kind only)
    tick_s: float = 0.0  # the soak: one row per tick_s of the window (bench.soak); 0: none


def soak_plan(base: Plan, seconds: float, tick_s: float, point: Point) -> Plan:
    """One point of the project held for ``seconds`` of measured window, reported every
    ``tick_s`` (the soak of issue 16; on QUICK, what QUICK=1 can afford: e.g. 30 s by 10 s)."""
    return replace(base, points=(point,), seconds=base.warmup_s + seconds, tick_s=tick_s, kinds=("project",))


FULL = Plan(points=(Point(25, 20), Point(100, 20), Point(250, 20), Point(1000, 200)))
QUICK = Plan(points=(Point(20, 20),), seconds=3.0, warmup_s=1.0, ramp_s=0.5, drain_s=10.0, warm=1,
             quiet_wait_s=0.5)
SOAK_POINT = Point(100, 20)  # 100 conversations at 50 tok/s: each session gains ~1.5 messages a second


def parse_points(text: str) -> tuple[Point, ...]:
    """``"25@20,1000@200"``: conversations @ token delay in ms."""
    out = []
    for part in text.split(","):
        c, _, ms = part.strip().partition("@")
        out.append(Point(int(c), int(ms or 20)))
    return tuple(out)


async def measure(tmp: Path, plan: Plan, log: Any = print) -> dict[str, Any]:
    out: dict[str, Any] = {"plan": asdict(plan), "points": {}}
    tokens = DEFAULT_TOKENS
    for point in plan.points:
        row: dict[str, Any] = {}
        for kind in plan.kinds:
            log(f"e2e: {kind}, {point.label}, {plan.seconds:g} s")
            row[kind] = r = await measure_point(tmp, plan, point, kind, tokens)
            if kind == "project" and r.get("tokens_per_message"):
                tokens = int(r["tokens_per_message"])
        out["points"][point.label] = row
    return out


async def measure_point(tmp: Path, plan: Plan, point: Point, kind: str, tokens: int) -> dict[str, Any]:
    cluster = Cluster(tmp / f"e2e-{kind}-{point.conversations}-{point.token_ms}")
    if plan.topology != "standalone" and kind != "project":
        raise ValueError(f"topology {plan.topology}: only the project runs on a cluster, not {kind}")
    redises = topology.start(plan.topology, cluster)
    redis = redises.client()
    ok = False
    try:
        server, worker, spec = await _start(cluster, redises, redis, plan, point, kind, tokens)
        load = await Child.start(cluster, f"conversations-{kind}", "bench.conversations", spec)
        try:
            result = await _drive(cluster, redises, plan, kind, server, worker, load)
        finally:
            await load.close()
        result.update(await _check(redis, kind, result.pop("messages"), tokens))
        result["redis_bytes_per_message"] = ((await redises.used_memory()) - result.pop("mem0")) / max(1, result["ended"])
        if (commands := await redises.queue_commands()) is not None:
            result["queue_commands"] = commands
        ok = True
        return {"conversations": point.conversations, "token_ms": point.token_ms,
                "first_token_ms": plan.first_token_ms, **result}
    finally:
        await redis.aclose()
        cluster.stop_all(timeout_s=3)  # the Redis is thrown away: no graceful drain
        redises.stop()
        if ok:
            shutil.rmtree(cluster.data_dir, ignore_errors=True)


async def _start(cluster: Cluster, redises: topology.Redises, redis: aioredis.Redis, plan: Plan, point: Point,
                 kind: str, tokens: int) -> tuple[Proc, Proc | None, dict[str, Any]]:
    spec: dict[str, Any] = {"host": "127.0.0.1", "content": plan.content, "token_ms": point.token_ms,
                            "duration_s": plan.seconds, "warmup_s": plan.warmup_s, "ramp_s": plan.ramp_s,
                            "drain_s": plan.drain_s, "warm": plan.warm, "tick_s": plan.tick_s}
    worker: Proc | None = None
    if kind in ("project", "naive"):
        fx = Fixtures(redis, redises.settings)
        tenant = await fx.tenant()
        spec.update(sessions=await fx.new_sessions(tenant, point.conversations), path=PATH,
                    headers=tenant.headers)
        pacing = {"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": str(point.token_ms),
                  "AGENTSTREAM_BUILTIN_FIRST_TOKEN_DELAY_MS": str(plan.first_token_ms)}
        if kind == "project":
            server = await cluster.gateway(**redises.env, **plan.extra)
            worker = cluster.worker(**pacing, **redises.env, **plan.extra)
        else:
            server = await cluster.naive_gateway()
            worker = cluster.naive_worker(**pacing)
        await worker_up(cluster, worker, client=redis)
    else:
        server = await (cluster.peer() if kind == "peer" else cluster.ceiling())
        spec.update(sessions=[f"ses_{i}" for i in range(point.conversations)],
                    path=PATH + f"?first_ms={plan.first_token_ms}&token_ms={point.token_ms}&tokens={tokens}",
                    headers={"Accept": "text/event-stream"})
    spec["port"] = server.port
    return server, worker, spec


async def _drive(cluster: Cluster, redises: topology.Redises, plan: Plan, kind: str, server: Proc,
                 worker: Proc | None, load: Child) -> dict[str, Any]:
    ready = await load.read(120)
    assert ready["event"] == "ready", ready
    mem0 = await redises.used_memory()
    q = await quiet(context.QUIET_PCT, plan.quiet_wait_s)
    pids = {"gateway": server.pid, "load": load.pid}
    if worker is not None:
        pids["worker"] = worker.pid
    if kind != "ceiling":
        pids.update(redises.pids)
    measuring = await load.ask({"cmd": "run"}, plan.warmup_s + 60)
    assert measuring["event"] == "measuring", measuring
    window = CpuWindow(pids).start()
    spy, collapsed = None, PROFILES / f"{cluster.data_dir.name}-{plan.profile}.collapsed"
    if plan.profile and kind == "project":
        target = worker if plan.profile == "worker" else server
        assert target is not None
        PROFILES.mkdir(parents=True, exist_ok=True)
        spy = await profile.record(target.pid, plan.seconds - plan.warmup_s, collapsed)
    ticks = []
    while (end := await load.read(plan.seconds + 60))["event"] == "tick":
        now = window.stop()  # so far; the window goes on
        ticks.append({**end, "cpu_s": topology.fold(now["cpu_s"]), "others_s": now["others_pct"] * now["wall_s"] / 100})
    cpu = window.stop()
    cpu["cpu_s"], cpu["core_pct"] = topology.fold(cpu["cpu_s"]), topology.fold(cpu["core_pct"])
    done = await load.read(plan.drain_s + 120)
    top = None
    if spy is not None:
        await spy.wait()
        top = profile.top(collapsed, 40) if collapsed.exists() else "py-spy wrote nothing (is it installed?)"
    events = end["events"] - measuring["events"]
    finished = end["finished"] - measuring["finished"]
    wall = cpu["wall_s"]
    per_event = {n: s / events * 1e6 if events else float("nan") for n, s in cpu["cpu_s"].items()}
    per_event["total"] = sum(v for n, v in per_event.items() if n in ("gateway", "worker", "redis"))
    return {
        "events": events, "events_per_s": events / wall, "messages_per_s": finished / wall,
        "ttfe_ms": done["ttfe_ms"], "ttft_ms": done["ttft_ms"], "gap_ms": done["gap_ms"],
        "cpu_us_per_event": per_event, "core_pct": cpu["core_pct"], "machine_pct": cpu["machine_pct"],
        "others_pct": cpu["others_pct"], "others_before_pct": q["others_core_pct"],
        "resets": done["resets"], "dups": done["dups"], "bad_terminal": done["bad_terminal"],
        "unfinished": done["unfinished"], "errors": done["errors"], "ended": done["ended"],
        "in_flight_at_end": end["in_flight"], "drain_s": done["drain_s"],
        "tokens_per_message": statistics.median(ready["warm_tokens"]) if ready["warm_tokens"] else None,
        "messages": done["messages"], "mem0": mem0, **({"profile": top} if top else {}),
        **({"soak": soak.rows(ticks), "soak_drift": soak.drift(soak.rows(ticks))} if ticks else {}),
    }


async def _check(redis: aioredis.Redis, kind: str, messages: list[list[Any]], tokens: int) -> dict[str, Any]:
    """Lost events per ended message, and (project, naive) messages that ran more than once:
    a lease that lapsed on a live worker shows here, and as a ``reset`` on the wire."""
    if kind not in ("project", "naive"):
        expected = tokens + 4  # intent, thinking, the tokens, message, done
        return {"lost": sum(max(0, expected - n) for _, _, n in messages), "retried": 0}
    lost = retried = 0
    known = [(m, s, n) for m, s, n in messages if m]
    for i in range(0, len(known), 1000):
        batch = known[i:i + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            for m, s, _ in batch:
                pipe.xlen(keys.events(s, m))
                pipe.hget(keys.message(s, m), "attempt")
            replies = await pipe.execute()
        for j, (_, _, n) in enumerate(batch):
            lost += max(0, int(replies[2 * j]) - n)
            retried += int(replies[2 * j + 1] or 0) > 1
    return {"lost": lost, "retried": retried}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scenarios.e2e``: the end-to-end scenario alone (what ``make bench`` runs
    after the gateway scenarios), with every knob as a flag."""
    import argparse
    import json
    import sys
    import tempfile
    import time

    from bench import report_e2e
    from bench.procs import ensure_peer, raise_nofile

    p = argparse.ArgumentParser(prog="python -m bench.scenarios.e2e", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one short small point (what make bench QUICK=1 runs)")
    p.add_argument("--points", help='conversations@token-delay-ms, e.g. "25@20,100@20,250@20,1000@200"')
    p.add_argument("--first-token-ms", type=int, help="first-token delay of every answer")
    p.add_argument("--seconds", type=float, help="per point, from the first send to the end of the window")
    p.add_argument("--warmup", type=float, help="seconds not measured at the start of each point")
    p.add_argument("--drain", type=float, help="seconds messages in flight get after the window")
    p.add_argument("--kinds", help=f"comma-separated, of {','.join(KINDS)}")
    p.add_argument("--topology", choices=tuple(topology.TOPOLOGIES),
                   help="the project's Redis: standalone (embedded), or 1 or 3 Redis Cluster primaries "
                        "plus the queue Redis (project kind only; bench.scenarios.scaling runs all three)")
    p.add_argument("--profile", choices=("worker", "gateway"), help="py-spy on the project's worker or gateway")
    p.add_argument("--soak", type=float, metavar="SECONDS",
                   help="the soak: one point (--points, default 100@20) held for SECONDS of measured window, "
                        "a row per --tick; with --quick, QUICK's warm-up and drain")
    p.add_argument("--tick", type=float, default=60.0, help="seconds per soak row (default 60)")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    changes: dict[str, Any] = {k: v for k, v in {
        "points": parse_points(args.points) if args.points else None, "first_token_ms": args.first_token_ms,
        "seconds": args.seconds, "warmup_s": args.warmup, "drain_s": args.drain,
        "kinds": tuple(args.kinds.split(",")) if args.kinds else None, "profile": args.profile,
        "topology": args.topology}.items()
        if v is not None}
    plan = replace(base, **changes)
    if args.soak:
        plan = soak_plan(plan, args.soak, args.tick, plan.points[0] if args.points else SOAK_POINT)
    raise_nofile()
    if "peer" in plan.kinds:
        ensure_peer()
    tmp = Path(tempfile.mkdtemp(prefix="agentstream-e2e-"))

    def log(msg: str) -> None:
        print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = asyncio.run(measure(tmp, plan, log))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(report_e2e.table(result))
    for label, row in result["points"].items():
        if "soak" in row.get("project", {}):
            print("\n" + soak.table(label, plan.tick_s, row["project"]["soak"]))
    for label, row in result["points"].items():
        if "profile" in row.get("project", {}):
            print(f"\nproject {plan.profile} profile at {label}:\n{row['project']['profile']}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
