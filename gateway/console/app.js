// The console: sign in, sessions, live chat with the event timeline, replay.
// Built on the JavaScript client (contract B), served by the gateway at /console/agentstream.js.

import { AgentStreamClient, ApiError } from "./agentstream.js";
import { $, el, clear } from "./dom.js";
import { Conversation } from "./conversation.js";
import { Replay } from "./replay.js";

const STORE = "agentstream.console"; // sessionStorage: this tab only, never localStorage or the URL
const MODELS = ["agentstream-builtin", "claude-sonnet-4-5", "claude-haiku-4-5"];

const state = { client: null, namespace: "", session: null, running: null, live: null, replay: null };

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

function describe(e) {
  if (e instanceof ApiError) return `${e.status} ${e.code || ""}: ${e.message}`;
  return e && e.message ? e.message : String(e);
}

// --- sign in -----------------------------------------------------------------------------------

async function signIn(key, namespace) {
  const client = new AgentStreamClient({ apiKey: key, namespace });
  await client.listSessions({}); // proves the key and the namespace
  state.client = client;
  state.namespace = namespace;
  sessionStorage.setItem(STORE, JSON.stringify({ key, namespace }));
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("signout").hidden = false;
  $("whoami").textContent = `namespace ${namespace}`;
  status("");
  await loadTools();
  await refreshSessions();
}

function signOut() {
  if (state.running) state.running.stream.close();
  sessionStorage.removeItem(STORE);
  Object.assign(state, { client: null, namespace: "", session: null, running: null });
  $("signin-key").value = "";
  $("app-view").hidden = true;
  $("replay-view").hidden = true;
  $("signin-view").hidden = false;
  $("signout").hidden = true;
  $("whoami").textContent = "";
  clear($("session-list"));
  status("signed out");
  $("signin-key").focus();
}

// --- sessions ----------------------------------------------------------------------------------

async function loadTools() {
  const select = $("new-model");
  clear(select);
  for (const m of MODELS) select.append(el("option", { value: m, text: m }));
  const box = $("new-tools");
  box.querySelectorAll("label").forEach((n) => n.remove());
  try {
    const tools = await state.client.request("GET", "/v1/agents/tools");
    for (const t of tools.results) {
      box.append(el("label", { class: "tool-choice", title: t.description },
        el("input", { type: "checkbox", value: t.name }), ` ${t.name}`));
    }
  } catch (e) {
    status(`could not list tools: ${describe(e)}`, true);
  }
}

async function refreshSessions() {
  const list = $("session-list");
  const page = await state.client.listSessions({ status: "active" });
  clear(list);
  for (const s of page.results) {
    const current = state.session && state.session.session_id === s.session_id;
    list.append(el("li", {},
      el("button", {
        type: "button", class: current ? "session current" : "session", "aria-current": current ? "true" : null,
        dataset: { sessionId: s.session_id }, onclick: () => openSession(s.session_id),
      },
      el("span", { class: "name", text: s.session_name || "(unnamed)" }),
      el("span", { class: "muted mono", text: s.session_id }),
      el("span", { class: "muted", text: `${s.stats.total_messages} messages · ${s.stats.total_tokens} tokens` }))));
  }
  if (!page.results.length) list.append(el("li", { class: "muted", text: "no sessions yet" }));
}

async function createSession(ev) {
  ev.preventDefault();
  const tools = [...$("new-tools").querySelectorAll("input:checked")].map((i) => i.value);
  const agent_config = { model: $("new-model").value };
  if (tools.length) agent_config.available_tools = tools;
  try {
    const s = await state.client.createSession({ agent_config });
    status(`created ${s.session_id}`);
    await openSession(s.session_id);
  } catch (e) {
    status(`could not create a session: ${describe(e)}`, true);
  }
}

function renderStats(s) {
  const dl = clear($("session-stats"));
  const rows = [["id", s.session_id], ["model", s.effective_model], ["status", s.status],
    ["messages", s.stats.total_messages], ["tokens", s.stats.total_tokens],
    ["tool calls", s.stats.total_tool_calls], ["avg latency", `${s.stats.avg_latency_ms} ms`]];
  for (const [k, v] of rows) dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) })));
  $("session-title").textContent = s.session_name || "(unnamed session)";
}

async function openSession(id) {
  if (state.running) state.running.stream.close();
  state.running = null;
  const s = await state.client.getSession(id);
  state.session = s;
  $("no-session").hidden = true;
  $("session-view").hidden = false;
  $("rename-input").value = s.session_name || "";
  renderStats(s);
  state.live = new Conversation($("live"), liveActions());
  const history = await state.client.getHistory(id);
  for (const m of history.messages) {
    if (m.role === "user") state.live.user(m.content);
    else if (m.role === "assistant") {
      const view = state.live.answer(null);
      view.setMessageId(m.message_id);
      view.text.textContent = m.content;
      view.finish("earlier answer", "done");
      view.replayButton = el("button", { type: "button", text: "Replay this message", onclick: () => openReplay(m.message_id) });
      view.extras.append(view.replayButton);
    }
  }
  await refreshSessions();
  $("send-input").focus();
}

async function refreshSession() {
  if (!state.session) return;
  try {
    state.session = await state.client.getSession(state.session.session_id);
    renderStats(state.session);
    await refreshSessions();
  } catch (e) {
    status(describe(e), true);
  }
}

async function renameSession(ev) {
  ev.preventDefault();
  const name = $("rename-input").value.trim();
  if (!name) return;
  try {
    await state.client.updateSession(state.session.session_id, { session_name: name });
    status("renamed");
    await refreshSession();
  } catch (e) {
    status(`could not rename: ${describe(e)}`, true);
  }
}

