// Contrail dashboard: health, sign-in and the live event stream. No framework, no CDN.
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("contrail.token");
let socket = null;
let received = 0;

async function refreshHealth() {
  try {
    const resp = await fetch("/health/ready");
    const body = await resp.json();
    $("#health").textContent = body.state;
    $("#health").className = body.ready ? "ok" : "bad";
    const rows = Object.entries(body.checks).map(([k, v]) => `<tr><td>${k}</td><td class="${v ? "ok" : "bad"}">${v ? "ok" : "failing"}</td></tr>`);
    rows.push(...Object.entries(body.tasks).map(([k, v]) => `<tr><td>task ${k}</td><td>${v}</td></tr>`));
    $("#checks").innerHTML = rows.join("");
  } catch {
    $("#health").textContent = "unreachable";
    $("#health").className = "bad";
  }
}

function connect() {
  if (!token) return;
  if (socket) socket.close();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}/v1/stream/events?token=${encodeURIComponent(token)}`);
  socket.onopen = () => {
    $("#ws-state").textContent = "connected";
    const types = $("#filter").value.split(",").map((s) => s.trim()).filter(Boolean);
    socket.send(JSON.stringify({ type: "subscribe", events: types.length ? types : ["*"] }));
  };
  socket.onclose = (ev) => { $("#ws-state").textContent = `closed (${ev.code})`; };
  socket.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (["subscribed", "pong", "error"].includes(msg.type)) return;
    received += 1;
    const line = document.createElement("div");
    const at = new Date(msg.at * 1000).toISOString().slice(11, 23);
    line.textContent = `${at}  ${msg.type}  ${JSON.stringify(msg.data)}`;
    const box = $("#events");
    box.prepend(line);
    while (box.childElementCount > 300) box.lastElementChild.remove();
  };
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const resp = await fetch("/v1/auth/token", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: form.get("email"), password: form.get("password") }),
  });
  const body = await resp.json();
  if (!resp.ok) { $("#who").textContent = body.error.message; $("#who").className = "bad"; return; }
  token = body.access_token;
  sessionStorage.setItem("contrail.token", token);
  $("#who").textContent = `Signed in as ${body.role} ${body.subject}`;
  $("#who").className = "ok";
  connect();
});
$("#filter").addEventListener("change", connect);
setInterval(() => { $("#rate").textContent = `${received} events/s`; received = 0; }, 1000);
setInterval(refreshHealth, 3000);
refreshHealth();
connect();
