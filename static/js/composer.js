// Composer niceties shared by every chat page: Enter sends, Shift+Enter is a new
// line, a busy button while posting, and confirmation for destructive buttons.
export function enhanceComposer(form, onSubmit) {
  const textarea = form.querySelector("textarea");
  textarea?.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      if (!button?.disabled) form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    const button = form.querySelector("button[type=submit]");
    if (onSubmit) {
      event.preventDefault();
      onSubmit(form, button);
    } else if (button) {
      button.disabled = true;
      button.textContent = "Sending…";
    }
  });
  textarea?.focus();
}

for (const button of document.querySelectorAll("[data-confirm]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}

// "May consult the panel" is for one model: shown when a single model answers, and
// its panel choice only once it is ticked (the server refuses it with a panel anyway).
function showConsult(form) {
  const answerer = form.querySelector("select[name=answerer]");
  const bar = form.querySelector("[data-role=consult]");
  const ticked = form.querySelector("input[name=consult]");
  if (!answerer || !bar || !ticked) return;
  const update = () => {
    bar.hidden = answerer.value.startsWith("panel:") && !ticked.checked;
    bar.querySelector(".consult-panel").hidden = !ticked.checked;
  };
  answerer.addEventListener("change", update);
  ticked.addEventListener("change", update);
  update();
}

const newChat = document.querySelector("form[data-composer=new]");
if (newChat) {
  showConsult(newChat);
  enhanceComposer(newChat);
}
