// bpg scheduler web UI: plain ES2020, no dependencies. Hash routes:
//   #/  #/dags/{d}/grid  #/dags/{d}/graph?run=  #/dags/{d}/gantt?run=  #/dags/{d}/runs/{r}/tasks/{t}?try=N
// The page's CSP forbids inline style attributes, so positions and sizes are set through el.style.
"use strict";
(() => {
const main = document.getElementById("main");
const alerts = document.getElementById("alerts");
const $ = (s, r = document) => r.querySelector(s);
const enc = encodeURIComponent;
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);

// ---- states ---------------------------------------------------------------------------------
const CODE = { n: "none", S: "scheduled", q: "queued", r: "running", u: "up_for_retry", s: "success", f: "failed", U: "upstream_failed", k: "skipped" };
const SYM = { none: "·", scheduled: "S", queued: "Q", running: "▶", up_for_retry: "↻", success: "✓", failed: "✗", upstream_failed: "U", skipped: "»", deferred: "D", removed: "–", restarting: "↺" };
const ACTIVE_RUN = new Set(["queued", "running"]);
const DONE = new Set(["success", "failed", "upstream_failed", "skipped", "removed", "up_for_retry"]);
const MAXL = 20000;
const st = (s) => (s == null || s === "" ? "none" : String(s));
const sym = (s) => SYM[s] || "?";
const cls = (s) => "st-" + (SYM[s] ? s : "other");
const badge = (s) => { s = st(s); return `<span class="badge ${cls(s)}"><span aria-hidden="true">${sym(s)}</span> ${esc(s)}</span>`; };
const legend = () => `<ul class="legend" aria-label="Legend: state symbols">${Object.values(CODE).map((s) => `<li><span class="c st-${s}" aria-hidden="true">${SYM[s]}</span> ${s}</li>`).join("")}</ul>`;

// ---- time -----------------------------------------------------------------------------------
const iso = (s) => { const t = new Date(s); return isNaN(t) ? null : t.toISOString().slice(0, 19).replace("T", " "); };
const fmt = (s) => { if (!s) return "—"; const v = iso(s); return v ? `<time datetime="${esc(s)}">${v}</time>` : esc(s); };
const short = (s) => { const v = s && iso(s); return v ? v.slice(5, 16) : ""; };
function dur(x) {
  if (x == null || isNaN(x)) return "—";
  if (x < 60) return x.toFixed(x < 10 ? 1 : 0) + " s";
  const h = Math.floor(x / 3600), m = Math.floor((x % 3600) / 60), s = Math.floor(x % 60);
  return (h ? h + " h " : "") + m + " min " + s + " s";
}

// ---- URLs -----------------------------------------------------------------------------------
const H = {
  view: (d, v, run) => `#/dags/${enc(d)}/${v}` + (run ? "?run=" + enc(run) : ""),
  task: (d, run, t, n) => `#/dags/${enc(d)}/runs/${enc(run)}/tasks/${enc(t)}` + (n ? "?try=" + n : ""),
};
const A = {
  dag: (d) => `/api/v2/dags/${enc(d)}`,
  run: (d, r) => `/api/v2/dags/${enc(d)}/dagRuns/${enc(r)}`,
  tis: (d, r) => A.run(d, r) + "/taskInstances",
  log: (d, r, t, n) => A.tis(d, r) + `/${enc(t)}/logs/${n}`,
  grid: (d) => `/ui/api/grid/${enc(d)}?runs=25`,
};

// ---- HTTP -----------------------------------------------------------------------------------
class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}
async function req(method, url, body, opt = {}) {
  const headers = { "X-Requested-With": "bpg-ui", Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal: opt.signal };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  let res, text;
  try {
    res = await fetch(url, init);
    text = await res.text();
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new HttpError(0, `Network error (${method} ${url}): ${e.message}`);
  }
  if (!res.ok) {
    let detail = text || res.statusText || "request failed";
    try {
      const j = JSON.parse(text);
      if (j && j.detail !== undefined) detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
    } catch (_) { /* not JSON */ }
    throw new HttpError(res.status, detail);
  }
  return opt.text ? text : text ? JSON.parse(text) : null;
}
// Every task instance of a run (pages on with offset/limit only if the server paginates).
async function fetchTIs(r, d, run) {
  const url = A.tis(d, run);
  const j = await req("GET", url, undefined, { signal: r.ac.signal });
  const all = j?.task_instances || [];
  const total = j?.total_entries ?? all.length;
  if (all.length && all.length < total) {
    const key = (t) => t.task_id + "\u0000" + (t.map_index ?? -1);
    const seen = new Set(all.map(key));
    const size = all.length;
    for (let off = size, n = 0; off < total && n < 500; n++) {
      const k = await req("GET", `${url}?offset=${off}&limit=${size}`, undefined, { signal: r.ac.signal });
      const page = k?.task_instances || [];
      let added = 0;
      for (const t of page) if (!seen.has(key(t))) { seen.add(key(t)); all.push(t); added++; }
      if (!added) break;
      off += page.length;
    }
  }
  return all;
}

// ---- alerts ---------------------------------------------------------------------------------
function toast(msg, kind = "error") {
  msg = String(msg);
  for (const el of alerts.children) if (el.dataset.msg === msg) return;
  const d = document.createElement("div");
  d.className = "toast " + kind;
  d.dataset.msg = msg;
  d.innerHTML = `<span>${kind === "error" ? "<strong>Error:</strong> " : ""}${esc(msg)}</span><button type="button" class="x" aria-label="Dismiss">×</button>`;
  d.lastChild.onclick = () => d.remove();
  alerts.append(d);
  setTimeout(() => d.remove(), kind === "error" ? 15000 : 5000);
}
function fail(r, e) {
  if (!r.alive || e.name === "AbortError") return;
  if (e.status === 401) login(e.message);
  else toast(e.message);
}

