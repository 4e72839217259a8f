// The console's entry: sign-in, the router (#/calls, #/calls/<id>, #/recordings,
// #/recordings/<id>, #/capacity) and the shared live feed.
import { api, status } from "./lib.js";
import { LiveFeed } from "./feed.js";
import { renderCalls } from "./calls.js";
import { renderRecordings, renderRecording } from "./recordings.js";
import { renderCapacity } from "./capacity.js";

const state = { session: null, feed: null, cleanup: null };
window.consoleState = state; // read by the browser tests (levels, lines, feed delay)

const $ = (id) => document.getElementById(id);

function showSignIn() {
  state.session = null;
  if (state.feed) { state.feed.close(); state.feed = null; }
  if (state.cleanup) { state.cleanup(); state.cleanup = null; }
  $("nav").hidden = true;
  $("who").hidden = true;
  $("view").replaceChildren();
  $("sign-in").hidden = false;
  $("token").focus();
}

function signedIn(session) {
  state.session = session;
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-label").textContent = `Signed in (${session.who})`;
  if (!state.feed) state.feed = new LiveFeed();
  route();
}

const ROUTES = [
  [/^#\/calls\/([A-Za-z0-9_-]+)$/, (m, view) => renderCalls(view, state, m[1])],
  [/^#\/calls$/, (m, view) => renderCalls(view, state, null)],
  [/^#\/recordings\/([^/]+)$/, (m, view) => renderRecording(view, decodeURIComponent(m[1]))],
  [/^#\/recordings(\?.*)?$/, (m, view) => renderRecordings(view, m[1] || "")],
  [/^#\/capacity$/, (m, view) => renderCapacity(view)],
];

function route() {
  if (!state.session) return;
  const hash = location.hash || "#/calls";
  if (state.cleanup) { state.cleanup(); state.cleanup = null; }
  const view = $("view");
  view.replaceChildren();
  for (const a of document.querySelectorAll("#nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, render] of ROUTES) {
    const m = hash.match(re);
    if (m) { state.cleanup = render(m, view) || null; return; }
  }
  location.hash = "#/calls";
}

async function start() {
  $("sign-in-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("token");
    try {
      const { data } = await api("/session", { method: "POST", json: { token: input.value } });
      input.value = ""; // the token is not kept anywhere in the page
      status($("sign-in-error"), "");
      signedIn(data);
    } catch (e) {
      input.value = "";
      status($("sign-in-error"), e.status === 401 ? "That is not the admin token." : e.message, true);
    }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("/session", { method: "DELETE" }); } catch (e) { /* already gone */ }
    showSignIn();
  });
  window.addEventListener("console:signed-out", showSignIn);
  window.addEventListener("hashchange", route);
  try {
    const { data } = await api("/session");
    signedIn(data);
  } catch (e) {
    showSignIn();
  }
  window.consoleReady = true;
}

start();
