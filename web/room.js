// The live room: joins the session's SFU over the signalling WebSocket
// (docs/signalling.md), shows who is on stage, plays what they send, and lets
// presenters and organisers publish their camera, microphone and screen.
//
// One RTCPeerConnection carries everything. The server offers what we
// receive (we answer); we offer what we publish. This is perfect negotiation
// with us as the polite peer: an offer from the server that crosses ours wins
// (ours is rolled back), and we offer again right after answering it. Every step
// that reads or changes the signalling state runs on one queue, in order, and
// each description is sent as what it is (`localDescription.type`).

import { api, el, formatDay, formatTime, param, setupPage, stop, viewerZone } from "/app.js";
import { createPanel } from "/room-talk.js";
import { createGroups } from "/room-groups.js";
import { createRecording } from "/room-recording.js";
import { reflectionPrompt } from "/reflect.js";

const sessionId = Number(param("id"));
const content = document.getElementById("content");
const connectionText = document.getElementById("connection");
const banner = document.getElementById("banner");
const title = document.getElementById("room-title");

/** Close codes after which we do not come back by ourselves. */
const FINAL_CLOSES = {
  1000: ["You are out of the room", "You have left the session."],
  4009: ["You are out of the room", "You joined this session somewhere else (another tab or device), so this page has let go."],
  4010: ["This session has ended", "Thank you for joining. Recordings and resources, if there are any, will be on the session page."],
  4012: ["You were removed from this session", "A host removed you from the live session. If you think this was a mistake, contact the organiser."],
};

/** Everything the page knows; on `window` so tests can read the connection's stats. */
const room = {
  session: null,
  ticket: null,
  ticketAt: 0,
  me: null,
  ws: null,
  pc: null,
  state: "connecting",
  user: null,
  phase: "lobby", // lobby (attendees wait, presenters are backstage), live, ended
  hostMuted: new Set(), // kinds a host muted for us: they stay off until a host lifts the mute
  invited: new Set(), // participant ids a host (we) invited on stage, until they answer
  stale: [], // transceivers of an earlier time on stage (a host took us off): never reused
  participants: new Map(), // id -> {id, name, grants}
  tracks: new Map(), // room track id -> {id, participant_id, kind, mime_type}
  received: new Map(), // room track id -> MediaStreamTrack
  frames: new Map(), // room track id -> {decoded, changedAt}
  local: null, // MediaStream: camera and microphone
  devices: { camera: null, mic: null }, // the devices last used, to open again in a breakout group
  screen: null, // MediaStream: the shared screen
  transceivers: { audio: null, video: null, screen: null },
  micOn: true,
  cameraOn: true,
  leaving: false,
  attempts: 0,
  metrics: { joinSentAt: 0, welcomeAt: 0, firstFrameAt: 0, firstAudioAt: 0 },
  speaker: null, // participant id of the active speaker
  breakout: null, // the server's last breakout state ({open, groups, ends_at, returning_at, allow_leave})
  connections: 0, // how many times we have connected (1 + reconnects)
  closes: [], // close codes seen, for diagnosis
};
window.staffroomRoom = room;

let inbox = Promise.resolve(); // incoming messages and our own offers, one after another
let wantOffer = false; // something of ours is not negotiated yet (or the server refused our offer in a glare)
let statsTimer = null;
let reconnectTimer = null;

// ---------------------------------------------------------------- page

const ui = {};

function setState(state, text) {
  room.state = state;
  connectionText.dataset.state = state;
  connectionText.textContent = text;
}

function showBanner(text, kind = "info") {
  banner.replaceChildren();
  if (!text) {
    banner.hidden = true;
    return;
  }
  banner.className = `status status-${kind}`;
  banner.hidden = false;
  if (text instanceof Node) banner.append(text);
  else banner.textContent = text;
}

function backLink(text = "Back to the session page") {
  return el("a", { href: `/session.html?id=${sessionId}`, text });
}

function controlButton(label, onclick, extra = {}) {
  return el("button", { type: "button", class: "button-secondary control", text: label, onclick, ...extra });
}

