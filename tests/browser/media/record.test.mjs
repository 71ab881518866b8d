// The professional record from a teacher's side: she attends a short live
// session in the real room, is asked to reflect as she leaves, finds the
// entry in her CPD record with the minutes credited, links it to a need she
// adds, attaches evidence and downloads her certificate, which the public
// verification page confirms. The organiser sees her attendance in the
// report (chart and CSV) and never her reflection.
//
// In the media folder: the room runs inside `unshare -n` (loopback only).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { MEDIA_ARGS, ORGANISER, bearer, call, expectError, expectHttpError, registeredTeacher, serverAndBrowser, shot, signedInPage, sleep } from "../helpers.mjs";

let app;
let browser;
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

/** Time in the room: 75 % of the two scheduled minutes is 90 s. */
const STAY_MS = 100_000;

test("a teacher reflects as she leaves, finds the entry with its minutes in her record, links a need, adds evidence, shares the entry for a while and downloads a certificate that verifies (and a forged copy does not); the organiser sees attendance, not the reflection", async () => {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const starts = new Date(Date.now() + 2000);
  const session = await call(app, organiser, "POST", "/api/sessions", {
    title: "Questioning that makes pupils think",
    description: "A two-minute taster.",
    kind: "webinar",
    series: null,
    subject: null,
    phase: "all",
    audiences: ["teacher"],
    presenters: [],
    starts_at: starts.toISOString(),
    ends_at: new Date(starts.getTime() + 120_000).toISOString(),
    capacity: 30,
    status: "published",
  });

  const host = await signedInPage(app, browser, ORGANISER.email, ORGANISER.password);
  await host.goto(`${app.url}/room.html?id=${session.id}`);
  const joinWithMedia = host.getByRole("button", { name: "Join with camera and mic" });
  await joinWithMedia.waitFor();
  await host.waitForFunction(() => !document.querySelector(".prejoin button").disabled);
  await joinWithMedia.click();
  await host.getByRole("button", { name: "Go live" }).click();
  await host.getByRole("button", { name: "End session for everyone" }).waitFor();

  const ann = await registeredTeacher(app, browser, "Ann Teacher", "ann@hillside.sch.uk", session.id);
  await ann.goto(`${app.url}/session.html?id=${session.id}`);
  await ann.getByRole("link", { name: "Join the live session" }).click();
  await ann.locator("#connection[data-state=connected]").waitFor();
  await sleep(STAY_MS);

  // Leaving asks for a reflection, saved straight into her record.
  await ann.getByRole("button", { name: "Leave" }).click();
  const prompt = ann.locator("section", { has: ann.getByRole("heading", { name: "Reflect while it is fresh" }) });
  await prompt.waitFor();
  const learned = "Wait five seconds after a question before taking answers";
  await prompt.getByLabel("What did I learn?").fill(learned);
  await prompt.getByLabel("What will I change?").fill("No hands up in starters");
  await prompt.getByRole("button", { name: "Save to my CPD record" }).click();
  await prompt.getByText("Saved to your CPD record.").waitFor();
  await shot(ann, "record-reflect-on-leave");
  await prompt.getByRole("link", { name: "your CPD record" }).click();

  // The record: the entry with its credited minute, attended, live.
  await ann.waitForURL(/\/record\.html#entry-\d+$/);
  const entry = ann.locator("li.record-entry", { has: ann.getByRole("heading", { name: session.title }) });
  await entry.waitFor();
  const text = await entry.innerText();
  assert.match(text, /1 min · live/);
  assert.match(text, /Attended/);
  assert.match(await ann.locator("#total").innerText(), /1 min of CPD from 1 entry/);
  assert.equal(await entry.locator("details.record-reflection").getAttribute("open"), "", "the entry she came to is open");
  assert.equal(await entry.getByLabel("What did I learn?").inputValue(), learned);

  // A need, linked to the entry; the link survives a reload.
  await ann.locator("#goal-form").getByLabel("Add a", { exact: true }).selectOption("need");
  await ann.locator("#goal-form").getByLabel("Title").fill("Questioning");
  await ann.locator("#goal-form").getByRole("button", { name: "Add" }).click();
  await ann.getByText("Added “Questioning”.").waitFor();
  await entry.getByLabel("Questioning").check();
  await entry.getByText("Links saved.").waitFor();
  await ann.reload();
  await entry.waitFor();
  assert.equal(await entry.getByLabel("Questioning").isChecked(), true);
  assert.match(await ann.locator("#goals").innerText(), /Questioning\s+1 min/);

  // Evidence: a link, and a file; a forbidden type is refused with a reason.
  await entry.getByLabel("Add a link").fill("https://example.org/blog/wait-time");
  await entry.getByRole("button", { name: "Add link" }).click();
  await entry.getByRole("link", { name: "https://example.org/blog/wait-time" }).waitFor();
  await entry.getByLabel("Add a file").setInputFiles({ name: "starter.txt", mimeType: "text/plain", buffer: Buffer.from("Starter: think, pair, share.\n") });
  await entry.getByRole("button", { name: "Upload" }).click();
  await entry.getByRole("link", { name: "starter.txt" }).waitFor();
  // A program is refused, with the server's 415, and the page says what it takes.
  expectHttpError(ann, 415, /\/evidence\/file$/);
  await entry.getByLabel("Add a file").setInputFiles({ name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ") });
  await entry.getByRole("button", { name: "Upload" }).click();
  await expectError(ann, /Evidence files must be one of/);

  // Private until she shares it: then her mentor, not signed in, reads it by the link.
  await entry.getByRole("button", { name: "Share this entry" }).click();
  const shareUrl = await entry.getByLabel(/^Shared: anyone with this link/).inputValue();
  const mentor = await browser.newPage();
  await mentor.goto(shareUrl);
  await mentor.getByRole("heading", { name: session.title }).waitFor();
  assert.match(await mentor.locator("main").innerText(), new RegExp(`Shared from Ann Teacher's CPD record[\\s\\S]*${learned}[\\s\\S]*starter.txt`));
  assert.doesNotMatch(await mentor.locator("main").innerText(), /null|undefined/);
  await shot(mentor, "record-shared-entry");
  await entry.getByRole("button", { name: "Stop sharing" }).click();
  await entry.getByRole("button", { name: "Share this entry" }).waitFor();
  // The link is gone: the server answers 404, and the page says the link does not work.
  expectHttpError(mentor, 404, /^\/api\/shared\//);
  await mentor.reload();
  await mentor.getByRole("heading", { name: "This link does not work" }).waitFor();
  await mentor.close();

  // The certificate: once the session has ended and her attendance is
  // settled, issued in the name she confirms, downloaded, and verifiable by anyone.
  assert.match(await entry.innerText(), /still running/);
  await host.getByRole("button", { name: "End session for everyone" }).click();
  await host.getByRole("dialog", { name: "End the session for everyone?" }).getByRole("button", { name: "End session" }).click();
  await host.getByRole("heading", { name: "This session has ended" }).waitFor();
  await ann.reload();
  await entry.waitFor();
  const name = entry.getByLabel("Name on the certificate");
  assert.equal(await name.inputValue(), "Ann Teacher", "her name, prefilled");
  await name.fill("Ann Teacher-Jones");
  await entry.getByRole("button", { name: "Get my certificate" }).click();
  await ann.getByText("Your certificate is ready, in the name Ann Teacher-Jones").waitFor();
  const link = entry.getByRole("link", { name: "Download certificate" });
  const [download] = await Promise.all([ann.waitForEvent("download"), link.click()]);
  const svg = readFileSync(await download.path(), "utf8");
  assert.match(svg, /Ann Teacher-Jones/);
  assert.match(svg, /Questioning that makes pupils think/);
  assert.match(svg, /<openbadges:credential/);
  await shot(ann, "record-entry");
  await entry.getByRole("link", { name: "Verification page" }).click();
  await ann.getByText("Ann Teacher-Jones").first().waitFor();
  assert.match(await ann.locator("main").innerText(), /Questioning that makes pupils think/);
  // The downloaded file checks out; the same file with its minutes changed does not.
  await ann.getByLabel("Certificate file", { exact: true }).setInputFiles(await download.path());
  await ann.getByRole("button", { name: "Check the signature" }).click();
  await ann.getByText("signed by Staffroom and unchanged").waitFor();
  const jwt = svg.match(/verify="([^"]+)"/)[1];
  const [head, payload, signature] = jwt.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  const narrative = claims.credentialSubject.narrative;
  claims.credentialSubject.narrative = narrative.replace(/\d+ minutes?/, "600 minutes");
  assert.notEqual(claims.credentialSubject.narrative, narrative, narrative);
  const forged = [head, Buffer.from(JSON.stringify(claims)).toString("base64url"), signature].join(".");
  await ann.getByLabel("Certificate file", { exact: true }).setInputFiles([]);
  await ann.getByLabel("Or paste the credential").fill(forged);
  expectHttpError(ann, 422, /^\/api\/certificates\/verify$/);
  await ann.getByRole("button", { name: "Check the signature" }).click();
  await expectError(ann, /^Not valid: The signature does not match: the credential has been changed since it was issued\.$/);
  await shot(ann, "certificate-verification");

  // Her printable record and her own export carry the reflection.
  await ann.goto(`${app.url}/record-print.html`);
  await ann.getByText(learned).first().waitFor();
  assert.match(await ann.locator("main").innerText(), /Questioning that makes pupils think/);
  await shot(ann, "record-print");
  const exported = await (await ann.request.get(`${app.url}/api/me/record.json`)).json();
  assert.equal(exported.entries[0].reflection.learned, learned);

  // The organiser's report: Ann attended, with the chart and the CSV; her
  // reflection appears nowhere.
  const report = await signedInPage(app, browser, ORGANISER.email, ORGANISER.password);
  await report.goto(`${app.url}/organiser.html?id=${session.id}`);
  const section = report.locator("section", { has: report.getByRole("heading", { name: "Attendance" }) });
  await section.locator("tr", { has: report.getByRole("cell", { name: "Ann Teacher", exact: true }) }).getByText("Attended").waitFor();
  await section.locator("svg.presence-chart").waitFor();
  const csv = await report.request.get(`${app.url}${await section.getByRole("link", { name: "Download CSV" }).getAttribute("href")}`);
  const body = await csv.text();
  assert.match(body, /Ann Teacher/);
  assert.ok(!body.includes(learned) && !(await report.locator("main").innerText()).includes(learned));
});
