// The live room in real browsers: an organiser presents with Chromium's fake
// camera and microphone, two registered teachers wait in the lobby until the
// organiser goes live, then each attendee's RTCPeerConnection shows video
// frames being decoded and audio packets arriving, over the server's SFU on
// loopback. An attendee is brought on stage and muted; the session ends.
//
// Runs in its own folder so `scripts/test.sh` can start it inside a network
// namespace with only loopback (`unshare -n`): nothing here needs a network.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MEDIA_ARGS,
  ORGANISER,
  bearer as signInToken,
  call,
  createSession,
  expectHttpError,
  registeredTeacher,
  shot,
  signedInPage as signedIn,
  signUp,
  serverAndBrowser,
  sleep,
  waitFor,
} from "../helpers.mjs";

let app;
let browser;
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

const bearer = (email, password) => signInToken(app, email, password);
const post = (token, apiPath, body) => call(app, token, "POST", apiPath, body);
/** A page signed in through the API (the cookie lands in the page's context). */
const signedInPage = (email, password, options) => signedIn(app, browser, email, password, options);
const teacher = (name, email, sessionId, options) => registeredTeacher(app, browser, name, email, sessionId, options);

/** Inbound RTP counters of the page's room connection, by kind (summed over tracks). */
function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.staffroomRoom && window.staffroomRoom.pc;
    const out = { video: { framesDecoded: 0, tracks: 0 }, audio: { packetsReceived: 0, tracks: 0 } };
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") {
        out.video.framesDecoded += s.framesDecoded || 0;
        out.video.tracks += 1;
      } else if (s.kind === "audio") {
        out.audio.packetsReceived += s.packetsReceived || 0;
        out.audio.tracks += 1;
      }
    });
    return out;
  });
}

/** Inbound audio on `page` from one participant (matched through the room's track list). */
function audioFrom(page, participantId) {
  return page.evaluate(async (pid) => {
    const r = window.staffroomRoom;
    const out = { packets: 0, tracks: 0 };
    if (!r.pc) return out;
    (await r.pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
      if (r.tracks.get(s.trackIdentifier)?.participant_id !== pid) return;
      out.packets += s.packetsReceived || 0;
      out.tracks += 1;
    });
    return out;
  }, participantId);
}

