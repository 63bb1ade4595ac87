"""Where a reader starts, for every cursor case (pure)."""

from gateway.resume import plan
from shared.stores.messages import Record


def record(**kw):
    base = dict(message_id="msg_1", session_id="ses_1", namespace_id="ns_1", status="running", attempt=1,
                count=3, created_at_ms=0, content="hi", first=True, last_id="30-0", final_id=None,
                final_payload=None, terminal_id=None, terminal_type=None, terminal_payload=None,
                lease_until_ms=0, finished_at_ms=None)
    base.update(kw)
    return Record(**base)


INFO = {"first": "10-0", "last": "30-0", "length": 3}


def test_no_cursor_reads_from_the_start():
    p = plan(None, record(), INFO)
    assert p.start == (0, 0) and p.reset is None


def test_cursor_inside_the_stream_resumes_after_it():
    p = plan((20, 0), record(), INFO)
    assert p.start == (20, 0) and p.reset is None


def test_cursor_before_first_entry_without_trimming_is_exact():
    p = plan((5, 0), record(), INFO)
    assert p.reset is None and p.start == (5, 0)


def test_cursor_older_than_retention_resets_then_delivers_what_is_left():
    p = plan((5, 0), record(count=50), INFO)
    assert p.reset is not None and p.reset.reason == "cursor_expired"
    assert p.start == (5, 0)


def test_start_of_a_trimmed_stream_resets():
    p = plan(None, record(count=50), INFO)
    assert p.reset is not None and p.reset.reason == "cursor_expired"


def test_cursor_ahead_of_the_stream_resets_to_the_start():
    p = plan((99, 0), record(), INFO)
    assert p.reset is not None and p.reset.reason == "cursor_ahead"
    assert p.start == (0, 0) and p.reset.replay_from == "0-0"


def test_cursor_ahead_compares_numerically():
    p = plan((9, 0), record(last_id="10-0", count=1), {"first": "10-0", "last": "10-0", "length": 1})
    assert p.reset is None


def test_expired_stream_delivers_the_outcome_from_the_record():
    r = record(status="completed", final_id="40-0", final_payload=b'{"content":"x"}', terminal_id="41-0",
               terminal_type="done", terminal_payload=b"{}")
    p = plan((20, 0), r, None)
    assert p.reset is not None and p.reset.reason == "stream_expired" and p.reset.status == "completed"
    assert [t for _, t, _ in p.from_record] == [b"message", b"done"]


def test_expired_stream_skips_what_the_reader_already_has():
    r = record(status="completed", final_id="40-0", final_payload=b"{}", terminal_id="41-0",
               terminal_type="done", terminal_payload=b"{}")
    p = plan((40, 0), r, None)
    assert [t for _, t, _ in p.from_record] == [b"done"]


def test_queued_message_without_stream_waits_live():
    p = plan(None, record(last_id=None, count=0, status="queued"), None)
    assert p.reset is None and p.from_record is None


def test_lost_stream_of_a_running_message_resets():
    p = plan((20, 0), record(), None)
    assert p.reset is not None and p.reset.reason == "stream_lost"


def test_cursor_at_the_terminal_event_delivers_nothing_and_ends():
    r = record(status="completed", terminal_id="30-0", terminal_type="done", terminal_payload=b"{}")
    p = plan((30, 0), r, INFO)
    assert p.reset is None and p.from_record == []


def test_regression_18_4_a_cursor_on_a_stream_with_nothing_yet_is_ahead():
    """Before any entry exists, every entry to come is at or below a non-zero cursor: the
    reader dropped them all and never ended. It gets cursor_ahead and the whole stream."""
    empty = record(status="queued", attempt=0, count=0, last_id=None)
    for info in (None, {"first": None, "last": None, "length": 0}):
        p = plan((99999999999999, 0), empty, info)
        assert p.start == (0, 0) and p.reset is not None and p.reset.reason == "cursor_ahead"
        assert p.reset.replay_from == "0-0" and p.from_record is None
    assert plan(None, empty, None).reset is None and plan((0, 0), empty, None).reset is None