// ---- route lifecycle ------------------------------------------------------------------------
let R = null;
function newRoute() {
  if (R) {
    R.alive = false;
    R.ac.abort();
    R.timers.forEach(clearTimeout);
    R.es.forEach((e) => e.close());
    R.off.forEach((f) => f());
  }
  document.querySelectorAll("dialog.dlg").forEach((x) => x.remove());
  return (R = { alive: true, ac: new AbortController(), timers: new Set(), es: new Set(), off: [] });
}
function listen(r, target, ev, fn, opt) {
  target.addEventListener(ev, fn, opt);
  r.off.push(() => target.removeEventListener(ev, fn, opt));
}
// The grid view's JSON (`/ui/api/grid/{dag}`), with its lists always present.
function gridOf(text) {
  const g = JSON.parse(text);
  g.tasks = g.tasks || [];
  g.runs = g.runs || [];
  return g;
}
// A self-rescheduling refresh: fn returns the delay until the next call. Calling the returned
// function refreshes now (coalescing with a refresh in flight).
function poller(r, fn) {
  let t = 0, busy = false, again = false;
  const run = async () => {
    if (!r.alive) return;
    if (busy) { again = true; return; }
    clearTimeout(t);
    busy = true;
    let ms = 5000;
    try { ms = await fn(); } catch (e) { fail(r, e); }
    busy = false;
    if (!r.alive) return;
    if (again) { again = false; run(); return; }
    t = setTimeout(run, ms);
    r.timers.add(t);
  };
  return run;
}
// Re-render root without losing the keyboard focus (finds the same control again).
function keepFocus(root, paint) {
  const a = document.activeElement;
  let q = null;
  if (a && a !== root && root.contains(a)) {
    const ds = a.dataset;
    if (ds.k) q = `[data-k="${CSS.escape(ds.k)}"]`;
    else if (ds.testid) {
      q = `[data-testid="${CSS.escape(ds.testid)}"]`;
      if (ds.taskId != null) q += `[data-task-id="${CSS.escape(ds.taskId)}"]`;
      if (ds.runId != null) q += `[data-run-id="${CSS.escape(ds.runId)}"]`;
    }
  }
  paint();
  if (q) { const el = root.querySelector(q); if (el) el.focus({ preventScroll: true }); }
}

function parseHash() {
  const h = location.hash.replace(/^#/, "") || "/";
  const i = h.indexOf("?");
  const q = new URLSearchParams(i >= 0 ? h.slice(i + 1) : "");
  const p = (i >= 0 ? h.slice(0, i) : h).split("/").filter(Boolean).map((s) => {
    try { return decodeURIComponent(s); } catch (_) { return s; }
  });
  return { p, q };
}
const TABS = { grid: ["Grid", "tab-grid"], graph: ["Graph", "tab-graph"], gantt: ["Timeline", "tab-timeline"] };

function render() {
  const r = newRoute();
  const { p, q } = parseHash();
  const dag = p[0] === "dags" && p[1];
  if (!p.length || (p[0] === "dags" && p.length === 1)) viewDags(r);
  else if (dag && p.length === 2) viewDag(r, p[1], "grid", q);
  else if (dag && p.length === 3 && TABS[p[2]]) viewDag(r, p[1], p[2], q);
  else if (dag && p.length === 6 && p[2] === "runs" && p[4] === "tasks") viewTask(r, p[1], p[3], p[5], q);
  else main.innerHTML = `<h2 tabindex="-1">Not found</h2><p><a href="#/">Back to the DAGs</a></p>`;
  const h = $("h2", main);
  if (h) h.focus({ preventScroll: true });
}

// ---- login ----------------------------------------------------------------------------------
function login(msg) {
  const r = newRoute();
  main.innerHTML = `<section class="card narrow"><h2 tabindex="-1">Sign in</h2>${msg ? `<p class="muted">${esc(msg)}</p>` : ""}
<form data-testid="login-form" class="form">
<div class="field"><label for="lu">Username</label><input id="lu" name="username" autocomplete="username" required></div>
<div class="field"><label for="lp">Password</label><input id="lp" name="password" type="password" autocomplete="current-password" required></div>
<p class="ferr" aria-live="assertive"></p>
<button type="submit" class="primary">Sign in</button></form></section>`;
  const f = $("form", main), err = $(".ferr", main), b = $("button", f);
  $("#lu").focus();
  f.onsubmit = async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    b.disabled = true;
    try {
      await req("POST", "/auth/token", { username: f.elements.username.value, password: f.elements.password.value }, { signal: r.ac.signal });
      toast("Signed in", "info");
      render();
    } catch (e) {
      if (e.name === "AbortError") return;
      err.textContent = e.status === 401 ? `Sign-in failed: ${e.message}` : e.message;
      b.disabled = false;
    }
  };
}

