// The live feed: one EventSource (Server-Sent Events) for the whole page; views subscribe.
// Every event carries the server's time stamp `ts` (ms): the delay to the page is recorded
// in `delays` (bounded) for the browser test and shown in the calls view.
export class LiveFeed {
  constructor() {
    this.calls = [];
    this.lines = [];          // recent transcript lines, all calls (bounded)
    this.delays = [];         // ms from the server's stamp to arrival here (bounded)
    this.lineDelays = [];     // the same, transcript lines only
    this.listeners = new Set();
    this.connected = false;
    this.connect();
  }

  connect() {
    this.source = new EventSource("/console/api/feed");
    this.source.addEventListener("open", () => { this.connected = true; this.emit("status"); });
    this.source.addEventListener("error", () => { this.connected = false; this.emit("status"); });
    this.source.addEventListener("hello", (e) => {
      const d = JSON.parse(e.data);
      for (const line of d.lines) this.addLine(line, false);
      this.emit("lines");
    });
    this.source.addEventListener("calls", (e) => {
      const d = JSON.parse(e.data);
      this.delay(d.ts);
      this.calls = d.calls;
      this.emit("calls");
    });
    this.source.addEventListener("line", (e) => {
      const d = JSON.parse(e.data);
      this.delay(d.ts);
      this.lineDelays.push(Date.now() - d.ts);
      if (this.lineDelays.length > 1000) this.lineDelays.splice(0, 500);
      this.addLine(d, true);
    });
    for (const name of ["dropped", "expired"]) {
      this.source.addEventListener(name, () => {
        this.source.close();
        if (name === "expired") window.dispatchEvent(new CustomEvent("console:signed-out"));
        else setTimeout(() => this.connect(), 1000); // fell behind: start afresh
      });
    }
  }

  delay(ts) {
    this.delays.push(Date.now() - ts);
    if (this.delays.length > 2000) this.delays.splice(0, 1000);
  }

  addLine(line, notify) {
    if (this.lines.some((l) => l.ts === line.ts && l.call_id === line.call_id && l.text === line.text)) return;
    this.lines.push(line);
    if (this.lines.length > 500) this.lines.splice(0, 100);
    if (notify) this.emit("lines", line);
  }

  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  emit(kind, arg) { for (const fn of this.listeners) fn(kind, arg); }
  close() { this.source.close(); this.listeners.clear(); }
}
