// The chat room: posts messages over HTTP, follows runs over the websocket.
//
// Protocol (chat/consumers.py): on connect the server sends a snapshot of the
// recent runs, then events. Every event carries `event_id`, its place in the
// room's stream; a reconnect names the last one we had (`?after=`) and the server
// answers "resumed" and sends what came after it, with no snapshot (or a snapshot
// when it no longer keeps that id). Each answer's deltas carry a sequence number:
// a delta at or below what we have is a duplicate and dropped; one that skips
// ahead means a frame was lost, so we ask for a fresh snapshot ("resync").
// Streamed text is inserted as text; only server-sanitised HTML is set as HTML.
import { enhanceComposer } from "./composer.js";

const room = document.querySelector("[data-room]");
const thread = room.querySelector("[data-role=thread]");
const connection = room.querySelector("[data-role=connection]");
const composer = room.querySelector("form[data-composer=room]");
const composerError = room.querySelector("[data-role=composer-error]");
const seqs = new Map(); // answer id -> last sequence number applied
const ACTIVE = ["queued", "panel", "judging", "synthesizing"];
// Keep in step with chat.models.Run.Status labels.
const RUN_LABELS = { queued: "Waiting for a worker…", routing: "The router is reading the question…", panel: "The panel is answering…", judging: "The judge is comparing the answers…", synthesizing: "Writing the final answer…" };
const STATUS_LABELS = { queued: "Queued", streaming: "Streaming", done: "Done", failed: "Failed", late: "Late", cancelled: "Cancelled", skipped: "Skipped" };

let socket = null;
let lastEvent = Date.now();
let retry = 0;
let resyncPending = false;
let lastEventId = null; // the room stream's id of the last event we had

function answerEl(id) {
  return thread.querySelector(`[data-answer="${id}"]`);
}

function nearBottom() {
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
}

function scrollDown(stick) {
  if (stick) thread.scrollTop = thread.scrollHeight;
}

function setStatus(el, status) {
  el.dataset.status = status;
  // Started but no text yet: the model is thinking (or its server is queueing us).
  const thinking = status === "streaming" && !el.querySelector(".live-text")?.textContent;
  el.querySelector("[data-role=status]").textContent = thinking ? "Thinking" : STATUS_LABELS[status] || status;
}

function liveText(el) {
  const body = el.querySelector("[data-role=body]");
  let node = body.querySelector(".live-text");
  if (!node) {
    body.replaceChildren();
    node = document.createElement("div");
    node.className = "live-text";
    body.append(node);
  }
  return node;
}

function setError(el, error) {
  const node = el.querySelector("[data-role=error]");
  node.textContent = error || "";
  node.hidden = !error;
}

function formatStats(stats) {
  if (!stats) return [];
  const parts = [];
  if (stats.output_tokens != null) {
    const approx = stats.tokens_estimated ? "≈" : "";
    parts.push(`${approx}${stats.input_tokens} in · ${stats.output_tokens} out tokens`);
  }
  if (stats.first_token_ms != null) parts.push(`first token ${(stats.first_token_ms / 1000).toFixed(1)} s`);
  if (stats.cost) parts.push(stats.cost);
  if (stats.latency_ms != null) parts.push(`total ${(stats.latency_ms / 1000).toFixed(1)} s`);
  return parts.map((text) => Object.assign(document.createElement("span"), { textContent: text }));
}

function finishAnswer(el, event) {
  // The saved, server-rendered (nh3-sanitised) Markdown replaces the streamed text.
  el.querySelector("[data-role=body]").innerHTML = event.html || "";
  setStatus(el, event.status);
  setError(el, event.error);
  el.querySelector("[data-role=stats]").replaceChildren(...formatStats(event.stats));
}

function count(name) {
  // Counts shown on the page (data-snapshots, data-resumes): what tests and a
  // curious person can read of how the page was kept whole.
  room.dataset[name] = String(Number(room.dataset[name] || 0) + 1);
}

function applySnapshot(snapshot) {
  resyncPending = false;
  count("snapshots");
  const stick = nearBottom();
  let missing = false;
  for (const run of snapshot.runs) {
    // A run the page still shows as live but that has ended: its final events
    // were missed, so draw it again.
    const shown = thread.querySelector(`[data-run="${run.run}"]`);
    if (shown && ACTIVE.includes(shown.dataset.status) && !ACTIVE.includes(run.status)) missing = true;
    for (const item of run.answers) {
      const el = answerEl(item.answer);
      if (!el) { missing = true; continue; }
      if (item.html !== undefined) {
        finishAnswer(el, item);
        seqs.set(item.answer, Infinity);
      } else {
        if (item.text) liveText(el).textContent = item.text;
        setStatus(el, item.status);
        setError(el, item.error);
        seqs.set(item.answer, item.seq);
      }
    }
  }
  scrollDown(stick);
  if (missing) refreshThread();
}

function applyDelta(event) {
  const el = answerEl(event.answer);
  if (!el) return refreshThread();
  const have = seqs.get(event.answer) ?? 0;
  if (event.seq <= have) return; // already shown (snapshot or duplicate)
  if (event.seq > have + 1) return resync();
  const stick = nearBottom();
  const first = !el.querySelector(".live-text")?.textContent;
  liveText(el).append(document.createTextNode(event.text));
  if (first || el.dataset.status !== "streaming") setStatus(el, "streaming");
  seqs.set(event.answer, event.seq);
  scrollDown(stick);
}

