// My sessions, grouped by where each is in its life and the person's part in
// it: presenting, coming up, attended, missed (with the replay), and my profile.

import {
  api,
  browserZone,
  dataTable,
  el,
  fillSelect,
  fillZoneSelect,
  formValues,
  formatInstant,
  formatMinutes,
  forgetUser,
  handleSubmit,
  isOver,
  kindName,
  lifeBadge,
  myBadge,
  say,
  setupPage,
  STAGES,
  stop,
  timeRange,
  viewerZone,
} from "/app.js";

const listStatus = document.getElementById("sessions-status");
const form = document.getElementById("profile");
const profileStatus = document.getElementById("profile-status");

let user = null;

/** The groups My sessions shows, in order: [key, heading]. */
const GROUPS = [
  ["presenting", "Presenting"],
  ["upcoming", "Coming up"],
  ["attended", "Attended"],
  ["missed", "Missed"],
  ["presented", "Presented"],
  ["other", "Cancelled, or no place came free"],
];

/** Which group a session of mine belongs in. */
function groupOf(session) {
  const over = isOver(session);
  if (session.status === "cancelled") return "other";
  if (session.presenting) return over ? "presented" : "presenting";
  if (!over) return "upcoming";
  if (session.attended === true) return "attended";
  if (session.attended === false) return "missed";
  return "other";
}

function card(session) {
  const zone = viewerZone(user);
  const group = groupOf(session);
  const mine = session.my_registration;
  const leave = el("button", {
    type: "button",
    class: "button-danger button-small",
    text: mine && mine.status === "waitlisted" ? "Leave waiting list" : "Cancel my place",
    "aria-label": `${mine && mine.status === "waitlisted" ? "Leave the waiting list for" : "Cancel my place at"} ${session.title}`,
    onclick: async () => {
      if (!window.confirm(`Give up your place at “${session.title}”?`)) return;
      leave.disabled = true;
      try {
        await api(`/api/sessions/${session.id}/registration`, { method: "DELETE" });
        say(listStatus, `You are no longer registered for “${session.title}”.`, "success");
        await loadSessions();
      } catch (e) {
        say(listStatus, e.message, "error");
        leave.disabled = false;
      }
    },
  });
  const replay = session.replay_url
    ? el("a", { class: "button button-small", href: session.replay_url, "aria-label": `Watch the replay of ${session.title}`, text: "Watch the replay" })
    : null;
  const side = {
    presenting: [
      lifeBadge(session),
      el("a", { class: "button button-small", href: `/room.html?id=${session.id}`, "aria-label": `Enter the room for ${session.title} (backstage)`, text: "Enter the room" }),
    ],
    upcoming: [lifeBadge(session), myBadge(mine), mine && session.status !== "cancelled" ? leave : null],
    attended: [
      el("span", { class: "badge badge-ok", text: "Attended" }),
      el("a", { class: "button button-secondary button-small", href: `/record.html?reflect=${session.id}`, "aria-label": `Reflect on ${session.title}`, text: "Reflect" }),
      replay,
    ],
    missed: [el("span", { class: "badge badge-wait", text: "Missed" }), replay],
    presented: [el("span", { class: "badge badge-draft", text: "Ended" }), replay],
    other: [session.status === "cancelled" ? el("span", { class: "badge badge-bad", text: "Cancelled" }) : el("span", { class: "badge badge-draft", text: "Ended" })],
  }[group];
  return el(
    "li",
    { class: "session-card" },
    el(
      "div",
      {},
      el("span", { class: "kind", text: kindName(session.kind) }),
      el("h4", {}, el("a", { href: `/session.html?id=${session.id}`, text: session.title })),
      el("p", { class: "when" }, timeRange(session.starts_at, session.ends_at, zone)),
      session.presenters.length ? el("p", { class: "meta", text: `With ${session.presenters.map((p) => p.name).join(", ")}` }) : null,
    ),
    el("div", { class: "side" }, ...side.filter(Boolean)),
  );
}

