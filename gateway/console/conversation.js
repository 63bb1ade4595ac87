// One conversation view: the messages (the answer builds token by token) and, beside them,
// the timeline of every event. Live chat and replay use the same class, fed the same events.

import { el, append, clear, pretty } from "./dom.js";

function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  return ms < 1000 ? `+${Math.round(ms)} ms` : `+${(ms / 1000).toFixed(2)} s`;
}

function documentsOf(output) {
  // Retriever hits: a list of documents with ids (a search's output, or a retriever's results).
  if (!output || typeof output !== "object") return null;
  const docs = output.documents || output.results;
  return Array.isArray(docs) && docs.length && docs.every((d) => d && d.document_id !== undefined) ? docs : null;
}

function docsTable(docs) {
  return el("table", { class: "docs" },
    el("thead", {}, el("tr", {}, el("th", { text: "document" }), el("th", { text: "score" }), el("th", { text: "title" }))),
    el("tbody", {}, docs.map((d) => el("tr", {},
      el("td", { class: "mono", text: String(d.document_id ?? "") }),
      el("td", { class: "num", text: typeof d.score === "number" ? d.score.toFixed(3) : String(d.score ?? "") }),
      el("td", { class: "doc-title", text: String((d.metadata && d.metadata.title) ?? d.title ?? "") })))));
}

export class Conversation {
  // actions: {saveRetriever(config, name) -> Promise<string>, confirm(view, confirmationId, approved)}
  constructor(root, actions = {}) {
    this.actions = actions;
    this.messages = el("ol", { class: "messages", "aria-label": "Messages" });
    this.timeline = el("ol", { class: "timeline", "aria-label": "Events" });
    clear(root);
    append(root,
      el("div", { class: "chat-col" }, this.messages),
      el("div", { class: "events-col" }, el("h3", { text: "Events" }), this.timeline));
  }

  reset() {
    clear(this.messages);
    clear(this.timeline);
  }

  user(text) {
    const li = el("li", { class: "msg user" }, el("div", { class: "who", text: "you" }), el("div", { class: "text", text }));
    this.messages.append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  answer(startedAt) {
    return new AnswerView(this, startedAt);
  }

  follow() {
    // Keep the newest part of the conversation and of the timeline in view.
    this.messages.scrollTop = this.messages.scrollHeight;
    const col = this.timeline.parentElement;
    if (col) col.scrollTop = col.scrollHeight;
  }

  note(text) {
    this.timeline.append(el("li", { class: "ev note" }, el("span", { class: "type", text: "connection" }), el("span", { text })));
  }
}

export class AnswerView {
  constructor(conv, startedAt) {
    this.conv = conv;
    this.startedAt = startedAt;
    this.messageId = null;
    this.tokens = new Map(); // event id -> text node, so a reset can retract them
    this.rows = new Map(); // event id -> timeline row
    this.tools = new Map(); // tool_call_id -> card
    this.text = el("div", { class: "text answer-text" });
    this.state = el("div", { class: "state muted", text: "running…" });
    this.extras = el("div", { class: "extras" });
    this.li = el("li", { class: "msg agent running" }, el("div", { class: "who", text: "agent" }), this.text, this.extras, this.state);
    conv.messages.append(this.li);
    this.group = el("li", { class: "ev-group" }, el("div", { class: "ev-head mono", text: "message …" }));
    this.list = el("ol", { class: "ev-list" });
    this.group.append(this.list);
    conv.timeline.append(this.group);
  }

  setMessageId(id) {
    if (!id || this.messageId) return;
    this.messageId = id;
    this.li.dataset.messageId = id;
    this.group.firstChild.textContent = `message ${id}`;
  }

  // ev: {id, type, data, receivedAt, retracted?}; at: ms since the send
  apply(ev, at) {
    const { type, data } = ev;
    if (type === "connection") {
      const msg = data.state === "reconnecting"
        ? `connection lost, reconnecting (attempt ${data.attempt})…`
        : `reconnected: resumed after event ${ev.resumedAfter || "(start)"}`;
      this.row(ev, at, msg, "note");
      return;
    }
    if (type === "reset") {
      for (const id of ev.retracted || []) {
        this.tokens.get(id)?.remove();
        this.tokens.delete(id);
        this.rows.get(id)?.classList.add("retracted");
      }
      this.row(ev, at, `reset (${data.reason}): ${(ev.retracted || []).length} event(s) discarded`, "note");
      return;
    }
    this.row(ev, at);
    if (ev.id) this.lastId = ev.id;
    this.render(ev);
    this.conv.follow();
  }

