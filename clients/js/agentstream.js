// agentstream.js: a client for agentstream's agent-sessions API that resumes by itself.
// One ES module, no dependencies: fetch + a streaming SSE parser; browsers and Node >= 18.
//
// Every send carries an Idempotency-Key, so a retried POST after a lost response returns the
// same message. A stream that breaks (network error, or an end before the terminal event) is
// resumed at the message's events URL with Last-Event-ID, after the server's `retry:` hint
// (doubling while nothing gets through) or its Retry-After. `reset` events are applied for the
// application: it sees every kept event exactly once, in order, and gets a "reset" event that
// names the events to discard (`retracted`) after onReset(reset) was called.

const TERMINAL = new Set(["done", "error"]);
const PAUSE = new Set(["confirmation_required"]); // the answer waits for the user; the response ends
const RETRYABLE = new Set([429, 502, 503, 504]);
const DEFAULT_RETRY_MS = 2000;
const MAX_DELAY_MS = 30000;
const SESSIONS = "/v1/agents/sessions";

/** An answer in the API's error shape: {status, error: {message, type, code, details}}. */
export class ApiError extends Error {
  constructor(status, message, { code = null, type = null, details = {}, headers = {} } = {}) {
    super(`${status} ${code || type || "error"}: ${message}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.type = type;
    this.details = details || {};
    this.headers = headers;
  }

  static async fromResponse(res) {
    const text = await res.text().catch(() => "");
    const headers = Object.fromEntries(res.headers.entries());
    try {
      const err = JSON.parse(text).error;
      return new ApiError(res.status, String(err.message ?? ""), {
        code: err.code ?? null, type: err.type ?? null, details: err.details ?? {}, headers });
    } catch {
      return new ApiError(res.status, text.slice(0, 200) || `HTTP ${res.status}`, { headers });
    }
  }
}

/** The stream could not be resumed within maxRetries attempts in a row. */
export class ConnectionLost extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = "ConnectionLost";
  }
}

/** A stream entry id as [ms, seq] BigInts (`<ms>-<seq>`, or `<message_id>/<ms>-<seq>`). */
export function parseId(raw) {
  const tail = String(raw).slice(String(raw).lastIndexOf("/") + 1);
  const [ms, seq = "0"] = tail.split("-");
  try {
    return [BigInt(ms), BigInt(seq)];
  } catch {
    return [0n, 0n];
  }
}

export function compareIds(a, b) {
  const [x, y] = [parseId(a), parseId(b)];
  if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
  if (x[1] !== y[1]) return x[1] < y[1] ? -1 : 1;
  return 0;
}

/**
 * Incremental text/event-stream parser (WHATWG rules). One per response: a block cut by a
 * dropped connection is discarded with it, never carried into the next response. `retry:` is
 * applied as soon as its line arrives; comment lines never end a block.
 */
export class SSEParser {
  constructor() {
    this.buf = "";
    this.retryMs = null;
    this._reset();
  }

  _reset() {
    this.id = null;
    this.event = "";
    this.data = null;
  }

  feed(text) {
    this.buf += text;
    const out = [];
    let pos = 0;
    for (;;) {
      const cr = this.buf.indexOf("\r", pos);
      const lf = this.buf.indexOf("\n", pos);
      if (cr < 0 && lf < 0) break;
      let end, next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        if (cr === this.buf.length - 1) break; // maybe the first half of CRLF
        end = cr;
        next = this.buf[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      const frame = this._line(this.buf.slice(pos, end));
      if (frame) out.push(frame);
      pos = next;
    }
    this.buf = this.buf.slice(pos);
    return out;
  }

  _line(line) {
    if (line === "") {
      const frame = this.data === null ? null : { id: this.id, event: this.event || "message", data: this.data };
      this._reset();
      return frame;
    }
    if (line[0] === ":") return null;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (name === "data") this.data = this.data === null ? value : `${this.data}\n${value}`;
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.id = value;
    else if (name === "retry" && /^[0-9]+$/.test(value)) this.retryMs = Number(value);
    return null;
  }
}

/**
 * Applies `reset` events for the application (pure). After every step, the events it holds
 * equal what a reader of the events URL from the start would keep.
 * - reason "retry": the events delivered after `discard_after` are retracted at once.
 * - any other reason: what follows is the stream as the server now holds it; it is walked
 *   against what was delivered (same id and type: not delivered again); at the first
 *   difference the rest of what was held is retracted. "stream_expired" on a resumed
 *   connection names only what follows the cursor: the caller restarts from the start.
 */
export class Reconciler {
  constructor() {
    this.held = []; // [id, type] of kept events
    this.replay = null;
    this.pending = null;
    this.last = null;
    this.ended = null;
  }

  feed(id, type, data, fromStart) {
    if (type === "reset") return this._reset({ id, type, data }, fromStart);
    const out = [];
    if (this.replay !== null) {
      const h = this.held[this.replay];
      if (h && h[0] === id && h[1] === type) {
        this.replay += 1;
        if (TERMINAL.has(type) || PAUSE.has(type)) {
          out.push(this._resolve());
          this.ended = type;
        }
        return { out, restart: false };
      }
      out.push(this._resolve());
    }
    if (this.last !== null && compareIds(id, this.last) <= 0) return { out, restart: false };
    this.last = id;
    this.held.push([id, type]);
    out.push({ id, type, data, retracted: [] });
    if (TERMINAL.has(type) || PAUSE.has(type)) this.ended = type;
    return { out, restart: false };
  }

  _reset(reset, fromStart) {
    const body = reset.data || {};
    if (body.reason === "retry") {
      const keep = typeof body.discard_after === "string" ? body.discard_after : "0-0";
      const kept = this.held.filter((h) => compareIds(h[0], keep) <= 0);
      const retracted = this.held.slice(kept.length).map((h) => h[0]);
      this.held = kept;
      this.last = reset.id;
      if (this.replay !== null) this.replay = Math.min(this.replay, kept.length);
      return { out: [{ ...reset, retracted }], restart: false };
    }
    this.replay = 0;
    this.pending = reset;
    this.last = null;
    return { out: [], restart: body.reason === "stream_expired" && !fromStart };
  }

  _resolve() {
    const retracted = this.held.slice(this.replay).map((h) => h[0]);
    this.held = this.held.slice(0, this.replay);
    if (this.held.length) this.last = this.held[this.held.length - 1][0];
    const pending = this.pending;
    this.replay = this.pending = null;
    return { ...pending, retracted };
  }
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  const t = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, ms);
  const onAbort = () => { clearTimeout(t); reject(signal.reason); };
  signal?.addEventListener("abort", onAbort, { once: true });
});

function retryAfterMs(headers) {
  const raw = headers.get("retry-after");
  if (raw === null) return null;
  const s = Number(raw);
  return Number.isFinite(s) && s >= 0 ? s * 1000 : null;
}

function randomKey() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

class Restart extends Error {}

/**
 * The events of one message, resumed across connections until its terminal event: an async
 * iterable of {id, type, data, receivedAt} (plus `retracted` on a "reset", and events of type
 * "connection" {state, attempt} while it reconnects). `result` resolves to the terminal event
 * (or the confirmation_required the answer paused on).
 */
export class MessageStream {
  constructor(client, { sessionId, first, messageId = null, lastEventId = null, signal, onReset, streamToken }) {
    this._client = client;
    this.sessionId = sessionId;
    this._first = first;
    this.messageId = messageId;
    this.lastEventId = lastEventId;
    this.idempotencyKey = first.headers?.["Idempotency-Key"] ?? null;
    this.streamToken = streamToken ?? null;
    this.connections = 0;
    this._onReset = onReset;
    this._signal = signal;
    this._abort = new AbortController();
    this._started = false;
    this._retryMs = DEFAULT_RETRY_MS;
    this._failures = 0;
    this._reconcile = new Reconciler();
    this._result = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this._result.catch(() => {}); // a caller that only iterates must not see an unhandled rejection
  }

  /** Promise of the terminal event; reading it without iterating drains the stream. */
  get result() {
    if (!this._started) this._drain();
    return this._result;
  }

  close() {
    this._abort.abort(new DOMException("closed", "AbortError"));
  }

  async _drain() {
    try {
      for await (const _ of this) { /* events dropped: the caller wants the result only */ }
    } catch { /* already passed to the result promise */ }
  }

  [Symbol.asyncIterator]() {
    if (this._started) throw new Error("a MessageStream can be iterated once");
    this._started = true;
    return this._run();
  }

  async *_run() {
    try {
      let finished = false;
      while (!finished) {
        if (this._signal?.aborted) throw this._signal.reason;
        if (this._abort.signal.aborted) return;
        let delay = null;
        const conn = new AbortController();
        const onAbort = () => conn.abort();
        this._signal?.addEventListener("abort", onAbort, { once: true });
        this._abort.signal.addEventListener("abort", onAbort, { once: true });
        try {
          const { url, init, fromStart } = this._request(conn.signal);
          const res = await this._client._fetch(url, init);
          this.connections += 1;
          const mid = res.headers.get("x-message-id");
          if (!this.messageId && mid) this.messageId = mid;
          const token = res.headers.get("x-stream-token");
          if (token) this.streamToken = token;
          if (res.status === 204) {
            finished = true;
            this._resolve(null);
            return;
          }
          if (res.status === 401 && this._usesToken && this._client.apiKey) {
            this.streamToken = null; // an expired stream token: fall back to the API key
            continue;
          }
          if (res.status !== 200) {
            const err = await ApiError.fromResponse(res);
            if (!RETRYABLE.has(res.status)) throw err;
            delay = this._nextDelay(err, retryAfterMs(res.headers));
          } else {
            // An open stream is progress, as for an EventSource: the backoff starts again. A
            // stream cut before its first event then retries at the server's pace, not ever slower.
            this._failures = 0;
            yield { id: null, type: "connection", data: { state: "open", attempt: this.connections }, receivedAt: Date.now() };
            const parser = new SSEParser();
            const decoder = new TextDecoder();
            const reader = res.body.getReader();
            try {
              for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                for (const frame of parser.feed(decoder.decode(value, { stream: true }))) {
                  if (parser.retryMs !== null) this._retryMs = parser.retryMs;
                  if (frame.id === null) continue;
                  this.lastEventId = frame.id;
                  let data;
                  try { data = JSON.parse(frame.data); } catch { data = frame.data; }
                  const { out, restart } = this._reconcile.feed(frame.id, frame.event, data, fromStart);
                  this._failures = 0;
                  for (const ev of out) {
                    const event = { id: ev.id, type: ev.type, data: ev.data, receivedAt: Date.now() };
                    if (ev.type === "reset") {
                      event.retracted = ev.retracted;
                      if (this._onReset) this._onReset(event);
                    }
                    if (TERMINAL.has(ev.type) || PAUSE.has(ev.type)) this._terminal = event;
                    yield event;
                  }
                  if (this._reconcile.ended !== null) {
                    finished = true;
                    this._resolve(this._terminal ?? { id: frame.id, type: frame.event, data, receivedAt: Date.now() });
                    return;
                  }
                  if (restart) {
                    this.lastEventId = null;
                    throw new Restart();
                  }
                }
                if (parser.retryMs !== null) this._retryMs = parser.retryMs;
              }
            } finally {
              reader.cancel().catch(() => {});
            }
            delay = this._nextDelay(null, null); // ended before the terminal event
          }
        } catch (err) {
          if (err instanceof Restart) continue;
          if (this._signal?.aborted) throw this._signal.reason ?? err;
          if (this._abort.signal.aborted) return;
          if (err instanceof ApiError || err instanceof ConnectionLost) throw err;
          delay = this._nextDelay(err, null); // a network error (fetch and body reads throw TypeError)
        } finally {
          conn.abort();
          this._signal?.removeEventListener("abort", onAbort);
          this._abort.signal.removeEventListener("abort", onAbort);
        }
        yield { id: null, type: "connection", data: { state: "reconnecting", attempt: this._failures }, receivedAt: Date.now() };
        await sleep(delay, this._signal);
      }
    } catch (err) {
      this._reject(err);
      throw err;
    } finally {
      this._reject(new Error("the stream was closed before its terminal event"));
    }
  }

  _request(signal) {
    const c = this._client;
    const fromStart = !this.lastEventId || this.lastEventId === "0-0";
    if (!this.messageId) {
      const f = this._first;
      const headers = { ...c._headers(), ...f.headers };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      this._usesToken = false;
      return { url: c.baseUrl + f.path, init: { method: f.method, headers, body: f.body, signal }, fromStart };
    }
    let path = `${SESSIONS}/${encodeURIComponent(this.sessionId)}/messages/${encodeURIComponent(this.messageId)}/events`;
    const headers = { Accept: "text/event-stream" };
    this._usesToken = Boolean(this.streamToken);
    if (this.streamToken) path += `?access_token=${encodeURIComponent(this.streamToken)}`;
    else Object.assign(headers, c._headers());
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    return { url: c.baseUrl + path, init: { method: "GET", headers, signal }, fromStart };
  }

  _nextDelay(cause, retryAfter) {
    this._failures += 1;
    if (this._failures > this._client.maxRetries) {
      throw new ConnectionLost(`gave up after ${this._client.maxRetries} attempts in a row`, cause);
    }
    let delay = this._retryMs * 2 ** (this._failures - 1);
    if (this._failures > 1) delay *= 1 + Math.random() / 2; // spread a crowd that lost one gateway at once
    if (retryAfter !== null) delay = Math.max(delay, retryAfter);
    return Math.min(delay, Math.max(MAX_DELAY_MS, retryAfter ?? 0));
  }
}

/** A client for one API key (or stream token) and namespace. */
export class AgentStreamClient {
  constructor({ baseUrl = "", apiKey, namespace, fetch = globalThis.fetch, maxRetries = 8, streamToken } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.namespace = namespace;
    this.maxRetries = maxRetries;
    this.streamToken = streamToken;
    this._fetchImpl = fetch;
  }

  _fetch(url, init) {
    return this._fetchImpl.call(globalThis, url, init);
  }

  _headers() {
    const h = {};
    if (this.apiKey) h.Authorization = `Bearer ${this.apiKey}`;
    if (this.namespace) h["X-Namespace"] = this.namespace;
    return h;
  }

  /** One JSON call. `retry`: also retry network errors (only for calls safe to repeat). */
  async request(method, path, body, { headers = {}, retry = false, signal } = {}) {
    let failures = 0;
    for (;;) {
      let res;
      try {
        res = await this._fetch(this.baseUrl + path, {
          method,
          headers: { ...this._headers(), ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...headers },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal,
        });
      } catch (err) {
        failures += 1;
        if (signal?.aborted || !retry || failures > this.maxRetries) {
          throw signal?.aborted ? err : new ConnectionLost(String(err?.message ?? err), err);
        }
        await sleep(Math.min(200 * 2 ** failures, MAX_DELAY_MS), signal);
        continue;
      }
      const wait = retryAfterMs(res.headers);
      if ((res.status === 429 || res.status === 503) && wait !== null && failures < this.maxRetries) {
        failures += 1;
        await res.body?.cancel().catch(() => {});
        await sleep(wait, signal);
        continue;
      }
      if (res.status >= 400) throw await ApiError.fromResponse(res);
      const text = await res.text();
      return text ? JSON.parse(text) : null;
    }
  }

  // sessions
  createSession(body = { agent_config: {} }) { return this.request("POST", SESSIONS, body); }
  getSession(id) { return this.request("GET", `${SESSIONS}/${encodeURIComponent(id)}`, undefined, { retry: true }); }
  listSessions(body = {}) { return this.request("POST", `${SESSIONS}/list`, body, { retry: true }); }
  updateSession(id, body) { return this.request("PATCH", `${SESSIONS}/${encodeURIComponent(id)}`, body, { retry: true }); }
  deleteSession(id) { return this.request("DELETE", `${SESSIONS}/${encodeURIComponent(id)}`, undefined, { retry: true }); }
  getHistory(id) { return this.request("GET", `${SESSIONS}/${encodeURIComponent(id)}/history`, undefined, { retry: true }); }
  submitFeedback(id, body) { return this.request("POST", `${SESSIONS}/${encodeURIComponent(id)}/feedback`, body); }

  // messages
  send(sessionId, content, { idempotencyKey, signal, onReset, metadata } = {}) {
    const body = { content };
    if (metadata !== undefined) body.metadata = metadata;
    const first = {
      method: "POST",
      path: `${SESSIONS}/${encodeURIComponent(sessionId)}/messages`,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", "Idempotency-Key": idempotencyKey || randomKey() },
      body: JSON.stringify(body),
    };
    return new MessageStream(this, { sessionId, first, signal, onReset });
  }

  /** `stream: false`: the final answer as one JSON object (retried with the same key). */
  sendAndWait(sessionId, content, { idempotencyKey, signal, metadata } = {}) {
    const body = { content, stream: false };
    if (metadata !== undefined) body.metadata = metadata;
    return this.request("POST", `${SESSIONS}/${encodeURIComponent(sessionId)}/messages`, body, {
      headers: { "Idempotency-Key": idempotencyKey || randomKey() }, retry: true, signal });
  }

  /** The events of a message already sent, from the start or after `lastEventId`. */
  follow(sessionId, messageId, { lastEventId, signal, onReset, streamToken } = {}) {
    const first = { method: "GET", path: "", headers: {} };
    return new MessageStream(this, { sessionId, first, messageId, lastEventId, signal, onReset,
      streamToken: streamToken ?? this.streamToken });
  }

  /** The session-wide log (ids `<message_id>/<entry id>`), resumed across connections until it ends. */
  async *sessionEvents(sessionId, { lastEventId, signal, onReset } = {}) {
    const recs = new Map();
    let cursor = lastEventId ?? null;
    let failures = 0;
    let retryMs = DEFAULT_RETRY_MS;
    for (;;) {
      const headers = { ...this._headers(), Accept: "text/event-stream" };
      if (cursor) headers["Last-Event-ID"] = cursor;
      let delay;
      try {
        const res = await this._fetch(`${this.baseUrl}${SESSIONS}/${encodeURIComponent(sessionId)}/events`, { headers, signal });
        if (res.status !== 200) {
          const err = await ApiError.fromResponse(res);
          if (!RETRYABLE.has(res.status)) throw err;
          delay = retryAfterMs(res.headers) ?? retryMs;
        } else {
          failures = 0;
          const parser = new SSEParser();
          const decoder = new TextDecoder();
          const reader = res.body.getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return; // the log ends once every message of the session was delivered
            for (const frame of parser.feed(decoder.decode(value, { stream: true }))) {
              if (parser.retryMs !== null) retryMs = parser.retryMs;
              if (frame.id === null) continue;
              cursor = frame.id;
              failures = 0;
              const mid = frame.id.slice(0, frame.id.indexOf("/"));
              if (!recs.has(mid)) recs.set(mid, new Reconciler());
              let data;
              try { data = JSON.parse(frame.data); } catch { data = frame.data; }
              const { out } = recs.get(mid).feed(frame.id, frame.event, data, false);
              for (const ev of out) {
                const event = { id: ev.id, type: ev.type, data: ev.data, messageId: mid, receivedAt: Date.now() };
                if (ev.type === "reset") {
                  event.retracted = ev.retracted;
                  if (onReset) onReset(event);
                }
                yield event;
              }
            }
          }
        }
      } catch (err) {
        if (signal?.aborted || err instanceof ApiError) throw err;
        delay = retryMs * 2 ** failures;
      }
      failures += 1;
      if (failures > this.maxRetries) throw new ConnectionLost(`gave up after ${this.maxRetries} attempts in a row`);
      await sleep(Math.min(delay, MAX_DELAY_MS), signal);
    }
  }

  cancel(sessionId, messageId) {
    return this.request("POST", `${SESSIONS}/${encodeURIComponent(sessionId)}/messages/${encodeURIComponent(messageId)}/cancel`,
      undefined, { retry: true });
  }

  /** Approve or reject a paused write; the message's continuation streams back. `pausedAt`: the
   *  confirmation_required event's id, so a reconnect resumes after it. */
  respondToConfirmation(sessionId, confirmationId, body, { signal, onReset, pausedAt } = {}) {
    const first = {
      method: "POST",
      path: `${SESSIONS}/${encodeURIComponent(sessionId)}/confirmations/${encodeURIComponent(confirmationId)}`,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    };
    return new MessageStream(this, { sessionId, first, lastEventId: pausedAt ?? null, signal, onReset });
  }
}
