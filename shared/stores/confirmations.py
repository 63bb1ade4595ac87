"""Confirmations: a write tool pauses its message until the user approves or denies it.

The worker creates the confirmation (id derived from the tool call, so a retry finds the same
one) and emits ``confirmation_required``; the message's status becomes
``awaiting_confirmation`` and its stream pauses. The API answers it once, within
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
from shared.errors import BadRequest, NotFound
from shared.ids import now_ms

CONFIRMATION_TTL_MS = 5 * 60_000
_json = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

# KEYS: 1 confirmation, 2 message record. ARGV: 1 decision (approved|denied), 2 now ms, 3 job id
ANSWER = r"""
local c = redis.call('HMGET', KEYS[1], 'state', 'expires_ms')
if not c[1] then return redis.error_reply('NOCONF') end
if c[1] ~= 'pending' then return redis.error_reply('ANSWERED ' .. c[1]) end
if tonumber(c[2]) <= tonumber(ARGV[2]) then return redis.error_reply('EXPIRED') end
if redis.call('HGET', KEYS[2], 'status') ~= 'awaiting_confirmation' then
  return redis.error_reply('NOTPAUSED')
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'answered_ms', ARGV[2])
redis.call('HSET', KEYS[2], 'status', 'queued', 'job', ARGV[3])
return redis.call('HGET', KEYS[2], 'last_id')
"""


def confirmation_id(tool_call_id: str) -> str:
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
        self._answer = redis.register_script(ANSWER)

    async def get(self, ses_id: str, conf_id: str) -> Confirmation | None:
        h = await self.redis.hgetall(keys.confirmation(ses_id, conf_id)) if conf_id.startswith("conf_") else {}
        if not h:
            return None
        return Confirmation(conf_id, h[b"message_id"].decode(), h[b"tool_call_id"].decode(),
                            h[b"tool_name"].decode(), _dec.decode(h[b"inputs"]), h[b"state"].decode(),
                            int(h[b"expires_ms"]))

    async def open(self, ses_id: str, msg_id: str, tool_call_id: str, tool_name: str,
                   inputs: dict[str, Any]) -> Confirmation:
        """Create the confirmation, or return the one a previous attempt created."""
        conf_id = confirmation_id(tool_call_id)
        key = keys.confirmation(ses_id, conf_id)
        expires = now_ms() + CONFIRMATION_TTL_MS
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "state", "pending")
            pipe.hsetnx(key, "expires_ms", expires)
            pipe.hset(key, mapping={"message_id": msg_id, "tool_call_id": tool_call_id, "tool_name": tool_name,
                                    "inputs": _json.encode(inputs)})
            pipe.expire(key, 7 * 86_400)
            await pipe.execute()
        await self.redis.hset(keys.message(ses_id, msg_id), "confirm_expires_ms",
                              int((await self.redis.hget(key, "expires_ms")) or expires))
        found = await self.get(ses_id, conf_id)
        assert found is not None
        return found

    async def answer(self, ses_id: str, conf: Confirmation, approved: bool, job_id: str) -> str:
        """Record the decision; returns the id of the confirmation_required event."""
        conf_id = conf.confirmation_id
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

