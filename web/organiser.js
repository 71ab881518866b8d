// The organiser's dashboard. Three views chosen by the address:
//   organiser.html          every session, drafts included
//   organiser.html?new=1    the form for a new session
//   organiser.html?id=N     one session: edit, publish, cancel, registrants, invitations;
//                           once it is over: attendance and recordings first, and nothing to change

import {
  api,
  audienceName,
  dataTable,
  liveDownloadNote,
  el,
  fillSelect,
  formatInstant,
  formatLength,
  formatTime,
  formValues,
  FormErrors,
  handleSubmit,
  isOver,
  isoToZoned,
  KINDS,
  param,
  say,
  setupPage,
  stageName,
  stop,
  timeRange,
  viewerZone,
  zonedToIso,
} from "/app.js";

const main = document.getElementById("main");
const content = document.getElementById("content");

let zone = "UTC";
const FLASH_KEY = "staffroom-organiser-flash";

/** A message to show after the next page load (e.g. "Session created"). */
function flash(message) {
  sessionStorage.setItem(FLASH_KEY, message);
}

function takeFlash() {
  const message = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  return message;
}

/** The session's status as organisers need it: draft, published, cancelled, or where a published one is in its life. */
function statusBadge(session) {
  const kinds = {
    draft: ["badge-draft", "Draft"],
    published: ["badge-ok", "Published"],
    cancelled: ["badge-bad", "Cancelled"],
    open: ["badge-wait", "Room open"],
    live: ["badge-ok", "Live now"],
    ended: ["badge-draft", "Ended"],
    settled: ["badge-draft", "Ended"],
  };
  const key = session.status === "published" && session.life !== "upcoming" ? session.life : session.status;
  const [cls, text] = kinds[key] || ["", key];
  return el("span", { class: `badge ${cls}`, text });
}

/**
 * Runs `send(confirmPast)`; when the server refuses because the start has
 * passed, asks the organiser whether they mean it and sends again with the
 * confirmation. Resolves to the answer, or null if they said no.
 */
async function confirmingPastStart(send) {
  try {
    return await send(false);
  } catch (e) {
    if (e.field !== "confirm_past") throw e;
    if (!window.confirm(`${e.message}\n\nPublish it anyway?`)) return null;
    return send(true);
  }
}

