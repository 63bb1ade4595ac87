"""Compaction of a finished message's events: what a late reader needs, in a few KB.

Once a message has ended and its compaction window has passed, its stream is replaced in one
atomic step (``scripts.COMPACT``) by one compressed string (``keys.events_packed``): every
event but ``token`` with its original id and payload, the tokens dropped (the final ``message``
already holds their text). One string rather than a smaller stream because Redis preallocates
4 KB for every stream node: a stream of ten events costs 4.7 KB whatever it holds, the same
events packed and compressed together about 1.5 KB.

The record remembers the folded runs of tokens (``folded``: "first/last" id pairs), so a read
that would step over one is told so with ``reset {reason: "compacted"}`` instead of a silent
gap, and it stops repeating the payloads the packed events hold. The packed events then live as
long as the record. The fold and the packing are pure; ``compact`` and ``read_all`` are the I/O.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis

from shared import cursor, keys, scripts

Row = tuple[str, str, bytes]  # (id, type, payload)

# A preset dictionary of what event payloads spell out, so that even a small message compresses.
# Packed strings start with a version byte: a new dictionary gets a new version, and strings
# packed with an older one stay readable for as long as they are retained.
_ZDICT_V1 = b"".join(
    b'"%s":' % k for k in (
        b"intent", b"confidence", b"category", b"reasoning", b"context_scope", b"step", b"message",
        b"tool_name", b"tool_call_id", b"inputs", b"success", b"output", b"latency_ms", b"error",
        b"results", b"collection_id", b"collection_name", b"description", b"metadata", b"created_at",
        b"document_count", b"total", b"execution_id", b"status", b"retriever_id", b"documents",
        b"document_id", b"score", b"title", b"body", b"tags", b"year", b"is_adhoc",
        b"documents_returned", b"config", b"collection_identifiers", b"stages", b"stage_name",
        b"stage_id", b"parameters", b"query", b"limit", b"content", b"message_id", b"is_final",
        b"session_name", b"tool_calls_made", b"retriever_summary", b"used_retrievers",
        b"retriever_count", b"saved_retrievers", b"adhoc_retrievers", b"total_documents",
        b"executions", b"data_accessed_via_retriever", b"total_tokens", b"confirmation_id",
        b"expires_at", b"reason", b"replay_from", b"attempt", b"discard_after", b"code",
        b"recoverable",
    )
) + (b'"namespace","session","retriever_search","conversation","processing","tool_selection",'
     b'"Analyzing your request...","smart_search","list_collections","search_documents",'
     b'"bm25_search","completed","Save this pipeline as a retriever to run it again",'
     b'true,false,null,"run_","doc_","col_","exec_","ret_","msg_","ses_"')
_V1 = b"\x01"
_rows_encoder = msgspec.json.Encoder()
_rows_decoder = msgspec.json.Decoder(list[tuple[str, str, msgspec.Raw]])


@dataclass(frozen=True, slots=True)
class Folded:
    kept: list[Row]
    runs: list[tuple[str, str]]  # (first, last) id of each run of consecutive folded tokens
    count: int  # tokens folded

    def runs_text(self) -> str:
        return ",".join(f"{a}/{b}" for a, b in self.runs)


def fold(rows: list[Row]) -> Folded:
    """Rows of a finished stream -> the events the compacted form keeps, and what it folds."""
    kept: list[Row] = []
    runs: list[tuple[str, str]] = []
    count = 0
    in_run = False
    for eid, type_, payload in rows:
        if type_ == "token":
            count += 1
            runs[-1:] = [(runs[-1][0], eid)] if in_run else [*runs[-1:], (eid, eid)]
            in_run = True
            continue
        in_run = False
        kept.append((eid, type_, payload))
    return Folded(kept, runs, count)


def pack(rows: list[Row]) -> bytes:
    z = zlib.compressobj(9, zdict=_ZDICT_V1)
    data = _rows_encoder.encode([(i, t, msgspec.Raw(p)) for i, t, p in rows])
    return _V1 + z.compress(data) + z.flush()


def unpack(blob: bytes) -> list[Row]:
    if blob[:1] != _V1:
        raise ValueError(f"packed events of unknown version {blob[:1]!r}")
    z = zlib.decompressobj(zdict=_ZDICT_V1)
    rows = _rows_decoder.decode(z.decompress(blob[1:]) + z.flush())
    return [(i, t, bytes(p)) for i, t, p in rows]


def after(rows: list[Row], cursor_id: str, count: int | None = None) -> list[Row]:
    """The rows strictly after ``cursor_id``, as XRANGE (exclusive start) would give them."""
    c = cursor.parse(cursor_id)
    out = [r for r in rows if cursor.parse(r[0]) > c]
    return out if count is None else out[:count]


def parse_runs(text: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    out = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("/")
        out.append((cursor.parse(a), cursor.parse(b)))
    return out


def skips_folded(runs: list[tuple[tuple[int, int], tuple[int, int]]], after_id: tuple[int, int],
                 upto: tuple[int, int] | None) -> bool:
    """Whether the range from ``after_id`` to ``upto`` (None: the end) held folded tokens."""
    return any(last > after_id and (upto is None or first < upto) for first, last in runs)


async def read_all(redis: aioredis.Redis, ses_id: str, msg_id: str) -> list[Row]:
    """Every stored event of a message, compacted or not."""
    rows = await redis.xrange(keys.events(ses_id, msg_id))
    if rows:
        return [(i.decode(), f[b"t"].decode(), f[b"d"]) for i, f in rows]
    blob = await redis.get(keys.events_packed(ses_id, msg_id))
    return unpack(blob) if blob else []


async def compact(redis: aioredis.Redis, ses_id: str, msg_id: str, rows: list[Row] | None = None) -> str:
    """Compact one finished message. Returns the script's verdict: ``ok``, ``compacted``
    (already done), ``running`` (not ended), ``missing`` (record or stream gone) or ``changed``
    (the stream moved under us: read again). Safe to repeat and to race: the script checks that
    the stream is still exactly what was folded."""
    if rows is None:
        rows = await read_all(redis, ses_id, msg_id)
    if not rows:
        return "missing"
    f = fold(rows)
    script = redis.register_script(scripts.COMPACT)
    verdict = await script(
        keys=[keys.message(ses_id, msg_id), keys.events(ses_id, msg_id), keys.events_packed(ses_id, msg_id)],
        args=[rows[-1][0], len(rows), f.runs_text(), f.count, pack(f.kept)],
    )
    return verdict.decode() if isinstance(verdict, bytes) else str(verdict)
