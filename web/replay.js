// The replay of a recorded session (docs/recording.md). Every recorded track
// is its own WebM file placed at `start_ms` on the recording's clock; this
// page plays them all on one virtual clock, so it looks and sounds like the
// live session: the presenters' cameras, a shared screen large while it was
// on, their voices, and the chat and questions appearing at their moments.
//
// The clock (performance.now() × speed) is the master. Each <video> and
// <audio> is a slave: shown and played only while the clock is inside its
// stretch, its currentTime put right when it drifts more than DRIFT_S. While
// an element that should be playing is still loading (just after a seek),
// the clock waits for it, at most HOLD_MAX_MS.
//
// What was watched is reported as segments [start of this play stretch,
// position], every REPORT_MS while playing and on pause, seek, end and
// page hide; a seek starts a new segment (the server keeps each segment by
// its start and only lets it grow).

import { api, downloadNote, el, formatClock as at, formatInstant, formatLength, here, param, say, setupPage, stop, viewerZone, zoneAbbr } from "/app.js";
import { resultBars } from "/room-talk.js";
import { reflectionPrompt } from "/reflect.js";

const recordingId = param("id");
const content = document.getElementById("content");

const SPEEDS = [1, 1.25, 1.5, 2];
const DRIFT_S = 0.25;
const HOLD_MAX_MS = 4000;
const REPORT_MS = 5000;
/** Keyboard steps, in ms. */
const SMALL_STEP = 5000;
const BIG_STEP = 10000;

/** "You have watched 12 min of 45" (in seconds for recordings under a minute). */
function watchedText(watchedMs, totalMs) {
  const watched = Math.min(watchedMs, totalMs);
  if (totalMs < 60000) return `You have watched ${Math.round(watched / 1000)} s of ${Math.round(totalMs / 1000)} s.`;
  return `You have watched ${Math.floor(watched / 60000)} min of ${Math.round(totalMs / 60000)}.`;
}

// ---------------------------------------------------------------- the clock

/** The master clock, in ms from the recording's start. */
const clock = {
  duration: 0,
  speed: 1,
  playing: false,
  holding: false, // waiting for an element to load
  base: 0, // the position at `since`
  since: 0,
  now() {
    if (!this.playing || this.holding) return this.base;
    return Math.min(this.duration, this.base + (performance.now() - this.since) * this.speed);
  },
  /** Starts counting again from `position` (by default, where we are). */
  anchor(position = this.now()) {
    this.base = Math.max(0, Math.min(this.duration, position));
    this.since = performance.now();
  },
};

/** Everything the page knows; on `window` so tests can read the clock and the elements. */
const replay = {
  recording: null,
  clock,
  media: [], // {track, kind, start, end, node, tile, screen, failed, correctedAt}
  chapters: [], // {t, title, by}
  feed: [], // the timeline's chat, question, poll and speaker events, in order
  watchedMs: 0,
  prompted: false, // the reflection prompt was shown at the end
};
window.staffroomReplay = replay;

const ui = {};
let holdSince = 0;
let holdGaveUp = false;
let shownEvents = -1; // how many feed events were shown at the last render
let layoutKey = "";
let scrubbing = false;
let lastSecond = -1;

// ---------------------------------------------------------------- playing

function play() {
  if (clock.playing) return;
  if (clock.base >= clock.duration - 100) clock.anchor(0); // at the end: from the start again
  clock.anchor(clock.base);
  clock.playing = true;
  clock.holding = false;
  holdGaveUp = false;
  beginSegment();
  tick(); // in the click's own turn, so the browser lets sound play
}

function pause() {
  if (!clock.playing) return;
  clock.anchor();
  clock.playing = false;
  clock.holding = false;
  closeSegment();
  report();
  tick();
}

function toggle() {
  if (clock.playing) pause();
  else play();
}

