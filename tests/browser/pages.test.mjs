// Every page of the site (web/*.html) in its main states, for each kind of
// person who meets it (signed out, teacher, presenter, organiser), at a
// laptop's 1280×800 and a phone's 390×844: each must load without an error
// (helpers.mjs watches every page), pass axe-core's WCAG 2.2 AA rules, and
// not scroll sideways on the phone. In the room, a host's and a presenter's
// microphone and camera controls must be in view at 1280×800 without scrolling.
// The media tests cover the replay page with a real recording.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  MEDIA_ARGS,
  ORGANISER,
  assertGoodPage,
  bearer,
  call,
  createSession,
  expectHttpError,
  linkFromEmail,
  newPage,
  serverAndBrowser,
  settled,
  signUp,
  signedInPage,
} from "./helpers.mjs";

let app;
let browser;
// The room needs the fake camera and microphone; the other pages ignore them.
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

const here = path.dirname(fileURLToPath(import.meta.url));
const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};

const TEACHER = { name: "Ann Teacher", email: "ann@hillside.sch.uk" };
const PRESENTER = { name: "Priya Presenter", email: "priya@hillside.sch.uk" };
const PASSWORD = "a-long-password";

/** What the states below share: sessions, people and links from their emails. */
const world = {};

async function makeWorld() {
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const teacher = await signUp(app, TEACHER.name, TEACHER.email);
  await signUp(app, PRESENTER.name, PRESENTER.email);
  const base = {
    kind: "webinar",
    series: "Early Career Framework",
    subject: "Pedagogy",
    phase: "all",
    audiences: ["ect", "teacher"],
    presenters: [PRESENTER.email],
    capacity: 30,
    status: "published",
  };
  const at = (ms, minutes = 60) => ({ starts_at: new Date(ms).toISOString(), ends_at: new Date(ms + minutes * 60000).toISOString() });
  const upcoming = await call(app, organiser, "POST", "/api/sessions", {
    ...base,
    title: "Questioning that makes everyone think",
    description: "Cold calling, wait time and hinge questions.\nBring a lesson plan.",
    ...at(Date.now() + 3 * 86400000, 75),
  });
  // The room opens 30 minutes before the start: this one is open now.
  const open = await call(app, organiser, "POST", "/api/sessions", {
    ...base,
    title: "Retrieval practice in the first five minutes",
    description: "Low-stakes quizzing that sticks.",
    ...at(Date.now() + 10 * 60000),
  });
  await call(app, organiser, "POST", "/api/sessions", { ...base, title: "Leading a department through change", status: "draft", ...at(Date.now() + 20 * 86400000) });
  for (const s of [upcoming, open]) await call(app, teacher, "POST", `/api/sessions/${s.id}/registration`);

  // The teacher's record: a need, a course added by hand, shared by a link.
  await call(app, teacher, "POST", "/api/me/goals", { kind: "need", title: "Questioning in mixed-attainment classes" });
  const entry = await call(app, teacher, "POST", "/api/me/record/entries", {
    kind: "course",
    title: "Subject knowledge enhancement: mathematics",
    provider: "The local maths hub",
    date: new Date(Date.now() - 7 * 86400000).toISOString().slice(0, 10),
    minutes: 90,
    goal_ids: [],
  });
  const shared = await call(app, teacher, "POST", `/api/me/record/entries/${entry.id}/share`);

  // An invitation to someone without an account, with its opt-out link.
  await call(app, organiser, "POST", `/api/sessions/${upcoming.id}/invitations`, { text: "Cara Jones <cara@school.test>" });
  Object.assign(world, {
    upcoming,
    open,
    sharedToken: shared.shared_token,
    invite: await linkFromEmail(app.outbox, "cara@school.test", "/invite.html?token="),
    optOut: await linkFromEmail(app.outbox, "cara@school.test", "/opt-out.html?token="),
  });
}

/** A page for `who` ("out", "teacher", "presenter" or "organiser") at `size`. */
async function pageFor(who, size) {
  const viewport = SIZES[size];
  if (who === "out") return newPage(browser, { viewport });
  const [email, password] = {
    teacher: [TEACHER.email, PASSWORD],
    presenter: [PRESENTER.email, PASSWORD],
    organiser: [ORGANISER.email, ORGANISER.password],
  }[who];
  return signedInPage(app, browser, email, password, { viewport });
}

/**
 * Each page state: who looks, at what address, and what shows it is the
 * state meant (a heading or a control, waited for before the checks).
 */
