// The room's side panel: people, chat, questions and polls, and raised
// hands (docs/signalling.md, "Chat, questions, hands and polls"). It only
// sends and receives signalling messages; room.js owns the connection.
// Everything people type is shown with textContent.

import { el } from "/app.js";

const TABS = [
  ["people", "People"],
  ["chat", "Chat"],
  ["questions", "Q&A"],
  ["polls", "Polls"],
];

function clock(ms) {
  return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(ms));
}

function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return "That did not work.";
  const first = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** A poll's results as bars: each choice's votes and share of all votes. Also on the replay page. */
export function resultBars(results) {
  const total = results.counts.reduce((n, c) => n + c.votes, 0);
  return el(
    "ul",
    {},
    results.counts.map((c) => {
      const share = total ? Math.round((100 * c.votes) / total) : 0;
      return el(
        "li",
        { class: "poll-bar" },
        el("span", { class: "poll-bar-label", text: `${c.label}: ${c.votes} (${share}%)` }),
        el("span", { class: "poll-bar-track", "aria-hidden": "true" }, el("span", { class: "poll-bar-fill", style: `width: ${share}%` })),
      );
    }),
  );
}

/**
 * Builds the panel. `send(message)` sends on the room's socket; `me()` is
 * the current participant ({id, name, grants, on_stage, muted}) or null;
 * `participants()` the others; `personActions(p)`, if given, the host's
 * buttons for someone's row (or null).
 */
