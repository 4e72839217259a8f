// This instance's capacity from the gateway's own metrics, refreshed every 2 s while shown.
import { api, h, clear, status } from "./lib.js";

export function renderCapacity(view) {
  const dl = h("dl.meta", { id: "capacity" });
  const msg = h("p.status", { role: "status" });
  const link = h("p");
  view.append(h("h2", {}, "Capacity (this instance)"), dl, link, msg);
  const load = async () => {
    try {
      const { data: c } = await api("/capacity");
      clear(dl);
      const rows = [["Instance", c.instance], ["Calls", `${c.calls} of ${c.max_calls}`],
        ["CPU (cores)", c.cpu_cores], ["CPU per call (cores)", c.cpu_per_call ?? "—"],
        ["Event-loop lag, mean", c.loop_lag_mean_ms === null ? "—" : `${c.loop_lag_mean_ms} ms`],
        ["Event-loop lag, p95 (bucket)", c.loop_lag_p95_ms === null ? "—" : `≤ ${c.loop_lag_p95_ms} ms`],
        ...Object.entries(c.errors_per_min).map(([k, v]) => [`Errors/min: ${k}`, v]),
        ["Measured over", `${c.interval_s} s`]];
      for (const [k, v] of rows) dl.append(h("dt", {}, k), h("dd", {}, String(v)));
      clear(link);
      if (c.grafana_url && /^https?:\/\//.test(c.grafana_url)) link.append(h("a", { href: c.grafana_url, rel: "noopener noreferrer", target: "_blank", id: "grafana" }, "Open the Grafana dashboard"));
      status(msg, "");
    } catch (e) { status(msg, e.message, true); }
  };
  load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}