  render(ev) {
    const { type, data } = ev;
    switch (type) {
      case "token": {
        const node = document.createTextNode(String(data.content ?? ""));
        this.text.append(node);
        if (ev.id) this.tokens.set(ev.id, node);
        break;
      }
      case "message":
        this.setMessageId(data.message_id);
        // The final text is authoritative (it matches the tokens unless a model diverged).
        this.text.textContent = String(data.content ?? "");
        this.tokens.clear();
        break;
      case "tool_call":
        this.toolCard(data.tool_call_id, data.tool_name).inputs.textContent = JSON.stringify(data.inputs);
        break;
      case "tool_result": {
        const card = this.toolCard(data.tool_call_id, data.tool_name);
        card.root.classList.add(data.success ? "ok" : "failed");
        card.status.textContent = `${data.success ? "ok" : "failed"} in ${data.latency_ms} ms${data.error ? `: ${data.error}` : ""}`;
        const docs = documentsOf(data.output);
        clear(card.output);
        if (docs) card.output.append(docsTable(docs));
        else card.output.append(el("details", {}, el("summary", { text: "output" }), el("pre", { text: pretty(data.output) })));
        break;
      }
      case "pipeline_config":
        this.extras.append(this.pipelineCard(data));
        break;
      case "confirmation_required":
        this.extras.append(this.confirmCard(data));
        this.finish("awaiting confirmation", "paused");
        break;
      case "done":
        this.setMessageId(data.message_id);
        this.finish(`done in ${data.latency_ms} ms, ${data.tool_calls_made} tool call(s)`, "done");
        break;
      case "error":
        this.setMessageId(data.message_id);
        this.finish(`${data.code === "cancelled" ? "cancelled" : "error"}: ${data.message}`, data.code === "cancelled" ? "cancelled" : "failed");
        break;
      default:
        break;
    }
  }

  row(ev, at, summary, cls = "") {
    const body = summary !== undefined ? el("span", { text: summary })
      : el("details", {}, el("summary", { text: "payload" }), el("pre", { text: pretty(ev.data) }));
    const li = el("li", { class: `ev ${cls} t-${ev.type}`, dataset: { type: ev.type, id: ev.id || "" } },
      el("span", { class: "type", text: ev.type }),
      el("span", { class: "id mono", text: ev.id || "" }),
      el("span", { class: "at num", text: fmtMs(at) }),
      body);
    this.list.append(li);
    if (ev.id) this.rows.set(ev.id, li);
  }

  toolCard(callId, name) {
    let card = this.tools.get(callId);
    if (!card) {
      const inputs = el("pre", { class: "inputs" });
      const status = el("div", { class: "muted", text: "running…" });
      const output = el("div", { class: "output" });
      const root = el("div", { class: "tool", dataset: { callId: callId || "" } },
        el("div", { class: "tool-name" }, el("span", { class: "mono", text: name || "tool" }), " ", el("span", { class: "muted mono", text: callId || "" })),
        inputs, status, output);
      card = { root, inputs, status, output };
      this.tools.set(callId, card);
      this.extras.append(root);
    }
    return card;
  }

  pipelineCard(data) {
    const name = el("input", { "aria-label": "Retriever name", placeholder: "retriever name", value: "" });
    const out = el("span", { class: "muted", role: "status" });
    const save = el("button", {
      type: "button", text: "Save as retriever", onclick: async () => {
        if (!this.conv.actions.saveRetriever) return;
        save.disabled = true;
        try {
          out.textContent = `saved as ${await this.conv.actions.saveRetriever(data.config, name.value.trim())}`;
        } catch (e) {
          out.textContent = `could not save: ${e.message}`;
          save.disabled = false;
        }
      },
    });
    return el("div", { class: "pipeline" },
      el("div", { class: "tool-name", text: `pipeline_config from ${data.tool_name}` }),
      el("details", {}, el("summary", { text: "pipeline" }), el("pre", { text: pretty(data.config) })),
      this.conv.actions.saveRetriever ? el("div", { class: "row" }, name, save, out) : null);
  }

  confirmCard(data) {
    const out = el("span", { class: "muted", role: "status" });
    const buttons = [];
    const decide = (approved) => async () => {
      buttons.forEach((b) => { b.disabled = true; });
      out.textContent = approved ? "approved" : "denied";
      try {
        await this.conv.actions.confirm(this, data.confirmation_id, approved);
      } catch (e) {
        out.textContent = `failed: ${e.message}`;
      }
    };
    if (this.conv.actions.confirm) {
      buttons.push(el("button", { type: "button", class: "approve", text: "Approve", onclick: decide(true) }));
      buttons.push(el("button", { type: "button", class: "danger deny", text: "Deny", onclick: decide(false) }));
    }
    return el("div", { class: "confirm" },
      el("div", { class: "tool-name", text: `${data.tool_name} needs your confirmation` }),
      el("div", { text: data.message || "" }),
      el("pre", { text: pretty(data.inputs) }),
      el("div", { class: "row" }, ...buttons, out));
  }

  resume() {
    this.li.className = "msg agent running";
    this.state.textContent = "running…";
  }

  finish(text, cls) {
    this.li.classList.remove("running");
    this.li.classList.add(cls);
    this.state.textContent = text;
  }
}
