// The web UI in a real browser: Debian's chromium, driven by playwright-core, against a real
// `mlflow-tracing demo` server (SQLite store, the SDK's sample agents exported over HTTP) plus traces sent
// over OTLP/JSON here: a 100,001-span trace, a 1,001-span trace and one whose content is HTML.
//
// Environment: MLFLOW_TRACING_BIN (default: target/debug/mlflow-tracing), CHROMIUM (default:
// /usr/bin/chromium), UI_ARTIFACTS (screenshots and measured figures; default: target/ui-artifacts).

import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { generatedTrace, hex, sendSpans as send, spanJson } from "./seed.mjs";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const binary = process.env.MLFLOW_TRACING_BIN ?? join(repo, "target/debug/mlflow-tracing");
const artifacts = process.env.UI_ARTIFACTS ?? join(repo, "target/ui-artifacts");
const XSS = "<img src=x onerror=alert(1)>";

let server;
let dir;
let base;
let browser;
let page;
let dialogs = 0;
const pageErrors = [];
const ids = {};

function sendSpans(experimentId, spans) {
  return send(base, experimentId, spans);
}

async function call(method, path, body, headers = {}) {
  const response = await fetch(base + path, {
    method, headers: { "content-type": "application/json", ...headers }, body: body && JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${method} ${path}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : {};
}

before(async () => {
  mkdirSync(join(artifacts, "after"), { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "mlflow-tracing-ui-"));
  server = spawn(binary, ["demo", "--port", "0", "--backend-store-uri", `sqlite:///${join(dir, "ui.db")}`],
    { stdio: ["ignore", "pipe", "inherit"] });
  base = await new Promise((resolveBase, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the demo did not start:\n${out}`)), 120000);
    server.stdout.on("data", (chunk) => {
      out += chunk;
      const address = out.match(/Tracking server: (http:\/\/\S+)/);
      if (address && out.includes("Serving until")) { clearTimeout(timer); resolveBase(address[1]); }
    });
    server.on("exit", (code) => reject(new Error(`the demo exited (${code}):\n${out}`)));
  });
  const created = await call("POST", "/api/2.0/mlflow/experiments/create", { name: "ui-test" });
  ids.experiment = created.experiment_id;
  const big = generatedTrace("big_agent", 1000, 99);
  const medium = generatedTrace("medium_agent", 100, 9);
  const xssTrace = hex(32);
  const xssRoot = hex(16);
  const now = Date.now() * 1e6;
  const xss = [spanJson({ traceId: xssTrace, spanId: xssRoot, name: XSS, type: "CHAT_MODEL", start: now - 5e6, end: now,
    inputs: { messages: [{ role: "user", content: XSS }] }, outputs: { role: "assistant", content: `<script>window.__xss = 1</script>${XSS}` } })];
  const doomed = hex(32);
  await sendSpans(ids.experiment, big.spans);
  await sendSpans(ids.experiment, medium.spans);
  await sendSpans(ids.experiment, xss);
  await sendSpans(ids.experiment, [spanJson({ traceId: doomed, spanId: hex(16), name: "to_delete", type: "CHAIN", start: now - 1e6, end: now })]);
  Object.assign(ids, { big: big.traceId, deep: big.deep, medium: medium.traceId, xss: `tr-${xssTrace}`, doomed: `tr-${doomed}` });
  ids.paging = (await call("POST", "/api/2.0/mlflow/experiments/create", { name: "ui-paging" })).experiment_id;
  await sendSpans(ids.paging, Array.from({ length: 60 }, (_, i) => spanJson({ traceId: hex(32), spanId: hex(16),
    name: `call_${String(i).padStart(2, "0")}`, type: "CHAIN", start: now - (100 - i) * 1e9, end: now - (100 - i) * 1e9 + 1e6 })));
  ids.empty = (await call("POST", "/api/2.0/mlflow/experiments/create", { name: "ui-empty" })).experiment_id;
  const demo = await call("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo");
  ids.demo = demo.experiment.experiment_id;

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("dialog", async (dialog) => { dialogs += 1; await dialog.dismiss(); });
  page.on("pageerror", (error) => pageErrors.push(error.message));
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

afterEach(async (context) => {
  // The last state of every test, for reading a failure.
  const name = context.name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
  await page?.screenshot({ path: join(artifacts, "after", `${name}.png`) }).catch(() => {});
});

async function shot(name, target = page) {
  await target.screenshot({ path: join(artifacts, `${name}.png`) });
}

async function openTrace(traceId, query = "") {
  await page.goto(`${base}/#/traces/${traceId}${query}`);
  await page.locator(".trace-page[data-ready]").waitFor();
}

test("the server sends the page with a Content-Security-Policy", async () => {
  const response = await fetch(`${base}/`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-security-policy"), /script-src 'self'/);
  assert.doesNotMatch(response.headers.get("content-security-policy"), /unsafe-inline|unsafe-eval/);
  assert.match(await response.text(), /<script type="module" src="\/static\/app.js">/);
});

test("experiments list their trace counts", async () => {
  await page.goto(`${base}/`);
  const demoRow = page.locator(`tr[data-experiment-id="${ids.demo}"]`);
  await demoRow.waitFor();
  assert.equal(await demoRow.locator("td").nth(0).innerText(), "demo");
  assert.equal(await demoRow.locator("td").nth(2).innerText(), "9");
  const testRow = page.locator(`tr[data-experiment-id="${ids.experiment}"]`);
  assert.equal(await testRow.locator("td").nth(2).innerText(), "4");
  assert.equal(await page.locator(`tr[data-experiment-id="${ids.empty}"] td`).nth(2).innerText(), "0");
  await shot("experiments");
});

test("the traces table lists the demo traces, and a filter narrows them", async () => {
  await page.goto(`${base}/#/experiments/${ids.demo}`);
  await page.locator("tr.trace-row").first().waitFor();
  assert.equal(await page.locator("tr.trace-row").count(), 9);
  const names = await page.locator("tr.trace-row td:nth-child(3)").allInnerTexts();
  assert.ok(names.includes("support_bot") && names.includes("inventory_agent"), names.join(","));
  await shot("traces");

  await page.fill("input[name=filter]", "attributes.status = 'ERROR'");
  await page.press("input[name=filter]", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 1);
  assert.equal(await page.locator("tr.trace-row td:nth-child(3)").innerText(), "inventory_agent");
  assert.equal(await page.locator("tr.trace-row .badge").innerText(), "ERROR");

  await page.selectOption("select[name=state]", "OK");
  await page.locator(".no-match").waitFor();

  await page.goto(`${base}/#/experiments/${ids.demo}?span_type=CHAT_MODEL`);
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 4);
  assert.deepEqual((await page.locator("tr.trace-row td:nth-child(3)").allInnerTexts()).sort(),
    ["streaming_chat", "support_bot", "support_bot", "support_bot"]);
});

test("text search finds the traces whose spans hold a word", async () => {
  await page.goto(`${base}/#/experiments/${ids.experiment}`);
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 4);
  await page.fill("input[name=text]", "ONERROR=alert");
  await page.press("input[name=text]", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 1);
  assert.equal(await page.locator("tr.trace-row").getAttribute("data-trace-id"), ids.xss);
  assert.ok(decodeURIComponent(page.url()).includes("text=ONERROR=alert"), page.url());
  await page.fill("input[name=text]", "it's nowhere");
  await page.press("input[name=text]", "Enter");
  await page.locator(".no-match").waitFor();
  assert.equal(await page.locator(".filter-error").count(), 0, "a quote in the text is no filter error");
});

test("pages come from the server, 50 traces at a time", async () => {
  await page.goto(`${base}/#/experiments/${ids.paging}`);
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 50);
  assert.equal(await page.locator(".pager .muted").innerText(), "1–50");
  await page.click("button:has-text('Next')");
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 10);
  assert.equal(await page.locator(".pager .muted").innerText(), "51–60");
  assert.ok(await page.locator("button:has-text('Next')").isDisabled());
  await page.click("button:has-text('Previous')");
  await page.waitForFunction(() => document.querySelectorAll("tr.trace-row").length === 50);
  assert.ok(await page.locator("button:has-text('Previous')").isDisabled());
});

test("an empty experiment tells a new user how to send a first trace, and live tail shows it arrive", async () => {
  await page.goto(`${base}/#/experiments/${ids.empty}`);
  await page.locator(".empty").waitFor();
  const help = await page.locator(".empty").innerText();
  assert.match(help, /No traces yet/);
  assert.ok(help.includes(`MLFLOW_TRACKING_URI=${base}`), help);
  assert.ok(help.includes("/v1/traces"), help);
  await shot("traces-empty");

  await page.check("input[name=live]");
  const traceId = hex(32);
  const now = Date.now() * 1e6;
  await sendSpans(ids.empty, [spanJson({ traceId, spanId: hex(16), name: "first_call", type: "AGENT", start: now - 1e6, end: now })]);
  await page.locator(`tr[data-trace-id="tr-${traceId}"]`).waitFor({ timeout: 10000 });
  await page.uncheck("input[name=live]");
});

test("a bad filter shows the server's error inline", async () => {
  await page.goto(`${base}/#/experiments/${ids.demo}`);
  await page.locator("tr.trace-row").first().waitFor();
  await page.fill("input[name=filter]", "attributes.status = ");
  await page.press("input[name=filter]", "Enter");
  const error = page.locator(".filter-error");
  await error.waitFor();
  assert.match(await error.innerText(), /INVALID_PARAMETER_VALUE/);
  assert.equal(await page.locator("tr.trace-row").count(), 0);
  await shot("traces-bad-filter");
});

test("sorting asks the server for another order", async () => {
  await page.goto(`${base}/#/experiments/${ids.experiment}`);
  await page.locator("tr.trace-row").first().waitFor();
  await page.click("th[data-sort=execution_time_ms]");
  await page.waitForFunction(() => document.querySelector("th[data-sort=execution_time_ms]")?.getAttribute("aria-sort") === "descending");
  await page.locator("tr.trace-row").first().waitFor();
  assert.equal(await page.locator("tr.trace-row").first().getAttribute("data-trace-id"), ids.big);
  await page.click("th[data-sort=execution_time_ms]");
  await page.waitForFunction(() => document.querySelector("th[data-sort=execution_time_ms]")?.getAttribute("aria-sort") === "ascending");
  await page.locator("tr.trace-row").first().waitFor();
  assert.equal(await page.locator("tr.trace-row").last().getAttribute("data-trace-id"), ids.big);
});

test("a trace opens from the table and shows a span's inputs, outputs, attributes and exception", async () => {
  await page.goto(`${base}/#/experiments/${ids.demo}`);
  await page.locator("tr.trace-row").first().waitFor();
  const row = page.locator("tr.trace-row", { has: page.locator(".badge.state-ERROR") });
  await row.locator("td:nth-child(2) a").click();
  await page.locator(".trace-page[data-ready]").waitFor();
  assert.equal(await page.locator("[data-testid=trace-state]").innerText(), "ERROR");
  const rows = page.locator(".span-row");
  assert.deepEqual(await rows.locator(".name").allInnerTexts(), ["inventory_agent", "check_inventory", "check_inventory"]);
  assert.equal(await page.locator(".bar").count(), 3);

  await rows.nth(1).click();
  await page.waitForFunction(() => document.querySelector(".detail-pane h2")?.textContent.includes("check_inventory"));
  assert.match(await page.locator("[data-testid=inputs]").innerText(), /"sku"/);
  await page.click("button[data-tab=attributes]");
  const attributes = await page.locator("[data-testid=attributes]").innerText();
  assert.match(attributes, /mlflow\.spanType/);
  assert.match(attributes, /mlflow\.spanFunctionName/);
  await page.click("button[data-tab=events]");
  const exception = await page.locator("[data-testid=exception]").first().innerText();
  assert.match(exception, /InventoryTimeout/);
  assert.match(exception, /timed out/);
  await shot("trace-exception");
  await page.click("button[data-tab=io]");
});

test("an LLM span's messages read as a conversation", async () => {
  await page.goto(`${base}/#/experiments/${ids.demo}?span_type=CHAT_MODEL`);
  await page.locator("tr.trace-row").first().waitFor();
  await page.locator("tr.trace-row", { hasText: "support_bot" }).first().locator("td:nth-child(2) a").click();
  await page.locator(".trace-page[data-ready]").waitFor();
  await page.locator(".span-row", { hasText: "chat_completion" }).click();
  const chat = page.locator("[data-testid=chat]");
  await chat.waitFor();
  const roles = await chat.locator(".role").allInnerTexts();
  assert.ok(roles.some((role) => role.toLowerCase().startsWith("user")), roles.join(","));
  assert.ok(roles.some((role) => role.toLowerCase().startsWith("assistant")), roles.join(","));
  await page.locator("[data-testid=usage]").waitFor();
  await shot("trace-chat");
});

test("the 100,001-span trace opens, expands, scrolls and keeps the timeline ordered", async () => {
  await openTrace(ids.big);
  assert.equal(await page.locator("[data-testid=span-count]").innerText(), (100001).toLocaleString("en-US"));
  const rendered = await page.locator(".span-row").count();
  assert.ok(rendered > 10 && rendered < 200, `virtualised: ${rendered} rows in the DOM`);
  // Root expanded, its 1,000 steps collapsed: the spacer holds 1,001 rows.
  assert.equal(await page.locator(".vspacer").evaluate((node) => node.style.height), `${1001 * 26}px`);

  // Bars of the root's children start in order.
  const lefts = await page.locator(".span-row[aria-level='2'] .bar").evaluateAll((bars) => bars.map((bar) => parseFloat(bar.style.left)));
  assert.ok(lefts.length >= 10, `${lefts.length} bars`);
  for (let i = 1; i < lefts.length; i++) assert.ok(lefts[i] > lefts[i - 1], `bar ${i} does not start after bar ${i - 1}: ${lefts}`);

  const step = page.locator(".span-row[aria-level='2']").first();
  assert.equal(await step.getAttribute("aria-expanded"), "false");
  await step.locator("button.caret").click();
  await page.waitForFunction(() => document.querySelector(".vspacer").style.height === `${1100 * 26}px`);
  // The spacer grows at once; the rows are drawn on the next animation frame.
  await page.waitForFunction(() => document.querySelector(".span-row[aria-level='2']").getAttribute("aria-expanded") === "true");
  assert.equal(await page.locator(".span-row[aria-level='3'] .name").first().innerText(), "leaf-0-0");

  await page.locator(".vlist").evaluate((node) => { node.scrollTop = 500 * 26; });
  await page.waitForFunction(() => [...document.querySelectorAll(".span-row .name")].some((n) => n.textContent === "step-420"));
  await shot("trace-100k");

  // Keyboard: collapse step-0 again, select step-1, move down, expand with the right arrow.
  await page.locator(".vlist").evaluate((node) => { node.scrollTop = 0; });
  await page.locator(".span-row[aria-level='2'] button.caret").first().click();
  await page.waitForFunction(() => document.querySelector(".vspacer").style.height === `${1001 * 26}px`);
  await page.locator(".span-row[aria-level='2']").nth(1).click();
  await page.focus(".vlist");
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => document.querySelector(".span-row.selected .name")?.textContent === "step-2");
  await page.keyboard.press("ArrowRight");
  await page.waitForFunction(() => document.querySelector(".vspacer").style.height === `${1100 * 26}px`);
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => document.querySelector(".span-row.selected .name")?.textContent === "leaf-2-0");
  await page.keyboard.press("ArrowLeft");
  await page.waitForFunction(() => document.querySelector(".span-row.selected .name")?.textContent === "step-2");
});

