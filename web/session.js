// One session: what it is, when (in the viewer's zone), who presents it, and
// the viewer's place: register, join the waiting list, or cancel; once it is
// over, what is left: the replay and the reflection, never a way in or out.

import {
  api,
  audienceName,
  el,
  formatDuration,
  formatInstant,
  formatLength,
  here,
  isOver,
  kindName,
  lifeBadge,
  param,
  say,
  seatsText,
  setupPage,
  stop,
  timeRange,
  viewerZone,
} from "/app.js";

const content = document.getElementById("content");
const id = Number(param("id"));

let user = null;
let zone = "UTC";
let message = null; // carried across a re-render: [text, kind]
let part = null; // the viewer's line in My sessions: presenting, attended, replay_url

function fact(term, ...value) {
  return [el("dt", { text: term }), el("dd", {}, ...value)];
}

function registerPanel(session) {
  const panel = el("aside", { class: "card register-panel", "aria-labelledby": "place-heading" });
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const mine = session.my_registration;
  const ended = isOver(session);
  // `append` would print a null as the text "null": what a state leaves out is skipped.
  const add = (...nodes) => panel.append(...nodes.filter(Boolean));
  add(el("h2", { id: "place-heading", tabindex: "-1", text: "Your place" }));
  // The room itself decides whether it is open (or still running past its end):
  // the way in is shown to those who may enter until the session is over.
  // Presenters and organisers go in backstage, before the room is live.
  const backstage = user && (user.is_organiser || session.presenters.some((p) => p.id === user.id));
  const joinLink =
    isParticipant(session) && session.status !== "cancelled" && !ended
      ? el(
          "p",
          {},
          el("a", {
            class: "button join-live",
            href: `/room.html?id=${session.id}`,
            text: backstage && session.life !== "live" ? "Enter the room (backstage)" : "Join the live session",
          }),
        )
      : null;

  const act = (label, kind, work) =>
    el("button", {
      type: "button",
      class: kind,
      text: label,
      onclick: async (event) => {
        event.currentTarget.disabled = true;
        try {
          await work();
        } catch (e) {
          message = [e.message, "error"];
        }
        await load();
        document.getElementById("place-heading")?.focus();
      },
    });

  if (session.status === "cancelled") {
    add(el("p", { class: "big", text: "This session has been cancelled." }), el("p", { class: "muted", text: "Anyone registered has been told by email." }));
  } else if (ended) {
    add(...afterPanel(session));
  } else if (mine && mine.status === "confirmed") {
    add(
      el("p", { class: "big" }, el("span", { class: "badge badge-ok", text: "Registered" })),
      el("p", { text: "You are registered. We have emailed you a calendar invitation and will remind you the day before." }),
      act("Cancel my place", "button-danger", async () => {
        await api(`/api/sessions/${session.id}/registration`, { method: "DELETE" });
        message = ["Your place is cancelled. It has gone to the next person waiting.", "success"];
      }),
    );
  } else if (backstage && !user.is_organiser) {
    add(
      el("p", { class: "big" }, el("span", { class: "badge badge-ok", text: "Presenting" })),
      el("p", { text: "You present this session. The room opens 30 minutes before the start: you wait backstage with the hosts, and a host takes the room live." }),
    );
  } else if (mine && mine.status === "waitlisted") {
    add(
      el("p", { class: "big" }, el("span", { class: "badge badge-wait", text: `Waiting list: position ${mine.waitlist_position ?? "?"}` })),
      el("p", { text: `You are number ${mine.waitlist_position ?? "?"} on the waiting list. If a place comes free, it is yours and we will email you.` }),
      act("Leave the waiting list", "button-danger", async () => {
        await api(`/api/sessions/${session.id}/registration`, { method: "DELETE" });
        message = ["You have left the waiting list.", "success"];
      }),
    );
  } else if (session.status !== "published") {
    add(el("p", { text: "Registration opens when this session is published." }));
  } else if (!user) {
    const next = encodeURIComponent(here());
    add(
      el("p", { class: "big", text: seatsText(session) }),
      el("p", { text: "Sign in or create a free account to register." }),
      el(
        "div",
        { class: "actions" },
        el("a", { class: "button", href: `/signup.html?next=${next}`, text: "Create an account" }),
        el("a", { class: "button button-secondary", href: `/signin.html?next=${next}`, text: "Sign in" }),
      ),
    );
  } else {
    const full = session.seats_left <= 0;
    add(
      el("p", { class: "big", text: seatsText(session) }),
      full ? el("p", { text: "This session is full. Join the waiting list and we will email you if a place comes free." }) : null,
      act(full ? "Join the waiting list" : "Register", "", async () => {
        const mine = await api(`/api/sessions/${session.id}/registration`, { method: "POST" });
        message =
          mine.status === "confirmed"
            ? ["You are registered. A confirmation is on its way to your inbox.", "success"]
            : [`The session is full: you are number ${mine.waitlist_position} on the waiting list.`, "info"];
      }),
    );
  }
  if (joinLink) add(joinLink);
  add(status);
  if (message) {
    say(status, message[0], message[1]);
    message = null;
  }
  return panel;
}

