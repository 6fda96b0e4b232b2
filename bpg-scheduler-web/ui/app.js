// bpg scheduler's web UI: plain JavaScript, no build step, no external resources.
// Views (hash routes): #/ (DAGs), #/dags/ID/grid|graph|gantt?run=RUN, #/dags/ID/runs/RUN/tasks/TASK?try=N.
"use strict";

const STATES = {
  n: "none", S: "scheduled", q: "queued", r: "running", u: "up_for_retry",
  s: "success", f: "failed", U: "upstream_failed", k: "skipped",
};
const LETTER = Object.fromEntries(Object.entries(STATES).map(([k, v]) => [v, k]));
const ROW = 24; // grid row height, px
const MAX_LOG_LINES = 20000;

const main = document.getElementById("main");
const status = document.getElementById("status");
let cleanups = [];

function cleanup() {
  for (const f of cleanups) f();
  cleanups = [];
}

function later(fn, ms) {
  const id = setTimeout(fn, ms);
  cleanups.push(() => clearTimeout(id));
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

const enc = encodeURIComponent;

function say(message, isError) {
  status.textContent = message || "";
  status.className = isError ? "error" : "";
}

function when(t) {
  if (!t) return "—";
  return t.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC").replace(/\+00:00$/, " UTC");
}

function stateName(s) {
  return s == null ? "none" : s;
}

function badge(state) {
  const s = stateName(state);
  return `<span class="st st-${esc(s)}" title="${esc(s)}">${esc(LETTER[s] ?? "?")}</span> ${esc(s)}`;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { "X-Requested-With": "bpg-ui", Accept: "application/json", ...(options.headers || {}) };
  let body = options.body;
  if (body !== undefined && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, { ...options, body, headers, credentials: "same-origin" });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401) throw new Unauthorized(detail(data) || "Sign in");
  if (!r.ok) throw new Error(detail(data) || `${r.status} ${r.statusText}`);
  return { data, text };
}

function detail(data) {
  if (!data) return "";
  if (typeof data === "string") return data;
  const d = data.detail;
  return typeof d === "string" ? d : JSON.stringify(d);
}

function showError(e) {
  if (e instanceof Unauthorized) return login(e.message);
  say(e.message || String(e), true);
}

// ---------------------------------------------------------------- sign-in

function login(message) {
  cleanup();
  main.innerHTML = `
    <h1>Sign in</h1>
    <form class="card" data-testid="login-form">
      <p class="muted">${esc(message)}</p>
      <label>User <input name="username" autocomplete="username" required></label>
      <label>Password <input name="password" type="password" autocomplete="current-password"></label>
      <button class="primary" type="submit">Sign in</button>
    </form>`;
  const form = main.querySelector("form");
  form.username.focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("/auth/token", { method: "POST", body: { username: form.username.value, password: form.password.value } });
      say("Signed in.");
      render();
    } catch (e) {
      say(e instanceof Unauthorized ? "Wrong user or password." : e.message, true);
    }
  });
}

// ---------------------------------------------------------------- DAG list