/** Moves the clock to `position`; a new watched segment starts there. */
function seek(position) {
  const playing = clock.playing;
  if (playing) closeSegment();
  clock.anchor(position);
  clock.holding = false;
  holdGaveUp = false;
  if (playing) {
    report();
    beginSegment();
  }
  tick();
}

function setSpeed(speed) {
  clock.anchor();
  clock.speed = speed;
  ui.speed.value = String(speed);
  tick();
}

function stepSpeed(direction) {
  const i = SPEEDS.indexOf(clock.speed);
  const next = SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, (i < 0 ? 0 : i) + direction))];
  if (next !== clock.speed) setSpeed(next);
}

function ended() {
  clock.anchor(clock.duration);
  clock.playing = false;
  clock.holding = false;
  closeSegment();
  // Once the watching is stored, ask for a reflection (once per visit).
  report().finally(() => {
    if (replay.prompted) return;
    replay.prompted = true;
    const prompt = reflectionPrompt(replay.recording.session_id, "You have reached the end. A few lines now make this session count in your CPD record. Only you can read them.");
    content.append(prompt);
    prompt.scrollIntoView({ block: "nearest" });
  });
}

function inside(m, position) {
  return position >= m.start && position < m.end;
}

/** One step of the clock: holds it for loading media, slaves every element to it, updates the page. */
function tick() {
  const nowMs = performance.now();
  if (clock.playing) {
    const loading = replay.media.some(
      (m) => !m.failed && inside(m, clock.now()) && !m.node.ended && (m.node.seeking || m.node.readyState < 2),
    );
    if (loading && !clock.holding && !holdGaveUp) {
      clock.anchor();
      clock.holding = true;
      holdSince = nowMs;
    } else if (loading && clock.holding && nowMs - holdSince > HOLD_MAX_MS) {
      // Something will not load: go on without it.
      clock.holding = false;
      holdGaveUp = true;
      clock.anchor(clock.base);
    } else if (!loading) {
      holdGaveUp = false;
      if (clock.holding) {
        clock.holding = false;
        clock.anchor(clock.base);
      }
    }
    if (clock.now() >= clock.duration) ended();
  }
  const position = clock.now();
  const runs = clock.playing && !clock.holding;
  for (const m of replay.media) {
    const node = m.node;
    if (!inside(m, position)) {
      if (!node.paused) node.pause();
      continue;
    }
    if (node.playbackRate !== clock.speed) node.playbackRate = clock.speed;
    const want = (position - m.start) / 1000;
    const pastEnd = Number.isFinite(node.duration) && want >= node.duration - 0.05;
    const drift = Math.abs(node.currentTime - want);
    if (!m.failed && !node.seeking && !pastEnd && drift > DRIFT_S && (!runs || nowMs - m.correctedAt > 1000)) {
      node.currentTime = want;
      m.correctedAt = nowMs;
    }
    if (runs && node.paused && !pastEnd && !m.failed) {
      node.play().catch((e) => {
        if (e.name === "NotAllowedError" && clock.playing) {
          pause();
          say(ui.notice, "Your browser stopped the replay from playing by itself: press Play to start it.", "info");
        }
      });
    } else if (!runs && !node.paused) {
      node.pause();
    }
  }
  render(position);
}

function loop() {
  tick();
  requestAnimationFrame(loop);
}

// ---------------------------------------------------------------- watched segments

const watch = {
  segment: null, // {start_ms, end_ms}: the stretch playing now
  pending: new Map(), // start_ms -> end_ms not yet stored by the server
  sending: false,
  retryAfter: 0,
};

function beginSegment() {
  const start = Math.round(clock.now());
  watch.segment = { start_ms: start, end_ms: start };
}

function extendSegment() {
  const s = watch.segment;
  if (!s) return;
  s.end_ms = Math.max(s.end_ms, Math.min(Math.round(clock.now()), clock.duration));
  if (s.end_ms > s.start_ms) watch.pending.set(s.start_ms, Math.max(s.end_ms, watch.pending.get(s.start_ms) || 0));
}

