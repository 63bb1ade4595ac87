"""From raw measurements to the published shape: per scenario the same figures for the
project, the naive baseline, the ceiling and (live scenarios only) the peer, the ratios, the
targets of the gateway scenarios, a table; and the end-to-end table with the targets of issue 16."""

from __future__ import annotations

import math
import os
import platform
from importlib import metadata
from typing import Any

NAN = float("nan")
KINDS = ("project", "naive", "ceiling", "peer")  # the peer runs the live scenarios only

# (scenario, figure, label, unit, lower_is_better)
ROWS: list[tuple[str, str, str, str, bool]] = [
    ("ttfe_idle", "p50_ms", "TTFE idle p50", "ms", True),
    ("ttfe_idle", "p99_ms", "TTFE idle p99", "ms", True),
    ("ttfe_idle", "headers_p50_ms", "  of which POST to headers, p50", "ms", True),
    ("ttfe_idle", "headers_p99_ms", "  of which POST to headers, p99", "ms", True),
    ("ttfe_loaded", "p50_ms", "TTFE 50 senders p50", "ms", True),
    ("ttfe_loaded", "p99_ms", "TTFE 50 senders p99", "ms", True),
    ("ttfe_loaded", "messages_per_s", "  messages/s at 50 senders", "msg/s", False),
    ("live_5000", "gateway_us_per_event", "live 5k/s: gateway CPU per event", "µs", True),
    ("live_5000", "p50_ms", "live 5k/s: latency p50", "ms", True),
    ("live_5000", "p99_ms", "live 5k/s: latency p99", "ms", True),
    ("live_5000", "lost", "live 5k/s: events lost", "", True),
    ("live_5000", "append_rtt_p99_ms", "  producer's append round trip p99", "ms", True),
    ("live_5000", "gateway_core_pct", "  gateway CPU", "% core", True),
    ("live_5000", "redis_core_pct", "  Redis CPU", "% core", True),
    ("live_5000", "producer_core_pct", "  producer CPU", "% core", True),
    ("live_5000", "load_core_pct", "  load generator CPU", "% core", True),
    ("live_5000", "machine_pct", "  machine busy (2 cores = 200)", "% core", True),
    ("live_5000", "others_pct", "  of which not this run", "% core", True),
    ("live_20000", "gateway_us_per_event", "live 20k/s: gateway CPU per event", "µs", True),
    ("live_20000", "p50_ms", "live 20k/s: latency p50", "ms", True),
    ("live_20000", "p99_ms", "live 20k/s: latency p99", "ms", True),
    ("live_20000", "lost", "live 20k/s: events lost", "", True),
    ("live_20000", "append_rtt_p99_ms", "  producer's append round trip p99", "ms", True),
    ("live_20000", "gateway_core_pct", "  gateway CPU", "% core", True),
    ("live_20000", "redis_core_pct", "  Redis CPU", "% core", True),
    ("live_20000", "producer_core_pct", "  producer CPU", "% core", True),
    ("live_20000", "load_core_pct", "  load generator CPU", "% core", True),
    ("live_20000", "machine_pct", "  machine busy (2 cores = 200)", "% core", True),
    ("live_20000", "others_pct", "  of which not this run", "% core", True),
    ("throughput", "events_per_s", "throughput, 1,000 streams", "ev/s", False),
    ("throughput", "gateway_core_pct", "  gateway CPU at that rate", "% core", True),
    ("throughput", "redis_core_pct", "  Redis CPU", "% core", True),
    ("throughput", "load_core_pct", "  load generator CPU", "% core", True),
    ("throughput", "machine_pct", "  machine busy (2 cores = 200)", "% core", True),
    ("throughput", "others_pct", "  of which not this run", "% core", True),
    ("capacity", "open", "capacity: streams held", "", False),
    ("capacity", "opens_per_s", "  stream opens per second", "/s", False),
    ("capacity", "redis_connections", "capacity: Redis connections", "", True),
    ("capacity", "rss_kb_per_stream", "capacity: gateway RSS per stream", "KB", True),
    ("capacity", "redis_kb_per_stream", "capacity: Redis memory per stream", "KB", True),
    ("replay", "ms_p50", "replay 10,000 events", "ms", True),
    ("idle", "gateway_pct", "idle gateway CPU", "% core", True),
    ("idle", "worker_pct", "idle worker CPU", "% core", True),
]


