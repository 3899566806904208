// A line protocol over stdin/stdout between tests/src/browser.rs and Debian's
// Chromium, through playwright-core (which downloads no browser). Each request is one
// JSON line {id, op, ...}; each answer one JSON line {id, ok, value} or {id, ok: false,
// error}. The Rust test holds the logic; this only translates.
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(process.env.ROOST_DRIVER_MODULES + "/");
const { chromium } = require("playwright-core");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let context = null;
let page = null;

const ops = {
  async launch(m) {
    context = await chromium.launchPersistentContext(m.userDataDir, {
      executablePath: m.executable,
      headless: true,
      args: [...FLAGS, `--ignore-certificate-errors-spki-list=${m.spki}`],
      viewport: { width: m.width, height: m.height },
      timeout: 60000,
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(m.timeout || 30000);
    return context.browser() ? context.browser().version() : "chromium";
  },
  // Other processes on this machine make and remove network namespaces and veths:
  // Chromium counts each as a network change and aborts the navigation in flight
  // (net::ERR_NETWORK_CHANGED). That one error is retried; any other is not.
  async goto(m) {
    for (let i = 0; ; i++) {
      try {
        const r = await page.goto(m.url, { waitUntil: "load" });
        return { status: r ? r.status() : 0, url: page.url() };
      } catch (e) {
        // A redirect the page made itself (to /login, say) ends this navigation in
        // another: where the page ended up is the answer (the tests check the path).
        if (/interrupted by another navigation/.test(String(e.message))) {
          await page.waitForLoadState("load");
          return { status: 0, url: page.url() };
        }
        const changed = /ERR_NETWORK_CHANGED|chrome-error:/.test(String(e.message));
        if (i >= 4 || !changed) throw e;
      }
    }
  },
  async url() {
    return page.url();
  },
  async wait(m) {
    await page.waitForSelector(m.selector, { state: m.state || "visible", timeout: m.timeout });
    return true;
  },
  // Polled through evaluate (DevTools), not waitForFunction: the console's CSP
  // forbids the eval() that waitForFunction does inside the page.
  async waitFn(m) {
    const end = Date.now() + (m.timeout || 30000);
    for (;;) {
      if (await page.evaluate(m.expr)) return true;
      if (Date.now() > end) throw new Error(`not true within ${m.timeout} ms: ${m.expr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  async waitUrl(m) {
    await page.waitForURL((u) => u.pathname === m.path, { timeout: m.timeout });
    return page.url();
  },
  async click(m) {
    await page.click(m.selector);
    return true;
  },
  async fill(m) {
    await page.fill(m.selector, m.value);
    return true;
  },
  async focus(m) {
    await page.focus(m.selector);
    return true;
  },
  async press(m) {
    await page.keyboard.press(m.key);
    return true;
  },
  async type(m) {
    await page.keyboard.type(m.text);
    return true;
  },
  // Walk the page with Tab alone: which of its focusable controls the keyboard
  // reaches, and which it never reaches. Controls are named by tag, label or text,
  // link target and id (not by node: a live page may redraw during the walk).
  async tabWalk(m) {
    const name = () => {
      window.__kbdName = (e) =>
        `${e.tagName.toLowerCase()} "${(e.getAttribute("aria-label") || e.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60)}"` +
        `${e.getAttribute("href") ? " -> " + e.getAttribute("href") : ""}${e.id ? " #" + e.id : ""}`;
      const sel = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
      return [...new Set([...document.querySelectorAll(sel)].filter((e) => e.getClientRects().length > 0).map(window.__kbdName))];
    };
    const all = await page.evaluate(name);
    const reached = new Set();
    for (let i = 0; i < m.max && all.some((x) => !reached.has(x)); i++) {
      await page.keyboard.press("Tab");
      const k = await page.evaluate(() => {
        const e = document.activeElement;
        return e && e !== document.body && window.__kbdName ? window.__kbdName(e) : null;
      });
      if (k) reached.add(k);
    }
    return { total: all.length, reached: all.filter((x) => reached.has(x)).length, missed: all.filter((x) => !reached.has(x)) };
  },
  async eval(m) {
    return await page.evaluate(m.expr);
  },
  async screenshot(m) {
    await page.screenshot({ path: m.path, fullPage: false });
    return m.path;
  },
  async clearCookies() {
    await context.clearCookies();
    return true;
  },
  async close() {
    if (context) await context.close();
    context = null;
    return true;
  },
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let m;
  try {
    m = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad request line: ${e.message}` }) + "\n");
    continue;
  }
  let answer;
  try {
    const f = ops[m.op];
    if (!f) throw new Error(`unknown op ${m.op}`);
    const value = await f(m);
    answer = { id: m.id, ok: true, value: value === undefined ? null : value };
  } catch (e) {
    answer = { id: m.id, ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (m.op === "close") break;
}
if (context) await context.close();
process.exit(0);
