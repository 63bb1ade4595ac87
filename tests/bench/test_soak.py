"""The soak's per-interval report (``bench.soak``), computed on fixed cumulative ticks."""

from __future__ import annotations

import math

from bench import soak


def _tick(t_s: float, events: int, finished: int, gw: float, worker: float, redis: float, load: float = 1.0,
          p50: float = 500.0, per_session: float = 10.0, others_s: float = 0.0) -> dict:
    return {"t_s": t_s, "events": events, "finished": finished,
            "cpu_s": {"gateway": gw, "worker": worker, "redis": redis, "load": load},
            "ttfe_ms": {"n": 1, "p50": 5.0, "p99": 9.0}, "message_ms": {"n": 1, "p50": p50, "p99": p50 * 2},
            "messages_per_session": per_session, "others_s": others_s}


FLAT = [_tick(60, 60_000, 3_000, 6.0, 9.0, 3.0, others_s=6.0),
        _tick(120, 120_000, 6_000, 12.0, 18.0, 6.0, load=2.0, per_session=20.0, others_s=12.0)]


def test_rows_are_the_differences_between_cumulative_ticks() -> None:
    first, second = soak.rows(FLAT)
    assert first["events_per_s"] == second["events_per_s"] == 1_000
    assert first["messages_per_s"] == second["messages_per_s"] == 50
    # 6 s of gateway CPU over 60,000 events: 100 µs each; the load generator is not in the sum
    assert second["cpu_us_per_event"]["gateway"] == 100
    assert second["cpu_us_per_event"]["load"] == 1e6 / 60_000
    assert math.isclose(second["cpu_us_per_event"]["total"], 100 + 150 + 50)
    assert second["messages_per_session"] == 20 and second["others_pct"] == 10


def test_flat_cost_passes_the_drift_check() -> None:
    d = soak.drift(soak.rows(FLAT))
    assert d["pass"] and d["events_per_s_ratio"] == 1 and d["cpu_per_event_ratio"] == 1


def test_cost_that_grows_with_the_sessions_fails_it() -> None:
    growing = [FLAT[0], _tick(120, 120_000, 6_000, 12.0, 18.0 + 3.0, 6.0, p50=700)]  # worker 200 µs/event, was 150
    d = soak.drift(soak.rows(growing))
    assert not d["pass"]
    assert math.isclose(d["cpu_per_event_ratio"], 350 / 300) and math.isclose(d["message_ms_p50_ratio"], 700 / 500)


def test_falling_throughput_fails_it_too() -> None:
    slower = [FLAT[0], _tick(120, 110_000, 5_500, 11.0, 16.5, 5.5)]  # same cost per event, 17 % fewer
    d = soak.drift(soak.rows(slower))
    assert not d["pass"] and math.isclose(d["cpu_per_event_ratio"], 1) and math.isclose(d["events_per_s_ratio"], 50 / 60)


def test_one_interval_is_no_verdict() -> None:
    assert soak.drift(soak.rows(FLAT[:1])) == {"intervals": 1, "pass": False}


def test_the_table_has_a_row_per_interval_and_the_verdict() -> None:
    text = soak.table("100 at 50 tok/s", 60, soak.rows(FLAT))
    lines = text.splitlines()
    assert lines[1].split()[0] == "minute" and len(lines) == 1 + 2 + 2 + 1
    assert lines[-1].endswith("PASS (goal within 10%)")
