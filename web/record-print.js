// The printable professional record: the person, their totals, the summary
// tables (docs/record-exports.md) and every entry with its reflection and
// evidence, laid out to be printed or saved as a PDF for an appraisal.

import { RECORD_KINDS, api, dataTable, el, formatDay, formatMinutes, say, setupPage, stageName, stop, viewerZone } from "/app.js";

const content = document.getElementById("content");
const status = document.getElementById("status");

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

const REFLECTION = [
  ["learned", "What I learned"],
  ["keep_doing", "What I will keep doing"],
  ["to_grow", "What I want to grow"],
  ["to_change", "What I will change"],
  ["impact", "The impact on my practice"],
];

/** A two-column table of name and minutes, with an optional last row. */
function minutesTable(caption, heading, rows) {
  return dataTable(
    caption,
    [heading, ["Entries", "num"], ["CPD time", "num"]],
    rows.map(([name, entries, minutes, cls]) =>
      el(
        "tr",
        { class: cls || null },
        el("td", { "data-label": heading, text: name }),
        el("td", { class: "num", "data-label": "Entries", text: entries === null ? "" : String(entries) }),
        el("td", { class: "num", "data-label": "CPD time", text: formatMinutes(minutes) }),
      ),
    ),
  );
}

function goalSection(title, heading, totals, noneText) {
  const rows = totals.goals.map((g) => [g.title, g.entries, g.minutes]);
  rows.push(["Not linked to any", totals.unlinked_entries, totals.unlinked_minutes, "muted"]);
  return el(
    "section",
    { class: "summary-block" },
    el("h3", { text: title }),
    totals.goals.length ? null : el("p", { class: "muted", text: noneText }),
    minutesTable(title, heading, rows),
  );
}

function summarySection(summary) {
  const terms = summary.by_term.map((t) => [`${t.label} (${t.academic_year})`, t.entries, t.minutes]);
  const kinds = summary.by_kind.map((k) => [k.label, k.entries, k.minutes]);
  const months = summary.timeline.map((m) => [m.label, null, m.minutes]);
  return el(
    "section",
    { "aria-labelledby": "summary-heading", class: "record-summary" },
    el("h2", { id: "summary-heading", text: "Summary" }),
    el("p", { class: "muted small", text: "An entry linked to two needs counts in full under each, so those tables can add up to more than the total." }),
    goalSection("By development need", "Need", summary.by_need, "No development needs recorded."),
    goalSection("By school priority", "Priority", summary.by_priority, "No school priorities recorded."),
    el("section", { class: "summary-block" }, el("h3", { text: "By term" }), terms.length ? minutesTable("By term", "Term", terms) : el("p", { class: "muted", text: "No CPD recorded yet." })),
    el("section", { class: "summary-block" }, el("h3", { text: "By kind" }), minutesTable("By kind", "Kind", kinds)),
    el("section", { class: "summary-block" }, el("h3", { text: "The last 12 months" }), minutesTable("The last 12 months", "Month", months)),
  );
}

function entryArticle(entry, goals, zone) {
  const linked = (kind) => goals.filter((g) => g.kind === kind && entry.goal_ids.includes(g.id)).map((g) => g.title);
  const facts = [
    RECORD_KINDS[entry.kind] || entry.kind,
    entry.how ? (entry.how === "live" ? "attended live" : "watched on replay") : null,
    entry.status === "partly" ? "partly" : null,
    formatMinutes(entry.minutes),
  ].filter(Boolean);
  const details = [];
  const add = (term, value) => {
    if (value) details.push(el("dt", { text: term }), el("dd", {}, value));
  };
  add("Provider", entry.provider);
  add("Groups", entry.groups.join(", "));
  add("Needs", linked("need").join("; "));
  add("Priorities", linked("priority").join("; "));
  for (const [key, label] of REFLECTION) add(label, entry.reflection && entry.reflection[key]);
  if (entry.evidence.length) {
    add(
      "Evidence",
      el(
        "ul",
        { class: "evidence-list" },
        entry.evidence.map((v) =>
          el("li", {}, el("a", { href: v.url, text: v.kind === "file" ? v.file_name || "File" : v.url })),
        ),
      ),
    );
  }
  add("Certificate", entry.certificate_id ? `Certificate of attendance ${entry.certificate_id}` : null);
  return el(
    "article",
    { class: "record-entry" },
    el("h3", { text: entry.title }),
    el("p", { class: "muted" }, el("time", { datetime: entry.occurred_at, text: formatDay(entry.occurred_at, zone) }), ` · ${facts.join(" · ")}`),
    details.length ? el("dl", { class: "record-details" }, details) : el("p", { class: "muted", text: "No reflection yet." }),
  );
}

async function start() {
  const user = await setupPage();
  const main = document.getElementById("main");
  if (!user) {
    stop(main, "Sign in to see your record", "Your professional learning record is private to you: sign in to print it.", el("a", { class: "button", href: "/signin.html?next=/record-print.html", text: "Sign in" }));
    return;
  }
  try {
    const [record, summary] = await Promise.all([api("/api/me/record"), api("/api/me/record/summary")]);
    const zone = summary.time_zone || viewerZone(user);
    document.getElementById("person").textContent = [user.name, user.school, stageName(user.stage)].filter(Boolean).join(" · ");
    document.getElementById("record-actions").hidden = false;
    document.getElementById("downloads").hidden = false;
    document.getElementById("print").addEventListener("click", () => window.print());
    const printed = formatDay(new Date().toISOString(), zone);
    content.replaceChildren(
      el(
        "section",
        { class: "card record-totals", "aria-label": "Totals" },
        el("p", { class: "lead", text: `${formatMinutes(summary.total_minutes)} of professional learning in ${plural(summary.total_entries, "entry", "entries")}.` }),
        el("p", { class: "muted small", text: `${user.email} · printed ${printed} · dates in ${zone.replace(/_/g, " ")}` }),
      ),
      summarySection(summary),
      el(
        "section",
        { "aria-labelledby": "entries-heading" },
        el("h2", { id: "entries-heading", text: "Entries" }),
        record.entries.length
          ? record.entries.map((e) => entryArticle(e, record.goals, zone))
          : el("p", { class: "muted", text: "Sessions you attend and learning you add appear here." }),
      ),
    );
  } catch (e) {
    say(status, `Your record could not be loaded: ${e.message}`, "error");
  }
}

start();
