"""``agentstream``: the one command for running and operating the service.

The top of the import graph: nothing imports ``cli`` (the import-linter contract in
``pyproject.toml``). The gateway and worker are imported inside the command that runs each, so
a worker process never loads gateway code and the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli import bench, embedded, keys, ops
from shared import connect
from shared import keys as keys_module
from shared.settings import Settings, SettingsError


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.main import run

    run(settings)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import run

    run(settings)
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Embedded Redis + one gateway + one worker, as separate processes, stopped together."""
    data = Path(settings.data_dir)
    other = _other_dev(data)
    if other and not settings.redis_url:
        print(f"agentstream dev: another `make run` (pid {other}) uses {data.resolve()}; stop it first "
              f"(Ctrl-C there), or give this one its own AGENTSTREAM_DATA_DIR and AGENTSTREAM_PORT",
              file=sys.stderr)
        return 1
    redis_proc = None
    adopted = False
    url = settings.redis_url
    if not url:
        adopted = connect.is_running(data)
        if adopted:
            # A run that was SIGKILLed leaves its redis-server behind (it has its own session so
            # that Ctrl-C reaches us first). Take it over, and stop it with this run.
            print(f"agentstream dev: adopting the embedded Redis an earlier run left running under "
                  f"{data.resolve()}; it stops with this run", file=sys.stderr)
        redis_proc = embedded.start(data)
        url = connect.url_for(data)
    env_key = settings.dev_api_key.reveal() if settings.dev_api_key else None
    key, ns_id, origin = asyncio.run(_dev_prepare(url, env_key, settings.dev_namespace,
                                                  None if settings.redis_url else data, args.new_key))
    pidfile = data / "dev.pid"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(os.getpid()))
    env = {**os.environ, "AGENTSTREAM_REDIS_URL": url}
    env.setdefault("AGENTSTREAM_FALLBACK_TO_BUILTIN", "true")
    worker_metrics = _worker_metrics_port(settings)
    if worker_metrics:
        env["AGENTSTREAM_WORKER_METRICS_PORT"] = str(worker_metrics)
    names = ["worker", "gateway"]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Before anything is started: a Ctrl-C at any moment from here on stops everything in order.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", name], env=env) for name in names]
    base = f"http://{settings.host}:{settings.port}"
    code = 0
    try:
        _wait_ready(base, procs, lambda: stopping)
        if not stopping:
            print(_banner(settings, base, url, ns_id, key, origin, worker_metrics), flush=True)
        while not stopping:
            for name, p in zip(names, procs, strict=True):
                if p.poll() is not None:
                    print(f"agentstream dev: {name} exited with {p.returncode}; stopping", file=sys.stderr)
                    stopping, code = True, 1
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if adopted:
            embedded.shutdown(data)
        embedded.stop(redis_proc, data)
        pidfile.unlink(missing_ok=True)
    return code


def _other_dev(data: Path) -> int | None:
    """The pid of another live `agentstream dev` on this data dir, if any."""
    try:
        pid = int((data / "dev.pid").read_text())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # gone: the pid file of a run that was killed
    return pid if b"dev" in cmdline and (b"agentstream" in cmdline or b"cli.main" in cmdline) else None


def _banner(settings: Settings, base: str, url: str, ns_id: str, key: str, origin: str, worker_metrics: int) -> str:
    # Commands that work as printed: the key expanded (or, from the environment, in double
    # quotes so the shell expands it), and the command line's full path, which a fresh
    # checkout does not have on PATH.
    if origin == "env":
        shown, header = key[:6] + "…  (from AGENTSTREAM_DEV_API_KEY)", '"Authorization: Bearer $AGENTSTREAM_DEV_API_KEY"'
    else:
        note = {"new": "new; kept in the data dir for the next run (`agentstream dev --new-key` replaces it, "
                       "`make reset` forgets everything)",
                "kept": "the one kept in the data dir"}[origin]
        shown, header = f"{key}  ({note})", f'"Authorization: Bearer {key}"'
    cli = Path(sys.executable).parent / "agentstream"
    cli_shown = os.path.relpath(cli) if not os.path.relpath(cli).startswith("..") else str(cli)
    return f"""
agentstream is up on {base}  (Redis: {url})
  namespace: {settings.dev_namespace} ({ns_id})
  api key:   {shown}
  console:   {base}/console/
  metrics:   {base}/metrics (gateway), {_worker_metrics_note(settings.host, worker_metrics)}
Try:
  curl -s {base}/v1/agents/sessions -H {header} \\
       -H 'X-Namespace: {settings.dev_namespace}' -H 'Content-Type: application/json' \\
       -d '{{"agent_config": {{}}}}'
Operate (same environment): {cli_shown} events tail <session or message id>
Stop with Ctrl-C.
"""


