import "./composer.js"; // confirmation of the Delete button

// An evaluation's page while it runs: the progress bar, its ETA and the results
// table follow the worker (polled; the evaluation itself lives on the server, so a
// reload or a closed tab changes nothing). When it ends the page reloads once to
// show the chart and the item grid.

const box = document.getElementById("progress");
const ACTIVE = new Set(["queued", "running", "stopping"]);

function eta(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `about ${seconds} s left`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `about ${minutes} min left` : `about ${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

function show(p) {
  box.dataset.status = p.status;
  box.querySelector(".eval-status").textContent = p.status.charAt(0).toUpperCase() + p.status.slice(1);
  box.querySelector(".progress-count").textContent = `${p.done} of ${p.total} runs`;
  box.querySelector(".progress-errors").textContent = p.errors ? `${p.errors} error${p.errors === 1 ? "" : "s"}` : "";
  box.querySelector(".progress-eta").textContent = ACTIVE.has(p.status) ? eta(p.eta_s) : "";
  const bar = box.querySelector("progress");
  bar.max = p.total;
  bar.value = p.done;
  bar.textContent = `${p.percent}%`;
  const detail = box.querySelector(".progress-detail");
  detail.textContent = p.detail;
  detail.hidden = !p.detail;
}

async function refreshTable() {
  const response = await fetch(box.dataset.table, { headers: { Accept: "text/html" } });
  if (response.ok) document.getElementById("results-table").innerHTML = await response.text();
}

async function poll(lastDone) {
  let next = lastDone;
  try {
    const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
    if (response.ok) {
      const p = await response.json();
      show(p);
      if (!ACTIVE.has(p.status)) {
        window.location.reload();
        return;
      }
      if (p.done !== lastDone) {
        next = p.done;
        await refreshTable();
      }
    }
  } catch {
    // The server is restarting: try again at the next tick.
  }
  setTimeout(() => poll(next), 2000);
}

if (box && ACTIVE.has(box.dataset.status)) {
  setTimeout(() => poll(Number(box.querySelector("progress").value)), 1000);
}
