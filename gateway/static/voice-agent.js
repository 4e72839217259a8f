// voice-agent.js: a browser client for the gateway (or OpenAI itself), no build step.
// Shape of the usual tutorial's VoiceAgent: connect(), disconnect(), event callbacks.
//
//   import { VoiceAgent } from "/static/voice-agent.js";
//   const agent = new VoiceAgent({ tokenUrl: "/api/session", onTranscript: console.log });
//   await agent.connect();

const GA = {
  callerDelta: "conversation.item.input_audio_transcription.delta",
  callerDone: "conversation.item.input_audio_transcription.completed",
  agentDelta: "response.output_audio_transcript.delta",
  agentDone: "response.output_audio_transcript.done",
};
const BETA = {
  ...GA,
  agentDelta: "response.audio_transcript.delta",
  agentDone: "response.audio_transcript.done",
};

export class VoiceAgent {
  constructor(options = {}) {
    this.baseUrl = options.baseUrl ?? "";
    this.tokenUrl = options.tokenUrl ?? "/api/session";
    this.profile = options.profile ?? null;
    this.dialect = options.dialect ?? "ga";
    // STUN/TURN servers: from options, else from the token response's `ice_servers`.
    this.iceServers = options.iceServers ?? null;
    this.audioElement = options.audioElement ?? null;
    this.on = {
      status: options.onStatus ?? (() => {}),
      transcript: options.onTranscript ?? (() => {}),
      event: options.onEvent ?? (() => {}),
      error: options.onError ?? (() => {}),
      level: options.onLevel ?? (() => {}),
      microphone: options.onMicrophone ?? (() => {}),
    };
    this.names = this.dialect === "beta" ? BETA : GA;
    this.pc = null;
    this.channel = null;
    this.stream = null;
    this.status = "idle";
    this.callId = null;
    this._levelTimer = null;
    this._agentText = new Map();
  }

  _setStatus(s) {
    if (s !== this.status) {
      this.status = s;
      this.on.status(s);
    }
  }