const STATES = [
  ["index", "out", () => "/index.html", (p) => p.getByRole("link", { name: "Questioning that makes everyone think" })],
  ["index-teacher", "teacher", () => "/index.html", (p) => p.locator(".session-card", { hasText: "Questioning that makes" }).getByText("Registered")],
  ["signin", "out", () => "/signin.html", (p) => p.getByRole("button", { name: "Sign in" })],
  ["signup", "out", () => "/signup.html", (p) => p.getByRole("button", { name: "Create account" })],
  ["reset", "out", () => "/reset.html", (p) => p.getByRole("heading", { name: "Reset your password" })],
  ["verify", "out", () => "/verify.html", (p) => p.getByRole("heading", { name: "Confirm your email address" })],
  ["session", "out", () => `/session.html?id=${world.upcoming.id}`, (p) => p.getByRole("link", { name: "Create an account" })],
  ["session-teacher", "teacher", () => `/session.html?id=${world.upcoming.id}`, (p) => p.getByRole("button", { name: "Cancel my place" })],
  ["session-presenter", "presenter", () => `/session.html?id=${world.open.id}`, (p) => p.getByRole("link", { name: "Enter the room (backstage)" })],
  ["session-organiser", "organiser", () => `/session.html?id=${world.upcoming.id}`, (p) => p.getByRole("link", { name: "Manage this session" })],
  ["my-teacher", "teacher", () => "/my.html", (p) => p.locator("#sessions .session-card", { hasText: "Retrieval practice" })],
  ["my-presenter", "presenter", () => "/my.html", (p) => p.getByRole("heading", { name: "My sessions" })],
  ["my-out", "out", () => "/my.html", (p) => p.getByRole("heading", { name: "Sign in to see your sessions" })],
  ["record-teacher", "teacher", () => "/record.html", (p) => p.getByText("Subject knowledge enhancement: mathematics").first()],
  ["record-out", "out", () => "/record.html", (p) => p.getByRole("heading", { name: "Sign in to see your CPD record" })],
  ["record-print", "teacher", () => "/record-print.html", (p) => p.getByText("Subject knowledge enhancement: mathematics").first()],
  ["shared", "out", () => `/shared.html?token=${world.sharedToken}`, (p) => p.getByText("Subject knowledge enhancement: mathematics").first()],
  ["certificate", "out", () => "/certificate.html", (p) => p.getByRole("heading", { name: "Check a certificate of attendance" })],
  ["invite", "out", () => world.invite.replace(/^https?:\/\/[^/]+/, ""), (p) => p.getByRole("button", { name: "Create account and register" })],
  ["opt-out", "out", () => world.optOut.replace(/^https?:\/\/[^/]+/, ""), (p) => p.getByRole("button", { name: "Stop sending me invitations" })],
  ["organiser", "organiser", () => "/organiser.html", (p) => p.getByRole("link", { name: "New session" })],
  ["organiser-new", "organiser", () => "/organiser.html?new=1", (p) => p.getByRole("heading", { name: "New session" })],
  ["organiser-session", "organiser", () => `/organiser.html?id=${world.upcoming.id}`, (p) => p.getByRole("button", { name: "Send invitations" })],
];

test("every page of the site is in a state below, or left to the media tests", () => {
  const pages = readdirSync(path.join(here, "../../web")).filter((f) => f.endsWith(".html")).map((f) => f.replace(/\.html$/, ""));
  // A state is named after its page, with what is particular to it after a dash.
  const names = [...STATES.map(([name]) => name), "room-host", "room-presenter"]; // the room: the tests at the end
  const elsewhere = ["replay"]; // media/replay.test.mjs, with a real recording
  const uncovered = pages.filter((p) => !elsewhere.includes(p) && !names.some((n) => n === p || n.startsWith(`${p}-`)));
  assert.deepEqual(uncovered, []);
});

for (const size of Object.keys(SIZES)) {
  test(`every page state loads without errors, passes axe-core and fits the ${size} screen (${SIZES[size].width}×${SIZES[size].height})`, async () => {
    if (!world.upcoming) await makeWorld();
    // Every state is looked at, so one run tells all that is wrong.
    const failures = [];
    for (const [name, who, address, ready] of STATES) {
      const page = await pageFor(who, size);
      try {
        await page.goto(`${app.url}${address()}`);
        await ready(page).waitFor();
        await assertGoodPage(page, `${name}-${size}`);
      } catch (e) {
        failures.push(e.message.startsWith(name) ? e.message : `${name}-${size}: ${e.message}`);
      }
      await page.context().close();
    }
    assert.deepEqual(failures, []);
  });
}