test("only errors, and search within the trace, keep the matching spans and their ancestors", async () => {
  await openTrace(ids.big);
  await page.check("input[name=only-errors]");
  await page.waitForFunction(() => document.querySelectorAll(".span-row").length === 3);
  assert.deepEqual(await page.locator(".span-row .name").allInnerTexts(), ["big_agent", "step-7", "leaf-7-3"]);
  await page.uncheck("input[name=only-errors]");
  await page.fill("input[name=span-search]", "leaf-999-98");
  await page.waitForFunction(() => document.querySelectorAll(".span-row").length === 3);
  assert.equal(await page.locator(".span-row mark").innerText(), "leaf-999-98");
});

test("a deep link opens the same span", async () => {
  await openTrace(ids.big, `?span=${ids.deep.spanId}`);
  await page.waitForFunction((name) => document.querySelector(".span-row.selected .name")?.textContent === name, ids.deep.name);
  await page.waitForFunction((id) => document.querySelector(".detail-pane")?.dataset.spanId === id, ids.deep.spanId);
  assert.match(await page.locator("[data-testid=inputs]").innerText(), /"leaf": 49/);

  // Selecting another span puts it in the URL; that URL opens it in a fresh page.
  await page.locator(".span-row", { hasText: "leaf-500-50" }).click();
  await page.waitForFunction(() => location.hash.includes("span="));
  const link = page.url();
  const other = await browser.newPage();
  await other.goto(link);
  await other.locator(".span-row.selected").waitFor();
  assert.equal(await other.locator(".span-row.selected .name").innerText(), "leaf-500-50");
  await other.close();
});

