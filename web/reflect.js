// The reflection form: on the record page for each entry, and as the prompt
// when someone leaves a live session or finishes a replay (docs/record.md).

import { api, el, formValues, handleSubmit, say } from "/app.js";

/** The questions, in the order a teacher answers them. */
export const QUESTIONS = [
  ["learned", "What did I learn?", "The idea, strategy or evidence that stood out."],
  ["keep_doing", "What will I keep doing?", "Practice this confirmed is working."],
  ["to_grow", "What will I grow?", "Something to develop or do more of."],
  ["to_change", "What will I change?", "One concrete change in my classroom."],
];
export const IMPACT = ["impact", "Impact", "Later: what changed for you and your pupils, and how you know."];

/** Reflections are at most this long per answer (the server's limit). */
export const MAX_FIELD = 4000;

function field(prefix, [name, label, hint], value, rows = 3) {
  const id = `${prefix}-${name}`;
  return el(
    "div",
    { class: "field" },
    el("label", { for: id, text: label }),
    el("span", { class: "hint", id: `${id}-hint`, text: hint }),
    el("textarea", { id, name, rows, maxlength: MAX_FIELD, "aria-describedby": `${id}-hint` }, value || ""),
  );
}

/**
 * A reflection form. `save(values)` stores it and resolves to the saved
 * entry; `withImpact` adds the later impact question.
 */
export function reflectionForm({ prefix, reflection, withImpact = false, submitText = "Save reflection", save, saved }) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const questions = withImpact ? [...QUESTIONS, IMPACT] : QUESTIONS;
  const form = el(
    "form",
    { class: "reflection-form", novalidate: true },
    questions.map((q) => field(prefix, q, reflection?.[q[0]])),
    status,
    el("div", { class: "actions" }, el("button", { type: "submit", text: submitText })),
  );
  handleSubmit(form, status, async () => {
    const v = formValues(form);
    const entry = await save(Object.fromEntries(questions.map(([name]) => [name, v[name] || ""])));
    say(status, "Saved to your CPD record.", "success");
    saved?.(entry);
  });
  return form;
}

/**
 * The prompt after leaving a live session or finishing its replay: a short
 * reflection saved straight into that session's record entry.
 */
export function reflectionPrompt(sessionId, intro) {
  const done = el("p", { class: "muted", hidden: true });
  const form = reflectionForm({
    prefix: "prompt",
    submitText: "Save to my CPD record",
    save: (body) => api(`/api/me/record/sessions/${sessionId}/reflection`, { method: "PUT", body }),
    saved: (entry) => {
      done.replaceChildren("It is in ", el("a", { href: `/record.html#entry-${entry.id}`, text: "your CPD record" }), ", with the time credited.");
      done.hidden = false;
    },
  });
  return el(
    "section",
    { class: "card reflection-prompt", "aria-labelledby": "reflect-heading" },
    el("h2", { id: "reflect-heading", text: "Reflect while it is fresh" }),
    el("p", { class: "muted", text: intro }),
    form,
    done,
  );
}
