// Recording and replay in real browsers: the organiser presents with
// Chromium's fake camera and microphone and records eight seconds from the
// room page, with a chat message from an attendee and a chapter marked three
// seconds in. The attendee then watches the replay: the recorded video plays
// (frames decoded, time advancing), the chapter seeks, the chat message
// appears at its moment and goes again when seeking back, the speed control
// changes the playback rate, and what was watched reaches the server. A
// teacher who did not register is refused; the organiser deletes the
// recording from the organiser page.
//
// Runs inside `unshare -n` like room.test.mjs: nothing here needs a network.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MEDIA_ARGS,
  ORGANISER,
  bearer,
  call,
  assertGoodPage,
  createSession,
  expectHttpError,
  shot,
  signedInPage,
  signUp,
  serverAndBrowser,
  sleep,
  waitFor,
} from "../helpers.mjs";

const CHAT = "Could you say more about whole-class feedback?";
const CHAPTER = "Part 2: feedback";

let app;
let browser;
serverAndBrowser(MEDIA_ARGS, (a, b) => ([app, browser] = [a, b]));

/** The replay's clock and its first video and audio elements, as the page sees them. */
function player(page) {
  return page.evaluate(() => {
    const r = window.staffroomReplay;
    const video = r.media.find((m) => m.kind === "video")?.node;
    const audio = r.media.find((m) => m.kind === "audio")?.node;
    return {
      position: r.clock.now(),
      playing: r.clock.playing,
      speed: r.clock.speed,
      video: video && { time: video.currentTime, frames: video.getVideoPlaybackQuality().totalVideoFrames, rate: video.playbackRate, paused: video.paused },
      audio: audio && { time: audio.currentTime, rate: audio.playbackRate, paused: audio.paused },
    };
  });
}

