// The chat page. Every URL is relative, so it works at / and below the stage prefix (/Prod/).
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

const KEY_ITEM = "chat-api.key"; // sessionStorage: the key is kept for this tab only
const SESSION_ITEM = "chat-api.session"; // localStorage: a reload shows the conversation again

const byId = (id) => document.getElementById(id);
const log = byId("log");
const notice = byId("notice");
const form = byId("composer");
const keyRow = byId("key-row");
const keyInput = byId("key");
const messageBox = byId("message");
const sendButton = byId("send");
const stopButton = byId("stop");
const newChatButton = byId("new-chat");
const deleteButton = byId("delete");

let answering = null; // the AbortController of the answer being streamed
let restorePending = false; // the conversation could not be loaded yet (no key)

// Model output is untrusted: links open elsewhere and carry nothing back.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

function renderMarkdown(element, text) {
  // RETURN_TRUSTED_TYPE: the CSP lets HTML into the DOM only through DOMPurify's policy.
  element.innerHTML = DOMPurify.sanitize(marked.parse(text), { RETURN_TRUSTED_TYPE: true });
}

function addMessage(role, text) {
  const element = document.createElement("article");
  element.className = `message ${role}`;
  element.setAttribute("aria-label", role === "user" ? "You" : "Assistant");
  if (role === "user") element.textContent = text;
  else renderMarkdown(element, text);
  log.append(element);
  log.scrollTop = log.scrollHeight;
  return element;
}

function addNote(element, text) {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = text;
  element.append(note);
}

function say(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { ...extra, "x-api-key": key } : extra;
}

function retryAfter(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return "Try again later.";
  const seconds = /^\d+$/.test(value) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return "Try again later.";
  const whole = Math.max(1, Math.ceil(seconds));
  return `Try again in ${whole} second${whole === 1 ? "" : "s"}.`;
}

async function errorText(response) {
  let said = "";
  try {
    said = (await response.json()).error ?? "";
  } catch {
    // Not the API's JSON (a proxy's page, say): the status alone is told.
  }
  const because = said ? ` ${said}` : "";
  switch (response.status) {
    case 401:
    case 403: // API Gateway's answer to a missing or wrong key
      return "Wrong or missing API key: enter the API key and send again.";
    case 429:
      return `Too many requests, or the budget is used up.${because} ${retryAfter(response)}`;
    case 502:
      return `OpenAI failed to answer.${because} Try again.`;
    case 503:
      return `The service cannot answer yet.${because}`;
    case 504:
      return "OpenAI took too long to answer. Try again.";
    default:
      return said || `The request failed (HTTP ${response.status}).`;
  }
}

async function showError(response) {
  say(await errorText(response));
  if (response.status === 401 || response.status === 403) askForKey();
}

function askForKey() {
  sessionStorage.removeItem(KEY_ITEM);
  keyRow.hidden = false;
  keyInput.focus();
}

function setSession(id) {
  if (id) localStorage.setItem(SESSION_ITEM, id);
  else localStorage.removeItem(SESSION_ITEM);
  deleteButton.disabled = !id;
}

function setAnswering(controller) {
  answering = controller;
  stopButton.hidden = !controller;
  sendButton.disabled = Boolean(controller);
}

// Server-Sent Events from a fetch body: {type, data} per event.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) yield event;
    }
  }
}

function parseEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { type, data: data.join("\n") } : null;
}

async function send(text) {
  say("");
  const question = addMessage("user", text);
  const answer = addMessage("assistant", "");
  // Screen readers read the answer once it is whole, not at every piece.
  answer.setAttribute("aria-busy", "true");
  const controller = new AbortController();
  setAnswering(controller);
  const body = { message: text, stream: true };
  const session = localStorage.getItem(SESSION_ITEM);
  if (session) body.session_id = session;
  let written = "";
  let drawing = 0;
  try {
    const response = await fetch("chat", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      // Nothing was said: the message goes back in the box, to send again.
      question.remove();
      answer.remove();
      if (!messageBox.value) messageBox.value = text;
      if (response.status === 404 && session) {
        setSession(null);
        say("This conversation has expired or was deleted. Send again to start a new one.");
      } else {
        await showError(response);
      }
      return;
    }
    for await (const event of sseEvents(response.body)) {
      const data = JSON.parse(event.data);
      if (event.type === "delta") {
        written += data.text;
        drawing ||= requestAnimationFrame(() => {
          drawing = 0;
          renderMarkdown(answer, written);
        });
      } else if (event.type === "done") {
        cancelAnimationFrame(drawing);
        renderMarkdown(answer, data.response);
        if (data.session_id) setSession(data.session_id);
        return;
      } else if (event.type === "error") {
        cancelAnimationFrame(drawing);
        renderMarkdown(answer, written);
        addNote(answer, "The answer broke off; it was not kept.");
        say(`The answer broke off: ${data.error}`);
        return;
      }
    }
    renderMarkdown(answer, written);
    addNote(answer, "The answer broke off; it was not kept.");
    say("The connection closed before the answer was complete. Try again.");
  } catch (error) {
    cancelAnimationFrame(drawing);
    renderMarkdown(answer, written);
    if (error.name === "AbortError") {
      addNote(answer, "Stopped; this answer was not kept.");
    } else {
      addNote(answer, "The answer broke off; it was not kept.");
      say("Could not reach the service. Check the connection and try again.");
    }
  } finally {
    answer.removeAttribute("aria-busy");
    // Stop is about to hide: keep the focus where the next message is written.
    if (document.activeElement === stopButton) messageBox.focus();
    setAnswering(null);
    log.scrollTop = log.scrollHeight;
  }
}

async function restore() {
  const id = localStorage.getItem(SESSION_ITEM);
  setSession(id);
  if (!id) return;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(id)}`, { headers: headers() });
  } catch {
    say("Could not reach the service to load the conversation. Reload to try again.");
    return;
  }
  restorePending = response.status === 401 || response.status === 403;
  if (response.status === 404 || response.status === 400) {
    setSession(null);
    say("The previous conversation has expired or was deleted.");
  } else if (!response.ok) {
    await showError(response);
  } else {
    log.replaceChildren();
    for (const message of (await response.json()).messages) addMessage(message.role, message.content);
  }
}

function startOver() {
  answering?.abort();
  setSession(null);
  log.replaceChildren();
  say("");
  messageBox.focus();
}

async function removeConversation() {
  const id = localStorage.getItem(SESSION_ITEM);
  if (!id) return;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: headers(),
    });
  } catch {
    say("Could not reach the service. Check the connection and try again.");
    return;
  }
  if (response.ok || response.status === 404) {
    startOver();
    say("The conversation was deleted.");
  } else {
    await showError(response);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (answering) return;
  const key = keyInput.value.trim();
  if (!keyRow.hidden && key) {
    sessionStorage.setItem(KEY_ITEM, key);
    keyInput.value = "";
    keyRow.hidden = true;
    messageBox.focus();
    if (restorePending) await restore();
  }
  const text = messageBox.value.trim();
  if (!text) return;
  messageBox.value = "";
  await send(text);
});

messageBox.addEventListener("keydown", (event) => {
  // Enter that ends an input method's composition (Korean, Japanese, Chinese) is not a send;
  // Safari ends the composition first, then reports the key as 229.
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  form.requestSubmit();
});

stopButton.addEventListener("click", () => answering?.abort());
newChatButton.addEventListener("click", startOver);
deleteButton.addEventListener("click", removeConversation);

restore();