function handle(event) {
  switch (event.type) {
    case "snapshot": return applySnapshot(event);
    case "resumed":
      room.dataset.resumedFrom = event.after;
      return count("resumes");
    case "answer.delta": return applyDelta(event);
    case "answer.done":
    case "answer.failed": {
      const el = answerEl(event.answer);
      if (!el) return refreshThread();
      const stick = nearBottom();
      finishAnswer(el, event);
      seqs.set(event.answer, Infinity);
      return scrollDown(stick);
    }
    case "answer.started": {
      const el = answerEl(event.answer);
      if (!el) return refreshThread();
      if (el.dataset.status === "queued") setStatus(el, "streaming");
      return;
    }
    case "answer.created":   // the judge or the synthesizer starts: render it
    case "decision":         // a strategy decided something: show its card
    case "tool.done":        // a seat's tool step: show its row
    case "analysis.ready":
    case "run.done":         // the run folds into "how this answer was made"
      return refreshThread();
    case "run.started": {
      const run = thread.querySelector(`[data-run="${event.run}"]`);
      if (!run) return refreshThread();
      run.dataset.status = event.status;
      const label = run.querySelector("[data-role=run-status]");
      if (label) label.textContent = RUN_LABELS[event.status] || event.status;
      return;
    }
    case "run.status": {
      // judging/synthesizing: re-render, so the stage's progress state shows.
      const run = thread.querySelector(`[data-run="${event.run}"]`);
      if (run) run.dataset.status = event.status;
      return refreshThread();
    }
    case "error": return console.warn("room:", event.error);
  }
}

function resync() {
  if (resyncPending || socket?.readyState !== WebSocket.OPEN) return;
  resyncPending = true;
  socket.send(JSON.stringify({ type: "resync" }));
}

let refreshing = null;
let refreshAgain = false;
async function refreshThread() {
  // Structure changed (a new stage, a run from another tab): fetch the room again,
  // swap the thread in, then ask for a snapshot to fill live answers. A request
  // that arrives while one is in flight runs once more after it: the page fetched
  // may already be older than the event that asked.
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        refreshAgain = false;
        const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.querySelector("[data-role=thread]");
        if (fresh) thread.replaceChildren(...fresh.childNodes);
      } while (refreshAgain);
      seqs.clear();
      resync();
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function setConnection(state, label) {
  connection.dataset.state = state;
  connection.textContent = label;
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const after = lastEventId ? `?after=${encodeURIComponent(lastEventId)}` : "";
  socket = new WebSocket(`${scheme}://${window.location.host}${room.dataset.wsPath}${after}`);
  socket.addEventListener("open", () => { retry = 0; setConnection("open", "Live"); });
  socket.addEventListener("message", (message) => {
    lastEvent = Date.now();
    const event = JSON.parse(message.data);
    if (event.event_id) lastEventId = event.event_id;
    handle(event);
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 4401 || event.code === 4404 || event.code === 1006 && retry > 8) {
      setConnection("closed", "Disconnected — reload the page");
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** retry++);
    setConnection("connecting", "Reconnecting…");
    window.setTimeout(connect, delay);
  });
}

let sending = false;

async function send(form, button) {
  if (sending) return; // Enter pressed twice: one message
  sending = true;
  const textarea = form.querySelector("textarea");
  composerError.hidden = true;
  button.disabled = true;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const gone = response.status === 404 && "This conversation no longer exists (deleted in another tab?). Your text is still here: copy it into a new chat.";
      composerError.textContent = data.error || gone || `Sending failed (HTTP ${response.status}). Your text is still here.`;
      composerError.hidden = false;
      return;
    }
    textarea.value = "";
    const holder = document.createElement("div");
    holder.innerHTML = data.html; // server-rendered template: user text is escaped there
    if (!thread.querySelector(`[data-run="${data.run}"]`)) thread.append(...holder.childNodes);
    scrollDown(true);
    resync();
  } catch {
    composerError.textContent = "Could not reach the server. Your text is still here; try again.";
    composerError.hidden = false;
  } finally {
    sending = false;
    button.disabled = false;
    textarea.focus();
  }
}

// Redis may lose events (a restart). A gap in deltas is noticed by the next delta;
// a lost final event is not, so when a live answer has been quiet for a while, ask
// for a fresh snapshot.
window.setInterval(() => {
  const live = thread.querySelector('.answer[data-status="streaming"], .answer[data-status="queued"]');
  if (live && Date.now() - lastEvent > 15000) {
    lastEvent = Date.now();
    resync();
  }
}, 5000);

// Stop: shown while a run of this room is live; stops the newest one.
const stopButton = composer.querySelector("[data-role=stop]");

function liveRun() {
  const runs = [...thread.querySelectorAll(".run[data-run]")];
  return runs.reverse().find((run) => ACTIVE.includes(run.dataset.status));
}

function updateStop() {
  stopButton.hidden = !liveRun();
}

stopButton.addEventListener("click", async () => {
  const run = liveRun();
  if (!run) return;
  stopButton.disabled = true;
  try {
    await fetch(run.dataset.cancelUrl, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": composer.querySelector("[name=csrfmiddlewaretoken]").value },
      credentials: "same-origin",
    });
  } finally {
    stopButton.disabled = false;
  }
});
new MutationObserver(updateStop).observe(thread, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
updateStop();

enhanceComposer(composer, send);
scrollDown(true);
connect();
