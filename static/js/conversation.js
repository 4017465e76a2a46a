// The chat conversation: posts messages over HTTP, follows runs over the websocket.
//
// Protocol (chat/consumers.py): on connect the server sends a snapshot of the
// recent runs, then events. Every event carries `event_id`, its place in the
// conversation's stream; a reconnect names the last one we had (`?after=`) and the server
// answers "resumed" and sends what came after it, with no snapshot (or a snapshot
// when it no longer keeps that id). Each answer's deltas carry a sequence number:
// a delta at or below what we have is a duplicate and dropped; one that skips
// ahead means a frame was lost, so we ask for a fresh snapshot ("resync").
// Streamed text is inserted as text; only server-sanitised HTML is set as HTML.
// Math and copy buttons (reading.js) are added when an answer's HTML arrives.
import { enhanceComposer } from "./composer.js";
import { formatDuration } from "./format.js";
import { enhance } from "./reading.js";

const conversation = document.querySelector("[data-conversation]");
const thread = conversation.querySelector("[data-role=thread]");
const connection = conversation.querySelector("[data-role=connection]");
const composer = conversation.querySelector("form[data-composer=conversation]");
const composerError = conversation.querySelector("[data-role=composer-error]");
const seqs = new Map(); // answer id -> last sequence number applied
const ACTIVE = ["queued", "panel", "judging", "synthesizing"];
// Keep in step with chat.models.Run.Status labels.
const RUN_LABELS = { queued: "Waiting for a worker…", routing: "The router is reading the question…", panel: "The panel is answering…", judging: "The judge is comparing the answers…", synthesizing: "Writing the final answer…" };
const STATUS_LABELS = { queued: "Queued", streaming: "Streaming", done: "Done", failed: "Failed", late: "Late", cancelled: "Cancelled", skipped: "Skipped" };

let socket = null;
let lastEvent = Date.now();
let retry = 0;
let resyncPending = false;
let lastEventId = null; // the conversation stream's id of the last event we had

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
  if (stats.first_token_ms != null) parts.push(`first token ${formatDuration(stats.first_token_ms)}`);
  if (stats.cost) parts.push(stats.cost);
  if (stats.latency_ms != null) parts.push(`total ${formatDuration(stats.latency_ms)}`);
  return parts.map((text) => Object.assign(document.createElement("span"), { textContent: text }));
}

function finishAnswer(el, event) {
  // The saved, server-rendered (nh3-sanitised) Markdown replaces the streamed text.
  const body = el.querySelector("[data-role=body]");
  body.innerHTML = event.html || "";
  if (!event.html && event.status === "done" && el.querySelector(".tool-step")) {
    // Only tool calls, no text: say so rather than show an empty answer.
    body.replaceChildren(Object.assign(document.createElement("p"), {
      className: "tool-only",
      textContent: "No text: this answer is its tool steps, below.",
    }));
  }
  setStatus(el, event.status);
  setError(el, event.error);
  el.querySelector("[data-role=stats]").replaceChildren(...formatStats(event.stats));
  enhance(el);
}

const TOOL_ICONS = { web_search: "🔎", web_fetch: "📄", run_python: "▶" };

function toolPreview(args) {
  // The model's arguments in a few words: a lone string (a query, a URL) as itself.
  try {
    const parsed = JSON.parse(args);
    const values = parsed && typeof parsed === "object" ? Object.values(parsed) : [];
    if (values.length === 1 && typeof values[0] === "string") return `“${values[0].slice(0, 120)}”`;
  } catch { /* not JSON: shown as written */ }
  return args.length > 120 ? `${args.slice(0, 120)}…` : args;
}

function showToolStarted(event) {
  // A seat's tool call has started: a row for it now; tool.done redraws it finished.
  const el = answerEl(event.answer);
  if (!el) return refreshThread();
  let steps = el.querySelector(".tool-steps");
  if (!steps) {
    steps = document.createElement("details");
    steps.className = "tool-steps";
    steps.open = true;
    steps.append(document.createElement("summary"), document.createElement("ol"));
    el.querySelector("[data-role=body]").after(steps);
  }
  const list = steps.querySelector("ol");
  if (list.querySelector(`[data-call="${CSS.escape(event.id)}"]`)) return;
  const row = document.createElement("li");
  row.className = "tool-step running";
  row.dataset.call = event.id;
  const icon = Object.assign(document.createElement("span"), { className: "tool-icon", textContent: TOOL_ICONS[event.name] || "•" });
  icon.setAttribute("aria-hidden", "true");
  const name = Object.assign(document.createElement("span"), { className: "tool-name", textContent: event.name });
  const spinner = Object.assign(document.createElement("span"), { className: "spinner" });
  spinner.setAttribute("aria-hidden", "true");
  row.append(icon, " ", name, " ", toolPreview(event.arguments || ""), " ", spinner,
    Object.assign(document.createElement("span"), { className: "muted small", textContent: " running…" }));
  list.append(row);
  const count = list.children.length;
  steps.querySelector("summary").textContent = `${count} tool step${count === 1 ? "" : "s"}`;
}

