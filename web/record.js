// My CPD record (docs/record.md): every entry with its time, links to my
// needs and priorities, my reflection and evidence, and certificates; plus
// the summary, adding other CPD, and the exports.

import { RECORD_KINDS, api, dataTable, el, formValues, formatDay, formatMinutes, handleSubmit, say, setupPage, stop, viewerZone } from "/app.js";
import { reflectionForm } from "/reflect.js";

const content = document.getElementById("content");
const entriesList = document.getElementById("entries");
const entriesStatus = document.getElementById("entries-status");

let user = null;
let record = null;

/** The evidence types the server accepts (checked there too). */
const EVIDENCE_ACCEPT = ".pdf,.png,.jpg,.jpeg,.docx,.pptx,.xlsx,.txt";
const MAX_EVIDENCE_BYTES = 10 * 1024 * 1024;

function bytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

/** The record and its summary, brought up to date with attendance once. */
async function load() {
  record = await api("/api/me/record");
  render();
  renderSummary(record.summary);
}

function render() {
  const n = record.entries.length;
  document.getElementById("total").textContent = n
    ? `${formatMinutes(record.total_minutes)} of CPD from ${n} ${n === 1 ? "entry" : "entries"}.`
    : "Nothing here yet.";
  renderGoals();
  renderManualGoals();
  entriesList.replaceChildren(...record.entries.map(entryCard));
  if (!n) {
    entriesList.append(
      el("li", { class: "card empty" }, "Sessions you attend, live or by watching the replay, appear here with the time credited. ", el("a", { href: "/index.html", text: "Browse the programme" }), "."),
    );
  }
  content.removeAttribute("aria-busy");
}

// ---------------------------------------------------------------- needs and priorities

function renderGoals() {
  const column = (kind, heading, empty) => {
    const goals = record.goals.filter((g) => g.kind === kind);
    return el(
      "div",
      {},
      el("h3", { text: heading }),
      goals.length
        ? el("ul", { class: "goal-list" }, goals.map((g) =>
            el(
              "li",
              {},
              el("span", { text: g.title }),
              " ",
              el("span", { class: "muted small", text: formatMinutes(linkedMinutes(g.id)) }),
              " ",
              el("button", {
                type: "button",
                class: "link-button danger-link",
                text: "Remove",
                "aria-label": `Remove “${g.title}”`,
                onclick: async () => {
                  if (!window.confirm(`Remove “${g.title}”? Entries linked to it stay in your record.`)) return;
                  try {
                    await api(`/api/me/goals/${g.id}`, { method: "DELETE" });
                    await load();
                  } catch (e) {
                    say(document.getElementById("goal-status"), e.message, "error");
                  }
                },
              }),
            ),
          ))
        : el("p", { class: "muted", text: empty }),
    );
  };
  document.getElementById("goals").replaceChildren(
    column("need", "My development needs", "None yet: add what you want to get better at."),
    column("priority", "My school's priorities", "None yet: add your school's improvement priorities."),
  );
}

function linkedMinutes(goalId) {
  return record.entries.filter((e) => e.goal_ids.includes(goalId)).reduce((sum, e) => sum + e.minutes, 0);
}

/** Checkboxes, one per need and priority, ticked for `chosen`. */
function goalChecks(prefix, chosen, onchange) {
  if (!record.goals.length) return [el("p", { class: "muted small", text: "Add development needs or school priorities above to link them." })];
  return record.goals.map((g) => {
    const id = `${prefix}-goal-${g.id}`;
    return el(
      "label",
      { class: "check", for: id },
      el("input", { type: "checkbox", id, name: "goal", value: g.id, checked: chosen.includes(g.id), onchange }),
      `${g.title} `,
      el("span", { class: "muted small", text: g.kind === "need" ? "(need)" : "(priority)" }),
    );
  });
}

function renderManualGoals() {
  const box = document.getElementById("manual-goals");
  box.replaceChildren(el("legend", { text: "Linked to" }), ...goalChecks("manual", [], null));
}

function checkedGoals(root) {
  return [...root.querySelectorAll("input[name=goal]:checked")].map((i) => Number(i.value));
}