// ---- DAG list -------------------------------------------------------------------------------
function dagRow(g) {
  const id = esc(g.dag_id), lr = g.last_run;
  return `<tr data-testid="dag-row" data-dag-id="${id}">
<td><a class="dagid" href="${H.view(g.dag_id, "grid")}">${id}</a>${g.description ? `<div class="muted small">${esc(g.description)}</div>` : ""}</td>
<td>${g.schedule ? `<code>${esc(g.schedule)}</code>` : '<span class="muted">none</span>'}</td>
<td><label class="sw"><input type="checkbox" data-act="pause" data-testid="pause-toggle" data-k="pause:${id}" aria-label="Pause ${id}"${g.is_paused ? " checked" : ""}> <span aria-hidden="true">${g.is_paused ? "Paused" : "Active"}</span></label></td>
<td>${lr ? `<a href="${H.view(g.dag_id, "grid", lr.dag_run_id)}" title="${esc(lr.dag_run_id)}">${badge(lr.state)}</a> <span class="small">${fmt(lr.logical_date)}</span>` : '<span class="muted">—</span>'}</td>
<td>${fmt(g.next_run)}</td>
<td class="num">${esc(g.task_count ?? "")}</td>
<td><button type="button" data-act="trigger" data-testid="trigger-button" data-k="trig:${id}" aria-label="Trigger ${id}"><span aria-hidden="true">▶</span> Trigger</button></td></tr>`;
}
function viewDags(r) {
  main.innerHTML = `<h2 tabindex="-1">DAGs</h2><div class="card flush"><table class="dags"><thead><tr><th scope="col">DAG</th><th scope="col">Schedule</th><th scope="col">Paused</th><th scope="col">Last run</th><th scope="col">Next run</th><th scope="col" class="num">Tasks</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody><tr><td colspan="7" class="muted">Loading…</td></tr></tbody></table></div>`;
  const tb = $("tbody", main);
  let last = "", dags = [];
  const refresh = poller(r, async () => {
    const t = await req("GET", "/ui/api/dags", undefined, { signal: r.ac.signal, text: true });
    if (t !== last) {
      last = t;
      dags = JSON.parse(t).dags || [];
      keepFocus(tb, () => (tb.innerHTML = dags.length ? dags.map(dagRow).join("") : '<tr><td colspan="7" class="muted">No DAGs.</td></tr>'));
    }
    return 5000;
  });
  tb.onclick = (ev) => {
    const b = ev.target.closest("[data-act=trigger]");
    if (!b) return;
    const g = dags.find((x) => x.dag_id === b.closest("tr").dataset.dagId);
    if (g) openTrigger(r, g);
  };
  tb.onchange = async (ev) => {
    const c = ev.target;
    if (c.dataset.act !== "pause") return;
    const id = c.closest("tr").dataset.dagId;
    c.disabled = true;
    try {
      await req("PATCH", A.dag(id), { is_paused: c.checked }, { signal: r.ac.signal });
      toast(`${id} ${c.checked ? "paused" : "unpaused"}`, "info");
    } catch (e) {
      c.checked = !c.checked;
      fail(r, e);
    }
    c.disabled = false;
    last = "";
    refresh();
  };
  refresh();
}

// ---- trigger dialog -------------------------------------------------------------------------
function paramField([k, v], i) {
  const s = typeof v === "string", obj = v !== null && typeof v === "object";
  const val = s ? v : JSON.stringify(v, null, obj ? 2 : 0);
  const a = `id="tg-${i}" name="param:${esc(k)}" data-kind="${s ? "str" : v === null ? "null" : "json"}" spellcheck="false"`;
  return `<div class="field"><label for="tg-${i}">${esc(k)}${s ? "" : ' <span class="muted">(JSON)</span>'}</label>${obj ? `<textarea ${a} rows="${Math.min(8, val.split("\n").length)}">${esc(val)}</textarea>` : `<input ${a} value="${esc(val)}">`}</div>`;
}
function openTrigger(r, g) {
  document.querySelectorAll("dialog.dlg").forEach((x) => x.remove());
  const opener = document.activeElement;
  const dlg = document.createElement("dialog");
  dlg.className = "dlg";
  dlg.setAttribute("aria-labelledby", "tg-h");
  const ps = Object.entries(g.params || {});
  dlg.innerHTML = `<form data-testid="trigger-form" class="form" novalidate><h2 id="tg-h">Trigger ${esc(g.dag_id)}</h2>
${ps.length ? ps.map(paramField).join("") : '<p class="muted">This DAG has no params.</p>'}
<div class="field"><label for="tg-ld">Logical date <span class="muted">(UTC, optional)</span></label><input id="tg-ld" name="logical_date" type="datetime-local" step="1"></div>
<p class="ferr" aria-live="assertive"></p>
<div class="actions"><button type="submit" class="primary" data-testid="trigger-submit">Submit</button><button type="button" data-act="close">Cancel</button></div></form>`;
  document.body.append(dlg);
  const f = dlg.firstElementChild, err = $(".ferr", dlg), sub = $("[data-testid=trigger-submit]", dlg);
  const close = () => {
    dlg.remove();
    const back = opener && opener.isConnected ? opener : $(`[data-dag-id="${CSS.escape(g.dag_id)}"] [data-testid=trigger-button]`) || $("[data-testid=trigger-button]");
    if (back) back.focus();
  };
  dlg.addEventListener("cancel", (ev) => { ev.preventDefault(); close(); });
  $("[data-act=close]", dlg).onclick = close;
  f.onsubmit = async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const conf = {};
    for (const el of f.querySelectorAll("[name^='param:']")) {
      const k = el.name.slice(6), kind = el.dataset.kind;
      if (kind === "str") { conf[k] = el.value; continue; }
      try { conf[k] = JSON.parse(el.value); } catch (_) {
        if (kind === "null") conf[k] = el.value === "" ? null : el.value;
        else { err.textContent = `Param "${k}": not valid JSON.`; el.focus(); return; }
      }
    }
    let ld = f.elements.logical_date.value || null;
    if (ld) {
      const t = new Date(ld + (ld.length === 16 ? ":00" : "") + "Z");
      if (isNaN(t)) { err.textContent = "Logical date: not a valid date."; return; }
      ld = t.toISOString().replace(".000Z", "Z");
    }
    sub.disabled = true;
    try {
      const run = await req("POST", A.dag(g.dag_id) + "/dagRuns", { conf, logical_date: ld }, { signal: r.ac.signal });
      toast(`Triggered ${run?.dag_run_id ?? g.dag_id}`, "info");
      dlg.remove();
      location.hash = H.view(g.dag_id, "grid", run?.dag_run_id);
    } catch (e) {
      sub.disabled = false;
      if (e.name === "AbortError") return;
      if (e.status === 401) { dlg.remove(); login(e.message); return; }
      err.textContent = e.message;
    }
  };
  if (dlg.showModal) dlg.showModal(); else dlg.setAttribute("open", "");
  const first = f.querySelector("input,textarea");
  if (first) first.focus();
}
async function cancelRun(r, d, id) {
  await req("PATCH", A.run(d, id), { state: "failed" }, { signal: r.ac.signal });
  toast(`Run ${id} marked failed`, "info");
}