async function deleteSession() {
  const s = state.session;
  if (!s) return;
  try {
    await state.client.deleteSession(s.session_id);
    status(`deleted ${s.session_id}`);
    state.session = null;
    $("session-view").hidden = true;
    $("no-session").hidden = false;
    await refreshSessions();
  } catch (e) {
    status(`could not delete: ${describe(e)}`, true);
  }
}

// --- chat --------------------------------------------------------------------------------------

function liveActions() {
  return {
    saveRetriever: async (config, name) => {
      const body = { retriever_name: name || `console-${Date.now()}`, collection_identifiers: config.collection_identifiers,
        stages: config.stages };
      const r = await state.client.request("POST", "/v1/retrievers", body);
      status(`saved retriever ${r.retriever_id}`);
      return r.retriever_id;
    },
    confirm: async (view, confirmationId, approved) => {
      const sid = state.session.session_id;
      const answer = await state.client.respondToConfirmation(sid, confirmationId, { approved });
      // The answer continues the message as a stream; a client that answers with JSON instead
      // is followed from the pause by the message's events URL.
      const stream = answer && answer[Symbol.asyncIterator] ? answer
        : state.client.follow(sid, view.messageId, { lastEventId: view.lastId });
      view.resume();
      await follow(view, stream, view.startedAt);
    },
  };
}

function setRunning(running) {
  $("send-btn").disabled = running;
  $("cancel-btn").hidden = !running;
}

function connectionBanner(text) {
  status(text);
}

async function follow(view, stream, startedAt) {
  state.running = { view, stream };
  setRunning(true);
  try {
    for await (const ev of stream) {
      if (stream.messageId) view.setMessageId(stream.messageId);
      if (ev.type === "connection") {
        ev.resumedAfter = stream.lastEventId;
        connectionBanner(ev.data.state === "reconnecting"
          ? `Connection lost: reconnecting (attempt ${ev.data.attempt})…`
          : `Reconnected: resumed after event ${stream.lastEventId || "(start)"}`);
      }
      view.apply(ev, Date.now() - startedAt);
    }
  } catch (e) {
    view.finish(`stream failed: ${describe(e)}`, "failed");
    status(`stream failed: ${describe(e)}`, true);
  } finally {
    if (state.running && state.running.stream === stream) state.running = null;
    setRunning(false);
    if (view.messageId && !view.replayButton) {
      view.replayButton = el("button", { type: "button", text: "Replay this message", onclick: () => openReplay(view.messageId) });
      view.extras.append(view.replayButton);
    }
    await refreshSession();
  }
}

async function send(ev) {
  ev.preventDefault();
  const input = $("send-input");
  const content = input.value.trim();
  if (!content || state.running || !state.session) return;
  input.value = "";
  state.live.user(content);
  const startedAt = Date.now();
  const view = state.live.answer(startedAt);
  const stream = state.client.send(state.session.session_id, content);
  await follow(view, stream, startedAt);
  input.focus();
}

async function cancel() {
  const r = state.running;
  if (!r || !r.stream.messageId) return;
  try {
    await state.client.cancel(state.session.session_id, r.stream.messageId);
    status("cancel requested");
  } catch (e) {
    status(`could not cancel: ${describe(e)}`, true);
  }
}

// --- replay ------------------------------------------------------------------------------------

function openReplay(messageId = null) {
  const s = state.session;
  state.replay?.stop();
  state.replay = new Replay(state.client, s.session_id, messageId, new Conversation($("replay"), {}), (t) => {
    $("replay-state").textContent = t;
  });
  $("replay-title").textContent = messageId ? `Replay of ${messageId}` : `Replay of session ${s.session_id}`;
  $("replay-view").hidden = false;
  $("app-view").hidden = true;
  $("replay-state").textContent = "press Play";
  $("replay-play").focus();
}

function closeReplay() {
  state.replay?.stop();
  state.replay = null;
  $("replay-view").hidden = true;
  $("app-view").hidden = false;
}

function speed() {
  return Number(document.querySelector('input[name="speed"]:checked').value);
}

async function play() {
  try {
    await state.replay.play(speed());
  } catch (e) {
    $("replay-state").textContent = `replay failed: ${describe(e)}`;
  }
}

async function exportLines() {
  try {
    const text = await state.replay.jsonLines();
    const url = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
    const a = el("a", { href: url, download: `${state.replay.name()}.jsonl` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    $("replay-state").textContent = `export failed: ${describe(e)}`;
  }
}

// --- wiring ------------------------------------------------------------------------------------

function wire() {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("signin-key").value.trim(), $("signin-ns").value.trim());
    } catch (e) {
      $("signin-error").textContent = `Sign-in failed: ${describe(e)}`;
    }
  });
  $("signout").addEventListener("click", signOut);
  $("new-session").addEventListener("submit", createSession);
  $("rename-form").addEventListener("submit", renameSession);
  $("delete-session").addEventListener("click", deleteSession);
  $("send-form").addEventListener("submit", send);
  $("send-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("cancel-btn").addEventListener("click", cancel);
  $("replay-session").addEventListener("click", () => openReplay(null));
  $("replay-play").addEventListener("click", play);
  $("replay-export").addEventListener("click", exportLines);
  $("replay-close").addEventListener("click", closeReplay);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("replay-view").hidden) closeReplay();
  });
  const saved = sessionStorage.getItem(STORE);
  if (saved) {
    const { key, namespace } = JSON.parse(saved);
    signIn(key, namespace).catch(() => signOut());
  } else {
    $("signin-key").focus();
  }
}

wire();
