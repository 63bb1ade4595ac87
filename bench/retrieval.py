"""Retrieval at scale (issue 5): a 100,000-document collection (20,000 with --quick).

Measures, on one embedded Redis:
* ingestion through the data plane (batches of 1,000 documents);
* the BM25 search stage: the first query (which builds the index) and p50/p99 over many
  queries once the index is cached (``dataplane.retrieval.Engine``, the code the tools run);
* a full agent turn through a real gateway and worker (POST ``stream: false``, the built-in
  model runs list_collections + an ad-hoc BM25 pipeline over the big collection), p50/p99.

Run: ``python -m bench.retrieval [--quick]`` (``make bench`` runs it after the gateway scenarios).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Cluster
from bench.stats import summary
from dataplane.models import AddDocumentRequest
from dataplane.retrieval import Engine
from dataplane.service import DataPlane
from shared import connect
from shared.stores.tenancy import TenantStore, new_api_key

WORDS = ("latency throughput cache replica shard index vector stream queue retry timeout lease fence "
         "payment checkout search auth inventory billing invoice refund customer order shipment "
         "warehouse kafka redis postgres nginx kubernetes deploy rollback incident outage alert "
         "dashboard metric trace span sample budget quota limit token session agent tool").split()


# A Zipf-like vocabulary: the domain words above are the frequent head, then a long tail of
# rarer terms, so a query matches a realistic fraction of the corpus rather than all of it.
TAIL = [f"{a}{b}" for a in ("re", "de", "pre", "sub", "over", "inter", "multi", "auto", "co", "un")
        for b in ("sync", "batch", "frame", "probe", "patch", "scope", "graph", "route", "signal", "parse",
                  "merge", "split", "cache", "shard", "drain", "fence", "lease", "claim", "trace", "queue")]
VOCAB = list(WORDS) + TAIL
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCAB))]


def _text(rng: random.Random, k: int) -> str:
    return " ".join(rng.choices(VOCAB, weights=WEIGHTS, k=k))


def _doc(rng: random.Random, i: int) -> dict[str, Any]:
    title = _text(rng, 4)
    body = _text(rng, 40)
    return {"title": f"{title} #{i}", "body": body, "year": 2020 + i % 7, "team": rng.choice(WORDS[:8])}


async def run(quick: bool) -> dict[str, Any]:
    n_docs = 20_000 if quick else 100_000
    n_queries = 100 if quick else 300
    n_turns = 20 if quick else 60
    rng = random.Random(42)
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="as-bench-retrieval-")))
    cluster.start_redis()
    redis = connect.client(cluster.redis_url, max_connections=4)
    out: dict[str, Any] = {"documents": n_docs}
    try:
        key = new_api_key()
        ns_id, _ = await TenantStore(redis).register_key(key, "bench-retrieval")
        dp = DataPlane(redis)
        col = await dp.create_collection(ns_id, "big", "synthetic engineering notes")
        t0 = time.perf_counter()
        for start in range(0, n_docs, 1000):
            batch = [AddDocumentRequest(metadata=_doc(rng, i)) for i in range(start, min(start + 1000, n_docs))]
            await dp.add_documents(ns_id, "big", batch)
        out["ingest_s"] = round(time.perf_counter() - t0, 2)

        engine = Engine(dp)
        stages = [{"stage_name": "search", "config": {"stage_id": "bm25_search",
                                                      "parameters": {"query": "redis lease timeout"}}}]
        t0 = time.perf_counter()
        await engine.execute(ns_id, [col.collection_id], stages, limit=10)
        out["first_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)  # builds the index
        samples = []
        for _ in range(n_queries):
            q = " ".join(rng.choices(VOCAB, k=2))
            stages[0]["config"]["parameters"]["query"] = q
            t0 = time.perf_counter()
            await engine.execute(ns_id, [col.collection_id], stages, limit=10)
            samples.append((time.perf_counter() - t0) * 1000)
        out["search_stage_ms"] = summary(samples)

        cluster.worker()
        gw = await cluster.gateway()
        async with httpx.AsyncClient(base_url=gw.url, timeout=120,
                                     headers={"Authorization": f"Bearer {key}",
                                              "X-Namespace": "bench-retrieval"}) as client:
            sid = (await client.post("/v1/agents/sessions", json={"agent_config": {}})).json()["session_id"]
            turns = []
            for i in range(n_turns + 1):
                q = " ".join(rng.choices(VOCAB, k=2))
                t0 = time.perf_counter()
                r = await client.post(f"/v1/agents/sessions/{sid}/messages",
                                      json={"content": f"find notes about {q} in the big collection",
                                            "stream": False})
                ms = (time.perf_counter() - t0) * 1000
                body = r.json()
                assert r.status_code == 200 and body["data_accessed_via_retriever"], body
                if i:  # the first turn warms the worker's index cache
                    turns.append(ms)
                else:
                    out["first_turn_ms"] = round(ms, 1)
            out["agent_turn_ms"] = summary(turns)
    finally:
        await redis.aclose()
        cluster.stop_all()
    return out


def table(res: dict[str, Any]) -> str:
    s, t = res["search_stage_ms"], res["agent_turn_ms"]
    return "\n".join([
        f"retrieval over {res['documents']:,} documents",
        f"  ingest (batches of 1,000)        {res['ingest_s']:>8} s",
        f"  first query (builds the index)   {res['first_query_ms']:>8} ms",
        f"  BM25 search stage  p50 / p99     {s['p50']:>8.2f} / {s['p99']:.2f} ms",
        f"  first agent turn                 {res['first_turn_ms']:>8} ms",
        f"  full agent turn    p50 / p99     {t['p50']:>8.2f} / {t['p99']:.2f} ms",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retrieval")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    res = asyncio.run(run(args.quick))
    print(table(res))
    out = Path(__file__).parent / "results" / "retrieval.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
