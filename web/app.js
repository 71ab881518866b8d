// Shared by every page: the API client, the signed-in person, the site
// header, DOM helpers and time formatting. Pages build their content with
// `el()` and `textContent`, never with HTML strings, so user text is always
// shown as text.

// Every form on the site is handled by its page's module. Until that module
// has attached its handler, a submission must not fall back to the browser's
// own (which would reload the page, or worse put a password in the address).
document.addEventListener("submit", (event) => event.preventDefault(), true);

/** An error answer from the API: `message` is for people, `field` names the input at fault. */
export class ApiError extends Error {
  constructor(message, status, field) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field || null;
  }
}

/**
 * Calls the JSON API. Non-GET requests carry the CSRF header the server
 * requires of cookie-authenticated requests. Resolves to the parsed body (or
 * null for an empty answer) and throws `ApiError` for any 4xx/5xx.
 * `keepalive` lets a request finish after the page is gone (a last report
 * on `pagehide`; `sendBeacon` cannot carry the CSRF header). `raw` sends a
 * Blob or File as the body, as it is (evidence uploads).
 */
export async function api(path, { method = "GET", body, raw, keepalive = false } = {}) {
  const headers = { accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["x-staffroom-csrf"] = "1";
  if (body !== undefined) headers["content-type"] = "application/json";
  if (raw !== undefined) headers["content-type"] = raw.type || "application/octet-stream";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
      keepalive,
    });
  } catch {
    throw new ApiError("Staffroom could not be reached. Check your connection and try again.", 0);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && data.error) || `Something went wrong (${response.status}).`;
    throw new ApiError(sentence(message), response.status, data && data.field);
  }
  return data;
}

/** Server messages are lower-case fragments; show them as sentences. */
function sentence(text) {
  const s = String(text).trim();
  if (!s) return s;
  const first = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

let mePromise = null;

/** The signed-in person, or null. Asked once per page load. */
export function currentUser() {
  if (!mePromise) {
    mePromise = api("/api/me").catch((e) => {
      if (e.status === 401) return null;
      throw e;
    });
  }
  return mePromise;
}

/** Forget the cached person (after signing in or out on the same page). */
export function forgetUser() {
  mePromise = null;
}

export async function signOut() {
  try {
    await api("/api/auth/signout", { method: "POST" });
  } finally {
    forgetUser();
  }
}

// ---------------------------------------------------------------- DOM helpers

/**
 * Creates an element. `attrs` keys: `class`, `text`, `dataset`, `on*`
 * handlers, boolean properties, and anything else as an attribute.
 * Children may be nodes, strings (as text) or null (skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

/**
 * Shows a message in a status region (an element with `aria-live`).
 * `kind` is "info", "success" or "error".
 */
export function say(region, message, kind = "info") {
  if (!region) return;
  region.replaceChildren();
  region.className = `status status-${kind}`;
  if (!message) {
    region.hidden = true;
    return;
  }
  region.hidden = false;
  if (message instanceof Node) region.append(message);
  else region.textContent = message;
}

/** Removes the error marks that `showError` put on a form. */
export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    const described = (input.getAttribute("aria-describedby") || "")
      .split(" ")
      .filter((id) => id && !id.endsWith("-error"));
    if (described.length) input.setAttribute("aria-describedby", described.join(" "));
    else input.removeAttribute("aria-describedby");
  }
}

/**
 * What a page finds wrong with a form before sending it: every field at
 * fault at once, so nobody fixes one to be told of the next. `fields` is
 * [[input name, message], ...]; `message` sums them up.
 */
export class FormErrors extends Error {
  constructor(message, fields) {
    super(message);
    this.name = "FormErrors";
    this.fields = fields;
  }
}

/** Puts `message` under the input, linked to it for screen readers; the input, or null. */
function markField(form, name, message) {
  const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (!input) return null;
  const id = `${input.id || input.name}-error`;
  const anchor = input.closest(".field") || input;
  anchor.append(el("p", { class: "field-error", id, text: message }));
  input.setAttribute("aria-invalid", "true");
  const described = input.getAttribute("aria-describedby");
  input.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
  return input;
}

/**
 * Shows an error next to the field (or fields, for `FormErrors`) it names,
 * moving focus to the first, or in the form's status region when no field
 * matches.
 */
export function showError(form, error, status, fieldMap = {}) {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof FormErrors) {
    const inputs = error.fields.map(([name, text]) => markField(form, name, text)).filter(Boolean);
    inputs[0]?.focus();
    say(status, message, "error");
    return;
  }
  const fieldName = error && error.field ? fieldMap[error.field] || error.field : null;
  const input = fieldName ? markField(form, fieldName, message) : null;
  if (input) {
    input.focus();
    say(status, "Please check the highlighted field.", "error");
  } else {
    say(status, message, "error");
  }
}

