"""The HTTP protocol the gateway runs: uvicorn's httptools protocol with a cap on the request head.

httptools (llhttp) buffers a header of any size and uvicorn sets no limit, so a client could
send megabytes of headers before authentication is even looked at (issue 15.7). This counts
the request line and the headers as the parser reports them, and the raw bytes of a head that
has not finished yet (a single endless header arrives in many reads before the parser reports
it), and answers 414 (request line) or 431 (headers) in the API's error shape, then closes.
Pure transport: the application never sees a refused request.
"""

from __future__ import annotations

from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.models import ErrorDetail, ErrorResponse

_REASONS = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}
_TYPES = {414: "UriTooLongError", 431: "RequestHeaderFieldsTooLargeError"}


class _Refused(Exception):
    """Raised inside a parser callback: httptools stops parsing and re-raises it wrapped."""


def refusal(status: int, message: str, code: str, limit: int) -> bytes:
    body = msgspec.json.encode(ErrorResponse(status=status, error=ErrorDetail(
        message=message, type=_TYPES[status], code=code, details={"limit_bytes": limit})))
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ])


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_line_bytes = 8192
    max_head_bytes = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # raw bytes read while the head is incomplete
        self._header_bytes = 0  # headers as the parser reported them
        self._refusal: bytes | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the connection is closing, ignore the rest
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # the gateway serves no WebSockets
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refusal = self._too_large()
                self._refuse()

    def _too_large(self) -> bytes:
        return refusal(431, f"Request headers exceed {self.max_head_bytes} bytes", "headers_too_large",
                       self.max_head_bytes)

    def _refuse(self) -> None:
        assert self._refusal is not None
        self.transport.write(self._refusal)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_line_bytes:
            self._refusal = refusal(414, f"Request line exceeds {self.max_line_bytes} bytes", "uri_too_long",
                                    self.max_line_bytes)
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > self.max_head_bytes:
            self._refusal = self._too_large()
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()


def protocol_class(max_line_bytes: int, max_head_bytes: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol with this process's limits (uvicorn instantiates the class per connection)."""
    return type("GatewayHttpProtocol", (GuardedHttpToolsProtocol,),
                {"max_line_bytes": max_line_bytes, "max_head_bytes": max_head_bytes})
