// The web UI in a real browser: Debian's headless Chromium driven by playwright-core.
//
//   node ui.test.mjs [path/to/bpg]
//
// Starts `bpg scheduler` on the healthtech example and a slow pipeline (simulated clusters), then:
// triggers healthtech_daily with a param from the DAG list, waits for every task to turn success
// in the grid, opens the graph, the timeline and calculate_pi's log (finding a driver log line),
// cancels a run of the slow pipeline and sees its running task end. Screenshots go to
// target/ui-screenshots/. Exits non-zero with the reason on the first failure.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const bpg = resolve(process.argv[2] ?? join(root, "target/debug/bpg"));
const shots = join(root, "target/ui-screenshots");
mkdirSync(shots, { recursive: true });
const CHROMIUM = process.env.BPG_CHROMIUM ?? "/usr/bin/chromium";

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

function ok(message) {
  console.log(`ok: ${message}`);
}

async function freePort() {
  return new Promise((res, rej) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
    server.on("error", rej);
  });
}

async function waitForHealth(base, child) {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) fail(`bpg scheduler exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/api/v2/monitor/health`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  fail("bpg scheduler did not answer its health check");
}

const state = mkdtempSync(join(tmpdir(), "bpg-ui-test-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const child = spawn(
  bpg,
  [
    "scheduler",
    join(root, "examples/pipelines"),
    join(here, "pipelines"),
    "--connections",
    join(root, "examples/connections/sim.yaml"),
    "--listen",
    `127.0.0.1:${port}`,
    "--state",
    join(state, "runs.db"),
  ],
  { stdio: ["ignore", "inherit", "inherit"] },
);

let browser;
try {
  await waitForHealth(base, child);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith("data:")) external.push(r.url());
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Console errors include Content-Security-Policy violations (an inline style or script).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("401")) errors.push(m.text());
  });
  page.on("dialog", (d) => d.accept());

  // The DAG list.
  await page.goto(`${base}/`);
  const row = page.locator('[data-testid="dag-row"][data-dag-id="healthtech_daily"]');
  await row.waitFor({ timeout: 15000 });
  ok("the DAG list shows healthtech_daily");
  await page.screenshot({ path: join(shots, "dag-list.png"), fullPage: true });

  // Trigger with a param.
  await row.locator('[data-testid="trigger-button"]').click();
  const form = page.locator('[data-testid="trigger-form"]');
  await form.waitFor();
  await form.locator('[name="param:partitions"]').fill("42");
  await form.locator('[data-testid="trigger-submit"]').click();
  await page.locator('[data-testid="grid"]').waitFor({ timeout: 15000 });
  ok("triggering opens the grid");

  // Every task of the new run turns success in the grid (the grid refreshes itself).
  // The new run is the one the trigger navigated to.
  await page.waitForFunction(() => new URLSearchParams(location.hash.split("?")[1] || "").get("run"));
  const runId = await page.evaluate(() => new URLSearchParams(location.hash.split("?")[1] || "").get("run"));
  await page.locator(`[data-testid="run-header"][data-run-id="${runId}"]`).waitFor({ timeout: 15000 });
  await page.waitForFunction(
    (id) => {
      const cells = [...document.querySelectorAll('[data-testid="grid-cell"]')].filter(
        (c) => c.dataset.runId === id,
      );
      return cells.length === 5 && cells.every((c) => c.dataset.state === "success");
    },
    runId,
    { timeout: 60000 },
  );
  ok(`every task of ${runId} turned success in the grid`);
  const run = await (await fetch(`${base}/api/v2/dags/healthtech_daily/dagRuns/${encodeURIComponent(runId)}`)).json();
  if (run.conf?.partitions !== 42) fail(`the run got the param from the form (conf: ${JSON.stringify(run.conf)})`);
  ok("the run got partitions=42 from the form");
  await page.screenshot({ path: join(shots, "grid.png"), fullPage: true });

  // The graph with the run's states.
  await page.locator('[data-testid="tab-graph"]').click();
  await page.waitForFunction(
    () => {
      const nodes = [...document.querySelectorAll('[data-testid="graph-node"]')];
      return nodes.length === 5 && nodes.every((n) => n.dataset.state === "success");
    },
    null,
    { timeout: 15000 },
  );
  ok("the graph shows five successful tasks");
  await page.screenshot({ path: join(shots, "graph.png"), fullPage: true });

  // The timeline.
  await page.locator('[data-testid="tab-timeline"]').click();
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="gantt-bar"]').length === 5,
    null,
    { timeout: 15000 },
  );
  ok("the timeline has a bar per task");
  await page.screenshot({ path: join(shots, "timeline.png"), fullPage: true });

  // calculate_pi's log, from the graph.
  await page.locator('[data-testid="tab-graph"]').click();
  await page.locator('[data-testid="graph-node"][data-task-id="calculate_pi"]').click();
  const log = page.locator('[data-testid="log"]');
  await log.waitFor({ timeout: 15000 });
  await page.waitForFunction(
    () => (document.querySelector('[data-testid="log"]')?.textContent ?? "").includes("INFO SparkContext: simulated stage"),
    null,
    { timeout: 15000 },
  );
  ok("calculate_pi's log shows a driver log line");
  await page.screenshot({ path: join(shots, "log.png"), fullPage: true });

  // A second run, of the slow pipeline: cancel it while its task runs.
  await page.goto(`${base}/#/`);
  const slow = page.locator('[data-testid="dag-row"][data-dag-id="slow_report"]');
  await slow.waitFor();
  await slow.locator('[data-testid="trigger-button"]').click();
  await page.locator('[data-testid="trigger-form"] [data-testid="trigger-submit"]').click();
  await page.locator('[data-testid="grid"]').waitFor();
  await page.locator('[data-testid="grid-cell"][data-task-id="long_job"][data-state="running"]').waitFor({ timeout: 30000 });
  ok("the slow run's task is running");
  const slowRun = await page
    .locator('[data-testid="grid-cell"][data-task-id="long_job"][data-state="running"]')
    .getAttribute("data-run-id");
  await page.locator(`[data-testid="run-header"][data-run-id="${slowRun}"]`).click();
  await page.locator('[data-testid="cancel-run"]').click();
  await page.waitForFunction(
    (id) => {
      const cell = [...document.querySelectorAll('[data-testid="grid-cell"]')].find(
        (c) => c.dataset.runId === id && c.dataset.taskId === "long_job",
      );
      return cell && cell.dataset.state !== "running";
    },
    slowRun,
    { timeout: 30000 },
  );
  const cancelled = await (await fetch(`${base}/api/v2/dags/slow_report/dagRuns/${encodeURIComponent(slowRun)}`)).json();
  if (cancelled.state !== "failed") fail(`the cancelled run is failed (got ${cancelled.state})`);
  ok("cancelling ended the running task and the run is failed");
  await page.screenshot({ path: join(shots, "cancelled.png"), fullPage: true });

  if (external.length) fail(`the UI fetched outside the server: ${external.join(", ")}`);
  if (errors.length) fail(`the page had script errors: ${errors.join("; ")}`);
  const weight = ["/", "/ui/app.js", "/ui/app.css"].map((p) => p);
  let bytes = 0;
  for (const p of weight) bytes += (await (await fetch(base + p)).arrayBuffer()).byteLength;
  ok(`no external requests, no script errors; page weight ${bytes} bytes (uncompressed)`);
  for (const f of ["dag-list", "grid", "graph", "timeline", "log"]) statSync(join(shots, `${f}.png`));
  console.log(`browser test: all good (screenshots in ${shots})`);
} catch (e) {
  if (!process.exitCode) {
    console.error(`FAILED: ${e.stack ?? e}`);
    process.exitCode = 1;
  }
} finally {
  if (browser) await browser.close();
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
  rmSync(state, { recursive: true, force: true });
}