// ---------------------------------------------------------------- entries

function entryCard(e) {
  const zone = viewerZone(user);
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const meta = [formatDay(e.occurred_at, zone), formatMinutes(e.minutes)];
  if (e.kind === "session") meta.push(e.how === "replay" ? "by replay" : "live");
  if (e.provider) meta.push(e.provider);
  const headingId = `entry-${e.id}-title`;
  return el(
    "li",
    { class: "card record-entry", id: `entry-${e.id}`, "aria-labelledby": headingId },
    el(
      "div",
      { class: "record-entry-head" },
      el("span", { class: "kind", text: RECORD_KINDS[e.kind] || e.kind }),
      el("h3", { id: headingId }, e.session_id ? el("a", { href: `/session.html?id=${e.session_id}`, text: e.title }) : e.title),
      el("p", { class: "meta", text: meta.join(" · ") }),
      e.status === "partly" ? el("span", { class: "badge badge-wait", text: "Partly attended" }) : null,
      e.status === "attended" ? el("span", { class: "badge badge-ok", text: "Attended" }) : null,
      e.groups.length ? el("p", { class: "muted small", text: `Breakout groups: ${e.groups.join(", ")}` }) : null,
    ),
    linksBlock(e, status),
    reflectionBlock(e, status),
    evidenceBlock(e, status),
    certificateBlock(e, status),
    shareBlock(e, status),
    e.kind !== "session"
      ? el("p", {}, el("button", {
          type: "button",
          class: "button-danger button-small",
          text: "Delete this entry",
          onclick: async () => {
            if (!window.confirm(`Delete “${e.title}” with its reflection and evidence?`)) return;
            try {
              await api(`/api/me/record/entries/${e.id}`, { method: "DELETE" });
              say(entriesStatus, `“${e.title}” is deleted.`, "success");
              await load();
            } catch (err) {
              say(status, err.message, "error");
            }
          },
        }))
      : null,
    status,
  );
}

function replaceEntry(entry) {
  const i = record.entries.findIndex((x) => x.id === entry.id);
  if (i >= 0) record.entries[i] = entry;
}

function linksBlock(e, status) {
  const box = el("fieldset", { class: "goal-checks" }, el("legend", { text: "Linked to" }));
  box.append(
    ...goalChecks(`entry-${e.id}`, e.goal_ids, async () => {
      try {
        const saved = await api(`/api/me/record/entries/${e.id}/goals`, { method: "PUT", body: { goal_ids: checkedGoals(box) } });
        replaceEntry(saved);
        renderGoals();
        say(status, "Links saved.", "success");
        loadSummary();
      } catch (err) {
        say(status, err.message, "error");
      }
    }),
  );
  return box;
}

function reflectionBlock(e, status) {
  const r = e.reflection;
  const wanted = location.hash === `#entry-${e.id}` || new URLSearchParams(location.search).get("reflect") === String(e.session_id);
  const details = el(
    "details",
    { class: "record-reflection", open: wanted },
    el("summary", {}, r ? "My reflection" : "Reflect on this", r ? "" : el("span", { class: "muted small", text: " — not written yet" })),
  );
  if (r && r.learned) details.append(el("p", { class: "reflection-preview", text: r.learned }));
  details.append(
    reflectionForm({
      prefix: `entry-${e.id}`,
      reflection: r,
      withImpact: true,
      save: (body) => api(`/api/me/record/entries/${e.id}/reflection`, { method: "PUT", body }),
      saved: (entry) => replaceEntry(entry),
    }),
  );
  if (r) {
    details.append(
      el("button", {
        type: "button",
        class: "link-button danger-link",
        text: "Delete my reflection",
        onclick: async () => {
          if (!window.confirm("Delete this reflection? The entry and its time stay.")) return;
          try {
            await api(`/api/me/record/entries/${e.id}/reflection`, { method: "DELETE" });
            await load();
          } catch (err) {
            say(status, err.message, "error");
          }
        },
      }),
    );
  }
  return details;
}

