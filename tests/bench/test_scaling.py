"""``bench.scenarios.scaling``'s pure parts: the 3 vs 1 ratio, reusing the e2e run's standalone
row only when its plan matches, the table, and the CLI's refusal of an unknown topology."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from bench.scenarios import e2e, scaling


def _row(events_per_s: float) -> dict[str, Any]:
    return {"events_per_s": events_per_s, "messages_per_s": events_per_s / 21,
            "ttfe_ms": {"p50": 5.0, "p99": 9.0}, "gap_ms": {"p50": 0.2, "p99": 3.0},
            "cpu_us_per_event": {"gateway": 100.0, "worker": 150.0, "redis": 60.0, "redis_queue": 10.0,
                                 "total": 310.0, "load": 40.0},
            "core_pct": {"gateway": 90.0, "worker": 80.0, "redis": 30.0, "redis_queue": 5.0, "load": 20.0},
            "resets": 0, "lost": 0, "bad_terminal": 0, "unfinished": 0, "errors": {}, "retried": 0,
            "redis_bytes_per_message": 9000.0, "others_pct": 3.0, "machine_pct": 190.0}


def test_ratio_is_three_over_one() -> None:
    assert scaling.ratio({"cluster1": _row(4000), "cluster3": _row(5000)}) == 1.25


@pytest.mark.parametrize("row", [{}, {"cluster1": _row(4000)}, {"cluster1": _row(0), "cluster3": _row(10)}])
def test_ratio_missing_or_zero_is_none(row: dict[str, Any]) -> None:
    assert scaling.ratio(row) is None


def test_the_e2e_standalone_row_is_reused_only_for_the_same_plan() -> None:
    point = scaling.FULL.points[0]
    run = {"plan": asdict(replace(e2e.FULL, kinds=e2e.KINDS)), "points": {point.label: {"project": _row(9000)}}}
    assert scaling.reusable(run, scaling.FULL, point) == _row(9000)
    assert scaling.reusable(None, scaling.FULL, point) is None
    shorter = {**run, "plan": asdict(replace(e2e.FULL, seconds=5.0))}
    assert scaling.reusable(shorter, scaling.FULL, point) is None
    on_cluster = {**run, "plan": asdict(replace(e2e.FULL, topology="cluster1"))}
    assert scaling.reusable(on_cluster, scaling.FULL, point) is None
    assert scaling.reusable(run, scaling.FULL, e2e.Point(7, 20)) is None


def test_table_has_a_line_per_topology_and_the_ratio() -> None:
    result = {"plan": asdict(scaling.FULL), "points": {"250 at 50 tok/s": {
        "standalone": {**_row(6000), "from_e2e": True}, "cluster1": _row(4000), "cluster3": _row(6000)}}}
    lines = scaling.table(result).splitlines()
    rows = [re.split(r"\s{2,}", ln) for ln in lines if ln.startswith("250 at 50 tok/s  ")]
    assert [r[1] for r in rows] == ["standalone *", "cluster1", "cluster3"]
    assert all(len(r) == 2 + len(scaling.COLUMNS) for r in rows)
    assert "250 at 50 tok/s: 3 vs 1 primaries: 1.50x events/s" in lines


def test_cli_refuses_an_unknown_topology(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        scaling.main(["--topologies", "standalone,cluster5"])
    assert e.value.code == 2
    assert "unknown topology 'cluster5'" in capsys.readouterr().err


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="as-scale-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.anyio
@pytest.mark.integration
async def test_the_project_on_one_and_three_primaries_ends_every_message_once(short_tmp: Path) -> None:
    """Real gateway + worker on a Redis Cluster (Debian's redis-server 7) with the queue Redis:
    counts only, never timings. Redis CPU is every server's, and the queue's share is part of it."""
    point = e2e.Point(conversations=3, token_ms=5)
    plan = e2e.Plan(points=(point,), first_token_ms=5, seconds=1.5, warmup_s=0.3, ramp_s=0.1, drain_s=30,
                    quiet_wait_s=0.0, kinds=("project",))
    result = await scaling.measure(short_tmp, plan, ("cluster1", "cluster3"), log=lambda _: None)
    for name, r in result["points"][point.label].items():
        assert r["errors"] == {}, name
        assert r["ended"] >= point.conversations, name
        assert (r["lost"], r["dups"], r["resets"], r["bad_terminal"], r["unfinished"], r["retried"]) == (0, 0, 0, 0, 0, 0)
        us = r["cpu_us_per_event"]
        assert {"gateway", "worker", "redis", "redis_queue"} <= set(us), name
        assert 0 <= us["redis_queue"] <= us["redis"], name  # its share of the Redis CPU (ticks: may be 0)
        assert r["queue_commands"] >= r["ended"], name  # the queue Redis saw every enqueue
