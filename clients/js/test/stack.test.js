// The client against real gateways and workers (started by tests/clients/test_js_client.py,
// which passes their addresses by environment): the API's operations, then real faults
// through a cutting proxy: random cuts (inside headers and mid-event), a gateway SIGKILLed
// mid-answer, a POST whose response is lost after the server accepted it, a trimmed cursor
// (reset cursor_expired) and a worker SIGKILLed mid-answer (reset retry). For every message,
// the events the application keeps (every reset applied) equal the stored log.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { AgentStreamClient, ApiError } from "../agentstream.js";

const env = process.env;
const E = {
  proxy: env.AGENTSTREAM_TEST_PROXY, proxyCtl: env.AGENTSTREAM_TEST_PROXY_CONTROL, gateway: env.AGENTSTREAM_TEST_GATEWAY, key: env.AGENTSTREAM_TEST_KEY,
  ns: env.AGENTSTREAM_TEST_NAMESPACE, faults: env.AGENTSTREAM_TEST_FAULTS, claude: env.AGENTSTREAM_TEST_CLAUDE_MODEL,
  trimProxy: env.AGENTSTREAM_TEST_TRIM_PROXY, trimProxyCtl: env.AGENTSTREAM_TEST_TRIM_PROXY_CONTROL, trimGateway: env.AGENTSTREAM_TEST_TRIM_GATEWAY,
  trimKey: env.AGENTSTREAM_TEST_TRIM_KEY, trimNs: env.AGENTSTREAM_TEST_TRIM_NAMESPACE,
};
const skip = E.proxy ? false : "no stack given: run through `pytest tests/clients/test_js_client.py`";
const CHAT = ["hello there, what can you do?", "hi! how are you today?", "thanks, that helps a lot",
  "good morning, who are you?"];
const SEARCH = ["find documents about redis streams and consumer groups",
  "search for notes on server-sent events behind a proxy"];
const QUESTIONS = ["find documents about redis streams and consumer groups",
  "search for notes on server-sent events behind a proxy", "hello there, what can you do?",
  "find runbooks about incident response and on-call"];

const ctl = async (base, path) => {
  const res = await fetch(base + path, { method: "POST" });
  const body = await res.json();
  if (!res.ok) throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body;
};
const proxyCtl = (base, action, query = "") => ctl(base, `/__proxy__/${action}${query}`);

// What the application keeps, against the stored log; counted over the whole file.
const tally = { messages: 0, cycles: 0, lost: 0, duplicated: 0, outOfOrder: 0, badRetractions: 0, resets: {} };
function effective(log) {
  let out = [];
  for (const e of log) {
    if (e.type === "reset") {
      const keep = e.data.discard_after ?? "0-0";
      out = out.filter((k) => cmp(k[0], keep) <= 0);
    } else out.push([e.id, e.type]);
  }
  return out;
}
function cmp(a, b) {
  const [x, y] = [a, b].map((s) => s.split("-").map(BigInt));
  return x[0] !== y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] !== y[1] ? (x[1] < y[1] ? -1 : 1) : 0;
}
async function check(stack, sid, stream, delivered) {
  const log = await (await fetch(`${E.faults}/stored?stack=${stack}&sid=${sid}&mid=${stream.messageId}`)).json();
  const want = effective(log).map(([i, t]) => `${i} ${t}`);
  let kept = [];
  const seen = new Set();
  for (const ev of delivered) {
    if (ev.type === "reset") {
      tally.resets[ev.data.reason] = (tally.resets[ev.data.reason] ?? 0) + 1;
      const ids = new Set(kept.map((k) => k[0]));
      tally.badRetractions += ev.retracted.filter((r) => !ids.has(r)).length;
      kept = kept.filter((k) => !ev.retracted.includes(k[0]));
      for (const r of ev.retracted) seen.delete(r);
      continue;
    }
    if (seen.has(ev.id)) tally.duplicated += 1;
    seen.add(ev.id);
    if (kept.length && cmp(ev.id, kept[kept.length - 1][0]) <= 0) tally.outOfOrder += 1;
    kept.push([ev.id, ev.type]);
  }
  const got = new Set(kept.map(([i, t]) => `${i} ${t}`));
  tally.lost += want.filter((w) => !got.has(w)).length;
  tally.duplicated += [...got].filter((g) => !want.includes(g)).length;
  tally.messages += 1;
  tally.cycles += stream.connections - 1;
}
const exact = () => [tally.lost, tally.duplicated, tally.outOfOrder, tally.badRetractions];
const line = (who) => `${who}: ${tally.cycles} cut/resume cycles over ${tally.messages} messages; lost=${tally.lost} `
  + `duplicated=${tally.duplicated} out_of_order=${tally.outOfOrder} bad_retractions=${tally.badRetractions} `
  + `resets=${JSON.stringify(tally.resets)}`;

