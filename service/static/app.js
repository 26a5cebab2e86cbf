// The handoff web chat: one page, no build step. Talks to the service's JSON and
// server-sent-event endpoints; the thread id lives in the URL (#thread=...), so a
// reload, or another browser on the same service, resumes the conversation.
// When the service requires access tokens (HANDOFF_API_TOKENS), the page asks for
// one on the first 401 and keeps it in this browser's localStorage.
// Replies appear as the agents write them (`token` events), each in its agent's
// bubble; the whole message that follows replaces the streamed text, and a reply
// that broke off stays visible, marked as interrupted.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "handoff-token";
const page = {
  threadId: null,
  graphs: [],
  busy: false,
  escalationId: null,
  token: localStorage.getItem(TOKEN_KEY) || "",
  live: new Map(), // message_id -> the bubble its tokens are written into
};

// ---------------------------------------------------------------- helpers

function title(name) {
  if (!name) return "-";
  if (name === "human") return "Human agent";
  return name.replace(/_/g, " ").replace(/\b\w/g, (c) => c.toUpperCase());
}

function colour(name) {
  let hash = 0;
  for (const c of name || "") hash = (hash * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${hash}, 55%, 40%)`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.setAttribute("style", value);
    else node.dataset[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) {
  $("status").textContent = text || "";
}

function setBusy(busy) {
  page.busy = busy;
  $("send").disabled = busy;
  document.querySelector("#esc-form button").disabled = busy;
  if (!busy) setStatus("");
}

async function api(method, path, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  if (page.token) headers.Authorization = `Bearer ${page.token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) askForToken();
  if (!response.ok) throw await apiError(response);
  return response;
}

// ---------------------------------------------------------------- access token

function askForToken() {
  $("token-form").hidden = false;
  $("token").focus();
}

function saveToken(event) {
  event.preventDefault();
  page.token = $("token").value.trim();
  if (page.token) localStorage.setItem(TOKEN_KEY, page.token);
  else localStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  $("token-form").hidden = true;
  showError("");
  start().catch((error) => showError(error.message));
}

async function apiError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body.error) message = `${body.error.message} (${body.error.code})`;
  } catch (_) { /* not JSON */ }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

// ---------------------------------------------------------------- rendering

function agentBubble(agent, text) {
  const who = agent === "human" ? "Human agent (a person)" : title(agent);
  return el("li", { class: "msg agent", role: "agent", agent: agent || "", style: `--agent: ${colour(agent)}` },
    el("div", { class: "who" }, who), el("div", { class: "text" }, text));
}

// The streamed bubble a whole message completes, as [message id, bubble]: by its id, or (an agent
// that stores its messages under new ids) the finished bubble of the same agent with the same text.
function liveBubbleOf(message, messageId) {
  if (messageId && page.live.has(messageId)) return [messageId, page.live.get(messageId)];
  if (message.role !== "agent") return null;
  for (const [id, bubble] of page.live) {
    if (bubble.dataset.state === "complete" && bubble.dataset.agent === (message.agent || "")
        && bubble.querySelector(".text").textContent === message.text) return [id, bubble];
  }
  return null;
}

