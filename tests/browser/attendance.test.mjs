// The organiser's attendance report on the session page: the table, the
// people-present chart, the threshold and the CSV. The room's records are
// written straight into the server's SQLite file (with Python's standard
// sqlite3, which the mail tests already need), as the room would.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { signedInPage, call, bearer, signUp, createSession, shot, ORGANISER, serverAndBrowser } from "./helpers.mjs";

let app;
let browser;
serverAndBrowser([], (a, b) => ([app, browser] = [a, b]));

/** Runs SQL statements against the server's database. */
function sql(statements) {
  const script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()";
  execFileSync("/usr/bin/python3", ["-c", script, path.join(app.dataDir, "staffroom.db"), statements]);
}

test("the organiser sees who attended, a chart of people present, changes the threshold and downloads the CSV", async () => {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiser, "Retrieval practice");
  for (const name of ["Ann", "Ben", "Cat"]) {
    const token = await signUp(app, name, `${name.toLowerCase()}@hillside.sch.uk`);
    await call(app, token, "POST", `/api/sessions/${session.id}/registration`);
  }
  const t0 = Date.parse(session.starts_at);
  const min = 60000;
  const user = (name) => `(select id from users where email = '${name}@hillside.sch.uk')`;
  const event = (name, kind, minute, reason = null) =>
    `insert into room_events (session_id, user_id, kind, reason, at) values (${session.id}, ${user(name)}, '${kind}', ${reason ? `'${reason}'` : "null"}, ${t0 + minute * min});`;
  sql(
    [
      `update sessions set live_at = ${t0}, ended_at = ${t0 + 60 * min} where id = ${session.id};`,
      // Ann: a drop and a rejoin, 48 minutes in all; Ben: 20 minutes; Cat never came.
      event("ann", "join", 0),
      event("ann", "leave", 30, "dropped"),
      event("ann", "join", 32),
      event("ann", "leave", 50, "left"),
      event("ben", "join", 10),
      event("ben", "leave", 30, "left"),
    ].join("\n"),
  );

  const page = await signedInPage(app, browser, ORGANISER.email, ORGANISER.password);
  await page.goto(`${app.url}/organiser.html?id=${session.id}`);
  const section = page.locator("section", { has: page.getByRole("heading", { name: "Attendance" }) });
  const row = (name) => section.locator("tr", { has: page.getByRole("cell", { name, exact: true }) });
  await row("Ann").getByText("Attended").waitFor();
  assert.deepEqual(await row("Ann").locator("td.num").allTextContents(), ["48", "0", "0"]);
  await row("Ben").getByText("Partly").waitFor();
  await row("Cat").getByText("Absent").waitFor();
  assert.match(await section.innerText(), /1 attended, 1 partly, 1 absent; the session is scheduled for 60 minutes/);

  // The chart: one step line, labelled with the most people present.
  const chart = section.locator("svg.presence-chart");
  assert.equal(await chart.getAttribute("role"), "img");
  assert.match(await chart.getAttribute("aria-label"), /at most 2/);
  const d = await chart.locator("path").getAttribute("d");
  // 0:00 Ann, 0:10 Ben, 0:30 both gone, 0:32 Ann back, 0:50 gone.
  assert.equal((d.match(/ V /g) || []).length, 5, d);
  const box = await chart.boundingBox();
  assert.ok(box.width > 200 && box.height > 30, JSON.stringify(box));
  await shot(page, "organiser-attendance");

  // Raising the threshold to 90 % makes Ann's 48 of 60 minutes partly.
  const threshold = section.getByLabel("Attended from");
  assert.equal(await threshold.inputValue(), "75");
  await threshold.fill("90");
  await section.getByRole("button", { name: "Save" }).click();
  await section.getByText("Attended now means at least 90 % of the session.").waitFor();
  await row("Ann").getByText("Partly").waitFor();
  // The change is a correction of the settled results, listed with who made it.
  await section.getByText(/changed the threshold from 75 % to 90 %, and the results were settled again\.$/).waitFor();
  assert.match(await section.innerText(), /Settled .*: these are the results the participants' records and certificates use\./);
  // The page refuses 0 before it is sent (the API's 422 is tested in tests/api).
  await threshold.fill("0");
  assert.equal(await threshold.evaluate((input) => input.validity.valid), false);

  // The CSV link serves the same rows to the signed-in organiser.
  const href = await section.getByRole("link", { name: "Download CSV" }).getAttribute("href");
  const csv = await (await page.request.get(`${app.url}${href}`)).text();
  const lines = csv.trim().split("\n");
  assert.equal(lines[0], "name,school,joined_at,left_at,minutes_live,minutes_in_groups,minutes_replayed,status,how");
  assert.match(lines[1], /^Ann,Hillside Primary,.*,48,0,0,partly,live$/);
  assert.match(lines[3], /^Cat,Hillside Primary,,,0,0,0,absent,$/);

  // Ann finds the session in her own CPD record, with the time credited.
  const ann = await signedInPage(app, browser, "ann@hillside.sch.uk", "a-long-password");
  await ann.goto(`${app.url}/my.html`);
  const record = ann.locator("section", { has: ann.getByRole("heading", { name: "My CPD record" }) });
  await record.getByText("48 min of CPD from 1 session.").waitFor();
  const entry = record.locator("tr", { has: ann.getByRole("link", { name: "Retrieval practice" }) });
  assert.equal(await entry.locator("td.num").textContent(), "48 min");
  assert.match(await entry.textContent(), /Live \(partly\)/, "partly, at the 90 % threshold set above");
  // Cat, who never came, has an empty record that says what will appear.
  const cat = await signedInPage(app, browser, "cat@hillside.sch.uk", "a-long-password");
  await cat.goto(`${app.url}/my.html`);
  await cat.getByText("Sessions you attend, live or by watching the replay, appear here").waitFor();
});
