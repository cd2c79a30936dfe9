// The dashboard's live parts: one Server-Sent Events stream per tab (the body's
// data-stream), used to move bars in place from the events themselves, and as a signal to
// re-fetch the part of the page that changed (data-refresh, at most every few seconds).
// Paused while the tab is hidden; polls the same part when the stream is lost.
(() => {
  "use strict";
  const body = document.body;
  const streamUrl = body.dataset.stream || "";
  const refreshUrl = body.dataset.refresh || "";
  const refreshOn = body.dataset.refreshOn || "any";
  const liveState = document.getElementById("live-state");
  const REFRESH_GAP_MS = 3000;
  const POLL_MS = refreshOn === "poll" ? 5000 : 10000;
  let source = null;
  let failures = 0;
  let pollTimer = null;
  let refreshTimer = null;
  let lastRefresh = 0;

  const say = (state) => {
    if (liveState) {
      liveState.dataset.state = state;
      liveState.textContent = state;
    }
  };
  const utc = (iso) => {
    if (!iso) return "\u2014";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
  };
  const setField = (root, name, text) => {
    for (const el of root.querySelectorAll(`[data-field="${name}"]`)) el.textContent = text;
  };

  // A job's state from an event, into every element that shows it: text only, never HTML.
  function apply(job) {
    const shown = document.querySelectorAll(`[data-job="${CSS.escape(job.id)}"]`);
    let statusChanged = false;
    for (const el of shown) {
      for (const bar of el.querySelectorAll("[data-type]")) {
        const percent = job.progress[bar.dataset.type] ?? 0;
        bar.querySelector(".fill").style.width = `${percent}%`;
        bar.querySelector(".pct").textContent = `${percent.toFixed(1)}%`;
      }
      setField(el, "status", job.status);
      setField(el, "overall", `${job.overall_progress.toFixed(1)}%`);
      setField(el, "estimate", utc(job.estimated_completion_time));
      if (el.dataset.status !== job.status) statusChanged = true;
      el.dataset.status = job.status;
    }
    if (refreshOn === "any" || (refreshOn === "status" && statusChanged) ||
        (refreshOn === "rows" && (statusChanged || (shown.length === 0 && isNew(job))))) {
      scheduleRefresh();
    }
  }

  // A job not on the page belongs at its top only if the page is the first and the job is
  // newer than its newest row: only then is a refresh worth a read.
  function isNew(job) {
    const rows = document.getElementById("live");
    if (!rows || rows.dataset.firstPage !== "true") return false;
    const newest = rows.querySelector("[data-created]");
    return !newest || Date.parse(job.created_at) > Date.parse(newest.dataset.created);
  }

  function scheduleRefresh() {
    if (!refreshUrl || refreshTimer) return;
    const wait = Math.max(0, lastRefresh + REFRESH_GAP_MS - Date.now());
    refreshTimer = setTimeout(refresh, wait);
  }

  async function refresh() {
    refreshTimer = null;
    lastRefresh = Date.now();
    const target = document.getElementById("live");
    if (!target || !refreshUrl) return;
    try {
      const response = await fetch(refreshUrl, { headers: { Accept: "text/html" } });
      if (response.ok) target.innerHTML = await response.text(); // rendered and escaped by the server
    } catch (error) {
      say("offline");
    }
  }

  function open() {
    if (source || !streamUrl || refreshOn === "poll") {
      if (refreshOn === "poll") startPolling();
      return;
    }
    source = new EventSource(streamUrl);
    say("connecting");
    source.addEventListener("open", () => {
      failures = 0;
      stopPolling();
      say("live");
    });
    source.addEventListener("job", (event) => apply(JSON.parse(event.data)));
    source.addEventListener("snapshot", (event) => {
      for (const job of JSON.parse(event.data)) apply(job);
    });
    source.addEventListener("error", () => {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) {
        close();
        say("polling");
        startPolling();
        setTimeout(() => { if (!document.hidden) open(); }, 15000);
      }
    });
  }

  function close() {
    if (source) source.close();
    source = null;
  }

  function startPolling() {
    if (pollTimer || !refreshUrl) return;
    pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      close();
      stopPolling();
      say("paused");
    } else {
      open();
      scheduleRefresh(); // what changed while hidden
    }
  });

  for (const form of document.querySelectorAll("form[method=post]")) {
    const button = form.querySelector("button[data-action]");
    if (!button || button.dataset.action === "confirm" || form.closest(".bulk")) continue;
    form.addEventListener("submit", (event) => {
      if (!window.confirm(`${button.textContent.trim()} this job?`)) event.preventDefault();
    });
  }

  if (!document.hidden) open();
  else say("paused");
})();
