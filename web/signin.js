// Sign-in, then back to where the person was going.

import { api, forgetUser, formValues, handleSubmit, param, safeNext, say, setupPage } from "/app.js";

const form = document.getElementById("signin");
const status = document.getElementById("status");

async function start() {
  const user = await setupPage();
  const next = safeNext("/my.html");
  document.getElementById("signup-link").href = `/signup.html?next=${encodeURIComponent(next)}`;
  if (param("email")) form.elements.email.value = param("email");
  if (user) say(status, `You are already signed in as ${user.email}.`, "info");
  handleSubmit(form, status, async () => {
    const v = formValues(form);
    await api("/api/auth/signin", {
      method: "POST",
      body: { email: v.email, password: form.elements.password.value },
    });
    forgetUser();
    say(status, "Signed in.", "success");
    location.assign(next);
  });
}

start();
