"""Stream tokens: short-lived credentials for one event stream, safe to put in a URL.

A browser's ``EventSource`` cannot set headers, so the event-stream GETs take a credential in
``?access_token=``. An API key there would end up in access logs, history and ``Referer``
headers; a stream token names exactly one message's (or one session's) event stream, its
namespace and the key that asked for it, expires within minutes, and is signed with the
server's secret (HMAC-SHA256). Pure: no I/O; the gateway checks the key behind it is still valid.

Format: ``ast1.<base64url(JSON claims)>.<base64url(HMAC of the first two parts)>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import msgspec

PREFIX = "ast1."


class TokenError(ValueError):
    """Malformed, tampered with or expired; ``code`` is the API error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Claims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kid: str  # the public id of the API key that asked for the token
    ns: str  # namespace id
    ses: str  # session id
    msg: str | None  # message id; None: the session's log
    exp: int  # unix seconds


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Claims)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def looks_like(value: str) -> bool:
    return value.startswith(PREFIX)


def issue(secret: bytes, claims: Claims) -> str:
    body = PREFIX + _b64(_encoder.encode(claims))
    return body + "." + _sign(secret, body)


def verify(secret: bytes, token: str, now_s: float | None = None) -> Claims:
    body, dot, sig = token.rpartition(".")
    if not dot or not looks_like(body) or body.count(".") != 1:
        raise TokenError("Malformed stream token", "invalid_stream_token")
    if not hmac.compare_digest(_sign(secret, body), sig):
        raise TokenError("Invalid stream token", "invalid_stream_token")
    try:
        claims = _decoder.decode(_unb64(body[len(PREFIX):]))
    except (ValueError, msgspec.DecodeError):
        raise TokenError("Malformed stream token", "invalid_stream_token") from None
    if claims.exp <= (time.time() if now_s is None else now_s):
        raise TokenError("This stream token has expired: ask for a new one", "stream_token_expired")
    return claims
