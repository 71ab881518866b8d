// A personal invitation link: register in one click. Someone not signed in
// gets a sign-up form filled in from the invitation (or a sign-in form when an
// account already has the address), and the same click registers them.

import {
  api,
  browserZone,
  el,
  fillSelect,
  fillZoneSelect,
  forgetUser,
  formValues,
  handleSubmit,
  kindName,
  param,
  say,
  seatsText,
  setupPage,
  signOut,
  STAGES,
  stop,
  timeRange,
  viewerZone,
} from "/app.js";

const main = document.getElementById("main");
const content = document.getElementById("content");
const token = param("token");

let user = null;

function field(name, label, input, hint) {
  input.id = `f-${name}`;
  input.name = name;
  const hintId = hint ? `f-${name}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return el("div", { class: "field" }, el("label", { for: input.id, text: label }), hint ? el("span", { class: "hint", id: hintId, text: hint }) : null, input);
}

function summary(invitation) {
  const s = invitation.session;
  return el(
    "div",
    { class: "card" },
    el("span", { class: "kind", text: kindName(s.kind) }),
    el("h2", {}, el("a", { href: `/session.html?id=${s.id}`, text: s.title })),
    el("p", { class: "when" }, el("strong", {}, timeRange(s.starts_at, s.ends_at, viewerZone(user)))),
    s.presenters.length ? el("p", { class: "muted", text: `With ${s.presenters.map((p) => p.name).join(", ")}` }) : null,
    s.description ? el("p", { class: "description", text: s.description.length > 400 ? `${s.description.slice(0, 400)}…` : s.description }) : null,
    el("p", { class: "seats", text: seatsText(s) }),
  );
}

/** The outcome once registered (or waiting). */
function registered(mine, session) {
  const box = el("div", { class: "card", role: "status", "aria-live": "polite" });
  if (mine.status === "confirmed") {
    box.append(
      el("p", { class: "big" }, el("span", { class: "badge badge-ok", text: "Registered" })),
      el("p", { text: `You are registered for “${session.title}”. A confirmation with a calendar invitation is on its way to your inbox.` }),
    );
  } else {
    box.append(
      el("p", { class: "big" }, el("span", { class: "badge badge-wait", text: `Waiting list: position ${mine.waitlist_position}` })),
      el("p", { text: `The session is full, so you are number ${mine.waitlist_position} on the waiting list. If a place comes free it is yours, and we will email you.` }),
    );
  }
  box.append(
    el(
      "div",
      { class: "actions" },
      el("a", { class: "button", href: `/session.html?id=${session.id}`, text: "See the session" }),
      el("a", { class: "button button-secondary", href: "/my.html", text: "My sessions" }),
    ),
  );
  return box;
}

async function accept() {
  return api(`/api/invitations/${encodeURIComponent(token)}/accept`, { method: "POST" });
}

function showOutcome(mine, invitation) {
  const outcome = registered(mine, invitation.session);
  content.replaceChildren(el("h1", { text: mine.status === "confirmed" ? "You are registered" : "You are on the waiting list" }), summary(invitation), outcome);
  outcome.setAttribute("tabindex", "-1");
  outcome.focus();
}

function oneClick(invitation) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const other = user.email.toLowerCase() !== invitation.email.toLowerCase();
  const button = el("button", {
    type: "button",
    text: invitation.session.seats_left > 0 ? "Register for this session" : "Join the waiting list",
    onclick: async () => {
      button.disabled = true;
      try {
        showOutcome(await accept(), invitation);
      } catch (e) {
        say(status, e.message, "error");
        button.disabled = false;
      }
    },
  });
  return el(
    "div",
    { class: "card" },
    other
      ? el(
          "p",
          {},
          `This invitation was sent to ${invitation.email}, and you are signed in as ${user.email}. You can still use it, or `,
          el("button", {
            type: "button",
            class: "link-button",
            text: "sign out and use another account",
            onclick: async () => {
              await signOut().catch(() => {});
              location.reload();
            },
          }),
          ".",
        )
      : el("p", { text: `Signed in as ${user.email}.` }),
    el("div", { class: "actions" }, button),
    status,
  );
}

function signUpForm(invitation, switchTo) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const stage = el("select");
  fillSelect(stage, STAGES, "teacher");
  const zoneSelect = el("select");
  fillZoneSelect(zoneSelect, browserZone());
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-labelledby": "account-heading" },
    el("h2", { id: "account-heading", text: "Create your free account to register" }),
    field("name", "Your name", el("input", { type: "text", autocomplete: "name", value: invitation.name, required: true, maxlength: "120" })),
    field("email", "Email address", el("input", { type: "email", autocomplete: "email", value: invitation.email, required: true, spellcheck: "false" })),
    field("password", "Choose a password", el("input", { type: "password", autocomplete: "new-password", required: true, minlength: "8" }), "At least 8 characters."),
    field("school", "School or organisation (optional)", el("input", { type: "text", autocomplete: "organization", value: invitation.school, maxlength: "200" })),
    field("stage", "Where you are in your career", stage),
    field("time_zone", "Time zone", zoneSelect, "Session times are shown in this zone."),
    status,
    el(
      "div",
      { class: "actions" },
      el("button", { type: "submit", text: "Create account and register" }),
      el("button", { type: "button", class: "link-button", text: "I already have an account", onclick: switchTo }),
    ),
  );
  handleSubmit(form, status, async () => {
    const v = formValues(form);
    await api("/api/auth/signup", {
      method: "POST",
      body: { name: v.name, email: v.email, password: form.elements.password.value, school: v.school, stage: v.stage, time_zone: v.time_zone },
    });
    forgetUser();
    user = await setupPage();
    showOutcome(await accept(), invitation);
  });
  return form;
}

function signInForm(invitation, switchTo) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-labelledby": "account-heading" },
    el("h2", { id: "account-heading", text: "Sign in to register" }),
    field("email", "Email address", el("input", { type: "email", autocomplete: "email", value: invitation.email, required: true, spellcheck: "false" })),
    field("password", "Password", el("input", { type: "password", autocomplete: "current-password", required: true })),
    status,
    el(
      "div",
      { class: "actions" },
      el("button", { type: "submit", text: "Sign in and register" }),
      el("a", { href: "/reset.html", text: "Forgotten your password?" }),
      el("button", { type: "button", class: "link-button", text: "Create a new account instead", onclick: switchTo }),
    ),
  );
  handleSubmit(form, status, async () => {
    const v = formValues(form);
    await api("/api/auth/signin", { method: "POST", body: { email: v.email, password: form.elements.password.value } });
    forgetUser();
    user = await setupPage();
    showOutcome(await accept(), invitation);
  });
  return form;
}

function render(invitation) {
  const s = invitation.session;
  const greeting = invitation.name ? `${invitation.name.split(/\s+/)[0]}, you are invited` : "You are invited";
  const head = [el("h1", { text: greeting }), el("p", { class: "lead", text: "A free live session for teachers. One click and your place is booked." }), summary(invitation)];
  const mine = s.my_registration;
  if (user && mine && mine.status !== "cancelled") {
    content.replaceChildren(...head.slice(0, 1), registered(mine, s));
    return;
  }
  if (s.status === "cancelled") {
    content.replaceChildren(...head, el("p", { class: "status status-error", text: "Sorry: this session has been cancelled." }));
    return;
  }
  if (new Date(s.ends_at) <= new Date()) {
    content.replaceChildren(...head, el("p", { class: "status status-info", text: "This session has already taken place." }), el("p", {}, el("a", { href: "/index.html", text: "See what is coming up" })));
    return;
  }
  if (user) {
    content.replaceChildren(...head, oneClick(invitation));
    return;
  }
  const slot = el("div");
  const showSignUp = () => {
    slot.replaceChildren(signUpForm(invitation, showSignIn));
  };
  const showSignIn = () => {
    slot.replaceChildren(signInForm(invitation, showSignUp));
  };
  if (invitation.has_account) showSignIn();
  else showSignUp();
  content.replaceChildren(...head, slot);
}

async function start() {
  user = await setupPage();
  content.removeAttribute("aria-busy");
  if (!token) {
    stop(main, "Invitation not found", "This page needs the personal link from your invitation email.", el("a", { href: "/index.html", text: "See the programme" }));
    return;
  }
  try {
    render(await api(`/api/invitations/${encodeURIComponent(token)}`));
  } catch (e) {
    if (e.status === 404) stop(main, "Invitation not found", "This invitation link is not valid. Please check you copied the whole link.", el("a", { href: "/index.html", text: "See the programme" }));
    else stop(main, "Something went wrong", e.message);
  }
}

start();
