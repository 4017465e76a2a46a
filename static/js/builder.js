// The panel builder: add seats without a page reload (the form works without it too:
// one blank seat is always offered).
const form = document.querySelector("[data-builder]");
const seats = form.querySelector("[data-role=seats]");
const template = form.querySelector("template[data-role=empty-seat]");
const total = form.querySelector("input[name$=TOTAL_FORMS]");
const max = Number(form.querySelector("input[name$=MAX_NUM_FORMS]").value || 8);

form.querySelector("[data-role=add-seat]").addEventListener("click", () => {
  const index = Number(total.value);
  if (seats.querySelectorAll("[data-role=seat]").length >= max) return;
  const html = template.innerHTML.replaceAll("__prefix__", String(index));
  const holder = document.createElement("div");
  holder.innerHTML = html; // our own server-rendered form template
  seats.append(...holder.childNodes);
  total.value = String(index + 1);
  seats.lastElementChild?.querySelector("select")?.focus();
});

// Show the chosen strategy's settings, and on each seat only the fields it uses.
// Without JavaScript every section shows, each labelled with its strategy.
const strategy = form.querySelector("select[name=strategy]");
function showStrategy() {
  const chosen = strategy.value;
  for (const section of form.querySelectorAll("[data-strategy]")) {
    section.hidden = section.dataset.strategy !== chosen;
  }
  for (const field of form.querySelectorAll("[data-for]")) {
    field.hidden = !field.dataset.for.split(" ").includes(chosen);
  }
}
strategy?.addEventListener("change", showStrategy);
form.querySelector("[data-role=add-seat]").addEventListener("click", showStrategy);
if (strategy) showStrategy();
