// Breakout groups in real browsers: the organiser goes live with Chromium's
// fake camera, three registered teachers join, and the organiser opens two
// groups from the Groups tab (random placement). Each teacher's page shows
// its group's name and task, opens its camera, and its RTCPeerConnection
// decodes video only from the people in its group; the organiser visits the
// group with one teacher in it. The organiser closes the groups (a one-second
// return countdown) and every page is back on the main stage, decoding the
// organiser's camera again, with its own camera stopped.
//
// Runs inside `unshare -n` like room.test.mjs: nothing here needs a network.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MEDIA_ARGS, ORGANISER, call, createSession, registeredTeacher, shot, signedInPage as signedIn, sleep, waitFor, serverAndBrowser } from "../helpers.mjs";

let app;
let browser;
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

const api = (token, apiPath, body) => call(app, token, "POST", apiPath, body);
const signedInPage = (email, password, options) => signedIn(app, browser, email, password, options);
const teacher = (name, email, sessionId, options) => registeredTeacher(app, browser, name, email, sessionId, options);

/**
 * Inbound video on the page, per publisher: frames decoded so far, summed
 * over that publisher's streams (matched through the room's track list).
 */
function framesBySender(page) {
  return page.evaluate(async () => {
    const r = window.staffroomRoom;
    const out = {};
    if (!r.pc) return out;
    (await r.pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      const pid = r.tracks.get(s.trackIdentifier)?.participant_id || `unknown:${s.trackIdentifier}`;
      out[pid] = (out[pid] || 0) + (s.framesDecoded || 0);
    });
    return out;
  });
}

/** The publishers whose video frames rise on `page` over `ms`. */
async function risingSenders(page, ms = 1500) {
  const a = await framesBySender(page);
  await sleep(ms);
  const b = await framesBySender(page);
  return Object.keys(b)
    .filter((pid) => b[pid] > (a[pid] || 0))
    .sort();
}

/** What a page's room knows, for a failure message. */
function diagnose(page) {
  return page.evaluate(async () => {
    const r = window.staffroomRoom;
    const inbound = [];
    (await r.pc?.getStats())?.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound.push([s.trackIdentifier, s.framesDecoded, s.packetsReceived]);
    });
    return {
      me: r.me?.id,
      tracks: [...r.tracks.values()].map((t) => `${t.id}:${t.participant_id}:${t.kind}`),
      received: [...r.received.keys()],
      local: Boolean(r.local),
      sending: r.pc?.getTransceivers().map((t) => `${t.mid}:${t.direction}:${t.currentDirection}:${t.sender.track?.kind || "-"}`),
      signaling: r.pc?.signalingState,
      inbound,
    };
  });
}

const myId = (page) => page.evaluate(() => String(window.staffroomRoom.me.id));

