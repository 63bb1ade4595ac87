"""The embedded Redis keeps every tenant's data private to its owner (issue 15.9: the
append-only file under ``.data`` was created world-readable, 0644)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import redis

from cli import embedded
from shared.connect import socket_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_redis_data_dir_and_append_only_files_are_private(tmp_path: Path) -> None:
    root = tmp_path / "data"
    old = os.umask(0o022)  # the usual shell default: what made the files world-readable
    try:
        root.mkdir(mode=0o755)
        (root / "appendonlydir").mkdir(mode=0o755)
        left = root / "appendonlydir" / "appendonly.aof.1.incr.aof"
        left.write_bytes(b"")  # as an older version left it: 0644
        left.chmod(0o644)
        proc = embedded.start(root)
    finally:
        os.umask(old)
    try:
        client = redis.Redis(unix_socket_path=str(socket_path(root)))
        client.set("secret", "tenant data")
        client.execute_command("BGREWRITEAOF")
        client.close()
        assert _mode(root) == 0o700
        files = [p for p in root.rglob("*") if not p.is_socket()]
        assert any(p.name.endswith(".aof") for p in files), files
        for p in files:
            assert _mode(p) & 0o077 == 0, (p, oct(_mode(p)))
    finally:
        embedded.stop(proc, root)
