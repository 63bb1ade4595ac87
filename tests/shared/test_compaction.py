"""The pure half of compaction: what is kept, what is folded, and reading the packed form."""

from __future__ import annotations

from shared import cursor
from shared.stores import compaction

ROWS = [
    ("1-0", "intent", b'{"intent":"conversation"}'),
    ("2-0", "token", b'{"content":"Hel"}'),
    ("2-1", "token", b'{"content":"lo"}'),
    ("3-0", "tool_call", b'{"tool_name":"x"}'),
    ("4-0", "token", b'{"content":"!"}'),
    ("5-0", "message", b'{"content":"Hello!"}'),
    ("5-1", "done", b'{"latency_ms":1.0}'),
]


def test_fold_keeps_every_non_token_event_with_its_id_and_payload():
    f = compaction.fold(ROWS)
    assert f.kept == [r for r in ROWS if r[1] != "token"]
    assert f.count == 3


def test_fold_records_each_run_of_consecutive_tokens():
    f = compaction.fold(ROWS)
    assert f.runs == [("2-0", "2-1"), ("4-0", "4-0")]
    assert f.runs_text() == "2-0/2-1,4-0/4-0"
    assert compaction.fold([r for r in ROWS if r[1] != "token"]).runs == []


def test_packed_events_read_back_exactly():
    kept = compaction.fold(ROWS).kept
    assert compaction.unpack(compaction.pack(kept)) == kept


def test_packing_compresses_a_realistic_payload():
    payload = (b'{"tool_name":"smart_search","tool_call_id":"run_1","success":true,"output":{"documents":['
               + b",".join(b'{"document_id":"doc_%d","score":1.5,"metadata":{"title":"Runbook %d"}}' % (i, i)
                           for i in range(20)) + b"]}}")
    assert len(compaction.pack([("1-0", "tool_result", payload)])) < len(payload) / 3


def test_after_is_an_exclusive_numeric_cursor():
    rows = compaction.fold(ROWS).kept
    assert [r[0] for r in compaction.after(rows, "0-0")] == ["1-0", "3-0", "5-0", "5-1"]
    assert [r[0] for r in compaction.after(rows, "3-0")] == ["5-0", "5-1"]
    assert [r[0] for r in compaction.after(rows, "3-0", count=1)] == ["5-0"]
    # numeric, not string order: 10-0 is after 9-0
    assert compaction.after([("9-0", "a", b"1"), ("10-0", "b", b"2")], "9-0") == [("10-0", "b", b"2")]


def test_a_read_steps_over_folded_tokens_only_when_a_run_lies_between():
    runs = compaction.parse_runs("2-0/2-1,4-0/4-0")
    c = cursor.parse
    assert compaction.skips_folded(runs, c("1-0"), c("3-0"))  # before the first run
    assert compaction.skips_folded(runs, c("2-0"), c("3-0"))  # inside it
    assert not compaction.skips_folded(runs, c("0-0"), c("1-0"))  # up to the first kept event only
    assert not compaction.skips_folded(runs, c("3-0"), c("3-5"))  # between kept events, no token
    assert compaction.skips_folded(runs, c("3-0"), None)  # to the end: the second run
    assert not compaction.skips_folded(runs, c("4-0"), None)  # after the last folded token