test("a recorded session replays like being there: the video plays, the chapter seeks, the chat appears at its moment, the speed changes and watching is counted; others are refused", async () => {
  const organiserToken = await bearer(app, ORGANISER.email, ORGANISER.password);
  const session = await createSession(app, organiserToken, "Feedback that moves learning on");

  // The organiser presents with camera and microphone, and goes live.
  const host = await signedInPage(app, browser, ORGANISER.email, ORGANISER.password);
  await host.goto(`${app.url}/room.html?id=${session.id}`);
  const joinWithMedia = host.getByRole("button", { name: "Join with camera and mic" });
  await joinWithMedia.waitFor();
  await host.waitForFunction(() => !document.querySelector(".prejoin button").disabled);
  await joinWithMedia.click();
  await host.locator("#connection[data-state=connected]").waitFor();
  await host.getByRole("button", { name: "Go live" }).click();

  // A registered teacher joins.
  const adaToken = await signUp(app, "Ada Teacher", "ada@school.test");
  await call(app, adaToken, "POST", `/api/sessions/${session.id}/registration`);
  const ada = await signedInPage(app, browser, "ada@school.test", "a-long-password");
  await ada.goto(`${app.url}/room.html?id=${session.id}`);
  await ada.locator("#connection[data-state=connected]").waitFor();
  await ada.locator(".stage-tiles .tile-name", { hasText: ORGANISER.name }).waitFor();

  // Record: Ada chats after a second and a half, the host marks a chapter at three seconds, and stops at eight.
  const record = host.locator("#record-toggle");
  assert.equal(await record.textContent(), "Record");
  await record.click();
  await host.locator("#recording-indicator", { hasText: "Recording" }).waitFor();
  const recordingFrom = Date.now();
  await ada.locator("#recording-indicator", { hasText: "Recording" }).waitFor();
  assert.equal(await record.getAttribute("aria-pressed"), "true");
  await sleep(1500 - (Date.now() - recordingFrom));
  await ada.getByRole("tab", { name: /Chat/ }).click();
  await ada.getByLabel("Message everyone").fill(CHAT);
  await ada.getByRole("button", { name: "Send", exact: true }).click();
  await host.getByRole("tab", { name: /Chat/ }).click();
  await host.getByText(CHAT).waitFor();
  await sleep(3000 - (Date.now() - recordingFrom));
  await host.locator("#chapter-title").fill(CHAPTER);
  await host.locator("#chapter-form").getByRole("button", { name: "Mark chapter" }).click();
  await sleep(8000 - (Date.now() - recordingFrom));
  await shot(host, "recording-host-desktop");
  assert.equal(await record.textContent(), "Stop recording");
  await record.click();
  await host.getByRole("link", { name: "Watch the replay" }).waitFor();

  const { list } = await waitFor("the recording is listed as ready", async () => {
    const list = await call(app, organiserToken, "GET", `/api/sessions/${session.id}/recordings`);
    return { ok: list.length === 1 && list[0].status === "ready", list };
  });
  const recording = list[0];
  assert.ok(recording.duration_ms >= 7000 && recording.duration_ms < 15000, `about eight seconds recorded (${recording.duration_ms} ms)`);
  assert.ok(recording.bytes > 0, "organisers see the disk space");
  const detail = await call(app, adaToken, "GET", `/api/recordings/${recording.id}`);
  const chatAt = detail.timeline.find((e) => e.type === "chat" && e.message.body === CHAT)?.t;
  const chapterAt = detail.timeline.find((e) => e.type === "chapter" && e.title === CHAPTER)?.t;
  assert.ok(chatAt > 500 && chatAt < chapterAt, `the chat is on the timeline before the chapter (${chatAt}, ${chapterAt})`);
  assert.ok(Math.abs(chapterAt - 3000) < 1500, `the chapter is about three seconds in (${chapterAt} ms)`);
  const video = detail.tracks.find((t) => t.kind === "video");
  assert.ok(video, `a video track is recorded: ${JSON.stringify(detail.tracks)}`);
  assert.ok(detail.tracks.some((t) => t.kind === "audio"), "an audio track is recorded");
  assert.equal(detail.watched_ms, 0);

  // Ada finds the replay on the session page.
  await ada.goto(`${app.url}/session.html?id=${session.id}`);
  const recordings = ada.getByRole("region", { name: "Recordings" });
  await recordings.getByText(/\d+ seconds/).waitFor();
  await recordings.getByRole("link", { name: "Watch the replay" }).click();
  await ada.waitForURL(new RegExp(`/replay\\.html\\?id=${recording.id}$`));
  await ada.getByRole("heading", { level: 1, name: session.title }).waitFor();
  await ada.getByText("You have watched 0 s of").waitFor();
  // The replay page passes the checks every page state passes (pages.test.mjs).
  await assertGoodPage(ada, "replay-desktop");

  // Before it plays: the chapter is listed and marked on the seek bar; the chat message is not there yet.
  const chapter = ada.getByRole("button", { name: new RegExp(CHAPTER) });
  await chapter.waitFor();
  assert.equal(await ada.locator(".seek-mark").count(), 1);
  assert.equal(await ada.getByText(CHAT).count(), 0, "the chat message waits for its moment");

  // Play: the recorded camera plays, frames decoded and time advancing, and the sound plays along.
  await ada.getByRole("button", { name: "Play", exact: true }).click();
  await ada.getByRole("button", { name: "Pause", exact: true }).waitFor();
  await waitFor("the recorded video plays", async () => {
    const p = await player(ada);
    return { ok: p.video && p.video.time > 0.3 && p.video.frames > 5 && !p.video.paused, ...p };
  });
  const early = await player(ada);
  await sleep(1500);
  const later = await player(ada);
  assert.ok(later.video.time > early.video.time + 0.5, `the video's time advances (${early.video.time} → ${later.video.time})`);
  assert.ok(later.video.frames > early.video.frames + 10, `video frames keep coming (${early.video.frames} → ${later.video.frames})`);
  assert.ok(later.audio && !later.audio.paused && later.audio.time > early.audio.time, `the audio plays (${JSON.stringify(later.audio)})`);
  assert.ok(Math.abs(later.video.time - (later.position - video.start_ms) / 1000) < 0.5, `the video follows the clock (${JSON.stringify(later)})`);

  // The chat message appears once the replay reaches its moment.
  await ada.getByText(CHAT).waitFor();
  assert.ok((await player(ada)).position >= chatAt, "not before its moment");
  await shot(ada, "replay-playing-desktop");

  // Paused, the chapter seeks to its moment and the video follows.
  await ada.getByRole("button", { name: "Pause", exact: true }).click();
  const firstStretch = (await player(ada)).position;
  await chapter.click();
  const atChapter = await player(ada);
  assert.equal(Math.round(atChapter.position), chapterAt);
  assert.ok(Math.abs(atChapter.position - 3000) < 1500, `about three seconds in (${atChapter.position})`);
  assert.equal(await chapter.getAttribute("aria-current"), "true");
  await waitFor("the video shows the chapter's moment", async () => {
    const p = await player(ada);
    return { ok: Math.abs(p.video.time - (chapterAt - video.start_ms) / 1000) < 0.3, ...p };
  });
  const clockText = (ms) => `0:${String(Math.floor(ms / 1000)).padStart(2, "0")}`;
  assert.equal(
    await ada.getByRole("slider", { name: "Position in the recording" }).getAttribute("aria-valuetext"),
    `${clockText(chapterAt)} of ${clockText(recording.duration_ms)}`,
  );

  // Seeking back (← is five seconds) hides the chat message again.
  await ada.keyboard.press("ArrowLeft");
  assert.equal(Math.round((await player(ada)).position), Math.max(0, chapterAt - 5000));
  await ada.getByText(CHAT).waitFor({ state: "detached" });

  // The speed: the control sets every element's playback rate; > steps it up.
  await ada.getByLabel("Speed").selectOption("1.5");
  await ada.getByRole("button", { name: "Play", exact: true }).click();
  await waitFor("the video plays at 1.5×", async () => {
    const p = await player(ada);
    return { ok: p.playing && p.video.rate === 1.5 && p.audio.rate === 1.5 && !p.video.paused, ...p };
  });
  await ada.keyboard.press(">");
  await waitFor("the video plays at 2×", async () => {
    const p = await player(ada);
    return { ok: p.video.rate === 2 && p.audio.rate === 2, ...p };
  });
  assert.equal(await ada.getByLabel("Speed").inputValue(), "2");
  await sleep(1000);

  // Pausing (K) reports what was watched; the server counts it and the page says so.
  await ada.keyboard.press("k");
  const secondStretch = await player(ada);
  assert.equal(secondStretch.playing, false);
  // Both stretches started at 0:00, so what was watched is the longer one.
  const expected = Math.round(Math.max(firstStretch, secondStretch.position));
  const watched = await waitFor("the watched segments reach the server", async () => {
    const d = await call(app, adaToken, "GET", `/api/recordings/${recording.id}`);
    return { ok: d.watched_ms > 0, watched_ms: d.watched_ms, expected };
  });
  assert.ok(Math.abs(watched.watched_ms - expected) <= 2, `watched ${watched.watched_ms} ms, played 0:00 to ${firstStretch} and to ${secondStretch.position} ms`);
  await ada.getByText(new RegExp(`You have watched [1-9]\\d* s of ${Math.round(recording.duration_ms / 1000)} s`)).waitFor();
  await shot(ada, "replay-paused-desktop");

  // The single-file download is made in the background (ffmpeg); the page offers it once it is.
  const download = ada.getByRole("link", { name: "Download the recording (WebM)" });
  await download.waitFor({ timeout: 60000 });
  const file = await ada.request.get(`${app.url}${await download.getAttribute("href")}`);
  assert.equal(file.status(), 200);
  assert.match(file.headers()["content-disposition"], /^attachment; filename=".+\.webm"$/);
  assert.ok((await file.body()).length > 10000, "the download holds the recording");

  // A teacher who did not register is told why they cannot watch.
  await signUp(app, "Cy Visitor", "cy@school.test");
  const cy = await signedInPage(app, browser, "cy@school.test", "a-long-password");
  expectHttpError(cy, 403, /^\/api\/recordings\//);
  await cy.goto(`${app.url}/replay.html?id=${recording.id}`);
  await cy.getByText("Only the session's registered participants can watch this replay.").waitFor();
  assert.equal(await cy.locator("video").count(), 0);

  // The organiser sees the disk space and deletes the recording; the replay is gone.
  await host.goto(`${app.url}/organiser.html?id=${session.id}`);
  const managed = host.getByRole("region", { name: "Recordings" });
  await managed.getByText(/\d+(\.\d)? (KB|MB) of disk space/).waitFor();
  await shot(host, "organiser-recordings-desktop");

  // Opened to everyone signed in, the visitor finds it on the session page and can watch.
  await managed.getByLabel(/^Who can watch the recording of /).selectOption("everyone");
  await managed.getByText("Anyone signed in can now watch").waitFor();
  await cy.goto(`${app.url}/session.html?id=${session.id}`);
  await cy.getByRole("region", { name: "Recordings" }).getByRole("link", { name: "Watch the replay" }).click();
  await cy.getByRole("heading", { level: 1, name: session.title }).waitFor();
  await cy.getByRole("button", { name: "Play", exact: true }).waitFor();

  host.once("dialog", (dialog) => dialog.accept());
  await managed.getByRole("button", { name: /^Delete the recording of / }).click();
  await managed.getByText("is deleted").waitFor();
  assert.deepEqual(await call(app, organiserToken, "GET", `/api/sessions/${session.id}/recordings`), []);
  expectHttpError(ada, 404, /^\/api\/recordings\//);
  await ada.goto(`${app.url}/replay.html?id=${recording.id}`);
  await ada.getByText("This recording does not exist, or it has been deleted.").waitFor();

  for (const page of [host, ada, cy]) assert.deepEqual(page.pageErrors.map(String), []);
});
