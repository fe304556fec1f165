// Drives Debian's Chromium through the web page of a running pipeline, for
// host/tests/web_page.rs (which starts the pipeline and checks this report).
//
//   node page_test.js MODE URL ARTIFACTS_DIR [PLUGIN [TOKEN]]
//
// MODE `page`: gives the page TOKEN when it asks for one, waits for the DAG, the plugin PLUGIN, dead letters and
// checkpoints to show, takes a screenshot, presses PLUGIN's rollback button
// and waits for the version shown to change, takes another.
// MODE `numbers`: reads every node's figures (from /metrics) twice, 3 s
// apart.
// Prints one JSON report on stdout; exits 1 (with the error on stderr and a
// screenshot `failure-MODE.png`) when what it waits for never shows.
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

const [mode, url, artifacts, plugin, token] = process.argv.slice(2);
const CHROMIUM = process.env.STREAMHOST_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 30000;

async function nodes(page) {
  return page.$$eval("#dag g.node", (gs) =>
    gs.map((g) => ({
      id: g.dataset.node,
      name: g.querySelector("text.name").textContent,
      subtitle: g.querySelector("text.subtitle").textContent,
      figures: g.querySelector("text.figures").textContent,
    })));
}

// Every node's figures as the page shows them in the node table.
async function figures(page) {
  return page.$$eval("#nodes tbody tr", (rows) =>
    Object.fromEntries(rows.map((r) => {
      const field = (f) => {
        const c = r.querySelector(`[data-field="${f}"]`);
        return { shown: c.textContent, value: c.dataset.value === undefined || c.dataset.value === "" ? null : Number(c.dataset.value) };
      };
      return [r.dataset.node, { parallelism: field("parallelism").shown, events: field("events"), rate: field("rate"), lag: field("lag"), backpressure: field("backpressure"), busy: field("busy") }];
    })));
}

async function pluginCard(page) {
  const card = page.locator(`.plugin[data-plugin="${plugin}"]`);
  return {
    current: await card.locator('[data-field="current-version"]').getAttribute("data-hash"),
    previous: await card.locator('[data-field="previous-version"]').getAttribute("data-hash"),
    currentText: await card.locator('[data-field="current-version"]').textContent(),
    history: await card.locator("table.history tbody tr").evaluateAll((rows) => rows.map((r) => r.children[1].textContent)),
    rollbackEnabled: await card.locator('button[data-action="rollback"]').isEnabled(),
  };
}

async function pageMode(page, report) {
  // With a token the API answers 401 until the page is given it.
  await page.waitForSelector("#dag g.node, #token-form:not([hidden])", { timeout: WAIT_MS });
  report.tokenAsked = await page.isVisible("#token-form");
  if (report.tokenAsked && token) {
    await page.fill("#token-input", token);
    await Promise.all([page.waitForNavigation(), page.click('#token-form button[type="submit"]')]);
  }
  await page.waitForSelector("#dag g.node", { timeout: WAIT_MS });
  report.nodes = await nodes(page);
  report.edges = await page.$$eval("#dag path.edge", (ps) => ps.map((p) => ({ from: p.dataset.from, to: p.dataset.to, kind: p.dataset.kind })));
  report.summary = await page.textContent("#dag-summary");
  report.table = await figures(page);

  await page.waitForSelector(`.plugin[data-plugin="${plugin}"] [data-field="current-version"]`, { timeout: WAIT_MS });
  await page.waitForSelector("#dead-letters table.dead tbody tr", { timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelectorAll("#checkpoints tbody tr").length >= 2, null, { timeout: WAIT_MS });
  report.deadLetters = await page.$$eval("#dead-letters tbody tr", (rows) =>
    rows.map((r) => ({ kind: r.dataset.kind, origin: r.children[2].textContent, step: r.children[3].textContent, reason: r.children[4].textContent, value: r.children[5].textContent })));
  report.deadSummary = await page.textContent("#dead-summary");
  report.checkpoints = await page.$$eval("#checkpoints tbody tr", (rows) =>
    rows.map((r) => ({ id: Number(r.dataset.checkpoint), outcome: r.children[4].textContent, size: r.children[3].textContent, duration: r.children[2].textContent })));
  report.alerts = await page.textContent("#alerts");
  report.status = await page.textContent("#status");
  report.before = await pluginCard(page);
  await page.screenshot({ path: path.join(artifacts, "page.png"), fullPage: true });

  // The button asks for a confirmation first.
  page.once("dialog", (d) => {
    report.dialog = d.message();
    d.accept();
  });
  await page.click(`.plugin[data-plugin="${plugin}"] button[data-action="rollback"]`);
  const before = report.before.current;
  await page.waitForFunction(
    ([name, hash]) => {
      const e = document.querySelector(`.plugin[data-plugin="${name}"] [data-field="current-version"]`);
      return e && e.dataset.hash !== hash;
    },
    [plugin, before],
    { timeout: WAIT_MS });
  report.after = await pluginCard(page);
  report.result = await page.textContent(`.plugin[data-plugin="${plugin}"] .result`);
  await page.locator("#plugins-section").screenshot({ path: path.join(artifacts, "after-rollback.png") });
  await page.screenshot({ path: path.join(artifacts, "page-after-rollback.png"), fullPage: true });
}

async function numbersMode(page, report) {
  await page.waitForSelector("#dag g.node", { timeout: WAIT_MS });
  // The first sample has no rate yet: wait for the second.
  try {
    await page.waitForFunction(() => [...document.querySelectorAll('#nodes [data-field="rate"]')].some((c) => c.dataset.value), null, { timeout: 10000 });
  } catch (_) {
    // Reported below: the figures stay empty.
  }
  report.metricsStatus = await page.textContent("#metrics-status");
  report.first = await figures(page);
  report.firstNodes = await nodes(page);
  await page.waitForTimeout(3000);
  report.second = await figures(page);
  report.secondNodes = await nodes(page);
  await page.screenshot({ path: path.join(artifacts, "numbers.png"), fullPage: true });
}

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const report = { mode, browser: browser.version(), consoleErrors: [], pageErrors: [] };
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  page.on("console", (m) => {
    if (m.type() === "error") report.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  try {
    const response = await page.goto(url, { waitUntil: "load" });
    report.httpStatus = response.status();
    report.contentType = response.headers()["content-type"];
    if (mode === "page") await pageMode(page, report);
    else if (mode === "numbers") await numbersMode(page, report);
    else throw new Error("unknown mode " + mode);
  } catch (e) {
    await page.screenshot({ path: path.join(artifacts, `failure-${mode}.png`), fullPage: true }).catch(() => {});
    console.error(String(e && e.stack || e));
    console.log(JSON.stringify(report));
    await browser.close();
    process.exit(1);
  }
  console.log(JSON.stringify(report));
  await browser.close();
})();
