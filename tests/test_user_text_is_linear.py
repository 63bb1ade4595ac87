"""Regression for issue 15.1: one message stalled the agent for every tenant.

Four regexes of the built-in model began with ``\\s*\\b`` and ran under ``.search()``: a content of
``"find documents about redis" + " " * 31000 + "x"`` took 13-14 s per regex, and the intent
normaliser computed every deletion of a long word (quadratic in its length). This test feeds
every path that reads user text (the built-in model's planning and answer, the intent
classifier, the data plane's tokenizer, stage templates, SSE framing) the worst inputs we know
of, at the 32,000-character content cap: long runs of every Unicode whitespace character
after a phrase opener, repeated punctuation, quotes, dashes, repeated trigger words and one
endless word.

How the work is bounded without a wall-clock threshold: the paths run in a child process,
once at n = 8,000 and once at n = 32,000 characters, and the test compares the CPU time
(``time.process_time``, best of two) of the two sizes per path. Linear work grows about 4x;
the quadratic regexes grew 16x (and took minutes). The ratio must stay under 8, whatever the
machine's speed or load. The child's timeout (240 s, about fifty times the linear cost of the
whole run, where the quadratic regexes took minutes per input) is only a hang guard, so a
regression fails instead of stalling the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.stack import ROOT

SMALL, LARGE = 8_000, 32_000
MAX_RATIO = 8.0  # linear: ~4; quadratic: ~16
WHITESPACE = [c for c in map(chr, range(0x3001)) if c.isspace()] + ["\r\n"]
# phrase openers a pattern may start at, each followed by the run (every whitespace class gets
# the three that began the quadratic regexes; a plain space gets them all)
OPENERS = ["find documents about redis in", "search using", "set"]
MORE_OPENERS = ["create a collection named", "make", "{{ INPUT.", "in the", "with the", "the x", "called"]


def worst_inputs(n: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in WHITESPACE:
        for opener in OPENERS + (MORE_OPENERS if w == " " else []):
            out[f"ws{ord(w[0]):04x}:{opener}"] = opener + w * ((n - len(opener) - 1) // len(w)) + "x"
    for unit in (".", "!?", "\"'", "\u201c\u201d", " -", "--", "'s", "n't ", "{{", "}}", "-a", "a.", "_"):
        out[f"repeat:{unit}"] = "find " + unit * ((n - 5) // len(unit))
    for word in ("in the ", "using the ", "named ", "collection ", "make it ", "set it ", "find ",
                 "documents ", "delete ", "the x collection ", "hello "):
        out[f"words:{word.strip()}"] = word * (n // len(word))
    out["longword"] = "find " + "a" * (n - 5)
    out["longword:typo"] = "serch" + "e" * (n - 5)
    return out


def _paths() -> dict[str, Callable[[str], Any]]:
    from dataplane.stages import has_template, render
    from dataplane.text import tokenize
    from gateway import sse
    from intent import classify
    from worker.models.base import Turn
    from worker.models.builtin import BuiltinModel, pieces

    model = BuiltinModel()
    tools = ["list_collections", "list_retrievers", "smart_search", "execute_retriever",
             "execute_adhoc_retriever", "create_collection", "delete_collection", "detect_intent"]

    def plan(text: str) -> Any:
        for intent in ("retriever_search", "collection_management", "data_browse", "pipeline_setup"):
            model.plan(Turn("msg_x", text, intent, "", [], None, tools, "m", 10, 0.0))

    def answer(text: str) -> Any:
        return pieces(model.answer(Turn("msg_x", text, "unclear", "", [], None, tools, "m", 10, 0.0)))

    def template(text: str) -> Any:
        if has_template(text):
            return render(text, {}, 0, "s", "bm25_search")
        return None

    return {"builtin.plan": plan, "builtin.answer": answer, "builtin.pieces": pieces, "intent.classify": classify,
            "dataplane.tokenize": tokenize, "stages.template": template,
            "sse.frame": lambda text: sse.frame(b"1-0", b"token", text.encode())}


def measure() -> dict[str, dict[str, float]]:
    """Best-of-two CPU seconds per path, at each size (run in the child)."""
    paths = _paths()
    out: dict[str, dict[str, float]] = {name: {} for name in paths}
    for n in (SMALL, LARGE):
        inputs = list(worst_inputs(n).values())
        for name, fn in paths.items():
            best = float("inf")
            for _ in range(2):
                t0 = time.process_time()
                for text in inputs:
                    try:
                        fn(text)
                    except Exception:  # refusing an input is fine; only the work matters
                        pass
                best = min(best, time.process_time() - t0)
            out[name][str(n)] = best
    return out


@pytest.mark.timeout(300)
def test_user_text_paths_stay_linear_on_whitespace_runs_punctuation_and_repeated_words() -> None:
    code = "import json, tests.test_user_text_is_linear as t; print(json.dumps(t.measure()))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout)
    # 10 ms added to both sides keeps paths that take almost nothing from turning noise into a ratio
    ratios = {name: (t[str(LARGE)] + 0.01) / (t[str(SMALL)] + 0.01) for name, t in timings.items()}
    assert all(r < MAX_RATIO for r in ratios.values()), (ratios, timings)


def test_inputs_reach_the_content_cap() -> None:
    assert all(len(text) <= LARGE and len(text) > LARGE * 0.99 for text in worst_inputs(LARGE).values())