async function loadSessions() {
  try {
    const sessions = await api("/api/me/sessions");
    const box = document.getElementById("sessions");
    const sections = GROUPS.map(([key, heading]) => {
      // Coming up soonest first; what is over, most recent first.
      const mine = sessions.filter((s) => groupOf(s) === key);
      if (["attended", "missed", "presented", "other"].includes(key)) mine.reverse();
      if (!mine.length) return null;
      const id = `sessions-${key}`;
      return el("section", { "aria-labelledby": id }, el("h3", { id, text: `${heading} (${mine.length})` }), el("ul", { class: "session-list" }, ...mine.map(card)));
    }).filter(Boolean);
    box.replaceChildren(...sections);
    if (sessions.length === 0) {
      box.append(
        el("p", { class: "card empty" }, "You have not registered for any sessions yet. ", el("a", { href: "/index.html", text: "Browse the programme" }), "."),
      );
    }
  } catch (e) {
    say(listStatus, e.message, "error");
  }
}

function fillProfile() {
  form.elements.name.value = user.name;
  form.elements.school.value = user.school;
  fillSelect(form.elements.stage, STAGES, user.stage);
  fillZoneSelect(form.elements.time_zone, user.time_zone || "", ["", `Not set: use this device's zone (${browserZone().replace(/_/g, " ")})`]);
  const line = document.getElementById("email-line");
  line.replaceChildren(
    `Signed in as ${user.email}. `,
    user.email_verified
      ? el("span", { class: "badge badge-ok", text: "Email confirmed" })
      : el("span", { class: "badge badge-wait", text: "Email not confirmed yet" }),
  );
}

/** The sessions attended live or by replay, with the CPD time credited (docs/attendance.md). */
async function loadRecord() {
  const box = document.getElementById("record");
  try {
    const record = await api("/api/me/attendance");
    if (!record.entries.length) {
      box.replaceChildren(el("p", { class: "muted", text: "Sessions you attend, live or by watching the replay, appear here with the time credited." }));
      return;
    }
    const zone = viewerZone(user);
    const how = { live: "Live", replay: "Replay" };
    const rows = record.entries.map((e) =>
      el(
        "tr",
        {},
        el("td", { "data-label": "Date", text: formatInstant(new Date(e.starts_at).getTime(), zone) }),
        el("td", { "data-label": "Session" }, el("a", { href: `/session.html?id=${e.session_id}`, text: e.title }), e.presenters.length ? ` — ${e.presenters.join(", ")}` : ""),
        el("td", { "data-label": "How", text: `${how[e.how] || "—"}${e.status === "partly" ? " (partly)" : ""}` }),
        el("td", { class: "num", "data-label": "CPD time", text: formatMinutes(e.minutes_credited) }),
        el("td", { "data-label": "Groups", text: e.groups.join(", ") || "—" }),
      ),
    );
    box.replaceChildren(
      el("p", { class: "lead", text: `${formatMinutes(record.total_minutes_credited)} of CPD from ${record.entries.length} ${record.entries.length === 1 ? "session" : "sessions"}.` }),
      dataTable("My CPD record", ["Date", "Session", "How", ["CPD time", "num"], "Groups"], rows),
      el("p", {}, el("a", { href: "/record.html", text: "Open my full record: reflections, needs and priorities, evidence and certificates" })),
    );
  } catch (e) {
    box.replaceChildren(el("p", { class: "status status-error", text: `Your record could not be loaded: ${e.message}` }));
  }
}

async function start() {
  user = await setupPage();
  if (!user) {
    stop(
      document.getElementById("main"),
      "Sign in to see your sessions",
      "Your sessions and profile appear here once you are signed in.",
      el("a", { class: "button", href: "/signin.html?next=/my.html", text: "Sign in" }),
    );
    return;
  }
  fillProfile();
  handleSubmit(form, profileStatus, async () => {
    const v = formValues(form);
    user = await api("/api/me", {
      method: "PATCH",
      body: { name: v.name, school: v.school, stage: v.stage, time_zone: v.time_zone },
    });
    fillProfile();
    say(profileStatus, "Your profile is saved.", "success");
    await loadSessions();
  });
  const remove = document.getElementById("remove");
  handleSubmit(remove, document.getElementById("remove-status"), async () => {
    if (!window.confirm("Remove your account and delete your CPD record for good?")) return;
    await api("/api/me", { method: "DELETE", body: { password: remove.elements.password.value } });
    forgetUser();
    location.href = "/index.html";
  });
  await Promise.all([loadSessions(), loadRecord()]);
}

start();
