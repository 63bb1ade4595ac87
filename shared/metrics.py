"""Every Prometheus metric of both processes, defined once, with its label values bounded.

A label value is never an id (session, message, key, request): every label takes its values
from a closed set named here (``LABELS``), and ``bounded`` folds anything else into ``other``.
That keeps the number of series fixed however much traffic there is, and lets a test check
every value a scrape shows against these sets.

Both processes import this module; each exposes only what it updates (a gateway's worker-side
families stay at zero, and the other way round). The gateway serves ``/metrics``; a worker serves
it on ``AGENTSTREAM_WORKER_METRICS_PORT`` (``worker/observe.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from shared.events import EVENT_TYPES

OTHER = "other"

# Fast paths (an append, a first event) and slow ones (a model answer) on one scale.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# The closed sets of label values. ``route`` is the route template (or ``unmatched``): filled by
# the gateway at start-up from its own routing table, never from a request path.
LABELS: dict[str, set[str]] = {
    "method": {"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", OTHER},
    "status": {str(s) for s in range(100, 600)},
    "route": {"unmatched", "/metrics"},
    "stream": {"message", "session"},
    "outcome": {"exact", "reset", "complete_204", "completed", "paused", "fenced", "failed", "released",
                "ended", OTHER},
    "reason": {"", "cursor_expired", "cursor_ahead", "stream_expired", "stream_lost", "retry", OTHER},
    "limit": {"rate_limited", "too_many_streams", "session_rate_limited", OTHER},
    "type": set(EVENT_TYPES) | {OTHER},
    "kind": {"first", "retry", "retryable", "fatal", "deadline_exceeded", "max_tries_exceeded", "job_lost",
             "confirmation_expired", "enqueued_missing_job", "restarted_unclaimed", "restarted_expired_lease",
             OTHER},
    "provider": {"builtin", "anthropic", "openai", OTHER},
    "phase": {"first_token", "total"},
    "direction": {"input", "output"},
}


def bounded(label: str, value: str) -> str:
    """``value`` if it is one of the label's known values, else ``other``."""
    return value if value in LABELS[label] else OTHER



# -- gateway: HTTP and event streams ------------------------------------------------------------

REQUESTS = Counter("agentstream_http_requests", "HTTP requests answered, by route template and status",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram("agentstream_http_response_start_seconds",
                            "Time from request to response headers, by route template", ["method", "route"],
                            buckets=_FAST)
OPEN_STREAMS = Gauge("agentstream_open_event_streams", "Event streams (SSE) open now", ["stream"])
EVENTS_DELIVERED = Counter("agentstream_events_delivered", "Events written to SSE clients", ["stream"])
FIRST_EVENT_SECONDS = Histogram("agentstream_time_to_first_event_seconds",
                                "Time from the request to its first event on the wire", ["stream"],
                                buckets=_SLOW)
RESUMES = Counter("agentstream_resumes", "Reconnections with Last-Event-ID, by outcome (reset reason, 204)",
                  ["outcome", "reason"])
HUB_FALLBACKS = Counter("agentstream_hub_fallbacks",
                        "Live subscriptions that overflowed their buffer and fell back to stream reads")
RATE_LIMITED = Counter("agentstream_rate_limited", "429 answers, by the limit that was hit", ["limit"])

# -- worker: jobs, appends, attempts --------------------------------------------------------------

JOBS_RUNNING = Gauge("agentstream_jobs_running", "Message jobs running in this worker now")
JOB_SECONDS = Histogram("agentstream_job_duration_seconds", "Message job duration, by outcome", ["outcome"],
                        buckets=_SLOW)
EVENTS_APPENDED = Counter("agentstream_events_appended", "Events appended to message streams", ["type"])
APPEND_SECONDS = Histogram("agentstream_append_seconds", "Latency of one fenced append (one round trip)",
                           buckets=_FAST)
ATTEMPTS = Counter("agentstream_attempts", "Attempts claimed: first, or a retry after an earlier attempt",
                   ["kind"])
TAKEOVERS = Counter("agentstream_takeovers",
                    "Messages a worker took over from an earlier attempt (crash, stall, shutdown)")
FENCED_APPENDS = Counter("agentstream_fenced_appends",
                         "Appends refused because the attempt was superseded or the message had ended")
LATE_RENEWALS = Counter("agentstream_late_lease_renewals",
                        "Lease renewals that came after the lease had already run out")
PROVIDER_SECONDS = Histogram("agentstream_provider_seconds", "Model call latency: first token and whole step",
                             ["provider", "phase"], buckets=_SLOW)
PROVIDER_TOKENS = Counter("agentstream_provider_tokens", "Tokens reported by the model provider",
                          ["provider", "direction"])
PROVIDER_ERRORS = Counter("agentstream_provider_errors", "Model provider failures", ["provider", "kind"])
REAPER_ACTIONS = Counter("agentstream_reaper_actions", "What the reaper did, by kind", ["kind"])


def appended(batch: list[tuple[str, bytes]], seconds: float) -> None:
    """One append that went through: its latency, and its events by type (one counter update
    per type, not per event). The store's and the worker appender's appends both report here."""
    APPEND_SECONDS.observe(seconds)
    counts: dict[str, int] = {}
    for t, _ in batch:
        counts[t] = counts.get(t, 0) + 1
    for t, n in counts.items():
        EVENTS_APPENDED.labels(bounded("type", t)).inc(n)


def register_routes(templates: Iterable[str]) -> None:
    """The gateway's route templates are the only paths a ``route`` label may hold."""
    LABELS["route"].update(templates)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


class LeaseClock:
    """Counts renewals that came late: more than a lease after the previous one."""

    __slots__ = ("lease_s", "_last")

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self._last = time.monotonic()

    def renewed(self) -> None:
        now = time.monotonic()
        if now - self._last > self.lease_s:
            LATE_RENEWALS.inc()
        self._last = now