function addMessage(message, messageId) {
  const live = liveBubbleOf(message, messageId);
  if (live) { // the whole message, as stored, replaces what was streamed
    const [id, bubble] = live;
    bubble.querySelector(".text").textContent = message.text;
    if (bubble.dataset.state === "streaming") bubble.dataset.state = "complete";
    page.live.delete(id);
    return;
  }
  const list = $("messages");
  let item;
  if (message.role === "user") {
    item = el("li", { class: "msg user", role: "user" },
      el("div", { class: "who" }, "You"), el("div", { class: "text" }, message.text));
  } else if (message.role === "tool") {
    if ((message.agent || "").startsWith("transfer_to_")) return;
    item = el("li", { class: "msg tool", role: "tool" },
      el("div", { class: "text" }, `${message.agent}: ${message.text}`));
  } else {
    item = agentBubble(message.agent, message.text);
  }
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

// A token event: text appended to its message's bubble, or that message's end.
function onToken(event) {
  let bubble = page.live.get(event.message_id);
  if (event.kind === "delta") {
    if (!bubble) {
      bubble = agentBubble(event.agent, "");
      bubble.dataset.messageId = event.message_id;
      bubble.dataset.state = "streaming";
      $("messages").append(bubble);
      page.live.set(event.message_id, bubble);
      setActiveAgent(event.agent);
      setStatus(`${title(event.agent)} is writing…`);
    }
    bubble.querySelector(".text").append(event.text);
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  } else if (bubble && event.kind === "complete") {
    bubble.dataset.state = "complete";
  } else if (bubble && event.kind === "interrupted") {
    markInterrupted(bubble, "This reply broke off and was not kept.");
  }
}

function markInterrupted(bubble, why) {
  bubble.dataset.state = "interrupted";
  bubble.append(el("div", { class: "interrupted-note", testid: "interrupted" }, `Interrupted: ${why}`));
  page.live.delete(bubble.dataset.messageId);
}

// The stream ended: a reply still being written when it did was cut off with it.
function settleLive(why) {
  for (const bubble of [...page.live.values()]) {
    if (bubble.dataset.state === "streaming") markInterrupted(bubble, why);
  }
  page.live.clear();
}

function addHandoffNote(event) {
  const note = `${title(event.source)} handed the conversation to ${title(event.target)}`;
  $("messages").append(el("li", { class: "msg handoff-note" }, note));
}

function setActiveAgent(name) {
  const node = $("active-agent");
  node.textContent = name === "human" ? "Human agent" : title(name);
  node.style.color = name ? colour(name) : "";
}

function timelineItem(id) {
  let item = document.querySelector(`#timeline li[data-handoff-id="${CSS.escape(id)}"]`);
  if (!item) {
    item = el("li", { handoffId: id, testid: "handoff" });
    $("timeline").append(item);
    $("timeline-empty").hidden = true;
  }
  return item;
}

function renderTimelineItem(item, h) {
  item.dataset.outcome = h.outcome;
  item.dataset.source = h.source;
  item.dataset.target = h.target;
  const when = h.at ? new Date(h.at).toLocaleTimeString() : "";
  const parts = [
    el("div", {},
      el("span", { class: "route" }, `${title(h.source)} \u2192 ${title(h.target)}`),
      el("span", { class: "badge outcome" }, h.outcome),
      el("span", { class: "badge" }, h.trigger),
      when ? el("span", { class: "badge" }, when) : null),
    el("p", { class: "reason" }, h.reason || "(no reason given)"),
  ];
  if (h.detail) parts.push(el("p", { class: "detail" }, h.detail));
  item.replaceChildren(...parts);
}

// A live handoff event: requested -> initialised -> accepted/rejected/failed -> completed.
function onHandoffEvent(event) {
  const item = timelineItem(event.handoff_id);
  const previous = item.dataset.outcome;
  const kept = previous === "rejected" || previous === "failed";
  const outcome = kept ? previous
    : event.kind === "initialised" ? (previous || "requested")
    : event.kind;
  const detail = event.kind === "initialised" ? `On arrival: ${event.detail}`
    : event.detail || item.querySelector(".detail")?.textContent || "";
  renderTimelineItem(item, { ...event, outcome, detail });
  if (event.kind === "accepted") addHandoffNote(event);
}

// The authoritative records (after a turn, or when a thread is loaded).
function onRecords(records) {
  for (const record of records) {
    const item = timelineItem(record.request.id);
    const detail = record.rejection ? `${record.rejection.code}: ${record.rejection.message}`
      : record.init_result ? `On arrival: ${record.init_result.summary}` : "";
    const outcome = item.dataset.outcome === "completed" && record.outcome === "accepted"
      ? "completed" : record.outcome;
    renderTimelineItem(item, {
      source: record.request.source, target: record.request.target, outcome,
      trigger: record.request.trigger, reason: record.request.reason, detail,
      at: record.decided_at,
    });
  }
}

function showEscalation(escalation) {
  const box = $("escalation");
  if (!escalation) {
    box.hidden = true;
    page.escalationId = null;
    return;
  }
  page.escalationId = escalation.id;
  $("esc-source").textContent = title(escalation.source);
  $("esc-reason").textContent = escalation.reason;
  $("esc-question").textContent = escalation.question;
  $("esc-briefing").textContent = escalation.briefing;
  box.hidden = false;
  setStatus("Waiting for a person to answer the escalation.");
}

function fillHandBack(graphName) {
  const graph = page.graphs.find((g) => g.name === graphName);
  const select = $("esc-hand-back");
  select.replaceChildren(el("option", {}, "(nobody: stay with the person)"));
  select.firstChild.value = "";
  for (const agent of (graph ? graph.agents : []).filter((a) => a !== "human")) {
    const option = el("option", {}, title(agent));
    option.value = agent;
    select.append(option);
  }
}

function renderThread(state) {
  $("messages").replaceChildren();
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = false;
  for (const message of state.messages) addMessage(message);
  onRecords(state.handoffs);
  setActiveAgent(state.active_agent);
  $("case-file").textContent = JSON.stringify(state.case_file, null, 2);
  showEscalation(state.escalation);
}

function setThread(info) {
  page.threadId = info.thread_id;
  $("thread-id").textContent = info.thread_id;
  $("graph").value = info.graph;
  const graph = page.graphs.find((g) => g.name === info.graph);
  $("flow").textContent = graph ? `${graph.title}: ${graph.flow}` : "";
  fillHandBack(info.graph);
  history.replaceState(null, "", `#thread=${info.thread_id}`);
}

// ---------------------------------------------------------------- streaming

// Read a text/event-stream body and call onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function onTurnEvent(name, data) {
  switch (name) {
    case "step":
      if (!["intake", "handoff_gate"].includes(data.node)) {
        setStatus(data.node === "human" ? "Waiting for a person…" : `${title(data.node)} is answering…`);
      }
      break;
    case "token":
      onToken(data);
      break;
    case "message":
      if (data.message.role !== "user") addMessage(data.message, data.message_id);
      break;
    case "handoff":
      onHandoffEvent(data);
      break;
    case "escalation":
      showEscalation(data.escalation);
      break;
    case "done":
      settleLive("the turn ended before it was complete.");
      onRecords(data.result.handoffs);
      setActiveAgent(data.result.active_agent);
      $("case-file").textContent = JSON.stringify(data.result.case_file, null, 2);
      showEscalation(data.result.escalation);
      break;
    case "error":
      settleLive("the turn failed.");
      showError(`${data.message} (${data.code})`);
      break;
    default:
      break;
  }
}

