// The sign-in and sign-up forms say what is missing, all at once, before
// anything is sent; and the watch every test keeps on its pages (helpers.mjs)
// does fail a page that goes wrong.

import { test } from "node:test";
import assert from "node:assert/strict";
import { checkPage, expectError, expectHttpError, newPage, serverAndBrowser, settled, waitFor } from "./helpers.mjs";

let app;
let browser;
serverAndBrowser([], (a, b) => ([app, browser] = [a, b]));

/** The visible field messages, in page order. */
const fieldErrors = (page) => page.locator(".field-error:visible").allTextContents();

/** Counts the page's requests to `path`. */
function requestsTo(page, path) {
  const seen = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === path) seen.push(r.method());
  });
  return seen;
}

test("an empty sign-in asks for the email address and password instead of calling them wrong, and only a real attempt reaches the server", async () => {
  const page = await newPage(browser);
  const signins = requestsTo(page, "/api/auth/signin");
  await page.goto(`${app.url}/signin.html`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectError(page, /^Enter your email address and password to sign in\.$/);
  assert.deepEqual(await fieldErrors(page), ["Enter your email address.", "Enter your password."]);
  assert.equal(await page.evaluate(() => document.activeElement.id), "email");
  assert.equal(await page.getByLabel("Email address").getAttribute("aria-invalid"), "true");

  await page.getByLabel("Email address").fill("ann@school.test");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectError(page, /^Enter your password to sign in\.$/);
  assert.deepEqual(await fieldErrors(page), ["Enter your password."]);
  assert.deepEqual(signins, [], "nothing was sent");

  // A password that is wrong is the server's to say.
  expectHttpError(page, 401, /^\/api\/auth\/signin$/);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectError(page, /^The email or password is wrong\.$/);
  assert.deepEqual(await fieldErrors(page), []);
  assert.deepEqual(signins, ["POST"]);
});

test("sign-up shows every field's error at once, then creates the account once they are put right", async () => {
  const page = await newPage(browser);
  const signups = requestsTo(page, "/api/auth/signup");
  await page.goto(`${app.url}/signup.html`);
  await page.getByLabel("Email address").fill("ann-at-hillside");
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expectError(page, /^Please check the 3 highlighted fields\.$/);
  assert.deepEqual(await fieldErrors(page), [
    "Enter your name.",
    "Enter an email address like name@school.org.",
    "The password must be at least 8 characters.",
  ]);
  assert.equal(await page.evaluate(() => document.activeElement.id), "name");
  assert.deepEqual(signups, [], "nothing was sent");

  await page.getByLabel("Your name").fill("Ann Teacher");
  await page.getByLabel("Email address").fill("ann@hillside.sch.uk");
  await page.getByLabel("Password").fill("a-long-password");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/my\.html$/);
  assert.deepEqual(await fieldErrors(page), []);
  assert.deepEqual(signups, ["POST"]);
});

test("the watch on every page fails it for an uncaught error, a console error, an error message or a printed null", async () => {
  const page = await newPage(browser);
  await page.goto(`${app.url}/index.html`);
  await settled(page);
  await checkPage(page, "a page that is fine");

  await page.evaluate(() => {
    setTimeout(() => {
      throw new Error("thrown by the test");
    });
    console.error("logged by the test");
  });
  await waitFor("both noticed", async () => ({ ok: page.problems.length === 2, problems: page.problems }), 5000);
  await assert.rejects(checkPage(page), (e) => /uncaught error.*thrown by the test/.test(e.message) && /console error.*logged by the test/.test(e.message));

  const shown = await page.evaluateHandle(() => document.body.appendChild(Object.assign(document.createElement("p"), { className: "status status-error", textContent: "Shown by the test." })));
  await assert.rejects(checkPage(page), /an error message is shown .*"Shown by the test\."/);
  await shown.evaluate((node) => {
    node.className = "";
    node.textContent = "Your place: nullRegister";
  });
  await assert.rejects(checkPage(page), /shows "Your place: nullRegister"/);
  await shown.evaluate((node) => node.remove());
  await checkPage(page, "once they are gone");
});