// ---- DAG views (tabs) -----------------------------------------------------------------------
function viewDag(r, d, tab, q) {
  const run = q.get("run") || "";
  main.innerHTML = `<nav class="crumbs" aria-label="Breadcrumb"><a href="#/">DAGs</a> / <span>${esc(d)}</span></nav>
<div class="dhead"><h2 tabindex="-1">${esc(d)}</h2><button type="button" data-act="trigger-dag" data-testid="trigger-button"><span aria-hidden="true">▶</span> Trigger</button></div>
<nav class="tabs" aria-label="DAG views">${Object.entries(TABS).map(([k, [label, tid]]) => `<a class="tab" data-tab="${k}" data-testid="${tid}" href="${H.view(d, k, run)}"${k === tab ? ' aria-current="page"' : ""}>${label}</a>`).join("")}</nav>
<div id="view"></div>`;
  const setRun = (id) => {
    history.replaceState(null, "", H.view(d, tab, id));
    for (const a of main.querySelectorAll(".tab")) a.href = H.view(d, a.dataset.tab, id);
  };
  $("[data-act=trigger-dag]", main).onclick = async () => {
    try {
      const j = await req("GET", "/ui/api/dags", undefined, { signal: r.ac.signal });
      const g = (j?.dags || []).find((x) => x.dag_id === d);
      if (g) openTrigger(r, g); else toast(`DAG ${d} not found`);
    } catch (e) { fail(r, e); }
  };
  const ctx = { r, d, view: $("#view"), run, setRun };
  if (tab === "grid") gridView(ctx);
  else if (tab === "graph") graphView(ctx);
  else ganttView(ctx);
}

// Grid: rows = tasks (virtualised: only the rows near the viewport are in the DOM),
// columns = runs, oldest on the left, newest on the right.
function gridView({ r, d, view, run, setRun }) {
  let sel = run;
  view.innerHTML = `<div class="toolbar"><label>Filter tasks <input type="search" id="gf" placeholder="task id contains…" autocomplete="off"></label><span class="muted small" id="gn"></span><span class="muted small">Columns are runs: oldest left, newest right.</span></div>
<div id="rp" class="runpanel"></div>${legend()}
<div class="grid" data-testid="grid" id="grid" tabindex="0" role="region" aria-label="Task states: one row per task, one column per run"><div class="ghead" id="gh"></div><div id="gtop"></div><div id="gb"></div><div id="gbot"></div></div>`;
  const grid = $("#grid"), gh = $("#gh"), gb = $("#gb"), gtop = $("#gtop"), gbot = $("#gbot"), rp = $("#rp"), gf = $("#gf"), gn = $("#gn");
  const ROW = 24, OVER = 60;
  let last = "", data = null, cols = [], rids = [], rows = [], win = [0, -1], raf = 0, rpHtml = "";

  function computeRows() {
    const f = gf.value.trim().toLowerCase(), ts = data.tasks;
    rows = [];
    for (let i = 0; i < ts.length; i++) if (!f || String(ts[i].task_id).toLowerCase().includes(f)) rows.push(i);
    gn.textContent = f ? `${rows.length} of ${ts.length} tasks` : `${ts.length} tasks`;
  }
  function head() {
    let h = '<div class="gcorner">Task</div>';
    cols.forEach((x, c) => {
      const s = st(x.state), id = rids[c], on = x.dag_run_id === sel;
      h += `<button type="button" class="rh${on ? " sel" : ""}" data-testid="run-header" data-run-id="${id}" data-state="${esc(s)}" aria-pressed="${on}" aria-label="Run ${id}: ${esc(s)}" title="${id}: ${esc(s)}&#10;${esc(x.run_type || "")}, logical date ${esc(iso(x.logical_date) || "")}"><span class="rd">${short(x.logical_date || x.start_date)}</span><span class="c ${cls(s)}">${sym(s)}</span></button>`;
    });
    keepFocus(gh, () => (gh.innerHTML = h));
  }
  function body(force) {
    if (!data) return;
    const n = rows.length, hh = gh.offsetHeight;
    const first = Math.max(0, Math.floor((grid.scrollTop - hh) / ROW));
    const lastV = Math.min(n, first + Math.ceil(Math.max(grid.clientHeight, window.innerHeight) / ROW) + 1);
    if (!force && first >= win[0] && lastV <= win[1]) return;
    const s = Math.max(0, Math.min(first, n) - OVER), e = Math.min(n, lastV + OVER);
    win = [s, e];
    const ts = data.tasks;
    let h = "";
    for (let p = s; p < e; p++) {
      const i = rows[p], t = ts[i], tid = esc(t.task_id);
      h += `<div class="gr" data-p="${p}"><div class="gt" title="${tid}${t.kind ? ` (${esc(t.kind)})` : ""}">${tid}</div>`;
      for (let c = 0; c < cols.length; c++) {
        const z = CODE[cols[c].states ? cols[c].states[i] : ""] || "none", lab = `${tid} in ${rids[c]}: ${z}`;
        h += `<button type="button" class="c st-${z}${cols[c].dag_run_id === sel ? " sel" : ""}" data-testid="grid-cell" data-task-id="${tid}" data-run-id="${rids[c]}" data-state="${z}" aria-label="${lab}" title="${lab}">${SYM[z]}</button>`;
      }
      h += "</div>";
    }
    gtop.style.height = s * ROW + "px";
    gbot.style.height = (n - e) * ROW + "px";
    keepFocus(gb, () => (gb.innerHTML = h));
  }
  function panel() {
    const x = data && data.runs.find((y) => y.dag_run_id === sel);
    let h;
    if (!data || !data.runs.length) h = '<p class="muted">No runs yet: use “Trigger” to start one.</p>';
    else if (!x) h = `<p class="muted">Select a run by clicking its column header.${sel ? ` Run <code>${esc(sel)}</code> is not among the ${data.runs.length} most recent.` : ""}</p>`;
    else {
      const s = st(x.state), id = x.dag_run_id;
      h = `<div class="runinfo"><span><strong>Run</strong> <code>${esc(id)}</code></span>${badge(s)}<span class="muted">${esc(x.run_type || "")}</span><span>logical ${fmt(x.logical_date)}</span><span>start ${fmt(x.start_date)}</span><span>end ${fmt(x.end_date)}</span><a href="${H.view(d, "graph", id)}">Graph</a><a href="${H.view(d, "gantt", id)}">Timeline</a>${ACTIVE_RUN.has(s) ? '<button type="button" class="danger" data-testid="cancel-run" data-act="cancel-run">Cancel run</button>' : ""}</div>`;
    }
    if (h !== rpHtml) { rpHtml = h; keepFocus(rp, () => (rp.innerHTML = h)); }
  }
  function select(id) {
    sel = id;
    setRun(id);
    head();
    body(true);
    panel();
  }
  grid.onclick = (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.testid === "grid-cell") location.hash = H.task(d, b.dataset.runId, b.dataset.taskId);
    else if (b.dataset.testid === "run-header") select(b.dataset.runId);
  };
  grid.onkeydown = (ev) => {
    const b = ev.target.closest && ev.target.closest("[data-testid=grid-cell]");
    if (!b) return;
    const mv = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
    if (!mv) return;
    ev.preventDefault();
    const row = b.parentElement, p = +row.dataset.p + mv[0], c = Array.prototype.indexOf.call(row.children, b) - 1 + mv[1];
    if (p < 0 || p >= rows.length || c < 0 || c >= cols.length) return;
    const hh = gh.offsetHeight, y = hh + p * ROW;
    if (y < grid.scrollTop + hh) grid.scrollTop = y - hh;
    else if (y + ROW > grid.scrollTop + grid.clientHeight) grid.scrollTop = y + ROW - grid.clientHeight;
    body(false);
    const tr = gb.querySelector(`[data-p="${p}"]`);
    if (tr && tr.children[c + 1]) tr.children[c + 1].focus();
  };
  const onScroll = () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; if (r.alive) body(false); }); };
  grid.addEventListener("scroll", onScroll, { passive: true });
  listen(r, window, "resize", onScroll);
  gf.oninput = () => { if (!data) return; computeRows(); grid.scrollTop = 0; body(true); };
  rp.onclick = async (ev) => {
    const b = ev.target.closest("[data-act=cancel-run]");
    if (!b) return;
    b.disabled = true;
    try { await cancelRun(r, d, sel); } catch (e) { fail(r, e); }
    b.disabled = false;
    refresh();
  };
  const refresh = poller(r, async () => {
    const t = await req("GET", A.grid(d), undefined, { signal: r.ac.signal, text: true });
    if (t !== last) {
      last = t;
      data = gridOf(t);
      cols = data.runs.slice().reverse();
      rids = cols.map((x) => esc(x.dag_run_id));
      computeRows();
      head();
      body(true);
      panel();
    }
    return data.runs.some((x) => ACTIVE_RUN.has(x.state)) ? 1000 : 5000;
  });
  refresh();
}

