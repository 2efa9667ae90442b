// The server's readiness checks and background tasks, refreshed every two seconds; "unreachable" when it is away.
import { every, h } from "../api.js";

export function render(root) {
  const state = h("p", { role: "status", "aria-live": "polite" }, "checking…");
  const checks = h("tbody");
  root.append(h("section", { class: "card" }, h("h1", {}, "Health"), state,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Check"), h("th", {}, "State"))), checks)));
  return every(2000, async () => {
    try {
      const resp = await fetch("/health/ready", { cache: "no-store" });
      const body = await resp.json();
      state.textContent = body.ready ? "Ready: serving traffic" : `Not ready: ${body.state}`;
      state.className = body.ready ? "ok" : "bad";
      checks.replaceChildren(
        ...Object.entries(body.checks).map(([k, v]) => h("tr", {}, h("td", {}, k),
          h("td", { class: v ? "ok" : "bad" }, v ? "ok" : "failing"))),
        ...Object.entries(body.tasks).map(([k, v]) => h("tr", {}, h("td", {}, `task ${k}`),
          // a task that ran once and is done (warm_up) finished as it should
          h("td", { class: v === "running" || v === "finished" ? "ok" : "bad" }, v))));
    } catch {
      state.textContent = "Unreachable: the server is not answering (the last known state is not shown)";
      state.className = "bad";
      checks.replaceChildren();
    }
  });
}
