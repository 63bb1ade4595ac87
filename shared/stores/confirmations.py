"""Confirmations: a write tool pauses its message until the user approves or denies it.

The worker creates the confirmation (id derived from the tool call's stable id, so a retry or a
continuation finds the same one) and emits ``confirmation_required``; the message's status
becomes ``awaiting_confirmation`` and its stream pauses. The API answers it once, within
``CONFIRMATION_TTL_MS``, in one atomic step that also puts the message back in the queue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared import keys
from shared.errors import BadRequest, Fenced, NotFound
from shared.ids import now_ms

CONFIRMATION_TTL_MS = 5 * 60_000
CONFIRMATION_KEY_TTL_S = 7 * 86_400
# The reaper looks at an answered message this long after the answer: by then its continuation
# has been enqueued and claimed, or the gateway died in between and the reaper enqueues it.
ANSWER_GRACE_MS = 5_000
_json = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

# OPEN: create the confirmation (or find the one an earlier attempt created), fenced on the
# attempt like every append, and never recreating an expired message record.
# KEYS: 1 confirmation, 2 message record. ARGV: 1 attempt, 2 message id, 3 tool call id,
# 4 tool name, 5 inputs (JSON), 6 expires ms if created now, 7 key TTL s.
# Returns {state, expires_ms}; errors NOREC, TERMINAL, FENCED (as the append script's).
OPEN = r"""
local att = redis.call('HGET', KEYS[2], 'attempt')
if not att then return redis.error_reply('NOREC message record missing') end
if redis.call('HEXISTS', KEYS[2], 'terminal_type') == 1 then
  return redis.error_reply('TERMINAL message already ended')
end
if att ~= ARGV[1] then return redis.error_reply('FENCED attempt ' .. ARGV[1] .. ' superseded by ' .. att) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'expires_ms', ARGV[6], 'message_id', ARGV[2],
             'tool_call_id', ARGV[3], 'tool_name', ARGV[4], 'inputs', ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
local c = redis.call('HMGET', KEYS[1], 'state', 'expires_ms')
redis.call('HSET', KEYS[2], 'confirm_expires_ms', c[2])
return c
"""

# ANSWER: KEYS: 1 confirmation, 2 message record. ARGV: 1 decision (approved|denied), 2 now ms,
# 3 job id. The paused attempt ended cleanly, so it counts as handed over (``handed``): a
# continuation does not spend one of the message's crash retries.
ANSWER = r"""
local c = redis.call('HMGET', KEYS[1], 'state', 'expires_ms')
if not c[1] then return redis.error_reply('NOCONF') end
if c[1] ~= 'pending' then return redis.error_reply('ANSWERED ' .. c[1]) end
if tonumber(c[2]) <= tonumber(ARGV[2]) then return redis.error_reply('EXPIRED') end
if redis.call('HGET', KEYS[2], 'status') ~= 'awaiting_confirmation' then
  return redis.error_reply('NOTPAUSED')
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'answered_ms', ARGV[2])
redis.call('HSET', KEYS[2], 'status', 'queued', 'job', ARGV[3], 'queued_ms', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'handed', 1)
return redis.call('HGET', KEYS[2], 'last_id')
"""


def confirmation_id(tool_call_id: str) -> str:
    """From the call's stable id (``worker/recorded.py``), so every attempt finds the same one."""
    return "conf_" + hashlib.sha256(tool_call_id.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmation_id: str
    message_id: str
    tool_call_id: str
    tool_name: str
    inputs: dict[str, Any]
    state: str  # pending | approved | denied
    expires_ms: int


class ConfirmationStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._open = redis.register_script(OPEN)
        self._answer = redis.register_script(ANSWER)

    async def get(self, ses_id: str, conf_id: str) -> Confirmation | None:
        h = await self.redis.hgetall(keys.confirmation(ses_id, conf_id)) if conf_id.startswith("conf_") else {}
        if not h:
            return None
        return Confirmation(conf_id, h[b"message_id"].decode(), h[b"tool_call_id"].decode(),
                            h[b"tool_name"].decode(), _dec.decode(h[b"inputs"]), h[b"state"].decode(),
                            int(h[b"expires_ms"]))

    async def open(self, ses_id: str, msg_id: str, attempt: int, tool_call_id: str, tool_name: str,
                   inputs: dict[str, Any]) -> Confirmation:
        """Create the confirmation, or return the one a previous attempt created. Raises Fenced
        when this attempt may no longer write (superseded, or the message ended)."""
        conf_id = confirmation_id(tool_call_id)
        try:
            state, expires = await self._open(
                keys=[keys.confirmation(ses_id, conf_id), keys.message(ses_id, msg_id)],
                args=[attempt, msg_id, tool_call_id, tool_name, _json.encode(inputs),
                      now_ms() + CONFIRMATION_TTL_MS, CONFIRMATION_KEY_TTL_S])
        except ResponseError as exc:
            if str(exc).startswith(("FENCED", "TERMINAL", "NOREC")):
                raise Fenced(str(exc)) from None
            raise
        return Confirmation(conf_id, msg_id, tool_call_id, tool_name, inputs, state.decode(), int(expires))

    async def answer(self, ses_id: str, conf: Confirmation, approved: bool, job_id: str) -> str:
        """Record the decision; returns the id of the confirmation_required event.

        The reaper's schedule moves first: whatever happens to this gateway after the answer
        (before or after it enqueues the continuation), the reaper looks at the message within
        seconds instead of at the confirmation's expiry."""
        conf_id = conf.confirmation_id
        await self.redis.zadd(keys.ACTIVE, {f"{ses_id}/{conf.message_id}": now_ms() + ANSWER_GRACE_MS}, xx=True)
        try:
            last = await self._answer(keys=[keys.confirmation(ses_id, conf_id), keys.message(ses_id, conf.message_id)],
                                      args=["approved" if approved else "denied", now_ms(), job_id])
        except ResponseError as exc:
            text = str(exc)
            if text.startswith("NOCONF"):
                raise NotFound("Confirmation not found", code="confirmation_not_found",
                               details={"confirmation_id": conf_id}) from None
            if text.startswith("EXPIRED"):
                raise BadRequest("The confirmation expired (they last 5 minutes)", code="confirmation_expired",
                                 details={"confirmation_id": conf_id}) from None
            if text.startswith(("ANSWERED", "NOTPAUSED")):
                raise BadRequest("The confirmation was already answered", code="confirmation_already_answered",
                                 details={"confirmation_id": conf_id}) from None
            raise
        return last.decode()
