// Recordings: search (time range, caller, profile, end reason, transcript text; paginated
// with the server's cursor) and one call's page: two-channel waveform, transcript aligned
// under it (click a line to play from there), playback (HTTP Range), verification, export,
// delete and retention.
import { api, h, clear, duration, fmtTime, confirmDialog, status } from "./lib.js";

const FIELDS = [
  ["from", "From (UTC)", "datetime-local"], ["to", "To (UTC)", "datetime-local"], ["caller", "Caller", "text"],
  ["profile", "Profile", "text"], ["end_reason", "End reason", "text"], ["q", "Text in transcript", "search"],
];

export function renderRecordings(view, query) {
  const params = new URLSearchParams(query.replace(/^\?/, ""));
  const inputs = {};
  const form = h("form.search", { role: "search", "aria-label": "Search recordings" },
    FIELDS.map(([name, label, type]) => {
      const input = h("input", { id: `f-${name}`, name, type, value: params.get(name) || "" });
      inputs[name] = input;
      return h("div.field", {}, h("label", { for: `f-${name}` }, label), input);
    }),
    h("button", { type: "submit", id: "search" }, "Search"));
  const tbody = h("tbody");
  const msg = h("p.status", { role: "status", id: "rec-status" });
  const more = h("button", { type: "button", id: "next-page", hidden: true }, "Next page");
  const prev = h("button", { type: "button", id: "prev-page", hidden: true }, "Previous page");
  const cursors = [];
  let cursor = null, next = null;
  const load = async () => {
    const q = new URLSearchParams();
    for (const [name, , type] of FIELDS) {
      const v = inputs[name].value.trim();
      if (v) q.set(name, type === "datetime-local" ? new Date(v + "Z").toISOString() : v);
    }
    if (cursor) q.set("cursor", cursor);
    status(msg, "searching…");
    try {
      const { data } = await api(`/recordings?${q}`);
      clear(tbody);
      for (const r of data.data) {
        tbody.append(h("tr", {},
          h("td", {}, h("a", { href: `#/recordings/${encodeURIComponent(r.id)}` }, r.id)),
          h("td", {}, fmtTime(r.started_at_unix)), h("td", {}, duration(r.duration_s || 0)),
          h("td", {}, r.caller || "—"), h("td", {}, r.agent || ""), h("td", {}, r.transport || ""),
          h("td", {}, r.end_reason || "")));
      }
      if (!data.data.length) tbody.append(h("tr", {}, h("td", { colspan: 7 }, "No recordings match.")));
      next = data.next_cursor;
      more.hidden = !data.has_more;
      prev.hidden = !cursors.length;
      status(msg, `${data.data.length} shown (${data.scanned} looked at)`);
    } catch (e) { status(msg, e.message, true); }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); cursors.length = 0; cursor = null; load(); });
  more.addEventListener("click", () => { cursors.push(cursor); cursor = next; load(); });
  prev.addEventListener("click", () => { cursor = cursors.pop() || null; load(); });
  view.append(h("h2", {}, "Recordings"), form, msg,
    h("table.recordings", {}, h("caption", {}, "Recorded calls, newest first"),
      h("thead", {}, h("tr", {}, ["Call", "Started", "Duration", "Caller", "Profile", "Transport", "End reason"]
        .map((c) => h("th", { scope: "col" }, c)))), tbody),
    h("div.row", {}, prev, more));
  load();
}

function drawWave(canvas, peaks, marks, duration_s) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, hgt = canvas.height, half = hgt / 2;
  ctx.fillStyle = "#0f1720"; ctx.fillRect(0, 0, w, hgt);
  const lanes = [["caller", "#7dd3fc", half / 2], ["agent", "#fcd34d", half + half / 2]];
  for (const [name, color, mid] of lanes) {
    const p = peaks[name];
    ctx.fillStyle = color;
    for (let x = 0; x < w; x++) {
      const v = p[Math.floor((x / w) * p.length)] || 0;
      const y = Math.max(1, v * (half / 2 - 2));
      ctx.fillRect(x, mid - y, 1, 2 * y);
    }
  }
  ctx.fillStyle = "#e5e7eb"; ctx.font = "12px sans-serif";
  ctx.fillText("caller", 4, 14); ctx.fillText("agent", 4, half + 14);
  for (const m of marks) {
    const x = (m.offset_ms / 1000 / duration_s) * w;
    ctx.fillStyle = m.kind === "interruption" ? "#f87171" : "#a78bfa";
    ctx.fillRect(x, 0, 2, hgt);
  }
}