test("attendees wait in the lobby until the host goes live; then a presenter's camera and microphone reach them, chat, questions, hands and polls reach the other pages, an attendee goes on stage and is muted, and the host ends the session", async () => {
  const organiserToken = await bearer(ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiserToken, "Questioning that makes pupils think");

  // The organiser presents: picks devices, sees the preview, joins.
  const presenter = await signedInPage(ORGANISER.email, ORGANISER.password);
  await presenter.goto(`${app.url}/session.html?id=${session.id}`);
  await presenter.getByRole("link", { name: "Enter the room (backstage)" }).click();
  await presenter.waitForURL(new RegExp(`/room\\.html\\?id=${session.id}$`));
  const joinWithMedia = presenter.getByRole("button", { name: "Join with camera and mic" });
  await joinWithMedia.waitFor();
  await presenter.waitForFunction(() => !document.querySelector(".prejoin button").disabled);
  await joinWithMedia.click();
  await presenter.locator("#connection[data-state=connected]").waitFor();
  // Backstage until the host goes live.
  await presenter.getByText("Backstage — attendees can't see or hear you yet.").waitFor();
  const goLive = presenter.getByRole("button", { name: "Go live" });
  await goLive.waitFor();
  assert.equal(await presenter.getByRole("button", { name: "End session for everyone" }).isVisible(), false);

  // Two teachers, registered, join from the session page.
  const first = await teacher("Ada Teacher", "ada@school.test", session.id);
  const second = await teacher("Ben Teacher", "ben@school.test", session.id, { viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true });
  const started = Date.now();
  for (const page of [first, second]) {
    await page.goto(`${app.url}/session.html?id=${session.id}`);
    await page.getByRole("link", { name: "Join the live session" }).click();
    await page.waitForURL(/\/room\.html\?id=/);
    // Attendees publish nothing: no device picker, no camera controls.
    await page.locator("#connection[data-state=connected]").waitFor();
    assert.equal(await page.getByRole("button", { name: "Join with camera and mic" }).count(), 0);
    assert.equal(await page.getByRole("button", { name: "Share screen" }).isVisible(), false);
    // The lobby: a calm waiting view, no stage.
    await page.getByRole("heading", { name: "You're in the lobby" }).waitFor();
    await page.getByText("the host will let everyone in").waitFor();
    assert.equal(await page.locator(".stage").isVisible(), false);
  }
  await first.getByText("3 people are here, including you.").waitFor();
  // Nothing reaches the lobby while the presenter is backstage.
  await sleep(1500);
  for (const [name, page] of [["first", first], ["second", second]]) {
    const s = await inbound(page);
    assert.equal(s.video.tracks, 0, `${name}: no inbound video in the lobby`);
    assert.equal(s.video.framesDecoded, 0, `${name}: no frames decoded in the lobby`);
    assert.equal(s.audio.packetsReceived, 0, `${name}: no audio in the lobby`);
  }
  await shot(presenter, "backstage-desktop");
  await shot(first, "lobby-desktop");
  await shot(second, "lobby-375");
  await presenter.setViewportSize({ width: 375, height: 812 });
  await shot(presenter, "backstage-375");
  await presenter.setViewportSize({ width: 1280, height: 720 });

  // The host goes live: the lobby gives way to the stage.
  await goLive.click();
  const wentLive = Date.now();
  await presenter.getByRole("button", { name: "End session for everyone" }).waitFor();
  assert.equal(await goLive.isVisible(), false);
  const timings = {};
  for (const [name, page] of [["first", first], ["second", second]]) {
    const a = await waitFor(`${name} attendee decodes video and receives audio`, async () => {
      const s = await inbound(page);
      return { ok: s.video.framesDecoded > 0 && s.audio.packetsReceived > 0, ...s };
    });
    timings[name] = await page.evaluate(() => {
      const r = window.staffroomRoom;
      return { connections: r.connections, closes: r.closes };
    });
    timings[name].decodingMsAfterGoLive = Date.now() - wentLive;
    assert.equal(await page.getByRole("heading", { name: "You're in the lobby" }).isVisible(), false);
    // Three seconds: on a loaded machine Chromium may decode only a few frames a second.
    await new Promise((r) => setTimeout(r, 3000));
    const b = await inbound(page);
    assert.equal(b.video.tracks, 1, `${name}: one inbound video`);
    assert.equal(b.audio.tracks, 1, `${name}: one inbound audio`);
    assert.ok(b.video.framesDecoded > a.video.framesDecoded + 10, `${name}: frames keep being decoded (${a.video.framesDecoded} → ${b.video.framesDecoded})`);
    assert.ok(b.audio.packetsReceived > a.audio.packetsReceived + 20, `${name}: audio keeps arriving (${a.audio.packetsReceived} → ${b.audio.packetsReceived})`);
  }
  console.log(`# after go live: ${JSON.stringify(timings)}; both attendees streaming ${Date.now() - started} ms after the first opened the session page`);

  // The server names the presenter as the active speaker from the audio level
  // Chromium sends with the fake microphone's tone; attendees outline the tile.
  for (const page of [first, second]) {
    await page.locator(".tile.speaking").first().waitFor({ timeout: 10000 });
  }

  // Everyone is listed, and the presenter's tile is named on the stage.
  for (const page of [presenter, first, second]) {
    await page.locator(".people li").filter({ hasText: "Ben Teacher" }).waitFor();
    await page.locator(".people li").filter({ hasText: "Ada Teacher" }).waitFor();
    await page.locator(".people li").filter({ hasText: ORGANISER.name }).waitFor();
  }
  await first.locator(".tile .tile-name", { hasText: ORGANISER.name }).waitFor();
  const playing = await first.evaluate(() => {
    const v = document.querySelector(".stage-tiles video");
    return v && v.videoWidth > 0 && !v.paused;
  });
  assert.ok(playing, "the presenter's video plays in the attendee's tile");
  assert.equal(await first.getByRole("button", { name: "Enable sound" }).isVisible(), false);

  await shot(presenter, "presenter-desktop");
  await shot(first, "attendee-desktop");
  await shot(second, "attendee-375");

  // A screen share shows large on the attendees' stage, the camera small.
  await presenter.getByRole("button", { name: "Share screen" }).click();
  await presenter.getByRole("button", { name: "Stop sharing" }).waitFor();
  for (const page of [first, second]) {
    await page.locator(".stage-main .tile-big video").waitFor();
    await waitFor("the screen share is decoded", async () => {
      const s = await inbound(page);
      return { ok: s.video.tracks === 2 && s.video.framesDecoded > 0, ...s };
    });
    await page.locator(".stage-main .tile-name", { hasText: `${ORGANISER.name}'s screen` }).waitFor();
  }
  await shot(presenter, "presenter-sharing-desktop");
  await shot(first, "attendee-sharing-desktop");
  await shot(second, "attendee-sharing-375");

  // Stopping the share takes it off the attendees' stage; the camera stays.
  await presenter.getByRole("button", { name: "Stop sharing" }).click();
  await presenter.getByRole("button", { name: "Share screen" }).waitFor();
  for (const page of [first, second]) {
    await page.locator(".stage-main .tile-big").waitFor({ state: "detached", timeout: 10000 });
    await page.locator(".stage-tiles .tile-name", { hasText: ORGANISER.name }).waitFor();
  }

  // The socket drops: "Reconnecting…", then back in with a fresh token as the same person, and video flows again.
  const before = await inbound(first);
  const dropped = Date.now();
  await first.evaluate(() => window.staffroomRoom.ws.close(3000, "test: simulated drop"));
  await first.getByText("Reconnecting…", { exact: false }).first().waitFor();
  await first.locator("#connection[data-state=connected]").waitFor();
  await waitFor("video flows again after the reconnect", async () => {
    const s = await inbound(first);
    return { ok: s.video.framesDecoded > 30, ...s, before };
  });
  console.log(`# reconnect: back to decoding video ${Date.now() - dropped} ms after the socket dropped`);
  assert.equal(await first.evaluate(() => window.staffroomRoom.connections), 2);
  assert.equal(await first.locator("#banner").isVisible(), false);
  await presenter.getByRole("tab", { name: /People/ }).click();
  assert.equal(await presenter.locator(".people li", { hasText: "Ada Teacher" }).count(), 1);

  // Chat: a message from one attendee appears on the others' pages, as text.
  await first.getByRole("tab", { name: /Chat/ }).click();
  await first.getByLabel("Message everyone").fill("Hello from Ada <b>not bold</b>");
  await first.getByRole("button", { name: "Send", exact: true }).click();
  for (const page of [presenter, second]) {
    await page.getByRole("tab", { name: /Chat/ }).click();
    await page.locator(".chat-list li", { hasText: "Hello from Ada <b>not bold</b>" }).waitFor();
    assert.equal(await page.locator(".chat-list b").count(), 0, "chat is shown as text, not HTML");
  }

  // Q&A: Ben asks, Ada upvotes, everyone sees one vote.
  await second.getByRole("tab", { name: /Q&A/ }).click();
  await second.getByLabel("Ask the presenters a question").fill("How often should retrieval quizzes run?");
  await second.getByRole("button", { name: "Ask", exact: true }).click();
  await first.getByRole("tab", { name: /Q&A/ }).click();
  const question = first.locator(".question-list li", { hasText: "How often should retrieval quizzes run?" });
  await question.getByRole("button", { name: "Upvote: 0 votes" }).click();
  await question.getByRole("button", { name: "Upvote: 1 vote" }).waitFor();
  for (const page of [presenter, second]) {
    await page.getByRole("tab", { name: /Q&A/ }).click();
    await page.locator(".question-list li", { hasText: "How often should retrieval quizzes run?" }).getByRole("button", { name: "Upvote: 1 vote" }).waitFor();
  }

  // A raised hand reaches the host's queue, who lowers it.
  await first.getByRole("button", { name: "Raise hand" }).click();
  await first.getByRole("button", { name: "Lower hand" }).waitFor();
  await presenter.getByRole("tab", { name: /People/ }).click();
  await presenter.locator(".hand-queue li", { hasText: "Ada Teacher" }).waitFor();
  await presenter.getByRole("button", { name: "Lower Ada Teacher's hand" }).click();
  await first.getByRole("button", { name: "Raise hand" }).waitFor();
  await presenter.locator(".hand-queue li").waitFor({ state: "detached" });

  // A poll: the host opens one, both attendees vote, the host sees the counts, then shows them to everyone.
  await presenter.getByRole("tab", { name: /Polls/ }).click();
  await presenter.getByText("New poll").click();
  await presenter.getByLabel("Question", { exact: true }).fill("Do you use low-stakes quizzes weekly?");
  await presenter.getByLabel("Choices, one a line").fill("Yes\nNo\nSometimes");
  await presenter.getByRole("button", { name: "Create poll" }).click();
  for (const [page, choice] of [[first, "Yes"], [second, "Sometimes"]]) {
    await page.getByRole("tab", { name: /Polls/ }).click();
    const poll = page.locator(".poll", { hasText: "Do you use low-stakes quizzes weekly?" });
    await poll.getByLabel(choice).check();
    await poll.getByRole("button", { name: "Vote", exact: true }).click();
    await poll.getByText("your vote is in").waitFor();
  }
  const hostPoll = presenter.locator(".poll", { hasText: "Do you use low-stakes quizzes weekly?" });
  await hostPoll.getByText("2 votes").waitFor();
  await hostPoll.getByText("Yes: 1 (50%)").waitFor();
  await hostPoll.getByRole("button", { name: "Show results to everyone" }).click();
  await first.locator(".poll", { hasText: "Do you use low-stakes quizzes weekly?" }).getByText("Sometimes: 1 (50%)").waitFor();

  await shot(presenter, "presenter-polls-desktop");
  await shot(second, "attendee-qa-375");

  // Stage: the host invites Ada; she accepts, checks her devices and goes on stage.
  await presenter.getByRole("tab", { name: /People/ }).click();
  await presenter.getByRole("button", { name: "Invite Ada Teacher to stage" }).click();
  const invite = first.getByRole("dialog", { name: `${ORGANISER.name} invites you on stage` });
  await invite.waitFor();
  await shot(first, "stage-invited-desktop");
  await invite.getByRole("button", { name: "Accept" }).click();
  const goOnStage = first.getByRole("button", { name: "Go on stage" });
  await goOnStage.waitFor();
  await first.waitForFunction(() => !document.querySelector(".prejoin button").disabled);
  await goOnStage.click();
  await presenter.locator(".people li", { hasText: "Ada Teacher" }).getByText("On stage").waitFor();
  const adaId = await first.evaluate(() => window.staffroomRoom.me.id);

  // Ben hears Ada: a second inbound audio, its packets rising.
  await waitFor("Ada's audio reaches Ben", async () => {
    const s = await audioFrom(second, adaId);
    return { ok: s.tracks === 1 && s.packets > 0, ...s };
  });
  const heard = await audioFrom(second, adaId);
  await sleep(1500);
  const heardLater = await audioFrom(second, adaId);
  assert.ok(heardLater.packets > heard.packets + 20, `Ada's audio keeps arriving at Ben (${heard.packets} → ${heardLater.packets})`);
  assert.equal((await inbound(second)).audio.tracks, 2, "Ben receives two audio tracks: the organiser's and Ada's");
  await first.locator(".stage-tiles .tile-name", { hasText: "Ada Teacher (you)" }).waitFor();
  await shot(first, "stage-on-stage-desktop");
  await shot(second, "stage-watching-375");
  await shot(presenter, "stage-host-desktop");

  // The host mutes Ada's microphone: the server stops forwarding it at once.
  await presenter.getByRole("button", { name: "Mute Ada Teacher's microphone" }).click();
  await first.getByText("A host muted your microphone").waitFor();
  // The mute is the host's: Ada's page says so and offers no way to lift it (she may raise her hand).
  await first.getByText("Mic muted by a host").waitFor();
  assert.equal(await first.locator(".controls [data-toggle=mic]").isVisible(), false, "no microphone toggle while a host's mute holds");
  await presenter.locator(".people li", { hasText: "Ada Teacher" }).getByText("Mic muted").waitFor();
  await sleep(300); // packets already on the way
  const muted = await audioFrom(second, adaId);
  await sleep(1500);
  const mutedLater = await audioFrom(second, adaId);
  assert.ok(mutedLater.packets - muted.packets <= 3, `Ada's audio stops reaching Ben while muted (${muted.packets} → ${mutedLater.packets})`);
  await shot(first, "stage-muted-desktop");
  await first.getByRole("button", { name: "Raise hand" }).click();
  await presenter.locator(".hand-queue li", { hasText: "Ada Teacher" }).waitFor();

  // The host lifts the mute; Ada turns her microphone back on and the server forwards it again.
  await presenter.getByRole("button", { name: "Unmute Ada Teacher's microphone" }).click();
  await first.getByText("A host unmuted your microphone").waitFor();
  const micButton = first.getByRole("button", { name: "Microphone off" });
  assert.equal(await micButton.getAttribute("aria-pressed"), "false");
  assert.equal(await first.getByText("Mic muted by a host").isVisible(), false);
  await micButton.click();
  await first.getByRole("button", { name: "Microphone on" }).waitFor();
  await first.getByRole("button", { name: "Lower hand" }).click();
  await waitFor("Ada's audio flows again after the host unmutes her", async () => {
    const s = await audioFrom(second, adaId);
    return { ok: s.packets > mutedLater.packets + 20, ...s };
  });

  // Leaving shows a way back; the room, now live, lets Ben straight back in.
  await second.getByRole("button", { name: "Leave" }).click();
  await second.getByRole("link", { name: "Back to the session page" }).click();
  await presenter.locator(".people li").filter({ hasText: "Ben Teacher" }).waitFor({ state: "detached" });
  await second.getByRole("link", { name: "Join the live session" }).click();
  await second.locator("#connection[data-state=connected]").waitFor();
  assert.equal(await second.getByRole("heading", { name: "You're in the lobby" }).isVisible(), false);

  // The host ends the session for everyone, after confirming.
  await presenter.getByRole("button", { name: "End session for everyone" }).click();
  const confirm = presenter.getByRole("dialog", { name: "End the session for everyone?" });
  await confirm.getByRole("button", { name: "End session" }).click();
  for (const page of [presenter, first, second]) {
    await page.getByRole("heading", { name: "This session has ended" }).waitFor();
    await page.getByRole("link", { name: "Back to the session page" }).waitFor();
  }
  await shot(first, "ended-desktop");
  // Coming back later: the room says it has ended (the join is refused with a 409).
  expectHttpError(first, 409, /^\/api\/sessions\/\d+\/join$/);
  await first.reload();
  await first.getByRole("heading", { name: "This session has ended" }).waitFor();

  for (const page of [presenter, first, second]) assert.deepEqual(page.pageErrors.map(String), []);
});

