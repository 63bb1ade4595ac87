"""The end-to-end table (``bench.scenarios.e2e``): per point, one line per server kind, and
the targets of issue 16."""

from __future__ import annotations

from typing import Any

from bench.report import NAN, _div, _fmt, grid

E2E_COLUMNS = ("ev/s", "msg/s", "TTFE p50", "p99", "gap p50", "p99", "µs/ev gw", "worker", "redis", "sum",
               "load", "resets", "lost", "¬1 term", "retried", "Redis B/msg", "others%")


def _e2e_cells(r: dict[str, Any]) -> tuple[str, ...]:
    us = r["cpu_us_per_event"]
    bad = r["bad_terminal"] + r["unfinished"] + sum(r["errors"].values())
    return (_fmt(r["events_per_s"]), _fmt(r["messages_per_s"]), _fmt(r["ttfe_ms"].get("p50")),
            _fmt(r["ttfe_ms"].get("p99")), _fmt(r["gap_ms"].get("p50")), _fmt(r["gap_ms"].get("p99")),
            _fmt(us.get("gateway")), _fmt(us.get("worker")), _fmt(us.get("redis")), _fmt(us.get("total")),
            _fmt(us.get("load")), _fmt(r["resets"]), _fmt(r["lost"]), _fmt(bad), _fmt(r["retried"]),
            _fmt(r["redis_bytes_per_message"]) if "redis" in us else "-", _fmt(r["others_pct"]))


def table(e2e: dict[str, Any]) -> str:
    plan = e2e["plan"]
    head = ("point", "kind", *E2E_COLUMNS)
    rows: list[tuple[str, ...]] = [head]
    for label, row in e2e["points"].items():
        for kind, r in row.items():
            rows.append((label, kind, *_e2e_cells(r)))
    lines = [f"end to end: C conversations, each sends a message, reads its SSE to the end, sends the next "
             f"({plan['seconds']:g} s, measured after {plan['warmup_s']:g} s; first token after "
             f"{plan['first_token_ms']} ms; built-in model's greeting, "
             f"{_fmt(_tokens(e2e))} tokens)"]
    lines += grid(rows)
    lines += ["TTFE: POST written to the first event; gap: between consecutive tokens, beyond the pacing (ms); "
              "µs/ev: CPU per delivered event (gw = the server process: gateway, Node peer, ceiling); "
              "¬1 term: messages without exactly one terminal event (incl. unfinished after the drain and "
              "HTTP errors); retried: messages that ran more than once (a lapsed lease); "
              "Redis B/msg: used_memory growth over the run / messages ended"]
    lines += ["", "targets"]
    for t in targets(e2e):
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}  {_fmt(t['value'])}  (goal {t['goal']})")
    return "\n".join(lines)


def _tokens(e2e: dict[str, Any]) -> Any:
    for row in e2e["points"].values():
        t = row.get("project", {}).get("tokens_per_message")
        if t:
            return t
    return None


def targets(e2e: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(label: str, value: float, ok: bool, goal: str) -> None:
        out.append({"target": label, "value": value, "goal": goal, "pass": bool(ok)})

    for label, row in e2e["points"].items():
        p = row.get("project")
        if p is None:
            continue
        c, ms = p["conversations"], p["token_ms"]
        if ms == 20 and c >= 250:
            v = p["ttfe_ms"].get("p99", NAN)
            add(f"{label}: TTFE p99", v, v <= 100, "≤ 100 ms")
            v = p["gap_ms"].get("p99", NAN)
            add(f"{label}: token gap p99 beyond pacing", v, v <= 10, "≤ 10 ms")
            v = p["cpu_us_per_event"]["total"]
            add(f"{label}: CPU per event, gateway + worker + Redis", v, v <= 100, "≤ 100 µs")
            add(f"{label}: lost + resets", p["lost"] + p["resets"], p["lost"] + p["resets"] == 0, "= 0")
            for other, factor in (("naive", 4.0), ("peer", 1.0)):
                o = row.get(other)
                if o is not None:
                    x = _div(o["cpu_us_per_event"]["total"], v)
                    add(f"{label}: CPU per event vs {other}", x, x >= factor, f"≥ {factor:g}× less")
        if ms >= 200 and c >= 1000:
            v = p["ttfe_ms"].get("p99", NAN)
            add(f"{label}: TTFE p99", v, v <= 250, "≤ 250 ms")
            add(f"{label}: messages run twice (lapsed leases)", p["retried"], p["retried"] == 0, "= 0")
    return out
