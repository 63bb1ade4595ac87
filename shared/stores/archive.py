"""The archive: each finished message's full event log as a gzip JSON-lines file, for ops.

Written by the worker before a message is compacted (when ``AGENTSTREAM_ARCHIVE_DIR`` is set),
read by ``agentstream events export|replay`` once Redis no longer has the message. Layout, in
Hive-style partitions that DuckDB and pandas read directly::

    <dir>/day=2026-12-01/namespace=ns_.../<session id>/<message id>.jsonl.gz

(``SELECT * FROM read_json('<dir>/**/*.jsonl.gz', hive_partitioning = true)``). One file per
message, written to a temporary name, synced and renamed: a crash leaves no half file, and
archiving the same message again replaces the file with the same lines (idempotent, never
duplicated). Lines are those of ``agentstream events export`` (``shared/stores/event_log.py``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from shared import cursor
from shared.ids import iso
from shared.stores import event_log

SUFFIX = ".jsonl.gz"


def path_for(root: str | Path, namespace_id: str, ses_id: str, msg_id: str, finished_ms: int) -> Path:
    day = iso(finished_ms)[:10]
    return Path(root) / f"day={day}" / f"namespace={namespace_id}" / ses_id / (msg_id + SUFFIX)


def write(root: str | Path, namespace_id: str, ses_id: str, msg_id: str, finished_ms: int,
          rows: list[tuple[str, str, bytes]]) -> Path:
    """Write one message's rows (id, type, payload); returns the file's path."""
    target = path_for(root, namespace_id, ses_id, msg_id, finished_ms)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            # mtime=0: the same message archived twice gives the same bytes.
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                for eid, type_, payload in rows:
                    gz.write(event_log.encode_line(event_log.line_of(eid, type_, payload, msg_id)))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # A writer SIGKILLed part-way left its temporary file behind: the message is whole now.
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    return target


def find(root: str | Path, ident: str) -> list[Path]:
    """The archived files of a message (``msg_...``) or of a session (``ses_...``), oldest first."""
    base = Path(root)
    if ident.startswith("msg_"):
        files = list(base.glob(f"day=*/namespace=*/*/{ident}{SUFFIX}"))
    else:
        files = list(base.glob(f"day=*/namespace=*/{ident}/*{SUFFIX}"))
    return sorted(files, key=lambda p: _first_id(p))


def read(path: Path) -> list[event_log.LogLine]:
    with gzip.open(path, "rb") as gz:
        return [event_log.decode_line(raw) for raw in gz.read().splitlines() if raw.strip()]


def _first_id(path: Path) -> tuple[int, int]:
    lines = read(path)
    return cursor.parse(lines[0].id) if lines else (0, 0)