function field(name, label, input, hint) {
  input.id = input.id || `f-${name}`;
  input.name = name;
  const hintId = hint ? `${input.id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return el(
    "div",
    { class: "field" },
    el("label", { for: input.id, text: label }),
    hint ? el("span", { class: "hint", id: hintId, text: hint }) : null,
    input,
  );
}

// ------------------------------------------------------------------ list view

async function showList() {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const tbody = el("tbody");
  content.replaceChildren(
    el(
      "div",
      { class: "page-head" },
      el("div", {}, el("h1", { text: "Organiser" }), el("p", { class: "lead", text: "Every session in the programme, drafts included." })),
      el("a", { class: "button", href: "/organiser.html?new=1", text: "New session" }),
    ),
    status,
    dataTable("All sessions", ["Session", "When", "Status", ["Places", "num"], ["Waiting", "num"]], tbody),
  );
  const message = takeFlash();
  if (message) say(status, message, "success");
  const sessions = await api("/api/sessions?all=true");
  // Upcoming first (soonest at the top), then past sessions, latest first.
  const upcoming = sessions.filter((s) => !isOver(s));
  const past = sessions.filter(isOver).reverse();
  for (const s of [...upcoming, ...past]) {
    tbody.append(
      el(
        "tr",
        {},
        el("td", { "data-label": "Session" }, el("a", { href: `/organiser.html?id=${s.id}`, text: s.title })),
        el("td", { "data-label": "When" }, timeRange(s.starts_at, s.ends_at, zone)),
        el("td", { "data-label": "Status" }, statusBadge(s)),
        el("td", { class: "num", "data-label": "Places", text: `${s.registered} / ${s.capacity}` }),
        el("td", { class: "num", "data-label": "Waiting", text: String(s.waitlisted) }),
      ),
    );
  }
  if (sessions.length === 0) {
    tbody.append(el("tr", {}, el("td", { colspan: "5", class: "empty" }, "No sessions yet. ", el("a", { href: "/organiser.html?new=1", text: "Create the first one" }), ".")));
  }
}

// ------------------------------------------------------------------ the session form

/**
 * The create/edit form. `session` is null for a new one. `onSaved` gets the
 * saved session.
 */
function sessionForm(session, onSaved) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const kind = el("select");
  fillSelect(kind, KINDS, session ? session.kind : "webinar");
  const start = session ? isoToZoned(session.starts_at, zone) : null;
  const end = session ? isoToZoned(session.ends_at, zone) : null;
  const text = (value, attrs = {}) => el("input", { type: "text", value: value || "", ...attrs });
  const description = el("textarea", { rows: "6" });
  description.value = session ? session.description : "";
  const zoneLabel = zone.replace(/_/g, " ");
  const record = el("input", { type: "checkbox", id: "record-automatically" });
  record.checked = Boolean(session && session.record_automatically);

  const buttons = session
    ? [el("button", { type: "submit", value: "keep", text: "Save changes" })]
    : [
        el("button", { type: "submit", value: "published", text: "Create and publish" }),
        el("button", { type: "submit", value: "draft", class: "button-secondary", text: "Save as draft" }),
      ];

  const form = el(
    "form",
    { novalidate: true, "aria-label": session ? "Edit session" : "New session" },
    field("title", "Title", text(session && session.title, { required: true, maxlength: "200" })),
    field("description", "Description", description, "What participants will learn, and anything to prepare."),
    el(
      "div",
      { class: "field-row" },
      field("kind", "Kind", kind),
      field("capacity", "Places", el("input", { type: "number", min: "1", max: "100000", inputmode: "numeric", value: session ? session.capacity : "100", required: true })),
    ),
    el(
      "div",
      { class: "field-row" },
      field("series", "Series", text(session && session.series), "Optional."),
      field("subject", "Subject", text(session && session.subject), "Optional."),
      field("phase", "Phase", text(session && session.phase), "e.g. primary, secondary, all."),
    ),
    field("audiences", "Audiences", text(session && session.audiences.join(", ")), "Comma-separated tags, e.g. ect, teacher, middle_leaders, leaders, mentors, trainee."),
    field("presenters", "Presenters", text(session && session.presenters.map((p) => p.email).filter(Boolean).join(", "), { spellcheck: "false" }), "Email addresses of presenters' accounts, comma-separated."),
    el(
      "div",
      { class: "field-row" },
      field("date", "Date", el("input", { type: "date", value: start ? start.date : "", required: true })),
      field("start_time", `Starts (${zoneLabel})`, el("input", { type: "time", value: start ? start.time : "16:00", required: true })),
      field("end_time", `Ends (${zoneLabel})`, el("input", { type: "time", value: end ? end.time : "17:00", required: true })),
    ),
    el("label", { class: "check", for: "record-automatically" }, record, " Record automatically when a host takes the room live"),
    status,
    el("div", { class: "actions" }, ...buttons),
  );
  handleSubmit(
    form,
    status,
    async (submitter) => {
      const v = formValues(form);
      if (!v.date) throw Object.assign(new Error("Choose the date of the session."), { field: "date" });
      if (!v.start_time) throw Object.assign(new Error("Choose a start time."), { field: "start_time" });
      if (!v.end_time) throw Object.assign(new Error("Choose an end time."), { field: "end_time" });
      const capacity = Number(v.capacity);
      if (!Number.isInteger(capacity)) throw Object.assign(new Error("Places must be a whole number."), { field: "capacity" });
      const startsAt = zonedToIso(v.date, v.start_time, zone);
      let endsAt = zonedToIso(v.date, v.end_time, zone);
      if (endsAt === startsAt) throw new FormErrors("The end is the same as the start.", [["end_time", "Choose an end after the start."]]);
      // An end before the start means the session runs past midnight, when
      // that makes a session of at most 12 hours; otherwise it is a slip.
      if (endsAt < startsAt) {
        const [y, m, d] = v.date.split("-").map(Number);
        const overnight = zonedToIso(new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10), v.end_time, zone);
        if (new Date(overnight) - new Date(startsAt) > 12 * 3600000) {
          throw new FormErrors(`The end (${v.end_time}) is before the start (${v.start_time}).`, [["end_time", `Ends at ${v.end_time}, before the start at ${v.start_time}: choose an end after the start.`]]);
        }
        endsAt = overnight;
      }
      const list = (s) => s.split(/[,;\n]+/).map((x) => x.trim()).filter(Boolean);
      const body = {
        title: v.title,
        description: description.value,
        kind: v.kind,
        series: v.series || null,
        subject: v.subject || null,
        phase: v.phase || null,
        audiences: list(v.audiences).map((a) => a.toLowerCase().replace(/\s+/g, "_")),
        presenters: list(v.presenters),
        starts_at: startsAt,
        ends_at: endsAt,
        capacity,
        record_automatically: record.checked,
      };
      if (!session) body.status = submitter && submitter.value === "published" ? "published" : "draft";
      const saved = await confirmingPastStart((confirmPast) =>
        api(session ? `/api/sessions/${session.id}` : "/api/sessions", { method: session ? "PUT" : "POST", body: { ...body, confirm_past: confirmPast } }),
      );
      if (!saved) {
        say(status, "Nothing was saved. Check the date and time.", "info");
        return;
      }
      await onSaved(saved, status);
    },
    { starts_at: "start_time", ends_at: "end_time" },
  );
  return form;
}

async function showNew() {
  content.replaceChildren(
    el("p", {}, el("a", { href: "/organiser.html", text: "← All sessions" })),
    el("h1", { text: "New session" }),
    el("p", { class: "lead", text: `Times are in ${zone.replace(/_/g, " ")}. Participants see them in their own zone.` }),
    el(
      "div",
      { class: "card" },
      sessionForm(null, async (saved) => {
        flash(saved.status === "published" ? `“${saved.title}” is created and published.` : `“${saved.title}” is saved as a draft.`);
        location.assign(`/organiser.html?id=${saved.id}`);
      }),
    ),
  );
  content.querySelector("input[name=title]").focus();
}

// ------------------------------------------------------------------ one session

function registrantsSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "registrants-heading" });
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const body = el("div");
  section.append(
    el(
      "div",
      { class: "split" },
      el("h2", { id: "registrants-heading", text: "Registrants and waiting list" }),
      el("a", { class: "button button-secondary button-small", href: `/api/sessions/${session.id}/registrations.csv`, download: `session-${session.id}-registrants.csv`, text: "Download CSV" }),
    ),
    status,
    body,
  );
  async function load() {
    const people = await api(`/api/sessions/${session.id}/registrations`);
    const confirmed = people.filter((p) => p.status === "confirmed").length;
    const waiting = people.length - confirmed;
    body.replaceChildren(el("p", { class: "muted", text: `${confirmed} registered of ${session.capacity} places; ${waiting} on the waiting list.` }));
    if (people.length === 0) {
      body.append(el("p", { text: "Nobody has registered yet." }));
      return;
    }
    const rows = people.map((p) => {
      const remove = el("button", {
        type: "button",
        class: "button-danger button-small",
        text: "Cancel",
        "aria-label": `Cancel the registration of ${p.name}`,
        onclick: async () => {
          if (!window.confirm(`Cancel ${p.name}'s ${p.status === "confirmed" ? "place" : "spot on the waiting list"}? They will be told by email.`)) return;
          remove.disabled = true;
          try {
            await api(`/api/registrations/${p.registration_id}`, { method: "DELETE" });
            say(status, `${p.name}'s registration is cancelled.`, "success");
            await load();
          } catch (e) {
            say(status, e.message, "error");
            remove.disabled = false;
          }
        },
      });
      return el(
        "tr",
        {},
        el("td", { "data-label": "Name", text: p.name }),
        el("td", { "data-label": "Email", text: p.email }),
        el("td", { "data-label": "School", text: p.school || "—" }),
        el("td", { "data-label": "Stage", text: stageName(p.stage) }),
        el("td", { "data-label": "Status" }, p.status === "confirmed" ? el("span", { class: "badge badge-ok", text: "Registered" }) : el("span", { class: "badge badge-wait", text: `Waiting #${p.waitlist_position}` })),
        el("td", {}, session.status === "cancelled" ? null : remove),
      );
    });
    body.append(dataTable("Registrants", ["Name", "Email", "School", "Stage", "Status", ""], rows));
  }
  load().catch((e) => say(status, e.message, "error"));
  return section;
}

