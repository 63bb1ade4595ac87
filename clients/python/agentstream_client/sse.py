"""An incremental ``text/event-stream`` parser (WHATWG rules), pure: bytes in, frames out.

One parser per HTTP response: a block cut by a dropped connection is discarded with it, never
carried into the next response (carrying it over is how a client resumes after an event it never
delivered). ``retry:`` is applied as soon as its line arrives, whichever block it sits in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Frame:
    id: str | None  # this block's ``id:``, if it had one
    event: str
    data: str


class Parser:
    def __init__(self) -> None:
        self._buf = b""
        self.retry_ms: int | None = None
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        out: list[Frame] = []
        pos = 0
        while (m := _LINE_END.search(self._buf, pos)) is not None:
            if m.group() == b"\r" and m.end() == len(self._buf):
                break  # a CR at the end may be the first half of CRLF: wait for the next byte
            line = self._buf[pos:m.start()].decode("utf-8", "replace")
            pos = m.end()
            frame = self._line(line)
            if frame is not None:
                out.append(frame)
        self._buf = self._buf[pos:]
        return out

    def _line(self, line: str) -> Frame | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (heartbeat): never ends a block
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Frame | None:
        frame = None
        if self._data:
            frame = Frame(self._id, self._event or "message", "\n".join(self._data))
        self._id, self._event, self._data = None, "", []
        return frame