async function dagList() {
  const { data } = await api("/ui/api/dags");
  const rows = data.dags.map((d) => `
    <tr data-testid="dag-row" data-dag-id="${esc(d.dag_id)}">
      <td><a href="#/dags/${enc(d.dag_id)}/grid">${esc(d.dag_id)}</a><div class="muted">${esc(d.description)}</div></td>
      <td>${esc(d.schedule ?? "manual only")}</td>
      <td><button data-action="pause" aria-pressed="${d.is_paused}" aria-label="${d.is_paused ? "Unpause" : "Pause"} ${esc(d.dag_id)}">${d.is_paused ? "Paused" : "Active"}</button></td>
      <td>${d.last_run ? `${badge(d.last_run.state)} <span class="muted">${esc(when(d.last_run.logical_date))}</span>` : "—"}</td>
      <td>${esc(when(d.next_run))}</td>
      <td>${d.task_count}</td>
      <td><button class="primary" data-testid="trigger-button" data-action="trigger">▶ Trigger</button></td>
    </tr>`).join("");
  main.innerHTML = `
    <h1>DAGs</h1>
    <table>
      <thead><tr><th>DAG</th><th>Schedule</th><th>Paused</th><th>Last run</th><th>Next run</th><th>Tasks</th><th></th></tr></thead>
      <tbody>${rows}</tbody>
    </table>
    <div id="trigger"></div>`;
  main.querySelector("tbody").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const dag = data.dags.find((d) => d.dag_id === button.closest("tr").dataset.dagId);
    if (button.dataset.action === "trigger") return triggerForm(dag);
    try {
      await api(`/api/v2/dags/${enc(dag.dag_id)}`, { method: "PATCH", body: { is_paused: !dag.is_paused } });
      say(`${dag.dag_id} ${dag.is_paused ? "unpaused" : "paused"}.`);
      render();
    } catch (e) { showError(e); }
  });
  later(() => { if (!main.querySelector("form")) render(); }, 10000);
}

function triggerForm(dag) {
  const fields = Object.entries(dag.params || {}).map(([name, value]) => {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const kind = typeof value === "string" ? "text" : "JSON";
    return `<label>${esc(name)} <span class="muted">(${kind})</span>
      <input name="param:${esc(name)}" value="${esc(text)}" data-json="${typeof value !== "string"}"></label>`;
  }).join("");
  const box = main.querySelector("#trigger");
  box.innerHTML = `
    <form class="card" data-testid="trigger-form" aria-label="Trigger ${esc(dag.dag_id)}">
      <h2>Trigger ${esc(dag.dag_id)}</h2>
      ${fields || '<p class="muted">This DAG has no params.</p>'}
      <label>Logical date <span class="muted">(optional, e.g. 2026-12-01T00:00:00Z)</span> <input name="logical_date" placeholder="now"></label>
      <div class="actions">
        <button class="primary" type="submit" data-testid="trigger-submit">Trigger</button>
        <button type="button" data-action="close">Cancel</button>
      </div>
    </form>`;
  const form = box.querySelector("form");
  (form.querySelector("input") || form.querySelector("button")).focus();
  form.querySelector('[data-action="close"]').addEventListener("click", () => { box.innerHTML = ""; });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const conf = {};
    for (const input of form.querySelectorAll('input[name^="param:"]')) {
      const name = input.name.slice(6);
      if (input.dataset.json === "true") {
        try { conf[name] = JSON.parse(input.value); } catch { return say(`${name}: not valid JSON`, true); }
      } else conf[name] = input.value;
    }
    const date = form.logical_date.value.trim();
    try {
      const { data } = await api(`/api/v2/dags/${enc(dag.dag_id)}/dagRuns`, { method: "POST", body: { conf, logical_date: date || null } });
      say(`Triggered ${data.dag_run_id}.`);
      location.hash = `#/dags/${enc(dag.dag_id)}/grid?run=${enc(data.dag_run_id)}`;
    } catch (e) { showError(e); }
  });
}

// ---------------------------------------------------------------- one DAG: grid, graph, timeline

