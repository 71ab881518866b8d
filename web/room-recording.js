// Recording on the room page (docs/recording.md): the indicator everyone
// sees while the session is recorded, the notice on joining a recorded
// session, and the host's controls (start, stop, mark a chapter). It only
// sends and receives signalling messages; room.js places its nodes.

import { el } from "/app.js";

/** "2:05" for a number of milliseconds into the recording. */
function at(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * `send(message)` sends on the room's socket; `isHost()` says whether we
 * host; `alert(text|node, kind)` shows a notice above the stage.
 */
export function createRecording({ send, isHost, alert }) {
  const state = { on: false, id: null, startedAt: 0, timer: null, noticed: false };

  const clock = el("span", { class: "recording-clock" });
  const indicator = el(
    "p",
    { id: "recording-indicator", class: "recording-indicator", role: "status", hidden: true },
    el("span", { class: "recording-dot", "aria-hidden": "true" }),
    el("strong", { text: "Recording" }),
    " ",
    clock,
  );

  const toggle = el("button", {
    type: "button",
    id: "record-toggle",
    class: "button-secondary record-toggle",
    text: "Record",
    "aria-pressed": "false",
    hidden: true,
    onclick: () => {
      toggle.disabled = true;
      send({ type: state.on ? "record_stop" : "record_start" });
      // The server's answer (`recording`, or an error) re-enables it.
      setTimeout(() => (toggle.disabled = false), 5000);
    },
  });

  const title = el("input", {
    id: "chapter-title",
    type: "text",
    maxlength: "120",
    required: true,
    autocomplete: "off",
    placeholder: "e.g. Part 2: feedback",
  });
  const form = el(
    "form",
    { id: "chapter-form", class: "chapter-form", hidden: true },
    el("label", { for: "chapter-title", text: "Chapter" }),
    title,
    el("button", { type: "submit", class: "button-secondary", text: "Mark chapter" }),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = title.value.trim();
    if (!text) return;
    send({ type: "chapter", title: text });
    title.value = "";
  });
  const marked = el("p", { class: "chapter-marked muted", role: "status", "aria-live": "polite" });
  const controls = el("div", { class: "recording-controls" }, toggle, form, marked);

  function render() {
    indicator.hidden = !state.on;
    toggle.hidden = !isHost();
    toggle.textContent = state.on ? "Stop recording" : "Record";
    toggle.setAttribute("aria-pressed", String(state.on));
    toggle.classList.toggle("button-danger", state.on);
    form.hidden = !(isHost() && state.on);
  }

  function tick() {
    clock.textContent = at(performance.now() - state.startedAt);
  }

  /** Handles a recording message; false for anything else. */
  function handle(message) {
    switch (message.type) {
      case "recording":
        toggle.disabled = false;
        state.on = message.on;
        clearInterval(state.timer);
        if (message.on) {
          if (state.id !== message.recording_id) state.startedAt = performance.now();
          state.id = message.recording_id;
          tick();
          state.timer = setInterval(tick, 1000);
          if (!isHost() && !state.noticed) {
            alert("This session is being recorded. The recording shows the stage, the chat and the questions.", "info");
          }
          state.noticed = true;
        } else {
          marked.textContent = "";
          if (isHost()) alert("Recording stopped. It will be ready to replay in a few seconds.", "info");
        }
        render();
        return true;
      case "recording_saved":
        alert(
          el(
            "span",
            {},
            "The recording is ready. ",
            el("a", { href: message.replay_url, target: "_blank", rel: "noopener", text: "Watch the replay" }),
          ),
          "success",
        );
        return true;
      case "chapter":
        marked.textContent = `Chapter “${message.title}” marked at ${at(message.t_ms)}.`;
        return true;
      default:
        return false;
    }
  }

  /** A new connection: the server tells us again if it is recording. */
  function reset() {
    state.on = false;
    clearInterval(state.timer);
    render();
  }

  return { indicator, controls, handle, reset, render };
}
