"""The soak of the end-to-end scenario (issue 16): does cost stay flat while sessions grow?

Pure: the load process sends a cumulative tick every ``tick_s`` (events and messages so far,
summaries of the TTFE and per-message times of the messages since the previous tick, messages
per session so far); the orchestrator adds the CPU seconds each process used since the window
began. These functions turn the ticks into one row per interval and compare the first
interval with the last.
"""

from __future__ import annotations

import math
from typing import Any

from bench.report import _fmt, grid

SERVER = ("gateway", "worker", "redis")  # the processes whose CPU is the pipeline's cost
TOLERANCE = 0.10  # issue 16: events/s and CPU per event at the end within 10 % of the first minute

COLUMNS = ("minute", "ev/s", "msg/s", "µs/ev gw", "worker", "redis", "sum", "TTFE p50", "p99",
           "msg ms p50", "p99", "msgs/session", "others%")


def rows(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per interval between consecutive cumulative ticks (the first tick is measured
    from the window's start, where every counter is 0)."""
    out = []
    prev: dict[str, Any] = {"t_s": 0.0, "events": 0, "finished": 0, "cpu_s": {}, "busy_s": 0.0}
    for tick in ticks:
        wall = tick["t_s"] - prev["t_s"]
        events = tick["events"] - prev["events"]
        cpu = {n: s - prev["cpu_s"].get(n, 0.0) for n, s in tick["cpu_s"].items()}
        us = {n: c / events * 1e6 if events else math.nan for n, c in cpu.items()}
        us["total"] = sum(v for n, v in us.items() if n in SERVER)
        others = tick.get("others_s", 0.0) - prev.get("others_s", 0.0)
        out.append({
            "t_s": tick["t_s"], "seconds": wall, "events": events,
            "events_per_s": events / wall if wall > 0 else math.nan,
            "messages_per_s": (tick["finished"] - prev["finished"]) / wall if wall > 0 else math.nan,
            "cpu_us_per_event": us, "ttfe_ms": tick["ttfe_ms"], "message_ms": tick["message_ms"],
            "messages_per_session": tick["messages_per_session"],
            "others_pct": 100 * others / wall if wall > 0 else math.nan,
        })
        prev = tick
    return out


def drift(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The last interval against the first: ratios of events/s and of CPU per event (gateway +
    worker + Redis), and whether both are within TOLERANCE."""
    if len(table) < 2:
        return {"intervals": len(table), "pass": False}
    first, last = table[0], table[-1]
    ev = last["events_per_s"] / first["events_per_s"] if first["events_per_s"] else math.nan
    us = last["cpu_us_per_event"]["total"] / first["cpu_us_per_event"]["total"] \
        if first["cpu_us_per_event"]["total"] else math.nan
    msg = last["message_ms"].get("p50", math.nan) / first["message_ms"].get("p50", math.nan) \
        if first["message_ms"].get("p50") else math.nan
    ok = abs(ev - 1) <= TOLERANCE and abs(us - 1) <= TOLERANCE
    return {"intervals": len(table), "events_per_s_ratio": ev, "cpu_per_event_ratio": us,
            "message_ms_p50_ratio": msg, "pass": ok}


def table(label: str, tick_s: float, soak: list[dict[str, Any]]) -> str:
    unit = "minute" if tick_s == 60 else f"{tick_s:g} s"
    head = (unit, *COLUMNS[1:])
    lines: list[tuple[str, ...]] = [head]
    for i, r in enumerate(soak, 1):
        us = r["cpu_us_per_event"]
        lines.append((str(i), _fmt(r["events_per_s"]), _fmt(r["messages_per_s"]), _fmt(us.get("gateway")),
                      _fmt(us.get("worker")), _fmt(us.get("redis")), _fmt(us.get("total")),
                      _fmt(r["ttfe_ms"].get("p50")), _fmt(r["ttfe_ms"].get("p99")),
                      _fmt(r["message_ms"].get("p50")), _fmt(r["message_ms"].get("p99")),
                      _fmt(r["messages_per_session"]), _fmt(r["others_pct"])))
    out = [f"soak, {label}: one row per {unit} (msg ms: POST to the end of its response; msgs/session: "
           f"messages sent per conversation so far)"]
    out += grid(lines, text_columns=0)
    d = drift(soak)
    if d["intervals"] >= 2:
        out.append(f"last vs first: events/s ×{d['events_per_s_ratio']:.3f}, CPU per event "
                   f"×{d['cpu_per_event_ratio']:.3f}, message time p50 ×{d['message_ms_p50_ratio']:.3f} "
                   f"— {'PASS' if d['pass'] else 'FAIL'} (goal within {TOLERANCE:.0%})")
    return "\n".join(out)
