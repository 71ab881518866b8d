// The opt-out link at the foot of every invitation.

import { api, el, param, say, setupPage } from "/app.js";

const content = document.getElementById("content");
const status = document.getElementById("status");
const button = document.getElementById("confirm");

async function start() {
  await setupPage();
  const token = param("token");
  if (!token) {
    content.replaceChildren(el("p", { text: "This page needs the opt-out link from an invitation email. Please open the link from the email itself." }));
    return;
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const done = await api("/api/opt-out", { method: "POST", body: { token } });
      content.replaceChildren(
        el("p", { text: `Done: ${done.email} will not be invited to sessions again.` }),
        el("p", {}, "Changed your mind, or want to look around? ", el("a", { href: "/index.html", text: "The programme is open to everyone" }), "."),
      );
      say(status, "You will receive no more invitations.", "success");
    } catch (e) {
      say(status, e.message, "error");
      button.disabled = false;
    }
  });
}

start();