async function dagView(dagId, tab, params) {
  let grid = null;
  let lastText = "";
  let selected = params.get("run");
  main.innerHTML = `
    <h1><a href="#/">DAGs</a> / ${esc(dagId)}</h1>
    <div class="tabs" role="tablist">
      <button role="tab" data-testid="tab-grid" data-tab="grid" aria-selected="${tab === "grid"}">Grid</button>
      <button role="tab" data-testid="tab-graph" data-tab="graph" aria-selected="${tab === "graph"}">Graph</button>
      <button role="tab" data-testid="tab-timeline" data-tab="gantt" aria-selected="${tab === "gantt"}">Timeline</button>
    </div>
    <div class="actions" id="run-actions"></div>
    <div class="legend" aria-label="Legend">${Object.values(STATES).map((s) => `<span>${badge(s)}</span>`).join("")}</div>
    <div id="view" role="tabpanel"></div>`;
  main.querySelector(".tabs").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-tab]");
    if (!b) return;
    const run = selected ? `?run=${enc(selected)}` : "";
    location.hash = `#/dags/${enc(dagId)}/${b.dataset.tab}${run}`;
  });
  const view = main.querySelector("#view");
  const actions = main.querySelector("#run-actions");

  const chosenRun = () => grid.runs.find((r) => r.dag_run_id === selected) || grid.runs[0];

  function renderActions() {
    const run = chosenRun();
    if (!run) { actions.innerHTML = '<span class="muted">No runs yet: trigger one from the DAG list.</span>'; return; }
    const active = run.state === "running" || run.state === "queued";
    actions.innerHTML = `<span>Run <strong>${esc(run.dag_run_id)}</strong> ${badge(run.state)}</span>
      ${active ? '<button class="danger" data-testid="cancel-run">Cancel run</button>' : ""}`;
    const cancel = actions.querySelector('[data-testid="cancel-run"]');
    if (cancel) cancel.addEventListener("click", () => cancelRun(dagId, run.dag_run_id, refresh));
  }

  async function refresh() {
    try {
      const { data, text } = await api(`/ui/api/grid/${enc(dagId)}?runs=25`);
      const changed = text !== lastText;
      lastText = text;
      grid = data;
      if (changed) {
        renderActions();
        if (tab === "grid") renderGrid(view, dagId, grid, selected, (id) => { selected = id; renderActions(); renderGrid(view, dagId, grid, selected); });
        else if (tab === "graph") renderGraph(view, dagId, grid, chosenRun());
      }
      if (tab === "gantt") await renderGantt(view, dagId, chosenRun());
      const busy = grid.runs.some((r) => r.state === "running" || r.state === "queued");
      later(refresh, busy ? 1000 : 5000);
    } catch (e) { showError(e); }
  }
  await refresh();
}

function renderGrid(view, dagId, grid, selected, onSelect) {
  if (onSelect) view._onSelect = onSelect;
  const runs = grid.runs;
  const sel = selected || (runs[0] && runs[0].dag_run_id);
  if (!view.querySelector(".grid-wrap")) {
    view.innerHTML = `<p class="muted">Newest run on the left. Each cell: a task in a run; its letter is its state.</p>
      <div class="grid-wrap" data-testid="grid"><div class="grid-head"></div><div class="grid-body"></div></div>`;
    const wrap = view.querySelector(".grid-wrap");
    let pending = false;
    wrap.addEventListener("scroll", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; paintRows(view); });
    });
    wrap.querySelector(".grid-head").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-run-id]");
      if (b && view._onSelect) view._onSelect(b.dataset.runId);
    });
  }
  view._grid = { dagId, grid, sel };
  view.querySelector(".grid-head").innerHTML = `<div class="task-col">Task</div>` + runs.map((r) => `
    <div class="run-head"><button data-testid="run-header" data-run-id="${esc(r.dag_run_id)}" data-state="${esc(r.state)}"
      class="st st-${esc(r.state)}${r.dag_run_id === sel ? " selected" : ""}" aria-pressed="${r.dag_run_id === sel}"
      aria-label="Run ${esc(r.dag_run_id)}: ${esc(r.state)}" title="${esc(r.dag_run_id)} (${esc(r.state)}, ${esc(when(r.logical_date))})">${esc(LETTER[r.state] ?? "?")}</button></div>`).join("");
  view.querySelector(".grid-body").style.height = `${grid.tasks.length * ROW}px`;
  view.querySelector(".grid-body").style.position = "relative";
  paintRows(view);
}

