// A measurement, not a test: how long Debian's headless Chromium takes to paint the grid of a
// 10,000-task DAG with 25 runs (goal: under 1 s), and the UI's page weight.
//
//   node grid-paint.mjs [path/to/bpg]
//
// Writes a DAG of 100 layers × 100 empty tasks, runs it 25 times through `bpg scheduler`, then
// opens its grid five times and prints the times.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const bpg = resolve(process.argv[2] ?? join(root, "target/debug/bpg"));
const TASKS = 10_000;
const RUNS = 25;

const dir = mkdtempSync(join(tmpdir(), "bpg-grid-paint-"));
mkdirSync(join(dir, "dags"));
let yaml = "dag_id: big\ndescription: 100 layers of 100 empty tasks.\ntasks:\n";
for (let i = 0; i < TASKS; i++) {
  const id = `t${String(i).padStart(5, "0")}`;
  yaml += `  - id: ${id}\n    kind: empty\n`;
  if (i >= 100) yaml += `    depends_on: [t${String(i - 100).padStart(5, "0")}]\n`;
}
writeFileSync(join(dir, "dags/big.yaml"), yaml);

const port = await new Promise((res) => {
  const s = createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => res(p));
  });
});
const base = `http://127.0.0.1:${port}`;
const child = spawn(bpg, ["scheduler", join(dir, "dags"), "--listen", `127.0.0.1:${port}`, "--state", join(dir, "runs.db"), "--quiet"], {
  stdio: ["ignore", "inherit", "inherit"],
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let browser;
try {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${base}/api/v2/monitor/health`)).ok) break;
    } catch {}
    await sleep(100);
  }
  const started = Date.now();
  for (let r = 0; r < RUNS; r++) {
    const date = new Date(Date.UTC(2026, 0, 1 + r)).toISOString();
    const res = await fetch(`${base}/api/v2/dags/big/dagRuns`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ dag_run_id: `run_${r}`, logical_date: date }),
    });
    if (!res.ok) throw new Error(`trigger: ${res.status} ${await res.text()}`);
  }
  for (;;) {
    const runs = await (await fetch(`${base}/api/v2/dags/big/dagRuns?state=success&limit=100`)).json();
    if (runs.total_entries >= RUNS) break;
    await sleep(500);
  }
  console.log(`${RUNS} runs of ${TASKS} tasks done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const t = Date.now();
  const grid = await (await fetch(`${base}/ui/api/grid/big?runs=${RUNS}`)).text();
  console.log(`grid JSON: ${grid.length} bytes in ${Date.now() - t} ms (over HTTP, from Node)`);

  browser = await chromium.launch({
    executablePath: process.env.BPG_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const times = [];
  for (let i = 0; i < 5; i++) {
    await page.goto("about:blank");
    const t0 = Date.now();
    await page.goto(`${base}/#/dags/big/grid`);
    await page.waitForFunction(
      (runs) => document.querySelectorAll('[data-testid="run-header"]').length >= runs && document.querySelector('[data-testid="grid-cell"]'),
      RUNS,
      { timeout: 60000, polling: "raf" },
    );
    // One more frame: the cells are painted, not only in the DOM.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    times.push(Date.now() - t0);
  }
  const cells = await page.locator('[data-testid="grid-cell"]').count();
  const weight = await page.evaluate(() =>
    performance.getEntriesByType("resource").concat(performance.getEntriesByType("navigation"))
      .filter((e) => !e.name.includes("/api/"))
      .reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0),
  );
  times.sort((a, b) => a - b);
  console.log(`grid paint (navigation to painted grid, ${RUNS} runs x ${TASKS} tasks): median ${times[2]} ms, best ${times[0]} ms, worst ${times[4]} ms; ${cells} cells in the DOM`);
  console.log(`page weight (HTML+JS+CSS as transferred): ${weight} bytes`);
  await page.screenshot({ path: join(root, "target/ui-screenshots/grid-10k.png") });
} finally {
  if (browser) await browser.close();
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
  rmSync(dir, { recursive: true, force: true });
}