/** "312 KB", "1.4 GB". */
function formatBytes(bytes) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** The session's recordings: replay links, disk usage, and deletion. Shown only when there are some. */
function recordingsSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "recordings-heading", hidden: true });
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const body = el("div");
  section.append(el("h2", { id: "recordings-heading", text: "Recordings" }), status, body);
  async function load() {
    const recordings = await api(`/api/sessions/${session.id}/recordings`);
    if (!recordings.length) {
      body.replaceChildren(el("p", { text: "No recordings are left." }));
      return;
    }
    section.hidden = false;
    const total = recordings.reduce((sum, r) => sum + (r.bytes || 0), 0);
    const rows = recordings.map((r) => {
      const when = formatInstant(r.started_at, zone);
      const remove = el("button", {
        type: "button",
        class: "button-danger button-small",
        text: "Delete",
        "aria-label": `Delete the recording of ${when}`,
        onclick: async () => {
          if (!window.confirm(`Delete the recording of ${when}? Its files are removed and nobody can watch it again. This cannot be undone.`)) return;
          remove.disabled = true;
          try {
            await api(`/api/recordings/${r.id}`, { method: "DELETE" });
            say(status, `The recording of ${when} is deleted.`, "success");
            await load();
          } catch (e) {
            say(status, e.message, "error");
            remove.disabled = false;
          }
        },
      });
      const live = r.status === "recording";
      const audience = el("select", { "aria-label": `Who can watch the recording of ${when}` });
      fillSelect(audience, [["participants", "Registered participants"], ["everyone", "Everyone signed in"]], r.open_to);
      audience.addEventListener("change", async () => {
        audience.disabled = true;
        try {
          await api(`/api/recordings/${r.id}/access`, { method: "PUT", body: { open_to: audience.value } });
          say(status, audience.value === "everyone" ? `Anyone signed in can now watch the recording of ${when}.` : `Only the session's participants can watch the recording of ${when}.`, "success");
        } catch (e) {
          say(status, e.message, "error");
        } finally {
          audience.disabled = false;
        }
      });
      return el(
        "tr",
        {},
        el("td", { "data-label": "Recorded", text: when }),
        el("td", { "data-label": "Length", text: r.duration_ms == null ? "—" : formatLength(r.duration_ms) }),
        el("td", { "data-label": "Status" }, live ? el("span", { class: "badge badge-wait", text: "Recording now" }) : el("span", { class: "badge badge-ok", text: r.status === "recovered" ? "Recovered" : "Ready" })),
        el("td", { class: "num", "data-label": "Disk space", text: formatBytes(r.bytes || 0) }),
        el("td", { "data-label": "Who can watch" }, audience),
        el("td", {}, live ? null : el("a", { href: r.replay_url, text: "Watch", "aria-label": `Watch the recording of ${when}` }), " ", live ? null : remove, live ? null : liveDownloadNote(r)),
      );
    });
    body.replaceChildren(
      el("p", { class: "muted", text: `${recordings.length} ${recordings.length === 1 ? "recording uses" : "recordings use"} ${formatBytes(total)} of disk space.` }),
      dataTable("Recordings", ["Recorded", "Length", "Status", ["Disk space", "num"], "Who can watch", ""], rows),
    );
  }
  load().catch((e) => {
    section.hidden = false;
    say(status, `The recordings could not be loaded: ${e.message}`, "error");
  });
  return section;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