/**
 * Runs `work` for a form submission: clears old errors, disables the submit
 * buttons while it runs, and shows a thrown error next to its field.
 */
export function handleSubmit(form, status, work, fieldMap) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const buttons = [...form.querySelectorAll("button[type=submit], button:not([type])")];
    buttons.forEach((b) => (b.disabled = true));
    form.setAttribute("aria-busy", "true");
    try {
      await work(event.submitter || null);
    } catch (error) {
      showError(form, error, status, fieldMap);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      form.removeAttribute("aria-busy");
    }
  });
}

/** The form's fields as an object of trimmed strings. */
export function formValues(form) {
  const values = {};
  for (const [key, value] of new FormData(form)) {
    if (typeof value === "string") values[key] = value.trim();
  }
  return values;
}

/** A relative path on this site to return to after signing in; anything else becomes the fallback. */
export function safeNext(fallback = "/my.html") {
  const next = param("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) return next;
  return fallback;
}

export function here() {
  return location.pathname + location.search;
}

// ---------------------------------------------------------------- labels

export const STAGES = [
  ["trainee", "Trainee teacher"],
  ["ect", "Early-career teacher"],
  ["teacher", "Teacher"],
  ["middle_leader", "Middle leader"],
  ["senior_leader", "Senior leader"],
  ["other", "Other"],
];

export const KINDS = [
  ["masterclass", "Masterclass"],
  ["webinar", "Webinar"],
  ["coaching", "Coaching"],
  ["workshop", "Workshop"],
];

const AUDIENCE_NAMES = {
  ect: "Early-career teachers",
  trainee: "Trainee teachers",
  teacher: "Teachers",
  teachers: "Teachers",
  mentors: "Mentors",
  middle_leaders: "Middle leaders",
  senior_leaders: "Senior leaders",
  leaders: "Leaders",
};

export function audienceName(tag) {
  if (AUDIENCE_NAMES[tag]) return AUDIENCE_NAMES[tag];
  const words = String(tag).replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function kindName(kind) {
  const found = KINDS.find(([k]) => k === kind);
  return found ? found[1] : kind;
}

export function stageName(stage) {
  const found = STAGES.find(([k]) => k === stage);
  return found ? found[1] : stage;
}

/** Fills a <select> with [value, label] pairs. */
export function fillSelect(select, pairs, selected) {
  select.replaceChildren(...pairs.map(([value, label]) => el("option", { value, text: label })));
  if (selected !== undefined && selected !== null) select.value = selected;
}

// ---------------------------------------------------------------- time

/** The viewer's IANA time zone: their profile's, else the browser's. */
export function viewerZone(user) {
  if (user && user.time_zone) return user.time_zone;
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

export function browserZone() {
  return viewerZone(null);
}

/** Every IANA zone the browser knows, for pickers. */
export function allZones() {
  try {
    const zones = Intl.supportedValuesOf("timeZone");
    return zones.includes("UTC") ? zones : ["UTC", ...zones];
  } catch {
    return ["UTC", "Europe/London", browserZone()].filter((z, i, a) => a.indexOf(z) === i);
  }
}

/** Fills a time-zone <select>, grouping nothing, with an optional leading choice. */
export function fillZoneSelect(select, selected, leading) {
  const zones = allZones();
  if (selected && !zones.includes(selected)) zones.unshift(selected);
  const pairs = zones.map((z) => [z, z.replace(/_/g, " ")]);
  if (leading) pairs.unshift(leading);
  fillSelect(select, pairs, selected || (leading ? leading[0] : undefined));
}

function parts(date, zone, options) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, ...options }).format(date);
}

/** "Tue 3 Mar 2026", in `zone`. */
export function formatDay(iso, zone) {
  return parts(new Date(iso), zone, { weekday: "short", day: "numeric", month: "short", year: "numeric" });
}

