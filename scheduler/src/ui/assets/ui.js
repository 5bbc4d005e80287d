// Ember web UI: keeps a live page fresh. A page with `data-api` on its body polls that
// REST address; when the answer changes it fetches the page again and swaps its <main>
// (so the server renders every figure, escaped, in one place). Pages of finished jobs
// carry no `data-api` and are left alone. Works offline: no library, no network but this
// server's own.
(function () {
  "use strict";
  const api = document.body.dataset.api;
  if (!api) return;
  const state = document.getElementById("live-state");
  let last = null;
  let busy = false;
  async function tick() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(api, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!answer.ok) throw new Error(answer.status + " " + answer.statusText);
      const text = await answer.text();
      if (last !== null && text !== last) {
        const page = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
        const html = new DOMParser().parseFromString(await page.text(), "text/html");
        const fresh = html.querySelector("main");
        if (fresh) document.querySelector("main").replaceWith(fresh);
        if (!html.body.dataset.api) {
          clearInterval(timer);
          if (state) state.textContent = "finished";
          return;
        }
      }
      last = text;
      if (state) state.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      if (state) state.textContent = "not updating: " + e.message;
    } finally {
      busy = false;
    }
  }
  const timer = setInterval(tick, 1000);
  tick();
})();