/**
 * People present over time as a step line: `steps` is the report's
 * timeline, one point per change (Unix ms, count). Plain SVG, no library.
 */
function presenceChart(steps) {
  const width = 600;
  const height = 140;
  const pad = { left: 32, right: 8, top: 8, bottom: 22 };
  const first = steps[0].at;
  const last = steps[steps.length - 1].at;
  const most = Math.max(1, ...steps.map((s) => s.present));
  const x = (at) => pad.left + ((at - first) / Math.max(1, last - first)) * (width - pad.left - pad.right);
  const y = (n) => height - pad.bottom - (n / most) * (height - pad.top - pad.bottom);
  let d = `M ${x(first).toFixed(1)} ${y(0).toFixed(1)}`;
  for (const s of steps) d += ` H ${x(s.at).toFixed(1)} V ${y(s.present).toFixed(1)}`;
  const peak = steps.reduce((a, b) => (b.present > a.present ? b : a));
  const label = `People present over time: at most ${peak.present}, from ${formatInstant(peak.at, zone)}.`;
  return svg(
    "svg",
    { class: "presence-chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), stroke: "currentColor", "stroke-opacity": 0.3 }),
    svg("text", { x: pad.left - 6, y: y(most) + 4, "text-anchor": "end", "font-size": 11, fill: "currentColor" }, String(most)),
    svg("text", { x: pad.left - 6, y: y(0) + 4, "text-anchor": "end", "font-size": 11, fill: "currentColor" }, "0"),
    svg("text", { x: pad.left, y: height - 6, "font-size": 11, fill: "currentColor" }, formatTime(new Date(first).toISOString(), zone)),
    svg("text", { x: width - pad.right, y: height - 6, "text-anchor": "end", "font-size": 11, fill: "currentColor" }, formatTime(new Date(last).toISOString(), zone)),
    svg("path", { d, fill: "none", stroke: "currentColor", "stroke-width": 2 }),
  );
}

const ATTENDANCE_STATUS = { attended: ["Attended", "badge-ok"], partly: ["Partly", "badge-wait"], absent: ["Absent", "badge-draft"] };

/** Who attended, live or by replay, against the session's threshold (docs/attendance.md). */
function attendanceSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "attendance-heading" });
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const body = el("div");
  const percent = el("input", { type: "number", name: "percent", min: 1, max: 100, step: 1, required: true, id: "attendance-threshold", style: "width:5rem" });
  const form = el(
    "form",
    { class: "threshold-form" },
    el("label", { for: "attendance-threshold", text: "Attended from " }),
    percent,
    el("span", { text: " % of the scheduled time " }),
    el("button", { type: "submit", class: "button button-secondary button-small", text: "Save" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const saved = await api(`/api/sessions/${session.id}/attendance-threshold`, { method: "PUT", body: { percent: Number(percent.value) } });
      say(status, `Attended now means at least ${saved.threshold_percent} % of the session.`, "success");
      await load();
    } catch (e) {
      say(status, e.message, "error");
    }
  });
  section.append(
    el(
      "div",
      { class: "split" },
      el("h2", { id: "attendance-heading", text: "Attendance" }),
      el("a", { class: "button button-secondary button-small", href: `/api/sessions/${session.id}/attendance.csv`, download: `session-${session.id}-attendance.csv`, text: "Download CSV" }),
    ),
    form,
    status,
    body,
  );
  const when = (ms) => (ms == null ? "—" : formatTime(new Date(ms).toISOString(), zone));
  async function load() {
    const report = await api(`/api/sessions/${session.id}/attendance`);
    percent.value = report.threshold_percent;
    const counts = { attended: 0, partly: 0, absent: 0 };
    for (const p of report.people) counts[p.status] += 1;
    body.replaceChildren(
      el("p", { class: "muted", text: `${counts.attended} attended, ${counts.partly} partly, ${counts.absent} absent; the session is scheduled for ${report.scheduled_minutes} minutes.` }),
      el("p", {
        class: "muted small",
        text: report.settled_at == null
          ? "The live part has not ended: these figures are as of now."
          : `Settled ${when(report.settled_at)}: these are the results the participants' records and certificates use.`,
      }),
    );
    // Threshold changes are corrections of the settled results, kept and shown (docs/attendance.md).
    if (report.corrections.length) {
      body.append(
        el(
          "ul",
          { class: "attendance-corrections small", "aria-label": "Threshold corrections" },
          ...report.corrections.map((c) =>
            el("li", { text: `${when(c.at)}: ${c.by_name} changed the threshold from ${c.old_percent} % to ${c.new_percent} %${c.resettled ? ", and the results were settled again" : ""}.` }),
          ),
        ),
      );
    }
    if (report.timeline.length > 1) body.append(presenceChart(report.timeline));
    if (report.people.length === 0) {
      body.append(el("p", { text: "Nobody has registered or joined yet." }));
      return;
    }
    const rows = report.people.map((p) => {
      const [text, badge] = ATTENDANCE_STATUS[p.status];
      const how = p.how === "replay" ? " (replay)" : "";
      return el(
        "tr",
        {},
        el("td", { "data-label": "Name", text: p.name }),
        el("td", { "data-label": "School", text: p.school }),
        el("td", { "data-label": "Joined", text: when(p.joined_at) }),
        el("td", { "data-label": "Left", text: when(p.left_at) }),
        el("td", { class: "num", "data-label": "Minutes live", text: p.minutes_live }),
        el("td", { class: "num", "data-label": "In groups", text: p.minutes_in_groups }),
        el("td", { class: "num", "data-label": "Replayed", text: p.minutes_replayed }),
        el("td", { "data-label": "Status" }, el("span", { class: `badge ${badge}`, text: text + how })),
      );
    });
    body.append(dataTable("Attendance", ["Name", "School", "Joined", "Left", ["Minutes live", "num"], ["In groups", "num"], ["Replayed", "num"], "Status"], rows));
  }
  load().catch((e) => say(status, `Attendance could not be loaded: ${e.message}`, "error"));
  return section;
}

