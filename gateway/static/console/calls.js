// Live calls: the table (from the feed), and one call's panel: listen (mono/stereo), coach,
// take over with the microphone, hand back, end. Audio goes through WebRTC to the gateway's
// listen route; the page's analyser exposes the level it hears (window.consoleAudio).
import { api, h, clear, dbBar, duration, confirmDialog, status } from "./lib.js";

const audio = { pc: null, listener: null, callId: null, analyser: null, el: null, mic: null };
window.consoleAudio = {
  /** RMS (0..1) of what the page hears right now; 0 when not listening. */
  rms() {
    if (!audio.analyser) return 0;
    const buf = new Float32Array(audio.analyser.fftSize);
    audio.analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    return Math.sqrt(s / buf.length);
  },
  state: () => ({ listening: !!audio.pc, callId: audio.callId, listener: audio.listener }),
};

async function stopAudio() {
  const { pc, listener, callId, mic } = audio;
  Object.assign(audio, { pc: null, listener: null, callId: null, analyser: null, mic: null });
  if (audio.el) { audio.el.srcObject = null; }
  if (mic) mic.getTracks().forEach((t) => t.stop());
  if (pc) pc.close();
  if (listener && callId) {
    try { await api(`/calls/${callId}/listeners/${listener}`, { method: "DELETE" }); } catch (e) { /* ended */ }
  }
}

async function connectAudio(callId, path, layout, withMic) {
  await stopAudio();
  const pc = new RTCPeerConnection();
  let mic = null;
  if (withMic) {
    // The supervisor's voice as is: the browser's noise suppression and gain control would
    // fade a steady voice or tone, and the gateway does its own levels (use headphones).
    mic = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    pc.addTrack(mic.getAudioTracks()[0], mic);
  } else {
    pc.addTransceiver("audio", { direction: "recvonly" });
  }
  const gotTrack = new Promise((resolve) => { pc.ontrack = (e) => resolve(e.streams[0] || new MediaStream([e.track])); });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // non-trickle: wait for the candidates
    if (pc.iceGatheringState === "complete") resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000);
  });
  let answer;
  try {
    answer = await api(`/calls/${callId}/${path}?layout=${layout}`, {
      method: "POST", body: pc.localDescription.sdp, type: "application/sdp" });
  } catch (e) {
    pc.close();
    if (mic) mic.getTracks().forEach((t) => t.stop());
    throw e;
  }
  const loc = answer.response.headers.get("Location") || "";
  await pc.setRemoteDescription({ type: "answer", sdp: answer.data });
  const stream = await gotTrack;
  if (!audio.el) { audio.el = h("audio", { autoplay: true }); document.body.append(audio.el); }
  audio.el.srcObject = stream;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(stream).connect(analyser);
  Object.assign(audio, { pc, mic, callId, listener: loc.split("/").pop() || null, analyser });
}

function levelMeter(label, db) {
  const bar = h("span.bar");
  bar.style.width = `${dbBar(db)}%`;
  return h("span.meter", { role: "meter", "aria-label": label, "aria-valuemin": -60, "aria-valuemax": 0,
    "aria-valuenow": db ?? -60, title: db === null ? "" : `${db} dBFS` }, bar);
}

function row(call, selected, lastLine) {
  const age = call.started_at ? Date.now() / 1000 - call.started_at : 0;
  const link = h("a", { href: `#/calls/${call.id}`, "aria-current": selected ? "true" : null }, call.id);
  return h("tr", { class: selected ? "selected" : null, dataset: { callId: call.id } },
    h("td", {}, link),
    h("td", {}, call.instance + (call.local ? "" : " (remote)")),
    h("td", {}, call.transport), h("td", {}, call.profile), h("td", {}, call.caller || "—"),
    h("td", {}, duration(age)), h("td", {}, h("span.state", {}, call.state)),
    h("td", {}, levelMeter(`caller level ${call.id}`, call.level_in)),
    h("td", {}, levelMeter(`agent level ${call.id}`, call.level_out)),
    h("td", {}, call.latency_ms && call.latency_ms.length ? call.latency_ms.slice(-3).join(", ") + " ms" : "—"),
    h("td.last", {}, lastLine ? `${lastLine.speaker}: ${lastLine.text}` : ""));
}

function lineItem(line) {
  const t = `${duration((line.offset_ms || 0) / 1000)}`;
  return h(`li.line.${line.kind}`, { dataset: { kind: line.kind, speaker: line.speaker } },
    h("span.t", {}, t), h("span.who", {}, line.speaker), h("span.text", {}, line.text));
}

