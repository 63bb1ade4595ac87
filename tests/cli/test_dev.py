"""`agentstream dev` (what `make run` runs) as a new user meets it: a banner whose commands work
as printed, the same key on every start, and a clean restart after the run was killed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared import connect
from tests.stack import ROOT, free_port


def start(data: Path, port: int, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "ANTHROPIC_", "OPENAI_"))}
    full.update({"AGENTSTREAM_DATA_DIR": str(data), "AGENTSTREAM_PORT": str(port),
                 "AGENTSTREAM_WORKER_METRICS_PORT": str(free_port()), "AGENTSTREAM_LOG_LEVEL": "warning", **env})
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dev", *args], cwd=ROOT, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    out = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        if line.startswith("Stop with Ctrl-C"):
            return proc, "".join(out)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    raise AssertionError("dev did not come up:\n" + "".join(out))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=40)  # drains and closes its output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def wait_until_free(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                pass
        assert time.monotonic() < deadline, f"port {port} still taken"
        time.sleep(0.05)


def key_of(banner: str) -> str:
    match = re.search(r"api key:\s+(sk_\S+)", banner)
    assert match, banner
    return match.group(1)


def test_the_banner_prints_commands_that_work_as_printed_and_the_key_is_kept(tmp_path):
    port = free_port()
    proc, banner = start(tmp_path, port)
    try:
        key = key_of(banner)
        assert "new; kept in the data dir" in banner
        # The curl line, run as printed, creates a session.
        curl = re.search(r"(curl -s .*?)\nOperate", banner, re.S).group(1).replace("\\\n", " ")
        done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert '"session_id":"ses_' in done.stdout, (curl, done.stdout, done.stderr)
        # The operator command names a path that exists.
        cli = re.search(r"Operate \(same environment\): (\S+)", banner).group(1)
        assert Path(ROOT, cli).exists() or Path(cli).exists()
        assert oct((tmp_path / "dev-api-key").stat().st_mode & 0o777) == "0o600"
    finally:
        stop(proc)
    proc, banner = start(tmp_path, port)
    try:
        assert key_of(banner) == key and "the one kept in the data dir" in banner
    finally:
        stop(proc)
    proc, banner = start(tmp_path, port, "--new-key")
    try:
        new = key_of(banner)
        assert new != key
        base = f"http://127.0.0.1:{port}"
        old = httpx.get(base + "/v1/agents/sessions/ses_x", headers={"Authorization": f"Bearer {key}",
                                                                     "X-Namespace": "demo"})
        assert old.status_code == 401 and old.json()["error"]["code"] == "key_revoked"
    finally:
        stop(proc)


def test_a_key_from_the_environment_is_quoted_so_the_shell_expands_it(tmp_path):
    proc, banner = start(tmp_path, free_port(), AGENTSTREAM_DEV_API_KEY="sk_" + "k" * 32)
    try:
        assert '-H "Authorization: Bearer $AGENTSTREAM_DEV_API_KEY"' in banner
        assert "kkkkkkkkkk" not in banner  # the secret itself is not printed
    finally:
        stop(proc)


def test_after_a_killed_run_the_next_one_adopts_the_orphaned_redis_and_stops_it(tmp_path):
    port = free_port()
    proc, _ = start(tmp_path, port)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its gateway and worker; Redis has its own session
    proc.communicate()
    assert connect.is_running(tmp_path)  # orphaned
    wait_until_free(port)  # the killed gateway's port: its process may outlive the run's by a moment
    proc, banner = start(tmp_path, port)
    try:
        assert "adopting the embedded Redis an earlier run left running" in banner
    finally:
        stop(proc)
    assert not connect.is_running(tmp_path)  # stopped with the run that adopted it


def test_a_second_run_on_the_same_data_dir_is_refused_with_what_to_do(tmp_path):
    proc, _ = start(tmp_path, free_port())
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
        env.update({"AGENTSTREAM_DATA_DIR": str(tmp_path), "AGENTSTREAM_PORT": str(free_port())})
        second = subprocess.run([sys.executable, "-m", "cli.main", "dev"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1
        assert f"another `make run` (pid {proc.pid})" in second.stderr and "AGENTSTREAM_DATA_DIR" in second.stderr
    finally:
        stop(proc)
