// Follows events URLs with the npm `eventsource` package (it reconnects by itself with
// Last-Event-ID) and prints, per URL, the ids and types it dispatched, as one JSON line.
// Usage: node follow.mjs <api key> <namespace> <url>...
import { EventSource } from "eventsource";

const [key, namespace, ...urls] = process.argv.slice(2);
const TYPES = ["intent", "thinking", "tool_call", "tool_result", "retriever_execution", "pipeline_config",
  "token", "message", "session_name", "done", "error", "reset", "confirmation_required"];

function follow(url) {
  return new Promise((resolve) => {
    const got = [];
    let errors = 0;
    const es = new EventSource(url, {
      fetch: (input, init) => fetch(input, {
        ...init, headers: { ...init.headers, Authorization: `Bearer ${key}`, "X-Namespace": namespace } }),
    });
    const finish = (why) => { es.close(); resolve({ url, got, errors, end: why }); };
    for (const type of TYPES) {
      es.addEventListener(type, (ev) => {
        // The EventSource reports its own connection errors as "error" events too (no data).
        if (type === "error" && typeof ev.data !== "string") return;
        let ok = true;
        try { JSON.parse(ev.data); } catch { ok = false; }
        got.push([ev.lastEventId, type, ok]);
        if (type === "done" || type === "error") finish("terminal");
      });
    }
    es.onerror = () => {
      errors += 1;
      if (es.readyState === EventSource.CLOSED) finish("closed");
    };
  });
}

// eventsource unrefs its reconnect timer: without a timer of our own, node would exit while
// every follower waits to reconnect.
const alive = setInterval(() => {}, 1000);
const results = await Promise.all(urls.map(follow));
clearInterval(alive);
process.stdout.write(JSON.stringify(results) + "\n");