/** Emails about this session that could not be delivered; shown only when there are some. */
function failuresSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "failures-heading", hidden: true });
  api(`/api/sessions/${session.id}/mail-failures`)
    .then((failures) => {
      if (failures.length === 0) return;
      const rows = failures.map((f) =>
        el(
          "tr",
          {},
          el("td", { "data-label": "To", text: f.to_email }),
          el("td", { "data-label": "Email", text: f.subject }),
          el("td", { "data-label": "Attempts", text: String(f.attempts) }),
          el("td", { "data-label": "Reason", text: f.error }),
        ),
      );
      section.append(
        el("h2", { id: "failures-heading", text: "Undelivered emails" }),
        el("p", { class: "muted", text: `${failures.length} ${failures.length === 1 ? "email" : "emails"} could not be delivered after retrying. Check the addresses, or contact these people another way.` }),
        dataTable(null, ["To", "Email", "Attempts", "Reason"], rows),
      );
      section.hidden = false;
    })
    .catch(() => {});
  return section;
}

/** The per-line report of a batch: lines that were not addresses, and addresses not invited. */
function reportView(batch) {
  const { rejected, skipped } = batch.report;
  const box = el("div", { class: "report" });
  if (rejected.length) {
    box.append(
      el("h4", { text: `${rejected.length} ${rejected.length === 1 ? "line was" : "lines were"} not understood` }),
      el(
        "ol",
        { class: "rejected" },
        rejected.map((r) => el("li", {}, el("strong", { text: `Line ${r.line}: ` }), el("code", { text: r.text }), ` — ${r.reason}`)),
      ),
    );
  }
  if (skipped.length) {
    box.append(
      el("h4", { text: `${skipped.length} ${skipped.length === 1 ? "address was" : "addresses were"} not invited` }),
      el(
        "ol",
        { class: "skipped" },
        skipped.map((s) => el("li", {}, el("strong", { text: `Line ${s.line}: ` }), el("code", { text: s.email }), ` — ${s.reason}`)),
      ),
    );
  }
  return box;
}