export function renderRecording(view, id) {
  const msg = h("p.status", { role: "status", id: "rec-status" });
  const back = h("a", { href: "#/recordings" }, "← Recordings");
  view.append(back, h("h2", {}, `Recording ${id}`), msg);
  (async () => {
    let meta;
    try { meta = (await api(`/recordings/${encodeURIComponent(id)}`)).data; }
    catch (e) { status(msg, e.status === 404 ? "No such recording." : e.message, true); return; }
    const base = `/console/api/recordings/${encodeURIComponent(id)}`;
    const player = h("audio", { controls: true, preload: "metadata", src: `${base}/audio`, id: "player",
      "aria-label": "Recording playback" });
    const canvas = h("canvas", { width: 900, height: 160, id: "wave", role: "img",
      "aria-label": "Waveform: caller above, agent below; red marks interruptions, violet tool calls" });
    const cursor = h("div.cursor");
    const wave = h("div.wave", {}, canvas, cursor);
    const dur = meta.duration_s || (meta.audio && meta.audio.duration_s) || 1;
    canvas.addEventListener("click", (ev) => {
      const r = canvas.getBoundingClientRect();
      player.currentTime = ((ev.clientX - r.left) / r.width) * dur;
      player.play();
    });
    player.addEventListener("timeupdate", () => { cursor.style.left = `${(player.currentTime / dur) * 100}%`; });
    const verifyOut = h("p", { id: "verify-result", role: "status" });
    const verify = h("button", { type: "button", id: "verify", onclick: async () => {
      status(verifyOut, "verifying…");
      try {
        const { data } = await api(`/recordings/${encodeURIComponent(id)}/verify`, { method: "POST" });
        status(verifyOut, data.ok ? `Intact: every checksum matches (${data.where}, ${data.checked_at})`
          : `MISMATCH: ${data.problems.join("; ")}`, !data.ok);
      } catch (e) { status(verifyOut, e.message, true); }
    } }, "Verify checksums");
    const del = h("button.danger", { type: "button", id: "delete", onclick: async () => {
      if (!await confirmDialog("Delete this recording?", `Recording ${id} (audio, transcript, metadata) is deleted for good.`, "Delete")) return;
      try { await api(`/recordings/${encodeURIComponent(id)}`, { method: "DELETE" }); location.hash = "#/recordings"; }
      catch (e) { status(msg, e.message, true); }
    } }, "Delete");
    const ret = meta.retention || {};
    const dl = (label, href, name) => h("a.button", { href, download: name, id: `export-${label.toLowerCase().replace(/[^a-z]+/g, "-")}` }, label);
    const exportRow = h("div.row", { "aria-label": "Export" }, h("span", {}, "Export:"),
      dl("WAV", `${base}/audio?format=wav`, `${id}.wav`),
      meta.audio && meta.audio.opus_copy ? dl("Ogg/Opus", `${base}/audio?format=opus`, `${id}.opus`) : h("span.muted", {}, "no Opus copy"),
      dl("Transcript", `${base}/transcript`, `${id}.jsonl`));
    const dlist = h("dl.meta", {}, [["Started", meta.started_at], ["Ended", meta.ended_at],
      ["Duration", duration(dur)], ["Caller", meta.caller || "—"], ["Profile", meta.agent],
      ["Transport", meta.transport], ["End reason", meta.end_reason], ["Model", meta.model],
      ["Retention", ret.status]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "")]));
    const lines = h("ol.transcript.aligned", { id: "rec-lines", "aria-label": "Transcript" });
    view.append(wave, player, h("div.row", {}, verify, del), verifyOut, exportRow, dlist,
      h("h3", {}, "Transcript"), lines);
    status(msg, "");
    try {
      const [{ data: peaks }, { data: tr }] = await Promise.all([
        api(`/recordings/${encodeURIComponent(id)}/peaks`),
        api(`/recordings/${encodeURIComponent(id)}/transcript?format=json`)]);
      const marks = tr.data.filter((l) => l.kind === "interruption" || l.kind === "tool_call" || l.kind === "tool_result");
      drawWave(canvas, peaks, marks, dur);
      for (const l of tr.data) {
        const btn = h("button.linkish", { type: "button", onclick: () => { player.currentTime = l.offset_ms / 1000; player.play(); } },
          duration(l.offset_ms / 1000));
        const li = h(`li.line.${l.kind}`, { dataset: { kind: l.kind } }, btn, h("span.who", {}, l.speaker || l.kind),
          h("span.text", {}, l.kind === "tool_call" ? `${l.name || l.tool || "tool"}(${l.arguments || l.text || ""})` : (l.text || "")),
          l.truncated ? h("span.tag", {}, "interrupted") : null);
        // Each line starts under the waveform where it was spoken (the list is as wide).
        li.style.marginLeft = `${Math.min(70, (l.offset_ms / 1000 / dur) * 100)}%`;
        lines.append(li);
      }
      window.consoleRecording = { peaks, lines: tr.data };
    } catch (e) { status(msg, e.message, true); }
  })();
}
