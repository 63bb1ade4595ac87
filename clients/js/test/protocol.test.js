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
