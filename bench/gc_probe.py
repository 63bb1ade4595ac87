"""``python -m bench.gc_probe gateway``: the gateway exactly as ``cli.main`` runs it, with a
``gc.callbacks`` hook that prints every collection's generation and pause to stderr
(``GC gen<N> <ms> ms``). A diagnostic for ``bench.profile --gc``; the bench itself never uses it.
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
from typing import Any

_started: dict[int, float] = {}


def _log(phase: str, info: dict[str, Any]) -> None:
    gen = info["generation"]
    if phase == "start":
        _started[gen] = time.perf_counter()
        return
    pause_ms = (time.perf_counter() - _started.pop(gen, time.perf_counter())) * 1000
    sys.stderr.write(f"GC gen{gen} {pause_ms:.2f} ms collected={info['collected']}\n")


def summarise(log_text: str) -> dict[str, dict[str, float]]:
    """Per generation: collections, total and longest pause (ms), from the lines above."""
    out: dict[str, dict[str, float]] = {}
    for line in log_text.splitlines():
        if not line.startswith("GC gen"):
            continue
        _, gen, ms, *_ = line.split()
        s = out.setdefault(gen, {"n": 0, "total_ms": 0.0, "max_ms": 0.0})
        s["n"] += 1
        s["total_ms"] += float(ms)
        s["max_ms"] = max(s["max_ms"], float(ms))
    return out


if __name__ == "__main__":
    gc.callbacks.append(_log)
    sys.argv = ["cli.main", *sys.argv[1:]]
    runpy.run_module("cli.main", run_name="__main__")
