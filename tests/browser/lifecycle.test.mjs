// A session's whole life as each person meets it. Before it: the presenter
// finds it under Presenting with the way backstage, the organiser links into
// the room and makes co-hosts. A host then takes the room live, records, and
// ends it for everyone over the signalling WebSocket (the real path, as the
// room page does). After it, at 1280×800 and 390×844, with helpers.mjs
// failing on any page error and axe-core on any WCAG 2.2 AA violation: the
// teacher who attended, the one who missed it, the presenter and the
// organiser each see it as over (no Join, no Cancel, no reminders, no
// invitations), with the replay and the reflection where they belong; the
// programme lists it under Past. And an organiser publishing a date already
// past is asked first.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MEDIA_ARGS, ORGANISER, assertGoodPage, bearer, call, expectError, expectHttpError, serverAndBrowser, signUp, signedInPage, waitFor } from "./helpers.mjs";

let app;
let browser;
// The host records over the socket alone, with no camera: the recording has
// no media, so there is no single-file download to make (the media tests
// cover downloads), and the organiser's page says so.
// The fake camera and microphone: the presenter enters the room backstage.
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};
const PASSWORD = "a-long-password";
const ANN = { name: "Ann Attended", email: "ann@hillside.sch.uk" };
const BEN = { name: "Ben Missed", email: "ben@hillside.sch.uk" };
const PRIYA = { name: "Priya Presenter", email: "priya@hillside.sch.uk" };
const TITLE = "Questioning that makes everyone think";

/**
 * Opens the room's signalling socket from `page` (signed in, on a page of
 * the site) as the room page does, and waits for the welcome. Messages
 * collect in `window.roomMessages`.
 */