function evidenceBlock(e, status) {
  const list = el(
    "ul",
    { class: "evidence-list" },
    e.evidence.map((v) =>
      el(
        "li",
        {},
        v.kind === "file"
          ? el("a", { href: v.url, download: v.file_name, text: v.file_name })
          : el("a", { href: v.url, rel: "noopener noreferrer", target: "_blank", text: v.url }),
        v.kind === "file" ? el("span", { class: "muted small", text: ` (${bytes(v.bytes)})` }) : null,
        " ",
        el("button", {
          type: "button",
          class: "link-button danger-link",
          text: "Remove",
          "aria-label": `Remove evidence ${v.file_name || v.url}`,
          onclick: async () => {
            try {
              await api(`/api/me/record/evidence/${v.id}`, { method: "DELETE" });
              await load();
            } catch (err) {
              say(status, err.message, "error");
            }
          },
        }),
      ),
    ),
  );
  const linkId = `entry-${e.id}-link`;
  const fileId = `entry-${e.id}-file`;
  const linkForm = el(
    "form",
    { class: "evidence-form", novalidate: true },
    el("label", { for: linkId, text: "Add a link" }),
    el("input", { type: "url", id: linkId, name: "url", placeholder: "https://", required: true, maxlength: 2000 }),
    el("button", { type: "submit", class: "button-secondary button-small", text: "Add link" }),
  );
  handleSubmit(linkForm, status, async () => {
    await api(`/api/me/record/entries/${e.id}/evidence`, { method: "POST", body: { url: formValues(linkForm).url } });
    await load();
  });
  const fileInput = el("input", { type: "file", id: fileId, accept: EVIDENCE_ACCEPT });
  const fileForm = el(
    "form",
    { class: "evidence-form", novalidate: true },
    el("label", { for: fileId, text: "Add a file" }),
    fileInput,
    el("button", { type: "submit", class: "button-secondary button-small", text: "Upload" }),
    el("span", { class: "hint", text: "PDF, image, Word, PowerPoint, Excel or text; up to 10 MB." }),
  );
  handleSubmit(fileForm, status, async () => {
    const file = fileInput.files[0];
    if (!file) throw new Error("Choose a file first.");
    if (file.size > MAX_EVIDENCE_BYTES) throw new Error(`“${file.name}” is ${bytes(file.size)}: evidence files are at most 10 MB.`);
    await api(`/api/me/record/entries/${e.id}/evidence/file?name=${encodeURIComponent(file.name)}`, { method: "POST", raw: file });
    await load();
  });
  return el(
    "div",
    { class: "record-evidence" },
    el("h4", { text: "Evidence of impact" }),
    e.evidence.length ? list : el("p", { class: "muted small", text: "Nothing yet: a link to a blog post or shared resource, or a file such as a lesson plan or pupils' work." }),
    linkForm,
    fileForm,
  );
}

function certificateBlock(e, status) {
  if (e.kind !== "session") return null;
  if (e.settled === false) {
    return el("p", { class: "muted small", text: "This session is still running: a certificate of attendance can be issued once it has ended and your attendance is settled." });
  }
  if (e.status !== "attended") {
    return el("p", { class: "muted small", text: "A certificate of attendance is issued once you have attended the session's required time, live or by replay." });
  }
  const box = el("div", { class: "record-certificate" });
  const show = (id) =>
    box.replaceChildren(
      el("a", { class: "button button-small", href: `/api/me/certificates/${id}/certificate.svg`, download: `certificate-${id}.svg`, text: "Download certificate" }),
      " ",
      el("a", { href: `/certificate.html?id=${id}`, text: "Verification page" }),
    );
  if (e.certificate_id) {
    show(e.certificate_id);
    return box;
  }
  // The holder confirms (or corrects) the name to print: it is signed into
  // the credential and never changes afterwards (docs/certificates.md).
  const nameId = `certificate-name-${e.id}`;
  const form = el(
    "form",
    { class: "certificate-form", novalidate: true },
    el("label", { for: nameId, text: "Name on the certificate" }),
    el("input", { id: nameId, name: "holder_name", type: "text", required: true, maxlength: 120, autocomplete: "name", value: user?.name || "" }),
    el("span", { class: "hint", text: "Check it is your name as it should appear: it cannot be changed once the certificate is issued." }),
    el("button", { type: "submit", class: "button-secondary button-small", text: "Get my certificate" }),
  );
  handleSubmit(form, status, async () => {
    const cert = await api(`/api/me/record/entries/${e.id}/certificate`, { method: "POST", body: { holder_name: formValues(form).holder_name || "" } });
    e.certificate_id = cert.id;
    show(cert.id);
    say(status, `Your certificate is ready, in the name ${cert.holder_name}: it carries a link anyone can use to check it.`, "success");
  });
  box.append(form);
  return box;
}

