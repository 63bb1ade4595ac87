import pytest

from gateway import sse


def test_frame_has_id_event_data_and_blank_line():
    assert sse.frame("1-0", "token", b'{"content":"hi"}') == b'id: 1-0\nevent: token\ndata: {"content":"hi"}\n\n'


def test_frame_without_id_omits_the_field():
    assert sse.frame(None, "reset", b"{}") == b"event: reset\ndata: {}\n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "x\r\nevent: forged"])
def test_id_and_event_refuse_line_breaks_and_nul(bad):
    with pytest.raises(sse.FramingError):
        sse.frame(bad, "token", b"{}")
    with pytest.raises(sse.FramingError):
        sse.frame("1-0", bad, b"{}")


@pytest.mark.parametrize("data", [b"a\nevent: forged", b"a\revent: forged", b"a\r\nevent: forged"])
def test_data_line_breaks_become_data_lines_so_no_event_can_be_forged(data):
    out = sse.frame("1-0", "token", data)
    lines = out.split(b"\n")
    assert lines[:3] == [b"id: 1-0", b"event: token", b"data: a"]
    assert lines[3] == b"data: event: forged"
    assert out.count(b"\nevent:") == 1
    assert b"\r" not in out


def test_nul_is_dropped_from_data():
    assert b"\x00" not in sse.frame("1-0", "token", b"a\x00b")


def test_frame_entry_fast_path_equals_frame():
    assert sse.frame_entry(b"5-1", b"token", b'{"content":"x"}') == sse.frame("5-1", "token", b'{"content":"x"}')
    assert sse.frame_entry(b"5-1", b"token", b"a\nb") == sse.frame("5-1", "token", b"a\nb")


def test_retry_and_comment_are_lines_that_do_not_end_a_block():
    assert sse.retry(2000) == b"retry: 2000\n"
    assert sse.comment("bye\nevent: x") == b": bye event: x\n"
    assert sse.HEARTBEAT == b": keep-alive\n"


def test_no_fieldless_dispatch_block_retry_travels_inside_the_first_events_block():
    """Issue 15 finding 10: a standalone ``retry:`` block or a heartbeat followed by a blank
    line dispatches a field-less block (requests-sse then resumes after an event it never
    delivered; httpx-sse hands the application an event with empty data)."""
    wire = (sse.retry(2000) + sse.HEARTBEAT + sse.frame_entry(b"1-0", b"intent", b"{}") + sse.HEARTBEAT
            + sse.HEARTBEAT + sse.frame_entry(b"1-1", b"done", b"{}") + sse.comment("closing") + sse.retry(250))
    blocks = wire.split(b"\n\n")
    assert blocks[-1] == b": closing\nretry: 250\n"  # unfinished at the end: never dispatched
    for block in blocks[:-1]:
        fields = [line.split(b":", 1)[0] for line in block.split(b"\n") if line and not line.startswith(b":")]
        assert b"id" in fields and b"data" in fields, block
    assert blocks[0].startswith(b"retry: 2000\n: keep-alive\nid: 1-0\n")
