"""The Starlette application: lifespan-owned services, routes, error mapping."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from arq.connections import ArqRedis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import errors
from gateway.context import Services, services
from gateway.hub import Hub
from gateway.keywatch import KeyWatch, StreamGuard
from gateway.limits import Leases, OpenStreams, stream_ceiling
from gateway.observe import Observe
from gateway.routes import console as console_routes
from gateway.routes import messages as message_routes
from gateway.routes import sessions as session_routes
from gateway.routes import tokens as token_routes
from gateway.shard_hub import ShardedHub
from shared import backends, keys, metrics
from shared.ids import now_ms
from shared.settings import Settings
from shared.stores.apikeys import KeyStore
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore
from shared.stores.tenancy import TenantStore

WORKER_ALIVE_MS = 10_000


def create_app(settings: Settings, redis_url: str | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend = backends.from_settings(settings, redis_url)
        redis = backend.client(max_connections=settings.redis_pool_size)
        await backend.check(redis)
        # arq's keys and the inbound stream: the data Redis, or their own Redis on a cluster
        queue = redis if backend.queue_shared else backend.queue_client(max_connections=settings.redis_pool_size)
        arq = ArqRedis(connection_pool=queue.connection_pool, job_serializer=msgspec.json.encode,
                       job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE)
        hub = live_hub(backend, redis, settings)
        await hub.start()
        keywatch = KeyWatch(KeyStore(redis), settings.key_check_s)
        keywatch.start()
        leases = Leases(redis, settings.heartbeat_s)
        leases.start()
        app.state.services = Services(settings=settings, redis=redis, arq=arq, hub=hub,
                                      messages=MessageStore(redis, settings, queue=arq),
                                      sessions=SessionStore(redis, settings), tenants=TenantStore(redis),
                                      keywatch=keywatch, leases=leases,
                                      streams=OpenStreams(stream_ceiling(settings)))
        # Everything allocated so far lives as long as the process: keep it out of the garbage
        # collector's generations, which shortens the gen2 pauses that showed in the p99 (bench).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await keywatch.stop()
            await leases.stop()
            await hub.stop()
            if queue is not redis:
                await queue.aclose()
            await redis.aclose()

    # Observe outermost: it sees every answer, CORS ones too. StreamGuard ends open streams
    # whose key is revoked or expires (gateway/keywatch.py).
    middleware = [Middleware(Observe), Middleware(StreamGuard)]
    if settings.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                     allow_methods=["GET", "POST", "PATCH", "DELETE"],
                                     allow_headers=["Authorization", "X-Namespace", "Content-Type",
                                                    "Last-Event-ID", "Idempotency-Key", "X-Agentstream-Multitask"],
                                     expose_headers=["X-Message-Id", "Content-Location", "X-Stream-Token"],
                                     allow_credentials=False))
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *session_routes.ROUTES,
        *message_routes.ROUTES,
        *token_routes.ROUTES,
        *_optional_routes(),
        *console_routes.ROUTES,
    ]
    metrics.register_routes(str(getattr(r, "path", "")) for r in routes)
    return GatewayApp(routes=routes, lifespan=lifespan, middleware=middleware,
                      exception_handlers=errors.HANDLERS)  # type: ignore[arg-type]


class GatewayApp(Starlette):
    """Starlette, except that an exception its error handler has answered (and logged, in one
    line) stops there: Starlette re-raises it for the server, and uvicorn would log its whole
    traceback once more for every such request (issue 15.3)."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()

        async def answered(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await inner(scope, receive, send)
            except Exception:
                if scope["type"] != "http":
                    raise  # lifespan failures must stop the process
        return answered


def live_hub(backend: backends.Backend, redis: Any, settings: Settings) -> Hub:
    """One SUBSCRIBE connection to the primary (asked of the sentinels at each connect), or on a
    cluster one SSUBSCRIBE connection per shard that has subscribers."""
    if backend.sharded:
        return ShardedHub(redis, buffer=settings.subscriber_buffer, heartbeat_s=settings.heartbeat_s)
    return Hub(backend.primary_url, buffer=settings.subscriber_buffer, heartbeat_s=settings.heartbeat_s)


def _optional_routes() -> list[Route]:
    out: list[Route] = []
    for module in ("gateway.routes.events", "gateway.routes.confirmations", "gateway.routes.dataplane",
                   "gateway.routes.openapi"):
        try:
            mod = __import__(module, fromlist=["ROUTES"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        out.extend(mod.ROUTES)
    return out


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, object] = {"redis": False, "workers": 0, "live_path": svc.hub.connected,
                                 "draining": svc.draining}
    workers = 0
    try:
        await svc.redis.ping()
        checks["redis"] = True
        workers = await svc.redis.zcount(keys.WORKERS, now_ms() - WORKER_ALIVE_MS, "+inf")
        checks["workers"] = workers
    except (ConnectionError, OSError, TimeoutError) as exc:
        checks["error"] = str(exc)
    except Exception as exc:  # redis-py's own error classes
        checks["error"] = str(exc)
    ready = bool(checks["redis"]) and workers > 0 and svc.hub.connected and not svc.draining
    return Response(msgspec.json.encode({"status": "ready" if ready else "not_ready", **checks}),
                    status_code=200 if ready else 503, media_type="application/json",
                    headers=None if ready else {"Retry-After": "1"})
