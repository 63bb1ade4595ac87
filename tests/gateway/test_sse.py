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


def test_retry_and_comment():
    assert sse.retry(2000) == b"retry: 2000\n\n"
    assert sse.comment("bye\nevent: x") == b": bye event: x\n\n"
