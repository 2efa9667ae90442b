// The one client every page uses: the session, JSON calls with readable errors, and live streams that reconnect.

const TOKEN = "contrail.session";

/** The signed-in session ({token, role, subject, email, expires_at}), or null for a guest who has not shopped yet. */
export function session() {
  try {
    const s = JSON.parse(localStorage.getItem(TOKEN) || "null");
    if (s && s.expires_at && s.expires_at * 1000 < Date.now()) { localStorage.removeItem(TOKEN); return null; }
    return s;
  } catch { return null; }
}

export function saveSession(s) {
  if (s) localStorage.setItem(TOKEN, JSON.stringify(s)); else localStorage.removeItem(TOKEN);
  window.dispatchEvent(new CustomEvent("contrail:session"));
}

/** An error from the API, with the server's own message (never raw JSON). */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

async function readError(resp, signedIn = true) {
  let code = "http_" + resp.status, message = `${resp.status} ${resp.statusText || "error"}`, details = null;
  try {
    const body = await resp.json();
    if (body && body.error) ({ code, message, details } = body.error);
  } catch { /* a body that is not the envelope: keep the status line */ }
  if (resp.status === 401 && signedIn) message = `${message} (sign in again)`;
  return new ApiError(resp.status, code, message, details);
}

/** A guest token, made once, so anyone can shop without an account. */
export async function ensureGuest() {
  if (session()) return session();
  const resp = await fetch("/v1/auth/guest", { method: "POST" });
  if (!resp.ok) throw await readError(resp);
  const body = await resp.json();
  saveSession({ token: body.access_token, role: "guest", subject: body.subject, email: null,
                expires_at: Date.now() / 1000 + (body.expires_in || 3600) });
  return session();
}

/**
 * Call the API: api("GET", "/v1/orders"), api("POST", path, body). Sends the session's token; answers the decoded
 * JSON (or null for 204); throws ApiError with the server's message.
 */
export async function api(method, path, body, { headers = {}, raw = false } = {}) {
  const s = session();
  const h = { ...headers };
  if (s) h.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "unreachable", "The server cannot be reached; retrying when it is back.");
  }
  // "Sign in again" helps when a session's token expired, not when the sign-in itself was refused.
  if (!resp.ok) throw await readError(resp, Boolean(s) && !path.startsWith("/v1/auth/"));
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/**
 * A websocket stream that reconnects with backoff (0.5 s doubling to 15 s) until closed.
 * onMessage gets each decoded message; onState gets "connecting" | "open" | "closed: <why>".
 * `hello` is sent after every (re)connection (e.g. a subscribe message).
 */
export function stream(path, { onMessage, onState = () => {}, hello = null } = {}) {
  let socket = null, stopped = false, delay = 500, timer = null;
  const connect = () => {
    if (stopped) return;
    const s = session();
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const sep = path.includes("?") ? "&" : "?";
    const url = `${proto}://${location.host}${path}${s ? `${sep}token=${encodeURIComponent(s.token)}` : ""}`;
    onState("connecting");
    socket = new WebSocket(url);
    socket.onopen = () => {
      delay = 500;
      onState("open");
      if (hello) socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      onMessage && onMessage(msg);
    };
    socket.onclose = (ev) => {
      if (stopped) return;
      onState(`closed: ${ev.code === 1006 ? "connection lost" : ev.reason || ev.code}; retrying`);
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
    socket.onerror = () => { /* onclose follows and retries */ };
  };
  connect();
  return {
    send(msg) { if (socket && socket.readyState === 1) socket.send(JSON.stringify(msg)); },
    close() { stopped = true; clearTimeout(timer); if (socket) socket.close(); },
  };
}

/** Poll fn every `ms` while the page is shown; returns a stop function. */
export function every(ms, fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch { /* the health banner says when the server is away */ }
    if (!stopped) setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; };
}

// ---- small DOM helpers shared by the pages ----
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export const money = (cents, currency = "EUR") =>
  new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
export const micros = (m, currency = "USD") =>
  new Intl.NumberFormat(undefined, { style: "currency", currency, maximumFractionDigits: 2 }).format(m / 1e6);
export const when = (epochSeconds) => new Date(epochSeconds * 1000).toLocaleString();
export const time = (epochSeconds) => new Date(epochSeconds * 1000).toLocaleTimeString();

/** Show an error (or any message) where the user is looking: `box` is an element with role=alert. */
export function showError(box, err) {
  box.hidden = false;
  box.textContent = err instanceof Error ? err.message : String(err);
}

/** Parse Prometheus text into {name: [{labels, value}]}. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const [, k, v] of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    (out[m[1]] ||= []).push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** A page's own stylesheet (static/css/<name>.css), added once. */
export function useStyle(name) {
  if (document.querySelector(`link[data-page-style="${name}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href: `/css/${name}.css`, "data-page-style": name }));
}