function buildRoom() {
  ui.stageMain = el("div", { class: "stage-main", hidden: true });
  ui.tiles = el("div", { class: "stage-tiles" });
  ui.stageEmpty = el("p", { class: "stage-empty", text: "Waiting for the presenters to start their cameras…" });
  ui.prejoin = el("div", { class: "prejoin", hidden: true });
  ui.audio = el("div", { hidden: true });
  // Space kept under the stage for live captions, so they will not shift the layout when they come.
  ui.captions = el("div", { class: "captions", role: "region", "aria-label": "Live captions", "aria-live": "polite" });
  ui.stage = el("section", { class: "stage", "aria-label": "Stage" }, ui.prejoin, ui.stageMain, ui.tiles, ui.stageEmpty, ui.audio, ui.captions);

  ui.mic = controlButton("Microphone on", toggleMic, { "aria-pressed": "true", hidden: true, dataset: { toggle: "mic" } });
  ui.camera = controlButton("Camera on", toggleCamera, { "aria-pressed": "true", hidden: true, dataset: { toggle: "camera" } });
  // In place of a toggle the person cannot use: only a host lifts a host's mute.
  ui.micHeld = el("span", { class: "control control-held", role: "status", hidden: true, text: "Mic muted by a host" });
  ui.cameraHeld = el("span", { class: "control control-held", role: "status", hidden: true, text: "Camera muted by a host" });
  ui.share = controlButton("Share screen", toggleShare, { "aria-pressed": "false", hidden: true });
  ui.sound = el("button", { type: "button", class: "control", text: "Enable sound", hidden: true, onclick: enableSound });
  ui.leave = el("button", { type: "button", class: "button-danger control", text: "Leave", onclick: leave });
  ui.controls = el("div", { class: "controls", role: "toolbar", "aria-label": "Room controls" }, ui.mic, ui.micHeld, ui.camera, ui.cameraHeld, ui.share, ui.sound, ui.leave);

  ui.groups = createGroups({
    send,
    me: () => room.me,
    participants: () => room.participants,
    nameOf: (id) => (room.me && String(id) === String(room.me.id) ? `${room.me.name} (you)` : room.participants.get(String(id))?.name || "Someone"),
    onChange: groupChanged,
    alert: (text) => {
      showBanner(text, "info");
      banner.dataset.source = text ? "groups" : "";
    },
    tell: (text) => ui.talk.tell(text),
  });
  ui.talk = createPanel({
    send,
    me: () => room.me,
    participants: () => room.participants,
    personActions,
    extraTabs: [{ key: "groups", label: "Groups", node: ui.groups.tabNode, hidden: true }],
  });
  ui.groups.onHelpCount((n) => ui.talk.setCount("groups", n));
  ui.controls.insertBefore(ui.talk.handButton, ui.sound);
  ui.panel = ui.talk.node;

  // Backstage and the host's go-live and end buttons, above the stage.
  // Who takes the room live is said plainly: presenters wait for a host.
  ui.whoGoesLive = el("span", {});
  ui.backstage = el(
    "p",
    { class: "backstage-note" },
    el("strong", { text: "Backstage" }),
    " — attendees can't see or hear you yet. ",
    ui.whoGoesLive,
  );
  ui.liveNote = el("p", { class: "live-note" }, el("strong", { text: "Live" }), " — attendees can see and hear everyone on stage.");
  ui.goLive = el("button", { type: "button", class: "go-live", text: "Go live", onclick: goLive });
  ui.endSession = el("button", { type: "button", class: "button-danger", text: "End session for everyone", onclick: endSession });
  ui.recording = createRecording({
    send,
    isHost: runsRoom,
    alert: (text, kind) => showBanner(text, kind),
  });
  ui.phaseBar = el(
    "div",
    { class: "phase-bar", hidden: true },
    ui.backstage,
    ui.liveNote,
    el("div", { class: "phase-actions" }, ui.recording.controls, ui.goLive, ui.endSession),
  );
  ui.phaseSay = el("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });

  // The lobby: attendees wait here until a host goes live.
  ui.lobbyStart = el("p", { class: "lead" });
  ui.lobbyCount = el("p", { class: "lobby-count" });
  ui.lobby = el(
    "section",
    { class: "lobby", "aria-labelledby": "lobby-heading", hidden: true },
    el("h2", { id: "lobby-heading", text: "You're in the lobby" }),
    ui.lobbyStart,
    ui.lobbyCount,
    el("p", { class: "muted", text: "You can chat and ask questions while you wait. Keep this page open: the session appears here by itself when it starts." }),
  );

  content.replaceChildren(
    el("div", { class: "room" }, el("div", { class: "room-stage" }, ui.recording.indicator, ui.phaseBar, ui.phaseSay, ui.groups.note, ui.groups.mainNote, ui.groups.bar, ui.lobby, ui.stage, ui.controls), ui.panel),
  );
  content.removeAttribute("aria-busy");
}

/** Whether we may take the room live, record and run breakouts: hosts, and presenters an organiser made co-host. */
function runsRoom() {
  return Boolean(room.me?.grants?.host || room.me?.grants?.cohost);
}

/** The backstage line on who takes the room live: us, the hosts here, or a host still to come. */
function whoGoesLiveText() {
  if (room.me?.grants?.host) return "You take the room live when you are ready.";
  const runners = [...room.participants.values()].filter((p) => p.grants?.host || p.grants?.cohost).map((p) => p.name);
  if (room.me?.grants?.cohost) return "You are a co-host: you (or a host) take the room live when you are ready.";
  if (runners.length) return `${runners.join(" or ")} will take the room live: wait here until then.`;
  return "A host takes the room live; no host is here yet.";
}

/** Whether we may publish now: a presenter or host, an attendee a host brought on stage, or anyone in a breakout group. */
function mayPublish() {
  return Boolean(room.me && (room.me.grants?.publish || room.me.on_stage || ui.groups?.myGroup()));
}

function startsText() {
  const starts = room.session?.starts_at;
  if (!starts) return "The session starts soon — the host will let everyone in.";
  if (new Date(starts).getTime() <= Date.now()) return "The session is about to start — the host will let everyone in.";
  return `The session starts at ${formatTime(starts, viewerZone(room.user))} — the host will let everyone in.`;
}

/** Shows the lobby, backstage or live state for who we are. */
function renderPhase() {
  if (!ui.lobby) return;
  const connected = Boolean(room.me);
  const host = Boolean(room.me?.grants?.host);
  const runs = runsRoom();
  const inLobby = connected && room.phase === "lobby" && !mayPublish() && ui.prejoin.hidden;
  ui.lobby.hidden = !inLobby;
  ui.stage.hidden = inLobby;
  ui.talk.handButton.hidden = inLobby; // hands are for the live session
  if (inLobby) {
    ui.lobbyStart.textContent = startsText();
    const n = room.participants.size + 1;
    ui.lobbyCount.textContent = n === 1 ? "You are the first one here." : `${n} people are here, including you.`;
  }
  // In a breakout group an attendee may speak, but is not on the main stage: no stage bar for them.
  const backstage = connected && Boolean(room.me.grants?.publish || room.me.on_stage);
  ui.phaseBar.hidden = !(backstage || (runs && connected));
  ui.backstage.hidden = room.phase !== "lobby";
  ui.whoGoesLive.textContent = whoGoesLiveText();
  ui.liveNote.hidden = room.phase !== "live";
  ui.goLive.hidden = !(runs && room.phase === "lobby");
  ui.endSession.hidden = !(host && room.phase === "live");
  ui.recording.render();
  ui.phaseBar.dataset.phase = room.phase;
  ui.talk.setTabVisible("groups", runs && room.phase !== "ended");
  ui.talk.setChatScope(ui.groups.myGroup());
}

function goLive() {
  ui.goLive.disabled = true;
  send({ type: "go_live" });
  setTimeout(() => (ui.goLive.disabled = false), 3000);
}

async function endSession() {
  const ok = await confirmDialog({
    title: "End the session for everyone?",
    text: "Everyone is disconnected, and no one can join again. This cannot be undone.",
    confirm: "End session",
    danger: true,
  });
  if (ok) send({ type: "end_session" });
}

/**
 * A modal question. Resolves to the confirm button's choice: false for
 * cancel (or Escape), true, or the `checkbox`'s state in an object.
 */
function confirmDialog({ title: heading, text, confirm, cancel = "Cancel", danger = false, checkbox = null }) {
  return new Promise((resolve) => {
    const box = checkbox ? el("input", { type: "checkbox", id: "dialog-check" }) : null;
    const dialog = el("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
    const close = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.append(
      ...[
        el("h2", { id: "dialog-title", text: heading }),
        text ? el("p", { text }) : null,
        box ? el("label", { class: "check", for: "dialog-check" }, box, ` ${checkbox}`) : null,
        el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: danger ? "button-danger-solid" : null, text: confirm, onclick: () => close(box ? { checked: box.checked } : true) }),
          el("button", { type: "button", class: "button-secondary", text: cancel, onclick: () => close(false) }),
        ),
      ].filter(Boolean),
    );
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The host's buttons on someone's row in the people list. */
function personActions(p) {
  if (!room.me?.grants?.host || room.phase === "ended") return null;
  const muted = new Set(p.muted || []);
  const kinds = new Set([...room.tracks.values()].filter((t) => t.participant_id === p.id).map((t) => t.kind));
  const attendee = !p.grants?.publish;
  const button = (text, action, label, onclick, cls = "button-secondary button-small") =>
    el("button", { type: "button", class: cls, text, "aria-label": label, dataset: { action: `${action}:${p.id}` }, onclick });
  return el(
    "div",
    { class: "person-actions" },
    attendee && !p.on_stage
      ? button(room.invited.has(p.id) ? "Invited…" : "Invite to stage", "invite", `Invite ${p.name} to stage`, () => {
          room.invited.add(p.id);
          send({ type: "stage_invite", participant_id: p.id });
          renderPeople();
        })
      : null,
    attendee && p.on_stage ? button("Take off stage", "unstage", `Take ${p.name} off stage`, () => send({ type: "stage_remove", participant_id: p.id })) : null,
    kinds.has("audio") && !muted.has("audio") ? button("Mute mic", "mute-audio", `Mute ${p.name}'s microphone`, () => send({ type: "mute", participant_id: p.id, kind: "audio" })) : null,
    kinds.has("video") && !muted.has("video") ? button("Mute camera", "mute-video", `Mute ${p.name}'s camera`, () => send({ type: "mute", participant_id: p.id, kind: "video" })) : null,
    muted.has("audio") ? button("Unmute mic", "unmute-audio", `Unmute ${p.name}'s microphone`, () => send({ type: "unmute", participant_id: p.id, kind: "audio" })) : null,
    muted.has("video") ? button("Unmute camera", "unmute-video", `Unmute ${p.name}'s camera`, () => send({ type: "unmute", participant_id: p.id, kind: "video" })) : null,
    button("Remove", "remove", `Remove ${p.name}`, () => removePerson(p), "link-button small danger-link"),
  );
}

async function removePerson(p) {
  const answer = await confirmDialog({
    title: `Remove ${p.name} from the session?`,
    text: "Their connection to the room closes at once.",
    confirm: "Remove",
    danger: true,
    checkbox: "Don't let them back in",
  });
  if (answer) send({ type: "remove", participant_id: p.id, bar: answer.checked });
}

// ---------------------------------------------------------------- stage

/** The video tracks of a participant that are being received, oldest published first. */
function videosOf(participantId) {
  const found = [];
  for (const [id, info] of room.tracks) {
    if (info.participant_id === participantId && info.kind === "video" && room.received.has(id)) found.push(info);
  }
  return found.sort((a, b) => trackNumber(a.id) - trackNumber(b.id));
}

function trackNumber(id) {
  const n = Number(String(id).replace(/\D+/g, ""));
  return Number.isFinite(n) ? n : 0;
}

/**
 * Which of a publisher's videos is the camera and which the screen. The
 * protocol does not say; a presenter publishes the camera first and a screen
 * later, so a later video track is a screen share (a `source` field, if the
 * server ever sends one, wins).
 */
function splitVideos(participantId) {
  const videos = videosOf(participantId);
  let screen = videos.find((t) => t.source === "screen") || null;
  let camera = videos.find((t) => t.source === "camera") || null;
  if (!screen && !camera) {
    camera = videos[0] || null;
    screen = videos.length > 1 ? videos[videos.length - 1] : null;
  }
  return { camera, screen };
}

/** A video track counts as live while frames keep arriving (a stopped camera or share sends none). */
function isLive(trackId) {
  const f = room.frames.get(trackId);
  if (!f) return true; // just arrived: give it time
  return f.decoded === 0 ? performance.now() - f.changedAt < 8000 : performance.now() - f.changedAt < 3000;
}

/** A screen is only shown once frames arrive: a stopped share stays published, silent. */
function isShowing(trackId) {
  const f = room.frames.get(trackId);
  return Boolean(f && f.decoded > 0 && performance.now() - f.changedAt < 3000);
}

function nameOf(participantId) {
  if (room.me && participantId === room.me.id) return `${room.me.name} (you)`;
  return room.participants.get(participantId)?.name || "Someone";
}

const tiles = new Map(); // key -> {node, video, track}

function videoTile(key, track, caption, { mirror = false, big = false } = {}) {
  let tile = tiles.get(key);
  if (!tile) {
    const video = el("video", { autoplay: true, playsinline: true, class: mirror ? "mirror" : null });
    video.muted = true; // sound plays through the audio elements
    const label = el("p", { class: "tile-name" });
    const off = el("p", { class: "tile-off", text: "Camera off", hidden: true });
    const node = el("figure", { class: big ? "tile tile-big" : "tile", dataset: { key } }, video, off, label);
    tile = { node, video, label, off, track: null };
    if (!key.endsWith(":me") && video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback(() => {
        if (!room.metrics.firstFrameAt) room.metrics.firstFrameAt = performance.now();
      });
    }
    tiles.set(key, tile);
  }
  if (tile.track !== track) {
    tile.track = track;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) tile.video.play().catch(() => {});
  }
  tile.label.textContent = caption;
  return tile;
}

/** Outlines the tiles of whoever the server says is speaking. */
function markSpeaker() {
  for (const [key, tile] of tiles) {
    const who = key.split(":")[1];
    const pid = who === "me" ? room.me && room.me.id : who;
    tile.node.classList.toggle("speaking", room.activeSpeaker != null && String(pid) === String(room.activeSpeaker));
  }
}

function renderStage() {
  if (!ui.tiles) return;
  const wanted = new Set();
  const small = [];
  let big = null;

  if (room.local && room.transceivers.video) {
    const track = room.local.getVideoTracks()[0] || null;
    const tile = videoTile("cam:me", track, `${room.me ? room.me.name : "You"} (you)`, { mirror: true });
    tile.off.hidden = room.cameraOn;
    wanted.add("cam:me");
    small.push(tile.node);
  }
  if (room.screen) {
    const tile = videoTile("screen:me", room.screen.getVideoTracks()[0], "Your screen", { big: true });
    wanted.add("screen:me");
    big = tile.node;
  }
  // In a breakout group: a tile for everyone in the group, with or without a camera.
  // In the main room while groups run: only those who are in the main room too.
  const group = ui.groups?.myGroup() || null;
  const publishers = new Set([...room.tracks.values()].map((t) => t.participant_id));
  const shown = group ? group.members.map(String) : [...publishers].filter((pid) => !ui.groups?.groupOf(pid));
  for (const pid of shown) {
    if (room.me && pid === room.me.id) continue;
    const { camera, screen } = splitVideos(pid);
    if (camera || group) {
      const key = `cam:${pid}`;
      const tile = videoTile(key, camera ? room.received.get(camera.id) : null, nameOf(pid));
      tile.off.hidden = camera ? isLive(camera.id) : false;
      tile.node.classList.toggle("tile-talking", group !== null && room.speaker === pid);
      wanted.add(key);
      small.push(tile.node);
    }
    if (screen && !big && isShowing(screen.id)) {
      const key = `screen:${pid}`;
      const tile = videoTile(key, room.received.get(screen.id), `${nameOf(pid)}'s screen`, { big: true });
      wanted.add(key);
      big = tile.node;
    }
  }
  for (const [key, tile] of tiles) {
    if (!wanted.has(key)) {
      tile.video.srcObject = null;
      tile.node.remove();
      tiles.delete(key);
    }
  }
  if (big) {
    if (ui.stageMain.firstChild !== big) ui.stageMain.replaceChildren(big);
  } else {
    ui.stageMain.replaceChildren();
  }
  ui.stageMain.hidden = !big;
  ui.stage.classList.toggle("has-screen", Boolean(big));
  // Keep the order stable without detaching playing videos needlessly.
  small.forEach((node, i) => {
    if (ui.tiles.children[i] !== node) ui.tiles.insertBefore(node, ui.tiles.children[i] || null);
  });
  while (ui.tiles.children.length > small.length) ui.tiles.lastChild.remove();
  ui.tiles.dataset.count = String(small.length);
  ui.stage.classList.toggle("in-group", Boolean(group));
  ui.stage.setAttribute("aria-label", group ? `${group.name}: everyone in the group` : "Stage");
  ui.stageEmpty.textContent = group ? "Waiting for the others in your group…" : "Waiting for the presenters to start their cameras…";
  ui.stageEmpty.hidden = Boolean(big || small.length) || !ui.prejoin.hidden;
  markSpeaker();
}

/** One audio element per participant, playing all their audio tracks. */
function renderAudio() {
  if (!ui.audio) return;
  const byParticipant = new Map();
  for (const [id, track] of room.received) {
    const info = room.tracks.get(id);
    if (!info || info.kind !== "audio") continue;
    if (!byParticipant.has(info.participant_id)) byParticipant.set(info.participant_id, []);
    byParticipant.get(info.participant_id).push(track);
  }
  for (const node of [...ui.audio.children]) {
    if (!byParticipant.has(node.dataset.participant)) {
      node.srcObject = null;
      node.remove();
    }
  }
  for (const [pid, list] of byParticipant) {
    let audio = ui.audio.querySelector(`audio[data-participant="${CSS.escape(pid)}"]`);
    if (!audio) {
      audio = el("audio", { autoplay: true, dataset: { participant: pid } });
      ui.audio.append(audio);
    }
    const current = audio.srcObject ? audio.srcObject.getTracks() : [];
    if (current.length !== list.length || current.some((t, i) => t !== list[i])) {
      audio.srcObject = new MediaStream(list);
      audio.play().then(
        () => (ui.sound.hidden = true),
        () => (ui.sound.hidden = false),
      );
    }
  }
}

function enableSound() {
  const plays = [...ui.audio.querySelectorAll("audio")].map((a) => a.play());
  Promise.all(plays).then(
    () => {
      ui.sound.hidden = true;
      ui.leave.focus();
    },
    () => showBanner("The browser is still blocking sound. Try the button again.", "error"),
  );
}

function renderPeople() {
  ui.talk?.renderPeople();
}

/** The microphone and camera toggles while we publish; what a host muted shows as such, with no toggle. */
function renderControls() {
  if (!ui.mic) return;
  const publishing = Boolean(room.local);
  for (const [toggle, held, kind] of [
    [ui.mic, ui.micHeld, "audio"],
    [ui.camera, ui.cameraHeld, "video"],
  ]) {
    const hostMuted = room.hostMuted.has(kind);
    toggle.hidden = !publishing || hostMuted;
    held.hidden = !publishing || !hostMuted;
  }
}

function render() {
  renderControls();
  renderPhase();
  renderStage();
  renderAudio();
  renderPeople();
}

// ---------------------------------------------------------------- media

async function getMedia(cameraId, micId) {
  return navigator.mediaDevices.getUserMedia({
    video: cameraId ? { deviceId: { exact: cameraId } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
    audio: micId ? { deviceId: { exact: micId } } : true,
  });
}

/**
 * The device picker with a preview, for people who may publish (and for an
 * attendee going on stage). Resolves to the stream, or null, once they choose.
 */
function pickDevices({ go = "Join with camera and mic", skip = "Join without camera and mic", heading = "Check your camera and microphone" } = {}) {
  return new Promise((resolve) => {
    const preview = el("video", { autoplay: true, playsinline: true, class: "mirror" });
    preview.muted = true;
    const cameraSelect = el("select", { id: "camera-select" });
    const micSelect = el("select", { id: "mic-select" });
    const note = el("p", { class: "status", role: "status", "aria-live": "polite", hidden: true });
    let stream = null;

    const fill = async () => {
      const devices = await navigator.mediaDevices.enumerateDevices();
      const options = (kind, select, current) => {
        const list = devices.filter((d) => d.kind === kind);
        select.replaceChildren(...list.map((d, i) => el("option", { value: d.deviceId, text: d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${i + 1}` })));
        if (current) select.value = current;
      };
      options("videoinput", cameraSelect, stream?.getVideoTracks()[0]?.getSettings().deviceId);
      options("audioinput", micSelect, stream?.getAudioTracks()[0]?.getSettings().deviceId);
    };
    const open = async (cameraId, micId) => {
      stream?.getTracks().forEach((t) => t.stop());
      stream = null;
      try {
        stream = await getMedia(cameraId, micId);
        preview.srcObject = stream;
        preview.play().catch(() => {});
        note.hidden = true;
        joinButton.disabled = false;
        await fill();
      } catch (e) {
        preview.srcObject = null;
        joinButton.disabled = true;
        note.className = "status status-error";
        note.hidden = false;
        note.textContent =
          e && e.name === "NotAllowedError"
            ? "The browser was not allowed to use your camera and microphone. Allow them in the address bar, or join without them."
            : "Your camera or microphone could not be started. Check that no other app is using them, or join without them.";
      }
    };
    const done = (value) => {
      ui.prejoin.hidden = true;
      ui.prejoin.replaceChildren();
      renderPhase();
      renderStage();
      resolve(value);
    };
    const joinButton = el("button", { type: "button", text: go, disabled: true, onclick: () => done(stream) });
    const without = el("button", {
      type: "button",
      class: "button-secondary",
      text: skip,
      onclick: () => {
        stream?.getTracks().forEach((t) => t.stop());
        done(null);
      },
    });
    cameraSelect.addEventListener("change", () => open(cameraSelect.value, micSelect.value));
    micSelect.addEventListener("change", () => open(cameraSelect.value, micSelect.value));
    ui.prejoin.replaceChildren(
      el("h2", { text: heading }),
      el("div", { class: "prejoin-preview" }, preview),
      el("div", { class: "field" }, el("label", { class: "label", for: "camera-select", text: "Camera" }), cameraSelect),
      el("div", { class: "field" }, el("label", { class: "label", for: "mic-select", text: "Microphone" }), micSelect),
      note,
      el("div", { class: "actions" }, joinButton, without),
    );
    ui.prejoin.hidden = false;
    renderPhase();
    renderStage();
    open();
    joinButton.focus();
  });
}

/** Adds what we publish to a fresh peer connection (on joining, and again after a reconnect). */
function addLocalTracks(pc) {
  room.transceivers = { audio: null, video: null, screen: null };
  if (room.local) {
    const audio = room.local.getAudioTracks()[0];
    const video = room.local.getVideoTracks()[0];
    if (audio) room.transceivers.audio = pc.addTransceiver(audio, { direction: "sendonly", streams: [room.local] });
    if (video) {
      room.transceivers.video = pc.addTransceiver(room.cameraOn ? video : "video", { direction: "sendonly", streams: [room.local] });
    }
  }
  if (room.screen) {
    room.transceivers.screen = pc.addTransceiver(room.screen.getVideoTracks()[0], { direction: "sendonly", streams: [room.screen] });
  }
}

function setMic(on) {
  room.micOn = on;
  for (const t of room.local?.getAudioTracks() || []) t.enabled = on;
  ui.mic.textContent = on ? "Microphone on" : "Microphone off";
  ui.mic.setAttribute("aria-pressed", String(on));
}

async function setCamera(on) {
  room.cameraOn = on;
  const track = room.local?.getVideoTracks()[0] || null;
  // Sending nothing (rather than black frames) lets viewers show "Camera off".
  await room.transceivers.video?.sender.replaceTrack(on ? track : null);
  ui.camera.textContent = on ? "Camera on" : "Camera off";
  ui.camera.setAttribute("aria-pressed", String(on));
  renderStage();
}

function toggleMic() {
  if (room.hostMuted.has("audio")) return; // only a host lifts that (the toggle is hidden meanwhile)
  setMic(!room.micOn);
}

async function toggleCamera() {
  if (room.hostMuted.has("video")) return;
  await setCamera(!room.cameraOn);
}

/** Before adding our tracks to a connection: what a host muted starts off. */
function keepHostMutes() {
  if (room.hostMuted.has("audio")) setMic(false);
  if (room.hostMuted.has("video")) {
    room.cameraOn = false;
    ui.camera.textContent = "Camera off";
    ui.camera.setAttribute("aria-pressed", "false");
  }
}

/**
 * A host muted our microphone or camera: the server already stopped
 * forwarding it, and it stays muted until a host lifts the mute (the server
 * refuses ours). We may raise a hand to ask.
 */
async function hostMuted(kind) {
  room.hostMuted.add(kind);
  if (kind === "audio") {
    setMic(false);
    showBanner("A host muted your microphone. Only a host can turn it back on: raise your hand if you want to speak.", "info");
  } else {
    await setCamera(false);
    showBanner("A host turned off your camera. Only a host can turn it back on: raise your hand to ask.", "info");
  }
  render();
}

/** A host lifted their mute: the toggle is back, still off until we turn it on. */
function hostUnmuted(kind) {
  room.hostMuted.delete(kind);
  showBanner(kind === "audio" ? "A host unmuted your microphone: turn it on when you want to speak." : "A host unmuted your camera: turn it on when you are ready.", "info");
  render();
}

// ---------------------------------------------------------------- breakout groups

function rememberDevices() {
  const camera = room.local?.getVideoTracks()[0]?.getSettings().deviceId;
  const mic = room.local?.getAudioTracks()[0]?.getSettings().deviceId;
  if (camera) room.devices.camera = camera;
  if (mic) room.devices.mic = mic;
}

/**
 * Our group changed (`after` null: the main room). In a group everyone may
 * speak: an attendee's camera and microphone open with the devices used
 * before; back in the main room they stop, unless we are a presenter or on stage.
 */
async function groupChanged(before, after) {
  const ws = room.ws;
  const keeps = Boolean(room.me?.grants?.publish || room.me?.on_stage);
  if (!after) {
    if (room.local && !keeps) await stopPublishing(null); // the move note says where we are
    render();
    return;
  }
  if (keeps) {
    ui.groups.say(`You are in ${after.name}.`);
    return;
  }
  if (!room.local && navigator.mediaDevices?.getUserMedia) {
    let stream = null;
    try {
      stream = await getMedia(room.devices.camera, room.devices.mic);
    } catch {
      try {
        stream = room.devices.camera || room.devices.mic ? await getMedia() : null;
      } catch {
        stream = null;
      }
    }
    if (ws !== room.ws || room.leaving || ui.groups.myGroup()?.id !== after.id || room.local) {
      stream?.getTracks().forEach((t) => t.stop());
      return;
    }
    if (!stream) {
      ui.groups.say(`You are in ${after.name}. Your camera and microphone could not be started: the group can't see or hear you, but you can still see and hear them and use the chat.`, { sticky: true });
      return;
    }
    room.local = stream;
    room.micOn = room.cameraOn = true;
  }
  if (room.local && !room.transceivers.audio && !room.transceivers.video) startPublishing(`You are in ${after.name}: the group can see and hear you.`);
  ui.groups.say(`You are in ${after.name}. Your camera and microphone are on: use the buttons below the video to turn them off.`);
}

// ---------------------------------------------------------------- stage (attendees)

let inviteOpen = false;

/** A host invites us on stage: accept (device check, then publish) or decline. */
async function invitedOnStage(by) {
  if (inviteOpen || mayPublish()) return;
  inviteOpen = true;
  const ws = room.ws;
  const yes = await confirmDialog({
    title: `${by || "A host"} invites you on stage`,
    text: "Everyone in the session will see and hear you. You can check your camera and microphone first.",
    confirm: "Accept",
    cancel: "Decline",
  });
  inviteOpen = false;
  if (ws !== room.ws) return; // reconnected meanwhile: the invitation is gone
  if (!yes) return send({ type: "stage_decline" });
  const stream = await pickDevices({ heading: "Check your camera and microphone before going on stage", go: "Go on stage", skip: "Cancel" });
  if (ws !== room.ws || room.leaving) {
    stream?.getTracks().forEach((t) => t.stop());
    return;
  }
  if (!stream) return send({ type: "stage_decline" });
  room.local = stream;
  room.micOn = room.cameraOn = true;
  send({ type: "stage_accept" }); // publishing starts when the server says we are on stage
}

/** We are on stage (or in a breakout group) now: send what the device picker opened. */
function startPublishing(said = "You are on stage: everyone can see and hear you.") {
  const pc = room.pc;
  if (!pc || !room.local || room.transceivers.audio || room.transceivers.video) return;
  // Tracks withdrawn by an earlier "take off stage" stay withdrawn: new transceivers carry the new ones.
  for (const t of room.stale) {
    try {
      t.direction = "inactive";
    } catch {
      // already stopped
    }
  }
  room.stale = [];
  setMic(true);
  ui.camera.textContent = "Camera on";
  ui.camera.setAttribute("aria-pressed", "true");
  keepHostMutes();
  addLocalTracks(pc); // negotiationneeded: we offer
  ui.phaseSay.textContent = said;
  render();
}

/** A host took us off stage (or the stage was lost): stop sending, release the devices. */
async function stopPublishing(message) {
  rememberDevices();
  for (const t of Object.values(room.transceivers)) {
    if (!t) continue;
    try {
      await t.sender.replaceTrack(null);
    } catch {
      // the connection is gone
    }
    room.stale.push(t);
  }
  room.transceivers = { audio: null, video: null, screen: null };
  room.local?.getTracks().forEach((t) => t.stop());
  room.local = null;
  if (message) showBanner(message, "info");
  render();
}

async function toggleShare() {
  if (room.screen) return stopShare();
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch {
    return; // they chose not to share
  }
  const track = stream.getVideoTracks()[0];
  track.contentHint = "detail";
  room.screen = stream;
  track.addEventListener("ended", () => stopShare());
  const t = room.transceivers.screen;
  if (t && room.pc) {
    // Reuse the screen's transceiver, so viewers keep the same track.
    t.direction = "sendonly";
    await t.sender.replaceTrack(track);
  } else if (room.pc) {
    room.transceivers.screen = room.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  ui.share.textContent = "Stop sharing";
  ui.share.setAttribute("aria-pressed", "true");
  renderStage();
}

async function stopShare() {
  if (!room.screen) return;
  room.screen.getTracks().forEach((t) => t.stop());
  room.screen = null;
  const t = room.transceivers.screen;
  if (t && room.pc && room.pc.connectionState !== "closed") {
    await t.sender.replaceTrack(null);
    t.direction = "inactive";
  }
  ui.share.textContent = "Share screen";
  ui.share.setAttribute("aria-pressed", "false");
  renderStage();
}

// ---------------------------------------------------------------- signalling

function send(message) {
  const ws = room.ws;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: 1, ...message }));
}

function newPeerConnection() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addEventListener("icecandidate", (e) => {
    if (pc !== room.pc) return;
    send({ type: "candidate", candidate: e.candidate && e.candidate.candidate ? e.candidate.toJSON() : null });
  });
  pc.addEventListener("negotiationneeded", () => {
    if (pc !== room.pc) return;
    wantOffer = true;
    queue(() => offer(pc), "offer");
  });
  pc.addEventListener("track", (e) => {
    if (pc !== room.pc) return;
    const track = e.track;
    room.received.set(track.id, track);
    room.frames.delete(track.id);
    track.addEventListener("ended", () => {
      if (room.received.get(track.id) === track) room.received.delete(track.id);
      render();
    });
    render();
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc !== room.pc) return;
    const s = pc.connectionState;
    if (s === "connected") {
      room.attempts = 0;
      setState("connected", "Connected");
      showBanner(null);
    } else if (s === "disconnected") {
      setState("reconnecting", "Reconnecting…");
    } else if (s === "failed") {
      // No ICE restart yet: join again, which gives a fresh connection.
      reconnect("The media connection was lost.");
    }
  });
  return pc;
}

/**
 * Runs `step` after every signalling step queued before it. Without this, an
 * offer of ours could be made while the server's offer was being applied: the
 * browser would then make an answer where we meant an offer (and an offer
 * where we meant the answer), the two sent the wrong way round, and the
 * negotiation stalled with neither side's offer answered.
 */
function queue(step, what) {
  inbox = inbox.then(step).catch((err) => console.warn("signalling step failed", what, err));
}

/** Sends what we just set locally, as what it is. */
function sendLocal(pc) {
  const d = pc.localDescription;
  send({ type: d.type, sdp: d.sdp });
}

/** Offers what we publish, if something waits for it and no exchange is under way (its end calls us again). */
async function offer(pc) {
  if (pc !== room.pc || pc.connectionState === "closed" || !wantOffer || pc.signalingState !== "stable") return;
  wantOffer = false;
  await pc.setLocalDescription();
  sendLocal(pc);
}

async function handle(ws, message) {
  if (ws !== room.ws) return;
  if (message.type === "active_speaker") room.speaker = message.participant_id;
  if (ui.groups && ui.groups.handle(message)) {
    if (message.type === "breakout") {
      room.breakout = message.breakout;
      // Broadcasts and help calls belong to the groups: they go when the groups close.
      if (!message.breakout.open && banner.dataset.source === "groups") {
        showBanner(null);
        banner.dataset.source = "";
      }
      render();
    }
    return;
  }
  if (ui.talk && ui.talk.handle(message)) return;
  if (ui.recording?.handle(message)) return;
  const pc = room.pc;
  switch (message.type) {
    case "welcome": {
      room.metrics.welcomeAt = performance.now();
      room.me = message.you;
      room.participants = new Map(message.participants.map((p) => [p.id, p]));
      room.tracks = new Map(message.tracks.map((t) => [t.id, t]));
      room.phase = message.phase || "live";
      room.hostMuted = new Set(message.you.muted || []);
      room.invited.clear();
      room.stale = [];
      if (ui.groups.myGroup() && room.local && !room.me.grants?.publish && !room.me.on_stage) {
        // We were in a group: the server sends the groups again, and we publish again when it places us.
        await stopPublishing(null);
      }
      ui.groups.reset();
      if (room.local && !mayPublish()) {
        // We were on stage before the connection dropped: a new connection starts off stage.
        await stopPublishing("You are back in the room, off stage: the connection dropped. A host can invite you again.");
      }
      ui.talk.reset();
      ui.recording.reset();
      ui.share.hidden = !room.me.grants?.publish || !navigator.mediaDevices?.getDisplayMedia;
      // Presenters publish; so does an attendee the server put back on stage after a dropped connection.
      if (room.me.grants?.publish || (room.local && mayPublish())) {
        keepHostMutes();
        addLocalTracks(pc);
      }
      if (pc.connectionState !== "connected") {
        // Nothing to receive or send yet (an attendee in the lobby, an empty stage): the room is joined all the same.
        const receiving = (room.phase === "live" || mayPublish()) && [...room.tracks.values()].some((t) => t.participant_id !== room.me.id);
        const idle = !room.local && !receiving;
        setState(idle ? "connected" : "connecting", idle ? "Connected" : "Connecting media…");
      }
      render();
      break;
    }
    case "offer": {
      // Polite: an offer of ours that crossed this one is rolled back, and made again after.
      if (pc.signalingState === "have-local-offer") wantOffer = true;
      await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      await pc.setLocalDescription();
      sendLocal(pc);
      await offer(pc);
      break;
    }
    case "answer":
      if (pc.signalingState === "have-local-offer") await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      await offer(pc);
      break;
    case "candidate":
      if (message.candidate) {
        try {
          await pc.addIceCandidate(message.candidate);
        } catch (e) {
          console.debug("candidate refused", e);
        }
      }
      break;
    case "participant_joined":
      room.participants.set(message.participant.id, message.participant);
      render();
      break;
    case "participant_updated": {
      const p = message.participant;
      if (room.me && p.id === room.me.id) {
        const wasOnStage = Boolean(room.me.on_stage);
        room.me = { ...room.me, ...p };
        room.hostMuted = new Set(p.muted || []);
        if (p.on_stage && !wasOnStage) startPublishing();
        else if (!p.on_stage && wasOnStage && !room.me.grants?.publish) await stopPublishing("A host took you off stage. You are watching again.");
      } else {
        room.participants.set(p.id, { ...room.participants.get(p.id), ...p });
        if (p.on_stage) room.invited.delete(p.id);
      }
      render();
      break;
    }
    case "phase":
      if (message.phase === "ended") {
        finish(...FINAL_CLOSES[4010], "ended");
        break;
      }
      room.phase = message.phase;
      if (room.phase === "live") {
        ui.phaseSay.textContent = mayPublish() ? "You are live: attendees can see and hear you." : "The session has started.";
      }
      render();
      break;
    case "stage_invited":
      invitedOnStage(message.by); // not awaited: messages keep flowing while the dialog is open
      break;
    case "stage_declined":
      room.invited.delete(message.participant_id);
      showBanner(`${nameOf(message.participant_id)} declined the invitation to the stage.`, "info");
      renderPeople();
      break;
    case "muted":
      await hostMuted(message.kind);
      break;
    case "unmuted":
      hostUnmuted(message.kind);
      break;
    case "participant_left":
      room.participants.delete(message.participant_id);
      render();
      break;
    case "track_published":
      room.tracks.set(message.track.id, message.track);
      render();
      break;
    case "active_speaker":
      room.activeSpeaker = message.participant_id;
      markSpeaker();
      break;
    case "track_unpublished":
      room.tracks.delete(message.track_id);
      room.received.delete(message.track_id);
      render();
      break;
    case "error":
      if (message.code === "glare") {
        // The server's offer that ours crossed reached us first: it rolled ours back, and we offered
        // again right after answering it. Only if nothing of ours is under way is there more to do.
        if (pc.signalingState === "stable") {
          wantOffer = true;
          await offer(pc);
        }
      } else if (message.code === "bad_message" && ui.talk) {
        ui.talk.tell(message.message);
      } else if (message.code === "publish_not_allowed") {
        showBanner("You cannot publish in this session: your camera and microphone are not sent.", "error");
      } else {
        // A refusal (not a host, the wrong moment, …): say so where the person looks.
        console.warn("room error", message.code, message.message);
        ui.talk?.tell(message.message);
      }
      break;
    default:
      break;
  }
}

/** A room ticket for this session: the one we hold if it is young enough, else a fresh one. */
async function ticket(fresh) {
  if (fresh || !room.ticket || Date.now() - room.ticketAt > 60000) {
    room.ticket = await api(`/api/sessions/${sessionId}/join`, { method: "POST" });
    room.ticketAt = Date.now();
  }
  const t = room.ticket;
  room.ticket = null; // a token opens one connection
  return t;
}

async function connect(fresh = false) {
  clearTimeout(reconnectTimer);
  let t;
  try {
    t = await ticket(fresh);
  } catch (e) {
    if (e.status && e.status < 500) return refused(e);
    return reconnect(e.message);
  }
  teardown();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // The token goes in `join`, not in the URL: URLs end up in access logs.
  const ws = new WebSocket(`${scheme}//${location.host}${t.ws_path}`);
  room.ws = ws;
  room.pc = newPeerConnection();
  wantOffer = false;
  room.connections += 1;
  ws.addEventListener("open", () => {
    room.metrics.joinSentAt = performance.now();
    room.metrics.firstFrameAt = 0;
    room.metrics.firstAudioAt = 0;
    ws.send(JSON.stringify({ v: 1, type: "join", token: t.token }));
  });
  ws.addEventListener("message", (e) => {
    let message;
    try {
      message = JSON.parse(e.data);
    } catch {
      return;
    }
    queue(() => handle(ws, message), message.type);
  });
  ws.addEventListener("close", (e) => {
    room.closes.push(e.code);
    if (ws !== room.ws) return;
    if (room.leaving) return;
    if (FINAL_CLOSES[e.code]) return finish(...FINAL_CLOSES[e.code], e.code === 4010 ? "ended" : "left");
    if (e.code === 4003) return fatal("This room link is for another session.");
    reconnect();
  });
}

/** Closes the current connection, keeping our own camera and microphone. */
function teardown() {
  const { ws, pc } = room;
  room.ws = null;
  room.pc = null;
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  if (pc) pc.close();
  room.received.clear();
  room.frames.clear();
  room.tracks.clear();
  render();
}

function reconnect(why) {
  if (room.leaving) return;
  if (room.state === "reconnecting" && reconnectTimer && !room.ws) return;
  teardown();
  room.attempts += 1;
  const delay = Math.min(500 * room.attempts, 4000);
  setState("reconnecting", "Reconnecting…");
  showBanner(why ? `Reconnecting… ${why}` : "Reconnecting… The connection to the room dropped.", "info");
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    connect(true);
  }, delay);
}

function releaseMedia() {
  room.local?.getTracks().forEach((t) => t.stop());
  room.screen?.getTracks().forEach((t) => t.stop());
  room.local = room.screen = null;
}

function finish(heading, message, state) {
  room.leaving = true;
  clearTimeout(reconnectTimer);
  clearInterval(statsTimer);
  teardown();
  releaseMedia();
  setState(state, state === "ended" ? "Ended" : "Left");
  showBanner(null);
  document.querySelectorAll("dialog.dialog").forEach((d) => d.remove());
  stop(content, heading, message, backLink());
  content.removeAttribute("aria-busy");
  // Someone who took part and has just left, or saw the session end, is
  // asked to reflect while it is fresh (docs/record.md). Hosts are not.
  const tookPart = room.me && !room.me.grants?.host;
  if (tookPart && (state === "ended" || room.leftByChoice)) {
    content.append(reflectionPrompt(sessionId, "A few lines now make this session count in your CPD record. Only you can read them."));
    content.querySelector("textarea")?.focus();
  } else {
    content.querySelector("a")?.focus();
  }
}

/** `/join` said no: the room is not open yet, has ended, we were removed, or we may not enter. */
function refused(e) {
  if (e.status === 409 && /has ended/i.test(e.message)) return finish(...FINAL_CLOSES[4010], "ended");
  if (e.status === 409 && /opens/i.test(e.message)) return notYetOpen(e.message);
  if (e.status === 403 && /removed you/i.test(e.message)) {
    return finish("You were removed from this session", "A host removed you from the live session, so you cannot join it again.", "left");
  }
  return fatal(e.message);
}

/** Too early: when the room opens, in the viewer's own time, and a page that lets them in by itself. */
function notYetOpen(serverMessage) {
  room.leaving = true;
  clearTimeout(reconnectTimer);
  setState("closed", "Not open yet");
  showBanner(null);
  let text = serverMessage;
  const starts = room.session?.starts_at ? new Date(room.session.starts_at).getTime() : NaN;
  if (Number.isFinite(starts)) {
    const opens = new Date(starts - 30 * 60000).toISOString();
    const zone = viewerZone(room.user);
    text = `The room opens 30 minutes before the start, at ${formatTime(opens, zone)} on ${formatDay(opens, zone)}. Keep this page open and it lets you in then, or come back later.`;
    const wait = Date.parse(opens) - Date.now() + 2000;
    if (wait > 0 && wait < 6 * 3600000) setTimeout(() => location.reload(), wait);
  }
  stop(content, "The room isn't open yet", text, backLink());
  content.removeAttribute("aria-busy");
}

function fatal(message) {
  room.leaving = true;
  clearTimeout(reconnectTimer);
  teardown();
  releaseMedia();
  setState("closed", "Not connected");
  showBanner(null);
  stop(content, "You cannot join this session", message, backLink());
  content.removeAttribute("aria-busy");
}

function leave() {
  room.leaving = true;
  send({ type: "leave" });
  room.leftByChoice = true;
  finish("You are out of the room", "You have left the session. You can join again while it runs.", "left");
}

// ---------------------------------------------------------------- stats

/** Watches frames arriving, to tell a live camera from a stopped one and to time the first frame. */
async function pollStats() {
  const pc = room.pc;
  if (!pc || pc.connectionState === "closed") return;
  let stats;
  try {
    stats = await pc.getStats();
  } catch {
    return;
  }
  if (pc !== room.pc) return; // replaced while we waited
  const now = performance.now();
  stats.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "audio" && s.packetsReceived > 0 && !room.metrics.firstAudioAt) room.metrics.firstAudioAt = now;
    if (s.kind !== "video" || !s.trackIdentifier) return;
    const decoded = s.framesDecoded || 0;
    const before = room.frames.get(s.trackIdentifier);
    if (!before || decoded !== before.decoded) room.frames.set(s.trackIdentifier, { decoded, changedAt: now });
  });
  // A track that stopped sending is shown as off, and shown again when it restarts.
  renderStage();
}

