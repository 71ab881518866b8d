// My sessions (places and waiting-list spots) and my profile.

import {
  api,
  browserZone,
  el,
  fillSelect,
  fillZoneSelect,
  formValues,
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
  await loadSessions();
}

start();