test("a host opens two breakout groups: each teacher sees their group and task and decodes video from their group only; closing brings everyone back to the main stage", async () => {
  const started = Date.now();
  const organiserToken = (await api(null, "/api/auth/signin", { email: ORGANISER.email, password: ORGANISER.password })).token;
  const session = await createSession(app, organiserToken, "Retrieval practice that sticks", { description: "A live workshop with group work." });
  const roomUrl = `${app.url}/room.html?id=${session.id}`;

  // The host joins with camera and mic and goes live.
  const host = await signedInPage(ORGANISER.email, ORGANISER.password);
  await host.goto(roomUrl);
  const joinWithMedia = host.getByRole("button", { name: "Join with camera and mic" });
  await joinWithMedia.waitFor();
  await host.waitForFunction(() => !document.querySelector(".prejoin button").disabled);
  await joinWithMedia.click();
  await host.locator("#connection[data-state=connected]").waitFor();
  await host.getByRole("button", { name: "Go live" }).click();
  await host.getByRole("button", { name: "End session for everyone" }).waitFor();

  const names = ["Ada Teacher", "Ben Teacher", "Cai Teacher"];
  const teachers = [];
  for (const [i, name] of names.entries()) {
    const options = i === 2 ? { viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true } : {};
    const page = await teacher(name, `${name.split(" ")[0].toLowerCase()}@school.test`, session.id, options);
    await page.goto(roomUrl);
    await page.locator("#connection[data-state=connected]").waitFor();
    teachers.push(page);
  }
  const hostId = await myId(host);
  const ids = await Promise.all(teachers.map(myId));
  for (const [i, page] of teachers.entries()) {
    await waitFor(`${names[i]} decodes the host's camera`, async () => ({ ok: (await risingSenders(page, 600)).includes(hostId) }));
  }
  // Attendees have no Groups tab.
  assert.equal(await teachers[0].getByRole("tab", { name: /Groups/ }).isVisible(), false);

  // The host plans two named groups with tasks, placed at random, with a one-second return countdown.
  await host.getByRole("tab", { name: /Groups/ }).click();
  await host.getByLabel("Number of groups").fill("2");
  await host.getByLabel("Group 1 name").fill("Keep");
  await host.getByLabel("Group 1 task (optional)").fill("What will you keep from remote teaching?");
  await host.getByLabel("Group 2 name").fill("Change");
  await host.getByLabel("Group 2 task (optional)").fill("What will you change first?");
  await host.getByLabel("Duration (minutes)").fill("5");
  await host.getByLabel("Return countdown (seconds)").fill("1");
  await shot(host, "groups-plan-desktop");
  await host.getByRole("button", { name: "Open groups" }).click();
  await host.getByRole("heading", { name: "Groups are open" }).waitFor();

  const state = await host.evaluate(() => window.staffroomRoom.breakout);
  assert.equal(state.open, true);
  assert.equal(state.groups.length, 2);
  assert.deepEqual(state.groups.flatMap((g) => g.members).sort(), [...ids].sort(), "every teacher is placed, the host is not");
  const groupOf = (pid) => state.groups.find((g) => g.members.includes(pid));
  const big = state.groups.find((g) => g.members.length === 2);
  const solo = state.groups.find((g) => g.members.length === 1);
  assert.ok(big && solo, `groups of two and one: ${JSON.stringify(state.groups)}`);

  // Each page shows its group's name and task and the countdown, without reloading.
  for (const [i, page] of teachers.entries()) {
    const g = groupOf(ids[i]);
    const bar = page.locator(".group-bar");
    await bar.getByRole("heading", { name: g.name }).waitFor();
    await bar.getByText(g.task).waitFor();
    assert.match(await bar.locator(".group-timer").textContent(), /^[45]:\d\d left$/);
    await bar.getByRole("button", { name: "Ask for help" }).waitFor();
    assert.equal(await page.evaluate(() => window.staffroomRoom.connections), 1, `${names[i]} kept the same connection`);
  }

  // The host visits the group with one teacher, so everyone has someone to see.
  await host.getByRole("button", { name: `Visit ${solo.name}` }).click();
  await host.locator(".group-bar").getByRole("heading", { name: solo.name }).waitFor();

  // Media: each page decodes video from exactly the others in its group.
  const expected = (pid) => {
    const g = groupOf(pid);
    const others = g.members.filter((m) => m !== pid);
    if (g === solo) others.push(hostId);
    return others.sort();
  };
  for (const [i, page] of teachers.entries()) {
    const want = expected(ids[i]);
    const got = await waitFor(`${names[i]} decodes video from their group only`, async () => {
      const rising = await risingSenders(page);
      return { ok: JSON.stringify(rising) === JSON.stringify(want), rising, want };
    }).catch(async (e) => {
      const pages = [host, ...teachers];
      const all = await Promise.all(pages.map(diagnose));
      throw new Error(`${e.message}\n${JSON.stringify(all, null, 1)}`);
    });
    assert.deepEqual(got.rising, want);
    // Their own camera is on, and the group grid has a tile for everyone else in the group.
    assert.equal(await page.evaluate(() => Boolean(window.staffroomRoom.local)), true, `${names[i]} publishes in the group`);
    assert.equal(await page.locator(".stage.in-group .stage-tiles .tile:not([data-key$=':me'])").count(), want.length);
  }
  const hostSees = await waitFor("the visiting host decodes the solo teacher only", async () => {
    const rising = await risingSenders(host);
    return { ok: JSON.stringify(rising) === JSON.stringify(solo.members), rising };
  });
  assert.deepEqual(hostSees.rising, solo.members);

  // A teacher asks for help: the host sees who and where, prominently.
  const asker = teachers[ids.indexOf(big.members[0])];
  await asker.getByRole("button", { name: "Ask for help" }).click();
  await asker.getByRole("button", { name: "Help requested" }).waitFor();
  await host.locator(".help-calls", { hasText: `${names[ids.indexOf(big.members[0])]} in ${big.name}` }).waitFor();
  await host.locator("#banner", { hasText: "asks for help" }).waitFor();
  await asker.getByRole("tab", { name: /Chat/ }).click();
  await asker.getByLabel(`Message ${big.name}`).waitFor();

  // A broadcast reaches every group as a banner.
  await host.getByLabel("Message all groups").fill("Two minutes to agree on one idea");
  await host.getByRole("button", { name: "Broadcast" }).click();
  for (const page of teachers) await page.locator("#banner", { hasText: "Two minutes to agree on one idea" }).waitFor();

  const inBig = teachers[ids.indexOf(big.members[0])];
  await shot(host, "groups-host-desktop");
  await shot(inBig, "group-participant-desktop");
  await shot(teachers[2], "group-participant-375");
  await host.setViewportSize({ width: 375, height: 812 });
  await shot(host, "groups-host-375");
  await host.setViewportSize({ width: 1280, height: 720 });

  // The host closes the groups: after the one-second countdown everyone is back on the main stage.
  await host.getByRole("button", { name: "Close groups" }).click();
  for (const [i, page] of [host, ...teachers].entries()) {
    await page.locator(".group-bar").waitFor({ state: "hidden" });
    await page.locator(".stage.in-group").waitFor({ state: "detached" });
    if (i > 0) await page.getByText("Back in the main room.").waitFor();
  }
  await host.getByRole("button", { name: "Open groups" }).waitFor();
  for (const page of teachers) assert.equal(await page.locator("#banner").isVisible(), false, "the broadcast went with the groups");
  for (const [i, page] of teachers.entries()) {
    const back = await waitFor(`${names[i]} decodes the host's camera again, and nobody else's`, async () => {
      const rising = await risingSenders(page);
      return { ok: JSON.stringify(rising) === JSON.stringify([hostId]), rising };
    });
    assert.deepEqual(back.rising, [hostId]);
    assert.equal(await page.evaluate(() => window.staffroomRoom.local), null, `${names[i]}'s camera and mic are stopped`);
    await page.locator(".stage-tiles .tile-name", { hasText: ORGANISER.name }).waitFor();
    assert.equal(await page.evaluate(() => window.staffroomRoom.connections), 1, `${names[i]} never reconnected`);
  }
  await shot(inBig, "group-back-desktop");
  for (const page of [host, ...teachers]) assert.deepEqual(page.pageErrors, []);
  console.log(`# breakouts: ${Date.now() - started} ms in all`);
});
