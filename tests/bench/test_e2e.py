"""Smoke test of the end-to-end scenario's harness (``bench.scenarios.e2e`` and the
``bench.conversations`` load process): a few conversations for a second or two against a real
gateway + worker, the naive pair and the ceiling. Only counts are asserted, never timings:
every message ends with exactly one terminal event and nothing is lost, duplicated or reset.
The naive pair patches the checkout's gateway and worker (``bench/baselines``), so this is
also where a change to their seams shows (the naive worker's events would go missing)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.scenarios import e2e

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

POINT = e2e.Point(conversations=3, token_ms=5)
PLAN = e2e.Plan(points=(POINT,), first_token_ms=5, seconds=1.5, warmup_s=0.3, ramp_s=0.1, drain_s=30,
                quiet_wait_s=0.0)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="as-e2e-"))  # a unix socket path must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", ["project", "naive", "ceiling"])
async def test_every_message_ends_once_and_nothing_is_lost(kind: str, short_tmp: Path) -> None:
    r = await e2e.measure_point(short_tmp, PLAN, POINT, kind, tokens=17)
    assert r["errors"] == {}
    assert r["ended"] >= POINT.conversations
    assert r["events"] > 0 and r["ttfe_ms"]["n"] > 0 and r["gap_ms"]["n"] > 0
    assert (r["lost"], r["dups"], r["resets"], r["bad_terminal"], r["unfinished"], r["retried"]) == (0, 0, 0, 0, 0, 0)
    assert set(r["cpu_us_per_event"]) >= {"gateway", "load", "total"}
    if kind in ("project", "naive"):
        assert r["tokens_per_message"] and "worker" in r["cpu_us_per_event"] and "redis" in r["cpu_us_per_event"]


async def test_the_soak_reports_one_row_per_tick(short_tmp: Path) -> None:
    plan = e2e.soak_plan(PLAN, seconds=1.2, tick_s=0.4, point=POINT)
    r = await e2e.measure_point(short_tmp, plan, POINT, "project", tokens=17)
    assert len(r["soak"]) == 3 and r["soak_drift"]["intervals"] == 3
    assert all(row["events"] > 0 and row["cpu_us_per_event"]["worker"] > 0 for row in r["soak"])
    # the sessions grow from one interval to the next
    assert [row["messages_per_session"] for row in r["soak"]] == sorted(row["messages_per_session"] for row in r["soak"])
    assert (r["lost"], r["resets"], r["bad_terminal"], r["unfinished"]) == (0, 0, 0, 0)
