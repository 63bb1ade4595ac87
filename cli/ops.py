"""``agentstream events tail|export|replay|backlog`` and ``agentstream sessions rebuild``.

Operator commands over the stored event streams and session log. All read-only except
``sessions rebuild --write``. Registered by ``cli/main.py``; the JSON-lines format and the
other pure parts live in ``shared/stores/event_log.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from shared import backends, cursor, keys
from shared.errors import NotFound
from shared.events import TERMINAL
from shared.ids import now_ms
from shared.settings import Settings
from shared.stores import archive, compaction, event_log, session_log
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore

# Exit codes of every command here (README "Resume and replay"): 0 done, 1 failed (one line on
# stderr), 2 usage or configuration error, 3 `sessions rebuild`: the projections differ.
MISMATCH = 3
BLOCK_MS = 1_000  # XREAD BLOCK per round: below connect.SOCKET_TIMEOUT_S, and Ctrl-C stays prompt
BATCH = 500
T = TypeVar("T")
Command = Callable[[Settings, argparse.Namespace], int]


def _command(fn: Command) -> Command:
    """Every failure an operator can cause becomes one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return fn(settings, args)
        # `| head` closed the pipe: the reader has all it wanted. Caught before ConnectionError,
        # which is its base class.
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (NotFound, event_log.LogFileError, cursor.CursorError) as exc:
            print(f"agentstream: {exc}", file=sys.stderr)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            print(f"agentstream: cannot reach Redis: {exc}", file=sys.stderr)
        except ConnectionError as exc:  # connect.resolve_url: nothing configured or running
            print(f"agentstream: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"agentstream: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
        return 1

    return run


def _with_redis(settings: Settings, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    backend = backends.from_settings(settings)  # standalone, Cluster or Sentinel alike

    async def go() -> T:
        client = backend.client()
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def _since(args: argparse.Namespace) -> str:
    return cursor.fmt(cursor.parse(args.since)) if args.since else "0-0"


# Reading what is stored


async def _resolve(r: aioredis.Redis, ident: str) -> tuple[str, str | None]:
    """(session id, message id or None for the whole session); NotFound for anything else."""
    if ident.startswith("ses_") and await r.exists(keys.session(ident), keys.session_log(ident)):
        return ident, None
    if ident.startswith("msg_"):
        ses = await r.get(keys.message_session(ident))
        if ses:
            return ses.decode(), ident
    raise NotFound(f"no session or message with id {ident}")


async def _session_messages(r: aioredis.Redis, ses_id: str) -> tuple[list[str], str]:
    """Message ids from the log's ``user`` entries in log order, and the log's last id."""
    rows = await r.xrange(keys.session_log(ses_id))
    ids = [session_log.decode(f[b"d"]).message_id for _, f in rows if f[b"t"] == b"user"]
    return list(dict.fromkeys(ids)), (rows[-1][0].decode() if rows else "0-0")


async def _targets(r: aioredis.Redis, ident: str, archive_dir: str = "") -> tuple[str, list[str]]:
    """A session's or message's id -> (session id, message ids), from Redis or, for what Redis
    no longer has, from the archive."""
    try:
        ses_id, msg_id = await _resolve(r, ident)
    except NotFound:
        files = archive.find(archive_dir, ident) if archive_dir else []
        if not files:
            raise
        return files[0].parent.name, [f.name.removesuffix(archive.SUFFIX) for f in files]
    return ses_id, [msg_id] if msg_id else (await _session_messages(r, ses_id))[0]


async def _message_rows(r: aioredis.Redis, ses_id: str, msg_id: str,
                        archive_dir: str) -> tuple[list[compaction.Row], str]:
    """A message's events, from where they are most complete, and where that was: its stream
    in Redis, else the archive (which has the tokens compaction folded), else the compacted
    events in Redis."""
    if await r.exists(keys.events(ses_id, msg_id)):
        return await compaction.read_all(r, ses_id, msg_id), "redis"
    for path in archive.find(archive_dir, msg_id) if archive_dir else []:
        lines = await asyncio.to_thread(archive.read, path)
        return [(ln.id, ln.type, bytes(ln.payload)) for ln in lines], f"archive ({path.parent.parent.parent.parent})"
    rows = await compaction.read_all(r, ses_id, msg_id)
    return rows, "redis, compacted (tokens folded into the final message)" if rows else "nowhere"


async def _stored(r: aioredis.Redis, ses_id: str, msg_ids: list[str], since: str,
                  archive_dir: str = "", found: dict[str, int] | None = None) -> AsyncIterator[event_log.LogLine]:
    for msg_id in msg_ids:
        rows, where = await _message_rows(r, ses_id, msg_id, archive_dir)
        if found is not None:
            found[where] = found.get(where, 0) + 1
        for eid, type_, payload in compaction.after(rows, since):
            yield event_log.line_of(eid, type_, payload, msg_id)


def _say_where(found: dict[str, int]) -> None:
    """Ops must know whether they got the whole log (stream or archive) or a compacted one."""
    for where, n in found.items():
        print(f"{n} message(s) read from {where}", file=sys.stderr)


# events export


@_command
def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    since = _since(args)
    target = Path(args.output) if args.output else None

    async def work(r: aioredis.Redis) -> tuple[int, int, int]:
        ses_id, msg_ids = await _targets(r, args.id, settings.archive_dir)
        if target is None:
            return await _write(r, ses_id, msg_ids, since, sys.stdout.buffer, None, settings.archive_dir)
        total = sum(await asyncio.gather(*(r.xlen(keys.events(ses_id, m)) for m in msg_ids)))
        bar = sys.stderr if sys.stderr.isatty() else None  # a bar in a log file is only noise
        # Written beside the target and renamed at the end: a failed export leaves no half file.
        try:
            fd, tmp = tempfile.mkstemp(dir=target.resolve().parent, prefix=f".{target.name}.")
        except OSError as exc:
            raise event_log.LogFileError(f"cannot write {target}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                counts = await _write(r, ses_id, msg_ids, since, out, (bar, total) if bar else None,
                                      settings.archive_dir)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return counts

    sys.stdout.flush()
    events, messages, size = _with_redis(settings, work)
    if target is not None:
        print(f"exported {events} events from {messages} messages ({size} bytes) to {target}",
              file=sys.stderr)
    return 0


async def _write(r: aioredis.Redis, ses_id: str, msg_ids: list[str], since: str, out: IO[bytes],
                 progress: tuple[IO[str], int] | None, archive_dir: str = "") -> tuple[int, int, int]:
    events = size = 0
    seen: set[str] = set()
    found: dict[str, int] = {}
    async for line in _stored(r, ses_id, msg_ids, since, archive_dir, found):
        data = event_log.encode_line(line)
        out.write(data)
        events, size = events + 1, size + len(data)
        seen.add(line.message_id)
        if progress and (events % 200 == 0):
            progress[0].write("\r" + event_log.progress_bar(events, progress[1]))
    out.flush()
    if progress:
        progress[0].write("\r" + event_log.progress_bar(events, events) + "\n")
    _say_where(found)
    return events, len(seen), size


# events tail


@_command
def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    since = _since(args)
    if args.new and args.since:
        print("agentstream: --new and --since exclude each other", file=sys.stderr)
        return 2

    def emit(line: event_log.LogLine) -> None:
        sys.stdout.buffer.write(event_log.encode_line(line))
        sys.stdout.buffer.flush()

    async def work(r: aioredis.Redis) -> None:
        nonlocal since
        ses_id, msg_id = await _resolve(r, args.id)
        if args.new:
            # Only what is appended from now on: stream ids are Redis's clock, so ask it.
            seconds, micros = await r.time()
            since = f"{seconds * 1000 + micros // 1000}-0"
        # Ctrl-C (the documented way to stop following a session) sets a flag checked between
        # reads rather than cancelling the task: redis-py can swallow a cancellation that lands
        # mid-command (redis/redis-py#2028), which left the loop running.
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: no Ctrl-C
            pass
        try:
            if msg_id:
                await _tail_message(r, settings, ses_id, msg_id, since, emit, stop)
            else:
                await _tail_session(r, ses_id, since, emit, stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)  # False, harmlessly, if never added

    sys.stdout.flush()
    _with_redis(settings, work)
    return 0


async def _tail_message(r: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str, after: str,
                        emit: Callable[[event_log.LogLine], None], stop: asyncio.Event) -> None:
    key = keys.events(ses_id, msg_id)
    while not stop.is_set():
        reply = await r.xread({key: after}, count=BATCH, block=BLOCK_MS)
        rows = reply[0][1] if reply else []
        if not rows:
            record = await MessageStore(r, settings).record(ses_id, msg_id)
            if record and not record.ended:
                continue
            # Ended (or expired) with nothing new in a blocking read: whatever the terminal
            # write raced in since that read is picked up here, then there is no more.
            rows = await r.xrange(key, min="(" + after)
        for eid, f in rows:
            emit(event_log.line_of(eid, f[b"t"], f[b"d"], msg_id))
            after = eid.decode()
            if f[b"t"].decode() in TERMINAL:
                return
        if not reply:
            return


async def _tail_session(r: aioredis.Redis, ses_id: str, since: str,
                        emit: Callable[[event_log.LogLine], None], stop: asyncio.Event) -> None:
    """One XREAD over the session log and every unfinished message stream: the log reveals
    new messages; all keys share the session's hash tag, so this stays legal in Cluster."""
    log_key = keys.session_log(ses_id)
    msg_ids, log_after = await _session_messages(r, ses_id)
    following = {keys.events(ses_id, m): (m, since) for m in msg_ids}
    while not stop.is_set():
        streams: dict[Any, Any] = {log_key: log_after, **{k: c for k, (_, c) in following.items()}}
        reply = await r.xread(streams, count=BATCH, block=BLOCK_MS)
        lines: list[event_log.LogLine] = []
        for raw_key, rows in reply or []:
            key = raw_key.decode()
            if key == log_key:
                log_after = rows[-1][0].decode()
                for _, f in rows:
                    if f[b"t"] == b"user":
                        m = session_log.decode(f[b"d"]).message_id
                        following.setdefault(keys.events(ses_id, m), (m, since))
                continue
            m = following[key][0]
            following[key] = (m, rows[-1][0].decode())
            for eid, f in rows:
                lines.append(event_log.line_of(eid, f[b"t"], f[b"d"], m))
                if f[b"t"].decode() in TERMINAL:
                    following.pop(key, None)
        for line in sorted(lines, key=lambda ln: cursor.parse(ln.id)):
            emit(line)


# events replay


@_command
def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    # The command line sits above the gateway, so it reuses its framing rather than copying it;
    # imported here so that only this command loads gateway code (a worker process does not).
    from gateway import sse

    source = Path(args.source)
    if source.exists() or not args.source.startswith(("msg_", "ses_")):
        lines = event_log.read_file(source)
    else:
        async def work(r: aioredis.Redis) -> list[event_log.LogLine]:
            ses_id, msg_ids = await _targets(r, args.source, settings.archive_dir)
            found: dict[str, int] = {}
            lines = [line async for line in _stored(r, ses_id, msg_ids, "0-0", settings.archive_dir, found)]
            _say_where(found)
            return lines

        lines = _with_redis(settings, work)
        if not lines:
            raise NotFound(f"{args.source} has no stored events (its streams may have expired)")
    sys.stdout.flush()
    out = sys.stdout.buffer
    for line, delay in zip(lines, event_log.delays_s(lines, args.speed), strict=True):
        if delay:
            time.sleep(delay)
        out.write(sse.frame(line.id, line.type, bytes(line.payload)))
        out.flush()
    return 0


# events backlog


@_command
def cmd_backlog(settings: Settings, args: argparse.Namespace) -> int:
    async def work(r: aioredis.Redis) -> tuple[int, int, float | None]:
        now = now_ms()
        async with r.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.COMPACT)
            pipe.zcount(keys.COMPACT, "-inf", now)
            pipe.zrange(keys.COMPACT, 0, 0, withscores=True)
            total, due, oldest = await pipe.execute()
        return total, due, (now - oldest[0][1]) / 1000 if oldest and oldest[0][1] < now else None

    total, due, late_s = _with_redis(settings, work)
    where = f"archived to {settings.archive_dir}, then " if settings.archive_dir else ""
    print(f"{total} finished message(s) waiting to be {where}compacted; {due} due now"
          + (f", the oldest for {late_s:.0f}s" if late_s is not None else ""))
    return 0


# sessions rebuild


@_command
def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    async def work(r: aioredis.Redis) -> dict[str, tuple[float, float]]:
        try:
            return await SessionStore(r, settings).rebuild(args.session_id, args.write)
        except NotFound:
            raise NotFound(f"no session with id {args.session_id}") from None

    diff = _with_redis(settings, work)
    if not diff:
        print("projections match the log")
        return 0
    rows = [("field", "stored", "recomputed")] + [(f, _num(a), _num(b)) for f, (a, b) in diff.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if args.write:
        print(f"wrote {len(diff)} field(s)")
        return 0
    print("read-only: pass --write to store the recomputed values")
    return MISMATCH  # a script can tell: the projections disagree with the log


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _speed(text: str) -> float | None:
    try:
        return event_log.parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    ev = sub.add_parser("events", help="a message's or session's events").add_subparsers(
        dest="events_command", required=True)
    for name, fn, text in (
        ("tail", cmd_tail, "follow live events as JSON lines (a message: until it ends; "
                           "a session: every message, until Ctrl-C)"),
        ("export", cmd_export, "write all stored events as JSON lines"),
    ):
        p = ev.add_parser(name, help=text)
        p.add_argument("id", metavar="SESSION_OR_MESSAGE_ID")
        p.add_argument("--since", metavar="ID", help="only events after this stream id (<ms>-<seq>)")
        p.set_defaults(fn=fn)
        if name == "tail":
            p.add_argument("--new", action="store_true", help="only events appended from now on (no history)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")  # export's

    p = ev.add_parser("backlog", help="how many finished messages wait to be archived and compacted")
    p.set_defaults(fn=cmd_backlog)

    p = ev.add_parser("replay", help="re-emit an export file or a stored message's events as SSE on stdout")
    p.add_argument("source", metavar="FILE_OR_MESSAGE_ID")
    p.add_argument("--speed", type=_speed, default=1.0, metavar="X|max",
                   help="scale the original timing by X (default 1); max: no delay")
    p.set_defaults(fn=cmd_replay)

    ss = sub.add_parser("sessions", help="session projections").add_subparsers(
        dest="sessions_command", required=True)
    p = ss.add_parser("rebuild", help="recompute a session's stats from its log and show what differs")
    p.add_argument("session_id", metavar="SESSION_ID")
    p.add_argument("--write", action="store_true", help="store the recomputed values (default: read-only)")
    p.set_defaults(fn=cmd_rebuild)
