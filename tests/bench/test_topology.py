"""``bench.topology``'s pure parts: topology names and the CPU fold over Redis servers."""

from __future__ import annotations

import pytest

from bench import topology


def test_primaries_by_name() -> None:
    assert [topology.primaries(n) for n in ("standalone", "cluster1", "cluster3")] == [0, 1, 3]


def test_unknown_topology_names_the_choices() -> None:
    with pytest.raises(ValueError, match="cluster2.*standalone, cluster1, cluster3"):
        topology.primaries("cluster2")


def test_parse_keeps_order_and_drops_repeats_and_blanks() -> None:
    assert topology.parse(" cluster3, standalone,,cluster3 ") == ("cluster3", "standalone")


@pytest.mark.parametrize("text", ["", " , ", "standalone,sentinel"])
def test_parse_refuses_empty_or_unknown(text: str) -> None:
    with pytest.raises(ValueError):
        topology.parse(text)


def test_fold_sums_every_server_and_keeps_the_queue_share() -> None:
    window = {"gateway": 4.0, "worker": 3.0, "load": 1.0,
              "redis.7001": 0.5, "redis.7002": 0.25, "redis.7003": 0.125, "redis.queue": 0.0625}
    assert topology.fold(window) == {"gateway": 4.0, "worker": 3.0, "load": 1.0,
                                     "redis": 0.9375, "redis_queue": 0.0625}


def test_fold_leaves_a_standalone_window_alone() -> None:
    window = {"gateway": 2.0, "worker": 1.0, "redis": 0.5}
    assert topology.fold(window) == window


def test_fold_without_redis_has_no_redis_entry() -> None:
    assert topology.fold({"gateway": 1.0, "load": 0.5}) == {"gateway": 1.0, "load": 0.5}