function closeSegment() {
  extendSegment();
  watch.segment = null;
}

/**
 * The download link, or its progress: checked again every 5 s while it is
 * being made (and a few times while it is not started: the server may have
 * no ffmpeg, and then makes none).
 */
function showDownload(recording, waits = 3) {
  const note = downloadNote(recording);
  ui.download.replaceChildren(...(note ? [note] : []));
  ui.download.hidden = !note;
  const pending = recording.download_status === "working" || (recording.download_status === "none" && waits > 0);
  if (pending) {
    setTimeout(async () => {
      try {
        showDownload(await api(`/api/recordings/${encodeURIComponent(recordingId)}`), recording.download_status === "none" ? waits - 1 : waits);
      } catch (e) {
        console.debug("download state not refreshed", e);
      }
    }, 5000);
  }
}

/** Sends what was watched since the last report. `keepalive` for the page going away. */
async function report({ keepalive = false } = {}) {
  extendSegment();
  if (!watch.pending.size || (watch.sending && !keepalive) || Date.now() < watch.retryAfter) return;
  const sent = [...watch.pending].slice(0, 100);
  watch.sending = true;
  try {
    const answer = await api(`/api/recordings/${encodeURIComponent(recordingId)}/watched`, {
      method: "POST",
      body: { segments: sent.map(([start_ms, end_ms]) => ({ start_ms, end_ms })) },
      keepalive,
    });
    // Segments that grew while the report was on its way go next time.
    for (const [start, end] of sent) if (watch.pending.get(start) === end) watch.pending.delete(start);
    replay.watchedMs = answer.watched_ms;
    ui.watched.textContent = watchedText(replay.watchedMs, clock.duration);
  } catch (e) {
    // Kept for the next report; a refusal of the segments themselves is not retried.
    if (e.status === 422) for (const [start] of sent) watch.pending.delete(start);
    if (e.status === 429) watch.retryAfter = Date.now() + 20000;
  } finally {
    watch.sending = false;
  }
}

// ---------------------------------------------------------------- the page

function buildMedia(tracks) {
  const playable = tracks
    .filter((t) => t.duration_ms !== 0)
    .map((track) => ({
      track,
      kind: track.kind,
      start: track.start_ms,
      end: track.duration_ms == null ? clock.duration : track.start_ms + track.duration_ms,
      node: null,
      tile: null,
      screen: false,
      failed: false,
      correctedAt: 0,
    }));
  const videos = playable.filter((m) => m.kind === "video");
  // A presenter's second video that overlaps their first is their shared screen.
  for (const m of videos) {
    m.screen = videos.some(
      (o) => o !== m && o.track.participant_id === m.track.participant_id && o.start < m.start && o.start < m.end && m.start < o.end,
    );
  }
  for (const m of playable) {
    const what = m.kind === "audio" ? `${m.track.name}'s microphone` : m.screen ? `${m.track.name}'s screen` : `${m.track.name}'s camera`;
    if (m.kind === "audio") {
      m.node = el("audio", { preload: "auto", src: m.track.url });
    } else {
      m.node = el("video", { preload: "auto", playsinline: true, src: m.track.url, "aria-label": what });
      m.node.muted = true; // the sound is in the audio tracks
      const label = el("p", { class: "tile-name", text: m.screen ? `${m.track.name}'s screen` : m.track.name });
      m.tile = el("figure", { class: m.screen ? "tile tile-big" : "tile", hidden: true, dataset: { participant: m.track.participant_id } }, m.node, label);
    }
    m.node.addEventListener("error", () => {
      m.failed = true;
      const failed = replay.media.filter((x) => x.failed).map((x) => x.what);
      say(ui.notice, `Part of this recording could not be played: ${failed.join(", ")}.`, "error");
    });
    m.what = what;
  }
  return playable;
}

