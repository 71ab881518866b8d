// The link from the verification email: confirms the address. Without a
// token, explains what to do and offers to send the link again.

import { api, el, param, say, setupPage } from "/app.js";

const status = document.getElementById("status");
const content = document.getElementById("content");

function resendButton() {
  const button = el("button", {
    type: "button",
    text: "Send me a new link",
    onclick: async () => {
      button.disabled = true;
      try {
        await api("/api/auth/verify/resend", { method: "POST" });
        say(status, "A new link is on its way. It works for seven days.", "success");
      } catch (e) {
        say(status, e.message, "error");
        button.disabled = false;
      }
    },
  });
  return button;
}

async function start() {
  const user = await setupPage();
  const token = param("token");
  if (token) {
    say(status, "Confirming your address…", "info");
    try {
      const verified = await api("/api/auth/verify", { method: "POST", body: { token } });
      say(status, `Thank you: ${verified.email} is confirmed.`, "success");
      content.replaceChildren(
        el("p", {}, "You are all set. ", el("a", { href: "/index.html", text: "Find a session on the programme" }), "."),
      );
      // The header's reminder is out of date now.
      for (const note of document.querySelectorAll(".site-header .notice")) note.remove();
      return;
    } catch (e) {
      say(status, e.message, "error");
    }
  } else {
    say(status, "");
  }
  if (user && user.email_verified) {
    content.replaceChildren(el("p", { text: `Your address ${user.email} is already confirmed.` }));
  } else if (user) {
    content.replaceChildren(
      el("p", { text: `Open the link we emailed to ${user.email}. If it has expired or gone astray, we can send another.` }),
      resendButton(),
    );
  } else {
    content.replaceChildren(
      el("p", {}, "Open the link from the email we sent you. To get a new link, ", el("a", { href: "/signin.html?next=/verify.html", text: "sign in" }), " first."),
    );
  }
}

start();
