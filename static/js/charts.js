// Charts for the console: the vendored uPlot (loaded once, on the first page that draws a chart) and a rolling
// time-series chart that keeps the last `windowS` seconds, resizes with its box, and adds a series the moment a
// new label appears (e.g. a new no-bid reason).
//
//   const chart = await rollingChart(box, { title: "Bids per second", series: ["bids", "wins"], unit: "/s" });
//   chart.push(Date.now() / 1000, { bids: 19.8, wins: 6.9 });
//   chart.destroy();

const PALETTE = ["#5cc8ff", "#4cc764", "#ff7b72", "#e3b341", "#d2a8ff", "#ffa657", "#79c0ff", "#f778ba",
                 "#56d364", "#a5d6ff"];
let loading = null;

/** The uPlot constructor, loading static/vendor/uplot (script and stylesheet) the first time. */
export function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (loading) return loading;
  if (!document.querySelector('link[data-vendor="uplot"]')) {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/vendor/uplot/uPlot.min.css";
    css.dataset.vendor = "uplot";
    document.head.append(css);
  }
  loading = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/vendor/uplot/uPlot.iife.min.js";
    script.dataset.vendor = "uplot";
    script.onload = () => resolve(window.uPlot);
    script.onerror = () => { loading = null; script.remove(); reject(new Error("The chart library could not be loaded.")); };
    document.head.append(script);
  });
  return loading;
}

const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" :
  Math.abs(v) >= 100 ? Math.round(v).toString() : Number(v.toFixed(digits)).toString());

/**
 * A rolling line chart in `box` (an element; the chart fills its width).
 * options: title (the accessible name), series (initial labels), windowS (seconds kept, default 60),
 * height (px, default 200), unit (appended to values in the legend and the text alternative), digits,
 * colors ({label: css color}).
 * Returns {push(t, values), points(), latest(), destroy()}; `values` maps label -> number (missing = 0 for a
 * series that already exists, e.g. a reason with no no-bids this second).
 */
export async function rollingChart(box, { title = "", series = [], windowS = 60, height = 200, unit = "",
                                          digits = 1, colors = {} } = {}) {
  const uPlot = await loadUplot();
  const labels = [...series];
  let xs = [];
  let ys = labels.map(() => []);
  let plot = null;
  let hovering = false;
  let width = Math.max(200, box.clientWidth || 300);
  box.classList.add("chart");
  box.setAttribute("role", "img");
  box.dataset.points = "0";

  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue("--muted").trim() || "#9fb0bf";
  const grid = css.getPropertyValue("--line").trim() || "#243140";
  const colorOf = (label, i) => colors[label] || PALETTE[i % PALETTE.length];

  const build = () => {
    if (plot) plot.destroy();
    plot = new uPlot({
      width, height,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      // The x axis always spans the window, however few points there are yet (one point alone spans years).
      scales: { x: { time: true, range: (u, min, max) => [(Number(max) || Date.now() / 1000) - windowS, Number(max) || Date.now() / 1000] }, y: { range: (u, min, max) => [0, Math.max(1, (Number(max) || 0) * 1.1)] } },
      axes: [
        { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
        { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 48,
          values: (u, splits) => splits.map((v) => fmt(v, digits)) },
      ],
      series: [{ label: "time", value: (u, v) => (v === null || v === undefined ? "–" : new Date(v * 1000).toLocaleTimeString()) },
        ...labels.map((label, i) => ({
        label, stroke: colorOf(label, i), width: 2, points: { show: false },
        value: (u, v) => (v === null || v === undefined ? "–" : `${fmt(v, digits)}${unit}`),
      }))],
    }, [xs, ...ys], box);
    plot.over.addEventListener("mouseenter", () => { hovering = true; });
    plot.over.addEventListener("mouseleave", () => { hovering = false; showLatest(); });
    showLatest();
  };
  // The legend shows the newest values unless the pointer is on the chart.
  const showLatest = () => { if (plot && !hovering && xs.length) plot.setLegend({ idx: xs.length - 1 }); };

  const describe = () => {
    const last = xs.length - 1;
    const now = last < 0 ? "no data yet" :
      labels.map((l, i) => `${l} ${fmt(ys[i][last], digits)}${unit}`).join(", ");
    box.setAttribute("aria-label", `${title}: ${now}`);
  };

  let frame = 0;
  const resize = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => { // outside the observer's callback: no resize loop
      const w = Math.max(200, Math.floor(box.clientWidth));
      if (plot && Math.abs(w - width) > 2) { width = w; plot.setSize({ width, height }); }
    });
  });
  resize.observe(box);
  build();
  describe();

  return {
    push(t, values) {
      let grown = false;
      for (const key of Object.keys(values)) {
        if (!labels.includes(key)) {
          labels.push(key);
          ys.push(xs.map(() => null));
          grown = true;
        }
      }
      xs.push(t);
      labels.forEach((l, i) => ys[i].push(values[l] ?? 0));
      const cut = xs.findIndex((x) => x >= t - windowS);
      if (cut > 0) { xs = xs.slice(cut); ys = ys.map((y) => y.slice(cut)); }
      if (grown) build(); else { plot.setData([xs, ...ys]); showLatest(); }
      box.dataset.points = String(xs.length);
      describe();
    },
    points: () => xs.length,
    latest: () => Object.fromEntries(labels.map((l, i) => [l, ys[i][ys[i].length - 1]])),
    destroy() { resize.disconnect(); cancelAnimationFrame(frame); if (plot) plot.destroy(); plot = null; },
  };
}
