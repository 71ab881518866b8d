// Calendar subscriptions on My sessions, and the live counts of a batch of
// invitations on the organiser's page.

import { test } from "node:test";
import assert from "node:assert/strict";
import { assertGoodPage, bearer, call, createSession, ORGANISER, registeredTeacher, serverAndBrowser, signedInPage } from "./helpers.mjs";

let app;
let browser;
serverAndBrowser([], (a, b) => ([app, browser] = [a, b]));

test("My sessions gives a private calendar address with a webcal link, and Reset link replaces it so the old one answers 404", async () => {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiser, "Retrieval practice that sticks", { startsInMs: 3 * 86400000 });
  for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
    const email = `cal${viewport.width}@school.test`;
    const page = await registeredTeacher(app, browser, "Cal Teacher", email, session.id, { viewport });
    await page.goto(`${app.url}/my.html`);
    await page.getByRole("heading", { name: "Add your sessions to your calendar" }).waitFor();
    const address = page.getByLabel("Staffroom: my sessions");
    const first = await address.inputValue();
    assert.match(first, /\/calendar\/[0-9a-f]{64}\.ics$/);
    const subscribe = page.getByRole("link", { name: "Subscribe" });
    assert.equal(await subscribe.getAttribute("href"), first.replace(/^https?:/, "webcal:"));
    await page.getByText("How to subscribe in Outlook or Google Calendar").click();
    await page.getByText("Subscribe from web").waitFor();
    await assertGoodPage(page, `my-calendar-${viewport.width}`);

    // The address is what a calendar app fetches: this person's session is in it.
    const feed = await fetch(first);
    assert.equal(feed.status, 200);
    assert.match(feed.headers.get("content-type"), /^text\/calendar/);
    assert.match(await feed.text(), /SUMMARY:Retrieval practice that sticks/);

    await page.getByRole("button", { name: "Reset link" }).click();
    await page.getByText("the old address no longer works").waitFor();
    const second = await address.inputValue();
    assert.notEqual(second, first);
    assert.equal((await fetch(first)).status, 404);
    assert.equal((await fetch(second)).status, 200);
    await page.reload();
    await page.getByRole("heading", { name: "Add your sessions to your calendar" }).waitFor();
    assert.equal(await page.getByLabel("Staffroom: my sessions").inputValue(), second, "the new address is kept");
  }
});

test("the organiser's page counts invitations sent, waiting and failed while a batch goes out, up to all sent", async () => {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiser, "A big invitation round", { startsInMs: 7 * 86400000 });
  const page = await signedInPage(app, browser, ORGANISER.email, ORGANISER.password);
  await page.goto(`${app.url}/organiser.html?id=${session.id}`);
  // 40 invitations at the default pace (480 a minute for invitations) take about five seconds.
  const addresses = Array.from({ length: 40 }, (_, i) => `invitee${i}@school.test`).join("\n");
  await page.getByLabel("Email addresses").fill(addresses);
  await page.getByRole("button", { name: "Send invitations" }).click();
  await page.getByText("40 invitations on the way").waitFor();

  // Counts part-way: some sent, some still waiting, and always all 40 accounted for.
  const counts = () =>
    page.evaluate(() => {
      const n = (cls) => Number(document.querySelector(`.progress-counts .${cls}`)?.textContent.match(/\d+/)?.[0] ?? NaN);
      return { sent: n("sent"), queued: n("queued"), failed: n("failed") };
    });
  await page.waitForFunction(() => {
    const n = (cls) => Number(document.querySelector(`.progress-counts .${cls}`)?.textContent.match(/\d+/)?.[0] ?? NaN);
    return n("sent") > 0 && n("queued") > 0;
  }, null, { timeout: 20000, polling: 50 });
  const midway = await counts();
  assert.equal(midway.sent + midway.queued + midway.failed, 40, JSON.stringify(midway));
  assert.ok(await page.locator(".progress progress").evaluate((p) => p.value > 0 && p.value < p.max));

  await page.locator(".progress[data-done=true]").waitFor({ timeout: 30000 });
  await page.getByText("All 40 invitations sent.").waitFor();
  assert.deepEqual(await counts(), { sent: 40, queued: 0, failed: 0 });
  const batches = await call(app, organiser, "GET", `/api/sessions/${session.id}/invitations`);
  assert.deepEqual(batches[0].progress, { queued: 0, sent: 40, failed: 0 });
});