function chapterButton(chapter) {
  return el(
    "button",
    { type: "button", class: "chapter-link", onclick: () => seek(chapter.t) },
    el("span", { class: "chapter-time", text: at(chapter.t) }),
    " ",
    el("span", { text: chapter.title }),
  );
}

function build(recording, user) {
  const zone = viewerZone(user);
  const started = new Date(recording.started_at).toISOString();
  document.title = `Replay: ${recording.session_title} · Staffroom`;

  // The stage: a shared screen large in `stageMain`, cameras as tiles.
  ui.stageMain = el("div", { class: "stage-main", hidden: true });
  ui.tiles = el("div", { class: "stage-tiles" });
  ui.stageEmpty = el("p", { class: "stage-empty", text: "No camera or screen was on at this point of the recording." });
  ui.audio = el("div", { hidden: true });
  for (const m of replay.media) {
    if (m.kind === "audio") ui.audio.append(m.node);
    else if (m.screen) ui.stageMain.append(m.tile);
    else ui.tiles.append(m.tile);
  }
  ui.stage = el("section", { class: "stage replay-stage", "aria-label": "Recording" }, ui.stageMain, ui.tiles, ui.stageEmpty, ui.audio);

  // The player.
  ui.play = el("button", { type: "button", id: "replay-play", class: "player-play", "aria-keyshortcuts": "k Space", text: "Play", onclick: toggle });
  ui.seek = el("input", {
    type: "range",
    id: "replay-seek",
    class: "player-seek",
    min: "0",
    max: String(clock.duration),
    step: "any",
    value: "0",
    "aria-label": "Position in the recording",
    "aria-keyshortcuts": "ArrowLeft ArrowRight j l",
  });
  ui.seek.addEventListener("input", () => {
    scrubbing = true;
    ui.current.textContent = at(Number(ui.seek.value));
  });
  ui.seek.addEventListener("change", () => {
    scrubbing = false;
    seek(Number(ui.seek.value));
  });
  ui.marks = el(
    "div",
    { class: "seek-marks", "aria-hidden": "true" },
    replay.chapters.map((c) =>
      el("span", { class: "seek-mark", title: `${at(c.t)} ${c.title}`, style: `left: ${(100 * c.t) / Math.max(clock.duration, 1)}%` }),
    ),
  );
  ui.current = el("span", { class: "player-current", text: at(0) });
  ui.speed = el("select", { id: "replay-speed", "aria-keyshortcuts": "< >" });
  ui.speed.append(...SPEEDS.map((s) => el("option", { value: String(s), text: `${s}×` })));
  ui.speed.addEventListener("change", () => setSpeed(Number(ui.speed.value)));
  ui.player = el(
    "div",
    { class: "player", role: "group", "aria-label": "Replay controls" },
    ui.play,
    el("div", { class: "seek-wrap" }, ui.seek, ui.marks),
    el("p", { class: "player-time" }, ui.current, el("span", { "aria-hidden": "true", text: " / " }), el("span", { class: "visually-hidden", text: " of " }), el("span", { text: at(clock.duration) })),
    el("div", { class: "player-speed" }, el("label", { for: "replay-speed", text: "Speed" }), ui.speed),
  );
  ui.keys = el(
    "p",
    { class: "muted small player-keys" },
    "Keys: Space or K to play and pause, ← and → to move 5 seconds, J and L 10 seconds, < and > to change the speed.",
  );

  ui.chapterButtons = replay.chapters.map(chapterButton);
  ui.chapters = replay.chapters.length
    ? el(
        "nav",
        { class: "card chapters", "aria-labelledby": "chapters-heading" },
        el("h2", { id: "chapters-heading", text: "Chapters" }),
        el("ol", { class: "chapter-list" }, ui.chapterButtons.map((b) => el("li", {}, b))),
      )
    : null;

  // The side panel: chat and questions as they were at this moment.
  ui.chatCount = el("span", { class: "muted" });
  ui.chatList = el("ul", { class: "chat-list replay-list", "aria-labelledby": "replay-chat-heading" });
  ui.questionCount = el("span", { class: "muted" });
  ui.questionList = el("ul", { class: "question-list replay-list", "aria-labelledby": "replay-questions-heading" });
  const hasPolls = replay.feed.some((e) => e.type === "poll");
  ui.pollList = hasPolls ? el("div", { class: "replay-polls" }) : null;
  ui.panel = el(
    "aside",
    { class: "card room-panel replay-panel", "aria-label": "Chat and questions at this point" },
    el("section", { class: "replay-section", "aria-labelledby": "replay-chat-heading" }, el("h2", { id: "replay-chat-heading" }, "Chat ", ui.chatCount), ui.chatList),
    el("section", { class: "replay-section", "aria-labelledby": "replay-questions-heading" }, el("h2", { id: "replay-questions-heading" }, "Questions ", ui.questionCount), ui.questionList),
    hasPolls ? el("section", { class: "replay-section", "aria-labelledby": "replay-polls-heading" }, el("h2", { id: "replay-polls-heading", text: "Polls" }), ui.pollList) : null,
  );

  ui.watched = el("p", { class: "replay-watched", id: "replay-watched", text: watchedText(replay.watchedMs, clock.duration) });
  ui.notice = el("div", { class: "status", role: "alert", hidden: true });
  ui.download = el("p", { class: "replay-download", "aria-live": "polite" });
  showDownload(recording);
  const when = `${formatInstant(recording.started_at, zone)} ${zoneAbbr(started, zone)}`;
  content.replaceChildren(
    el("p", {}, el("a", { href: `/session.html?id=${recording.session_id}`, text: "← Back to the session page" })),
    el(
      "div",
      { class: "replay-head" },
      el("p", { class: "kind", text: recording.status === "recovered" ? "Replay (recovered after an interruption)" : "Replay" }),
      el("h1", { id: "replay-title", text: recording.session_title }),
      el("p", { class: "replay-meta" }, el("time", { datetime: started, text: `Recorded ${when}` }), ` · ${formatLength(clock.duration)}`),
      ui.watched,
      ui.download,
    ),
    ui.notice,
    el(
      "div",
      { class: "room replay" },
      el("div", { class: "room-stage" }, ui.stage, ui.player, ui.keys, ui.chapters),
      ui.panel,
    ),
  );
  content.removeAttribute("aria-busy");
}

