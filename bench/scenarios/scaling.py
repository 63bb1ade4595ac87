"""Scaling out (issue 10 §5): the capacity workload on the standalone Redis, 1 and 3 Redis
Cluster primaries.

The capacity workload is the end-to-end scenario's project kind (``bench.scenarios.e2e``: a
real ``agentstream gateway`` + ``agentstream worker``, C paced conversations over HTTP/SSE),
run once per topology (``bench.topology``): the embedded standalone Redis, then N primaries
(no replicas) plus the queue Redis that arq needs on a cluster, the processes configured by
``AGENTSTREAM_REDIS_CLUSTER_NODES`` / ``AGENTSTREAM_QUEUE_URL``. Reported per topology: the
e2e table's columns (Redis = every primary + the queue Redis), the queue Redis's share apart,
and each process's share of a core (where the time goes); then the 3 vs 1 primaries ratio.

In ``make bench`` the standalone row is the e2e scenario's own project row at the same point
(same plan, same code; it is not run twice). Alone: ``python -m bench.scenarios.scaling
[--quick] [--points 250@20] [--topologies standalone,cluster1,cluster3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import report_e2e, topology
from bench.procs import ROOT, raise_nofile
from bench.report import _fmt, grid
from bench.scenarios import e2e

TOPOLOGIES = tuple(topology.TOPOLOGIES)
FULL = replace(e2e.FULL, points=(e2e.Point(250, 20),), kinds=("project",))
QUICK = replace(e2e.QUICK, kinds=("project",))
COLUMNS = (*report_e2e.E2E_COLUMNS, "queue µs/ev", "core% gw", "worker", "redis", "queue", "machine%")


async def measure(tmp: Path, plan: e2e.Plan, topologies: tuple[str, ...] = TOPOLOGIES, log: Any = print,
                  e2e_result: dict[str, Any] | None = None) -> dict[str, Any]:
    """``e2e_result``: an e2e run of the same plan; its project rows stand for ``standalone``."""
    out: dict[str, Any] = {"plan": asdict(plan), "topologies": list(topologies), "points": {}}
    for point in plan.points:
        row: dict[str, Any] = {}
        for name in topologies:
            known = reusable(e2e_result, plan, point) if name == "standalone" else None
            if known is not None:
                row[name] = {**known, "from_e2e": True}
                continue
            log(f"scaling: project on {name}, {point.label}, {plan.seconds:g} s")
            row[name] = await e2e.measure_point(tmp, replace(plan, topology=name), point, "project", e2e.DEFAULT_TOKENS)
        out["points"][point.label] = row
    return out


def reusable(e2e_result: dict[str, Any] | None, plan: e2e.Plan, point: e2e.Point) -> dict[str, Any] | None:
    """The e2e run's project row at ``point``, if that run had the same timing and pacing."""
    if not e2e_result:
        return None
    theirs, mine = e2e_result["plan"], asdict(plan)
    same = ("seconds", "warmup_s", "ramp_s", "drain_s", "warm", "first_token_ms", "content", "extra")
    if any(theirs.get(k) != mine[k] for k in same) or theirs.get("topology", "standalone") != "standalone":
        return None
    row: dict[str, Any] | None = e2e_result["points"].get(point.label, {}).get("project")
    return row


def ratio(row: dict[str, Any], over: str = "cluster1", under: str = "cluster3") -> float | None:
    """events/s on ``under`` over events/s on ``over`` (None when either is missing or zero)."""
    a, b = row.get(over), row.get(under)
    if not a or not b or not a.get("events_per_s"):
        return None
    return float(b["events_per_s"]) / float(a["events_per_s"])


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    core = r["core_pct"]
    return (*report_e2e._e2e_cells(r), _fmt(r["cpu_us_per_event"].get("redis_queue")), _fmt(core.get("gateway")),
            _fmt(core.get("worker")), _fmt(core.get("redis")), _fmt(core.get("redis_queue")), _fmt(r.get("machine_pct")))


def table(result: dict[str, Any]) -> str:
    plan = result["plan"]
    head = ("point", "topology", *COLUMNS)
    rows: list[tuple[str, ...]] = [head]
    for label, row in result["points"].items():
        for name, r in row.items():
            rows.append((label, name + (" *" if r.get("from_e2e") else ""), *_cells(r)))
    lines = [f"scaling out: the capacity workload (project gateway + worker, C conversations, "
             f"{plan['seconds']:g} s measured after {plan['warmup_s']:g} s) on standalone Redis vs "
             f"1 vs 3 Redis Cluster primaries (+ the queue Redis)"]
    lines += grid(rows)
    lines.append("µs/ev redis: every Redis server (on a cluster: all primaries + the queue Redis); queue µs/ev: "
                 "the queue Redis's share of it; core%: % of one core per process over the window "
                 "(the machine has two: machine% is all of it, 200 at most, others% the part outside this run); "
                 "* = the e2e table's project row at the same point")
    for label, row in result["points"].items():
        x = ratio(row)
        if x is not None:
            lines.append(f"{label}: 3 vs 1 primaries: {x:.2f}x events/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the QUICK point (what make bench QUICK=1 runs)")
    p.add_argument("--points", help='conversations@token-delay-ms, e.g. "250@20"')
    p.add_argument("--seconds", type=float, help="per point, from the first send to the end of the window")
    p.add_argument("--topologies", default=",".join(TOPOLOGIES), help=f"comma-separated, of {','.join(TOPOLOGIES)}")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "scaling.json")
    args = p.parse_args(argv)
    try:
        topologies = topology.parse(args.topologies)
    except ValueError as e:
        p.error(str(e))
    plan = QUICK if args.quick else FULL
    if args.points:
        plan = replace(plan, points=e2e.parse_points(args.points))
    if args.seconds:
        plan = replace(plan, seconds=args.seconds)
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="agentstream-scaling-"))

    def log(msg: str) -> None:
        print(f"[scaling {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = asyncio.run(measure(tmp, plan, topologies, log))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
