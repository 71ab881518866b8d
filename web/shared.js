// One entry of someone's CPD record that they chose to share: the learning,
// the time, what it served, their reflection and evidence. Anyone with the
// link may read it; the owner can stop sharing at any time (docs/record.md).

import { api, el, formatDay, formatMinutes, param, setupPage, stop, viewerZone } from "/app.js";
import { IMPACT, QUESTIONS } from "/reflect.js";

const content = document.getElementById("content");

async function start() {
  const user = await setupPage();
  const token = param("token") || "";
  let entry;
  try {
    entry = await api(`/api/shared/${encodeURIComponent(token)}`);
  } catch (e) {
    stop(content, "This link does not work", e.status === 404 ? "The entry is not shared any more, or the link is mistyped." : e.message, el("a", { href: "/index.html", text: "See the programme" }));
    content.removeAttribute("aria-busy");
    return;
  }
  document.title = `${entry.title} · shared by ${entry.holder_name} · Staffroom`;
  const zone = viewerZone(user);
  const how = entry.kind === "session" ? (entry.how === "replay" ? "session, by replay" : "session, live") : entry.kind;
  const answers = [...QUESTIONS, IMPACT].filter(([name]) => entry.reflection?.[name]);
  content.replaceChildren(el(
    "article",
    {},
    el("p", { class: "muted", text: `Shared from ${entry.holder_name}'s CPD record` }),
    el("h1", { text: entry.title }),
    el("p", { class: "lead", text: `${formatDay(entry.occurred_at, zone)} · ${formatMinutes(entry.minutes)} · ${how}${entry.provider ? ` · ${entry.provider}` : ""}` }),
    entry.goals.length
      ? el("p", {}, el("strong", { text: "Serves: " }), entry.goals.map((g) => `${g.title} (${g.kind === "need" ? "development need" : "school priority"})`).join(", "))
      : null,
    el(
      "section",
      { class: "card", "aria-labelledby": "reflection-heading" },
      el("h2", { id: "reflection-heading", text: "Reflection" }),
      answers.length
        ? el("dl", { class: "facts" }, answers.flatMap(([name, label]) => [el("dt", { text: label }), el("dd", { class: "reflection-preview", text: entry.reflection[name] })]))
        : el("p", { class: "muted", text: "No reflection written yet." }),
    ),
    el(
      "section",
      { class: "card", "aria-labelledby": "evidence-heading" },
      el("h2", { id: "evidence-heading", text: "Evidence" }),
      entry.evidence.length
        ? el("ul", { class: "evidence-list" }, entry.evidence.map((v) => el("li", {}, v.kind === "file" ? el("a", { href: v.url, download: v.file_name, text: v.file_name }) : el("a", { href: v.url, rel: "noopener noreferrer nofollow", target: "_blank", text: v.url }))))
        : el("p", { class: "muted", text: "No evidence attached." }),
    ),
    entry.certificate_id ? el("p", {}, el("a", { href: `/certificate.html?id=${entry.certificate_id}`, text: "Certificate of attendance" })) : null,
  ));
  content.removeAttribute("aria-busy");
}

start();