/** A live progress bar for a batch, polling until every email is sent or failed. */
function progressView(batch, onDone) {
  const bar = el("progress", { max: String(Math.max(batch.invited, 1)), value: "0", "aria-label": "Invitations sent" });
  const counts = el("div", { class: "progress-counts" });
  const announce = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const box = el("div", { class: "progress" }, bar, counts, announce);
  function paint(b) {
    const { sent, queued, failed } = b.progress;
    bar.value = sent + failed;
    bar.max = Math.max(b.invited, sent + failed + queued, 1);
    counts.replaceChildren(
      el("span", { class: "sent", text: `Sent: ${sent}` }),
      el("span", { class: "queued", text: `Waiting: ${queued}` }),
      el("span", { class: "failed", text: `Failed: ${failed}` }),
    );
    counts.dataset.sent = String(sent);
    if (b.done) {
      box.dataset.done = "true";
      say(
        announce,
        failed ? `Finished: ${sent} sent, ${failed} could not be delivered.` : `All ${sent} ${sent === 1 ? "invitation" : "invitations"} sent.`,
        failed ? "error" : "success",
      );
    }
  }
  paint(batch);
  if (!batch.done && batch.invited > 0) {
    let delay = 500;
    const poll = async () => {
      try {
        const fresh = await api(`/api/invitation-batches/${batch.id}`);
        paint(fresh);
        if (fresh.done) {
          onDone && onDone();
          return;
        }
      } catch (e) {
        say(announce, `Could not check progress: ${e.message} Retrying…`, "error");
      }
      delay = Math.min(delay * 1.3, 4000);
      setTimeout(poll, delay);
    };
    setTimeout(poll, delay);
  } else if (batch.invited === 0) {
    say(announce, "Nobody new to invite from this list.", "info");
  }
  return box;
}

function inviteSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "invite-heading" });
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const result = el("div", { class: "invite-result" });
  const history = el("div", { class: "invite-history" });
  const text = el("textarea", { class: "mono", rows: "8", spellcheck: "false" });
  const file = el("input", { type: "file", accept: ".csv,.txt,text/csv,text/plain" });
  const form = el(
    "form",
    { novalidate: true, "aria-label": "Invite people" },
    field("text", "Email addresses", text, "One per line, or CSV with columns email, name, school (a header row is fine). Line numbers in the report refer to this list."),
    field("file", "Or choose a CSV file", file, "Its contents appear above so you can check them before sending."),
    status,
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Send invitations" })),
  );
  file.addEventListener("change", async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    try {
      text.value = await chosen.text();
      const lines = text.value.split(/\r?\n/).filter((l) => l.trim()).length;
      say(status, `Loaded ${chosen.name}: ${lines} ${lines === 1 ? "line" : "lines"}. Check them, then send.`, "info");
    } catch (e) {
      say(status, `Could not read ${chosen.name}: ${e.message}`, "error");
    }
  });
  handleSubmit(form, status, async () => {
    if (!text.value.trim()) throw Object.assign(new Error("Paste some addresses or choose a CSV file first."), { field: "text" });
    const batch = await api(`/api/sessions/${session.id}/invitations`, { method: "POST", body: { text: text.value } });
    const problems = batch.report.rejected.length + batch.report.skipped.length;
    say(
      status,
      `${batch.invited} ${batch.invited === 1 ? "invitation" : "invitations"} on the way.` + (problems ? ` ${problems} ${problems === 1 ? "line needs" : "lines need"} your attention: see below.` : ""),
      problems ? "info" : "success",
    );
    result.replaceChildren(el("h3", { text: "This batch" }), progressView(batch, loadHistory), reportView(batch));
    text.value = "";
    file.value = "";
  });
  async function loadHistory() {
    try {
      const batches = await api(`/api/sessions/${session.id}/invitations`);
      if (!batches.length) {
        history.replaceChildren();
        return;
      }
      history.replaceChildren(
        el("h3", { text: "Earlier invitations" }),
        el(
          "ul",
          {},
          batches.map((b) =>
            el("li", { text: `${new Date(b.created_at).toLocaleString("en-GB", { timeZone: zone, dateStyle: "medium", timeStyle: "short" })}: ${b.invited} invited, ${b.progress.sent} sent${b.progress.failed ? `, ${b.progress.failed} failed` : ""}${b.done ? "" : `, ${b.progress.queued} waiting`}${b.report.rejected.length ? `, ${b.report.rejected.length} ${b.report.rejected.length === 1 ? "line" : "lines"} not understood` : ""}.` }),
          ),
        ),
      );
    } catch (e) {
      history.replaceChildren(el("p", { class: "muted", text: e.message }));
    }
  }
  section.append(
    el("h2", { id: "invite-heading", text: "Invite people" }),
    el("p", { class: "muted", text: "Each person gets a personal link that registers them in one click. People who opted out, or who are already invited or registered, are skipped." }),
    session.status === "cancelled" ? el("p", { text: "This session is cancelled, so invitations are closed." }) : form,
    result,
    history,
  );
  loadHistory();
  return section;
}

/** Who presents, and which of them an organiser made co-host (go live, record, run breakouts). */
function presentersSection(session) {
  const section = el("section", { class: "card", "aria-labelledby": "presenters-heading" }, el("h2", { id: "presenters-heading", text: "Presenters and co-hosts" }));
  if (!session.presenters.length) {
    section.append(el("p", { class: "muted", text: "No presenters yet: add their account addresses under Edit details." }));
    return section;
  }
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const changeable = session.status !== "cancelled" && !isOver(session);
  const rows = session.presenters.map((p) => {
    const box = el("input", { type: "checkbox", id: `cohost-${p.id}`, disabled: !changeable });
    box.checked = p.cohost;
    box.addEventListener("change", async () => {
      box.disabled = true;
      try {
        await api(`/api/sessions/${session.id}/presenters/${p.id}/cohost`, { method: "PUT", body: { cohost: box.checked } });
        say(status, box.checked ? `${p.name} is a co-host: from their next entry to the room they may take it live, record and run breakout groups.` : `${p.name} is a presenter again.`, "success");
      } catch (e) {
        box.checked = !box.checked;
        say(status, e.message, "error");
      }
      box.disabled = false;
    });
    return el("li", {}, el("label", { class: "check", for: box.id }, box, ` ${p.name}: co-host`), p.email ? el("span", { class: "muted small", text: ` ${p.email}` }) : null);
  });
  section.append(
    el("p", { class: "muted small", text: "Presenters share their camera, microphone and screen. A co-host may also take the room live, record and run breakout groups; hosts (organisers) also remove people and end the session." }),
    el("ul", { class: "plain-list" }, ...rows),
    status,
  );
  return section;
}