/** "16:00", in `zone`. */
export function formatTime(iso, zone) {
  return parts(new Date(iso), zone, { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** The zone's short name at that moment: "GMT", "BST", "GMT+1". */
export function zoneAbbr(iso, zone) {
  const found = new Intl.DateTimeFormat("en-GB", { timeZone: zone, timeZoneName: "short" })
    .formatToParts(new Date(iso))
    .find((p) => p.type === "timeZoneName");
  return found ? found.value : zone;
}

/** "Tue 3 Mar 2026, 16:00–17:00 GMT" (or across days, both dates). */
export function formatRange(startIso, endIso, zone) {
  const sameDay = formatDay(startIso, zone) === formatDay(endIso, zone);
  const start = `${formatDay(startIso, zone)}, ${formatTime(startIso, zone)}`;
  const end = sameDay ? formatTime(endIso, zone) : `${formatDay(endIso, zone)}, ${formatTime(endIso, zone)}`;
  return `${start}–${end} ${zoneAbbr(startIso, zone)}`;
}

/** "1 hour 15 minutes". */
export function formatDuration(startIso, endIso) {
  return minutesText(Math.round((new Date(endIso) - new Date(startIso)) / 60000));
}

function minutesText(minutes) {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  const bits = [];
  if (h) bits.push(`${h} hour${h === 1 ? "" : "s"}`);
  if (m) bits.push(`${m} minute${m === 1 ? "" : "s"}`);
  return bits.join(" ") || "0 minutes";
}

/** A recording's length in ms: "45 minutes", "1 hour 5 minutes", or "8 seconds" under a minute. */
export function formatLength(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} second${seconds === 1 ? "" : "s"}`;
  return minutesText(Math.round(seconds / 60));
}

/**
 * A recording's single-file download as the server reports it: a link once
 * it is made, its progress while it is being made, or null when the server
 * makes none.
 */
export function downloadNote(recording) {
  switch (recording.download_status) {
    case "ready":
      return el("a", { href: recording.download_url, download: "", class: "download-link", text: "Download the recording (WebM)" });
    case "working": {
      const percent = recording.download_progress || 0;
      return el(
        "span",
        { class: "muted download-progress" },
        el("progress", { max: "100", value: String(percent), "aria-label": "Download being prepared" }),
        ` Preparing a download… ${percent}%`,
      );
    }
    case "failed":
      return el("span", { class: "muted", text: "The download could not be made." });
    case "empty":
      return el("span", { class: "muted", text: "Nothing was recorded: nobody was on stage while it ran." });
    default:
      return null;
  }
}

/**
 * `downloadNote` that keeps itself current: while the download is being
 * made (or, a few times, before it starts) it asks the server again every
 * 3 s, so the progress moves on the page by itself.
 */
export function liveDownloadNote(recording) {
  const box = el("span", { class: "download-note" });
  let waits = 5;
  const paint = (r) => {
    box.replaceChildren(...[downloadNote(r)].filter(Boolean));
    const pending = r.download_status === "working" || (r.status !== "recording" && r.download_status === "none" && waits-- > 0);
    if (!pending) return;
    setTimeout(async () => {
      if (!box.isConnected) return;
      try {
        paint(await api(`/api/recordings/${encodeURIComponent(r.id)}`));
      } catch (e) {
        console.debug("download progress not refreshed", e);
      }
    }, 3000);
  };
  paint(recording);
  return box;
}

/** The kinds of CPD record entry, as the pages name them. */
export const RECORD_KINDS = { session: "Session", course: "Course", reading: "Reading", coaching: "Coaching", other: "Other" };

/** CPD time as people say it: "3 h 05 min", "45 min". */
export function formatMinutes(minutes) {
  const h = Math.floor(minutes / 60);
  return h ? `${h} h ${String(minutes % 60).padStart(2, "0")} min` : `${minutes} min`;
}

/** A position in a recording: "2:05", or "1:02:05" past the hour. */
export function formatClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** "Tue 3 Mar 2026, 16:00" for a Unix ms instant, in `zone`. */
export function formatInstant(ms, zone) {
  const iso = new Date(ms).toISOString();
  return `${formatDay(iso, zone)}, ${formatTime(iso, zone)}`;
}

/** A <time> element showing the range in `zone`, with the exact instant for machines. */
export function timeRange(startIso, endIso, zone) {
  return el("time", { datetime: startIso, text: formatRange(startIso, endIso, zone) });
}

/** Milliseconds `zone` is ahead of UTC at the instant `ms`. */
function zoneOffset(ms, zone) {
  const f = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/**
 * The UTC instant (ISO string) of a wall-clock date "2026-03-03" and time
 * "16:00" in `zone`.
 */
export function zonedToIso(date, time, zone) {
  const [y, mo, d] = date.split("-").map(Number);
  const [h, mi] = (time || "00:00").split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  let ms = wall - zoneOffset(wall, zone);
  // A second pass settles instants near a daylight-saving change.
  ms = wall - zoneOffset(ms, zone);
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The wall-clock date "YYYY-MM-DD" and time "HH:MM" of an instant in `zone`. */
export function isoToZoned(iso, zone) {
  const f = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
  const p = Object.fromEntries(f.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}` };
}

// ---------------------------------------------------------------- shared pieces

/** Whether a session's live part is over (ended, or settled with its recordings finished). */
export function isOver(session) {
  return session.life === "ended" || session.life === "settled";
}

/** A badge for where a session is in its life (the room open, live, ended), or null while upcoming. */
export function lifeBadge(session) {
  if (session.status === "cancelled") return null;
  const badges = {
    open: ["Room open", "badge-wait"],
    live: ["Live now", "badge-ok"],
    ended: ["Ended", "badge-draft"],
    settled: ["Ended", "badge-draft"],
  };
  const badge = badges[session.life];
  return badge ? el("span", { class: `badge ${badge[1]}`, text: badge[0] }) : null;
}

/** "12 places left", "Full: waiting list open", "Ended" or "Cancelled". */
export function seatsText(session) {
  if (session.status === "cancelled") return "Cancelled";
  if (isOver(session)) return "Ended";
  if (session.seats_left > 0) return `${session.seats_left} ${session.seats_left === 1 ? "place" : "places"} left`;
  return "Full: join the waiting list";
}

/** A badge for the viewer's own registration, or null. */
export function myBadge(mine) {
  if (!mine) return null;
  if (mine.status === "confirmed") return el("span", { class: "badge badge-ok", text: "Registered" });
  if (mine.status === "waitlisted") {
    return el("span", {
      class: "badge badge-wait",
      text: mine.waitlist_position ? `Waiting list: position ${mine.waitlist_position}` : "On the waiting list",
    });
  }
  return null;
}

/**
 * Fills the site header: the brand, the navigation for who is signed in, and
 * a reminder to verify the email address. Resolves to the signed-in person.
 */
export async function setupPage() {
  const header = document.getElementById("site-header");
  let user = null;
  let failed = null;
  try {
    user = await currentUser();
  } catch (e) {
    failed = e;
  }
  if (!header) return user;
  const current = location.pathname === "/" ? "/index.html" : location.pathname;
  const link = (href, text) =>
    el("a", { href, text, "aria-current": current === href ? "page" : null });
  const items = [link("/index.html", "Programme")];
  if (user) {
    items.push(link("/my.html", "My sessions"));
    items.push(link("/record.html", "My record"));
    if (user.is_organiser) items.push(link("/organiser.html", "Organiser"));
  }
  const account = el("div", { class: "account" });
  if (user) {
    account.append(
      el("span", { class: "who", text: user.name }),
      el("button", {
        type: "button",
        class: "link-button",
        text: "Sign out",
        onclick: async () => {
          await signOut().catch(() => {});
          location.href = "/index.html";
        },
      }),
    );
  } else {
    const next = encodeURIComponent(here());
    const onAuthPage = ["/signin.html", "/signup.html"].includes(current);
    account.append(
      el("a", { href: onAuthPage ? "/signin.html" : `/signin.html?next=${next}`, text: "Sign in", "aria-current": current === "/signin.html" ? "page" : null }),
      el("a", { class: "button button-small", href: onAuthPage ? "/signup.html" : `/signup.html?next=${next}`, text: "Sign up" }),
    );
  }
  header.replaceChildren(
    el(
      "div",
      { class: "header-inner" },
      el("a", { class: "brand", href: "/index.html" }, el("span", { class: "brand-mark", "aria-hidden": "true", text: "S" }), "Staffroom"),
      el("nav", { "aria-label": "Main" }, el("ul", {}, items.map((i) => el("li", {}, i)))),
      account,
    ),
  );
  if (user && !user.email_verified && current !== "/verify.html") {
    const note = el("div", { class: "notice", role: "status" });
    const resend = el("button", {
      type: "button",
      class: "link-button",
      text: "Send the link again",
      onclick: async () => {
        resend.disabled = true;
        try {
          await api("/api/auth/verify/resend", { method: "POST" });
          note.textContent = `We have sent a new link to ${user.email}.`;
        } catch (e) {
          note.textContent = e.message;
        }
      },
    });
    note.append(
      el("span", { text: `Please confirm your email address: we sent a link to ${user.email}. ` }),
      resend,
    );
    header.append(note);
  }
  if (failed) {
    header.append(el("div", { class: "notice notice-error", role: "alert", text: failed.message }));
  }
  return user;
}

/** Replaces `main`'s content with a short message, for pages that cannot continue. */
export function stop(main, title, message, action) {
  // `replaceChildren` would print a null as the text "null": leave it out instead.
  main.replaceChildren(el("h1", { text: title }), el("p", { class: "lead", text: message }), ...(action ? [el("p", {}, action)] : []));
}

/**
 * A table that becomes labelled cards on narrow screens. Each heading is a
 * column's name, or [name, class]; "" is the unnamed column of actions.
 * `body` is a <tbody> or its rows.
 */
export function dataTable(caption, headings, body) {
  const th = (h) => {
    const [text, cls] = Array.isArray(h) ? h : [h, null];
    return text ? el("th", { scope: "col", class: cls, text }) : el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Actions" }));
  };
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "stack" },
      caption ? el("caption", { class: "visually-hidden", text: caption }) : null,
      el("thead", {}, el("tr", {}, headings.map(th))),
      body instanceof Node ? body : el("tbody", {}, body),
    ),
  );
}
