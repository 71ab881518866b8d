// The programme: published sessions that have not ended, with filters that
// the server applies and that stay in the address so a filtered view can be
// shared; below them, the sessions that have ended, with their replays.

import {
  api,
  audienceName,
  el,
  fillSelect,
  kindName,
  lifeBadge,
  myBadge,
  say,
  seatsText,
  setupPage,
  timeRange,
  viewerZone,
  zonedToIso,
} from "/app.js";

const form = document.getElementById("filters");
const list = document.getElementById("sessions");
const count = document.getElementById("count");
const status = document.getElementById("status");
const FIELDS = ["audience", "subject", "series", "from", "to"];

let zone = "UTC";

function nextDay(date) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
}

/** The API query for the form's current filters (dates are whole days in the viewer's zone). */
function query() {
  const q = new URLSearchParams();
  for (const name of ["audience", "subject", "series"]) {
    const value = form.elements[name].value;
    if (value) q.set(name, value);
  }
  const from = form.elements.from.value;
  const to = form.elements.to.value;
  if (from) q.set("from", zonedToIso(from, "00:00", zone));
  if (to) q.set("to", zonedToIso(nextDay(to), "00:00", zone));
  return q;
}

function card(session, past = false) {
  const full = session.seats_left <= 0;
  const facts = [session.series, session.subject, session.phase && `Phase: ${session.phase}`].filter(Boolean);
  return el(
    "li",
    { class: "session-card" },
    el(
      "div",
      {},
      el("span", { class: "kind", text: kindName(session.kind) }),
      el("h3", {}, el("a", { href: `/session.html?id=${session.id}`, text: session.title })),
      el("p", { class: "when" }, timeRange(session.starts_at, session.ends_at, zone)),
      facts.length ? el("p", { class: "meta", text: facts.join(" · ") }) : null,
      session.presenters.length
        ? el("p", { class: "meta", text: `With ${session.presenters.map((p) => p.name).join(", ")}` })
        : null,
      session.audiences.length
        ? el("ul", { class: "tags", "aria-label": "For" }, session.audiences.map((a) => el("li", { text: audienceName(a) })))
        : null,
    ),
    el(
      "div",
      { class: "side" },
      ...(past
        ? [
            lifeBadge(session),
            session.replay_ready
              ? el("a", { class: "button button-small", href: `/session.html?id=${session.id}`, "aria-label": `Replay of ${session.title}`, text: "Replay" })
              : el("span", { class: "muted small", text: "Not recorded" }),
          ]
        : [lifeBadge(session), el("span", { class: full ? "seats seats-full" : "seats", text: seatsText(session) }), myBadge(session.my_registration)]
      ).filter(Boolean),
    ),
  );
}

/** The sessions that have ended (the filters apply to them too). */
async function showPast(q) {
  const section = document.getElementById("past");
  const sessions = await api(`/api/sessions?${q}&past=true`);
  document.getElementById("past-sessions").replaceChildren(...sessions.map((s) => card(s, true)));
  section.hidden = sessions.length === 0;
}

async function show() {
  say(status, "");
  list.setAttribute("aria-busy", "true");
  try {
    const q = query();
    const [sessions] = await Promise.all([api(`/api/sessions?${q}`), showPast(q)]);
    list.replaceChildren(...sessions.map((s) => card(s)));
    const filtered = [...q.keys()].length > 0;
    if (sessions.length === 0) {
      list.append(
        el(
          "li",
          { class: "card empty" },
          filtered ? "No sessions match these filters. Try clearing some of them." : "No sessions are scheduled yet. Please come back soon.",
        ),
      );
      count.textContent = "";
    } else {
      count.textContent = `${sessions.length} ${sessions.length === 1 ? "session" : "sessions"}${filtered ? " match" + (sessions.length === 1 ? "es" : "") + " your filters" : ""}.`;
    }
  } catch (e) {
    say(status, e.message, "error");
  } finally {
    list.removeAttribute("aria-busy");
  }
}

/** Fills the filter menus from what the programme actually offers. */
function fillChoices(sessions) {
  const distinct = (values) => [...new Set(values.filter(Boolean))].sort((a, b) => a.localeCompare(b));
  const audiences = distinct(sessions.flatMap((s) => s.audiences));
  fillSelect(form.elements.audience, [["", "Everyone"], ...audiences.map((a) => [a, audienceName(a)])]);
  fillSelect(form.elements.subject, [["", "All subjects"], ...distinct(sessions.map((s) => s.subject)).map((s) => [s, s])]);
  fillSelect(form.elements.series, [["", "All series"], ...distinct(sessions.map((s) => s.series)).map((s) => [s, s])]);
}

function fromAddress() {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) {
    const value = params.get(name);
    if (!value) continue;
    const input = form.elements[name];
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
      input.append(el("option", { value, text: name === "audience" ? audienceName(value) : value }));
    }
    input.value = value;
  }
}

function toAddress() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value;
    if (value) params.set(name, value);
  }
  const search = params.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

async function start() {
  const user = await setupPage();
  zone = viewerZone(user);
  document.getElementById("zone-name").textContent = `your time zone (${zone.replace(/_/g, " ")})`;
  try {
    fillChoices(await api("/api/sessions"));
  } catch (e) {
    say(status, e.message, "error");
  }
  fromAddress();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    toAddress();
    show();
  });
  for (const name of ["audience", "subject", "series"]) {
    form.elements[name].addEventListener("change", () => {
      toAddress();
      show();
    });
  }
  form.addEventListener("reset", () => {
    setTimeout(() => {
      toAddress();
      show();
    });
  });
  await show();
}

start();
