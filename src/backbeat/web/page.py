# ruff: noqa: E501 - an HTML/JS asset kept readable, not wrapped at 110 columns
"""The dashboard page: one HTML document whose small vanilla script calls the REST API.

No build step and no external assets. ``__SETTINGS__`` is replaced by the app with the API's
base path (the mount point) and whether mutating calls need a token.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>backbeat</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --accent: #3451b2; --bad: #b3261e; --ok: #1e7b34; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
         background: #f6f7f9; }
  header { background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: center; }
  header h1 { font-size: 18px; margin: 0; letter-spacing: .5px; }
  header .auth { margin-left: auto; display: flex; gap: 8px; align-items: center; }
  header input { padding: 4px 8px; border-radius: 4px; border: 0; }
  main { padding: 16px 24px; max-width: 1400px; }
  .stats { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
  .stat { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
  .stat b { display: block; font-size: 20px; }
  .stat span { color: var(--muted); font-size: 12px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin-bottom: 16px; }
  section h2 { font-size: 15px; margin: 0; padding: 10px 14px; border-bottom: 1px solid var(--line);
               display: flex; gap: 12px; align-items: center; }
  section h2 input { font-weight: normal; padding: 3px 8px; border: 1px solid var(--line); border-radius: 4px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; }
  td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
  .empty { color: var(--muted); padding: 10px 14px; }
  .note { color: var(--muted); font-size: 12px; font-weight: normal; }
  .tag { background: #eef1fb; color: var(--accent); border-radius: 10px; padding: 1px 8px; margin-right: 4px;
         font-size: 12px; }
  .state-paused { color: #a05a00; font-weight: 600; }
  .state-orphaned, .outcome-failure, .outcome-lost, .outcome-dead_lettered, .outcome-lost_lease { color: var(--bad); font-weight: 600; }
  .outcome-success { color: var(--ok); }
  button { font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 4px; border: 1px solid #c5cad6;
           background: #fff; cursor: pointer; margin-right: 4px; }
  button:hover { border-color: var(--accent); color: var(--accent); }
  button.danger:hover { border-color: var(--bad); color: var(--bad); }
  #message { min-height: 22px; margin-bottom: 8px; }
  #message.error { color: var(--bad); }
  td.actions { white-space: nowrap; }
  details pre { white-space: pre-wrap; max-width: 900px; }
</style>
</head>
<body>
<header>
  <h1>backbeat</h1>
  <span class="note" id="updated"></span>
  <label class="note"><input type="checkbox" id="auto" checked> auto-refresh</label>
  <div class="auth" id="auth" hidden>
    <label for="token" class="note">token</label>
    <input id="token" type="password" placeholder="bearer token" autocomplete="off">
  </div>
</header>
<main>
  <div id="message" role="status"></div>
  <div class="stats" id="stats"></div>
  <section>
    <h2>Tasks <input id="filter" placeholder="filter by id, name or tag"></h2>
    <div id="tasks"></div>
  </section>
  <section><h2>Runs in the store</h2><div id="runs"></div></section>
  <section><h2>Schedules <span class="note" id="history-note"></span></h2><div id="task-history"></div></section>
  <section><h2>Recent runs</h2><div id="history"></div></section>
  <section><h2>Dead letters</h2><div id="dead-letters"></div></section>
</main>
<script>
"use strict";
const SETTINGS = __SETTINGS__;
const API = SETTINGS.base + "/api";
const tokenInput = document.getElementById("token");
if (SETTINGS.tokenRequired) {
  document.getElementById("auth").hidden = false;
  tokenInput.value = sessionStorage.getItem("backbeat-token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("backbeat-token", tokenInput.value));
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const when = (iso) => iso ? iso.replace("T", " ").replace(/\\.\\d+/, "").replace(/(\\+00:00|Z)$/, " UTC") : "-";
const seconds = (value) => value === null || value === undefined ? "-" : value.toFixed(3) + " s";

function table(headers, rows, empty) {
  if (!rows.length) return el("div", {class: "empty"}, empty);
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function call(method, path) {
  const headers = {};
  if (tokenInput.value) headers["Authorization"] = "Bearer " + tokenInput.value;
  const response = await fetch(API + path, {method, headers});
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    if (response.status === 401) detail = "this action needs the dashboard's token (field at the top right)";
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.status === 204 ? null : response.json();
}

async function act(method, path, done, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    await call(method, path);
    say(done, false);
  } catch (error) {
    say(error.message, true);
  }
  await refresh();
}

const enc = encodeURIComponent;

function taskRow(task) {
  const id = enc(task.id);
  const toggle = task.paused
    ? el("button", {"data-action": "resume", onclick: () => act("POST", `/tasks/${id}/resume`, `resumed ${task.id}`)}, "resume")
    : el("button", {"data-action": "pause", onclick: () => act("POST", `/tasks/${id}/pause`, `paused ${task.id}`)}, "pause");
  return el("tr", {"data-task-id": task.id, "data-state": task.state},
    el("td", {class: "mono"}, task.id),
    el("td", {}, task.name),
    el("td", {class: "mono"}, task.trigger),
    el("td", {}, when(task.next_run_time)),
    el("td", {}, task.tags.map((tag) => el("span", {class: "tag"}, tag))),
    el("td", {class: "state-" + task.state}, task.state + (task.local ? " (local)" : "")),
    el("td", {}, `${task.runs} / ${task.failures}`),
    el("td", {class: "outcome-" + (task.last_outcome || "none")}, task.last_outcome || "-", " ", el("span", {class: "note"}, task.last_run_at ? when(task.last_run_at) : "")),
    el("td", {class: "actions"},
      toggle,
      el("button", {"data-action": "trigger", onclick: () => act("POST", `/tasks/${id}/trigger`, `triggered ${task.id}`)}, "run now"),
      el("button", {"data-action": "remove", class: "danger",
        onclick: () => act("DELETE", `/tasks/${id}`, `removed ${task.id}`, `Remove task ${task.id}?`)}, "remove")));
}

function renderTasks(tasks) {
  const words = document.getElementById("filter").value.trim().toLowerCase();
  const shown = tasks.filter((t) => !words || [t.id, t.name, ...t.tags].some((s) => s.toLowerCase().includes(words)));
  const headers = ["id", "name", "trigger", "next run", "tags", "state", "runs / failures", "last outcome", ""];
  document.getElementById("tasks").replaceChildren(table(headers, shown.map(taskRow), "no tasks"));
}

function renderRuns(runs) {
  const rows = runs.map((run) => el("tr", {"data-run-id": run.id},
    el("td", {class: "mono"}, run.id), el("td", {}, run.task_name || run.task_id), el("td", {}, run.state),
    el("td", {}, run.attempt), el("td", {class: "mono"}, run.owner || "-"), el("td", {}, when(run.lease_until))));
  document.getElementById("runs").replaceChildren(
    table(["run", "task", "state", "attempt", "owner (host:pid:id)", "lease until"], rows, "no runs in flight"));
}

function percent(rate) {
  return rate === null || rate === undefined ? "-" : (100 * rate).toFixed(rate === 1 ? 0 : 1) + " %";
}

function renderHistory(history) {
  document.getElementById("history-note").textContent = history.note;
  const summaries = history.tasks.map((task) => el("tr", {"data-history-task": task.task_id},
    el("td", {}, task.task_name), el("td", {}, task.runs), el("td", {}, percent(task.success_rate)),
    el("td", {}, when(task.last_ended_at)),
    el("td", {class: "mono"}, task.last_failure ? when(task.last_failure_at) + " " + task.last_failure : "-"),
    el("td", {}, seconds(task.duration_p50)), el("td", {}, seconds(task.duration_p95)),
    el("td", {}, seconds(task.duration_max))));
  document.getElementById("task-history").replaceChildren(
    table(["task", "runs", "success", "last ended", "last failure", "p50", "p95", "max"], summaries,
      "no run finished yet"));
  const rows = history.runs.slice(0, 100).map((run) => el("tr", {"data-history-run": run.id},
    el("td", {}, when(run.ended_at)), el("td", {}, run.task_name || run.task_id),
    el("td", {class: "outcome-" + run.outcome}, run.outcome), el("td", {}, run.attempt ?? "-"),
    el("td", {}, seconds(run.duration)), el("td", {class: "mono"}, run.host ? run.host + ":" + run.pid : "-"),
    el("td", {class: "mono"}, run.error || "")));
  document.getElementById("history").replaceChildren(
    table(["ended", "task", "outcome", "attempt", "duration", "host:pid", "error"], rows, "no run finished yet"));
}

function renderDeadLetters(letters) {
  const rows = letters.map((letter) => {
    const id = enc(letter.id);
    return el("tr", {"data-dead-letter-id": letter.id},
      el("td", {class: "mono"}, letter.id), el("td", {}, letter.task_name || letter.task_id),
      el("td", {}, letter.attempt), el("td", {}, when(letter.failed_at)),
      el("td", {}, el("details", {}, el("summary", {class: "mono"}, letter.error || "-"),
        el("pre", {class: "mono"}, letter.traceback || ""))),
      el("td", {class: "actions"},
        el("button", {"data-action": "retry", onclick: () => act("POST", `/dead-letters/${id}/retry`, `retrying ${letter.id}`)}, "retry"),
        el("button", {"data-action": "remove", class: "danger",
          onclick: () => act("DELETE", `/dead-letters/${id}`, `removed dead letter ${letter.id}`, `Forget dead letter ${letter.id}?`)}, "remove")));
  });
  document.getElementById("dead-letters").replaceChildren(
    table(["id", "task", "attempt", "failed at", "error", ""], rows, "no dead letters"));
}

function renderStats(stats) {
  const items = [["tasks", stats.tasks], ["paused", stats.paused], ["orphaned", stats.orphaned],
    ["quarantined", stats.quarantined], ["running", stats.running], ["waiting", stats.waiting],
    ["dead letters", stats.dead_letters], ["next wake-up", when(stats.next_wakeup)]];
  document.getElementById("stats").replaceChildren(
    ...items.map(([label, value]) => el("div", {class: "stat", "data-stat": label}, el("b", {}, value), el("span", {}, label))));
}

let lastTasks = [];
async function refresh() {
  try {
    const [stats, tasks, runs, history, letters] = await Promise.all([
      call("GET", "/stats"), call("GET", "/tasks"), call("GET", "/runs"), call("GET", "/history"),
      call("GET", "/dead-letters")]);
    lastTasks = tasks;
    renderStats(stats); renderTasks(tasks); renderRuns(runs); renderHistory(history); renderDeadLetters(letters);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (error) {
    say("cannot load: " + error.message, true);
  }
}

document.getElementById("filter").addEventListener("input", () => renderTasks(lastTasks));
setInterval(() => { if (document.getElementById("auto").checked) refresh(); }, 3000);
refresh();
</script>
</body>
</html>
"""