/** Which videos show at `position`: the latest screen large, the cameras as tiles. */
function layout(position) {
  // At the very end, the last frames stay on screen; a camera that starts
  // within the next second already shows its first frame (rather than an
  // empty stage at 0:00 while the first keyframe was on its way).
  const moment = Math.min(position, clock.duration - 1);
  const showing = replay.media.filter((m) => m.tile && (inside(m, moment) || (m.start > moment && m.start - moment <= 1000)));
  const screens = showing.filter((m) => m.screen);
  const big = screens.length ? screens[screens.length - 1] : null;
  const cameras = showing.filter((m) => !m.screen);
  const key = [big?.track.file, ...cameras.map((m) => m.track.file)].join("|");
  if (key === layoutKey) return;
  layoutKey = key;
  for (const m of replay.media) if (m.tile) m.tile.hidden = !(m === big || cameras.includes(m));
  ui.stageMain.hidden = !big;
  ui.stage.classList.toggle("has-screen", Boolean(big));
  ui.tiles.dataset.count = String(cameras.length);
  ui.tiles.hidden = cameras.length === 0;
  ui.stageEmpty.hidden = Boolean(big || cameras.length);
}

function chatItem(message, t) {
  return el(
    "li",
    { dataset: { id: String(message.id) } },
    el("p", { class: "talk-meta" }, el("strong", { text: message.author_name || "Someone" }), el("span", { text: at(t) })),
    el("p", { class: "talk-body", text: message.body }),
  );
}