// ---------------------------------------------------------------- start

/**
 * Why `user` cannot come into this session's room whatever the time, as
 * [heading, message], or null. Said before asking to join, so someone who
 * may never enter hears that, not when the room opens (the server checks
 * again when they join).
 */
function keptOut(session, user) {
  if (session.status === "cancelled") return ["This session was cancelled", "There is no live session to join. Anyone registered has been told by email."];
  if (session.status === "draft") return ["This session is not published yet", "Its room opens once it is published, 30 minutes before it starts."];
  const mine = session.my_registration;
  const presenting = session.presenters.some((p) => p.id === user.id);
  if (user.is_organiser || presenting || mine?.status === "confirmed") return null;
  if (mine?.status === "waitlisted") {
    return ["You are on the waiting list", "Only people with a place can join the live session. If a place comes free, it is yours and we will email you."];
  }
  return ["You are not registered for this session", "Register for this session to join."];
}

async function start() {
  const user = await setupPage();
  room.user = user;
  if (!Number.isInteger(sessionId) || sessionId <= 0) {
    setState("closed", "Not connected");
    stop(content, "Session not found", "The link is missing the session number.", el("a", { href: "/index.html", text: "See the programme" }));
    return;
  }
  if (!user) {
    setState("closed", "Not connected");
    const next = encodeURIComponent(location.pathname + location.search);
    stop(content, "Sign in to join", "Sign in with the account you registered with to join the live session.", el("a", { class: "button", href: `/signin.html?next=${next}`, text: "Sign in" }));
    return;
  }
  try {
    room.session = await api(`/api/sessions/${sessionId}`);
    title.textContent = room.session.title;
    document.title = `${room.session.title} · Live · Staffroom`;
  } catch {
    // The join below says what is wrong.
  }
  const kept = room.session && keptOut(room.session, user);
  if (kept) {
    setState("closed", "Not connected");
    stop(content, kept[0], kept[1], backLink());
    content.removeAttribute("aria-busy");
    return;
  }
  try {
    // Asked once up front: it says whether we may enter, and whether we may publish.
    room.ticket = await api(`/api/sessions/${sessionId}/join`, { method: "POST" });
    room.ticketAt = Date.now();
  } catch (e) {
    return refused(e);
  }
  buildRoom();
  statsTimer = setInterval(pollStats, 500);
  if (room.ticket.grants.publish && navigator.mediaDevices?.getUserMedia) {
    setState("waiting", "Not yet joined");
    room.local = await pickDevices();
    if (room.local) renderStage();
  }
  setState("connecting", "Connecting…");
  connect();
}

window.addEventListener("pagehide", () => {
  if (room.ws && !room.leaving) {
    room.leaving = true;
    send({ type: "leave" });
  }
});

start();