def _worker_metrics_port(settings: Settings) -> int:
    """The worker's metrics port in dev: the one configured, else the gateway's port + 1 if it
    is free (else off: two `make run`s side by side must not clash)."""
    if settings.worker_metrics_port:
        return settings.worker_metrics_port
    import socket

    port = settings.port + 1
    with socket.socket() as s:
        try:
            s.bind((settings.host, port))
        except OSError:
            return 0
    return port


def _worker_metrics_note(host: str, port: int) -> str:
    if not port:
        return "worker metrics off (port taken; set AGENTSTREAM_WORKER_METRICS_PORT)"
    return f"http://{host}:{port}/metrics (worker)"


DEV_KEY_FILE = "dev-api-key"


async def _dev_prepare(url: str, key: str | None, namespace: str, data: Path | None = None,
                       new_key: bool = False) -> tuple[str, str, str]:
    """The dev key and namespace id, with the demo data seeded. Returns (key, ns id, origin):
    ``env`` (AGENTSTREAM_DEV_API_KEY), ``kept`` (the key a previous run saved under the data
    dir, still valid) or ``new`` (a fresh key; the ones earlier runs printed are revoked, so a
    key pasted somewhere long ago does not stay valid forever)."""
    from shared.ids import now_ms
    from shared.stores.apikeys import KeyStore
    from shared.stores.tenancy import TenantStore, hash_key

    redis = connect.client(url)
    try:
        origin = "env"
        if key is None:
            store = KeyStore(redis)
            saved = _read_key(data) if data is not None and not new_key else None
            ns_known = await redis.get(keys_module.namespace_by_name(namespace))
            if saved and ns_known and (await store.validity([hash_key(saved)], now_ms()))[hash_key(saved)] is None:
                key, origin = saved, "kept"
            else:
                for old in await store.all():
                    if old.origin == DEV_ORIGIN and not old.revoked_ms:
                        await store.revoke(old.key_id)
                key, _ = await store.create(namespace, name="make run", origin=DEV_ORIGIN)
                origin = "new"
                if data is not None:
                    _write_key(data, key)
            ns_id = (await redis.get(keys_module.namespace_by_name(namespace))).decode()
        else:
            ns_id, _ = await TenantStore(redis).register_key(key, namespace, name="AGENTSTREAM_DEV_API_KEY")
        from cli.demo_data import seed_demo
        from dataplane.service import DataPlane

        await seed_demo(DataPlane(redis), ns_id)
        return key, ns_id, origin
    finally:
        await redis.aclose()


def _read_key(data: Path) -> str | None:
    try:
        return (data / DEV_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def _write_key(data: Path, key: str) -> None:
    data.mkdir(parents=True, exist_ok=True)
    path = data / DEV_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def _wait_ready(base: str, procs: list[subprocess.Popen[bytes]], stopping: Callable[[], bool],
                timeout_s: float = 30) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping():
        if any(p.poll() is not None for p in procs):
            return
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)


DEV_ORIGIN = "make run"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentstream", description="Agent-sessions API over Redis Streams")
    sub = p.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="embedded Redis + gateway + worker (what `make run` starts)")
    dev.add_argument("--new-key", action="store_true",
                     help="print a new dev key (revoking the kept one) instead of reusing it")
    dev.set_defaults(fn=cmd_dev)
    sub.add_parser("gateway", help="run one gateway process").set_defaults(fn=cmd_gateway)
    sub.add_parser("worker", help="run one worker process").set_defaults(fn=cmd_worker)
    keys.register(sub)
    ops.register(sub)
    bench.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"agentstream: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.fn(settings, args) or 0)
    except ConnectionError as exc:
        print(f"agentstream: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
