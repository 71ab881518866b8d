// The browser-test harness: starts the real server binary on a random port
// with a fresh data folder and an organiser account, launches Debian's
// Chromium through playwright-core, and reads the emails the server writes
// as .eml files. Anything missing (binary, Chromium) is an error, never a skip.
// Every page is watched: an uncaught error, a console error, an unexpected
// HTTP error or a visible error message fails the test that opened it.

import { spawn, execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, afterEach, before } from "node:test";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));

export const ORGANISER = { email: "organiser@staffroom.test", name: "Olu Organiser", password: "organiser-password-1" };

export const CHROMIUM = process.env.STAFFROOM_CHROMIUM || "/usr/bin/chromium";

function serverBinary() {
  const bin = process.env.STAFFROOM_BIN || path.resolve(here, "../../target/debug/staffroom");
  if (!existsSync(bin)) {
    throw new Error(`the staffroom binary is missing at ${bin}: run \`cargo build\` or set STAFFROOM_BIN`);
  }
  return bin;
}

/**
 * Starts a fresh server. Resolves to { url, dataDir, outbox, stop() }.
 */
export async function spawnApp() {
  const bin = serverBinary();
  const dataDir = mkdtempSync(path.join(tmpdir(), "staffroom-browser-"));
  const env = {
    ...process.env,
    STAFFROOM_DATA_DIR: dataDir,
    STAFFROOM_ADDR: "127.0.0.1:0",
    STAFFROOM_RTC_PORT: "0",
    STAFFROOM_MAIL_POLL_MS: "100",
    RUST_LOG: process.env.RUST_LOG || "warn",
  };
  // Settings may come from the environment of whoever runs the tests; these must not leak in.
  for (const key of ["STAFFROOM_DATABASE_URL", "STAFFROOM_SMTP_HOST", "STAFFROOM_PUBLIC_URL", "STAFFROOM_WEB_DIR"]) delete env[key];
  await promisify(execFile)(
    bin,
    ["create-organiser", "--email", ORGANISER.email, "--name", ORGANISER.name, "--password", ORGANISER.password],
    { env },
  );
  const child = spawn(bin, [], { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the server did not start within 20s:\n${out}\n${log}`)), 20000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/open (http:\/\/[^\s/]+)\/?/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code} before starting:\n${out}\n${log}`));
    });
  });
  return {
    url,
    dataDir,
    outbox: path.join(dataDir, "outbox-files"),
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Launches headless Chromium (Debian's, not a downloaded one) with a
 * throwaway profile. `extraArgs` adds switches (the media tests' fake camera).
 */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: install Debian's chromium package or set STAFFROOM_CHROMIUM`);
  }
  // playwright-core refuses a --user-data-dir argument for launch(); it gives
  // every launch a fresh profile folder in the temp directory itself and
  // removes it on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
  // Every page of every context is watched, however a test opens it
  // (`browser.newPage()` makes its context through `newContext` too).
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (...args) => {
    const context = await newContext(...args);
    context.on("page", watch);
    return context;
  };
  return browser;
}

// ---------------------------------------------------------------- watching pages

/**
 * How the pages show that something went wrong: `say(…, "error")` and the
 * room's banner (`.status-error`), the header's failure notice
 * (`.notice-error`), a field's message (`.field-error`).
 */
const ERROR_BANNERS = ".status-error, .notice-error, .field-error";

/**
 * Text no page should show: the messages of a failed load, and what a
 * missing value turns into when it is printed (`append(null)` writes "null").
 */
const ERROR_TEXT = [
  /Something went wrong/,
  /could not be (loaded|reached|made|played|started)/,
  // Glued to what follows, as an appended null is: "nullRegister".
  /(?<![A-Za-z])(null|undefined|NaN)(?![a-z])/,
  /\[object Object\]/,
];

/** Pages opened during the running test, checked and closed after it. */
const opened = new Set();

/**
 * Collects what goes wrong on `page`: uncaught errors, console errors, and
 * HTTP errors the test did not expect. `page.pageErrors` keeps the uncaught
 * errors alone (tests assert on it); `checkPage` reports everything.
 */
function watch(page) {
  if (page.problems) return;
  page.problems = [];
  page.pageErrors = [];
  // Signed out, `/api/me` answers 401 by design (app.js `currentUser` reads it as "nobody").
  page.expected = { http: [[401, /^\/api\/me$/]], banners: [] };
  opened.add(page);
  page.on("pageerror", (e) => {
    page.pageErrors.push(e);
    page.problems.push(`uncaught error on ${page.url()}: ${e.stack || e}`);
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // Chromium's network log repeats every 4xx/5xx answer as "Failed to load
    // resource"; the answer itself is judged below, with its address.
    if (/^Failed to load resource: the server responded with a status of \d+/.test(text)) return;
    const where = message.location()?.url || page.url();
    page.problems.push(`console error on ${where}: ${text}`);
  });
  page.on("response", (response) => {
    const status = response.status();
    if (status < 400) return;
    const url = new URL(response.url());
    const expected = status < 500 && page.expected.http.some(([s, p]) => s === status && p.test(url.pathname));
    if (!expected) page.problems.push(`HTTP ${status} for ${response.request().method()} ${url.pathname}${url.search} on ${page.url()}`);
  });
  page.on("crash", () => page.problems.push(`the page crashed on ${page.url()}`));
  page.setDefaultTimeout(15000);
  // Leaving a page ends a step: what it shows is checked before it goes.
  for (const name of ["goto", "reload"]) {
    const original = page[name].bind(page);
    page[name] = async (...args) => {
      await checkPage(page, `before ${name === "goto" ? `going to ${args[0]}` : "reloading"}`);
      const answer = await original(...args);
      page.expected.banners = [];
      return answer;
    };
  }
}

/**
 * Lets `page` answer `status` for paths matching `pathPattern` (a test that
 * provokes a refusal on purpose); 5xx are never expected.
 */
export function expectHttpError(page, status, pathPattern) {
  page.expected.http.push([status, pathPattern]);
}

/**
 * Waits for a visible error message matching `pattern` (a test that
 * provokes it on purpose) and lets it stay until the page is left.
 */
export async function expectError(page, pattern) {
  page.expected.banners.push(pattern);
  await page.locator(ERROR_BANNERS).filter({ hasText: pattern }).first().waitFor();
}

/** The visible error messages and placeholder text on `page` that no test expected. */
async function visibleErrors(page) {
  const read = () =>
    page.evaluate((selector) => {
      const shown = (node) => node.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
      const banners = [...document.querySelectorAll(selector)].filter(shown).map((n) => n.textContent.trim()).filter(Boolean);
      return { banners, text: document.body ? document.body.innerText : "" };
    }, ERROR_BANNERS);
  let seen;
  try {
    seen = await read();
  } catch {
    // A navigation under way destroyed the context: read the page it lands on.
    await page.waitForLoadState("domcontentloaded").catch(() => {});
    seen = await read();
  }
  const allowed = (text) => page.expected.banners.some((p) => p.test(text));
  const found = seen.banners.filter((b) => !allowed(b)).map((b) => `an error message is shown on ${page.url()}: "${b}"`);
  for (const line of seen.text.split("\n")) {
    if (ERROR_TEXT.some((p) => p.test(line)) && !allowed(line)) found.push(`the page ${page.url()} shows "${line.trim()}"`);
  }
  return found;
}

/**
 * Fails when `page` has had an uncaught error, a console error or an
 * unexpected HTTP error, or shows an error message now. Tests call it after
 * a step; the helpers call it before each navigation and after each test.
 */
export async function checkPage(page, when = "now") {
  const found = [...page.problems];
  if (!page.isClosed()) found.push(...(await visibleErrors(page)));
  if (found.length) {
    page.problems.length = 0;
    throw new Error(`${when}:\n  ${[...new Set(found)].join("\n  ")}`);
  }
}

// ---------------------------------------------------------------- accessibility and layout

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** The WCAG 2.2 AA rules (and the A and 2.0/2.1 levels under them). */
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"];

/**
 * axe-core's WCAG 2.2 AA violations on the page as it is now, one line each
 * with the elements at fault. Run through `evaluate`, which the page's
 * Content-Security-Policy does not govern, rather than as a script tag.
 */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags } }).then((r) => r.violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }))), AXE_TAGS);
  return violations.map((v) => `${v.id} (${v.help}): ${v.nodes.join(", ")}`);
}

