"""OpenTelemetry traces, optional: ``pip install agentstream[otel]`` and set an endpoint.

Enabled when ``AGENTSTREAM_OTEL_ENDPOINT`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``) is
set and the ``otel`` extra is installed; otherwise every function here is a cheap no-op, so the
call sites need no guard. Spans go to ``<endpoint>/v1/traces`` over OTLP/HTTP (protobuf).

The gateway's request span is the root (or joins the caller's ``traceparent``); the send path
stores the W3C ``traceparent`` of that span in the message record, and the worker starts the
job's span from it, so the worker's steps (intent, tools, retrievers, model) join the request's
trace across processes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

log = logging.getLogger("agentstream.tracing")

_tracer: Any = None
_provider: Any = None


def setup(endpoint: str | None, service: str) -> bool:
    """Install the exporter for this process; False (and no-ops) without endpoint or extra."""
    global _tracer, _provider
    if not endpoint:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing: an endpoint is set but the otel extra is not installed "
                    "(pip install 'agentstream[otel]'); traces are off")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    _provider = provider
    _tracer = provider.get_tracer("agentstream")
    del trace  # the global provider stays untouched: ours is passed explicitly
    return True


def shutdown() -> None:
    """Flush what is batched (process exit)."""
    global _tracer, _provider
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


@contextlib.contextmanager
def span(name: str, parent: str | None = None, kind: str = "internal", **attributes: Any) -> Iterator[Any]:
    """A span around the block, child of the current one or of the ``parent`` traceparent."""
    if _tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    ctx = _extract(parent) if parent else None
    span_kind = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER}.get(kind, SpanKind.INTERNAL)
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with _tracer.start_as_current_span(name, context=ctx, kind=span_kind, attributes=attrs) as s:
        yield s


def traced(name: str) -> Callable[[F], F]:
    """A span around each call of an async function."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return await fn(*args, **kwargs)
            with span(name):
                return await fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def set_attributes(s: Any, **attributes: Any) -> None:
    if s is not None:
        s.set_attributes({k: v for k, v in attributes.items() if v is not None})


def traceparent() -> str | None:
    """The W3C traceparent of the current span, to carry to another process."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def from_headers(headers: Mapping[str, str]) -> str | None:
    """A caller's traceparent header, if it sent one (the request span joins its trace)."""
    return headers.get("traceparent") if _tracer is not None else None


def _extract(tp: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": tp})