/** Sharing: one entry, by a link, until stopped (docs/record.md). */
function shareBlock(e, status) {
  const box = el("div", { class: "record-share" });
  const act = (method) => async () => {
    try {
      const saved = await api(`/api/me/record/entries/${e.id}/share`, { method });
      replaceEntry(saved);
      box.replaceWith(shareBlock(saved, status));
      say(status, saved.shared_token ? "Anyone with the link can now read this entry and its reflection." : "The link no longer works: the entry is private again.", "success");
    } catch (err) {
      say(status, err.message, "error");
    }
  };
  if (!e.shared_token) {
    box.append(
      el("span", { class: "muted small", text: "Private: only you can see this entry. " }),
      el("button", { type: "button", class: "link-button", text: "Share this entry", onclick: act("POST") }),
    );
    return box;
  }
  const url = `${location.origin}/shared.html?token=${e.shared_token}`;
  const id = `entry-${e.id}-share`;
  box.append(
    el("label", { for: id, text: "Shared: anyone with this link can read the entry, its reflection and evidence" }),
    el(
      "div",
      { class: "evidence-form" },
      el("input", { type: "text", id, value: url, readonly: true, onfocus: (ev) => ev.target.select() }),
      el("button", {
        type: "button",
        class: "button-secondary button-small",
        text: "Copy link",
        onclick: async () => {
          await navigator.clipboard?.writeText(url).catch(() => {});
          say(status, "Link copied.", "success");
        },
      }),
      el("button", { type: "button", class: "link-button danger-link", text: "Stop sharing", onclick: act("DELETE") }),
    ),
  );
  return box;
}

// ---------------------------------------------------------------- summary

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

