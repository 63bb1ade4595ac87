"""shared/ids.py: ids stay base36 of the asked length, every character equally likely."""

from __future__ import annotations

import collections
import itertools
import secrets

from shared import ids


def test_an_id_is_its_prefix_and_the_asked_number_of_base36_characters():
    for length in (1, 10, 16, 40):
        value = ids.new_id("msg", length)
        head, _, tail = value.partition("_")
        assert head == "msg" and len(tail) == length and set(tail) <= set(ids._ALPHABET)
    assert len({ids.new_id("x") for _ in range(1000)}) == 1000


def test_every_character_is_equally_likely_and_high_bytes_are_drawn_again(monkeypatch):
    """Bytes 252-255 would favour the first four characters: they are skipped, not folded."""
    source = itertools.cycle(range(256))
    drawn = []

    def token_bytes(n: int) -> bytes:
        drawn.append(n)
        return bytes(next(source) for _ in range(n))

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    text = "".join(ids.new_id("x", 252)[2:] for _ in range(10))
    counts = collections.Counter(text)
    assert set(counts) == set(ids._ALPHABET) and set(counts.values()) == {70}
    assert len(drawn) > 10  # the skipped bytes were made up by further draws
