// Small helpers: DOM building (text only: nothing is ever parsed as HTML), the console API
// (session cookie + CSRF header), formatting, a confirmation dialog.

/** h("tag.class", {attr: value, onclick: fn}, ...children): strings become text nodes. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

function csrf() {
  const m = document.cookie.split("; ").find((c) => c.startsWith("gw_console_csrf="));
  return m ? decodeURIComponent(m.split("=")[1]) : "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

/** fetch under /console/api with the CSRF header on writes; JSON in and out by default. */
export async function api(path, { method = "GET", json, body, type, raw = false } = {}) {
  const headers = {};
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf();
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  else if (type) headers["Content-Type"] = type;
  const r = await fetch(`/console/api${path}`, { method, body, headers, credentials: "same-origin" });
  if (raw) return r;
  const ctype = r.headers.get("Content-Type") || "";
  const data = ctype.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401) window.dispatchEvent(new CustomEvent("console:signed-out"));
    throw new ApiError(r.status, data);
  }
  return { data, response: r };
}

export function dbBar(db) {
  // -60 dBFS .. 0 dBFS as 0..100 %
  if (db === null || db === undefined) return 0;
  return Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60), r = s % 60;
  return `${m}:${String(r).padStart(2, "0")}`;
}

export function fmtTime(unix) {
  return unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
}

/** Resolves true when the person confirms (the native <dialog>, keyboard usable). */
export function confirmDialog(title, text, okLabel = "Confirm") {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "cancel";
    dlg.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

export function status(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}