def machine(nofile: int, redis_version: str) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30

    def v(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "kernel": platform.release(),
        "python": platform.python_version(), "redis_server": redis_version, "nofile": nofile,
        "packages": {p: v(p) for p in ("redis", "hiredis", "uvicorn", "uvloop", "httptools", "starlette", "arq",
                                       "msgspec")},
    }


def _live(run: dict[str, Any]) -> dict[str, Any]:
    lat = run.get("lat_ms", {})
    return {"gateway_us_per_event": run["gateway_us_per_event"], "p50_ms": lat.get("p50", NAN),
            "p99_ms": lat.get("p99", NAN), "p999_ms": lat.get("p999", NAN), "max_ms": lat.get("max", NAN),
            "lost": run["lost"], "dups": run["dups"], "achieved_per_s": run["achieved"],
            "drain_s": run["drain_s"], "sustained": run["sustained"],
            "gateway_core_pct": run["core_pct"]["gateway"], "load_core_pct": run["core_pct"]["load"],
            "producer_core_pct": run["core_pct"].get("producer", NAN),
            "redis_core_pct": run["core_pct"].get("redis", NAN), "machine_pct": run["machine_pct"],
            "others_pct": run["others_pct"],
            "append_rtt_p99_ms": run.get("append_rtt_ms", {}).get("p99", NAN)}


def assemble(result: dict[str, Any]) -> dict[str, Any]:
    raw = result["raw"]
    sc: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        k = raw.get(kind)
        if k is None:
            continue
        for rate, run in k["live"]["live"].items():
            sc.setdefault(f"live_{rate}", {})[kind] = _live(run)
        tp = k["live"]["throughput"]
        at = tp["at"] or {}
        sc.setdefault("throughput", {})[kind] = {
            "events_per_s": tp["events_per_s"],
            "gateway_core_pct": at.get("core_pct", {}).get("gateway", NAN),
            "machine_pct": at.get("machine_pct", NAN), "others_pct": at.get("others_pct", NAN),
            "redis_core_pct": at.get("core_pct", {}).get("redis", NAN),
            "load_core_pct": at.get("core_pct", {}).get("load", NAN),
            "p99_ms": at.get("lat_ms", {}).get("p99", NAN),
            "gateway_us_per_event": at.get("gateway_us_per_event", NAN),
            "core_pct": at.get("core_pct", {}), "steps": tp["steps"],
        }
        if "ttfe" not in k:
            continue
        idle, loaded = k["ttfe"]["idle"], k["ttfe"]["loaded"]
        sc.setdefault("ttfe_idle", {})[kind] = {"p50_ms": idle.get("p50", NAN), "p99_ms": idle.get("p99", NAN),
                                                "n": idle.get("n", 0), "errors": idle["errors"],
                                                "headers_p50_ms": idle.get("headers_ms", {}).get("p50", NAN),
                                                "headers_p99_ms": idle.get("headers_ms", {}).get("p99", NAN)}
        sc.setdefault("ttfe_loaded", {})[kind] = {"p50_ms": loaded.get("p50", NAN),
                                                  "p99_ms": loaded.get("p99", NAN), "n": loaded.get("n", 0),
                                                  "messages_per_s": loaded["messages_per_s"],
                                                  "errors": loaded["errors"], "core_pct": loaded["core_pct"]}
        sc.setdefault("replay", {})[kind] = k["replay"]
        sc.setdefault("capacity", {})[kind] = raw["capacity"][kind]
        sc.setdefault("idle", {})[kind] = raw["idle"][kind]
    for name, row in sc.items():
        row["ratios"] = _ratios(name, row)
    result["scenarios"] = sc
    result["targets"] = targets(sc, result["counts"])
    result["others_max_pct"] = contention(result)
    return result