  async _token() {
    const res = await fetch(this.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ profile: this.profile, dialect: this.dialect }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body?.error?.message ?? `token request failed (${res.status})`);
    // The gateway's extension field (docs/networking.md): ICE servers, TURN credentials included.
    if (Array.isArray(body.ice_servers)) this._tokenIceServers = body.ice_servers;
    return body.value ?? body.client_secret?.value;
  }

  async connect() {
    this._setStatus("connecting");
    this._closing = false;
    try {
      const token = await this._token();
      this.stream = this.stream ?? (await navigator.mediaDevices.getUserMedia({ audio: true }));
      this._meter(this.stream);
      const url = this.dialect === "beta"
        ? `${this.baseUrl}/v1/realtime?model=gpt-4o-realtime-preview&gateway_events=true`
        : `${this.baseUrl}/v1/realtime/calls?gateway_events=true`;
      await this._openPeer(url, token);
    } catch (err) {
      this._fail(err);
      throw err;
    }
  }

  // One peer connection: mic out, agent audio in, the oai-events channel. A reconnect is a
  // new peer (WebRTC has no ICE restart on the gateway side) that rejoins the same call.
  async _openPeer(url, bearer) {
    const iceServers = this.iceServers ?? this._tokenIceServers;
    const pc = (this.pc = new RTCPeerConnection(iceServers ? { iceServers } : undefined));
    pc.ontrack = (e) => {
      const el = this.audioElement ?? (this.audioElement = new Audio());
      el.autoplay = true;
      el.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      const state = pc.connectionState;
      if (state === "connected") {
        clearTimeout(this._dropTimer);
        this._setStatus("listening");
      } else if (state === "failed") {
        this._dropped();
      } else if (state === "disconnected") {
        // Often transient: give it two seconds before treating it as a drop.
        clearTimeout(this._dropTimer);
        this._dropTimer = setTimeout(() => this._dropped(), 2000);
      }
    };
    for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
    const channel = (this.channel = pc.createDataChannel("oai-events"));
    channel.onmessage = (m) => this._onEvent(JSON.parse(m.data));
    await pc.setLocalDescription(await pc.createOffer());
    const res = await fetch(url, {
      method: "POST",
      body: pc.localDescription.sdp,
      headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/sdp" },
    });
    const text = await res.text();
    if (!res.ok) {
      const err = new Error(JSON.parse(text)?.error?.message ?? `call failed (${res.status})`);
      err.status = res.status;
      throw err;
    }
    this.callId = (res.headers.get("Location") ?? "").split("/").pop() || null;
    await pc.setRemoteDescription({ type: "answer", sdp: text });
  }

  _dropped() {
    if (this._closing || this.status === "reconnecting") return;
    if (!this.resumeToken) return this._fail(new Error("connection lost"));
    this._reconnect();
  }

  // Exponential backoff with jitter, capped, within the gateway's grace period (30 s by
  // default). The resume token rotates on every successful rejoin.
  async _reconnect() {
    this._setStatus("reconnecting");
    const started = Date.now();
    const graceMs = this.resumeGraceMs ?? 30000;
    for (let attempt = 0; !this._closing && Date.now() - started < graceMs; attempt++) {
      const delay = Math.min(4000, 250 * 2 ** attempt) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, delay));
      try {
        this.pc?.close();
        await this._openPeer(`${this.baseUrl}/v1/realtime/calls?gateway_events=true`, this.resumeToken);
        return;
      } catch (err) {
        if (err.status === 404 || err.status === 401) break; // the call is gone
      }
    }
    if (!this._closing) this._fail(new Error("could not reconnect to the call"));
  }

  send(event) {
    if (this.channel?.readyState === "open") this.channel.send(JSON.stringify(event));
  }

  _onEvent(ev) {
    this.on.event(ev);
    const n = this.names;
    switch (ev.type) {
      case "input_audio_buffer.speech_started":
        this._setStatus("caller_speaking");
        break;
      case "input_audio_buffer.speech_stopped":
        this._setStatus("listening");
        break;
      case "output_audio_buffer.started":
        this._setStatus("agent_speaking");
        break;
      case "output_audio_buffer.stopped":
      case "output_audio_buffer.cleared":
        this._setStatus("listening");
        break;
      case n.callerDone:
        this.on.transcript({ speaker: "caller", text: ev.transcript, final: true, itemId: ev.item_id });
        break;
      case n.agentDelta: {
        const text = (this._agentText.get(ev.item_id) ?? "") + ev.delta;
        this._agentText.set(ev.item_id, text);
        this.on.transcript({ speaker: "agent", text, final: false, itemId: ev.item_id });
        break;
      }
      case n.agentDone:
        this._agentText.delete(ev.item_id);
        this.on.transcript({ speaker: "agent", text: ev.transcript, final: true, itemId: ev.item_id });
        break;
      case "gateway.call.created":
      case "gateway.call.resumed":
        this.resumeToken = ev.resume_token;
        break;
      case "gateway.microphone.silent":
      case "gateway.microphone.active":
        this.on.microphone({ silent: ev.type.endsWith("silent"), reason: ev.reason ?? null });
        break;
      case "error":
        this.on.error(new Error(ev.error?.message ?? "error"));
        break;
    }
  }

  _meter(stream) {
    try {
      const ctx = new AudioContext();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      ctx.createMediaStreamSource(stream).connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      this._levelTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (const v of buf) sum += v * v;
        const rms = Math.sqrt(sum / buf.length);
        this.on.level(rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100);
      }, 100);
      this._audioContext = ctx;
    } catch {
      /* metering is optional */
    }
  }

  _fail(err) {
    this.on.error(err);
    this.disconnect();
  }

  disconnect() {
    this._closing = true;
    clearTimeout(this._dropTimer);
    clearInterval(this._levelTimer);
    this._levelTimer = null;
    this.channel?.close();
    this.pc?.close();
    this.stream?.getTracks().forEach((t) => t.stop());
    this._audioContext?.close();
    this.pc = this.channel = this.stream = null;
    this._setStatus("disconnected");
  }
}
