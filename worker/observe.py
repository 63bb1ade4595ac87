"""The worker's observability boundary: the job wrapper, traced models and tools, /metrics.

* ``job(fn)`` wraps the arq job function: the log context (session, message, namespace,
  attempt once claimed), the job's span joined to the request's trace through the
  ``traceparent`` the gateway stored in the message record, jobs running and job duration.
* ``model(m)`` wraps a model: a span per step, provider latency (first token, whole step),
  tokens and errors. ``traced_tools`` gives each tool a span.
* ``serve(settings)`` answers ``GET /metrics`` and ``GET /healthz`` on
  ``AGENTSTREAM_WORKER_METRICS_PORT``. It runs on the worker's own event loop on purpose: a loop
  that is blocked stops answering ``/healthz``, which is what a liveness probe should see.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from shared import keys, logs, metrics, tracing
from shared.settings import Settings
from worker.models.base import Model, StepEvent, TextDelta, Turn, Usage
from worker.models.errors import ProviderError
from worker.tools.base import Tool, ToolContext, ToolOutcome

log = logging.getLogger("agentstream.worker")

JobFn = Callable[..., Awaitable[str]]


def job(fn: JobFn) -> JobFn:
    @functools.wraps(fn)
    async def run(ctx: dict[str, Any], ses_id: str, msg_id: str) -> str:
        token = logs.start(session_id=ses_id, message_id=msg_id)
        parent = None
        deps = ctx.get("deps")
        if deps is not None:
            with contextlib.suppress(Exception):
                ns, parent = await deps.redis.hmget(keys.message(ses_id, msg_id), ["namespace_id", "traceparent"])
                logs.bind(namespace_id=ns.decode() if ns else None)
                parent = parent.decode() if parent else None
        started = time.perf_counter()
        outcome = "ended"
        metrics.JOBS_RUNNING.inc()
        try:
            with tracing.span("message.run", parent=parent, kind="consumer", **{
                    "agentstream.session_id": ses_id, "agentstream.message_id": msg_id}) as span:
                outcome = await fn(ctx, ses_id, msg_id)
                tracing.set_attributes(span, **{"agentstream.outcome": outcome,
                                                "agentstream.attempt": logs.current().get("attempt")})
            return outcome
        except asyncio.CancelledError:
            outcome = "released"
            raise
        except Exception:
            outcome = "failed"
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.JOBS_RUNNING.dec()
            metrics.JOB_SECONDS.labels(metrics.bounded("outcome", outcome)).observe(seconds)
            log.info("message job ended: %s after %.1f ms", outcome, seconds * 1000)
            logs.reset(token)

    return run


def _provider(model: Model) -> str:
    return metrics.bounded("provider", type(model).__name__.lower().removesuffix("model"))


class ObservedModel:
    """A model whose steps are timed, counted and traced; otherwise the model itself."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.provider = _provider(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        started = time.perf_counter()
        first = True
        with tracing.span("model.step", **{"agentstream.provider": self.provider, "agentstream.model": turn.model}) as s:
            try:
                async for ev in self.inner.step(turn):
                    if first and isinstance(ev, TextDelta):
                        first = False
                        metrics.PROVIDER_SECONDS.labels(self.provider, "first_token").observe(
                            time.perf_counter() - started)
                    elif isinstance(ev, Usage):
                        metrics.PROVIDER_TOKENS.labels(self.provider, "input").inc(ev.input_tokens)
                        metrics.PROVIDER_TOKENS.labels(self.provider, "output").inc(ev.output_tokens)
                        tracing.set_attributes(s, **{"gen_ai.usage.input_tokens": ev.input_tokens,
                                                     "gen_ai.usage.output_tokens": ev.output_tokens})
                    yield ev
            except ProviderError as exc:
                metrics.PROVIDER_ERRORS.labels(self.provider, "retryable" if exc.retryable else "fatal").inc()
                raise
            finally:
                metrics.PROVIDER_SECONDS.labels(self.provider, "total").observe(time.perf_counter() - started)


def model(inner: Model) -> Model:
    return inner if isinstance(inner, ObservedModel) else ObservedModel(inner)  # type: ignore[return-value]


def traced_tools(tools: dict[str, Tool]) -> dict[str, Tool]:
    def wrap(name: str, tool: Tool) -> Tool:
        async def run(ctx: ToolContext, inputs: dict[str, Any]) -> ToolOutcome:
            with tracing.span(f"tool {name}", **{"agentstream.tool": name}):
                return await tool(ctx, inputs)

        return run

    return {name: wrap(name, tool) for name, tool in tools.items()}


# -- /metrics and /healthz ------------------------------------------------------------------------

PATHS = ("/metrics", "/healthz")  # what the metrics port answers (probes and scrapes use these)

async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            status, ctype, body = b"405 Method Not Allowed", b"text/plain", b"GET only\n"
        elif path == b"/metrics":
            data, content_type = metrics.exposition()
            status, ctype, body = b"200 OK", content_type.encode(), data
        elif path == b"/healthz":
            status, ctype, body = b"200 OK", b"application/json", b'{"status":"ok"}'
        else:
            status, ctype, body = b"404 Not Found", b"text/plain", b"/metrics or /healthz\n"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                     + (body if method != b"HEAD" else b""))
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(settings: Settings) -> asyncio.Server | None:
    if not settings.worker_metrics_port:
        return None
    server = await asyncio.start_server(_answer, settings.host, settings.worker_metrics_port)
    log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.worker_metrics_port)
    return server


def on_startup(startup: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def run(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        ctx["deps"].tools = traced_tools(ctx["deps"].tools)
        ctx["metrics_server"] = await serve(ctx["settings"])

    return run


def on_shutdown(shutdown: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def run(ctx: dict[str, Any]) -> None:
        server = ctx.pop("metrics_server", None)
        if server is not None:
            server.close()
        await shutdown(ctx)

    return run