test("HTML in trace content is shown as text and runs nothing", async () => {
  await openTrace(ids.xss);
  assert.equal(await page.locator(".span-row .name").first().innerText(), XSS);
  await page.click("button[data-tab=io]");
  assert.ok((await page.locator("[data-testid=inputs]").innerText()).includes(XSS));
  assert.ok((await page.locator("[data-testid=outputs]").innerText()).includes("<script>"));
  await page.click("button[data-tab=chat]");
  assert.ok((await page.locator("[data-testid=chat]").innerText()).includes(XSS));
  await page.goto(`${base}/#/experiments/${ids.experiment}`);
  await page.locator("tr.trace-row").first().waitFor();
  await page.waitForTimeout(300);
  assert.equal(await page.locator("main img").count(), 0);
  assert.equal(await page.locator("main script").count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(dialogs, 0);
});

test("tags are added and removed, and selected traces are deleted", async () => {
  await page.goto(`${base}/#/experiments/${ids.experiment}`);
  await page.locator(`tr[data-trace-id="${ids.doomed}"]`).waitFor();
  await page.check(`tr[data-trace-id="${ids.medium}"] input[type=checkbox]`);
  await page.fill("input[name=tag-key]", "reviewed");
  await page.fill("input[name=tag-value]", "yes");
  await page.click("text=Add tag");
  await page.locator(`tr[data-trace-id="${ids.medium}"] .chip`, { hasText: "reviewed=yes" }).waitFor();
  const info = await call("GET", `/api/3.0/mlflow/traces/${ids.medium}`);
  assert.equal(info.trace.trace_info.tags.reviewed, "yes");

  await openTrace(ids.medium);
  await page.click(".tags [aria-label='Remove tag reviewed']");
  await page.waitForFunction(() => !document.querySelector(".tags [data-tag=reviewed]"));
  const after = await call("GET", `/api/3.0/mlflow/traces/${ids.medium}`);
  assert.equal(after.trace.trace_info.tags.reviewed, undefined);

  await page.goto(`${base}/#/experiments/${ids.experiment}`);
  await page.locator(`tr[data-trace-id="${ids.doomed}"]`).waitFor();
  await page.check(`tr[data-trace-id="${ids.doomed}"] input[type=checkbox]`);
  await page.click("button:has-text('Delete 1')");
  await page.click("button:has-text('Really delete')");
  await page.waitForFunction((id) => !document.querySelector(`tr[data-trace-id="${id}"]`), ids.doomed);
  const response = await fetch(`${base}/api/3.0/mlflow/traces/${ids.doomed}`);
  assert.equal(response.status, 404);
});

test("sessions group a conversation in order", async () => {
  await page.goto(`${base}/#/experiments/${ids.demo}/sessions`);
  const row = page.locator("tr.session-row[data-session='session-demo-1']");
  await row.waitFor();
  assert.equal(await row.locator("td").nth(1).innerText(), "3");
  await row.locator("a").click();
  await page.locator(".session-turn").first().waitFor();
  const turns = await page.locator(".session-turn .msg.user .text").allInnerTexts();
  assert.deepEqual(turns, ["How do refunds work?", "When will my order ship?", "Thanks!"]);
  await shot("session");
});

test("narrow windows and dark mode", async () => {
  const narrow = await browser.newPage({ viewport: { width: 600, height: 900 }, colorScheme: "dark" });
  await narrow.goto(`${base}/#/traces/${ids.medium}`);
  await narrow.locator(".trace-page[data-ready]").waitFor();
  const background = await narrow.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, "rgb(22, 24, 29)");
  const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await shot("trace-narrow-dark", narrow);
  await narrow.close();
});

