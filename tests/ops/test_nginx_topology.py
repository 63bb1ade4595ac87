"""The deployment's topology as local processes: Debian's nginx with deploy/nginx.conf in front of
two gateways and two workers on one Redis.

nginx runs the repository's file itself; only the upstream addresses and the listen port are
swapped for loopback ports this test chose. nginx missing is a failure, not a skip: .ci/run
installs it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import sse
from tests.stack import ROOT, Proc, Stack, free_port

pytestmark = pytest.mark.integration

CONF = ROOT / "deploy" / "nginx.conf"
WORKER_METRICS: dict[int, str] = {}  # worker pid -> its metrics URL


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None)
    assert found, "nginx is not installed (apt-get install nginx-light; .ci/run does it)"
    return found


def render(conf: str, gateways: list[int], listen: int) -> str:
    """deploy/nginx.conf with loopback upstreams and listen port; every other line as written."""
    servers = re.findall(r"server gateway-\d+:8000", conf)
    assert len(servers) == len(gateways) == 2, servers
    for name, port in zip(servers, gateways, strict=True):
        conf = conf.replace(name, f"server 127.0.0.1:{port}", 1)
    assert conf.count("listen 8080;") == 1
    return conf.replace("listen 8080;", f"listen 127.0.0.1:{listen};")


class Nginx:
    def __init__(self, gateways: list[int]) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="as-nginx-"))
        (self.prefix / "nginx.conf").write_text(render(CONF.read_text(), gateways, self.port))
        self.log = self.prefix / "nginx.log"
        args = [nginx_binary(), "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-e", "stderr",
                "-g", f"daemon off; pid {self.prefix / 'nginx.pid'};"]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def topology() -> Iterator[tuple[Stack, list[Proc], Nginx]]:
    # Paced tokens (so an answer is still running when a gateway dies) and a short heartbeat (so
    # the gaps between tokens carry heartbeats).
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "150", "AGENTSTREAM_HEARTBEAT_S": "0.05",
                   "AGENTSTREAM_LEASE_S": "2"})
    s.start_redis()
    for _ in range(2):
        port = free_port()
        w = s.start_worker(AGENTSTREAM_WORKER_METRICS_PORT=str(port))
        WORKER_METRICS[w.popen.pid] = f"http://127.0.0.1:{port}/metrics"
    gateways = [s.start_gateway(), s.start_gateway()]
    for gw in gateways:
        s.wait_ready(gw)
    nginx = Nginx([gw.port for gw in gateways if gw.port])
    try:
        yield s, gateways, nginx
    finally:
        nginx.stop()
        s.stop()


def _open_streams(gw: Proc) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    m = re.search(r'^agentstream_open_event_streams\{stream="message"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _read(lines: Iterator[str], out: list[sse.Ev], heartbeats: list[int], stop_after_tokens: int = 0) -> bool:
    """Parse SSE blocks into ``out`` as they arrive; True if the stream broke off."""
    block: list[str] = []
    try:
        for line in lines:
            if line.startswith(": keep-alive"):
                # A heartbeat is a comment line as it arrives; it ends no block (issue 15.10).
                heartbeats.append(len(out))
            if line == "":
                if block:
                    out.extend(sse.parse("\n".join(block) + "\n\n"))
                block = []
                if stop_after_tokens and sum(e.type == "token" for e in out) >= stop_after_tokens and heartbeats:
                    return False
                continue
            block.append(line)
    except httpx.HTTPError:
        return True
    return False


def test_streams_pass_nginx_unbuffered_with_heartbeats_and_survive_a_gateway_kill(topology):
    s, gateways, nginx = topology
    key, ns, _ = s.new_tenant()
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    with httpx.Client(base_url=nginx.url, headers=headers, timeout=30) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        events: list[sse.Ev] = []
        heartbeats: list[int] = []
        with api.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": "hello there"}) as r:
            assert r.status_code == 200
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # nginx's $request_id, passed on
            mid = r.headers["x-message-id"]
            events_url = r.headers["content-location"]
            lines = r.iter_lines()
            _read(lines, events, heartbeats, stop_after_tokens=3)
            # Unbuffered: tokens and heartbeats came through while the answer is still being written.
            record = _record(s, sid, mid)
            assert record.get(b"terminal_type") is None, "the answer ended before its first tokens arrived"
            assert heartbeats, "no heartbeat between paced tokens"
            serving = [gw for gw in gateways if _open_streams(gw) == 1]
            assert len(serving) == 1
            s.stop_proc(serving[0], signal.SIGKILL)
            broke = _read(lines, events, heartbeats)
        assert broke and events[-1].type not in ("done", "error")  # the stream broke off mid-answer
        before = len(events)
        assert _record(s, sid, mid).get(b"terminal_type") is None  # killed mid-answer
        # Resume through nginx: it finds the surviving gateway.
        last = events[-1].id
        with api.stream("GET", events_url, headers={"Last-Event-ID": last}) as r:
            assert r.status_code == 200
            assert not _read(r.iter_lines(), events, heartbeats)
    assert len(events) > before
    sse.check_stream(events)
    assert all(e.type != "reset" for e in events)
    text = "".join(e.data["content"] for e in events if e.type == "token")
    final = next(e for e in events if e.type == "message")
    assert text == final.data["content"] and text  # every token exactly once, in order
    assert events[-1].type == "done"


def _worker_metrics(w: Proc) -> dict[str, float]:
    text = httpx.get(WORKER_METRICS[w.popen.pid], timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("agentstream_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_a_stalled_worker_is_taken_over_and_fenced_and_the_metrics_say_so(topology):
    s, _, nginx = topology
    workers = [p for p in s.procs if p.kind == "worker"]
    key, ns, _ = s.new_tenant()
    with httpx.Client(base_url=nginx.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=60) as api:
        sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
        events: list[sse.Ev] = []
        heartbeats: list[int] = []
        with api.stream("POST", f"/v1/agents/sessions/{sid}/messages", json={"content": "hello again"}) as r:
            mid = r.headers["x-message-id"]
            lines = r.iter_lines()
            _read(lines, events, heartbeats, stop_after_tokens=2)
            running = [w for w in workers if _worker_metrics(w).get("agentstream_jobs_running") == 1]
            assert len(running) == 1
            stalled, other = running[0], next(w for w in workers if w is not running[0])
            stalled.popen.send_signal(signal.SIGSTOP)  # a stalled event loop, not a crash
            try:
                deadline = time.monotonic() + 60
                while _record(s, sid, mid).get(b"attempt") != b"2":
                    assert time.monotonic() < deadline, "nobody took the message over"
                    time.sleep(0.1)
            finally:
                stalled.popen.send_signal(signal.SIGCONT)
            assert not _read(lines, events, heartbeats)
    sse.check_stream(events)
    text = "".join(e.data["content"] for e in events if e.type == "token")
    assert text == next(e for e in events if e.type == "message").data["content"]  # exact continuation
    taker = _worker_metrics(other)
    assert taker['agentstream_attempts_total{kind="retry"}'] == 1
    assert taker["agentstream_takeovers_total"] == 1
    assert taker['agentstream_job_duration_seconds_count{outcome="completed"}'] >= 1
    reaped = sum(_worker_metrics(w).get('agentstream_reaper_actions_total{kind="restarted_expired_lease"}', 0)
                 for w in (stalled, other))
    assert reaped == 1
    deadline = time.monotonic() + 30
    while True:  # the stalled attempt, woken up, finds itself superseded and stops
        old = _worker_metrics(stalled)
        if old.get('agentstream_job_duration_seconds_count{outcome="fenced"}') == 1:
            break
        assert time.monotonic() < deadline, old
        time.sleep(0.1)
    # Whichever it tried first after waking: an append (refused) or a renewal (late, and refused).
    assert old.get("agentstream_fenced_appends_total", 0) + old.get("agentstream_late_lease_renewals_total", 0) >= 1


def _record(s: Stack, sid: str, mid: str) -> dict[bytes, bytes]:
    from shared import keys

    return s.redis_call(lambda redis: redis.hgetall(keys.message(sid, mid)))  # type: ignore[no-any-return]