def _ratios(name: str, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scen, fig, _, _, lower in ROWS:
        if scen != name:
            continue
        p = row.get("project", {}).get(fig, NAN)
        n = row.get("naive", {}).get(fig, NAN)
        c = row.get("ceiling", {}).get(fig, NAN)
        out[fig] = {"better_than_naive_x": _div(n, p) if lower else _div(p, n), "project_over_ceiling": _div(p, c)}
    return out


def _div(a: Any, b: Any) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return NAN
    if math.isnan(a) or math.isnan(b) or b == 0:
        return NAN
    return a / b


def targets(sc: dict[str, Any], counts: dict[str, Any]) -> list[dict[str, Any]]:
    def g(scen: str, kind: str, fig: str) -> float:
        v = sc.get(scen, {}).get(kind, {}).get(fig, NAN)
        return float(v) if isinstance(v, int | float) else NAN

    out = []

    def add(label: str, value: float, ok: bool, goal: str) -> None:
        out.append({"target": label, "value": value, "goal": goal, "pass": bool(ok)})

    for rate, p99 in (("5000", 10.0), ("20000", 50.0)):
        us, naive_us = g(f"live_{rate}", "project", "gateway_us_per_event"), g(f"live_{rate}", "naive",
                                                                                 "gateway_us_per_event")
        add(f"live {int(rate) // 1000}k/s: gateway CPU/event ≤ 1/5 of naive", _div(naive_us, us),
            us <= naive_us / 5, "≥ 5× less")
        v = g(f"live_{rate}", "project", "p99_ms")
        add(f"live {int(rate) // 1000}k/s: p99 latency", v, v < p99, f"< {p99:g} ms")
        v = g(f"live_{rate}", "project", "lost")
        add(f"live {int(rate) // 1000}k/s: events lost", v, v == 0, "= 0")
    v = g("throughput", "project", "events_per_s")
    add("throughput across 1,000 streams", v, v >= 30_000, "≥ 30,000 ev/s")
    v = g("ttfe_idle", "project", "p50_ms")
    add("TTFE idle p50", v, v < 10, "< 10 ms")
    v = g("ttfe_idle", "project", "p99_ms")
    add("TTFE idle p99", v, v < 25, "< 25 ms")
    x = _div(g("ttfe_idle", "naive", "p50_ms"), g("ttfe_idle", "project", "p50_ms"))
    add("TTFE idle p50 vs arq default poll", x, x >= 25, "≥ 25× faster")
    v = g("idle", "project", "worker_pct")
    add("idle worker CPU", v, v < 2, "< 2% of a core")
    n = counts["capacity_streams"]
    v = g("capacity", "project", "redis_connections")
    add(f"{n:,} idle streams: Redis connections", v, v <= 4, "≤ 4")
    v = g("capacity", "project", "rss_kb_per_stream")
    add(f"{n:,} idle streams: RSS per stream", v, v <= 30, "≤ 30 KB")
    v = g("replay", "project", "ms_p50")
    add(f"replay {counts['replay_events']:,} events", v, v < 150, "< 150 ms")
    return out


def contention(result: dict[str, Any]) -> float:
    """The most CPU that processes outside this run used in any measured window."""
    worst = 0.0

    def walk(o: Any) -> None:
        nonlocal worst
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "others_pct" and isinstance(v, int | float) and not math.isnan(v):
                    worst = max(worst, float(v))
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(result.get("raw", {}))
    return worst


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def grid(rows: list[tuple[str, ...]], text_columns: int = 2) -> list[str]:
    """An aligned table: the first row is the head, underlined; the first ``text_columns``
    columns align left, the figures right."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(str(c).ljust(widths[j]) if j < text_columns else str(c).rjust(widths[j])
                               for j, c in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def table(result: dict[str, Any]) -> str:
    sc = result["scenarios"]
    head = ("figure", "unit", "project", "naive", "ceiling", "peer", "× vs naive", "project/ceiling")
    rows: list[tuple[str, ...]] = [head]
    for scen, fig, label, unit, _ in ROWS:
        row = sc.get(scen, {})
        r = row.get("ratios", {}).get(fig, {})
        rows.append((label, unit, *(_fmt(row.get(k, {}).get(fig)) for k in KINDS),
                     _fmt(r.get("better_than_naive_x")), _fmt(r.get("project_over_ceiling"))))
    lines = grid(rows)
    lines.append("")
    lines.append("targets (gateway scenarios)")
    tw = max(len(t["target"]) for t in result["targets"])
    for t in result["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target'].ljust(tw)}  {_fmt(t['value']):>10}  "
                     f"(goal {t['goal']})")
    worst = contention(result)
    lines.append("")
    lines.append(f"other load on the machine during measured windows: at most {_fmt(worst)}% of a core"
                 + ("  [figures disturbed: see others_pct in the JSON]" if worst > 20 else ""))
    m = result["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, "
                 f"Python {m['python']}, redis-server {m['redis_server']}"
                 f"{'  [QUICK: smaller counts]' if result['quick'] else ''}")
    return "\n".join(lines)