// Shared by graph and timeline: the run <select> (newest first).
function runOptions(selEl, runs, sel, prev) {
  const sig = runs.map((x) => x.dag_run_id + " " + x.state).join("|") + "|" + sel;
  if (sig !== prev) {
    let h = runs.map((x) => `<option value="${esc(x.dag_run_id)}">${esc(short(x.logical_date))} · ${esc(x.dag_run_id)} (${esc(x.state)})</option>`).join("");
    if (sel && !runs.some((x) => x.dag_run_id === sel)) h = `<option value="${esc(sel)}">${esc(sel)}</option>` + h;
    selEl.innerHTML = h || '<option value="">no runs</option>';
  }
  selEl.value = sel || (runs[0] ? runs[0].dag_run_id : "");
  return sig;
}

// Graph: layers by longest path from the roots; one SVG path holds every edge.
function layoutGraph(tasks, canvas) {
  const n = tasks.length, NW = 200, NH = 44, GX = 70, GY = 12, M = 16;
  const up = tasks.map((t, i) => (t.upstream || []).filter((u) => Number.isInteger(u) && u >= 0 && u < n && u !== i));
  const down = Array.from({ length: n }, () => []), deg = new Int32Array(n), L = new Int32Array(n);
  up.forEach((us, i) => { deg[i] = us.length; for (const u of us) down[u].push(i); });
  const q = [];
  for (let i = 0; i < n; i++) if (!deg[i]) q.push(i);
  for (let h = 0; h < q.length; h++) {
    const u = q[h];
    for (const v of down[u]) { if (L[u] + 1 > L[v]) L[v] = L[u] + 1; if (!--deg[v]) q.push(v); }
  }
  const cols = [];
  for (let i = 0; i < n; i++) (cols[L[i]] = cols[L[i]] || []).push(i);
  let maxR = 0;
  for (const c of cols) if (c && c.length > maxR) maxR = c.length;
  const X = new Float64Array(n), Y = new Float64Array(n), key = new Float64Array(n);
  cols.forEach((c, l) => {
    if (!c) return;
    if (l) {
      for (const i of c) key[i] = up[i].length ? up[i].reduce((a, u) => a + Y[u], 0) / up[i].length : 1e15;
      c.sort((a, b) => key[a] - key[b] || a - b);
    }
    const off = ((maxR - c.length) * (NH + GY)) / 2;
    c.forEach((i, k) => { X[i] = M + l * (NW + GX); Y[i] = M + off + k * (NH + GY); });
  });
  const W = M * 2 + Math.max(1, cols.length) * (NW + GX) - GX, Ht = M * 2 + Math.max(1, maxR) * (NH + GY) - GY;
  let e = "", a = "";
  for (let v = 0; v < n; v++) for (const u of up[v]) {
    const x1 = X[u] + NW, y1 = Y[u] + NH / 2, x2 = X[v] - 1, y2 = Y[v] + NH / 2, m = (x1 + x2) / 2;
    e += `M${x1} ${y1}C${m} ${y1} ${m} ${y2} ${x2} ${y2}`;
    a += `M${x2} ${y2}l-7 -4v8z`;
  }
  let h = `<svg width="${W}" height="${Ht}" aria-hidden="true" focusable="false"><path class="edge" d="${e}"/><path class="arrow" d="${a}"/></svg>`;
  for (const c of cols) if (c) for (const i of c) {
    const tid = esc(tasks[i].task_id);
    h += `<button type="button" class="node st-none" data-i="${i}" data-testid="graph-node" data-task-id="${tid}" data-state="none" aria-label="${tid}: none" title="${tid}${tasks[i].kind ? ` (${esc(tasks[i].kind)})` : ""}"><span class="nt">${tid}</span><span class="badge st-none">${SYM.none} none</span></button>`;
  }
  canvas.style.width = W + "px";
  canvas.style.height = Ht + "px";
  canvas.innerHTML = h;
  const nodes = new Array(n);
  for (const b of canvas.children) if (b.dataset.i != null) {
    const i = +b.dataset.i;
    nodes[i] = b;
    b.style.left = X[i] + "px";
    b.style.top = Y[i] + "px";
  }
  return nodes;
}
function graphView({ r, d, view, run, setRun }) {
  let sel = run, last = "", data = null, sig = "", optSig = "", nodes = [];
  view.innerHTML = `<div class="toolbar"><label>Run <select id="rs"></select></label><span class="muted small" id="gi"></span></div>${legend()}<div class="graph" id="gr" tabindex="0" role="region" aria-label="Task graph"><div class="gcanvas" id="gc"></div></div>`;
  const rs = $("#rs", view), gi = $("#gi", view), gr = $("#gr", view), gc = $("#gc", view);
  const cur = () => (data ? data.runs.find((x) => x.dag_run_id === sel) || (!sel ? data.runs[0] : null) : null);
  function paint() {
    const x = cur(), states = (x && x.states) || "";
    gi.textContent = `${data.tasks.length} tasks` + (x ? ` · states of run ${x.dag_run_id} (${x.state})` : sel ? ` · run ${sel} is not among the ${data.runs.length} most recent` : " · no runs yet");
    for (let i = 0; i < nodes.length; i++) {
      const b = nodes[i], s = CODE[states[i]] || "none";
      if (!b || b.dataset.state === s) continue;
      b.dataset.state = s;
      b.className = "node st-" + s;
      b.setAttribute("aria-label", `${data.tasks[i].task_id}: ${s}`);
      b.lastChild.className = "badge st-" + s;
      b.lastChild.textContent = `${SYM[s]} ${s}`;
    }
  }
  rs.onchange = () => { sel = rs.value; setRun(sel); optSig = ""; if (data) { optSig = runOptions(rs, data.runs, sel, optSig); paint(); } };
  gr.onclick = (ev) => {
    const b = ev.target.closest("[data-testid=graph-node]");
    if (!b) return;
    const x = cur();
    if (x) location.hash = H.task(d, x.dag_run_id, b.dataset.taskId);
    else toast("No run to show this task in: trigger one first.", "info");
  };
  const refresh = poller(r, async () => {
    const t = await req("GET", A.grid(d), undefined, { signal: r.ac.signal, text: true });
    if (t !== last) {
      last = t;
      data = gridOf(t);
      const ns = JSON.stringify(data.tasks);
      if (ns !== sig) { sig = ns; nodes = layoutGraph(data.tasks, gc); }
      optSig = runOptions(rs, data.runs, sel, optSig);
      paint();
    }
    return data.runs.some((x) => ACTIVE_RUN.has(x.state)) ? 1000 : 5000;
  });
  refresh();
}

