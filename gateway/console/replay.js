// Replay: a session's log (or one message of it) played back with the original timing (the
// entry ids are the milliseconds at which each event was written), at 1x, 10x or at once, into
// the same Conversation view as live chat. Export gives the events as JSON lines.

const MAX_GAP_MS = 5000; // idle time between messages longer than this is shortened (and said so)

function entryMs(id) {
  return Number(String(id).split("/").pop().split("-")[0]);
}

export class Replay {
  constructor(client, sessionId, messageId, conv, onState) {
    this.client = client;
    this.sessionId = sessionId;
    this.messageId = messageId;
    this.conv = conv;
    this.onState = onState;
    this.events = null; // [{id, message_id, type, data, ms}]
    this.questions = new Map(); // message id -> the user's text
    this.timer = null;
    this.generation = 0;
  }

  name() {
    return this.messageId || this.sessionId;
  }

  async load() {
    if (this.events) return this.events;
    this.onState("loading the log…");
    const history = await this.client.getHistory(this.sessionId);
    for (const m of history.messages) if (m.role === "user") this.questions.set(m.message_id, m.content);
    const out = [];
    for await (const ev of this.client.sessionEvents(this.sessionId)) {
      if (!ev.id || ev.type === "connection") continue;
      const messageId = String(ev.id).split("/")[0];
      if (this.messageId && messageId !== this.messageId) continue;
      out.push({ id: ev.id, message_id: messageId, type: ev.type, data: ev.data, ms: entryMs(ev.id) });
    }
    this.events = out;
    return out;
  }

  stop() {
    this.generation += 1;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  async play(speed) {
    this.stop();
    const gen = this.generation;
    const events = await this.load();
    if (gen !== this.generation) return;
    this.conv.reset();
    const views = new Map();
    let shortened = 0;
    const started = performance.now();
    for (let i = 0; i < events.length; i += 1) {
      const ev = events[i];
      if (speed > 0 && i > 0) {
        let gap = ev.ms - events[i - 1].ms;
        if (gap > MAX_GAP_MS) { gap = MAX_GAP_MS; shortened += 1; }
        if (gap > 0) await new Promise((r) => { this.timer = setTimeout(r, gap / speed); });
        if (gen !== this.generation) return;
      }
      let view = views.get(ev.message_id);
      if (!view) {
        this.conv.user(this.questions.get(ev.message_id) ?? "(message)");
        view = this.conv.answer(ev.ms);
        view.setMessageId(ev.message_id);
        view.firstMs = ev.ms;
        views.set(ev.message_id, view);
      }
      view.apply({ id: ev.id.split("/").pop(), type: ev.type, data: ev.data }, ev.ms - view.firstMs);
      this.onState(`${speed ? `${speed}×` : "at once"}: ${i + 1} / ${events.length} events`);
    }
    const took = ((performance.now() - started) / 1000).toFixed(1);
    this.onState(`replayed ${events.length} events of ${views.size} message(s) ${speed ? `at ${speed}×` : "at once"} in ${took} s`
      + (shortened ? ` (${shortened} idle gap(s) over ${MAX_GAP_MS / 1000} s shortened)` : ""));
    this.conv.timeline.dataset.replayed = String(events.length);
  }

  async jsonLines() {
    const events = await this.load();
    return events.map((e) => JSON.stringify({ id: e.id, message_id: e.message_id, type: e.type,
      timestamp: new Date(e.ms).toISOString(), payload: e.data })).join("\n") + (events.length ? "\n" : "");
  }
}
