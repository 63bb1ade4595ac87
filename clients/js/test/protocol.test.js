// The pure parts: the SSE parser and the reset reconciler (no network).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Reconciler, SSEParser, compareIds } from "../agentstream.js";

test("retry inside the first block is applied and the event dispatched", () => {
  const p = new SSEParser();
  const frames = p.feed("retry: 20\n: keep-alive\nid: 1-0\nevent: token\ndata: {}\n\n");
  assert.equal(p.retryMs, 20);
  assert.deepEqual(frames, [{ id: "1-0", event: "token", data: "{}" }]);
});

test("comments never end a block; field-less blocks dispatch nothing", () => {
  const p = new SSEParser();
  assert.deepEqual(p.feed("retry: 5\n\n: hb\n\n"), []);
  assert.equal(p.feed('id: 2-0\nevent: done\ndata: {"a":\ndata: 1}\n\n')[0].data, '{"a":\n1}');
});

test("lines split across chunks, CRLF and CR line ends", () => {
  const p = new SSEParser();
  const out = [];
  for (const c of ["id: 3-0\r", "\nevent: tok", "en\rdata: {}\r\n", "\r\n"]) out.push(...p.feed(c));
  assert.deepEqual(out.map((f) => [f.id, f.event]), [["3-0", "token"]]);
});

test("ids compare as numbers", () => {
  assert.equal(compareIds("10-0", "9-0"), 1);
  assert.equal(compareIds("msg_a/5-1", "5-0"), 1);
  assert.equal(compareIds("18446744073709551615-0", "18446744073709551614-9"), 1);
});

const feed = (r, id, type, data = {}, fromStart = false) => {
  const { out, restart } = r.feed(id, type, data, fromStart);
  return [out.map((d) => [d.id, d.type, d.retracted]), restart];
};

test("reset retry retracts what followed discard_after", () => {
  const r = new Reconciler();
  for (let i = 1; i < 5; i++) feed(r, `${i}-0`, "token");
  const [out] = feed(r, "5-0", "reset", { reason: "retry", status: "running", replay_from: "2-0", attempt: 2, discard_after: "2-0" });
  assert.deepEqual(out, [["5-0", "reset", ["3-0", "4-0"]]]);
  assert.deepEqual(feed(r, "6-0", "token")[0], [["6-0", "token", []]]);
  assert.deepEqual(r.held, [["1-0", "token"], ["2-0", "token"], ["6-0", "token"]]);
});

test("cursor_expired retracts what was held before the retained entries", () => {
  const r = new Reconciler();
  feed(r, "1-0", "intent");
  feed(r, "2-0", "token");
  assert.deepEqual(feed(r, "2-0", "reset", { reason: "cursor_expired", status: "running", replay_from: "2-0" }), [[], false]);
  assert.deepEqual(feed(r, "9-0", "token")[0], [["2-0", "reset", ["1-0", "2-0"]], ["9-0", "token", []]]);
});

test("cursor_ahead walks the replay and retracts only the lost tail", () => {
  const r = new Reconciler();
  for (let i = 1; i < 5; i++) feed(r, `${i}-0`, "token");
  feed(r, "0-0", "reset", { reason: "cursor_ahead", status: "running", replay_from: "0-0" });
  assert.deepEqual(feed(r, "1-0", "token")[0], []);
  assert.deepEqual(feed(r, "2-0", "token")[0], []);
  assert.deepEqual(feed(r, "7-0", "done")[0], [["0-0", "reset", ["3-0", "4-0"]], ["7-0", "done", []]]);
  assert.equal(r.ended, "done");
});

test("stream_expired on a resumed connection asks for a restart from the start", () => {
  const r = new Reconciler();
  feed(r, "1-0", "token");
  const body = { reason: "stream_expired", status: "completed", replay_from: "0-0" };
  assert.equal(feed(r, "0-0", "reset", body)[1], true);
  assert.equal(feed(r, "0-0", "reset", body, true)[1], false);
});

test("a repeated event is not delivered twice", () => {
  const r = new Reconciler();
  feed(r, "1-0", "token");
  assert.deepEqual(feed(r, "1-0", "token")[0], []);
});