// Only the rows in view are in the DOM, so a 10,000-task DAG paints as fast as a small one.
function paintRows(view) {
  const { dagId, grid } = view._grid;
  const wrap = view.querySelector(".grid-wrap");
  const body = view.querySelector(".grid-body");
  const head = view.querySelector(".grid-head").offsetHeight;
  const top = Math.max(0, wrap.scrollTop - head);
  const first = Math.max(0, Math.floor(top / ROW) - 20);
  const last = Math.min(grid.tasks.length, Math.ceil((top + wrap.clientHeight) / ROW) + 20);
  let html = "";
  for (let i = first; i < last; i++) {
    const task = grid.tasks[i].task_id;
    html += `<div class="grid-row" style="position:absolute;top:${i * ROW}px"><div class="task-col" title="${esc(task)}">${esc(task)}</div>`;
    for (const r of grid.runs) {
      const code = r.states[i] || "n";
      const state = STATES[code] || "none";
      html += `<div class="cell"><a data-testid="grid-cell" data-task-id="${esc(task)}" data-run-id="${esc(r.dag_run_id)}" data-state="${state}"
        class="st st-${state}" href="#/dags/${enc(dagId)}/runs/${enc(r.dag_run_id)}/tasks/${enc(task)}"
        aria-label="${esc(task)} in ${esc(r.dag_run_id)}: ${state}" title="${esc(task)}: ${state}">${code === "n" ? "·" : code}</a></div>`;
    }
    html += "</div>";
  }
  body.innerHTML = html;
}

function layers(tasks) {
  const layer = new Array(tasks.length).fill(-1);
  const visit = (i, depth) => {
    if (layer[i] >= 0) return layer[i];
    if (depth > tasks.length) return 0;
    let l = 0;
    for (const u of tasks[i].upstream) l = Math.max(l, visit(u, depth + 1) + 1);
    return (layer[i] = l);
  };
  tasks.forEach((_, i) => visit(i, 0));
  return layer;
}

function renderGraph(view, dagId, grid, run) {
  const tasks = grid.tasks;
  const layer = layers(tasks);
  const rowIn = [];
  const count = {};
  layer.forEach((l, i) => { rowIn[i] = count[l] = (count[l] ?? -1) + 1; });
  const W = 220, H = 64, PAD = 16;
  const x = (i) => PAD + layer[i] * W;
  const y = (i) => PAD + rowIn[i] * H;
  const width = PAD * 2 + (Math.max(0, ...layer) + 1) * W;
  const height = PAD * 2 + (Math.max(0, ...Object.values(count)) + 1) * H;
  let edges = "";
  tasks.forEach((t, i) => {
    for (const u of t.upstream) {
      const x1 = x(u) + 170, y1 = y(u) + 20, x2 = x(i), y2 = y(i) + 20;
      edges += `<path d="M${x1},${y1} C${x1 + 25},${y1} ${x2 - 25},${y2} ${x2},${y2}" fill="none" stroke="#8a93a6" stroke-width="1.5" marker-end="url(#arrow)"/>`;
    }
  });
  const nodes = tasks.map((t, i) => {
    const state = run ? STATES[run.states[i]] || "none" : "none";
    const href = run ? `#/dags/${enc(dagId)}/runs/${enc(run.dag_run_id)}/tasks/${enc(t.task_id)}` : "#";
    return `<a class="node st-${state}" data-testid="graph-node" data-task-id="${esc(t.task_id)}" data-state="${state}" href="${href}"
      style="left:${x(i)}px;top:${y(i)}px" aria-label="${esc(t.task_id)}: ${state}">${esc(t.task_id)}<span class="state">${esc(t.kind)} · ${LETTER[state]} ${state}</span></a>`;
  }).join("");
  view.innerHTML = `<p class="muted">${run ? `States of run ${esc(run.dag_run_id)}.` : "No runs yet."}</p>
    <div class="graph" style="height:${Math.min(height + 4, 2000)}px">
      <svg width="${width}" height="${height}" aria-hidden="true"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8a93a6"/></marker></defs>${edges}</svg>
      <div style="position:relative;width:${width}px;height:${height}px">${nodes}</div>
    </div>`;
}

