// The peer of `make bench`: Vercel's resumable-stream (npm, 2.2) producing and serving the
// bench's streams from ONE Node process, with the Redis client it expects (npm `redis` 4).
//
// This is what a user would deploy instead of agentstream: the producer runs in the process that
// serves the first reader, keeps the stream's chunks in memory (nothing durable), and Redis
// carries only a sentinel per stream plus pub/sub for readers that resume elsewhere.
//
//   POST .../messages?first_ms=F&token_ms=T&tokens=N   one paced answer, produced and served
//        here through ctx.resumableStream (the e2e scenario): intent, thinking, F ms, N tokens
//        T ms apart, message, done, as SSE frames shaped like agentstream's.
//   POST /live/setup?n=N   N producer streams (ctx.createNewResumableStream) fed by /run
//   GET  /s/<i>            resume producer i (ctx.resumeExistingStream): served over Redis
//                          pub/sub, the library's path for a reader on another instance
//   POST /run?rate=R&duration_s=D   pace R events/s round robin over the producers, frames with
//                          "seq" and "ts" (CLOCK_MONOTONIC µs) like bench.producer's
//   GET  /healthz
//
// Settings: AGENTSTREAM_PORT, AGENTSTREAM_HOST, AGENTSTREAM_REDIS_URL (redis:// or unix://).

import http from "node:http";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache, no-transform",
  "X-Accel-Buffering": "no",
  Connection: "keep-alive",
};
const INTENT =
  '{"intent":"conversation","confidence":0.9,"category":"general","reasoning":"peer","context_scope":"session"}';
const THINKING = '{"step":"processing","message":"Analyzing your request..."}';

function redisOptions(url) {
  if (url.startsWith("unix://")) return { socket: { path: decodeURIComponent(url.slice("unix://".length)) } };
  return { url };
}

const redisUrl = process.env.AGENTSTREAM_REDIS_URL;
if (!redisUrl) throw new Error("AGENTSTREAM_REDIS_URL is not set");
const publisher = createClient(redisOptions(redisUrl));
const subscriber = createClient(redisOptions(redisUrl));
publisher.on("error", (e) => console.error("publisher", e));
subscriber.on("error", (e) => console.error("subscriber", e));
await Promise.all([publisher.connect(), subscriber.connect()]);
// A long-running server: nothing to keep alive past a response (the library's waitUntil: null).
const ctx = createResumableStreamContext({ waitUntil: null, publisher, subscriber });

const nowUs = () => process.hrtime.bigint() / 1000n; // libuv's clock is CLOCK_MONOTONIC, like Python's
const frame = (id, event, data) => `id: ${id}\nevent: ${event}\ndata: ${data}\n\n`;

// Every message of one answer, paced like the built-in model: the first-token delay before
// the first token, the token delay between tokens.
function pacedAnswer(messageId, firstMs, tokenMs, tokens) {
  return new ReadableStream({
    async start(controller) {
      let n = 0;
      const id = () => `${Date.now()}-${n++}`;
      controller.enqueue(frame(id(), "intent", INTENT));
      controller.enqueue(frame(id(), "thinking", THINKING));
      if (firstMs > 0) await sleep(firstMs);
      const text = [];
      for (let i = 0; i < tokens; i++) {
        if (i && tokenMs > 0) await sleep(tokenMs);
        const piece = `word${i} `;
        text.push(piece);
        controller.enqueue(frame(id(), "token", JSON.stringify({ content: piece })));
      }
      controller.enqueue(
        frame(id(), "message", JSON.stringify({ content: text.join(""), message_id: messageId, is_final: true })),
      );
      controller.enqueue(
        frame(id(), "done", JSON.stringify({ latency_ms: 0, tool_calls_made: 0, message_id: messageId,
          retriever_summary: {}, data_accessed_via_retriever: false })),
      );
      controller.close();
    },
  });
}