// Timeline (Gantt) of one run.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
function ganttPaint(box, d, id, tis) {
  const now = Date.now(), it = [];
  for (const t of tis) {
    const s = Date.parse(t.start_date);
    if (isNaN(s)) continue;
    let e = Date.parse(t.end_date);
    if (isNaN(e)) e = now;
    it.push({ t, s, e: Math.max(e, s) });
  }
  if (!it.length) { box.innerHTML = `<p class="muted">No task of run <code>${esc(id)}</code> has started yet.</p>`; return; }
  it.sort((a, b) => a.s - b.s || a.e - b.e);
  let t0 = Infinity, t1 = -Infinity;
  for (const x of it) { if (x.s < t0) t0 = x.s; if (x.e > t1) t1 = x.e; }
  const span = Math.max(t1 - t0, 1000);
  const step = (STEPS.find((s) => span / (s * 1000) <= 8) || Math.ceil(span / 8 / 86400e3) * 86400) * 1000;
  const ticks = [];
  for (let v = Math.ceil(t0 / step) * step; v <= t0 + span; v += step) ticks.push(v);
  let h = `<div class="grow gaxis"><div class="glabel muted small">Task (UTC)</div><div class="track">${ticks.map((v) => `<span>${esc(new Date(v).toISOString().slice(step >= 3600e3 ? 5 : 11, step >= 3600e3 ? 16 : 19).replace("T", " "))}</span>`).join("")}</div></div>`;
  for (const { t, s, e } of it) {
    const z = st(t.state), tid = esc(t.task_id);
    const lab = `${tid}: ${esc(z)}, ${iso(t.start_date)} → ${t.end_date ? iso(t.end_date) : "now"} (${dur(t.duration ?? (e - s) / 1000)})`;
    h += `<div class="grow"><div class="glabel" title="${tid}">${tid}</div><div class="track"><a class="bar ${cls(z)}" data-testid="gantt-bar" data-task-id="${tid}" data-state="${esc(z)}" href="${H.task(d, id, t.task_id)}" title="${lab}" aria-label="${lab}">${esc(z)}</a></div></div>`;
  }
  const rest = tis.length - it.length;
  if (rest) h += `<p class="muted small">${rest} task${rest === 1 ? "" : "s"} not started yet.</p>`;
  keepFocus(box, () => (box.innerHTML = h));
  const pct = (v) => ((v - t0) / span) * 100;
  box.querySelectorAll(".gaxis span").forEach((el, i) => { el.style.left = pct(ticks[i]) + "%"; });
  box.querySelectorAll(".bar").forEach((el, i) => {
    el.style.left = pct(it[i].s) + "%";
    el.style.width = `max(3px, ${((it[i].e - it[i].s) / span) * 100}%)`;
  });
}
function ganttView({ r, d, view, run, setRun }) {
  let sel = run, last = "", runs = [], optSig = "", tiKey = "";
  view.innerHTML = `<div class="toolbar"><label>Run <select id="rs"></select></label><span class="muted small" id="gi"></span></div>${legend()}<div class="gantt" id="gt" tabindex="0" role="region" aria-label="Timeline"></div>`;
  const rs = $("#rs", view), gt = $("#gt", view), gi = $("#gi", view);
  rs.onchange = () => { sel = rs.value; setRun(sel); tiKey = ""; refresh(); };
  const refresh = poller(r, async () => {
    const t = await req("GET", A.grid(d), undefined, { signal: r.ac.signal, text: true });
    if (t !== last) { last = t; runs = JSON.parse(t).runs || []; }
    optSig = runOptions(rs, runs, sel, optSig);
    const id = sel || (runs[0] && runs[0].dag_run_id);
    if (!id) { gt.innerHTML = '<p class="muted">No runs yet.</p>'; return 5000; }
    const tis = await fetchTIs(r, d, id);
    const x = runs.find((y) => y.dag_run_id === id);
    const active = x ? ACTIVE_RUN.has(x.state) : tis.some((ti) => !DONE.has(st(ti.state)));
    gi.textContent = `Run ${id}` + (x ? ` (${x.state})` : "");
    const k = JSON.stringify(tis);
    if (k !== tiKey || active) { tiKey = k; ganttPaint(gt, d, id, tis); }
    return active ? 1000 : 5000;
  });
  refresh();
}

