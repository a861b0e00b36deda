// The streamrec page: one user's list, and the pipeline's health as charts.
// Plain script, no build step. Requests go to this service's own API; the read
// key travels in the cookie /ui?key= set (or no key in dev).
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2f6fde", "#e0702b", "#2a9d5c", "#9b4dca", "#c93b3b", "#7a8594"];

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || body.error || response.statusText);
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  row.appendChild(td);
  return td;
}

async function showUser(event) {
  event.preventDefault();
  const id = $("user-id").value.trim();
  const k = $("user-k").value || "20";
  const fallback = $("user-fallback").checked ? "&fallback=popular" : "";
  $("user-error").hidden = true;
  const table = $("user-items");
  const body = table.querySelector("tbody");
  try {
    const rec = await api(`/v1/users/${encodeURIComponent(id)}/recommendations?k=${k}${fallback}`);
    body.replaceChildren();
    const best = Math.max(...rec.items.map((i) => i.score), 1e-9);
    rec.items.forEach((item, n) => {
      const row = document.createElement("tr");
      row.className = "rec-item";
      row.dataset.itemId = item.item_id;
      cell(row, String(n + 1));
      const name = document.createElement("div");
      name.innerHTML = `<b></b><div style="color:#7a8594;font-size:12px"></div>`;
      name.querySelector("b").textContent = item.title || item.item_id;
      name.querySelector("div").textContent = item.item_id;
      cell(row, name);
      const score = document.createElement("div");
      score.textContent = item.score.toFixed(3);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, (100 * item.score) / best)}px`;
      score.appendChild(bar);
      cell(row, score);
      cell(row, item.reason || rec.source);
      const feats = document.createElement("div");
      for (const [name, share] of Object.entries(item.features || {})) {
        const f = document.createElement("span");
        f.className = "feat";
        f.textContent = `${name} ${(100 * share).toFixed(0)}%`;
        feats.appendChild(f);
      }
      cell(row, feats);
      cell(row, item.category || "");
      cell(row, item.price != null ? item.price.toFixed(2) : "");
      body.appendChild(row);
    });
    table.hidden = false;
    $("user-meta").textContent = rec.source === "popular"
      ? "No list for this user yet: the most popular items."
      : `List made ${(rec.age_ms / 1000).toFixed(1)} s ago after a ${rec.event_type} event; ` +
        `variant ${rec.variant}, model ${rec.model_version}` +
        (rec.encoder_version ? `, encoder ${rec.encoder_version}` : "") +
        ((rec.flags || []).length ? `; flags: ${rec.flags.join(", ")}` : "");
  } catch (err) {
    table.hidden = true;
    $("user-meta").textContent = "";
    $("user-error").textContent = err.message;
    $("user-error").hidden = false;
  }
}

// A line chart of {name: [[t, y], ...]} on a canvas; y from 0, time on x.
function lineChart(canvasId, series, format) {
  const canvas = $(canvasId);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, B = 20, T = 8;
  ctx.clearRect(0, 0, W, H);
  const all = Object.values(series).flat().filter((p) => p[1] != null);
  canvas.dataset.points = String(all.length);
  const legend = $(canvasId.replace("chart-", "legend-"));
  legend.replaceChildren();
  if (!all.length) {
    ctx.fillStyle = "#7a8594";
    ctx.fillText("no data in the metrics windows yet", L, H / 2);
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const ymax = Math.max(...all.map((p) => p[1])) * 1.1 || 1;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 8);
  const y = (v) => H - B - (v / ymax) * (H - B - T);
  ctx.strokeStyle = "#e5e8ec"; ctx.fillStyle = "#7a8594"; ctx.font = "11px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - 8, y(v)); ctx.stroke();
    ctx.fillText(format(v), 2, y(v) + 4);
  }
  ctx.fillText(new Date(t0).toLocaleTimeString(), L, H - 4);
  ctx.fillText(new Date(t1).toLocaleTimeString(), W - 70, H - 4);
  Object.entries(series).forEach(([name, points], i) => {
    const pts = points.filter((p) => p[1] != null);
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.fillStyle = ctx.strokeStyle; ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, j) => (j ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    if (pts.length === 1) ctx.fillRect(x(pts[0][0]) - 2, y(pts[0][1]) - 2, 4, 4);
    const label = document.createElement("span");
    label.style.color = ctx.strokeStyle;
    label.textContent = `■ ${name}`;
    legend.appendChild(label);
  });
}

async function refreshHealth() {
  if ($("view-health").hidden) return;
  try {
    const h = await api("/v1/health");
    const s = h.series;
    const pick = (key) => s.map((p) => [p.t, p[key]]);
    lineChart("chart-throughput", { "events/s": pick("events_per_s") }, (v) => v.toFixed(0));
    lineChart("chart-latency", { p50: pick("latency_p50_ms"), p95: pick("latency_p95_ms"),
                                 p99: pick("latency_p99_ms") }, (v) => v.toFixed(0));
    const variants = {};
    s.forEach((p) => Object.entries(p.hit_rate).forEach(([v, r]) => {
      (variants[v] = variants[v] || []).push([p.t, r]);
    }));
    lineChart("chart-quality", variants, (v) => v.toFixed(2));
    lineChart("chart-dlq", { "DLQ share": pick("dlq_share") }, (v) => `${(100 * v).toFixed(1)}%`);
    const now = h.now;
    $("health-meta").textContent = `${s.length} windows in the last ${h.since_s / 60} min; now: ` +
      `${now.events_per_s ?? "-"} events/s, p99 ${now.latency_p99_ms ?? "-"} ms, ` +
      `${now.workers} process(es)`;
    const drift = Object.values(h.drift);
    $("drift-flags").replaceChildren(...(drift.length ? drift.map((d) => {
      const f = document.createElement("span");
      f.className = `flag ${d.drift ? "drift" : "ok"}`;
      f.textContent = `${d.name}: ${d.drift ? "DRIFT" : "ok"}`;
      return f;
    }) : [document.createTextNode("none reported")]));
    const firing = h.alerts_firing;
    $("alerts").textContent = firing.length
      ? firing.map((a) => `${a.severity}: ${a.message}`).join("; ") : "none";
  } catch (err) {
    $("health-meta").textContent = `cannot read the health view: ${err.message}`;
  }
}

function tab(name) {
  for (const view of ["user", "health"]) {
    $(`view-${view}`).hidden = view !== name;
    $(`tab-${view}`).classList.toggle("on", view === name);
  }
  refreshHealth();
}

$("user-form").addEventListener("submit", showUser);
$("tab-user").addEventListener("click", () => tab("user"));
$("tab-health").addEventListener("click", () => tab("health"));
setInterval(refreshHealth, 5000);
