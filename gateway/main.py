"""Run the gateway under uvicorn, with a shutdown that hands clients over.

On SIGTERM: stop taking new messages (503 + Retry-After), tell every open SSE stream to
reconnect (``retry:`` then close; the client resumes with Last-Event-ID on another replica),
keep listening for ``AGENTSTREAM_GATEWAY_DRAIN_S`` so that a send still routed here gets that
503 rather than a refused connection, then let uvicorn finish. A second signal, or SIGINT (a
Ctrl-C), stops at once. Kubernetes: a preStop sleep of a few seconds lets the endpoint leave
the load balancer first; terminationGracePeriodSeconds must exceed it plus the drain plus ~5 s.
"""

from __future__ import annotations

import asyncio
import signal

import uvicorn

from gateway.app import create_app
from gateway.limits import raise_fd_limit
from gateway.protocol import protocol_class
from shared import logs, tracing
from shared.settings import Settings


class _Server(uvicorn.Server):
    drain_s: float = 0.0

    def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
        services = self._services()
        first = services is not None and not services.draining
        if services is not None:
            services.draining = True
            services.hub.close_all("shutdown")
        if first and sig == signal.SIGTERM and self.drain_s > 0:
            # uvicorn closes its listener at once: a send routed here before the load balancer
            # noticed would be refused with no answer at all. Answer it 503 `draining` instead.
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(loop.call_later, self.drain_s, self._exit, sig, frame)
            return
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: object) -> None:
        super().handle_exit(sig, frame)  # type: ignore[arg-type]

    def _services(self):  # type: ignore[no-untyped-def]
        app = self.config.loaded_app
        services = getattr(getattr(getattr(app, "app", app), "state", None), "services", None)
        if services is None:  # middleware wraps the app; find the Starlette instance
            inner = app
            while inner is not None and services is None:
                services = getattr(getattr(inner, "state", None), "services", None)
                inner = getattr(inner, "app", None)
        return services


def run(settings: Settings, redis_url: str | None = None) -> None:
    raise_fd_limit()
    logs.configure(settings.log_level, settings.log_format)
    tracing.setup(settings.otel_endpoint, "agentstream-gateway")
    # log_config=None: uvicorn's lines go through our handler; its access log stays off (the
    # middleware writes one access line per request, without query strings).
    config = uvicorn.Config(create_app(settings, redis_url), host=settings.host, port=settings.port,
                            log_level=settings.log_level, loop="uvloop",
                            http=protocol_class(settings.max_request_line_bytes, settings.max_header_bytes),
                            timeout_graceful_shutdown=5, access_log=False, lifespan="on", log_config=None)
    try:
        server = _Server(config)
        server.drain_s = settings.gateway_drain_s
        server.run()
    finally:
        tracing.shutdown()
