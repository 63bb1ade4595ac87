"""``agentstream bench [--quick]``: run the benchmark of the checkout (``bench/`` beside
``cli/``). The bench is not an installed package, so it runs as ``python -m bench.run`` from
the checkout's root; it starts its own Redis, servers and load, and needs no running service."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    if not (ROOT / "bench" / "run.py").exists():
        print(f"agentstream bench: no bench/ in {ROOT} (run it from a checkout)", file=sys.stderr)
        return 2
    quick = ["--quick"] if args.quick else []
    code = subprocess.call([sys.executable, "-m", "bench.run", *quick], cwd=ROOT)
    # Retrieval at scale (issue 5) runs after the streaming scenarios, on its own Redis.
    return code or subprocess.call([sys.executable, "-m", "bench.retrieval", *quick], cwd=ROOT)


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark against the naive baseline, the in-memory ceiling and the "
                                     "resumable-stream peer, gateway alone and end to end")
    p.add_argument("--quick", action="store_true", help="smaller counts; finishes in under two minutes")
    p.set_defaults(fn=cmd_bench)
