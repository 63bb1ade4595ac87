"""Every Redis name the project uses, in one place.

One prefix. Keys that belong to a session carry the session id as a Cluster hash tag
(``{ses_...}``) so that a session, its log, its messages and their event streams share one slot
and the Lua scripts that touch several of them stay legal in Cluster.
"""

from __future__ import annotations

PREFIX = "as:"

# Process-wide keys. On a Redis Cluster each is a single key in its own slot, except INBOUND,
# QUEUE and arq's keys below, which live on the queue Redis (AGENTSTREAM_QUEUE_URL) so that
# ENQUEUE and START_JOBS stay one script each (README "Scaling out").
INBOUND = PREFIX + "inbound"  # stream: one entry per accepted message; wakes workers
ACTIVE = PREFIX + "active"  # zset msg_id -> next check time (ms): what the reaper watches
WORKERS = PREFIX + "workers"  # zset worker_id -> last heartbeat (ms)
COMPACT = PREFIX + "compact"  # zset "ses_id/msg_id" -> when its stream is due for compaction (ms)
QUEUE = PREFIX + "queue"  # arq queue name
JOB_FUNCTION = "run_message"  # arq function name

# arq's own key prefixes, named here so the reaper's use of them is visible
ARQ_JOB = "arq:job:"
ARQ_IN_PROGRESS = "arq:in-progress:"
ARQ_RETRY = "arq:retry:"
ARQ_RESULT = "arq:result:"


def api_key(key_hash: str) -> str:
    return f"{PREFIX}apikey:{key_hash}"


# API key management and stream tokens (issue 21)
API_KEYS = PREFIX + "apikeys"  # zset key id -> created (ms): every key, for `keys list`
STREAM_TOKEN_SECRET = PREFIX + "streamtoken:secret"  # HMAC secret, when the setting is unset


def api_key_id(key_id: str) -> str:
    """Public key id (``key_...``) -> the key's hash."""
    return f"{PREFIX}apikeyid:{key_id}"


def namespace(ns_id: str) -> str:
    return f"{PREFIX}ns:{ns_id}"


def namespace_by_name(name: str) -> str:
    return f"{PREFIX}nsname:{name}"


def namespace_sessions(ns_id: str) -> str:
    return f"{PREFIX}ns:{ns_id}:sessions"


def namespace_terminated_sessions(ns_id: str) -> str:
    """zset session id -> created ms: the terminated ones (``namespace_sessions`` holds them all)."""
    return f"{PREFIX}ns:{ns_id}:sessions:terminated"


def namespace_terminated_indexed(ns_id: str) -> str:
    """Set once the sessions terminated before that index existed were added to it."""
    return f"{PREFIX}ns:{ns_id}:sessions:terminated:indexed"


def rate(key_hash: str, window: int) -> str:
    return f"{PREFIX}rate:{key_hash}:{window}"


def open_streams(key_hash: str) -> str:
    return f"{PREFIX}streams:{key_hash}"


def message_session(msg_id: str) -> str:
    """msg_id -> session id, so tools that get only a message id can find its keys."""
    return f"{PREFIX}msgses:{msg_id}"


# Session-scoped keys (hash tag = session id)


def session(ses_id: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:session"


def session_log(ses_id: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:log"


def session_memory(ses_id: str) -> str:
    """List of exchanges the user rated positively (newest first, capped)."""
    return f"{PREFIX}{{{ses_id}}}:memory"


def session_rate(ses_id: str) -> str:
    """Fixed one-minute window counter for rate_limit_messages_per_minute."""
    return f"{PREFIX}{{{ses_id}}}:rate"


def message(ses_id: str, msg_id: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:msg:{msg_id}"


def events(ses_id: str, msg_id: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:ev:{msg_id}"


def events_packed(ses_id: str, msg_id: str) -> str:
    """A compacted message's kept events, one compressed string (shared/stores/compaction.py)."""
    return f"{PREFIX}{{{ses_id}}}:evz:{msg_id}"


def live_channel(ses_id: str, msg_id: str) -> str:
    """Pub/sub channel that carries each new entry of events(ses_id, msg_id)."""
    return f"{PREFIX}{{{ses_id}}}:live:{msg_id}"


def session_pending(ses_id: str) -> str:
    """List of the session's messages waiting for its turn, in acceptance order (issue 20)."""
    return f"{PREFIX}{{{ses_id}}}:pending"


def idempotency(ses_id: str, key_hash: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:idem:{key_hash}"


def confirmation(ses_id: str, conf_id: str) -> str:
    return f"{PREFIX}{{{ses_id}}}:conf:{conf_id}"


# Data plane (namespace-scoped)


def collections(ns_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:cols"  # hash col_id -> record json


def collection_names(ns_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:colnames"  # hash name -> col_id


def documents(ns_id: str, col_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:docs:{col_id}"  # hash doc_id -> record json


def collection_version(ns_id: str, col_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:docver:{col_id}"  # bumped on every write; index cache key


def retrievers(ns_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:rets"  # hash ret_id -> record json


def retriever_names(ns_id: str) -> str:
    return f"{PREFIX}{{{ns_id}}}:retnames"  # hash name -> ret_id
