"""The session-wide log: every event of every message of a session, in order.

Messages come in the order the session log accepted them; each message's events in stream
order. The SSE ``id:`` is ``<message_id>/<entry id>``, so ``Last-Event-ID`` resumes exactly
after one event of one message. A running message is followed live to its terminal event, a
paused one (awaiting a confirmation) included; the response ends when every message of the
session has been delivered, and resuming at the very last event answers 204. A message whose
record expired is announced with a ``reset`` (``message_expired``) instead of vanishing. With
``Accept: application/x-ndjson`` the same events come as JSON lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway import sse
from gateway.auth import authenticate
from gateway.context import Services, services
from gateway.limits import HoldingSlot, StreamSlot
from gateway.streaming import frames, open_reader
from shared import cursor as cur
from shared.errors import BadRequest, NotFound
from shared.events import Reset, encode_json, encode_payload
from shared.ids import iso
from shared.stores.session_log import UserEntry


def parse_cursor(raw: str | None) -> tuple[str, tuple[int, int]] | None:
    if not raw:
        return None
    msg_id, sep, entry = raw.partition("/")
    try:
        if not sep or not msg_id.startswith("msg_"):
            raise cur.CursorError("expected <message_id>/<ms>-<seq>")
        return msg_id, cur.parse(entry)
    except cur.CursorError as exc:
        raise BadRequest(f"malformed session event id {raw[:80]!r}: {exc}", code="invalid_last_event_id") from None


async def _message_ids(svc: Services, ses_id: str) -> list[str]:
    return [e.message_id for e in await svc.sessions.log(ses_id) if isinstance(e, UserEntry)]


async def _is_terminal(svc: Services, ses_id: str, after: tuple[str, tuple[int, int]]) -> bool:
    record = await svc.messages.record(ses_id, after[0])
    return bool(record and record.terminal_id and cur.parse(record.terminal_id) == after[1])


async def _events(svc: Services, ses_id: str, after: tuple[str, tuple[int, int]] | None
                  ) -> AsyncIterator[tuple[str, list[tuple[bytes | None, bytes, bytes]] | None]]:
    delivered: set[str] = set()
    started = after is None
    while True:
        pending = [m for m in await _message_ids(svc, ses_id) if m not in delivered]
        if not pending:
            return
        for msg_id in pending:
            delivered.add(msg_id)
            start: tuple[int, int] | None = None
            if not started:
                assert after is not None
                if msg_id != after[0]:
                    continue
                started, start = True, after[1]
            try:
                # Through pauses: the log goes on with what a confirmation's answer continues.
                reader = await open_reader(svc.messages, svc.hub, svc.settings, ses_id, msg_id, start,
                                           through_pauses=True)
            except NotFound:
                # The record outlived its retention: say so, rather than skip the message.
                gone = Reset(reason="message_expired", status="expired", replay_from="0-0")
                yield msg_id, [(b"0-0", b"reset", encode_payload(gone))]
                continue
            try:
                async for batch in reader:
                    yield msg_id, batch
            finally:
                await reader.aclose()


async def session_events(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    svc.refuse_when_draining()
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    after = parse_cursor(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))
    if after is not None:
        ids = await _message_ids(svc, ses_id)
        if after[0] not in ids:
            raise BadRequest("Last-Event-ID names a message this session does not have",
                             code="invalid_last_event_id")
        if after[0] == ids[-1] and await _is_terminal(svc, ses_id, after):
            # The reader has the log's last event: nothing is left (like a message stream's 204).
            return Response(status_code=204)
    ndjson = "application/x-ndjson" in request.headers.get("accept", "")
    body = _ndjson(svc, ses_id, after) if ndjson else _sse(svc, ses_id, after)
    headers = {**sse.HEADERS, "Content-Type": "application/x-ndjson"} if ndjson else sse.HEADERS
    # A long-lived stream like a message's: it counts toward the key's and the process's limits
    slot = StreamSlot(svc.leases, svc.settings, request.state.key_hash, svc.streams)
    await slot.acquire()
    return HoldingSlot(StreamingResponse(body, headers=headers), slot)  # type: ignore[return-value]


async def _sse(svc: Services, ses_id: str, after: tuple[str, tuple[int, int]] | None) -> AsyncIterator[bytes]:
    yield sse.retry(svc.settings.sse_retry_ms)
    async for msg_id, batch in _events(svc, ses_id, after):
        yield frames(batch, msg_id.encode() + b"/")


async def _ndjson(svc: Services, ses_id: str, after: tuple[str, tuple[int, int]] | None) -> AsyncIterator[bytes]:
    async for msg_id, batch in _events(svc, ses_id, after):
        lines = []
        for eid, t, d in batch or ():
            ts = iso(cur.parse(eid)[0]) if eid is not None and t != b"reset" else None
            head = encode_json({"id": f"{msg_id}/{eid.decode()}" if eid is not None else None,
                                "message_id": msg_id, "type": t.decode(), "timestamp": ts})
            lines.append(head[:-1] + b',"payload":' + d + b"}\n")  # the payload as stored, not re-encoded
        if lines:
            yield b"".join(lines)


ROUTES = [Route("/v1/agents/sessions/{session_id}/events", session_events, methods=["GET"])]
