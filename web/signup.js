// Sign-up: creates the account (which signs in) and sends the verification
// email, then returns to where the person was going.

import {
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

start();