test("a certificate number that does not exist says so, on both screens", async () => {
  if (!world.upcoming) await makeWorld();
  for (const size of Object.keys(SIZES)) {
    const page = await pageFor("out", size);
    expectHttpError(page, 404, /^\/api\/certificates\//);
    await page.goto(`${app.url}/certificate.html?id=0123456789abcdef0123456789abcdef`);
    await page.getByText("No certificate with this number").waitFor();
    await assertGoodPage(page, `certificate-unknown-${size}`);
    await page.context().close();
  }
});

test("the room page says plainly why a session cannot be joined: cancelled, not published, or no place", async () => {
  if (!world.upcoming) await makeWorld();
  const organiser = await bearer(app, ORGANISER.email, ORGANISER.password);
  const soon = { startsInMs: 10 * 60000 };
  const cancelled = await createSession(app, organiser, "Cancelled at short notice", soon);
  await call(app, organiser, "POST", `/api/sessions/${cancelled.id}/cancel`);
  const draft = await call(app, organiser, "POST", "/api/sessions", {
    title: "Not yet published",
    kind: "webinar",
    phase: "all",
    audiences: [],
    starts_at: new Date(Date.now() + 10 * 60000).toISOString(),
    ends_at: new Date(Date.now() + 70 * 60000).toISOString(),
    capacity: 30,
    status: "draft",
  });
  const cases = [
    ["organiser", cancelled.id, "This session was cancelled"],
    ["organiser", draft.id, "This session is not published yet"],
    ["visitor", world.upcoming.id, "You are not registered for this session"],
  ];
  await signUp(app, "Cy Visitor", "cy@school.test");
  for (const [who, id, heading] of cases) {
    const page =
      who === "visitor" ? await signedInPage(app, browser, "cy@school.test", PASSWORD, { viewport: SIZES.phone }) : await pageFor(who, "phone");
    const joins = [];
    page.on("request", (r) => r.url().endsWith(`/api/sessions/${id}/join`) && joins.push(r.url()));
    await page.goto(`${app.url}/room.html?id=${id}`);
    await page.getByRole("heading", { name: heading }).waitFor();
    await page.getByRole("link", { name: "Back to the session page" }).waitFor();
    assert.deepEqual(joins, [], `${heading}: no join is asked for`);
    await assertGoodPage(page, `room-kept-out-${id}-phone`);
    await page.context().close();
  }
});

/** Whether `locator` is inside the viewport now, without scrolling. */
async function inView(page, locator) {
  const box = await locator.boundingBox();
  const { width, height } = page.viewportSize();
  return Boolean(box) && box.y >= 0 && box.x >= 0 && box.y + box.height <= height && box.x + box.width <= width;
}

for (const who of ["organiser", "presenter"]) {
  test(`in the room, the ${who === "organiser" ? "host's" : "presenter's"} microphone and camera are in view at 1280×800, and the room fits a 390 px phone`, async () => {
    if (!world.upcoming) await makeWorld();
    for (const size of Object.keys(SIZES)) {
      const page = await pageFor(who, size);
      await page.goto(`${app.url}/room.html?id=${world.open.id}`);
      await page.getByRole("button", { name: "Join with camera and mic" }).click();
      const mic = page.getByRole("button", { name: /^Microphone (on|off)$/ });
      const camera = page.getByRole("button", { name: /^Camera (on|off)$/ });
      await mic.waitFor();
      await camera.waitFor();
      if (who === "organiser") {
        await page.getByRole("button", { name: "Go live" }).waitFor();
        // Backstage says who takes the room live (a presenter's view: tests/browser/lifecycle.test.mjs).
        await page.getByText("You take the room live when you are ready.").waitFor();
      }
      await settled(page);
      if (size === "desktop") {
        assert.ok(await inView(page, mic), `the microphone button is in view at 1280×800: ${JSON.stringify(await mic.boundingBox())}`);
        assert.ok(await inView(page, camera), `the camera button is in view at 1280×800: ${JSON.stringify(await camera.boundingBox())}`);
      }
      await assertGoodPage(page, `room-${who}-${size}`);
      if (who === "organiser" && size === "phone") {
        // Live and recording, the host's bar has the most in it: the chapter form too.
        await page.getByRole("button", { name: "Go live" }).click();
        await page.getByRole("button", { name: "Record", exact: true }).click();
        await page.getByRole("button", { name: "Mark chapter" }).waitFor();
        await assertGoodPage(page, `room-host-recording-${size}`);
        await page.getByRole("button", { name: "Stop recording" }).click();
        await page.getByRole("button", { name: "Record", exact: true }).waitFor();
      }
      await page.getByRole("button", { name: "Leave" }).click();
      await page.getByRole("heading", { name: "You are out of the room" }).waitFor();
      await page.context().close();
    }
  });
}
