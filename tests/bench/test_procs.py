"""``bench.procs.free_port``, the port picker of every server the tests and the bench start."""

from __future__ import annotations

import socket

import pytest

from bench import procs


def test_ports_are_free_below_the_ephemeral_range_and_never_repeat() -> None:
    low = procs._ephemeral_low()
    ports = [procs.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(10000 <= p < low for p in ports)  # an outgoing connection cannot take them
    for p in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_port_taken_by_a_listener_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", procs.free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        procs._HANDED.discard(busy)  # as if another process had picked it
        other = procs.free_port()
        procs._HANDED.discard(other)
        draws = iter([busy, busy, other])
        monkeypatch.setattr(procs.random, "randrange", lambda *_: next(draws))
        assert procs.free_port() == other


def test_plus_keeps_the_second_port_free_too() -> None:
    for _ in range(50):
        p = procs.free_port(plus=10000)
        assert p + 10000 < procs._ephemeral_low()
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", p))
            b.bind(("127.0.0.1", p + 10000))
