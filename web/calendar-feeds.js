// My calendar feeds (My sessions page): the private addresses Outlook and
// Google Calendar subscribe to, with the steps for each, and "Reset link"
// to revoke an address shared by mistake. Self-contained: it fills the
// section #calendar-feeds and touches nothing else on the page.

import { api, currentUser, el, say } from "/app.js";

const section = document.getElementById("calendar-feeds");

function steps() {
  return el(
    "details",
    { class: "calendar-steps" },
    el("summary", { text: "How to subscribe in Outlook or Google Calendar" }),
    el("h4", { text: "Outlook" }),
    el(
      "ol",
      {},
      el("li", { text: "Copy the address." }),
      el("li", { text: "Outlook on the web: Calendar → Add calendar → Subscribe from web. Outlook for Windows: Add calendar → From Internet." }),
      el("li", { text: "Paste the address, give the calendar a name and choose Import (or OK)." }),
    ),
    el("h4", { text: "Google Calendar" }),
    el(
      "ol",
      {},
      el("li", { text: "Copy the address." }),
      el("li", { text: "On a computer, open Google Calendar: beside “Other calendars” choose + → From URL." }),
      el("li", { text: "Paste the address and choose Add calendar. Google checks for changes every few hours." }),
    ),
    el("p", { class: "muted small", text: "On a phone or a Mac, “Subscribe” opens your calendar app directly. Changes to sessions (a new time, a new title, a cancellation) appear in your calendar by themselves." }),
  );
}

function feedView(feed) {
  const status = el("div", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  const id = `feed-${feed.scope.replace(/[^a-z0-9]+/gi, "-")}`;
  const address = el("input", { type: "text", id, class: "mono feed-url", readonly: true, value: feed.url, "aria-describedby": `${id}-hint` });
  const copy = el("button", {
    type: "button",
    class: "button-small",
    text: "Copy address",
    onclick: async () => {
      address.select();
      try {
        await navigator.clipboard.writeText(address.value);
        say(status, "Address copied.", "success");
      } catch {
        say(status, "Copy the selected address with Ctrl+C (⌘C on a Mac).", "info");
      }
    },
  });
  const subscribe = el("a", { class: "button button-small", href: feed.webcal_url, text: "Subscribe" });
  const reset = el("button", {
    type: "button",
    class: "button-small button-secondary",
    text: "Reset link",
    onclick: async () => {
      reset.disabled = true;
      try {
        const fresh = await api("/api/me/calendars/reset", { method: "POST", body: { scope: feed.scope } });
        address.value = fresh.url;
        subscribe.href = fresh.webcal_url;
        say(status, "Reset: the old address no longer works. Calendars that used it must subscribe again with the new one.", "success");
      } catch (e) {
        say(status, `The link could not be reset: ${e.message}`, "error");
      } finally {
        reset.disabled = false;
      }
    },
  });
  return el(
    "div",
    { class: "calendar-feed", dataset: { scope: feed.scope } },
    el("label", { for: id, text: feed.title }),
    el("span", { class: "hint", id: `${id}-hint`, text: "Private: anyone with this address sees these sessions. Reset it if you shared it by mistake." }),
    address,
    el("div", { class: "actions" }, copy, subscribe, reset),
    status,
  );
}

async function show() {
  if (!section) return;
  const status = section.querySelector(".status");
  try {
    if (!(await currentUser())) return;
    const feeds = await api("/api/me/calendars");
    const mine = feeds.filter((f) => f.scope === "mine");
    const organiser = feeds.filter((f) => f.scope !== "mine");
    const body = section.querySelector(".calendar-feeds-body");
    // Through `el`, which skips a missing part (replaceChildren would print "null").
    body.replaceChildren(
      el(
        "div",
        {},
        el("p", { text: "Add your sessions — those you are registered for and those you present — to Outlook or Google Calendar. The calendar keeps itself up to date." }),
        ...mine.map(feedView),
        organiser.length
          ? el(
              "div",
              { class: "organiser-feeds" },
              el("h3", { text: "For organisers" }),
              el("p", { class: "muted", text: "The whole programme, and one calendar per series." }),
              ...organiser.map(feedView),
            )
          : null,
        steps(),
      ),
    );
    section.hidden = false;
  } catch (e) {
    section.hidden = false;
    say(status, `Your calendar addresses could not be loaded: ${e.message}`, "error");
  }
}

show();
