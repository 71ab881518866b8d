// Password reset: ask for a link by email, or (with ?token=) set a new password.

import { api, el, formValues, forgetUser, handleSubmit, param, say, setupPage } from "/app.js";

const request = document.getElementById("request");
const confirm = document.getElementById("confirm");
const status = document.getElementById("status");

async function start() {
  await setupPage();
  const token = param("token");
  if (!token) {
    request.hidden = false;
    handleSubmit(request, status, async () => {
      const { email } = formValues(request);
      await api("/api/auth/password-reset", { method: "POST", body: { email } });
      say(status, `If ${email} belongs to an account, a link to reset the password is on its way. It works for two hours.`, "success");
    });
    return;
  }
  document.getElementById("title").textContent = "Choose a new password";
  confirm.hidden = false;
  confirm.elements.token.value = token;
  handleSubmit(confirm, status, async () => {
    const password = confirm.elements.password.value;
    if (password !== confirm.elements.password2.value) {
      const e = new Error("The two passwords are different.");
      e.field = "password2";
      throw e;
    }
    await api("/api/auth/password-reset/confirm", { method: "POST", body: { token, password } });
    forgetUser();
    confirm.hidden = true;
    say(status, el("span", {}, "Your password is changed and you are signed in. ", el("a", { href: "/my.html", text: "Go to My sessions" })), "success");
  });
}

start();