async function renderGantt(view, dagId, run) {
  if (!run) { view.innerHTML = '<p class="muted">No runs yet.</p>'; return; }
  const { data, text } = await api(`/api/v2/dags/${enc(dagId)}/dagRuns/${enc(run.dag_run_id)}/taskInstances`);
  if (view._gantt === text) return;
  view._gantt = text;
  const tis = data.task_instances;
  const now = Date.now();
  const spans = tis.filter((t) => t.start_date).map((t) => [Date.parse(t.start_date), t.end_date ? Date.parse(t.end_date) : now]);
  const t0 = spans.length ? Math.min(...spans.map((s) => s[0])) : now;
  const t1 = spans.length ? Math.max(...spans.map((s) => s[1]), t0 + 1) : now + 1;
  const pct = (t) => ((t - t0) / (t1 - t0)) * 100;
  const rows = tis.map((t) => {
    const state = stateName(t.state);
    let bar = "";
    if (t.start_date) {
      const s = Date.parse(t.start_date), e = t.end_date ? Date.parse(t.end_date) : now;
      bar = `<div class="gantt-bar st-${state}" data-testid="gantt-bar" data-task-id="${esc(t.task_id)}" style="left:${pct(s)}%;width:${Math.max(pct(e) - pct(s), 0.3)}%"
        title="${esc(t.task_id)}: ${state}, ${((e - s) / 1000).toFixed(2)} s">${state}</div>`;
    }
    return `<div class="gantt-row"><div class="task-col"><a href="#/dags/${enc(dagId)}/runs/${enc(run.dag_run_id)}/tasks/${enc(t.task_id)}">${esc(t.task_id)}</a></div><div class="gantt-track">${bar}</div></div>`;
  }).join("");
  view.innerHTML = `<div class="gantt" aria-label="Timeline of ${esc(run.dag_run_id)}">
    <div class="axis"><span>${esc(new Date(t0).toISOString())}</span><span>${((t1 - t0) / 1000).toFixed(2)} s</span></div>${rows}</div>`;
}

async function cancelRun(dagId, runId, then) {
  if (!confirm(`Cancel run ${runId}? Its running tasks stop and their Spark jobs are cancelled.`)) return;
  try {
    await api(`/api/v2/dags/${enc(dagId)}/dagRuns/${enc(runId)}`, { method: "PATCH", body: { state: "failed" } });
    say(`Cancelled ${runId}.`);
    if (then) then();
  } catch (e) { showError(e); }
}

// ---------------------------------------------------------------- a task of a run

