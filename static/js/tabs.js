// Tabs any page can use (WAI-ARIA: arrows, Home and End move; the focused tab is shown).
import { h } from "./api.js";

export function tabs(label, defs, panels, initial, onSelect) {
  const buttons = defs.map(([id, text]) => h("button", {
    type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`, class: "tab",
    onclick: () => select(id),
  }, text));
  let current = null;
  function select(id, focus = false) {
    if (current === id) return;
    const previous = current;
    current = id;
    defs.forEach(([key], i) => {
      const on = key === id;
      buttons[i].setAttribute("aria-selected", String(on));
      buttons[i].tabIndex = on ? 0 : -1;
      panels[key].el.hidden = !on;
      if (focus && on) buttons[i].focus();
    });
    if (previous && panels[previous].hide) panels[previous].hide();
    if (panels[id].show) panels[id].show();
    onSelect(id);
  }
  const list = h("div", { role: "tablist", "aria-label": label, class: "tabs", onkeydown: (ev) => {
    const i = defs.findIndex(([key]) => key === current);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: defs.length - 1 }[ev.key];
    if (next === undefined) return;
    ev.preventDefault();
    select(defs[(next + defs.length) % defs.length][0], true);
  } }, buttons);
  for (const [id] of defs) {
    const el = panels[id].el;
    el.id = `panel-${id}`;
    el.setAttribute("role", "tabpanel");
    el.setAttribute("aria-labelledby", `tab-${id}`);
    el.hidden = true;
  }
  queueMicrotask(() => select(defs.some(([key]) => key === initial) ? initial : defs[0][0]));
  return list;
}
