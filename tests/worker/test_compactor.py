"""The compactor and the archive: finished messages are archived whole, then compacted, at
least once and without duplicates, and ops read them back once Redis has let go."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from shared import keys
from shared.settings import Settings
from shared.stores import archive, compaction
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore
from tests import sse
from tests.gateway.test_messages import new_session, send
from tests.stack import ROOT, Stack
from worker import compactor


@pytest.fixture(scope="module")
def archiving(tmp_path_factory: pytest.TempPathFactory):
    """A stack whose worker compacts a second after the end and archives first."""
    arch = tmp_path_factory.mktemp("archive")
    s = Stack(env={"AGENTSTREAM_COMPACT_AFTER_S": "1", "AGENTSTREAM_ARCHIVE_DIR": str(arch),
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.2"})
    s.start_redis()
    s.start_worker()
    gw = s.start_gateway()
    s.wait_ready(gw)
    key, ns, _ = s.new_tenant()
    client = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                          timeout=30)
    yield s, client, arch
    client.close()
    s.stop()


def wait_compacted(stack: Stack, sid: str, mid: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.redis_call(lambda r: r.hget(keys.message(sid, mid), "compacted")) == b"1":
            return
        time.sleep(0.2)
    raise AssertionError(f"{mid} was not compacted within {timeout_s}s")


def lines_of(events: list[sse.Ev]) -> list[tuple[str, str, object]]:
    return [(e.id, e.type, e.data) for e in events]


def test_a_finished_message_is_archived_whole_then_compacted(archiving):
    stack, api, arch = archiving
    sid = new_session(api)
    r = send(api, sid, "hello there")
    mid, events = r.headers["x-message-id"], sse.parse(r.text)
    wait_compacted(stack, sid, mid)
    files = archive.find(arch, mid)
    assert len(files) == 1 and files[0].parts[-4].startswith("day=") and files[0].parts[-3].startswith("namespace=")
    lines = archive.read(files[0])
    # Replaying from the archive gives exactly the events the message had before compaction.
    import json
    assert [(ln.id, ln.type, json.loads(bytes(ln.payload))) for ln in lines] == lines_of(events)
    assert {ln.message_id for ln in lines} == {mid}
    assert stack.redis_call(lambda r: r.exists(keys.events(sid, mid))) == 0
    assert stack.redis_call(lambda r: r.zscore(keys.COMPACT, f"{sid}/{mid}")) is None


def cli(stack: Stack, arch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"AGENTSTREAM_REDIS_URL": stack.redis_url, "AGENTSTREAM_ARCHIVE_DIR": str(arch), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_export_reads_the_archive_once_redis_has_let_go(archiving):
    stack, api, arch = archiving
    sid = new_session(api)
    first = send(api, sid, "hello there")
    second = send(api, sid, "and hello again")
    mids = [first.headers["x-message-id"], second.headers["x-message-id"]]
    for mid in mids:
        wait_compacted(stack, sid, mid)
    # While Redis holds the compacted form, export prefers the archive's whole log.
    out = cli(stack, arch, "events", "export", mids[0])
    assert out.returncode == 0, out.stderr
    assert "archive" in out.stderr
    assert out.stdout.count("\n") == len(sse.parse(first.text))
    # Retention removed everything from Redis: the session is found in the archive alone.
    stack.redis_call(lambda r: r.delete(keys.session(sid), keys.session_log(sid), *(
        k for m in mids for k in (keys.message(sid, m), keys.events_packed(sid, m), keys.message_session(m)))))
    out = cli(stack, arch, "events", "export", sid)
    assert out.returncode == 0, out.stderr
    assert "2 message(s) read from archive" in out.stderr
    exported = [line for line in out.stdout.splitlines() if line]
    assert len(exported) == len(sse.parse(first.text)) + len(sse.parse(second.text))
    replay = cli(stack, arch, "events", "replay", mids[1], "--speed", "max")
    assert replay.returncode == 0, replay.stderr
    assert lines_of(sse.parse(replay.stdout)) == lines_of(sse.parse(second.text))


def test_backlog_says_how_many_wait(archiving):
    stack, api, arch = archiving
    # Due in an hour, so that the stack's own compactor leaves it alone.
    stack.redis_call(lambda r: r.zadd(keys.COMPACT, {"ses_x/msg_y": time.time() * 1000 + 3_600_000}))
    try:
        out = cli(stack, arch, "events", "backlog")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("1 finished message(s) waiting to be archived") and "0 due now" in out.stdout
    finally:
        stack.redis_call(lambda r: r.zrem(keys.COMPACT, "ses_x/msg_y"))


def test_a_crash_between_archive_and_compaction_repeats_without_duplicates(api, stack, tmp_path, monkeypatch):
    """The schedule entry leaves only after the compaction: a worker that dies after archiving
    leaves it due, and the next pass writes the same file again and compacts."""
    sid = new_session(api)
    mid = send(api, sid, "hello there").headers["x-message-id"]
    settings = Settings(archive_dir=str(tmp_path), compact_after_s=1)
    member = f"{sid}/{mid}"

    async def passes(r):
        deps = SimpleNamespace(settings=settings, redis=r, messages=MessageStore(r, settings))
        await r.zadd(keys.COMPACT, {member: 0})
        real = compaction.compact

        async def crash(*a, **k):
            raise OSError("worker died here")

        monkeypatch.setattr(compaction, "compact", crash)
        assert await compactor.compact_due(deps) == 0
        still = await r.zscore(keys.COMPACT, member)
        data_1 = archive.find(tmp_path, mid)[0].read_bytes()
        monkeypatch.setattr(compaction, "compact", real)
        await r.zadd(keys.COMPACT, {member: 0}, xx=True)  # its claim ran out
        assert await compactor.compact_due(deps) == 1
        return still, data_1, await r.zscore(keys.COMPACT, member), await r.hget(keys.message(sid, mid), "compacted")

    still, data_1, after, compacted = stack.redis_call(passes)
    assert still is not None and after is None and compacted == b"1"
    files = archive.find(tmp_path, mid)
    assert len(files) == 1 and files[0].read_bytes() == data_1  # rewritten whole: no duplicated line
    assert len(gzip.decompress(data_1).splitlines()) == len(set(gzip.decompress(data_1).splitlines()))


def test_a_crash_mid_archive_write_leaves_no_half_file(tmp_path):
    rows = [("1-0", "intent", b'{"intent":"x"}'), ("2-0", "token", None)]  # the second line fails
    with pytest.raises(TypeError):
        archive.write(tmp_path, "ns_a", "ses_a", "msg_a", 0, rows)  # type: ignore[arg-type]
    assert archive.find(tmp_path, "msg_a") == []
    assert not list(tmp_path.rglob("*.tmp"))
    # A writer SIGKILLed part-way leaves its temporary file; the next write of the message
    # removes it and leaves one whole file.
    target = archive.path_for(tmp_path, "ns_a", "ses_a", "msg_a", 0)
    (target.parent / f".{target.name}.999.tmp").write_bytes(b"half")
    archive.write(tmp_path, "ns_a", "ses_a", "msg_a", 0, rows[:1])
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert [ln.id for ln in archive.read(target)] == ["1-0"]


def test_projections_rebuild_exactly_after_compaction(api, stack):
    sid = new_session(api)
    for text in ("hello there", "hello again"):
        mid = send(api, sid, text).headers["x-message-id"]
        assert stack.redis_call(lambda r, m=mid: compaction.compact(r, sid, m)) == "ok"
    assert stack.redis_call(lambda r: SessionStore(r, Settings()).rebuild(sid, write=False)) == {}
