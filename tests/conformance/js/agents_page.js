// OpenAI's browser voice-agent SDK as an app would use it: an agent with instructions and a
// client-side function tool, a WebRTC session whose base URL is the gateway. Bundled by
// esbuild (`npm run bundle`) into dist/agents_page.js; tests/conformance/test_agents_sdk.py
// loads it into a page and reads back what the page saw.
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';

window.transportEvents = [];
window.toolRuns = [];
window.sessionErrors = [];

window.startAgent = async ({ callsUrl, ek, instructions, confirmation }) => {
  const scheduleAppointment = tool({
    name: 'schedule_appointment',
    description: "Book an appointment in the app's own calendar.",
    parameters: z.object({ date: z.string(), time: z.string() }),
    execute: async ({ date, time }) => {
      window.toolRuns.push({ date, time });
      return JSON.stringify({ status: 'booked', date, time, confirmation });
    },
  });
  const agent = new RealtimeAgent({
    name: 'Front desk', instructions, tools: [scheduleAppointment],
  });
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: callsUrl });
  const session = new RealtimeSession(agent, { transport, model: 'gpt-realtime' });
  session.on('transport_event', (event) => window.transportEvents.push(event));
  session.on('error', (e) => {
    const err = e && e.error;
    window.sessionErrors.push(err && err.message ? err.message : JSON.stringify(err ?? e));
  });
  await session.connect({ apiKey: ek });
  window.agentSession = session;
  return transport.callId ?? 'connected';
};