async function showSession(id) {
  const session = await api(`/api/sessions/${id}`);
  document.title = `${session.title} · Organiser · Staffroom`;
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const message = takeFlash();
  const actions = el("div", { class: "actions" }, el("a", { class: "button button-secondary", href: `/session.html?id=${session.id}`, text: "View the public page" }));
  const act = (label, cls, confirmText, work) =>
    el("button", {
      type: "button",
      class: cls,
      text: label,
      onclick: async (event) => {
        if (confirmText && !window.confirm(confirmText)) return;
        event.currentTarget.disabled = true;
        try {
          const updated = await work();
          flash(updated);
          location.reload();
        } catch (e) {
          say(status, e.message, "error");
          event.target.disabled = false;
        }
      },
    });
  const over = isOver(session);
  if (session.status !== "cancelled" && !over) {
    actions.prepend(el("a", { class: "button", href: `/room.html?id=${session.id}`, text: "Enter the room (backstage)" }));
  }
  if (session.status === "draft") {
    actions.append(
      act("Publish", "", null, async () => {
        const published = await confirmingPastStart((confirmPast) =>
          api(`/api/sessions/${session.id}/publish${confirmPast ? "?confirm_past=true" : ""}`, { method: "POST" }),
        );
        if (!published) throw new Error("The session was not published.");
        return "The session is published and open for registration.";
      }),
    );
  }
  if (session.status !== "cancelled" && !over) {
    actions.append(
      act("Cancel session", "button-danger", `Cancel “${session.title}”? Everyone registered gets a cancellation email. This cannot be undone.`, async () => {
        await api(`/api/sessions/${session.id}/cancel`, { method: "POST" });
        return "The session is cancelled and registrants are being told.";
      }),
    );
  }
  const editor =
    session.status === "cancelled" || over
      ? null
      : el(
          "details",
          { class: "card" },
          el("summary", {}, el("strong", { text: "Edit details" })),
          el("p", { class: "muted small", text: "A change of time sends everyone registered an updated calendar invitation. More places move people up from the waiting list." }),
          sessionForm(session, async (saved) => {
            flash(`Your changes to “${saved.title}” are saved.`);
            location.reload();
          }),
        );
  content.replaceChildren(
    el("p", {}, el("a", { href: "/organiser.html", text: "← All sessions" })),
    el("h1", { text: session.title }),
    el(
      "p",
      {},
      statusBadge(session),
      " ",
      timeRange(session.starts_at, session.ends_at, zone),
      session.audiences.length ? ` · for ${session.audiences.map(audienceName).join(", ")}` : "",
    ),
    status,
    actions,
    el("div", { style: "height:1.25rem" }),
    // Once it is over, what happened comes first, and there is nothing left to invite people to.
    ...(over
      ? [attendanceSection(session), recordingsSection(session), presentersSection(session), registrantsSection(session), failuresSection(session)]
      : [editor, presentersSection(session), registrantsSection(session), recordingsSection(session), attendanceSection(session), inviteSection(session), failuresSection(session)]),
  );
  if (message) say(status, message, "success");
}

async function start() {
  const user = await setupPage();
  zone = viewerZone(user);
  content.removeAttribute("aria-busy");
  if (!user) {
    stop(main, "Organisers only", "Sign in with an organiser account to manage the programme.", el("a", { class: "button", href: `/signin.html?next=${encodeURIComponent(location.pathname + location.search)}`, text: "Sign in" }));
    return;
  }
  if (!user.is_organiser) {
    stop(main, "Organisers only", "Your account cannot manage the programme. Ask an organiser if you need access.", el("a", { href: "/index.html", text: "Back to the programme" }));
    return;
  }
  try {
    const id = Number(param("id"));
    if (param("new")) await showNew();
    else if (Number.isInteger(id) && id > 0) await showSession(id);
    else await showList();
  } catch (e) {
    stop(main, e.status === 404 ? "Session not found" : "Something went wrong", e.message, el("a", { href: "/organiser.html", text: "All sessions" }));
  }
}

start();
