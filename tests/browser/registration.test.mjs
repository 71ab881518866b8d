// A teacher's path: sign up, confirm the address from the email, find a
// session on the programme, register; and a second teacher meets the waiting list.

import { test } from "node:test";
import assert from "node:assert/strict";
import { newPage, linkFromEmail, ORGANISER, serverAndBrowser } from "./helpers.mjs";

let app;
let browser;
serverAndBrowser([], (a, b) => ([app, browser] = [a, b]));

/** Calls the API as the organiser (bearer token, so no CSRF header is needed). */
async function asOrganiser(path, body) {
  const signin = await fetch(`${app.url}/api/auth/signin`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ORGANISER.email, password: ORGANISER.password }),
  });
  assert.equal(signin.status, 200, await signin.clone().text());
  const { token } = await signin.json();
  const response = await fetch(`${app.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  assert.ok(response.ok, `${path}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

function session(title, audiences, daysAhead, capacity) {
  const starts = new Date(Date.now() + daysAhead * 86400000);
  starts.setUTCHours(16, 0, 0, 0);
  return {
    title,
    description: `About ${title}.`,
    kind: "webinar",
    series: "Early Career Framework",
    subject: null,
    phase: "all",
    audiences,
    presenters: [],
    starts_at: starts.toISOString(),
    ends_at: new Date(starts.getTime() + 3600000).toISOString(),
    capacity,
    status: "published",
  };
}

async function signUp(page, { name, email }) {
  await page.goto(`${app.url}/signup.html`);
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email address").fill(email);
  await page.getByLabel("Password").fill("a-long-password");
  await page.getByLabel("School or organisation").fill("Hillside Primary");
  await page.getByLabel("Where you are in your career").selectOption("ect");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/my\.html$/);
}

test("a new teacher signs up, follows the verification link, finds a session by audience, registers, and a second teacher sees their waiting-list position when it is full", async () => {
  const wanted = await asOrganiser("/api/sessions", session("Behaviour that lets learning happen", ["ect", "trainee"], 10, 1));
  await asOrganiser("/api/sessions", session("Leading a department through change", ["leaders"], 5, 50));

  // Sign up, then follow the verification link from the email.
  const page = await newPage(browser);
  await signUp(page, { name: "Ada Teacher", email: "ada@school.test" });
  await page.getByText("Please confirm your email address").waitFor();
  const verifyLink = await linkFromEmail(app.outbox, "ada@school.test", "/verify.html?token=");
  await page.goto(verifyLink);
  await page.getByText("ada@school.test is confirmed").waitFor();

  // Find the session on the programme by filtering by audience.
  await page.goto(`${app.url}/index.html`);
  const cards = page.locator("#sessions .session-card");
  await page.getByRole("link", { name: "Leading a department through change" }).waitFor();
  assert.equal(await cards.count(), 2);
  await page.getByLabel("Audience").selectOption({ label: "Early-career teachers" });
  await page.waitForURL(/audience=ect/);
  await page.waitForFunction(() => document.querySelectorAll("#sessions .session-card").length === 1);
  assert.equal(await page.getByRole("link", { name: "Leading a department through change" }).count(), 0);
  assert.match(await cards.first().innerText(), /1 place left/);
  await page.getByRole("link", { name: "Behaviour that lets learning happen" }).click();
  await page.waitForURL(new RegExp(`/session\\.html\\?id=${wanted.id}$`));

  // Register, and see it on the session page and in My sessions.
  await page.getByRole("button", { name: "Register" }).click();
  const panel = page.locator(".register-panel");
  await panel.getByText("Registered", { exact: true }).waitFor();
  await panel.getByRole("button", { name: "Cancel my place" }).waitFor();
  await page.getByRole("link", { name: "My sessions" }).click();
  await page.waitForURL(/\/my\.html$/);
  const mine = page.locator("#sessions .session-card", { hasText: "Behaviour that lets learning happen" });
  await mine.getByText("Registered", { exact: true }).waitFor();

  // The session is now full: a second teacher gets a place on the waiting list.
  const second = await newPage(browser);
  await signUp(second, { name: "Ben Second", email: "ben@school.test" });
  await second.goto(await linkFromEmail(app.outbox, "ben@school.test", "/verify.html?token="));
  await second.getByText("ben@school.test is confirmed").waitFor();
  await second.goto(`${app.url}/session.html?id=${wanted.id}`);
  await second.getByText("Full: join the waiting list").waitFor();
  await second.getByRole("button", { name: "Join the waiting list" }).click();
  await second.locator(".register-panel").getByText("Waiting list: position 1").waitFor();
  await second.goto(`${app.url}/my.html`);
  await second.getByText("Waiting list: position 1").waitFor();

  assert.deepEqual(page.pageErrors.map(String), []);
  assert.deepEqual(second.pageErrors.map(String), []);
});