test("a host removes an attendee without letting them back in", async () => {
  const organiserToken = await bearer(ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiserToken, "Behaviour for learning", { description: "" });
  const host = await signedInPage(ORGANISER.email, ORGANISER.password);
  await host.goto(`${app.url}/room.html?id=${session.id}`);
  await host.getByRole("button", { name: "Join without camera and mic" }).click();
  await host.getByRole("button", { name: "Go live" }).waitFor();
  const dee = await teacher("Dee Teacher", "dee@school.test", session.id);
  await dee.goto(`${app.url}/room.html?id=${session.id}`);
  await dee.getByRole("heading", { name: "You're in the lobby" }).waitFor();

  expectHttpError(dee, 403, /^\/api\/sessions\/\d+\/join$/);
  await host.getByRole("button", { name: "Remove Dee Teacher" }).click();
  const dialog = host.getByRole("dialog", { name: "Remove Dee Teacher from the session?" });
  await dialog.getByLabel("Don't let them back in").check();
  await shot(host, "remove-dialog-desktop");
  await dialog.getByRole("button", { name: "Remove", exact: true }).click();
  await dee.getByRole("heading", { name: "You were removed from this session" }).waitFor();
  await host.locator(".people li", { hasText: "Dee Teacher" }).waitFor({ state: "detached" });
  // Barred: coming back is refused.
  await dee.reload();
  await dee.getByRole("heading", { name: "You were removed from this session" }).waitFor();
  await dee.getByText("you cannot join it again").waitFor();
  for (const page of [host, dee]) assert.deepEqual(page.pageErrors.map(String), []);
});