async function taskView(dagId, runId, taskId, params) {
  const base = `/api/v2/dags/${enc(dagId)}/dagRuns/${enc(runId)}`;
  const [{ data: ti }, { data: run }] = await Promise.all([api(`${base}/taskInstances/${enc(taskId)}`), api(base)]);
  const tryNumber = Number(params.get("try")) || ti.try_number;
  const tries = Array.from({ length: ti.try_number }, (_, i) => i + 1);
  const active = run.state === "running" || run.state === "queued";
  main.innerHTML = `
    <h1><a href="#/">DAGs</a> / <a href="#/dags/${enc(dagId)}/grid?run=${enc(runId)}">${esc(dagId)}</a> / ${esc(taskId)}</h1>
    <div class="card">
      <dl class="kv">
        <dt>Run</dt><dd>${esc(runId)} ${badge(run.state)}</dd>
        <dt>State</dt><dd>${badge(ti.state)}</dd>
        <dt>Try</dt><dd>${ti.try_number} of at most ${ti.max_tries + 1}</dd>
        <dt>Started</dt><dd>${esc(when(ti.start_date))}</dd>
        <dt>Ended</dt><dd>${esc(when(ti.end_date))}</dd>
        <dt>Duration</dt><dd>${ti.duration == null ? "—" : `${ti.duration.toFixed(2)} s`}</dd>
        <dt>Operator</dt><dd>${esc(ti.operator)}</dd>
        <dt>Submission</dt><dd>${esc(ti.bpg_submission_id ?? "—")}</dd>
        <dt>Cluster</dt><dd>${esc(ti.bpg_cluster ?? "—")}</dd>
        <dt>Connection</dt><dd>${esc(ti.bpg_connection ?? "—")}</dd>
      </dl>
    </div>
    <div class="actions">
      <button data-testid="clear-task">Clear (this task and downstream)</button>
      ${active ? '<button class="danger" data-testid="cancel-run">Cancel run</button>' : ""}
    </div>
    <h2>Log</h2>
    <div class="actions" role="group" aria-label="Tries">${tries.map((n) => `<a class="button" aria-current="${n === tryNumber}" href="#/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}?try=${n}">Try ${n}</a>`).join("") || '<span class="muted">Not started yet.</span>'}
      ${tries.length ? `<a href="${base}/taskInstances/${enc(taskId)}/logs/${tryNumber}?full_content=true&format=text" download="${esc(taskId)}-try${tryNumber}.log">Download full log</a>` : ""}
      <span id="follow" class="muted"></span></div>
    <pre class="log" data-testid="log" tabindex="0" aria-label="Log of try ${tryNumber}"></pre>`;
  main.querySelector('[data-testid="clear-task"]').addEventListener("click", async () => {
    if (!confirm(`Clear ${taskId} and its downstream tasks in ${runId}? They run again.`)) return;
    try {
      await api(`/api/v2/dags/${enc(dagId)}/clearTaskInstances`, {
        method: "POST",
        body: { dag_run_id: runId, task_ids: [taskId], include_downstream: true, only_failed: false, dry_run: false },
      });
      say(`Cleared ${taskId}; it runs again.`);
      later(render, 500);
    } catch (e) { showError(e); }
  });
  const cancel = main.querySelector('[data-testid="cancel-run"]');
  if (cancel) cancel.addEventListener("click", () => cancelRun(dagId, runId, render));
  if (!tries.length) { later(render, 1000); return; }
  await followLog(`${base}/taskInstances/${enc(taskId)}/logs/${tryNumber}`, main.querySelector(".log"));
  if (active) later(() => { if (!main.querySelector(".log")?.dataset.following) render(); }, 3000);
}

async function followLog(url, pre) {
  const follow = document.getElementById("follow");
  const { data } = await api(`${url}?tail=500`);
  let count = 0;
  const append = (lines) => {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.appendChild(document.createTextNode(lines.map((l) => l + "\n").join("")));
    count += lines.length;
    while (count > MAX_LOG_LINES && pre.firstChild) {
      // Drop the oldest text nodes; a huge log never freezes the page.
      const n = pre.firstChild.textContent.split("\n").length - 1;
      pre.removeChild(pre.firstChild);
      count -= n;
    }
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  append(data.content.map((m) => m.event));
  pre.scrollTop = pre.scrollHeight;
  const source = new EventSource(`${url}/stream?token=${enc(data.continuation_token)}`);
  pre.dataset.following = "1";
  follow.textContent = "following…";
  let batch = [];
  let scheduled = false;
  source.onmessage = (ev) => {
    batch.push(ev.data);
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(() => { scheduled = false; append(batch); batch = []; });
    }
  };
  source.addEventListener("end", () => {
    source.close();
    delete pre.dataset.following;
    follow.textContent = "the try has ended";
  });
  source.onerror = () => { follow.textContent = "reconnecting…"; };
  cleanups.push(() => source.close());
}

// ---------------------------------------------------------------- routing

async function render() {
  cleanup();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "dags" && parts[2] === "runs" && parts[4] === "tasks") {
      await taskView(parts[1], parts[3], parts[5], params);
    } else if (parts[0] === "dags" && parts[1]) {
      await dagView(parts[1], ["grid", "graph", "gantt"].includes(parts[2]) ? parts[2] : "grid", params);
    } else {
      await dagList();
    }
    if (status.className !== "error") later(() => say(""), 4000);
  } catch (e) { showError(e); }
}

window.addEventListener("hashchange", () => { say(""); render(); });
render();