async function collect(stream, onEvent) {
  const delivered = [];
  for await (const ev of stream) {
    if (ev.type === "connection") continue;
    delivered.push(ev);
    if (onEvent) await onEvent(ev, delivered);
  }
  return delivered;
}

describe("against a stack", { skip }, () => {
  after(() => console.log(line("js client, all fault scenarios")));
  const direct = () => new AgentStreamClient({ baseUrl: E.gateway, apiKey: E.key, namespace: E.ns });
  const proxied = () => new AgentStreamClient({ baseUrl: E.proxy, apiKey: E.key, namespace: E.ns, maxRetries: 30 });

  test("send yields events as they arrive, and the result", async () => {
    const c = direct();
    const { session_id: sid } = await c.createSession();
    const stream = c.send(sid, "hello there, what can you do?");
    const types = (await collect(stream)).map((e) => e.type);
    assert.equal(types[0], "intent");
    assert.ok(types.includes("token"));
    const result = await stream.result;
    if (result.type === "done") assert.equal(result.data.message_id, stream.messageId);
    else assert.equal(result.type, "error"); // a loaded machine can starve a short lease: still final
    const answer = await c.sendAndWait(sid, "hello there");
    assert.equal(answer.status, "completed");
    const tail = await collect(c.follow(sid, stream.messageId, { lastEventId: stream.lastEventId }));
    assert.deepEqual(tail, []); // 204: the cursor was the terminal event
  });

  test("session operations and errors in the API's shape", async () => {
    const c = direct();
    const { session_id: sid } = await c.createSession({ agent_config: {} });
    assert.equal((await c.getSession(sid)).session_id, sid);
    assert.ok((await c.listSessions()).results.some((s) => s.session_id === sid));
    await c.updateSession(sid, { user_memory: { team: "b" } });
    assert.deepEqual((await c.getSession(sid)).user_memory, { team: "b" });
    const again = c.send(sid, "hello", { idempotencyKey: "same" });
    await again.result;
    const twice = c.send(sid, "hello", { idempotencyKey: "same" });
    await twice.result;
    assert.equal(twice.messageId, again.messageId);
    assert.equal((await c.getHistory(sid)).messages.filter((m) => m.role === "user").length, 1);
    await c.deleteSession(sid);
    await assert.rejects(c.getSession("ses_doesnotexist00"), (e) => e instanceof ApiError && e.status === 404
      && e.type === "NotFoundError" && Boolean(e.code) && Boolean(e.message));
    await assert.rejects(collect(c.send(sid, "hello")), (e) => e instanceof ApiError && e.code === "session_terminated");
  });

  test("the session log, cancel, and follow from a cursor", async () => {
    const c = direct();
    const { session_id: sid } = await c.createSession();
    const first = c.send(sid, "hello there, what can you do?");
    const events = await collect(first);
    const log = [];
    for await (const ev of c.sessionEvents(sid)) log.push(ev);
    assert.deepEqual(log.map((e) => e.id), events.map((e) => `${first.messageId}/${e.id}`));
    assert.ok(log.every((e) => e.messageId === first.messageId));
    const tail = await collect(c.follow(sid, first.messageId, { lastEventId: events[2].id }));
    assert.deepEqual(tail.map((e) => e.id), events.slice(3).map((e) => e.id));
    const cancelled = await c.cancel(sid, first.messageId);
    assert.equal(cancelled.message_id, first.messageId);
    assert.equal(cancelled.cancelled, false); // it had already ended
  });

  test("random cuts lose and repeat nothing", async () => {
    // Short chat answers cut within a few hundred bytes (many cycles), then search answers
    // whose big tool results are cut in the middle too.
    const before = tally.cycles;
    const c = proxied();
    const phase = (questions, count) => Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(async (n) => {
      const { session_id: sid } = await c.createSession();
      for (let i = 0; i < count; i++) {
        const stream = c.send(sid, questions[(n + i) % questions.length]);
        const delivered = await collect(stream);
        assert.ok(["done", "error"].includes((await stream.result).type));
        await check("main", sid, stream, delivered);
      }
    }));
    await proxyCtl(E.proxyCtl, "config", "?lo=1&hi=600&ratio=1");
    await phase(CHAT, 2);
    await proxyCtl(E.proxyCtl, "config", "?lo=1&hi=3500&ratio=1");
    await phase(SEARCH, 1);
    const stats = await proxyCtl(E.proxyCtl, "stats");
    console.log(line("js client, random cuts"), JSON.stringify(stats));
    assert.deepEqual(exact(), [0, 0, 0, 0]);
    assert.ok(stats.cuts_in_headers > 0);
    assert.ok(tally.cycles - before >= 200, line("js client"));
  });

  test("a gateway SIGKILLed mid-answer", async () => {
    // A paced (fake Claude) answer, so the gateway dies while it still streams.
    await proxyCtl(E.proxyCtl, "config", "?ratio=0");
    const c = proxied();
    const { session_id: sid } = await c.createSession({ agent_config: { model: E.claude } });
    const stream = c.send(sid, "tell me something long");
    const delivered = await collect(stream, async (_, all) => {
      if (all.length === 7) await ctl(E.faults, "/kill_gateway");
    });
    assert.ok(stream.connections >= 2);
    await check("main", sid, stream, delivered);
    await proxyCtl(E.proxyCtl, "config", "?ratio=1");
    assert.deepEqual(exact(), [0, 0, 0, 0]);
  });

  test("a POST whose response is lost after the server accepted it", async () => {
    await proxyCtl(E.proxyCtl, "config", "?ratio=0");
    const c = proxied();
    const { session_id: sid } = await c.createSession();
    await proxyCtl(E.proxyCtl, "drop_next", "?n=1");
    const stream = c.send(sid, "hello there");
    await check("main", sid, stream, await collect(stream));
    await proxyCtl(E.proxyCtl, "drop_next", "?n=1");
    const answer = await c.sendAndWait(sid, "hello again");
    assert.equal(answer.status, "completed");
    const users = (await c.getHistory(sid)).messages.filter((m) => m.role === "user").map((m) => m.content);
    assert.deepEqual(users, ["hello there", "hello again"]);
    assert.ok((await proxyCtl(E.proxyCtl, "stats")).dropped_responses >= 2);
    await proxyCtl(E.proxyCtl, "config", "?ratio=1");
    assert.deepEqual(exact(), [0, 0, 0, 0]);
  });

  test("a worker SIGKILLed mid-answer: the dead attempt is retracted", async () => {
    const c = proxied();
    const { session_id: sid } = await c.createSession({ agent_config: { model: E.claude } });
    const resets = [];
    // On a loaded machine the reaper may end a killed attempt with job_lost instead of
    // retrying it: then the next message is tried, up to three; every one must be exact.
    for (let i = 0; i < 3 && !resets.some((r) => r.data.reason === "retry"); i++) {
      const stream = c.send(sid, "tell me something long", { onReset: (r) => resets.push(r) });
      let tokens = 0;
      const delivered = await collect(stream, async (ev) => {
        if (ev.type === "token" && ++tokens === 5) await ctl(E.faults, `/kill_worker?sid=${sid}&mid=${stream.messageId}`);
      });
      await check("main", sid, stream, delivered);
    }
    const retries = resets.filter((r) => r.data.reason === "retry");
    assert.ok(retries.length > 0 && retries.every((r) => r.retracted.length > 0));
    assert.deepEqual(exact(), [0, 0, 0, 0]);
  });

  test("a trimmed cursor: reset cursor_expired, then exactly the stored log", async () => {
    await proxyCtl(E.trimProxyCtl, "config", "?ratio=0");
    const c = new AgentStreamClient({ baseUrl: E.trimProxy, apiKey: E.trimKey, namespace: E.trimNs, maxRetries: 30 });
    const { session_id: sid } = await c.createSession();
    let expired = 0;
    for (let i = 0; i < 2; i++) {
      const stream = c.send(sid, "hello there, what can you do?");
      const delivered = await collect(stream, async (_, all) => {
        if (all.length !== 3) return;
        // Freeze the proxy, cut the stream, let the answer finish (its stream trimmed to the
        // last few entries), then let the client resume.
        await proxyCtl(E.trimProxyCtl, "hold");
        await proxyCtl(E.trimProxyCtl, "cut_all");
        const res = await fetch(`${E.trimGateway}/v1/agents/sessions/${sid}/messages/${stream.messageId}/events`,
          { headers: { Authorization: `Bearer ${E.trimKey}`, "X-Namespace": E.trimNs } });
        await res.text();
        await proxyCtl(E.trimProxyCtl, "release");
      });
      expired += delivered.filter((e) => e.type === "reset" && e.data.reason === "cursor_expired").length;
      await check("trim", sid, stream, delivered);
    }
    assert.ok(expired >= 2);
    assert.deepEqual(exact(), [0, 0, 0, 0]);
  });
});