test("time to first paint of a trace (measured, printed, not asserted)", async () => {
  const figures = {};
  for (const [label, traceId, spans] of [["1k", ids.medium, 1001], ["100k", ids.big, 100001]]) {
    const runs = [];
    for (let run = 0; run < 3; run++) {
      const fresh = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await fresh.goto(`${base}/#/traces/${traceId}`);
      await fresh.locator(".trace-page[data-ready]").waitFor({ timeout: 60000 });
      runs.push(await fresh.evaluate(() => window.__traceReadyAt));
      await fresh.close();
    }
    runs.sort((a, b) => a - b);
    figures[label] = { spans, median_ms: Math.round(runs[1]), runs_ms: runs.map(Math.round) };
    console.log(`time to first paint, ${spans}-span trace: median ${Math.round(runs[1])} ms (runs ${runs.map(Math.round).join(", ")})`);
  }
  figures.ratio_100k_to_1k = +(figures["100k"].median_ms / figures["1k"].median_ms).toFixed(1);
  writeFileSync(join(artifacts, "first-paint.json"), JSON.stringify({ server: binary, ...figures }, null, 2));
  assert.ok(figures["100k"].median_ms > 0);
});

test("no script error happened on any page", () => {
  assert.deepEqual(pageErrors, []);
});
