// Breakout groups on the room page (docs/breakouts.md): the host's "Groups"
// tab (plan, open, live status, moves, visits, broadcast, timer, help calls)
// and the bar a participant sees above the stage while in a group (name,
// task, countdown, help, back to the main room). It only sends and receives
// signalling messages; room.js owns the connection and the media, and is
// told through `onChange` when our own group changes.
// Everything people type is shown with textContent.

import { el } from "/app.js";

/** "7:05" for a number of milliseconds (rounded up to the second). */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

/**
 * `send(message)` sends on the room's socket; `me()` is our participant or
 * null; `participants()` the others (a Map by id); `nameOf(id)` a display
 * name; `onChange(before, after)` is called with our group (or null) when it
 * changes; `alert(text, node)` shows something prominently on the page.
 */
export function createGroups({ send, me, participants, nameOf, onChange, alert, tell }) {
  const state = {
    view: null, // the server's last `breakout` state
    help: [], // {participant_id, name, group, group_name, at}, newest last
    speaker: null, // participant id of the active speaker
    warned: false,
  };
  // Co-hosts run breakout groups as hosts do.
  const isHost = () => Boolean(me()?.grants?.host || me()?.grants?.cohost);
  const myId = () => (me() ? String(me().id) : null);

  function groups() {
    return state.view?.open ? state.view.groups : [];
  }

  /** The group a participant is in, or null (the main room). */
  function groupOf(id) {
    return groups().find((g) => g.members.map(String).includes(String(id))) || null;
  }

  function myGroup() {
    return myId() ? groupOf(myId()) : null;
  }

  // ------------------------------------------------------------ the host's tab

  const tabNode = el("div", { class: "groups-tab" });
  const helpBox = el("div", { class: "help-calls", role: "alert", hidden: true });
  const planBox = el("div", { class: "groups-plan" });
  const liveBox = el("div", { class: "groups-live", hidden: true });
  tabNode.append(el("h2", { class: "visually-hidden", text: "Breakout groups" }), helpBox, planBox, liveBox);

  // The plan: how many groups, each with a name and a task, the time, leaving, placement.
  const countInput = el("input", { type: "number", id: "groups-count", min: "1", max: "20", value: "2", inputmode: "numeric" });
  const minutesInput = el("input", { type: "number", id: "groups-minutes", min: "1", max: "180", step: "1", value: "10", inputmode: "numeric" });
  const returnInput = el("input", { type: "number", id: "groups-return", min: "1", max: "300", value: "30", inputmode: "numeric" });
  const randomBox = el("input", { type: "checkbox", id: "groups-random", checked: true });
  // Split by a number of groups (named, with tasks) or by people per group (as many groups as it takes, at random).
  const splitSelect = el("select", { id: "groups-split" });
  splitSelect.append(el("option", { value: "count", text: "A number of groups" }), el("option", { value: "size", text: "People per group" }));
  const sizeInput = el("input", { type: "number", id: "groups-size", min: "1", max: "50", value: "4", inputmode: "numeric" });
  const countField = el("div", { class: "field" }, el("label", { class: "label", for: "groups-count", text: "Number of groups" }), countInput);
  const sizeField = el("div", { class: "field", hidden: true }, el("label", { class: "label", for: "groups-size", text: "People per group" }), sizeInput);
  const randomField = el("div", {}, el("label", { class: "check" }, randomBox, " Place attendees in the groups at random"), el("p", { class: "muted small", text: "Otherwise everyone starts in the main room and you move people into groups once they are open." }));
  const leaveBox = el("input", { type: "checkbox", id: "groups-leave" });
  const rows = el("ol", { class: "group-rows" });
  const planForm = el(
    "form",
    { class: "talk-form groups-form", "aria-labelledby": "groups-plan-heading" },
    el("h3", { id: "groups-plan-heading", text: "Plan breakout groups" }),
    el("div", { class: "field" }, el("label", { class: "label", for: "groups-split", text: "Split the room into" }), splitSelect),
    countField,
    sizeField,
    rows,
    randomField,
    el("div", { class: "field" }, el("label", { class: "label", for: "groups-minutes", text: "Duration (minutes)" }), minutesInput),
    el("label", { class: "check" }, leaveBox, " Participants may leave their group"),
    el("div", { class: "field" }, el("label", { class: "label", for: "groups-return", text: "Return countdown (seconds)" }), returnInput),
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Open groups" })),
  );
  planBox.append(planForm);

  function renderRows() {
    const n = Math.min(20, Math.max(1, Number(countInput.value) || 1));
    while (rows.children.length < n) {
      const i = rows.children.length + 1;
      rows.append(
        el(
          "li",
          { class: "group-row" },
          el("label", { class: "label", for: `group-name-${i}`, text: `Group ${i} name` }),
          el("input", { type: "text", id: `group-name-${i}`, name: "name", maxlength: "60", value: `Group ${i}` }),
          el("label", { class: "label", for: `group-task-${i}`, text: `Group ${i} task (optional)` }),
          el("textarea", { id: `group-task-${i}`, name: "task", rows: "2", maxlength: "500" }),
        ),
      );
    }
    while (rows.children.length > n) rows.lastChild.remove();
  }
  countInput.addEventListener("input", renderRows);
  renderRows();
  splitSelect.addEventListener("change", () => {
    const bySize = splitSelect.value === "size";
    // By size, the groups are made when they open ("Group 1", "Group 2", …) and filled at random.
    countField.hidden = rows.hidden = randomField.hidden = bySize;
    sizeField.hidden = !bySize;
  });

  planForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const minutes = Number(minutesInput.value);
    const back = Number(returnInput.value);
    if (!(minutes > 0)) return tell("The groups need a duration of at least one minute.");
    const common = { minutes, allow_leave: leaveBox.checked, return_seconds: back > 0 ? back : 30 };
    if (splitSelect.value === "size") {
      const size = Number(sizeInput.value);
      if (!(Number.isInteger(size) && size >= 1)) return tell("People per group must be a whole number, at least 1.");
      return send({ type: "breakout_open", groups: [], people_per_group: size, ...common });
    }
    const plan = [...rows.children].map((row, i) => ({
      name: row.querySelector("[name=name]").value.trim() || `Group ${i + 1}`,
      task: row.querySelector("[name=task]").value.trim(),
      members: [],
    }));
    send({
      type: "breakout_open",
      groups: plan,
      random_groups: randomBox.checked ? plan.length : null,
      ...common,
    });
  });

  // While open: the timer, the groups with their people, broadcast.
  const timerText = el("p", { class: "groups-timer", dataset: { role: "timer" } });
  const extendButton = el("button", { type: "button", class: "button-secondary button-small", text: "+5 minutes", onclick: () => send({ type: "breakout_extend", minutes: 5 }) });
  const closeButton = el("button", { type: "button", class: "button-danger button-small", text: "Close groups", onclick: () => send({ type: "breakout_close" }) });
  const returnButton = el("button", { type: "button", class: "button-small", text: "Return to main room", onclick: () => send({ type: "breakout_visit", group: null }) });
  const groupList = el("div", { class: "group-cards" });
  const broadcastInput = el("textarea", { id: "broadcast-input", rows: "2", maxlength: "500", required: true });
  const broadcastForm = el(
    "form",
    { class: "talk-form" },
    el("label", { class: "label", for: "broadcast-input", text: "Message all groups" }),
    broadcastInput,
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Broadcast" })),
  );
  broadcastForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = broadcastInput.value.trim();
    if (!text) return;
    send({ type: "breakout_broadcast", text });
    broadcastInput.value = "";
  });
  liveBox.append(
    el("h3", { text: "Groups are open" }),
    timerText,
    el("div", { class: "actions groups-actions" }, extendButton, closeButton, returnButton),
    groupList,
    broadcastForm,
  );

  function moveSelect(pid, name, current) {
    const id = `move-${pid}`;
    const select = el(
      "select",
      { id, class: "move-select", dataset: { participant: pid } },
      el("option", { value: "", text: "Main room" }),
      groups().map((g) => el("option", { value: String(g.id), text: g.name })),
    );
    select.value = current == null ? "" : String(current);
    select.addEventListener("change", () => {
      send({ type: "breakout_move", participant_id: pid, group: select.value === "" ? null : Number(select.value) });
    });
    return el("span", { class: "move" }, el("label", { class: "visually-hidden", for: id, text: `Move ${name} to` }), select);
  }

  function personRow(pid, groupId) {
    const you = String(pid) === myId();
    const name = nameOf(pid);
    return el(
      "li",
      { dataset: { participant: pid } },
      el("span", { class: "person-name", text: name }),
      String(state.speaker) === String(pid) ? el("span", { class: "badge badge-ok", text: "Talking" }) : null,
      you ? null : moveSelect(String(pid), name, groupId),
    );
  }

  function everyoneIds() {
    const ids = [...participants().keys()].map(String);
    if (myId()) ids.push(myId());
    return ids;
  }

  function renderHost() {
    const host = isHost();
    if (!host) return;
    const open = Boolean(state.view?.open);
    planBox.hidden = open;
    liveBox.hidden = !open;
    renderHelp();
    if (!open) return;
    const mine = myGroup();
    returnButton.hidden = !mine;
    const placed = new Set(groups().flatMap((g) => g.members.map(String)));
    const main = everyoneIds().filter((id) => !placed.has(id));
    const focused = groupList.contains(document.activeElement) ? document.activeElement.id || document.activeElement.dataset.action : null;
    groupList.replaceChildren(
      ...groups().map((g) =>
        el(
          "section",
          { class: ["group-card", mine && mine.id === g.id ? "group-card-here" : ""].join(" ").trim(), "aria-label": g.name, dataset: { group: g.id } },
          el(
            "div",
            { class: "group-card-head" },
            el("h4", { text: `${g.name} (${g.members.length})` }),
            mine && mine.id === g.id
              ? el("span", { class: "badge badge-ok", text: "You are here" })
              : el("button", {
                  type: "button",
                  class: "button-secondary button-small",
                  text: "Visit",
                  "aria-label": `Visit ${g.name}`,
                  dataset: { action: `visit:${g.id}` },
                  onclick: () => send({ type: "breakout_visit", group: g.id }),
                }),
          ),
          g.task ? el("p", { class: "group-task small", text: g.task }) : null,
          g.members.length
            ? el("ul", { class: "group-members" }, g.members.map((id) => personRow(id, g.id)))
            : el("p", { class: "muted small", text: "Nobody in this group." }),
        ),
      ),
      el(
        "section",
        { class: "group-card group-card-main", "aria-label": "Main room" },
        el("div", { class: "group-card-head" }, el("h4", { text: `Main room (${main.length})` })),
        main.length ? el("ul", { class: "group-members" }, main.map((id) => personRow(id, null))) : el("p", { class: "muted small", text: "Nobody in the main room." }),
      ),
    );
    if (focused) (document.getElementById(focused) || groupList.querySelector(`[data-action="${CSS.escape(focused)}"]`))?.focus();
    renderTimers();
  }

  function renderHelp() {
    helpBox.hidden = !state.help.length;
    helpBox.replaceChildren(
      el("h3", { text: `Help requested (${state.help.length})` }),
      el(
        "ul",
        {},
        state.help.map((h) =>
          el(
            "li",
            {},
            el("span", { text: `${h.name} in ${h.group_name}` }),
            el(
              "span",
              { class: "help-actions" },
              el("button", {
                type: "button",
                class: "button-small",
                text: "Visit",
                "aria-label": `Visit ${h.group_name} to help ${h.name}`,
                onclick: () => {
                  send({ type: "breakout_visit", group: h.group });
                  dismissHelp(h);
                },
              }),
              el("button", { type: "button", class: "link-button small", text: "Dismiss", "aria-label": `Dismiss ${h.name}'s help request`, onclick: () => dismissHelp(h) }),
            ),
          ),
        ),
      ),
    );
    onHelpCount(state.help.length);
  }

  let onHelpCount = () => {};

  function dismissHelp(h) {
    state.help = state.help.filter((x) => x !== h);
    renderHelp();
  }

  // ------------------------------------------------------------ the participant's bar

  const groupName = el("h2", { class: "group-name", id: "group-name" });
  const groupTask = el("p", { class: "group-task" });
  const groupTimer = el("p", { class: "group-timer", dataset: { role: "timer" } });
  const helpButton = el("button", {
    type: "button",
    class: "button-secondary",
    text: "Ask for help",
    onclick: () => {
      send({ type: "breakout_help" });
      helpButton.disabled = true;
      helpButton.textContent = "Help requested";
      say("A host has been asked to come and help.");
      setTimeout(() => {
        helpButton.disabled = false;
        helpButton.textContent = "Ask for help";
      }, 30000);
    },
  });
  const leaveButton = el("button", { type: "button", class: "button-secondary", text: "Back to main room", onclick: () => send({ type: "breakout_leave" }) });
  const visitEnd = el("button", { type: "button", class: "button-secondary", text: "Return to main room", onclick: () => send({ type: "breakout_visit", group: null }) });
  const bar = el(
    "section",
    { class: "group-bar", "aria-labelledby": "group-name", hidden: true },
    el("div", { class: "group-bar-text" }, el("p", { class: "group-kicker", text: "Breakout group" }), groupName, groupTask),
    el("div", { class: "group-bar-side" }, groupTimer, el("div", { class: "group-bar-actions" }, helpButton, leaveButton, visitEnd)),
  );
  // Moves and timer news, for screen readers and as a visible note.
  const note = el("p", { class: "move-note", role: "status", "aria-live": "polite", hidden: true });
  // The main room while groups run (an attendee not placed, a late joiner).
  const mainNote = el("p", { class: "groups-main-note", hidden: true });
  let noteTimer = null;

  function say(text, { sticky = false } = {}) {
    clearTimeout(noteTimer);
    note.textContent = text;
    note.hidden = !text;
    if (text && !sticky) noteTimer = setTimeout(() => (note.hidden = true), 6000);
  }

  function renderBar() {
    const g = myGroup();
    bar.hidden = !g;
    if (g) {
      groupName.textContent = g.name;
      groupTask.textContent = g.task || "";
      groupTask.hidden = !g.task;
      const host = isHost();
      helpButton.hidden = host;
      leaveButton.hidden = host || !state.view.allow_leave;
      visitEnd.hidden = !host;
    }
    const open = Boolean(state.view?.open);
    mainNote.hidden = !(open && !g);
    if (open && !g) {
      mainNote.textContent = isHost()
        ? "Breakout groups are running. Use the Groups tab to see them, visit one or close them."
        : "Breakout groups are running. You are in the main room: a host can add you to a group.";
    }
    renderTimers();
  }

  function renderTimers() {
    const v = state.view;
    if (!v?.open) {
      groupTimer.textContent = timerText.textContent = "";
      return;
    }
    const now = Date.now();
    let text;
    let urgent = false;
    if (v.returning_at) {
      text = `Back to the main room in ${countdown(v.returning_at - now)}`;
      urgent = true;
    } else if (v.ends_at) {
      const left = v.ends_at - now;
      text = `${countdown(left)} left`;
      urgent = left <= 60000;
    } else {
      text = "";
    }
    groupTimer.textContent = timerText.textContent = text;
    groupTimer.classList.toggle("urgent", urgent);
    timerText.classList.toggle("urgent", urgent);
    if (v.returning_at && !myGroup()) mainNote.hidden = true;
  }
  setInterval(renderTimers, 1000);

  // ------------------------------------------------------------ messages

  function render() {
    renderBar();
    renderHost();
  }

  /** Handles a message if it belongs to the groups; returns whether it did. */
  function handle(m) {
    switch (m.type) {
      case "breakout": {
        const before = myGroup();
        const wasOpen = Boolean(state.view?.open);
        state.view = m.breakout;
        if (!m.breakout.open) state.warned = false;
        if (wasOpen && !m.breakout.open) state.help = [];
        const after = myGroup();
        if ((before && before.id) !== (after && after.id)) {
          if (after) say(`Moving you to ${after.name}…`, { sticky: true });
          else say("Back in the main room.");
          onChange(before, after);
        }
        render();
        return true;
      }
      case "breakout_timer":
        if (m.event === "warning" && myGroup()) say("One minute left in your group.");
        else if (m.event === "warning" && isHost()) say("One minute left in the breakout groups.");
        else if (m.event === "returning") say("Time is up: everyone returns to the main room shortly.", { sticky: true });
        return true;
      case "breakout_message":
        alert(`Message to all groups from ${m.from}: ${m.text}`);
        return true;
      case "help_requested":
        state.help = state.help.filter((h) => String(h.participant_id) !== String(m.participant_id));
        state.help.push({ ...m, at: Date.now() });
        renderHelp();
        {
          const visit = el("button", {
            type: "button",
            class: "button-small",
            text: `Visit ${m.group_name}`,
            onclick: () => {
              send({ type: "breakout_visit", group: m.group });
              alert(null);
            },
          });
          alert(el("span", { class: "help-alert" }, el("span", { text: `${m.name} in ${m.group_name} asks for help. ` }), visit));
        }
        return true;
      case "active_speaker":
        state.speaker = m.participant_id;
        renderHost();
        return false; // room.js may want it too
      default:
        return false;
    }
  }

  /** After a reconnect the server sends the state again if groups are open. */
  function reset() {
    state.view = null;
    state.help = [];
    render();
  }

  return {
    tabNode,
    bar,
    note,
    mainNote,
    handle,
    reset,
    render,
    say,
    myGroup,
    groupOf,
    isOpen: () => Boolean(state.view?.open),
    view: () => state.view,
    onHelpCount: (fn) => (onHelpCount = fn),
  };
}