/** Elements wider than the viewport, for the message when a page scrolls sideways. */
export async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = window.innerWidth;
    const root = document.documentElement;
    if (root.scrollWidth <= width) return null;
    const wide = [...document.querySelectorAll("body *")]
      .filter((n) => n.getBoundingClientRect().right > width + 0.5 && n.checkVisibility())
      .slice(0, 8)
      .map((n) => `${n.tagName.toLowerCase()}${n.id ? `#${n.id}` : ""}${n.className && typeof n.className === "string" ? `.${n.className.trim().split(/\s+/).join(".")}` : ""} (right edge ${Math.round(n.getBoundingClientRect().right)})`);
    return { scrollWidth: root.scrollWidth, innerWidth: width, wide };
  });
}

/** Waits until the page's content has loaded: no region still marked busy, no request in flight. */
export async function settled(page) {
  await page.waitForLoadState("networkidle");
  await page.waitForFunction(() => !document.querySelector("[aria-busy=true]"));
}

/**
 * The checks every page state passes: no errors (`checkPage`), no axe-core
 * violations, and nothing wider than a phone's screen when the viewport is
 * narrow. `name` names the screenshot (STAFFROOM_SCREENSHOTS).
 */
export async function assertGoodPage(page, name) {
  await settled(page);
  await checkPage(page, name);
  const violations = await axeViolations(page);
  if (violations.length) throw new Error(`${name}: axe-core finds ${violations.length} WCAG 2.2 AA violations:\n  ${violations.join("\n  ")}`);
  if (page.viewportSize().width < 600) {
    const overflow = await horizontalOverflow(page);
    if (overflow) throw new Error(`${name}: the page scrolls sideways (${overflow.scrollWidth} px wide at ${overflow.innerWidth} px): ${overflow.wide.join(", ")}`);
  }
  await shot(page, name);
}

