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
    try {
      const token = await this._token();
      this.stream = this.stream ?? (await navigator.mediaDevices.getUserMedia({ audio: true }));
      this._meter(this.stream);
      const iceServers = this.iceServers ?? this._tokenIceServers;
      const pc = (this.pc = new RTCPeerConnection(iceServers ? { iceServers } : undefined));
      pc.ontrack = (e) => {
        const el = this.audioElement ?? (this.audioElement = new Audio());
        el.autoplay = true;
        el.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed") this._fail(new Error("connection failed"));
        if (pc.connectionState === "connected") this._setStatus("listening");
      };
      for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
      const channel = (this.channel = pc.createDataChannel("oai-events"));
      channel.onmessage = (m) => this._onEvent(JSON.parse(m.data));
      await pc.setLocalDescription(await pc.createOffer());
      const url = this.dialect === "beta"
        ? `${this.baseUrl}/v1/realtime?model=gpt-4o-realtime-preview`
        : `${this.baseUrl}/v1/realtime/calls`;
      const res = await fetch(url, {
        method: "POST",
        body: pc.localDescription.sdp,
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
      });
      const text = await res.text();
      if (!res.ok) throw new Error(JSON.parse(text)?.error?.message ?? `call failed (${res.status})`);
      this.callId = (res.headers.get("Location") ?? "").split("/").pop() || null;
      await pc.setRemoteDescription({ type: "answer", sdp: text });
    } catch (err) {
      this._fail(err);
      throw err;
    }
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