async function serve(res, stream, headers) {
  res.writeHead(200, { ...HEADERS, ...headers });
  res.write("retry: 2000\n\n");
  const reader = stream.getReader();
  res.on("close", () => reader.cancel().catch(() => {}));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value) res.write(value); // a resumed stream starts with the buffered text, maybe ""
    }
  } catch {
    // the reader went away; the producer goes on (resumable-stream's contract)
  }
  res.end();
}

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

let producers = []; // [{controller, seq}] for the live scenarios
let generation = 0;

async function liveSetup(n) {
  generation += 1;
  const made = [];
  for (let i = 0; i < n; i++) {
    const slot = { controller: null, seq: 0 };
    const stream = await ctx.createNewResumableStream(`live-${generation}-${i}`, () =>
      new ReadableStream({ start(c) { slot.controller = c; } }));
    // The producer's own first reader is gone (a reader that left); resumed readers get it.
    stream.pipeTo(new WritableStream({})).catch(() => {});
    made.push(slot);
  }
  for (const p of producers) {
    try { p.controller.close(); } catch { /* closed already */ }
  }
  producers = made;
  return n;
}

async function run(rate, durationS) {
  const slots = producers;
  const total = Math.floor(rate * durationS);
  const t0 = performance.now();
  let sent = 0;
  let rr = 0;
  let last = 0;
  while (sent < total) {
    const elapsed = (performance.now() - t0) / 1000;
    const due = Math.min(total, Math.floor(elapsed * rate)) - sent;
    if (due > 0) {
      const ts = nowUs();
      for (let k = 0; k < due; k++) {
        const slot = slots[rr];
        rr = rr + 1 < slots.length ? rr + 1 : 0;
        const seq = ++slot.seq;
        slot.controller.enqueue(`id: ${seq}-0\nevent: token\ndata: {"content":"tok","seq":${seq},"ts":${ts}}\n\n`);
      }
      sent += due;
      last = (performance.now() - t0) / 1000;
    }
    if (sent < total) await sleep(1);
  }
  const elapsed = Math.max(durationS, last);
  return { sent, elapsed_s: elapsed, achieved: sent / elapsed, per_stream: slots.map((s) => s.seq) };
}

let messages = 0;
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://peer");
  const q = url.searchParams;
  try {
    if (req.method === "POST" && url.pathname.endsWith("/messages")) {
      req.resume(); // the body (the user's message) is not needed to produce the paced answer
      const messageId = `msg_${++messages}_${randomUUID().slice(0, 8)}`;
      const stream = await ctx.resumableStream(messageId, () =>
        pacedAnswer(messageId, Number(q.get("first_ms") || 0), Number(q.get("token_ms") || 0),
          Number(q.get("tokens") || 17)));
      await serve(res, stream, { "X-Message-Id": messageId });
    } else if (req.method === "GET" && url.pathname.startsWith("/s/")) {
      const stream = await ctx.resumeExistingStream(`live-${generation}-${Number(url.pathname.slice(3))}`);
      if (!stream) return json(res, 404, { error: "no such stream" });
      await serve(res, stream, {});
    } else if (req.method === "POST" && url.pathname === "/live/setup") {
      json(res, 200, { streams: await liveSetup(Number(q.get("n") || 0)) });
    } else if (req.method === "POST" && url.pathname === "/run") {
      json(res, 200, await run(Number(q.get("rate")), Number(q.get("duration_s"))));
    } else if (url.pathname === "/healthz") {
      json(res, 200, { status: "ok" });
    } else {
      json(res, 404, { error: "not found" });
    }
  } catch (e) {
    console.error(e);
    if (!res.headersSent) json(res, 500, { error: String(e) });
    else res.end();
  }
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.AGENTSTREAM_PORT || 8000), process.env.AGENTSTREAM_HOST || "127.0.0.1");
const stop = () => server.close(() => Promise.allSettled([publisher.quit(), subscriber.quit()]).then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
