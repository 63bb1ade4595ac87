// PLACEHOLDER for contract B (written by `console` so the web console can be tested on its
// branch). The `clients` engineer owns clients/js/agentstream.js: at merge their file replaces
// this one. Same API: one ES module, no dependencies, browsers and Node >= 18.

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = err.code ?? null;
    this.details = err.details ?? null;
  }
}

const TERMINAL = new Set(["done", "error"]);
const PAUSE = new Set(["confirmation_required"]);

function cmpId(a, b) {
  // "<ms>-<seq>" (or "<msg>/<ms>-<seq>"): compared as numbers, never as strings
  const pa = String(a).split("/").pop().split("-").map(Number);
  const pb = String(b).split("/").pop().split("-").map(Number);
  return pa[0] - pb[0] || pa[1] - pb[1];
}

async function* sseFrames(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const frame = { id: null, event: "message", data: [], retry: null };
        let any = false;
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          let v = i < 0 ? "" : line.slice(i + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "data") { frame.data.push(v); any = true; }
          else if (field === "event") frame.event = v;
          else if (field === "id") frame.id = v;
          else if (field === "retry" && /^\d+$/.test(v)) frame.retry = Number(v);
        }
        if (any || frame.retry !== null) yield frame;
      }
    }
  } finally {
    try { await reader.cancel(); } catch { /* already closed */ }
    if (signal && signal.aborted) return;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

export class MessageStream {
  constructor(client, { open, sessionId, messageId = null, lastEventId = null, signal, onReset, session = false }) {
    this._client = client;
    this._open = open; // (lastEventId, signal) -> Promise<Response>
    this.sessionId = sessionId;
    this.messageId = messageId;
    this.lastEventId = lastEventId;
    this._onReset = onReset;
    this._session = session;
    this._ctl = new AbortController();
    if (signal) signal.addEventListener("abort", () => this._ctl.abort(), { once: true });
    this._delivered = [];
    this._started = false;
    this.result = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this.result.catch(() => {});
  }

  close() { this._ctl.abort(); }

  [Symbol.asyncIterator]() {
    if (this._started) throw new Error("a MessageStream can be iterated once");
    this._started = true;
    return this._run();
  }

  async *_run() {
    const c = this._client;
    let retryMs = 1000;
    let attempt = 0;
    let first = true;
    try {
      while (!this._ctl.signal.aborted) {
        let resp;
        try {
          resp = await this._open(this.lastEventId, this._ctl.signal, first);
        } catch (e) {
          if (this._ctl.signal.aborted) return;
          if (e instanceof ApiError && !(e.status === 503 || e.status === 429)) throw e;
          resp = null;
        }
        if (resp) {
          first = false;
          if (!this.messageId) this.messageId = resp.headers.get("X-Message-Id");
          // Contract A: a stream token, when the server gives one, authorises the reconnects.
          this.streamToken = resp.headers.get("X-Stream-Token") || this.streamToken || null;
          if (resp.status === 204) { this._resolve(null); return; }
          if (attempt > 0) yield this._mk("connection", { state: "open", attempt });
          attempt = 0;
          let ended = false;
          try {
            for await (const f of sseFrames(resp.body, this._ctl.signal)) {
              if (f.retry !== null) retryMs = f.retry;
              if (!f.data.length) continue;
              let data;
              try { data = JSON.parse(f.data.join("\n")); } catch { data = f.data.join("\n"); }
              if (f.event === "reset") {
                const from = data.discard_after || data.replay_from || "0-0";
                const retracted = this._delivered.filter((id) => cmpId(id, from) > 0);
                this._delivered = this._delivered.filter((id) => cmpId(id, from) <= 0);
                if (this._onReset) this._onReset(data);
                this.lastEventId = this._delivered.length ? this._delivered[this._delivered.length - 1] : null;
                yield this._mk("reset", data, f.id, retracted);
                continue;
              }
              if (f.id) {
                if (this.lastEventId && cmpId(f.id, this.lastEventId) <= 0) continue; // already delivered
                this.lastEventId = f.id;
                this._delivered.push(f.id);
              }
              const ev = this._mk(f.event, data, f.id);
              yield ev;
              if (!this._session && (TERMINAL.has(f.event) || PAUSE.has(f.event))) {
                ended = true;
                this._resolve(ev);
                return;
              }
            }
            if (this._session) { this._resolve(null); return; }
          } catch (e) {
            if (this._ctl.signal.aborted) return;
            if (e instanceof ApiError) throw e;
          }
          if (ended) return;
        }
        attempt += 1;
        if (attempt > c.maxRetries) throw new Error(`gave up after ${c.maxRetries} reconnects`);
        yield this._mk("connection", { state: "reconnecting", attempt });
        await sleep(Math.min(retryMs * 2 ** (attempt - 1), 30000), this._ctl.signal);
      }
    } catch (e) {
      this._reject(e);
      throw e;
    } finally {
      this._ctl.abort();
    }
  }

  _mk(type, data, id = null, retracted) {
    const ev = { id, type, data, receivedAt: Date.now() };
    if (retracted) ev.retracted = retracted;
    return ev;
  }
}

export class AgentStreamClient {
  constructor({ baseUrl = "", apiKey, namespace, fetch = globalThis.fetch, maxRetries = 8 } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.apiKey = apiKey;
    this.namespace = namespace;
    this._fetch = fetch.bind(globalThis);
    this.maxRetries = maxRetries;
  }

  _headers(extra = {}) {
    const h = { ...extra };
    if (this.apiKey) h.Authorization = `Bearer ${this.apiKey}`;
    if (this.namespace) h["X-Namespace"] = this.namespace;
    return h;
  }

  async _raw(method, path, { body, headers = {}, signal, streamToken } = {}) {
    if (streamToken) {
      // The token names the stream and its namespace: no key goes with this request at all.
      try {
        const resp = await this._fetch(`${this.baseUrl}${path}?access_token=${encodeURIComponent(streamToken)}`,
          { method, headers: { ...headers }, signal });
        if (resp.ok) return resp;
        if (resp.status !== 401) throw new ApiError(resp.status, await resp.json().catch(() => null));
      } catch (e) {
        if (e instanceof ApiError || (signal && signal.aborted)) throw e;
      }
      // expired (or refused) token: fall back to the key in the Authorization header
    }
    const init = { method, headers: this._headers(headers), signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const resp = await this._fetch(this.baseUrl + path, init);
    if (!resp.ok) {
      let parsed = null;
      try { parsed = await resp.json(); } catch { /* not JSON */ }
      throw new ApiError(resp.status, parsed);
    }
    return resp;
  }

  async request(method, path, body) {
    const resp = await this._raw(method, path, { body });
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  createSession(body) { return this.request("POST", "/v1/agents/sessions", body); }
  getSession(id) { return this.request("GET", `/v1/agents/sessions/${encodeURIComponent(id)}`); }
  listSessions(body = {}) { return this.request("POST", "/v1/agents/sessions/list", body); }
  updateSession(id, body) { return this.request("PATCH", `/v1/agents/sessions/${encodeURIComponent(id)}`, body); }
  deleteSession(id) { return this.request("DELETE", `/v1/agents/sessions/${encodeURIComponent(id)}`); }
  getHistory(id) { return this.request("GET", `/v1/agents/sessions/${encodeURIComponent(id)}/history`); }

  _eventsPath(sessionId, messageId) {
    return `/v1/agents/sessions/${encodeURIComponent(sessionId)}/messages/${encodeURIComponent(messageId)}/events`;
  }

  send(sessionId, content, { idempotencyKey, signal, onReset } = {}) {
    const key = idempotencyKey || (globalThis.crypto?.randomUUID?.() ?? String(Math.random()).slice(2));
    const stream = new MessageStream(this, {
      sessionId, signal, onReset,
      open: (lastEventId, sig, first) => {
        if (first || !stream.messageId) {
          const headers = { "Idempotency-Key": key, Accept: "text/event-stream" };
          if (lastEventId) headers["Last-Event-ID"] = lastEventId;
          return this._raw("POST", `/v1/agents/sessions/${encodeURIComponent(sessionId)}/messages`,
            { body: { content }, headers, signal: sig });
        }
        const headers = { Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        return this._raw("GET", this._eventsPath(sessionId, stream.messageId),
          { headers, signal: sig, streamToken: stream.streamToken });
      },
    });
    return stream;
  }

  async sendAndWait(sessionId, content, opts = {}) {
    const headers = opts.idempotencyKey ? { "Idempotency-Key": opts.idempotencyKey } : {};
    const resp = await this._raw("POST", `/v1/agents/sessions/${encodeURIComponent(sessionId)}/messages`,
      { body: { content, stream: false }, headers, signal: opts.signal });
    return resp.json();
  }

  follow(sessionId, messageId, { lastEventId, signal, onReset } = {}) {
    return new MessageStream(this, {
      sessionId, messageId, lastEventId: lastEventId || null, signal, onReset,
      open: (last, sig) => {
        const headers = { Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        return this._raw("GET", this._eventsPath(sessionId, messageId), { headers, signal: sig });
      },
    });
  }

  sessionEvents(sessionId, { lastEventId, signal, onReset } = {}) {
    return new MessageStream(this, {
      sessionId, lastEventId: lastEventId || null, signal, onReset, session: true,
      open: (last, sig) => {
        const headers = { Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        return this._raw("GET", `/v1/agents/sessions/${encodeURIComponent(sessionId)}/events`, { headers, signal: sig });
      },
    });
  }

  cancel(sessionId, messageId) {
    return this.request("POST", `/v1/agents/sessions/${encodeURIComponent(sessionId)}/messages/${encodeURIComponent(messageId)}/cancel`);
  }

  respondToConfirmation(sessionId, confirmationId, body) {
    // The answer continues the paused message as a new event stream (a MessageStream).
    const stream = new MessageStream(this, {
      sessionId,
      open: (lastEventId, sig, first) => {
        if (first || !stream.messageId) {
          return this._raw("POST", `/v1/agents/sessions/${encodeURIComponent(sessionId)}/confirmations/${encodeURIComponent(confirmationId)}`,
            { body, headers: { Accept: "text/event-stream" }, signal: sig });
        }
        const headers = { Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        return this._raw("GET", this._eventsPath(sessionId, stream.messageId),
          { headers, signal: sig, streamToken: stream.streamToken });
      },
    });
    return stream;
  }
}
