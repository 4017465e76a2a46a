// Reading an answer: math typeset by KaTeX, and copy buttons on code blocks and answers.
//
// The server finds the math (chat/markdown_math.py) and sends it as TeX text inside
// `.math` elements; here KaTeX turns each into typeset math with katex.render, which
// builds DOM nodes (their styles set through the CSSOM, which the CSP allows; no HTML
// string, no eval). trust: false refuses \href, \url, \htmlClass and the like. TeX it
// cannot parse is shown as its source, by us rather than by KaTeX's throwOnError:
// false, whose error span carries a style *attribute* that the CSP (no unsafe-inline)
// refuses, with a console error for every typo. KaTeX (600 kB) is fetched only by a
// page that has math, from static/vendor/katex/ (never a CDN).
//
// Math is typeset when the answer's HTML arrives (answer.done, a snapshot, a page):
// streamed text is shown as plain text, Markdown and math alike, so a half-written
// `\frac{` never flashes as an error.
//
// The answer's copy button copies its Markdown as written, from the answer's
// `data-markdown` (set by the page; an answer that ended live gets it when the run ends
// and the conversation redraws).

let katexLoading = null;

function katex() {
  katexLoading ??= import("../vendor/katex/katex.mjs").then((module) => module.default);
  return katexLoading;
}

export async function renderMath(root) {
  const pending = [...root.querySelectorAll(".math:not([data-rendered])")];
  if (!pending.length) return;
  let engine;
  try {
    engine = await katex();
  } catch (error) {
    console.warn("reading: KaTeX could not be loaded; math stays as TeX", error);
    return;
  }
  for (const el of pending) {
    if (el.dataset.rendered) continue; // typeset by a call that ran meanwhile
    const tex = el.textContent;
    el.dataset.rendered = "true";
    el.dataset.tex = tex;
    try {
      engine.render(tex, el, {
        displayMode: el.dataset.display === "block",
        throwOnError: true,
        trust: false,
        strict: "ignore",
      });
    } catch (error) {
      // Not TeX KaTeX can read (or KaTeX failed): the source, as written, with why.
      el.textContent = tex;
      el.classList.add("math-error");
      el.title = String(error.message || error);
    }
  }
}

// One live region per page: a screen reader hears "Copied" once, whichever button.
function announcer() {
  let el = document.querySelector("[data-role=copy-announcer]");
  if (!el) {
    el = Object.assign(document.createElement("div"), { className: "visually-hidden" });
    el.dataset.role = "copy-announcer";
    el.setAttribute("aria-live", "polite");
    el.setAttribute("role", "status");
    document.body.append(el);
  }
  return el;
}

async function writeClipboard(text) {
  if (navigator.clipboard?.writeText) return navigator.clipboard.writeText(text);
  // Plain HTTP on another host has no async clipboard: the old way still works.
  const area = Object.assign(document.createElement("textarea"), { value: text });
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

async function copy(button, text, what) {
  const say = announcer();
  try {
    await writeClipboard(text);
    button.dataset.state = "copied";
    button.textContent = "Copied";
    say.textContent = `Copied ${what} to the clipboard.`;
  } catch {
    button.dataset.state = "failed";
    button.textContent = "Copy failed";
    say.textContent = `Could not copy ${what}: the browser refused.`;
  }
  window.setTimeout(() => {
    button.textContent = "Copy";
    delete button.dataset.state;
  }, 2000);
}

function copyButton(label, onClick) {
  const button = Object.assign(document.createElement("button"), {
    type: "button",
    className: "copy-button",
    textContent: "Copy",
  });
  button.setAttribute("aria-label", label);
  button.addEventListener("click", () => onClick(button));
  return button;
}

export function addCopyButtons(root) {
  for (const pre of root.querySelectorAll(".markdown pre:not(.raw)")) {
    if (pre.parentElement.classList.contains("code-block")) continue;
    const holder = Object.assign(document.createElement("div"), { className: "code-block" });
    pre.replaceWith(holder);
    holder.append(pre, copyButton("Copy the code", (b) => copy(b, pre.textContent, "the code")));
  }
  const answers = root.matches?.("[data-markdown]") ? [root] : [];
  answers.push(...root.querySelectorAll("[data-markdown]"));
  for (const answer of answers) {
    const head = answer.querySelector(".answer-head");
    if (!head || !answer.dataset.markdown || head.querySelector(".copy-button")) continue;
    head.append(
      copyButton("Copy this answer as Markdown", (b) => copy(b, answer.dataset.markdown, "the answer")),
    );
  }
}

export function enhance(root) {
  addCopyButtons(root);
  return renderMath(root);
}
