// My sessions (places and waiting-list spots) and my profile.

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
  kindName,
  myBadge,
  say,
  setupPage,
  STAGES,
  stop,
  timeRange,
  viewerZone,
} from "/app.js";

const list = document.getElementById("sessions");
const listStatus = document.getElementById("sessions-status");
const form = document.getElementById("profile");
const profileStatus = document.getElementById("profile-status");

let user = null;

function card(session) {
  const zone = viewerZone(user);
  const ended = new Date(session.ends_at) <= new Date();
  const cancelled = session.status === "cancelled";
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
  return el(
    "li",
    { class: "session-card" },
    el(
      "div",
      {},
      el("span", { class: "kind", text: kindName(session.kind) }),
      el("h3", {}, el("a", { href: `/session.html?id=${session.id}`, text: session.title })),
      el("p", { class: "when" }, timeRange(session.starts_at, session.ends_at, zone)),
      session.presenters.length ? el("p", { class: "meta", text: `With ${session.presenters.map((p) => p.name).join(", ")}` }) : null,
    ),
    el(
      "div",
      { class: "side" },
      cancelled ? el("span", { class: "badge badge-bad", text: "Cancelled" }) : myBadge(mine),
      ended ? el("span", { class: "muted small", text: "Ended" }) : null,
      !ended && !cancelled ? leave : null,
    ),
  );
}

async function loadSessions() {
  try {
    const sessions = await api("/api/me/sessions");
    const upcoming = sessions.filter((s) => new Date(s.ends_at) > new Date());
    const past = sessions.filter((s) => new Date(s.ends_at) <= new Date());
    list.replaceChildren(...upcoming.map(card), ...past.map(card));
    if (sessions.length === 0) {
      list.append(
        el("li", { class: "card empty" }, "You have not registered for any sessions yet. ", el("a", { href: "/index.html", text: "Browse the programme" }), "."),
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
