"""Answering a confirmation: the paused message continues, streamed as a new SSE answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import authenticate
from gateway.bodies import parse, read_body
from gateway.context import services
from gateway.routes.messages import events_url, sse_answer, stream_slot
from gateway.routes.tokens import mint
from shared import cursor as cur
from shared import models
from shared.errors import BadRequest, NotFound
from shared.ids import now_ms
from shared.stores import jobs
from shared.stores.confirmations import ConfirmationStore


async def respond_to_confirmation(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    conf_id = request.path_params["confirmation_id"]
    session = await svc.sessions.load(caller.namespace_id, ses_id)
    if session.get(b"status") == b"terminated" or int(session.get(b"expires_ms") or 0) <= now_ms():
        # An approval would run a write for a session its owner ended (issue 15.6): refused
        # like a new message to it.
        raise BadRequest("The session is terminated and accepts no more confirmations", code="session_terminated",
                         details={"session_id": ses_id})
    req = parse(await read_body(request, svc.settings.max_body_bytes), models.ConfirmationRequest)
    store = ConfirmationStore(svc.redis)
    conf = await store.get(ses_id, conf_id)
    if conf is None:
        raise NotFound("Confirmation not found", code="confirmation_not_found", details={"confirmation_id": conf_id})
    job_id = f"{conf.message_id}:{conf_id}"
    # A 429 (too many streams) must come before the answer is recorded (issue 18, point 10).
    slot = stream_slot(request)
    await slot.acquire()
    try:
        paused_at = await store.answer(ses_id, conf, req.approved, job_id)
        await jobs.enqueue(svc.arq, svc.settings, ses_id, conf.message_id, job_id)
    except BaseException:
        await slot.release()
        raise
    headers = {"X-Message-Id": conf.message_id, "Content-Location": events_url(ses_id, conf.message_id),
               "X-Stream-Token": (await mint(svc, caller, ses_id, conf.message_id))[0]}
    return await sse_answer(request, ses_id, conf.message_id, cur.parse(paused_at), headers, slot)


ROUTES = [Route("/v1/agents/sessions/{session_id}/confirmations/{confirmation_id}", respond_to_confirmation,
                methods=["POST"])]