/** Checks every page the test opened, then closes their contexts so the next test starts clean. */
async function checkOpenedPages() {
  const pages = [...opened];
  opened.clear();
  const failures = [];
  for (const page of pages) {
    try {
      await checkPage(page, "at the end of the test");
    } catch (e) {
      failures.push(e.message);
    }
  }
  await Promise.all(pages.map((p) => p.context().close().catch(() => {})));
  if (failures.length) throw new Error(failures.join("\n"));
}

/** A new browser context (its own cookies) with a fixed zone and locale. */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ timezoneId: "Europe/London", locale: "en-GB", ...options });
  const page = await context.newPage();
  watch(page);
  return page;
}

/** Decodes quoted-printable text (soft line breaks, =XX bytes as UTF-8). */
export function decodeQuotedPrintable(text) {
  const joined = text.replace(/=\r?\n/g, "");
  const bytes = [];
  for (let i = 0; i < joined.length; i++) {
    const c = joined[i];
    if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(joined.slice(i + 1, i + 3))) {
      bytes.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** The text/plain part of a MIME message, decoded. */
export function plainText(eml) {
  const lines = eml.split(/\r?\n/);
  // Find a header block that declares text/plain, then read its body up to the next boundary.
  for (let i = 0; i < lines.length; i++) {
    if (!/^content-type:\s*text\/plain/i.test(lines[i])) continue;
    let encoding = "";
    let j = i;
    for (; j < lines.length && lines[j] !== ""; j++) {
      const m = lines[j].match(/^content-transfer-encoding:\s*(\S+)/i);
      if (m) encoding = m[1].toLowerCase();
    }
    const body = [];
    for (j += 1; j < lines.length && !lines[j].startsWith("--"); j++) body.push(lines[j]);
    const raw = body.join("\n");
    if (encoding === "quoted-printable") return decodeQuotedPrintable(raw);
    if (encoding === "base64") return Buffer.from(raw.replace(/\s+/g, ""), "base64").toString("utf8");
    return raw;
  }
  throw new Error("no text/plain part in the message");
}

function headerOf(eml, name) {
  const m = eml.match(new RegExp(`^${name}:\\s*(.*(?:\\r?\\n[ \\t].*)*)`, "im"));
  return m ? m[1].replace(/\r?\n[ \t]+/g, " ") : "";
}

/** Every email written so far, oldest first: { to, subject, text }. */
export function readOutbox(outbox) {
  if (!existsSync(outbox)) return [];
  return readdirSync(outbox)
    .filter((f) => f.endsWith(".eml"))
    .map((f) => path.join(outbox, f))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
    .map((file) => {
      const eml = readFileSync(file, "utf8");
      return { file, to: headerOf(eml, "To"), subject: headerOf(eml, "Subject"), text: plainText(eml) };
    });
}

/**
 * Waits for an email to `address` whose text contains a link to `pagePath`
 * and resolves to that link.
 */
export async function linkFromEmail(outbox, address, pagePath, timeoutMs = 15000) {
  const pattern = new RegExp(`https?://[^\\s<>"]*${pagePath.replace(/[.?]/g, "\\$&")}[^\\s<>"]*`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const mail of readOutbox(outbox)) {
      if (!mail.to.toLowerCase().includes(address.toLowerCase())) continue;
      const m = mail.text.match(pattern);
      if (m) return m[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const seen = readOutbox(outbox).map((m) => `${m.to}: ${m.subject}`);
  throw new Error(`no email to ${address} with a ${pagePath} link within ${timeoutMs}ms; outbox has:\n${seen.join("\n")}`);
}

// ---------------------------------------------------------------- media tests

/** Chromium switches for the media tests: fake camera, microphone and screen, loopback WebRTC. */
export const MEDIA_ARGS = [
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
  // The fake screen picker: getDisplayMedia picks the first screen unasked.
  "--auto-select-desktop-capture-source=Entire screen",
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it answers `{ ok: true, ... }`; the last answer is in the error. */
export async function waitFor(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last.ok) return last;
    await sleep(250);
  }
  throw new Error(`${what}: not within ${timeoutMs}ms (last: ${JSON.stringify(last)})`);
}

/** Screenshots go to STAFFROOM_SCREENSHOTS when it names a folder (never committed). */
export async function shot(page, name) {
  const folder = process.env.STAFFROOM_SCREENSHOTS;
  if (!folder) return;
  mkdirSync(folder, { recursive: true });
  await page.screenshot({ path: path.join(folder, `${name}.png`), fullPage: true });
}

/**
 * Calls the API of `app` with a bearer token (or none); resolves to the
 * parsed answer and throws, with the body, on anything but 2xx.
 */
export async function call(app, token, method, apiPath, body) {
  const r = await fetch(`${app.url}${apiPath}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${apiPath}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A bearer token for an account. */
export async function bearer(app, email, password) {
  return (await call(app, null, "POST", "/api/auth/signin", { email, password })).token;
}

/**
 * A new teacher's account, verified as a teacher does it (following the
 * link in the emailed file through /api/auth/verify: registering, joining
 * and the record need a confirmed address); resolves to its token.
 */
export async function signUp(app, name, email, password = "a-long-password") {
  const { token } = await call(app, null, "POST", "/api/auth/signup", { name, email, password, school: "Hillside Primary", stage: "teacher" });
  const link = await linkFromEmail(app.outbox, email, "/verify.html?token=");
  await call(app, null, "POST", "/api/auth/verify", { token: new URL(link).searchParams.get("token") });
  return token;
}

/** A published hour-long webinar, by default starting in ten minutes (its room is open). */
export function createSession(app, organiserToken, title, { description = "A live webinar.", startsInMs = 10 * 60000 } = {}) {
  const starts = new Date(Date.now() + startsInMs);
  return call(app, organiserToken, "POST", "/api/sessions", {
    title,
    description,
    kind: "webinar",
    series: null,
    subject: null,
    phase: "all",
    audiences: ["teacher"],
    presenters: [],
    starts_at: starts.toISOString(),
    ends_at: new Date(starts.getTime() + 3600000).toISOString(),
    capacity: 30,
    status: "published",
  });
}

/** A page signed in through the API (the cookie lands in the page's context). */
export async function signedInPage(app, browser, email, password, options) {
  const page = await newPage(browser, options);
  const r = await page.request.post(`${app.url}/api/auth/signin`, { data: { email, password } });
  if (r.status() !== 200) throw new Error(`signing in ${email}: ${r.status()} ${await r.text()}`);
  return page;
}

/** A new teacher, registered for `sessionId`, on a signed-in page. */
export async function registeredTeacher(app, browser, name, email, sessionId, options) {
  const token = await signUp(app, name, email);
  await call(app, token, "POST", `/api/sessions/${sessionId}/registration`);
  return signedInPage(app, browser, email, "a-long-password", options);
}

/**
 * Starts a fresh server and Chromium (with `browserArgs`) before the file's
 * tests and stops both after them; `ready(app, browser)` hands them to the file.
 * After each test every page it opened is checked (`checkPage`) and closed.
 */
export function serverAndBrowser(browserArgs, ready) {
  let app;
  let browser;
  before(async () => {
    app = await spawnApp();
    browser = await launchBrowser(browserArgs);
    ready(app, browser);
  });
  afterEach(checkOpenedPages);
  after(async () => {
    await browser?.close();
    await app?.stop();
  });
}