// A scripted fetch: each call takes the next answer; every request is recorded.
function scripted(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, calls };
}
const sseResponse = (text, headers = {}) => new Response(text, {
  status: 200, headers: { "Content-Type": "text/event-stream", ...headers } });

test("a lost POST is sent again with the same Idempotency-Key; a 503 is retried", async () => {
  const { AgentStreamClient } = await import("../agentstream.js");
  const { fetch, calls } = scripted([
    new TypeError("fetch failed"), // the response never came back
    new Response('{"status":503,"error":{"message":"busy","type":"ServiceUnavailableError","code":"draining"}}',
      { status: 503, headers: { "Retry-After": "0" } }),
    sseResponse('retry: 1\nid: 1-0\nevent: token\ndata: {"content":"a"}\n\nid: 1-1\nevent: done\ndata: {}\n\n',
      { "X-Message-Id": "msg_a" }),
  ]);
  const client = new AgentStreamClient({ baseUrl: "http://x", apiKey: "sk_x", namespace: "n", fetch });
  const stream = client.send("ses_a", "hello");
  const types = [];
  for await (const ev of stream) types.push(ev.type);
  assert.deepEqual(types.filter((t) => t !== "connection"), ["token", "done"]);
  const keys = calls.map((c) => c.init.headers["Idempotency-Key"]);
  assert.equal(calls.length, 3);
  assert.ok(keys[0] && keys.every((k) => k === keys[0]));
  assert.equal(calls[0].init.headers.Authorization, "Bearer sk_x");
  assert.equal((await stream.result).type, "done");
  assert.equal(stream.messageId, "msg_a");
});

test("a stream cut before its terminal event resumes at the events URL with Last-Event-ID", async () => {
  const { AgentStreamClient } = await import("../agentstream.js");
  const { fetch, calls } = scripted([
    sseResponse('retry: 1\nid: 1-0\nevent: token\ndata: {"content":"a"}\n\nid: 1-1\nevent: tok', { "X-Message-Id": "msg_a" }),
    sseResponse('retry: 1\nid: 1-1\nevent: token\ndata: {"content":"b"}\n\nid: 1-2\nevent: done\ndata: {}\n\n'),
  ]);
  const client = new AgentStreamClient({ baseUrl: "http://x", apiKey: "sk_x", fetch });
  const ids = [];
  for await (const ev of client.send("ses_a", "hello")) if (ev.id) ids.push(ev.id);
  assert.deepEqual(ids, ["1-0", "1-1", "1-2"]);
  assert.equal(calls[1].url, "http://x/v1/agents/sessions/ses_a/messages/msg_a/events");
  assert.equal(calls[1].init.method, "GET");
  assert.equal(calls[1].init.headers["Last-Event-ID"], "1-0");
});

test("errors carry the API's shape", async () => {
  const { AgentStreamClient, ApiError } = await import("../agentstream.js");
  const { fetch } = scripted([new Response(
    '{"status":404,"success":false,"error":{"message":"Session not found","type":"NotFoundError","code":"session_not_found","details":{"session_id":"ses_a"}}}',
    { status: 404 })]);
  const client = new AgentStreamClient({ baseUrl: "http://x", fetch });
  await assert.rejects(client.getSession("ses_a"), (e) => e instanceof ApiError && e.status === 404
    && e.code === "session_not_found" && e.type === "NotFoundError" && e.details.session_id === "ses_a");
});

test("the backoff honours retry: and Retry-After, and gives up after maxRetries in a row", async () => {
  const { AgentStreamClient, ConnectionLost } = await import("../agentstream.js");
  const client = new AgentStreamClient({ baseUrl: "http://x", maxRetries: 3 });
  const stream = client.follow("ses_a", "msg_a");
  stream._retryMs = 40; // as a `retry: 40` line sets it
  assert.equal(stream._nextDelay(null, null), 40);
  assert.equal(stream._nextDelay(null, 3000), 3000); // Retry-After wins when longer
  stream._nextDelay(null, null);
  assert.throws(() => stream._nextDelay(null, null), ConnectionLost);
});
