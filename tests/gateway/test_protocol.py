"""The request head's caps, against a real gateway process (issue 15.7: a 32 MB header was read
whole and answered 200 after 1.8 s; nothing capped headers before authentication)."""

from __future__ import annotations

import json
import select
import socket

import httpx

from shared.settings import Settings
from tests.stack import Proc

LIMITS = Settings()


def _status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _exchange(gateway: Proc, head: bytes, chunk: int) -> bytes:
    """Send ``head`` in pieces, stopping as soon as the server answers; return its answer."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        for i in range(0, len(head), chunk):
            s.sendall(head[i:i + chunk])
            if select.select([s], [], [], 0.02)[0]:
                break
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data


def test_headers_over_the_cap_get_431_in_the_error_shape(gateway: Proc) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (LIMITS.max_header_bytes + 1000) + b"\r\n\r\n"
    status, body = _status_and_body(_exchange(gateway, big, len(big)))  # all at once
    assert status == 431 and body["error"]["code"] == "headers_too_large" and body["success"] is False
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(LIMITS.max_header_bytes // 100)) + b"\r\n"
    assert _status_and_body(_exchange(gateway, many, 4096))[0] == 431


def test_an_endless_header_is_refused_while_it_streams_in(gateway: Proc) -> None:
    # 32 MB would be sent; the answer comes after about the cap, and the rest is never read
    endless = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"b" * (32 * 1024 * 1024)
    status, body = _status_and_body(_exchange(gateway, endless, 16384))
    assert status == 431 and body["error"]["details"] == {"limit_bytes": LIMITS.max_header_bytes}


def test_a_request_line_over_the_cap_gets_414(gateway: Proc) -> None:
    r = httpx.get(gateway.url + "/healthz?q=" + "x" * LIMITS.max_request_line_bytes)
    assert r.status_code == 414 and r.json()["error"]["code"] == "uri_too_long"


def test_heads_within_the_caps_are_served_and_the_connection_is_reused(gateway: Proc) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(3):
            r = client.get("/healthz?q=" + "x" * 4000, headers={"Cookie": "c=" + "y" * 40_000})
            assert r.status_code == 200 and r.json() == {"status": "ok"}