// ---- task view ------------------------------------------------------------------------------
const lineText = (c) => (c == null ? "" : typeof c === "string" ? c : (c.timestamp ? c.timestamp + " " : "") + (c.event ?? JSON.stringify(c)));
function viewTask(r, d, runId, tid, q) {
  const tryQ = parseInt(q.get("try"), 10) || 0;
  main.innerHTML = `<nav class="crumbs" aria-label="Breadcrumb"><a href="#/">DAGs</a> / <a href="${H.view(d, "grid", runId)}">${esc(d)}</a> / <a href="${H.view(d, "gantt", runId)}" title="Timeline of this run">${esc(runId)}</a> / <span>${esc(tid)}</span></nav>
<h2 tabindex="-1">${esc(tid)}</h2>
<div class="card" id="ti"><p class="muted">Loading…</p></div>
<div class="actions" id="ta"></div>
<nav class="tries" id="tt" aria-label="Tries"></nav>
<section class="logsec" aria-labelledby="lh"><div class="logbar"><h3 id="lh">Log</h3><span class="muted small" id="ls"></span><a id="dl" class="btn" hidden>Download full log</a></div>
<div class="log" data-testid="log" id="log" tabindex="0" role="region" aria-label="Log lines"></div></section>`;
  const $ti = $("#ti"), $ta = $("#ta"), $tt = $("#tt"), $ls = $("#ls"), dl = $("#dl"), log = $("#log");
  const cache = {};
  const set = (el, k, h) => { if (cache[k] !== h) { cache[k] = h; keepFocus(el, () => (el.innerHTML = h)); } };
  let ti = null, runState = null, lastGrid = "", gridRuns = [];
  let logTry = 0, mode = "", token = null, es = null, gen = 0, endState = null, pend = [], flushQ = 0, stick = true, dropped = 0;

  const status = () => {
    const n = log.childElementCount;
    const what = { live: "Following live", ended: "Try finished", static: "Tail of the log", loading: "Loading…" }[mode] || "";
    $ls.textContent = `${what}${what && mode !== "loading" ? " · " : ""}${mode === "loading" ? "" : n + " line" + (n === 1 ? "" : "s") + " shown"}${dropped ? ` (${dropped} older lines dropped from view)` : ""}`;
  };
  log.addEventListener("scroll", () => { stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40; }, { passive: true });
  function add(lines) {
    if (!r.alive || !lines.length) return;
    if (lines.length > MAXL) { dropped += lines.length - MAXL; lines = lines.slice(-MAXL); }
    const keep = stick;
    let h = "";
    for (const l of lines) h += `<div class="ln">${esc(l)}</div>`;
    log.insertAdjacentHTML("beforeend", h);
    const extra = log.childElementCount - MAXL;
    if (extra > 0) {
      const h0 = log.scrollHeight, rg = document.createRange();
      rg.setStartBefore(log.firstElementChild);
      rg.setEndAfter(log.children[extra - 1]);
      rg.deleteContents();
      dropped += extra;
      if (!keep) log.scrollTop -= h0 - log.scrollHeight;
    }
    if (keep) { log.scrollTop = log.scrollHeight; stick = true; }
    status();
  }
  function queue(line) {
    pend.push(line);
    if (pend.length > MAXL) { dropped += pend.length - MAXL; pend.splice(0, pend.length - MAXL); }
    if (!flushQ) flushQ = requestAnimationFrame(() => { flushQ = 0; const p = pend; pend = []; add(p); });
  }
  function stopES() { if (es) { es.close(); r.es.delete(es); es = null; } }
  function follow() {
    stopES();
    const x = new EventSource(A.log(d, runId, tid, logTry) + "/stream?token=" + enc(token ?? ""), { withCredentials: true });
    es = x;
    r.es.add(x);
    mode = "live";
    status();
    x.onmessage = (e) => { if (e.lastEventId) token = e.lastEventId; queue(e.data); };
    x.addEventListener("end", () => { stopES(); mode = "ended"; endState = ti && ti.state; status(); refresh(); });
    x.onerror = () => {
      if (x.readyState !== 2 || es !== x) return; // the browser reconnects by itself
      stopES();
      mode = "ended";
      endState = null; // retry on the next poll if the try still runs
      status();
      refresh();
    };
  }
  async function startLog(n, live) {
    stopES();
    const g = ++gen;
    logTry = n; mode = "loading"; token = null; dropped = 0; pend = []; stick = true;
    log.textContent = "";
    const url = A.log(d, runId, tid, n);
    dl.href = url + "?full_content=true&format=text";
    dl.download = `${d}__${runId}__${tid}__try${n}.log`.replace(/[^\w.-]+/g, "_");
    dl.hidden = false;
    status();
    try {
      const j = await req("GET", url + "?tail=500", undefined, { signal: r.ac.signal });
      if (g !== gen) return;
      const c = j && j.content;
      add(typeof c === "string" ? c.split("\n") : Array.isArray(c) ? c.map(lineText) : []);
      token = j ? j.continuation_token ?? null : null;
      if (live && token != null) follow();
      else { mode = "static"; status(); }
    } catch (e) {
      if (g !== gen || e.name === "AbortError") return;
      if (e.status === 401) { fail(r, e); return; }
      mode = live ? "waiting" : "error";
      $ls.textContent = live ? "No log yet: waiting for the try to start…" : "";
      if (!(live && e.status === 404)) toast(e.message);
    }
  }
  function info(t, s) {
    const dd = t.duration ?? (t.start_date && !t.end_date ? (Date.now() - Date.parse(t.start_date)) / 1000 : null);
    const v = (x) => (x == null || x === "" ? "—" : `<code>${esc(x)}</code>`);
    return `<dl class="info">
<dt>Task</dt><dd>${v(t.task_id)}${t.map_index >= 0 ? ` [${esc(t.map_index)}]` : ""}</dd><dt>Run</dt><dd>${v(runId)}</dd>
<dt>State</dt><dd data-testid="task-state" data-state="${esc(s)}">${badge(s)}</dd><dt>Run state</dt><dd>${runState ? badge(runState) : "—"}</dd>
<dt>Try number</dt><dd>${esc(t.try_number ?? 0)}</dd><dt>Operator</dt><dd>${esc(t.operator ?? "—")}</dd>
<dt>Start</dt><dd>${fmt(t.start_date)}</dd><dt>End</dt><dd>${fmt(t.end_date)}</dd>
<dt>Duration</dt><dd>${dur(dd)}</dd><dt>Submission id</dt><dd>${v(t.bpg_submission_id)}</dd>
<dt>Cluster</dt><dd>${v(t.bpg_cluster)}</dd><dt>Connection</dt><dd>${v(t.bpg_connection)}</dd></dl>`;
  }
  const tries = (n, want) => (n < 1 ? '<span class="muted small">No try yet.</span>' : '<span class="muted small">Try:</span>' +
    Array.from({ length: n }, (_, i) => `<a href="${H.task(d, runId, tid, i + 1)}" data-k="try:${i + 1}"${i + 1 === want ? ' aria-current="page"' : ""}>${i + 1}</a>`).join(""));

  const refresh = poller(r, async () => {
    const [tis, gtx] = await Promise.all([
      fetchTIs(r, d, runId),
      req("GET", A.grid(d), undefined, { signal: r.ac.signal, text: true }).catch((e) => {
        if (e.status === 401 || e.name === "AbortError") throw e;
        return null;
      }),
    ]);
    if (gtx && gtx !== lastGrid) { lastGrid = gtx; gridRuns = JSON.parse(gtx).runs || []; }
    const mine = tis.filter((x) => x.task_id === tid);
    ti = mine.find((x) => (x.map_index ?? -1) === -1) || mine[0] || null;
    const run = gridRuns.find((x) => x.dag_run_id === runId);
    runState = run ? st(run.state) : tis.some((x) => !DONE.has(st(x.state)) && st(x.state) !== "none") ? "running" : null;
    if (!ti) { set($ti, "ti", `<p>Task <code>${esc(tid)}</code> was not found in run <code>${esc(runId)}</code>.</p>`); return 10000; }
    const s = st(ti.state), cur = ti.try_number || 0, want = tryQ || cur;
    set($ti, "ti", info(ti, s));
    set($ta, "ta", `<button type="button" data-testid="clear-task" data-act="clear">Clear task and downstream</button>${ACTIVE_RUN.has(runState) ? '<button type="button" class="danger" data-testid="cancel-run" data-act="cancel">Cancel run</button>' : ""}`);
    set($tt, "tt", tries(Math.max(cur, tryQ), want));
    const live = want === cur && !DONE.has(s);
    if (want < 1) {
      if (mode !== "none") { stopES(); gen++; mode = "none"; logTry = 0; log.textContent = ""; dl.hidden = true; $ls.textContent = "No try has started yet."; }
    } else if (want !== logTry || mode === "waiting") startLog(want, live);
    else if (mode === "ended" && live && s !== endState) follow();
    return !DONE.has(s) || ACTIVE_RUN.has(runState) ? 2000 : 10000;
  });
  $ta.onclick = async (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (!b) return;
    b.disabled = true;
    try {
      if (b.dataset.act === "clear") {
        const j = await req("POST", A.dag(d) + "/clearTaskInstances", { dag_run_id: runId, task_ids: [tid], include_downstream: true, only_failed: false, dry_run: false }, { signal: r.ac.signal });
        const n = j && j.task_instances ? j.task_instances.length : null;
        toast(n == null ? "Cleared" : `Cleared ${n} task instance${n === 1 ? "" : "s"}`, "info");
        if (tryQ) { location.hash = H.task(d, runId, tid); return; }
      } else await cancelRun(r, d, runId);
    } catch (e) { fail(r, e); }
    b.disabled = false;
    refresh();
  };
  refresh();
}

window.addEventListener("hashchange", render);
render();
})();