export function createPanel({ send, me, participants, personActions = () => null, extraTabs = [] }) {
  const tabs = [...TABS, ...extraTabs.map((t) => [t.key, t.label])];
  const state = {
    chat: [],
    chatScope: null, // the breakout group whose chat is shown (null: the main room)
    chatFresh: new Set(), // ids of messages that arrived since the scope changed
    questions: new Map(),
    myVotes: new Set(), // question ids
    polls: new Map(),
    results: new Map(),
    voted: new Set(), // poll ids
    hands: [],
    handRaised: false,
    active: "people",
    unread: { chat: 0, questions: 0, polls: 0 },
    counts: {}, // tabs whose count someone else keeps (the host's help requests)
    hiddenTabs: new Set(extraTabs.filter((t) => t.hidden).map((t) => t.key)),
  };

  const isHost = () => Boolean(me()?.grants?.host);
  const myId = () => (me() ? String(me().id) : null);

  // ------------------------------------------------------------ tabs

  const tabButtons = new Map();
  const panels = new Map();
  const tablist = el("div", { class: "room-tabs", role: "tablist", "aria-label": "Room panel" });
  for (const [key, label] of tabs) {
    const button = el("button", {
      type: "button",
      role: "tab",
      id: `tab-${key}`,
      class: "room-tab",
      "aria-controls": `panel-${key}`,
      "aria-selected": key === state.active ? "true" : "false",
      tabindex: key === state.active ? "0" : "-1",
      onclick: () => select(key),
      hidden: state.hiddenTabs.has(key),
    });
    button.append(el("span", { text: label }), el("span", { class: "tab-count", hidden: true }));
    tabButtons.set(key, button);
    tablist.append(button);
    panels.set(key, el("section", { role: "tabpanel", id: `panel-${key}`, "aria-labelledby": `tab-${key}`, class: "room-tabpanel", hidden: key !== state.active }));
  }
  tablist.addEventListener("keydown", (e) => {
    const keys = tabs.map(([k]) => k).filter((k) => !state.hiddenTabs.has(k));
    let i = keys.indexOf(state.active);
    if (e.key === "ArrowRight") i = (i + 1) % keys.length;
    else if (e.key === "ArrowLeft") i = (i - 1 + keys.length) % keys.length;
    else if (e.key === "Home") i = 0;
    else if (e.key === "End") i = keys.length - 1;
    else return;
    e.preventDefault();
    select(keys[i]);
    tabButtons.get(keys[i]).focus();
  });

  function select(key) {
    state.active = key;
    for (const [k, button] of tabButtons) {
      button.setAttribute("aria-selected", String(k === key));
      button.tabIndex = k === key ? 0 : -1;
      panels.get(k).hidden = k !== key;
    }
    if (state.unread[key] !== undefined) state.unread[key] = 0;
    renderCounts();
    if (key === "chat") chatList.scrollTop = chatList.scrollHeight;
  }

  function bump(key) {
    if (state.active !== key) state.unread[key] += 1;
    renderCounts();
  }

  function renderCounts() {
    for (const [key, button] of tabButtons) {
      const count = button.querySelector(".tab-count");
      const n = key === "people" ? (isHost() ? state.hands.length : 0) : (state.counts[key] ?? state.unread[key]);
      count.hidden = !n;
      count.textContent = n ? String(n) : "";
      const what = { people: "raised hands", groups: "help requests" }[key] || "new";
      count.setAttribute("aria-label", `${n} ${what}`);
    }
  }

  const status = el("p", { class: "status", role: "status", "aria-live": "polite", hidden: true });
  let statusTimer = null;
  function tell(text, kind = "error") {
    clearTimeout(statusTimer);
    status.className = `status status-${kind}`;
    status.textContent = text;
    status.hidden = !text;
    if (text) statusTimer = setTimeout(() => (status.hidden = true), 8000);
  }

  // ------------------------------------------------------------ people and hands

  const peopleHeading = el("h2", { class: "visually-hidden", id: "people-heading", text: "People" });
  const handsBox = el("div", { class: "hands", hidden: true });
  const peopleList = el("ul", { class: "people", "aria-labelledby": "people-heading" });
  panels.get("people").append(peopleHeading, handsBox, peopleList);

  function renderPeople() {
    const everyone = [];
    if (me()) everyone.push({ ...me(), you: true });
    everyone.push(...[...participants().values()].sort((a, b) => a.name.localeCompare(b.name)));
    tabButtons.get("people").querySelector("span").textContent = `People (${everyone.length})`;
    const raised = new Set(state.hands.map((h) => String(h.participant_id)));
    if (state.handRaised && myId()) raised.add(myId());
    // Rows are rebuilt: keep the keyboard focus on the same button if it survives.
    const focused = peopleList.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    peopleList.replaceChildren(
      ...everyone.map((p) => {
        const role = p.grants?.host ? "Host" : p.grants?.cohost ? "Co-host" : p.grants?.publish ? "Presenter" : null;
        const muted = new Set(p.muted || []);
        return el(
          "li",
          { dataset: { participant: p.id } },
          el(
            "div",
            { class: "person-line" },
            el("span", { class: "person-name", text: p.you ? `${p.name} (you)` : p.name }),
            el(
              "span",
              { class: "person-badges" },
              raised.has(String(p.id)) ? el("span", { class: "badge badge-wait", text: "Hand raised" }) : null,
              role ? el("span", { class: "badge badge-ok", text: role }) : null,
              p.on_stage ? el("span", { class: "badge badge-ok", text: "On stage" }) : null,
              muted.has("audio") ? el("span", { class: "badge badge-bad", text: "Mic muted" }) : null,
              muted.has("video") ? el("span", { class: "badge badge-bad", text: "Camera muted" }) : null,
            ),
          ),
          p.you ? null : personActions(p),
        );
      }),
    );
    if (focused) peopleList.querySelector(`[data-action="${CSS.escape(focused)}"]`)?.focus();
    handsBox.hidden = !(isHost() && state.hands.length);
    if (isHost()) {
      handsBox.replaceChildren(
        el("h3", { text: `Raised hands (${state.hands.length})` }),
        el(
          "ol",
          { class: "hand-queue" },
          state.hands.map((h) =>
            el(
              "li",
              {},
              el("span", { text: `${h.name} · ${clock(h.at)}` }),
              el("button", {
                type: "button",
                class: "button-secondary button-small",
                text: "Lower",
                "aria-label": `Lower ${h.name}'s hand`,
                onclick: () => send({ type: "hand_lower", participant_id: String(h.participant_id) }),
              }),
            ),
          ),
        ),
      );
    }
    renderCounts();
  }

  const handButton = el("button", {
    type: "button",
    class: "button-secondary control",
    text: "Raise hand",
    "aria-pressed": "false",
    onclick: () => send({ type: "hand", raised: !state.handRaised }),
  });

  function renderHand() {
    handButton.textContent = state.handRaised ? "Lower hand" : "Raise hand";
    handButton.setAttribute("aria-pressed", String(state.handRaised));
  }

  // ------------------------------------------------------------ chat

  const chatList = el("ol", { class: "chat-list", "aria-label": "Chat messages", "aria-live": "polite", "aria-relevant": "additions" });
  const chatLabel = el("label", { class: "label", for: "chat-input", text: "Message everyone" });
  const chatInput = el("textarea", { id: "chat-input", name: "body", rows: "2", maxlength: "1000", required: true });
  const chatForm = el(
    "form",
    { class: "talk-form" },
    chatLabel,
    chatInput,
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Send" })),
  );
  chatForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = chatInput.value.trim();
    if (!body) return;
    send({ type: "chat", body });
    chatInput.value = "";
  });
  chatInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      chatForm.requestSubmit();
    }
  });
  panels.get("chat").append(chatList, chatForm);

  function chatItem(m) {
    return el(
      "li",
      { dataset: { id: m.id } },
      el("p", { class: "talk-meta" }, el("strong", { text: m.author_name }), ` · ${clock(m.at)}`),
      el("p", { class: "talk-body", text: m.body }),
      isHost()
        ? el("button", { type: "button", class: "link-button small", text: "Delete", "aria-label": `Delete the message from ${m.author_name}`, onclick: () => send({ type: "chat_delete", id: m.id }) })
        : null,
    );
  }

  function renderChat() {
    const atBottom = chatList.scrollHeight - chatList.scrollTop - chatList.clientHeight < 40;
    chatList.replaceChildren(...(state.chat.length ? state.chat.map(chatItem) : [el("li", { class: "muted empty-note", text: "No messages yet." })]));
    if (atBottom) chatList.scrollTop = chatList.scrollHeight;
  }

  // ------------------------------------------------------------ questions

  const questionList = el("ol", { class: "question-list", "aria-label": "Questions" });
  const askInput = el("textarea", { id: "ask-input", name: "body", rows: "2", maxlength: "500", required: true });
  const askForm = el(
    "form",
    { class: "talk-form" },
    el("label", { class: "label", for: "ask-input", text: "Ask the presenters a question" }),
    askInput,
    el("div", { class: "actions" }, el("button", { type: "submit", text: "Ask" })),
  );
  askForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = askInput.value.trim();
    if (!body) return;
    send({ type: "ask", body });
    askInput.value = "";
  });
  panels.get("questions").append(askForm, questionList);

  function questionItem(q) {
    const mine = String(q.author_id) === myId();
    const voted = state.myVotes.has(q.id);
    const host = isHost();
    return el(
      "li",
      { class: ["question", q.highlighted ? "question-highlighted" : "", q.answered ? "question-answered" : ""].join(" ").trim(), dataset: { id: q.id } },
      el(
        "p",
        { class: "talk-meta" },
        el("strong", { text: q.author_name }),
        ` · ${clock(q.at)}`,
        q.highlighted ? el("span", { class: "badge badge-ok", text: "Now answering" }) : null,
        q.answered ? el("span", { class: "badge", text: "Answered" }) : null,
      ),
      el("p", { class: "talk-body", text: q.body }),
      el(
        "div",
        { class: "question-actions" },
        el("button", {
          type: "button",
          class: "button-secondary button-small upvote",
          "aria-pressed": String(voted),
          disabled: voted || mine,
          "aria-label": `Upvote: ${q.votes} ${q.votes === 1 ? "vote" : "votes"}`,
          text: `▲ ${q.votes}`,
          onclick: () => send({ type: "upvote", id: q.id }),
        }),
        host ? el("button", { type: "button", class: "link-button small", text: q.answered ? "Mark unanswered" : "Mark answered", onclick: () => send({ type: "question_answered", id: q.id, answered: !q.answered }) }) : null,
        host ? el("button", { type: "button", class: "link-button small", text: q.highlighted ? "Stop highlighting" : "Highlight", onclick: () => send({ type: "question_highlight", id: q.highlighted ? null : q.id }) }) : null,
        host || mine ? el("button", { type: "button", class: "link-button small", text: "Delete", onclick: () => send({ type: "question_delete", id: q.id }) }) : null,
      ),
    );
  }

  function renderQuestions() {
    const list = [...state.questions.values()].sort(
      (a, b) => Number(b.highlighted) - Number(a.highlighted) || Number(a.answered) - Number(b.answered) || b.votes - a.votes || a.at - b.at,
    );
    questionList.replaceChildren(...(list.length ? list.map(questionItem) : [el("li", { class: "muted empty-note", text: "No questions yet." })]));
  }

  // ------------------------------------------------------------ polls

  const pollList = el("div", { class: "poll-list" });
  const pollCreate = el("details", { class: "poll-create", hidden: true });
  {
    const question = el("input", { id: "poll-question", name: "question", required: true, maxlength: "300" });
    const options = el("textarea", { id: "poll-options", name: "options", rows: "3", required: true });
    const multiple = el("input", { type: "checkbox", id: "poll-multiple", name: "multiple" });
    const anonymous = el("input", { type: "checkbox", id: "poll-anonymous", name: "anonymous", checked: true });
    const open = el("input", { type: "checkbox", id: "poll-open", name: "open", checked: true });
    const form = el(
      "form",
      { class: "talk-form" },
      el("div", { class: "field" }, el("label", { class: "label", for: "poll-question", text: "Question" }), question),
      el("div", { class: "field" }, el("label", { class: "label", for: "poll-options", text: "Choices, one a line" }), options),
      el("label", { class: "check" }, multiple, " People may choose more than one"),
      el("label", { class: "check" }, anonymous, " Anonymous"),
      el("label", { class: "check" }, open, " Open it now"),
      el("div", { class: "actions" }, el("button", { type: "submit", text: "Create poll" })),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const choices = options.value.split("\n").map((s) => s.trim()).filter(Boolean);
      if (!question.value.trim() || choices.length < 2) {
        tell("A poll needs a question and at least two choices.");
        return;
      }
      send({ type: "poll_create", question: question.value.trim(), options: choices, multiple: multiple.checked, anonymous: anonymous.checked, open: open.checked });
      question.value = "";
      options.value = "";
      pollCreate.open = false;
    });
    pollCreate.append(el("summary", { text: "New poll" }), form);
  }
  panels.get("polls").append(pollCreate, pollList);

  function resultsView(poll, results) {
    return el(
      "div",
      { class: "poll-results" },
      el("p", { class: "muted small", text: `${results.ballots} ${results.ballots === 1 ? "vote" : "votes"}${poll.revealed ? "" : " · only hosts see these results"}` }),
      resultBars(results),
    );
  }

  function pollItem(poll) {
    const host = isHost();
    const results = state.results.get(poll.id);
    const voted = state.voted.has(poll.id);
    const statusText = { draft: "Draft", open: "Open", closed: "Closed" }[poll.status] || poll.status;
    const node = el(
      "article",
      { class: "poll card", dataset: { id: poll.id }, "aria-labelledby": `poll-${poll.id}-q` },
      el("h3", { id: `poll-${poll.id}-q`, text: poll.question }),
      el("p", { class: "talk-meta" }, el("span", { class: "badge", text: statusText }), poll.anonymous ? " Anonymous" : "", poll.multiple ? " · choose any" : ""),
    );
    if (poll.status === "open" && !voted) {
      const name = `poll-${poll.id}`;
      const form = el(
        "form",
        { class: "poll-vote" },
        el(
          "fieldset",
          {},
          el("legend", { class: "visually-hidden", text: poll.question }),
          poll.options.map((o) =>
            el("label", { class: "check" }, el("input", { type: poll.multiple ? "checkbox" : "radio", name, value: String(o.id) }), ` ${o.label}`),
          ),
        ),
        el("div", { class: "actions" }, el("button", { type: "submit", class: "button-small", text: "Vote" })),
      );
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const chosen = [...form.querySelectorAll("input:checked")].map((i) => Number(i.value));
        if (!chosen.length) return tell("Choose an answer first.");
        send({ type: "vote", poll_id: poll.id, options: chosen });
      });
      node.append(form);
    } else if (voted) {
      node.append(el("p", { class: "small", text: "Thank you: your vote is in." }));
    }
    if (results && (host || poll.revealed)) node.append(resultsView(poll, results));
    if (host) {
      const act = (label, type) => el("button", { type: "button", class: "button-secondary button-small", text: label, onclick: () => send({ type, id: poll.id }) });
      node.append(
        el(
          "div",
          { class: "actions" },
          poll.status === "draft" ? act("Open", "poll_open") : null,
          poll.status === "open" ? act("Close", "poll_close") : null,
          !poll.revealed ? act("Show results to everyone", "poll_reveal") : null,
        ),
      );
    }
    return node;
  }

  function renderPolls() {
    pollCreate.hidden = !isHost();
    const list = [...state.polls.values()].sort((a, b) => b.id - a.id);
    pollList.replaceChildren(...(list.length ? list.map(pollItem) : [el("p", { class: "muted empty-note", text: "No polls yet." })]));
  }

  // ------------------------------------------------------------ messages

  const ERROR_CODES = new Set(["too_long", "empty", "too_fast", "not_host", "not_found", "already_voted", "wrong_state", "bad_choice", "internal"]);

  /** Handles a message if it belongs to the panel; returns whether it did. */
  function handle(m) {
    switch (m.type) {
      case "history":
        state.chat = m.chat || [];
        state.questions = new Map((m.questions || []).map((q) => [q.id, q]));
        state.myVotes = new Set((m.questions || []).filter((q) => q.you_voted).map((q) => q.id));
        state.polls = new Map((m.polls || []).map((p) => [p.id, p]));
        state.results = new Map((m.poll_results || []).map((r) => [r.poll_id, r]));
        state.voted = new Set(m.voted || []);
        renderChat();
        renderQuestions();
        renderPolls();
        return true;
      case "chat_history": {
        // An answer for a space we have left already is stale: the next one is on its way.
        if ((m.group ?? null) !== state.chatScope) return true;
        const stored = new Set(m.chat.map((c) => c.id));
        const fresh = state.chat.filter((c) => state.chatFresh.has(c.id) && !stored.has(c.id));
        state.chat = [...m.chat, ...fresh];
        renderChat();
        return true;
      }
      case "chat":
        state.chatFresh.add(m.message.id);
        state.chat.push(m.message);
        if (state.chat.length > 300) state.chat.splice(0, state.chat.length - 300);
        renderChat();
        if (String(m.message.author_id) !== myId()) bump("chat");
        return true;
      case "chat_deleted":
        state.chat = state.chat.filter((c) => c.id !== m.id);
        renderChat();
        return true;
      case "question": {
        const isNew = !state.questions.has(m.question.id);
        state.questions.set(m.question.id, m.question);
        renderQuestions();
        if (isNew && String(m.question.author_id) !== myId()) bump("questions");
        return true;
      }
      case "question_deleted":
        state.questions.delete(m.id);
        renderQuestions();
        return true;
      case "hands":
        state.hands = m.queue || [];
        renderPeople();
        return true;
      case "hand":
        state.handRaised = Boolean(m.raised);
        renderHand();
        renderPeople();
        tell(state.handRaised ? "Your hand is raised: the hosts can see it." : "Your hand is lowered.", "info");
        return true;
      case "poll": {
        const isNew = !state.polls.has(m.poll.id);
        state.polls.set(m.poll.id, m.poll);
        renderPolls();
        if (isNew && m.poll.status === "open") bump("polls");
        return true;
      }
      case "poll_results":
        state.results.set(m.results.poll_id, m.results);
        renderPolls();
        return true;
      case "voted":
        state.voted.add(m.poll_id);
        renderPolls();
        return true;
      case "error":
        if (!ERROR_CODES.has(m.code)) return false;
        if (m.code === "already_voted") state.voted.add(m.poll_id);
        tell(sentence(m.message));
        return true;
      default:
        return false;
    }
  }

  /** Remembers an upvote we sent (the server's broadcast does not say who voted). */
  const originalSend = send;
  send = (message) => {
    if (message.type === "upvote") state.myVotes.add(message.id);
    originalSend(message);
  };

  function refresh() {
    renderPeople();
    renderChat();
    renderQuestions();
    renderPolls();
    renderHand();
  }

  /** After a reconnect the server's `history` replaces everything; hands start down. */
  function reset() {
    state.handRaised = false;
    state.hands = [];
    refresh();
  }

  for (const t of extraTabs) panels.get(t.key).append(t.node);

  /** Shows or hides a tab (the host's Groups tab); a hidden tab that was open gives way to People. */
  function setTabVisible(key, visible) {
    if (visible) state.hiddenTabs.delete(key);
    else state.hiddenTabs.add(key);
    tabButtons.get(key).hidden = !visible;
    if (!visible && state.active === key) select("people");
  }

  /** A tab's badge count kept by its owner. */
  function setCount(key, n) {
    state.counts[key] = n;
    renderCounts();
  }

  const node = el("aside", { class: "room-panel card", "aria-label": "People, chat, questions and polls" }, tablist, status, ...panels.values());
  refresh();
  /**
   * In a breakout group chat stays in the group: say so on the box, and on a
   * move show only the new space's chat (the server sends what was said there
   * before as `chat_history`).
   */
  function setChatScope(group) {
    chatLabel.textContent = group ? `Message ${group.name}` : "Message everyone";
    const scope = group ? group.id : null;
    if (scope === state.chatScope) return;
    state.chatScope = scope;
    state.chat = [];
    state.chatFresh.clear();
    renderChat();
  }

  return { node, handButton, handle, refresh, reset, renderPeople, select, setTabVisible, setCount, tell, setChatScope };
}
