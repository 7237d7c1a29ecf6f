// The local page's script (infra/local/page.py): refreshes the current view every two seconds, keeping open
// details where the content did not change, and sends the redrive. What it inserts is HTML the server escaped;
// what it writes itself goes through textContent.
"use strict";
(function () {
  const main = document.getElementById("main");
  const flash = document.getElementById("flash");
  const updated = document.getElementById("updated");
  let shown = main.dataset.digest || null;
  let busy = false;

  function openDetails() {
    return new Set(Array.from(main.querySelectorAll("details[open]"), (node) => keyOf(node)));
  }

  function keyOf(node) {
    const message = node.closest(".message");
    const index = message ? Array.prototype.indexOf.call(main.querySelectorAll(".message"), message) : -1;
    return `${node.dataset.key || ""}:${index}`;
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const query = new URLSearchParams(location.search);
      query.set("fragment", "1");
      const response = await fetch(`/_local/?${query}`, { cache: "no-store" });
      if (response.ok) {
        const text = await response.text();
        const digest = response.headers.get("X-Fragment-Digest") || text;
        if (digest !== shown) {
          const open = openDetails();
          main.innerHTML = text;
          for (const node of main.querySelectorAll("details")) {
            if (open.has(keyOf(node))) node.open = true;
          }
          shown = digest;
        }
        updated.textContent = new Date().toISOString();
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
      }
    } catch (error) {
      // The stack stopped or restarts: keep what is shown and try again on the next tick.
    } finally {
      busy = false;
    }
  }

  function say(text, outcome) {
    flash.textContent = text;
    flash.className = `flash ${outcome}`;
    flash.hidden = false;
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action='redrive']");
    if (!button) return;
    button.disabled = true;
    say("Redriving…", "");
    try {
      // One call moves what fits in its time and says "more" when letters are left: call again until none are.
      let moved = 0;
      for (;;) {
        const response = await fetch(button.dataset.url, { method: "POST", cache: "no-store" });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          const done = moved ? ` after ${moved} message(s) were sent back` : "";
          say(`The redrive answered ${response.status}${done}: ${body.message || JSON.stringify(body)}`, "failed");
          break;
        }
        moved += body.redriven || 0;
        if (!body.more || !body.redriven) {
          say(`Redriven: ${moved} message(s) sent back to the delivery queue.`, "ok");
          break;
        }
        say(`Redriving… ${moved} message(s) sent back so far.`, "");
      }
    } catch (error) {
      say(`The redrive could not be sent: ${error}`, "failed");
    } finally {
      shown = null;
      refresh();
    }
  });

  // Each listing of the dead-letter queue is an admin API call (a line in the terminal): that view refreshes slower.
  const deadLetters = new URLSearchParams(location.search).get("view") === "dead-letters";
  setInterval(refresh, deadLetters ? 10000 : 2000);
  refresh();
})();