/** Minutes per month over the last year, as bars. */
function timelineChart(months) {
  const width = 640;
  const height = 180;
  const left = 8;
  const bottom = 28;
  const top = 18;
  const most = Math.max(60, ...months.map((m) => m.minutes));
  const slot = (width - left * 2) / months.length;
  const total = months.reduce((sum, m) => sum + m.minutes, 0);
  const label = `CPD time per month over the last 12 months: ${formatMinutes(total)} in all; ${months
    .filter((m) => m.minutes)
    .map((m) => `${m.label} ${formatMinutes(m.minutes)}`)
    .join(", ") || "none yet"}.`;
  return svg(
    "svg",
    { class: "record-chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("line", { x1: left, x2: width - left, y1: height - bottom, y2: height - bottom, stroke: "currentColor", "stroke-opacity": 0.3 }),
    ...months.flatMap((m, i) => {
      const h = ((height - bottom - top) * m.minutes) / most;
      const x = left + i * slot + slot * 0.15;
      const parts = [
        svg("rect", { x, y: height - bottom - h, width: slot * 0.7, height: h, rx: 3, fill: "currentColor" }),
        svg("text", { x: x + slot * 0.35, y: height - 10, "text-anchor": "middle", "font-size": 11, fill: "currentColor" }, m.label.slice(0, 3)),
      ];
      if (m.minutes) {
        parts.push(svg("text", { x: x + slot * 0.35, y: height - bottom - h - 4, "text-anchor": "middle", "font-size": 10, fill: "currentColor" }, m.minutes < 60 ? `${m.minutes}m` : `${(m.minutes / 60).toFixed(1)}h`));
      }
      return parts;
    }),
  );
}

function minutesTable(caption, heading, rows) {
  return dataTable(
    caption,
    [heading, ["CPD time", "num"]],
    rows.map(([name, minutes]) => el("tr", {}, el("td", { "data-label": heading, text: name }), el("td", { class: "num", "data-label": "CPD time", text: formatMinutes(minutes) }))),
  );
}

/** The summary again, after a change that reloads no more than one entry. */
async function loadSummary() {
  try {
    renderSummary(await api("/api/me/record/summary"));
  } catch (e) {
    document.getElementById("summary-section").hidden = false;
    document.getElementById("summary").replaceChildren(el("p", { class: "status status-error", text: `The summary could not be loaded: ${e.message}` }));
  }
}

/** The summary: hours by need, priority, term and kind, and month by month. */
function renderSummary(s) {
  const box = document.getElementById("summary");
  const section = document.getElementById("summary-section");
  if (!s.total_entries) {
    section.hidden = true;
    return;
  }
  const goals = (totals, none) => [
    ...totals.goals.map((g) => [g.title, g.minutes]),
    ...(totals.unlinked_minutes ? [[none, totals.unlinked_minutes]] : []),
  ];
  box.replaceChildren(
    el("h3", { text: "Month by month" }),
    timelineChart(s.timeline),
    el(
      "div",
      { class: "summary-tables" },
      minutesTable("CPD time by need", "Need", goals(s.by_need, "Not linked to a need")),
      minutesTable("CPD time by priority", "Priority", goals(s.by_priority, "Not linked to a priority")),
      minutesTable("CPD time by term", "Term", s.by_term.map((t) => [`${t.label} (${t.academic_year})`, t.minutes])),
      minutesTable("CPD time by kind", "Kind", s.by_kind.filter((k) => k.entries).map((k) => [k.label, k.minutes])),
    ),
    el("p", { class: "muted small", text: `Dates are read in ${s.time_zone.replace(/_/g, " ")} time.` }),
  );
  section.hidden = false;
}

// ---------------------------------------------------------------- forms

function setupForms() {
  const goalForm = document.getElementById("goal-form");
  const goalStatus = document.getElementById("goal-status");
  handleSubmit(goalForm, goalStatus, async () => {
    const v = formValues(goalForm);
    const goal = await api("/api/me/goals", { method: "POST", body: { kind: v.kind, title: v.title } });
    goalForm.elements.title.value = "";
    say(goalStatus, `Added “${goal.title}”.`, "success");
    await load();
  });

  const manualForm = document.getElementById("manual-form");
  const manualStatus = document.getElementById("manual-status");
  manualForm.elements.date.max = new Date().toISOString().slice(0, 10);
  handleSubmit(manualForm, manualStatus, async () => {
    const v = formValues(manualForm);
    const entry = await api("/api/me/record/entries", {
      method: "POST",
      body: { kind: v.kind, title: v.title, provider: v.provider || "", date: v.date, minutes: Number(v.minutes), goal_ids: checkedGoals(manualForm) },
    });
    manualForm.reset();
    say(manualStatus, `“${entry.title}” is in your record.`, "success");
    await load();
  });
}

async function start() {
  user = await setupPage();
  if (!user) {
    stop(
      document.getElementById("main"),
      "Sign in to see your CPD record",
      "Your professional record appears here once you are signed in.",
      el("a", { class: "button", href: "/signin.html?next=/record.html", text: "Sign in" }),
    );
    return;
  }
  setupForms();
  document.getElementById("exports").replaceChildren(
    el("a", { href: "/record-print.html", text: "Printable record" }),
    el("a", { href: "/api/me/record.csv", download: "", text: "Download CSV" }),
    el("a", { href: "/api/me/record.json", download: "", text: "Download JSON (everything)" }),
    el("a", { href: "/api/me/record/xapi.json", download: "", text: "xAPI statements" }),
  );
  try {
    await load();
    // A link to one entry (#entry-12) scrolls to it. By id, not as a selector:
    // an empty hash or one that is not a valid selector must not throw.
    const target = location.hash.length > 1 ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    target?.scrollIntoView();
  } catch (e) {
    say(entriesStatus, `Your record could not be loaded: ${e.message}`, "error");
    content.removeAttribute("aria-busy");
  }
}

start();