function panel(callId, feed, msg) {
  const layout = h("select", { id: "layout" }, h("option", { value: "mono" }, "mono"), h("option", { value: "stereo" }, "stereo"));
  const act = (fn) => async () => {
    try { status(msg, "working…"); await fn(); } catch (e) { status(msg, e.message, true); }
  };
  const listenBtn = h("button", { type: "button", id: "listen", onclick: act(async () => {
    await connectAudio(callId, "listen", layout.value, false);
    status(msg, `listening (${layout.value})`);
  }) }, "Listen");
  const stopBtn = h("button", { type: "button", id: "stop-listening", onclick: act(async () => {
    await stopAudio(); status(msg, "stopped listening");
  }) }, "Stop listening");
  const coachText = h("input", { id: "coach-text", type: "text", maxlength: 4000, placeholder: "A note for the agent" });
  const coachForm = h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); act(async () => {
    await api(`/calls/${callId}/coach`, { method: "POST", json: { text: coachText.value } });
    coachText.value = ""; status(msg, "coached");
  })(); } }, h("label", { for: "coach-text" }, "Coach"), coachText, h("button", { type: "submit", id: "coach" }, "Send to agent"));
  const takeBtn = h("button", { type: "button", id: "takeover", onclick: act(async () => {
    if (!await confirmDialog("Take over this call?", "The agent stops and the caller hears your microphone until you hand back.", "Take over")) { status(msg, "cancelled"); return; }
    await connectAudio(callId, "takeover", layout.value, true);
    status(msg, "you have the call: speak, then hand back");
  }) }, "Take over (microphone)");
  const backBtn = h("button", { type: "button", id: "handback", onclick: act(async () => {
    await api(`/calls/${callId}/handback`, { method: "POST" });
    status(msg, "handed back to the agent");
  }) }, "Hand back");
  const endBtn = h("button.danger", { type: "button", id: "end-call", onclick: act(async () => {
    if (!await confirmDialog("End this call?", `Call ${callId} will be hung up for the caller. This cannot be undone.`, "End call")) { status(msg, "cancelled"); return; }
    await api(`/calls/${callId}`, { method: "DELETE" });
    await stopAudio();
    status(msg, "call ended");
  }) }, "End call");
  const lines = h("ol.transcript", { id: "call-lines", "aria-label": "Live transcript" },
    feed.lines.filter((l) => l.call_id === callId).map(lineItem));
  return { el: h("section.panel", { "aria-labelledby": "call-title" },
    h("h3", { id: "call-title" }, `Call ${callId}`),
    h("div.row", {}, h("label", { for: "layout" }, "Layout"), layout, listenBtn, stopBtn),
    coachForm, h("div.row", {}, takeBtn, backBtn, endBtn), msg,
    h("h4", {}, "Live transcript"), lines), lines };
}

export function renderCalls(view, state, callId) {
  const feed = state.feed;
  const tbody = h("tbody");
  const feedStatus = h("p.muted", { id: "feed-status" });
  const table = h("table.calls", {}, h("caption", {}, "Calls on every instance (live)"),
    h("thead", {}, h("tr", {}, ["Call", "Instance", "Transport", "Profile", "Caller", "Duration", "State",
      "Caller level", "Agent level", "Last turns' latency", "Last line"].map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  const msg = h("p.status", { id: "action-status", role: "status" });
  const detail = callId ? panel(callId, feed, msg) : null;
  view.append(h("h2", {}, "Live calls"), feedStatus, table,
    detail ? detail.el : h("p.muted", {}, "Select a call to listen, coach, take over or end it."));
  const draw = () => {
    const last = new Map();
    for (const l of feed.lines) last.set(l.call_id, l);
    clear(tbody);
    if (!feed.calls.length) tbody.append(h("tr", {}, h("td", { colspan: 11 }, "No live calls.")));
    for (const c of feed.calls) tbody.append(row(c, c.id === callId, last.get(c.id)));
    const d = feed.delays.slice(-40).sort((a, b) => a - b);
    feedStatus.textContent = `${feed.connected ? "live" : "connecting…"}` +
      (d.length ? ` · feed delay median ${Math.round(d[d.length >> 1])} ms` : "");
  };
  draw();
  const off = feed.on((kind, line) => {
    // A line costs one list item; the table is redrawn on the 4 Hz calls tick only.
    if (kind !== "lines") draw();
    else if (line && detail && line.call_id === callId) detail.lines.append(lineItem(line));
  });
  return () => { off(); };
}

window.addEventListener("console:signed-out", () => { stopAudio(); });