test("before the room opens, the room page says when it will", async () => {
  const organiserToken = await bearer(ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiserToken, "Later today", { description: "", startsInMs: 3 * 3600000 });
  const page = await signedInPage(ORGANISER.email, ORGANISER.password);
  expectHttpError(page, 409, /^\/api\/sessions\/\d+\/join$/);
  await page.goto(`${app.url}/room.html?id=${session.id}`);
  await page.getByRole("heading", { name: "The room isn't open yet" }).waitFor();
  await page.getByText("The room opens 30 minutes before the start, at").waitFor();
  await page.getByRole("link", { name: "Back to the session page" }).waitFor();
  await shot(page, "not-open-yet-desktop");
  assert.deepEqual(page.pageErrors.map(String), []);
});

test("someone not registered is told to register, with a link back to the session", async () => {
  const organiserToken = await bearer(ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiserToken, "Retrieval practice", { description: "" });
  await signUp(app, "Cy Visitor", "cy@school.test");
  const page = await signedInPage("cy@school.test", "a-long-password");
  await page.goto(`${app.url}/session.html?id=${session.id}`);
  await page.getByRole("button", { name: "Register" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Join the live session" }).count(), 0);
  await page.goto(`${app.url}/room.html?id=${session.id}`);
  await page.getByText("Register for this session to join.").waitFor();
  await page.getByRole("link", { name: "Back to the session page" }).click();
  await page.waitForURL(new RegExp(`/session\\.html\\?id=${session.id}$`));
  assert.deepEqual(page.pageErrors.map(String), []);
});
