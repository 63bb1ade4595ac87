"""Run the gateway under uvicorn, with a shutdown that hands clients over.

On SIGTERM: stop taking new messages (503 + Retry-After), tell every open SSE stream to
reconnect (``retry:`` then close; the client resumes with Last-Event-ID on another replica),
then let uvicorn finish. Kubernetes: a preStop sleep of a few seconds lets the endpoint leave
the load balancer first; terminationGracePeriodSeconds must exceed it plus ~5 s.
"""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.limits import raise_fd_limit
from gateway.protocol import protocol_class
from shared import logs, tracing
from shared.settings import Settings


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
        app = self.config.loaded_app
        services = getattr(getattr(getattr(app, "app", app), "state", None), "services", None)
        if services is None:  # middleware wraps the app; find the Starlette instance
            inner = app
            while inner is not None and services is None:
                services = getattr(getattr(inner, "state", None), "services", None)
                inner = getattr(inner, "app", None)
        if services is not None:
            services.draining = True
            services.hub.close_all("shutdown")
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


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
        _Server(config).run()
    finally:
        tracing.shutdown()
