// The public page a certificate's verification URL opens (no sign-in):
// shows what certificate `?id=` states, and checks the signature of a
// certificate file (SVG with the credential baked in, or the .jwt) with the
// server, which holds the issuer key.

import { api, el, param, say, setupPage } from "/app.js";

const found = document.getElementById("found");
const facts = document.getElementById("facts");
const form = document.getElementById("check");
const fileInput = document.getElementById("file");
const text = document.getElementById("credential");
const result = document.getElementById("result");

/** "2 hours 5 minutes", as printed on the certificate. */
function hoursAndMinutes(minutes) {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  const plural = (n, one) => `${n} ${one}${n === 1 ? "" : "s"}`;
  if (h === 0) return plural(m, "minute");
  if (m === 0) return plural(h, "hour");
  return `${plural(h, "hour")} ${plural(m, "minute")}`;
}

function day(iso) {
  return new Intl.DateTimeFormat("en-GB", { weekday: "long", day: "numeric", month: "long", year: "numeric" }).format(
    new Date(iso),
  );
}

/** The certificate's public facts as a definition list. */
function factList(c) {
  const row = (term, value) => [el("dt", { text: term }), el("dd", { text: value })];
  return el(
    "dl",
    { class: "facts" },
    row("Awarded to", c.holder_name),
    row("Session", c.session_title),
    row("Date", day(c.session_starts_at)),
    row("Professional learning", hoursAndMinutes(c.minutes)),
    row("Issued by", c.issuer_name),
    row("Issued on", day(c.issued_at)),
  );
}

async function showNumber(id) {
  found.hidden = false;
  document.getElementById("number").textContent = id;
  try {
    const c = await api(`/api/certificates/${encodeURIComponent(id)}`);
    facts.replaceChildren(
      el("p", { class: "badge badge-ok", text: "Issued by Staffroom" }),
      factList(c),
      el("p", { class: "small muted", text: "To check a copy of this certificate has not been altered, check its file below." }),
    );
  } catch (e) {
    facts.replaceChildren(
      el("p", { class: "lead", text: e.status === 404 ? "No certificate with this number" : e.message }),
      // Only a wrong number gets the hint (a null here would print as "null").
      ...(e.status === 404
        ? [el("p", { class: "muted", text: "Check the number against the certificate: it is 32 letters and digits, printed at the bottom right." })]
        : []),
    );
  }
}

async function check() {
  let credential = text.value.trim();
  const file = fileInput.files && fileInput.files[0];
  if (file) credential = (await file.text()).trim();
  if (!credential) {
    say(result, "Choose a certificate file or paste its credential first.", "error");
    return;
  }
  say(result, "Checking the signature…", "info");
  try {
    const verified = await api("/api/certificates/verify", { method: "POST", body: { credential } });
    say(
      result,
      el(
        "div",
        {},
        el("p", {}, el("strong", { text: "Valid: " }), `certificate ${verified.id}, signed by Staffroom and unchanged.`),
        factList(verified.certificate),
      ),
      "success",
    );
  } catch (e) {
    // The message is a sentence already (app.js): no second full stop.
    say(result, e.status === 422 ? `Not valid: ${e.message}` : e.message, "error");
  }
}

async function start() {
  await setupPage();
  const id = param("id");
  if (id) await showNumber(id);
  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) text.value = "";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    check();
  });
}

start();