function questionItem(question, t) {
  const votes = question.votes || 0;
  return el(
    "li",
    { class: [question.answered ? "question-answered" : "", question.highlighted ? "question-highlighted" : ""].join(" ").trim() || null },
    el(
      "p",
      { class: "talk-meta" },
      el("strong", { text: question.author_name || "Someone" }),
      el("span", { text: at(t) }),
      el("span", { text: `${votes} ${votes === 1 ? "vote" : "votes"}` }),
      question.answered ? el("span", { class: "badge badge-ok", text: "Answered" }) : null,
    ),
    el("p", { class: "talk-body", text: question.body }),
  );
}

function pollItem(poll, results) {
  return el(
    "div",
    { class: "card poll" },
    el("h3", { text: poll.question }),
    results
      ? el("div", { class: "poll-results" }, el("p", { class: "muted small", text: `${results.ballots} ${results.ballots === 1 ? "vote" : "votes"}` }), resultBars(results))
      : el("ul", {}, poll.options.map((o) => el("li", { text: o.label }))),
    results ? null : el("p", { class: "muted small", text: "The results were not shown at this point." }),
  );
}

/** The chat, questions and polls as they stood at `position`: only events up to it. */
function renderFeed(position) {
  let count = 0;
  while (count < replay.feed.length && replay.feed[count].t <= position) count += 1;
  if (count === shownEvents) return;
  const grew = count > shownEvents;
  shownEvents = count;
  const chat = new Map();
  const questions = new Map();
  const polls = new Map();
  const results = new Map();
  let speaker = null;
  for (const e of replay.feed.slice(0, count)) {
    if (e.type === "chat") chat.set(e.message.id, chatItem(e.message, e.t));
    else if (e.type === "chat_deleted") chat.delete(e.id);
    else if (e.type === "question") questions.set(e.question.id, [e.question, questions.get(e.question.id)?.[1] ?? e.t]);
    else if (e.type === "question_deleted") questions.delete(e.id);
    else if (e.type === "poll") polls.set(e.poll.id, e.poll);
    else if (e.type === "poll_results") results.set(e.results.poll_id, e.results);
    else if (e.type === "active_speaker") speaker = e.participant_id;
  }
  const follow = ui.chatList.scrollHeight - ui.chatList.scrollTop - ui.chatList.clientHeight < 40;
  ui.chatList.replaceChildren(...(chat.size ? chat.values() : [el("li", { class: "empty-note muted", text: "Nothing in the chat yet at this point." })]));
  if (grew && follow) ui.chatList.scrollTop = ui.chatList.scrollHeight;
  ui.chatCount.textContent = chat.size ? `(${chat.size})` : "";
  ui.questionList.replaceChildren(
    ...(questions.size
      ? [...questions.values()].map(([q, t]) => questionItem(q, t))
      : [el("li", { class: "empty-note muted", text: "No questions yet at this point." })]),
  );
  ui.questionCount.textContent = questions.size ? `(${questions.size})` : "";
  if (ui.pollList) {
    ui.pollList.replaceChildren(
      ...(polls.size
        ? [...polls.values()].filter((p) => p.status !== "draft").map((p) => pollItem(p, results.get(p.id)))
        : [el("p", { class: "muted", text: "No polls yet at this point." })]),
    );
  }
  for (const m of replay.media) if (m.tile) m.tile.classList.toggle("speaking", speaker != null && String(speaker) === m.track.participant_id && !m.screen);
}

function render(position) {
  layout(position);
  renderFeed(position);
  const label = clock.playing ? "Pause" : position >= clock.duration && clock.duration > 0 ? "Play again" : "Play";
  if (ui.play.textContent !== label) ui.play.textContent = label;
  const second = Math.floor(position / 1000);
  if (!scrubbing) {
    ui.seek.value = String(position);
    if (second !== lastSecond) {
      ui.current.textContent = at(position);
      ui.seek.setAttribute("aria-valuetext", `${at(position)} of ${at(clock.duration)}`);
    }
  }
  lastSecond = second;
  ui.stage.classList.toggle("is-loading", clock.holding);
  let current = -1;
  replay.chapters.forEach((c, i) => {
    if (c.t <= position) current = i;
  });
  ui.chapterButtons.forEach((b, i) => (i === current ? b.setAttribute("aria-current", "true") : b.removeAttribute("aria-current")));
}

