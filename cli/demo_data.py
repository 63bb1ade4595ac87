"""A demo namespace's data: a small engineering knowledge base in the collection ``demo-docs``.

Realistic enough to search (titles, bodies, categories, years, tags), small enough to read.
For demo namespaces and for tests that want a corpus.
"""

from __future__ import annotations

from typing import Any

from dataplane.models import AddDocumentRequest
from dataplane.service import DataPlane
from shared.errors import Conflict, NotFound

DEMO_COLLECTION = "demo-docs"
DEMO_DESCRIPTION = "Engineering knowledge base: architecture notes, runbooks, API guides and post-mortems"


def _doc(title: str, body: str, category: str, year: int, *tags: str) -> dict[str, Any]:
    return {"title": title, "body": body, "category": category, "year": year, "tags": list(tags)}


DEMO_DOCUMENTS: list[dict[str, Any]] = [
    _doc("Redis Streams consumer groups", "Workers read the inbound stream with XREADGROUP and acknowledge with "
         "XACK once a message is handled. Pending entries of a dead consumer are claimed with XAUTOCLAIM.",
         "architecture", 2024, "redis", "streams", "queues"),
    _doc("Choosing Redis Cluster hash tags", "Keys that a Lua script touches together must share a slot. Wrap "
         "the session id in braces so a session, its log and its event streams live on one shard.",
         "architecture", 2024, "redis", "cluster", "lua"),
    _doc("Server-Sent Events behind a proxy", "Disable response buffering (X-Accel-Buffering: no), send a "
         "comment heartbeat every 15 seconds and raise the proxy read timeout above the heartbeat interval.",
         "operations", 2023, "sse", "nginx", "streaming"),
    _doc("Resuming an SSE stream", "Every event carries an id. A client that reconnects sends Last-Event-ID and "
         "the gateway replays what came after it from the message's event stream before going live.",
         "api", 2024, "sse", "streaming", "resume"),
    _doc("Rate limiting with fixed windows", "A counter per API key and minute, incremented with INCR and "
         "expired with EXPIRE. Simple, cheap, and good enough when bursts at window edges are acceptable.",
         "api", 2022, "redis", "rate-limit"),
    _doc("Token bucket rate limiter in Lua", "A bucket holds tokens refilled at a steady rate; the script "
         "computes the refill from the last timestamp and takes one token atomically per request.",
         "api", 2023, "redis", "lua", "rate-limit"),
    _doc("Runbook: Redis memory pressure", "When used_memory nears maxmemory, check stream lengths and key TTLs "
         "first. Trim streams with MAXLEN, and never set an eviction policy on a queue database.",
         "operations", 2024, "redis", "runbook", "memory"),
    _doc("Runbook: worker crash loop", "Look at the last job in arq's in-progress keys. A poison message is "
         "retried until max_tries; move it aside, fix the cause, then requeue it by hand.",
         "operations", 2023, "workers", "runbook", "arq"),
    _doc("Post-mortem: duplicated answers after failover", "Two workers appended to the same message after a "
         "lease expired during a long GC pause. Fencing each append with the attempt number fixed it.",
         "incident", 2024, "workers", "fencing", "redis"),
    _doc("Post-mortem: expired TLS certificate", "The edge certificate expired on a Sunday. Renewal now runs "
         "weekly and an alert fires thirty days before expiry.", "incident", 2022, "tls", "security", "alerts"),
    _doc("API keys and hashing", "Only the SHA-256 of an API key is stored. Keys are long random tokens, so a "
         "fast hash is enough; a slow password hash would add latency to every request.",
         "security", 2023, "auth", "api-keys"),
    _doc("Namespaces and tenant isolation", "Every key carries its namespace. A request for another "
         "namespace's object answers 404 exactly like a missing one, so ids leak nothing.",
         "security", 2024, "tenancy", "auth"),
    _doc("Idempotency keys for POST requests", "Clients send Idempotency-Key; the first response is stored for "
         "a day and replayed for a retry with the same key and body.", "api", 2023, "api", "retries"),
    _doc("Pagination: cursors versus offsets", "Offsets are simple but drift when items are inserted. Cursors "
         "encode the last position and stay stable under concurrent writes.", "api", 2021, "api", "pagination"),
    _doc("BM25 in a nutshell", "BM25 scores a document by term frequency, saturated by k1, and inverse document "
         "frequency, normalised by document length with b. Lucene's variant keeps scores positive.",
         "search", 2022, "bm25", "ranking", "search"),
    _doc("Hybrid search: keywords plus vectors", "Run BM25 and a vector search side by side, then fuse the two "
         "rankings with reciprocal rank fusion. Keywords catch exact names that embeddings blur.",
         "search", 2024, "bm25", "vectors", "fusion"),
    _doc("Metadata filters before ranking", "Filtering first shrinks the candidate set, so ranking costs less "
         "and results never include documents the user may not see.", "search", 2023, "filters", "ranking"),
    _doc("Building retriever pipelines", "A retriever is an ordered list of stages: search, filter, sort and "
         "limit. Save an ad-hoc pipeline once it returns what you need.", "product", 2024, "retrievers",
         "pipelines"),
    _doc("Intent detection for agent messages", "Keyword analysis labels a request as execution, setup or "
         "ambiguous, and ambiguous requests get clarification options.", "product", 2024, "agents", "intent"),
    _doc("Agent tool confirmations", "Tools that create, update or delete ask the user first. The run pauses "
         "on a confirmation event and resumes when the answer arrives.", "product", 2024, "agents", "tools"),
    _doc("Session quotas", "Sessions may cap messages, tokens, tool calls and duration. A message over quota is "
         "refused with 403 before any work starts; one over the session's rate limit with 429.",
         "product", 2023, "sessions", "quotas"),
    _doc("Session memory", "Positive feedback stores the exchange in user memory when memory is enabled, and "
         "later prompts include the remembered facts.", "product", 2023, "sessions", "memory"),
    _doc("Graceful shutdown of the gateway", "On SIGTERM the gateway stops accepting streams, tells clients to "
         "reconnect elsewhere and waits for open responses up to a deadline.", "operations", 2024, "gateway",
         "deploys", "sse"),
    _doc("Zero-downtime deploys", "Roll workers one at a time: a stopping worker finishes its job or lets the "
         "lease expire, and another claims the message.", "operations", 2023, "deploys", "workers"),
    _doc("Observability: structured logs", "Log one JSON object per event with the session and message ids, so "
         "a single grep follows a message across gateway and worker.", "operations", 2022, "logging",
         "observability"),
    _doc("Metrics that matter for streaming APIs", "Track time to first event, events per second, open streams "
         "and reconnects per minute. Averages hide the tail; report p99.", "operations", 2024, "metrics",
         "observability", "sse"),
    _doc("Load testing SSE endpoints", "Open thousands of concurrent streams with a small client pool and "
         "measure first-event latency while messages are sent at a steady rate.", "operations", 2024,
         "benchmarks", "sse"),
    _doc("msgspec for fast JSON", "Define structs once, decode with a typed decoder and let validation errors "
         "name the field path. Encoding is several times faster than the standard library.",
         "architecture", 2023, "python", "json", "msgspec"),
    _doc("asyncio cancellation pitfalls", "Catch CancelledError only to clean up and always re-raise it. A "
         "swallowed cancellation leaves tasks running after a client disconnects.", "architecture", 2022,
         "python", "asyncio"),
    _doc("Starlette lifespan and resources", "Create clients in the lifespan handler and close them there; "
         "module-level clients leak across tests and event loops.", "architecture", 2023, "python",
         "starlette"),
    _doc("Testing with fakeredis and real Redis", "Use fakeredis where Redis is incidental and a real server "
         "where its semantics matter: streams, Lua scripts, blocking reads.", "architecture", 2024, "testing",
         "redis"),
    _doc("Uploading objects to buckets", "Large files go to a bucket first; a collection's extractor then "
         "turns each object into searchable documents.", "data", 2023, "buckets", "ingestion"),
    _doc("Collections and feature extractors", "A collection holds documents produced by one extractor: text "
         "chunks, video scenes or image embeddings.", "data", 2024, "collections", "extractors"),
    _doc("Video scene splitting", "Scenes are cut where frame histograms change sharply; each scene becomes a "
         "document with start and end timestamps.", "data", 2022, "video", "extractors"),
    _doc("Face detection in images", "Detected faces are cropped, embedded and stored with their bounding "
         "boxes so that a face search can find the same person elsewhere.", "data", 2023, "images", "faces"),
    _doc("Audio transcription pipeline", "Audio is split on silences, transcribed, and each segment stored with "
         "its timestamps for full-text search.", "data", 2024, "audio", "transcription"),
    _doc("Data retention policy", "Sessions expire after seven days of inactivity; event streams are trimmed "
         "after delivery and deleted with the session.", "security", 2024, "retention", "sessions"),
    _doc("Encrypting data at rest", "Disks are encrypted by the provider; secrets in configuration are read "
         "from the environment and never logged.", "security", 2022, "encryption", "secrets"),
    _doc("Release notes 1.2: retriever stages", "Adds sort and limit stages, range filters on numeric fields, "
         "and stage statistics in every execution response.", "product", 2024, "release-notes",
         "retrievers"),
    _doc("Release notes 1.1: resumable streams", "Streams can be resumed with Last-Event-ID; heartbeats keep "
         "idle connections open through proxies.", "product", 2023, "release-notes", "sse", "resume"),
]


async def seed_demo(dataplane: DataPlane, ns_id: str) -> bool:
    """Creates ``demo-docs`` with the demo documents; does nothing if it exists. Returns whether
    it seeded."""
    try:
        await dataplane.get_collection(ns_id, DEMO_COLLECTION)
        return False
    except NotFound:
        pass
    try:
        await dataplane.create_collection(ns_id, DEMO_COLLECTION, DEMO_DESCRIPTION, {"demo": True})
    except Conflict:  # another process seeded it first
        return False
    await dataplane.add_documents(ns_id, DEMO_COLLECTION,
                                  [AddDocumentRequest(metadata=dict(d)) for d in DEMO_DOCUMENTS])
    return True