/** What is left of a session that is over: whether you came, the replay, your reflection. */
function afterPanel(session) {
  const mine = session.my_registration;
  const replay = part && part.replay_url ? el("a", { class: "button", href: part.replay_url, text: "Watch the replay" }) : null;
  const reflect = el("a", { class: "button button-secondary", href: `/record.html?reflect=${session.id}`, text: "Write your reflection" });
  const lines = [el("p", { class: "big", text: "This session has ended." })];
  if (part && part.presenting) {
    lines.push(el("p", { text: "You presented it. Thank you." }), replay ? el("div", { class: "actions" }, replay) : null);
  } else if (mine && mine.status === "confirmed" && part && part.attended) {
    lines.push(el("p", { text: "You attended. It is in your CPD record: a few lines of reflection make it count." }), el("div", { class: "actions" }, reflect, replay));
  } else if (mine && mine.status === "confirmed") {
    lines.push(
      el("p", { text: replay ? "You missed it live. Watching the replay counts towards your CPD record too." : "You missed it live. If it was recorded, the replay will appear here." }),
      replay ? el("div", { class: "actions" }, replay) : null,
    );
  } else if (mine && mine.status === "waitlisted") {
    lines.push(el("p", { class: "muted", text: "You were on the waiting list, and no place came free." }));
  } else if (session.replay_ready) {
    lines.push(el("p", { class: "muted", text: "If the organisers open its recording to everyone, it appears under Recordings." }));
  }
  return lines;
}

/** Organisers, presenters and the registered: who may join the room and watch its recordings (the server checks again). */
function isParticipant(session) {
  const mine = session.my_registration;
  return Boolean(
    user && (user.is_organiser || session.presenters.some((p) => p.id === user.id) || (mine && mine.status === "confirmed")),
  );
}

/** The session's recordings, each with a link to its replay; hidden while there are none. */
function recordingsSection(session) {
  const list = el("ul", { class: "recordings" });
  const section = el("section", { class: "card", "aria-labelledby": "recordings-heading", hidden: true }, el("h2", { id: "recordings-heading", text: "Recordings" }), list);
  // Anyone signed in may see recordings an organiser opened to everyone; participants see them all.
  if (!user) return section;
  api(`/api/sessions/${session.id}/recordings`)
    .then((recordings) => {
      if (!recordings.length) return;
      list.replaceChildren(
        ...recordings.map((r) =>
          el(
            "li",
            {},
            el("span", { text: `${formatInstant(r.started_at, zone)}${r.duration_ms != null ? ` · ${formatLength(r.duration_ms)}` : ""}` }),
            " ",
            r.status === "recording"
              ? el("span", { class: "badge badge-wait", text: "Being recorded now" })
              : el("a", { href: r.replay_url, text: "Watch the replay" }),
          ),
        ),
      );
      section.hidden = false;
    })
    .catch((e) => {
      list.replaceChildren(el("li", { class: "muted", text: `The recordings could not be loaded: ${e.message}` }));
      section.hidden = false;
    });
  return section;
}

function render(session) {
  document.title = `${session.title} · Staffroom`;
  const badges = [lifeBadge(session)].filter(Boolean);
  if (session.status === "draft") badges.push(el("span", { class: "badge badge-draft", text: "Draft: not yet published" }));
  if (session.status === "cancelled") badges.push(el("span", { class: "badge badge-bad", text: "Cancelled" }));
  const details = el(
    "dl",
    { class: "facts" },
    fact("When", timeRange(session.starts_at, session.ends_at, zone)),
    fact("Length", formatDuration(session.starts_at, session.ends_at)),
    session.presenters.length ? fact(session.presenters.length === 1 ? "Presenter" : "Presenters", session.presenters.map((p) => p.name).join(", ")) : [],
    session.series ? fact("Series", session.series) : [],
    session.subject ? fact("Subject", session.subject) : [],
    session.phase ? fact("Phase", session.phase) : [],
    session.audiences.length ? fact("For", el("ul", { class: "tags" }, session.audiences.map((a) => el("li", { text: audienceName(a) })))) : [],
    fact("Places", `${session.registered} of ${session.capacity} taken` + (session.waitlisted ? `, ${session.waitlisted} waiting` : "")),
  );
  content.replaceChildren(
    el(
      "div",
      { class: "two-columns" },
      el(
        "article",
        {},
        el("span", { class: "kind", text: kindName(session.kind) }),
        el("h1", { text: session.title }),
        badges.length ? el("p", {}, ...badges) : null,
        el("div", { class: "card" }, details),
        session.description ? el("h2", { text: "About this session" }) : null,
        session.description ? el("p", { class: "description", text: session.description }) : null,
        recordingsSection(session),
        el("p", { class: "muted small", text: `Times are in ${zone.replace(/_/g, " ")}. Change your time zone in My sessions.` }),
        user && user.is_organiser ? el("p", {}, el("a", { href: `/organiser.html?id=${session.id}`, text: "Manage this session" })) : null,
      ),
      registerPanel(session),
    ),
  );
}

async function load() {
  try {
    const [session, mine] = await Promise.all([api(`/api/sessions/${id}`), user ? api("/api/me/sessions") : []]);
    part = mine.find((s) => s.id === id) || null;
    render(session);
  } catch (e) {
    if (e.status === 404 || e.status === 422) {
      stop(content, "Session not found", "This session does not exist, or it is not published yet.", el("a", { href: "/index.html", text: "See the programme" }));
    } else {
      stop(content, "Something went wrong", e.message);
    }
  } finally {
    content.removeAttribute("aria-busy");
  }
}

async function start() {
  user = await setupPage();
  zone = viewerZone(user);
  if (!Number.isInteger(id) || id <= 0) {
    stop(content, "Session not found", "The link is missing the session number.", el("a", { href: "/index.html", text: "See the programme" }));
    content.removeAttribute("aria-busy");
    return;
  }
  await load();
}

start();