// ---------------------------------------------------------------- keyboard

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typing = target instanceof HTMLElement && (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName) || (target.tagName === "INPUT" && target.type !== "range"));
  if (typing) return;
  const onButton = target instanceof HTMLElement && (target.tagName === "BUTTON" || target.tagName === "A");
  const position = clock.now();
  switch (event.key) {
    case " ":
      if (onButton) return; // the button's own click
      toggle();
      break;
    case "k":
    case "K":
      toggle();
      break;
    case "ArrowLeft":
      seek(position - SMALL_STEP);
      break;
    case "ArrowRight":
      seek(position + SMALL_STEP);
      break;
    case "j":
    case "J":
      seek(position - BIG_STEP);
      break;
    case "l":
    case "L":
      seek(position + BIG_STEP);
      break;
    case "<":
      stepSpeed(-1);
      break;
    case ">":
      stepSpeed(1);
      break;
    default:
      return;
  }
  event.preventDefault();
}

// ---------------------------------------------------------------- start

async function start() {
  const user = await setupPage();
  content.removeAttribute("aria-busy");
  if (!recordingId) {
    stop(content, "Recording not found", "The link is missing the recording's number.", el("a", { href: "/my.html", text: "Your sessions" }));
    return;
  }
  if (!user) {
    stop(content, "Sign in to watch this replay", "Replays are for the session's registered participants.", el("a", { class: "button", href: `/signin.html?next=${encodeURIComponent(here())}`, text: "Sign in" }));
    return;
  }
  let recording;
  try {
    recording = await api(`/api/recordings/${encodeURIComponent(recordingId)}`);
  } catch (e) {
    if (e.status === 403) {
      stop(content, "You can't watch this replay", "Only the session's registered participants can watch this replay.", el("a", { href: "/index.html", text: "See the programme" }));
    } else if (e.status === 404) {
      stop(content, "Recording not found", "This recording does not exist, or it has been deleted.", el("a", { href: "/my.html", text: "Your sessions" }));
    } else {
      stop(content, "The replay could not be loaded", e.message, el("a", { href: here(), text: "Try again" }));
    }
    return;
  }
  if (recording.status === "recording" || recording.duration_ms == null) {
    stop(
      content,
      "This session is still being recorded",
      "The replay can be watched as soon as the host stops the recording.",
      el("a", { href: `/session.html?id=${recording.session_id}`, text: "Back to the session page" }),
    );
    return;
  }
  replay.recording = recording;
  replay.watchedMs = recording.watched_ms;
  clock.duration = recording.duration_ms;
  replay.chapters = recording.timeline.filter((e) => e.type === "chapter").map((e) => ({ t: e.t, title: e.title, by: e.by }));
  const FEED = new Set(["chat", "chat_deleted", "question", "question_deleted", "poll", "poll_results", "active_speaker"]);
  replay.feed = recording.timeline.filter((e) => FEED.has(e.type)).sort((a, b) => a.t - b.t);
  replay.media = buildMedia(recording.tracks);
  build(recording, user);
  if (!replay.media.length) say(ui.notice, "Nothing was recorded from the stage: this replay has the chat and questions only.", "info");

  document.addEventListener("keydown", onKey);
  setInterval(() => {
    if (clock.playing) report();
  }, REPORT_MS);
  // Animation frames stop in a background tab; the sound and the clock go on.
  setInterval(() => {
    if (document.hidden) tick();
  }, 250);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) report({ keepalive: true });
  });
  window.addEventListener("pagehide", () => {
    closeSegment();
    report({ keepalive: true });
  });
  loop();
}

start();
