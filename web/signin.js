// Sign-in, then back to where the person was going.

import { FormErrors, api, forgetUser, formValues, handleSubmit, param, safeNext, say, setupPage } from "/app.js";

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
    // Nothing typed is not a wrong password: say what is missing instead of asking the server.
    const missing = [];
    if (!v.email) missing.push(["email", "Enter your email address."]);
    if (!form.elements.password.value) missing.push(["password", "Enter your password."]);
    if (missing.length) {
      const what = missing.length === 2 ? "your email address and password" : missing[0][0] === "email" ? "your email address" : "your password";
      throw new FormErrors(`Enter ${what} to sign in.`, missing);
    }
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
