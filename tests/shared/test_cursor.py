import pytest

from shared import cursor


def test_ids_compare_as_numbers_not_strings():
    assert cursor.parse("10-0") > cursor.parse("9-0")
    assert cursor.parse("5-10") > cursor.parse("5-9")
    assert "10-0" < "9-0"  # the bug this module exists to avoid


def test_bare_milliseconds_mean_sequence_zero():
    assert cursor.parse("42") == (42, 0)


@pytest.mark.parametrize("bad", ["", "abc", "1-", "-1", "1-2-3", "1.5-0", "1-0\nid: 9", "9" * 30])
def test_malformed(bad):
    with pytest.raises(cursor.CursorError):
        cursor.parse(bad)


def test_fmt_round_trip():
    assert cursor.fmt(cursor.parse("1700000000000-3")) == "1700000000000-3"


@pytest.mark.parametrize("bad", ["\u0661\u0662\u0663-\u0660", "123-0\n", "123\n", " 123-0", "123-0 ", "\uff11-0",
                                 "1\u200b-0"])
def test_non_ascii_digits_and_trailing_newline_are_malformed(bad):
    """Issue 15.9: ``\\d`` took Arabic-Indic digits and ``$`` a trailing newline."""
    with pytest.raises(cursor.CursorError):
        cursor.parse(bad)
