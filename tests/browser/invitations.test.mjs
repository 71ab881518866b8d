// An organiser's path: create and publish a session through the form, invite
// people by pasting addresses, watch the emails go; and an invited person
// signs up and registers from the link in their email.

import { test } from "node:test";
import assert from "node:assert/strict";
import { newPage, linkFromEmail, ORGANISER, serverAndBrowser } from "./helpers.mjs";

let app;
let browser;
serverAndBrowser([], (a, b) => ([app, browser] = [a, b]));

/** "YYYY-MM-DD", `days` from today. */
function dateAhead(days) {
  return new Date(Date.now() + days * 86400000).toISOString().slice(0, 10);
}

test("an organiser creates and publishes a session, invites pasted addresses with one bad line reported, sees all sent, and an invitee signs up and registers in one click", async () => {
  const organiser = await newPage(browser);
  await organiser.goto(`${app.url}/signin.html`);
  await organiser.getByLabel("Email address").fill(ORGANISER.email);
  await organiser.getByLabel("Password").fill(ORGANISER.password);
  await organiser.getByRole("button", { name: "Sign in" }).click();
  await organiser.waitForURL(/\/my\.html$/);

  // Create and publish a session through the form.
  await organiser.getByRole("link", { name: "Organiser" }).click();
  await organiser.getByRole("link", { name: "New session" }).click();
  await organiser.getByLabel("Title").fill("Questioning that makes everyone think");
  await organiser.getByLabel("Description").fill("Cold calling, wait time and hinge questions.\nBring a lesson plan.");
  await organiser.getByLabel("Kind").selectOption("masterclass");
  await organiser.getByLabel("Places").fill("30");
  await organiser.getByLabel("Series").fill("Early Career Framework");
  await organiser.getByLabel("Subject").fill("Pedagogy");
  await organiser.getByLabel("Audiences").fill("ect, teacher");
  await organiser.getByLabel("Date").fill(dateAhead(14));
  await organiser.getByLabel(/^Starts/).fill("16:00");
  await organiser.getByLabel(/^Ends/).fill("17:15");
  await organiser.getByRole("button", { name: "Create and publish" }).click();
  await organiser.waitForURL(/\/organiser\.html\?id=\d+$/);
  const sessionId = Number(new URL(organiser.url()).searchParams.get("id"));
  await organiser.getByText("is created and published").waitFor();
  await organiser.getByRole("heading", { level: 1, name: "Questioning that makes everyone think" }).waitFor();
  await organiser.locator(".badge", { hasText: "Published" }).waitFor();

  // It is on the public programme.
  const published = await (await fetch(`${app.url}/api/sessions`)).json();
  const listed = published.find((s) => s.id === sessionId);
  assert.ok(listed, "the new session is on the programme");
  assert.equal(listed.capacity, 30);
  assert.equal(new Date(listed.ends_at) - new Date(listed.starts_at), 75 * 60000);

  // Invite by pasting addresses; line 2 is not an address.
  await organiser
    .getByLabel("Email addresses")
    .fill("ann@school.test\nnot an address\nBen Jones <ben@school.test>\ncara@school.test");
  await organiser.getByRole("button", { name: "Send invitations" }).click();
  const rejected = organiser.locator(".report .rejected li");
  await rejected.first().waitFor();
  assert.equal(await rejected.count(), 1);
  assert.match(await rejected.first().innerText(), /^Line 2: not an address/);
  await organiser.getByText("3 invitations on the way").waitFor();

  // The progress bar reaches all sent.
  await organiser.locator(".progress[data-done=true]").waitFor();
  await organiser.getByText("All 3 invitations sent.").waitFor();
  assert.equal(await organiser.locator(".progress-counts .sent").innerText(), "Sent: 3");
  assert.equal(await organiser.locator(".progress-counts .failed").innerText(), "Failed: 0");
  assert.equal(await organiser.locator(".progress progress").evaluate((p) => [p.value, p.max].join("/")), "3/3");

  // Ben opens his invitation, signs up from the prefilled form and is registered in one click.
  const inviteLink = await linkFromEmail(app.outbox, "ben@school.test", "/invite.html?token=");
  const ben = await newPage(browser);
  await ben.goto(inviteLink);
  await ben.getByRole("heading", { name: "Ben, you are invited" }).waitFor();
  assert.equal(await ben.getByLabel("Your name").inputValue(), "Ben Jones");
  assert.equal(await ben.getByLabel("Email address").inputValue(), "ben@school.test");
  await ben.getByLabel("Choose a password").fill("bens-long-password");
  await ben.getByRole("button", { name: "Create account and register" }).click();
  await ben.getByRole("heading", { name: "You are registered" }).waitFor();
  await ben.getByText("Registered", { exact: true }).waitFor();

  // The session page agrees, and the organiser sees Ben among the registrants.
  await ben.goto(`${app.url}/session.html?id=${sessionId}`);
  await ben.locator(".register-panel").getByText("Registered", { exact: true }).waitFor();
  await organiser.reload();
  const row = organiser.locator("tr", { hasText: "ben@school.test" });
  await row.getByText("Registered").waitFor();
  assert.match(await row.innerText(), /Ben Jones/);

  assert.deepEqual(organiser.pageErrors.map(String), []);
  assert.deepEqual(ben.pageErrors.map(String), []);
});
