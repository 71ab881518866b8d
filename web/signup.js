// Sign-up: creates the account (which signs in) and sends the verification
// email, then returns to where the person was going.

import {
  FormErrors,
  api,
  browserZone,
  fillSelect,
  fillZoneSelect,
  forgetUser,
  formValues,
  handleSubmit,
  param,
  safeNext,
  say,
  setupPage,
  STAGES,
} from "/app.js";

const form = document.getElementById("signup");
const status = document.getElementById("status");

async function start() {
  const user = await setupPage();
  fillSelect(form.elements.stage, STAGES, "teacher");
  fillZoneSelect(form.elements.time_zone, browserZone());
  if (param("email")) form.elements.email.value = param("email");
  if (param("name")) form.elements.name.value = param("name");
  const next = safeNext("/my.html");
  document.getElementById("signin-link").href = `/signin.html?next=${encodeURIComponent(next)}`;
  if (user) {
    say(status, `You are already signed in as ${user.email}.`, "info");
  }
  handleSubmit(form, status, async () => {
    const v = formValues(form);
    const wrong = problems(v);
    if (wrong.length) throw new FormErrors(wrong.length === 1 ? "Please check the highlighted field." : `Please check the ${wrong.length} highlighted fields.`, wrong);
    await api("/api/auth/signup", {
      method: "POST",
      body: {
        name: v.name,
        email: v.email,
        password: form.elements.password.value,
        school: v.school,
        stage: v.stage,
        time_zone: v.time_zone,
      },
    });
    forgetUser();
    say(status, `Welcome! We have sent a link to ${v.email} to confirm your address.`, "success");
    setTimeout(() => location.assign(next), 900);
  });
}

/**
 * Everything wrong with the form, field by field, found before it is sent
 * (the server checks again, and has the last word on an address in use).
 */
function problems(v) {
  const found = [];
  if (!v.name) found.push(["name", "Enter your name."]);
  const email = form.elements.email;
  if (!v.email) found.push(["email", "Enter your email address."]);
  else if (email.validity.typeMismatch || !/^[^@\s]+@[^@\s]+$/.test(v.email)) found.push(["email", "Enter an email address like name@school.org."]);
  const password = form.elements.password.value;
  const min = Number(form.elements.password.minLength) || 8;
  if (!password) found.push(["password", "Choose a password."]);
  else if ([...password].length < min) found.push(["password", `The password must be at least ${min} characters.`]);
  return found;
}

start();