async function enterRoom(page, sessionId) {
  await page.evaluate(async (id) => {
    const r = await fetch(`/api/sessions/${id}/join`, { method: "POST", headers: { "x-staffroom-csrf": "1" } });
    if (!r.ok) throw new Error(`join: ${r.status} ${await r.text()}`);
    const ticket = await r.json();
    const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}${ticket.ws_path}`);
    window.roomMessages = [];
    window.roomSocket = ws;
    window.roomClosed = new Promise((resolve) => ws.addEventListener("close", (e) => resolve(e.code)));
    await new Promise((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: "join", token: ticket.token }));
      ws.onerror = () => reject(new Error("the signalling socket failed"));
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        window.roomMessages.push(m);
        if (m.type === "welcome") resolve();
      };
    });
  }, sessionId);
}

/** Sends `message` on the page's room socket and waits for a message of type `type` (and `on`, when given). */
async function sendAndAwait(page, message, type, on) {
  await page.evaluate((m) => window.roomSocket.send(JSON.stringify({ v: 1, ...m })), message);
  await page.waitForFunction(([t, o]) => window.roomMessages.some((m) => m.type === t && (o === null || m.on === o)), [type, on ?? null]);
}

const world = {};

async function makeWorld() {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const ann = await signUp(app, ANN.name, ANN.email);
  const ben = await signUp(app, BEN.name, BEN.email);
  await signUp(app, PRIYA.name, PRIYA.email);
  const starts = Date.now() + 10 * 60000; // the room is open
  const session = await call(app, organiser, "POST", "/api/sessions", {
    title: TITLE,
    description: "Cold calling, wait time and hinge questions.",
    kind: "webinar",
    phase: "all",
    audiences: ["teacher"],
    presenters: [PRIYA.email],
    starts_at: new Date(starts).toISOString(),
    ends_at: new Date(starts + 3600000).toISOString(),
    capacity: 30,
    status: "published",
  });
  for (const token of [ann, ben]) await call(app, token, "POST", `/api/sessions/${session.id}/registration`);
  Object.assign(world, { organiser, session });
}

/** A new page signed in as `who` at `size`. */
function pageFor(who, size) {
  const [email, password] = { ann: [ANN.email, PASSWORD], ben: [BEN.email, PASSWORD], priya: [PRIYA.email, PASSWORD], organiser: [ORGANISER.email, ORGANISER.password] }[who];
  return signedInPage(app, browser, email, password, { viewport: SIZES[size] });
}

// One signed-in page per person and screen for a test's page states (signing
// in hashes a password: once each is enough); the helpers close them after the test.
let signedIn = new Map();
test.beforeEach(() => (signedIn = new Map()));

/** Runs `check(page)` at `path` as `who` on both screens, then the page checks; all failures reported at once. */
async function everySize(who, path, name, check) {
  const failures = [];
  for (const size of Object.keys(SIZES)) {
    const key = `${who}-${size}`;
    if (!signedIn.has(key)) signedIn.set(key, await pageFor(who, size));
    const page = signedIn.get(key);
    try {
      await page.goto(`${app.url}${path}`);
      await check(page);
      await assertGoodPage(page, `${name}-${size}`);
    } catch (e) {
      failures.push(`${name}-${size}: ${e.message}`);
    }
  }
  assert.deepEqual(failures, []);
}

/** Whether `text` appears anywhere on the page (waiting for nothing). */
const shows = (page, text) => page.getByText(text).count().then((n) => n > 0);

test("before the session, the presenter finds it under Presenting with the way backstage, and the organiser links into the room and makes her co-host", async () => {
  await makeWorld();
  await everySize("priya", "/my.html", "lifecycle-my-presenter-before", async (page) => {
    const card = page.locator("#sessions-presenting + ul .session-card, section:has(#sessions-presenting) .session-card", { hasText: TITLE });
    await card.getByRole("link", { name: `Enter the room for ${TITLE} (backstage)` }).waitFor();
    assert.equal(await shows(page, "You have not registered for any sessions"), false);
  });
  await everySize("priya", `/session.html?id=${world.session.id}`, "lifecycle-session-presenter-before", async (page) => {
    await page.getByRole("link", { name: "Enter the room (backstage)" }).waitFor();
    await page.getByText("a host takes the room live").waitFor();
  });
  await everySize("organiser", `/organiser.html?id=${world.session.id}`, "lifecycle-organiser-before", async (page) => {
    await page.getByRole("link", { name: "Enter the room (backstage)" }).waitFor();
    await page.getByRole("button", { name: "Send invitations" }).waitFor();
  });
  // Backstage, a plain presenter is told a host takes the room live, and has no Go live.
  const priya = await pageFor("priya", "desktop");
  const backstage = async (line) => {
    await priya.goto(`${app.url}/room.html?id=${world.session.id}`);
    await priya.getByRole("button", { name: "Join with camera and mic" }).click();
    await priya.getByText(line).waitFor();
  };
  await backstage("A host takes the room live; no host is here yet.");
  assert.equal(await priya.getByRole("button", { name: "Go live" }).isVisible(), false, "a plain presenter cannot go live");
  await assertGoodPage(priya, "lifecycle-room-presenter-backstage-desktop");
  await priya.getByRole("button", { name: "Leave" }).click();
  await priya.getByRole("heading", { name: "You are out of the room" }).waitFor();

  // The co-host box changes the grant on the server.
  const page = await pageFor("organiser", "desktop");
  await page.goto(`${app.url}/organiser.html?id=${world.session.id}`);
  await page.getByLabel(`${PRIYA.name}: co-host`).check();
  await page.getByText(`${PRIYA.name} is a co-host`).waitFor();
  const session = await call(app, world.organiser, "GET", `/api/sessions/${world.session.id}`);
  assert.equal(session.presenters[0].cohost, true);
  await assertGoodPage(page, "lifecycle-organiser-cohost-desktop");

  // Back in the room, she is a co-host with the Go live button (not pressed here: the next test's host goes live).
  await backstage("You are a co-host: you (or a host) take the room live when you are ready.");
  await priya.getByRole("button", { name: "Go live" }).waitFor();
  assert.equal(await priya.getByRole("button", { name: "End session for everyone" }).isVisible(), false, "ending stays the host's");
  await priya.getByRole("button", { name: "Leave" }).click();
  await priya.getByRole("heading", { name: "You are out of the room" }).waitFor();
});

test("after a host ends the session, the teacher who attended, the one who missed it, the presenter and the organiser each see it as over", async () => {
  if (!world.session) await makeWorld();
  const id = world.session.id;
  // The host and Ann are in the room; Ben never comes.
  const host = await pageFor("organiser", "desktop");
  const ann = await pageFor("ann", "desktop");
  for (const page of [host, ann]) {
    await page.goto(`${app.url}/index.html`);
    await enterRoom(page, id);
  }
  await sendAndAwait(host, { type: "go_live" }, "phase");
  await sendAndAwait(host, { type: "record_start" }, "recording", true);
  await host.evaluate(() => window.roomSocket.send(JSON.stringify({ v: 1, type: "end_session" })));
  assert.equal(await ann.evaluate(() => window.roomClosed), 4010, "Ann is told the session ended");
  await host.context().close();
  await ann.context().close();
  await waitFor("the recording to be finished", async () => ({ ok: (await call(app, null, "GET", `/api/sessions/${id}`)).life === "settled" }));

  const over = async (page) => {
    await page.getByText("This session has ended.").waitFor();
    for (const gone of ["Join the live session", "Cancel my place", "remind you"]) assert.equal(await shows(page, gone), false, `no "${gone}" once it is over`);
  };
  await everySize("ann", `/session.html?id=${id}`, "lifecycle-session-attended", async (page) => {
    await over(page);
    await page.getByText("You attended.").waitFor();
    await page.getByRole("link", { name: "Write your reflection" }).waitFor();
    await page.getByRole("link", { name: "Watch the replay" }).first().waitFor();
  });
  await everySize("ann", "/my.html", "lifecycle-my-attended", async (page) => {
    const card = page.locator("section:has(#sessions-attended) .session-card", { hasText: TITLE });
    await card.getByRole("link", { name: `Reflect on ${TITLE}` }).waitFor();
    await card.getByRole("link", { name: `Watch the replay of ${TITLE}` }).waitFor();
    assert.equal(await page.locator("#sessions-upcoming").count(), 0, "nothing left under Coming up");
  });
  await everySize("ben", `/session.html?id=${id}`, "lifecycle-session-missed", async (page) => {
    await over(page);
    await page.getByText("You missed it live.").waitFor();
    await page.getByRole("link", { name: "Watch the replay" }).first().waitFor();
  });
  await everySize("ben", "/my.html", "lifecycle-my-missed", async (page) => {
    const card = page.locator("section:has(#sessions-missed) .session-card", { hasText: TITLE });
    await card.getByText("Missed").waitFor();
    await card.getByRole("link", { name: `Watch the replay of ${TITLE}` }).waitFor();
  });
  await everySize("priya", "/my.html", "lifecycle-my-presented", async (page) => {
    const card = page.locator("section:has(#sessions-presented) .session-card", { hasText: TITLE });
    await card.getByRole("link", { name: `Watch the replay of ${TITLE}` }).waitFor();
    assert.equal(await page.locator("#sessions-presenting").count(), 0, "nothing left under Presenting");
  });
  await everySize("priya", `/session.html?id=${id}`, "lifecycle-session-presented", async (page) => {
    await over(page);
    await page.getByText("You presented it.").waitFor();
    assert.equal(await shows(page, "Enter the room (backstage)"), false);
  });
  await everySize("organiser", `/organiser.html?id=${id}`, "lifecycle-organiser-ended", async (page) => {
    await page.locator("h1 + p .badge", { hasText: "Ended" }).waitFor();
    await page.getByRole("heading", { name: "Attendance" }).waitFor();
    const order = await page.locator("main h2").allTextContents();
    assert.ok(order.indexOf("Attendance") < order.indexOf("Recordings"), `attendance comes first: ${order}`);
    await page.getByText("Nothing was recorded: nobody was on stage while it ran.").waitFor();
    for (const gone of ["Cancel session", "Send invitations", "Edit details", "Enter the room (backstage)"]) {
      assert.equal(await shows(page, gone), false, `no "${gone}" once it is over`);
    }
  });
  await everySize("ann", "/index.html", "lifecycle-programme-past", async (page) => {
    const past = page.locator("#past-sessions .session-card", { hasText: TITLE });
    await past.getByRole("link", { name: `Replay of ${TITLE}` }).waitFor();
    assert.equal(await page.locator("#sessions .session-card", { hasText: TITLE }).count(), 0, "it has left the programme");
  });
});

test("an organiser publishing a session dated in the past is asked first, and the end before the start is named as such", async () => {
  const page = await pageFor("organiser", "phone");
  await page.goto(`${app.url}/organiser.html?new=1`);
  await page.getByLabel("Title").fill("Dated in 2020 by mistake");
  await page.getByLabel("Date", { exact: true }).fill("2020-03-02");
  await page.getByLabel(/^Starts/).fill("16:00");
  await page.getByLabel(/^Ends/).fill("09:00");
  await page.getByRole("button", { name: "Create and publish" }).click();
  await expectError(page, /Ends at 09:00, before the start at 16:00/);
  page.expected.banners.push(/before the start/);
  await page.getByLabel(/^Ends/).fill("17:00");
  // The server's refusal is what makes the page ask.
  expectHttpError(page, 422, /^\/api\/sessions$/);
  const asked = [];
  page.on("dialog", (d) => {
    asked.push(d.message());
    d.accept();
  });
  await page.getByRole("button", { name: "Create and publish" }).click();
  await page.getByRole("heading", { name: "Dated in 2020 by mistake" }).waitFor();
  assert.equal(asked.length, 1, "asked once");
  assert.match(asked[0], /has already passed/);
  await assertGoodPage(page, "lifecycle-organiser-published-past-phone");
});