// onAccepted runs once the service has taken the request (a 2xx), before its events: a
// refused request (too long, thread busy, ...) must leave what the user typed where it was.
async function runTurn(path, body, onAccepted) {
  setBusy(true);
  showError("");
  try {
    const response = await api("POST", path, body);
    onAccepted();
    await readEvents(response, onTurnEvent);
  } catch (error) {
    showError(error.message);
  } finally {
    settleLive("the connection to the service was lost.");
    setBusy(false);
    if (page.escalationId) setStatus("Waiting for a person to answer the escalation.");
  }
}

// ---------------------------------------------------------------- actions

async function newThread() {
  showError("");
  const response = await api("POST", "/threads", { graph: $("graph").value });
  const info = await response.json();
  setThread(info);
  renderThread({ messages: [], handoffs: [], active_agent: null, case_file: {}, escalation: null });
  $("text").focus();
}

async function loadThread(threadId) {
  const response = await api("GET", `/threads/${encodeURIComponent(threadId)}`);
  const state = await response.json();
  setThread(state);
  renderThread(state);
}

async function sendMessage(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || page.busy) return;
  if (!page.threadId) await newThread();
  await runTurn(`/threads/${page.threadId}/messages`, { text }, () => {
    clearIfUnchanged($("text"), text);
    addMessage({ role: "user", text });
  });
}

// Empty a text box the service has taken the text of, unless the user went on typing meanwhile.
function clearIfUnchanged(box, sent) {
  if (box.value.trim() === sent) box.value = "";
}

async function answerEscalation(event) {
  event.preventDefault();
  const reply = $("esc-reply").value.trim();
  if (!reply || page.busy) return;
  const handBack = $("esc-hand-back").value || null;
  await runTurn(`/threads/${page.threadId}/escalation`,
    { reply, hand_back_to: handBack, escalation_id: page.escalationId },
    () => clearIfUnchanged($("esc-reply"), reply));
}

async function start() {
  const graphs = await (await api("GET", "/graphs")).json();
  page.graphs = graphs;
  const select = $("graph");
  select.replaceChildren();
  for (const graph of graphs) {
    const option = el("option", {}, graph.title);
    option.value = graph.name;
    select.append(option);
  }
  const match = location.hash.match(/thread=([\w-]+)/);
  if (match) {
    try {
      await loadThread(match[1]);
    } catch (error) {
      showError(`Could not resume thread ${match[1]}: ${error.message}. Started a new one.`);
      await newThread();
    }
  } else {
    await newThread();
  }
  document.body.dataset.ready = "true";
}

$("composer").addEventListener("submit", sendMessage);
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) sendMessage(event);
});
$("esc-form").addEventListener("submit", answerEscalation);
$("token-form").addEventListener("submit", saveToken);
$("new-thread").addEventListener("click", () => newThread().catch((e) => showError(e.message)));
$("graph").addEventListener("change", () => newThread().catch((e) => showError(e.message)));
start().catch((error) => showError(error.message));