function count(name) {
  // Counts shown on the page (data-snapshots, data-resumes): what tests and a
  // curious person can read of how the page was kept whole.
  conversation.dataset[name] = String(Number(conversation.dataset[name] || 0) + 1);
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
        // Already shown finished (by the page or its event): leave its typeset math.
        if (el.dataset.status !== item.status) finishAnswer(el, item);
        seqs.set(item.answer, Infinity);
      } else {
        if (item.text) liveText(el).textContent = item.text;
        setStatus(el, item.status);
        setError(el, item.error);
        seqs.set(item.answer, item.seq);
        // Calls still running: their rows, which a page drawn by the server lacks.
        for (const call of item.tools || []) showToolStarted(call);
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
      conversation.dataset.resumedFrom = event.after;
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
    case "tool.started": return showToolStarted(event);
    case "answer.created":   // the judge or the synthesizer starts: render it
    case "decision":         // a strategy decided something: show its card
    case "tool.done":        // a seat's tool step: its finished row, from the server
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
    case "error": return console.warn("conversation:", event.error);
  }
}

function resync() {
  if (resyncPending || socket?.readyState !== WebSocket.OPEN) return;
  resyncPending = true;
  socket.send(JSON.stringify({ type: "resync" }));
}

// A form posted with fetch, answered in JSON (the server's pages answer the same
// form as HTML without JavaScript): the response, and its JSON or {}.
async function postForm(form) {
  const response = await fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  return { response, data };
}

let refreshing = null;
let refreshAgain = false;
async function refreshThread() {
  // Structure changed (a new stage, a run from another tab): fetch the conversation again,
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
      enhance(thread);
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
  socket = new WebSocket(`${scheme}://${window.location.host}${conversation.dataset.wsPath}${after}`);
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
    const { response, data } = await postForm(form);
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

// Stop: shown while a run of this conversation is live; stops the newest one.
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
// Esc stops the live run from anywhere on the page, as the Stop button does; an open
// menu or dialog that handles Esc itself (defaultPrevented) keeps it.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
  if (!stopButton.hidden && !stopButton.disabled) stopButton.click();
});
new MutationObserver(updateStop).observe(thread, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
updateStop();

// Versions of a turn: edit a question in place, regenerate an answer, move between
// versions. Each posts as a form would, then the thread is fetched again (later turns
// follow the version shown), and the focus goes back where the keyboard was.
function editing(turn, on) {
  turn.querySelector("[data-role=question]").hidden = on;
  turn.querySelector("[data-role=edit-form]").hidden = !on;
  turn.querySelector("[data-role=edit]").hidden = on;
  if (on) {
    const box = turn.querySelector("[data-role=edit-form] textarea");
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  } else {
    turn.querySelector("[data-role=edit]").focus();
  }
}

thread.addEventListener("click", (event) => {
  const button = event.target.closest("[data-role=edit], [data-role=edit-cancel]");
  if (!button) return;
  editing(button.closest(".turn"), button.dataset.role === "edit");
});

thread.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !event.target.closest("[data-role=edit-form]")) return;
  event.stopPropagation(); // Esc here closes the editor; it does not stop a run
  editing(event.target.closest(".turn"), false);
});

thread.addEventListener("submit", async (event) => {
  const form = event.target.closest("[data-role=version-form], [data-role=edit-form], [data-role=regenerate-form]");
  if (!form) return;
  event.preventDefault();
  const arrow = form.querySelector(".version-arrow")?.dataset.role;
  const error = form.querySelector("[data-role=edit-error]");
  try {
    const { response, data } = await postForm(form);
    if (!response.ok) {
      const message = data.error || `That did not work (HTTP ${response.status}).`;
      if (error) {
        error.textContent = message;
        error.hidden = false;
      } else {
        composerError.textContent = message;
        composerError.hidden = false;
      }
      return;
    }
    await refreshThread();
    const shown = thread.querySelector(`#turn-${data.shown}`) || thread.querySelector(`[data-run="${data.run}"]`)?.closest(".turn");
    if (!shown) return;
    shown.scrollIntoView({ block: "nearest" });
    const again = shown.querySelector(`[data-role=${arrow}]:not([disabled])`) || shown.querySelector(".version-arrow:not([disabled])"); // not its form
    (arrow && again ? again : shown.querySelector("[data-role=edit]"))?.focus();
  } catch {
    composerError.textContent = "Could not reach the server; try again.";
    composerError.hidden = false;
  }
});

enhanceComposer(composer, send);
enhance(thread);
scrollDown(true);
connect();
