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
    redis_proc = None
    url = settings.redis_url
    if not url:
        redis_proc = embedded.start(settings.data_dir)
        url = connect.url_for(settings.data_dir)
    key = settings.dev_api_key.reveal() if settings.dev_api_key else None
    key, ns_id, generated = asyncio.run(_dev_prepare(url, key, settings.dev_namespace))
    env = {**os.environ, "AGENTSTREAM_REDIS_URL": url}
    env.setdefault("AGENTSTREAM_FALLBACK_TO_BUILTIN", "true")
    worker_metrics = _worker_metrics_port(settings)
    if worker_metrics:
        env["AGENTSTREAM_WORKER_METRICS_PORT"] = str(worker_metrics)
    names = ["worker", "gateway"]
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", name], env=env) for name in names]
    base = f"http://{settings.host}:{settings.port}"
    _wait_ready(base, procs)
    shown = key if generated else (key[:6] + "…  (from AGENTSTREAM_DEV_API_KEY)")
    revoked_note = "  (keys printed by earlier `make run`s are revoked)" if generated else ""
    print(f"""
agentstream is up on {base}  (Redis: {url})
  namespace: {settings.dev_namespace} ({ns_id})
  api key:   {shown}{revoked_note}
  console:   {base}/console/
  metrics:   {base}/metrics (gateway), {_worker_metrics_note(settings.host, worker_metrics)}
Try:
  curl -N {base}/v1/agents/sessions -H 'Authorization: Bearer {key if generated else '$AGENTSTREAM_DEV_API_KEY'}' \\
       -H 'X-Namespace: {settings.dev_namespace}' -H 'Content-Type: application/json' \\
       -d '{{"agent_config": {{}}}}'
Stop with Ctrl-C.
""", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
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
        embedded.stop(redis_proc, settings.data_dir)
    return code


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


async def _dev_prepare(url: str, key: str | None, namespace: str) -> tuple[str, str, bool]:
    from shared.stores.apikeys import KeyStore
    from shared.stores.tenancy import TenantStore

    redis = connect.client(url)
    try:
        generated = key is None
        if key is None:
            # Each `make run` prints a new key; the ones earlier runs printed stop working, so a
            # key pasted somewhere long ago does not stay valid forever.
            store = KeyStore(redis)
            for old in await store.all():
                if old.origin == DEV_ORIGIN and not old.revoked_ms:
                    await store.revoke(old.key_id)
            key, _ = await store.create(namespace, name="make run", origin=DEV_ORIGIN)
            ns_id = (await redis.get(keys_module.namespace_by_name(namespace))).decode()
        else:
            ns_id, _ = await TenantStore(redis).register_key(key, namespace, name="AGENTSTREAM_DEV_API_KEY")
        try:
            from cli.demo_data import seed_demo
            from dataplane.service import DataPlane

            await seed_demo(DataPlane(redis), ns_id)
        except ModuleNotFoundError:
            pass
        return key, ns_id, generated
    finally:
        await redis.aclose()


def _wait_ready(base: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 30) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
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
    sub.add_parser("dev", help="embedded Redis + gateway + worker (what `make run` starts)").set_defaults(fn=cmd_dev)
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
