// The autofocus daemon's page: Now, History, Focus maps, Act. Plain JavaScript, no library.
// Everything comes from the /v1 API of the same origin. With an API token set the page asks
// for it once and keeps it in sessionStorage (this tab only), sending it as an Authorization
// header; the live curve reads the events stream with fetch() so that header goes along
// (EventSource cannot send it). Nothing changes on the microscope unless the user acts.
"use strict";

const TOKEN_KEY = "autofocus.token";
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
const $ = (id) => document.getElementById(id);
const state = { view: null, watching: null, watchAbort: null, points: [], job: null,
  status: null, scope: null, pollTimer: null, mapId: null, mapGrid: null, map: null,
  mapClick: null, shownJob: null };

// ---------- HTTP ----------
class Unauthorized extends Error {}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function api(path, opts) {
  opts = opts || {};
  const init = { method: opts.method || "GET", headers: headers(opts.headers),
    cache: "no-store", credentials: "omit" };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  if (r.status === 401) { askToken(token() ? "the token was not accepted" : ""); throw new Unauthorized(); }
  let body = null;
  const ct = r.headers.get("content-type") || "";
  if (ct.includes("json")) body = await r.json();
  if (!r.ok) {
    const err = new Error((body && (body.detail || body.title)) || ("HTTP " + r.status));
    err.status = r.status; err.body = body;
    throw err;
  }
  return body;
}

function askToken(message) {
  const asking = state.needToken;
  state.needToken = true;
  sessionStorage.removeItem(TOKEN_KEY);
  stopWatching();
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "token-view";
  $("token-error").textContent = message || "";
  if (!asking) $("token-input").focus();
}

// Server-sent events over fetch: yields {id, event, data} objects until the stream ends.
async function* sse(path, signal, lastId) {
  const h = headers({ Accept: "text/event-stream" });
  if (lastId) h["Last-Event-ID"] = String(lastId);
  const r = await fetch(path, { headers: h, signal, cache: "no-store", credentials: "omit" });
  if (r.status === 401) { askToken("the token was not accepted"); throw new Unauthorized(); }
  if (!r.ok || !r.body) throw new Error("event stream: HTTP " + r.status);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
      const ev = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const k = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (k === "data") ev.data += (ev.data ? "\n" : "") + v;
        else if (k === "event") ev.event = v;
        else if (k === "id") ev.id = v;
      }
      if (ev.data) yield ev;
    }
  }
}

// ---------- formatting ----------
const fmt = (x, d) => (x === null || x === undefined || !isFinite(x)) ? "–" : Number(x).toFixed(d === undefined ? 2 : d);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
}
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v, cls] of pairs) {
    dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, v));
  }
}
function outcomeClass(s) { return s === "succeeded" ? "ok" : (s === "failed" || s === "interrupted") ? "bad" : s === "cancelled" ? "warn" : ""; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

// ---------- the focus curve ----------
// Candidate planes a failed (or doubtful) job saw, as z positions (µm).
function candidatePlanes(result) {
  const d = (result && result.details) || {};
  for (const key of ["candidates", "rivals", "peaks"]) {
    if (Array.isArray(d[key]) && d[key].length) return d[key].map((p) => p.z_um).filter(isFinite);
  }
  if (Array.isArray(d.candidates_um)) return d.candidates_um.filter(isFinite);
  return [];
}

// Draw measured (z, score) points; opts: fit {curve: {z_um[], score[]}}, bestZ, startZ,
// candidates (z list), small (a sparkline), live (the newest point highlighted). A full-size
// curve with a chosen plane gets a zoom panel on the right around it, where the refinement
// points sit, numbered in the order they were measured.
function drawCurve(canvas, points, opts) {
  opts = opts || {};
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const small = !!opts.small;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const good = points.map((p, i) => Object.assign({ order: i + 1 }, p))
    .filter((p) => isFinite(p.z_um) && p.score !== null && isFinite(p.score));
  canvas.dataset.points = String(good.length);
  const fit = opts.fit && opts.fit.curve && Array.isArray(opts.fit.curve.z_um) ? opts.fit.curve : null;
  const isNum = (z) => z !== null && z !== undefined && isFinite(z);
  const marks = [opts.bestZ, opts.startZ, ...(opts.candidates || [])].filter(isNum);
  if (!good.length) {
    if (!small) { ctx.fillStyle = "#6b7785"; ctx.font = "14px system-ui"; ctx.fillText(opts.empty || "no measurements yet", W / 2 - 70, H / 2); }
    return;
  }
  const zs = good.map((p) => p.z_um).concat(marks);
  let zlo = Math.min(...zs), zhi = Math.max(...zs);
  if (zhi - zlo < 1e-9) { zlo -= 1; zhi += 1; }
  const pad = 0.03 * (zhi - zlo); zlo -= pad; zhi += pad;
  let slo = Math.min(0, ...good.map((p) => p.score)), shi = Math.max(...good.map((p) => p.score));
  if (fit) for (const s of fit.score) if (isFinite(s)) shi = Math.max(shi, s);
  if (shi - slo < 1e-12) shi = slo + 1;
  shi += 0.06 * (shi - slo);
  if (small) { drawPanel(ctx, { x: 4, y: 4, w: W - 8, h: H - 8 }, zlo, zhi, slo, shi, good, fit, opts, false); return; }
  // The zoom: centred on the chosen z, else the fitted peak, else the sharpest point.
  const best = good.reduce((a, b) => (b.score > a.score ? b : a));
  const centre = isNum(opts.bestZ) ? opts.bestZ : (opts.fit && isNum(opts.fit.z_um) ? opts.fit.z_um : best.z_um);
  const w = opts.fit && opts.fit.params && isNum(opts.fit.params.w_um) && opts.fit.params.w_um !== 0 ? Math.abs(opts.fit.params.w_um) : 0;
  let half = w ? 4 * w : 2;
  const dist = good.map((p) => Math.abs(p.z_um - centre)).sort((a, b) => a - b);
  if (dist.length >= 3) half = Math.max(half, 1.15 * dist[2]);
  half = Math.max(half, 0.05);
  // Only around a chosen plane: a failure's candidates are compared in the main panel.
  const zoom = !opts.live && isNum(opts.bestZ) && good.length >= 4 && 2 * half < 0.4 * (zhi - zlo);
  const mainW = zoom ? Math.round(W * 0.64) : W;
  drawPanel(ctx, { x: 72, y: 16, w: mainW - 72 - 16, h: H - 16 - 40 }, zlo, zhi, slo, shi, good, fit, opts, false);
  if (zoom) {
    ctx.fillStyle = "rgba(31,111,235,0.07)";
    const X = (z) => 72 + (z - zlo) / (zhi - zlo) * (mainW - 88);
    ctx.fillRect(X(centre - half), 16, X(centre + half) - X(centre - half), H - 56);
    const near = good.filter((p) => Math.abs(p.z_um - centre) <= half);
    let zshi = Math.max(...near.map((p) => p.score));
    if (fit) fit.z_um.forEach((z, i) => { if (Math.abs(z - centre) <= half && isFinite(fit.score[i])) zshi = Math.max(zshi, fit.score[i]); });
    zshi += 0.08 * (zshi - slo);
    drawPanel(ctx, { x: mainW + 40, y: 16, w: W - mainW - 40 - 12, h: H - 16 - 40 }, centre - half, centre + half, slo, zshi, good, fit, opts, true);
    ctx.fillStyle = "#6b7785"; ctx.font = "11px system-ui";
    ctx.fillText(`zoom ±${niceNum(half)} µm · numbers: order measured`, mainW + 40, 12);
  }
}

function drawPanel(ctx, box, zlo, zhi, slo, shi, good, fit, opts, isZoom) {
  const small = !!opts.small;
  const X = (z) => box.x + (z - zlo) / (zhi - zlo) * box.w;
  const Y = (s) => box.y + box.h - (s - slo) / (shi - slo) * box.h;
  const isNum = (z) => z !== null && z !== undefined && isFinite(z);
  ctx.save();
  if (!small) {
    ctx.strokeStyle = "#e4e8ee"; ctx.fillStyle = "#6b7785"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
    for (const z of ticks(zlo, zhi, isZoom ? 4 : 8)) {
      ctx.beginPath(); ctx.moveTo(X(z), box.y); ctx.lineTo(X(z), box.y + box.h); ctx.stroke();
      ctx.fillText(niceNum(z), X(z) - 10, box.y + box.h + 14);
    }
    for (const s of ticks(slo, shi, 5)) {
      ctx.beginPath(); ctx.moveTo(box.x, Y(s)); ctx.lineTo(box.x + box.w, Y(s)); ctx.stroke();
      if (!isZoom) ctx.fillText(niceNum(s), 24, Y(s) + 4);
    }
    ctx.fillText("z (µm)", box.x + box.w / 2 - 14, box.y + box.h + 30);
    if (!isZoom) { ctx.save(); ctx.translate(12, box.y + box.h / 2 + 10); ctx.rotate(-Math.PI / 2); ctx.fillText("score", 0, 0); ctx.restore(); }
  }
  ctx.beginPath(); ctx.rect(box.x, box.y - 2, box.w, box.h + 4); ctx.clip();
  const vline = (z, colour, dash, label, row) => {
    if (!isNum(z) || z < zlo || z > zhi) return;
    ctx.save(); ctx.strokeStyle = colour; ctx.setLineDash(dash); ctx.lineWidth = small ? 1 : 1.5;
    ctx.beginPath(); ctx.moveTo(X(z), box.y); ctx.lineTo(X(z), box.y + box.h); ctx.stroke(); ctx.restore();
    if (label && !small && !isZoom) { ctx.fillStyle = colour; ctx.font = "11px system-ui"; ctx.fillText(label, X(z) + 4, row < 0 ? box.y + box.h - 6 : box.y + 12 + 13 * row); }
  };
  if (isNum(opts.startZ)) vline(opts.startZ, "#999", [2, 3], "start " + fmt(opts.startZ), -1);
  (opts.candidates || []).forEach((z, i) => vline(z, "#c62828", [6, 4], (opts.candidateLabel || "candidate") + " " + (i + 1) + ": " + fmt(z), i + 1));
  if (isNum(opts.bestZ)) vline(opts.bestZ, "#1a7f37", [], "chosen z " + fmt(opts.bestZ), 0);
  if (fit) {
    ctx.strokeStyle = "#e8710a"; ctx.lineWidth = small ? 1 : 2; ctx.beginPath();
    let first = true;
    fit.z_um.forEach((z, i) => {
      const s = fit.score[i];
      if (!isFinite(s) || z < zlo || z > zhi) return;
      if (first) { ctx.moveTo(X(z), Y(s)); first = false; } else ctx.lineTo(X(z), Y(s));
    });
    ctx.stroke();
  }
  const r = small ? 1.6 : 3.5;
  good.forEach((p, i) => {
    if (p.z_um < zlo || p.z_um > zhi) return;
    ctx.fillStyle = i === good.length - 1 && opts.live ? "#e8710a" : "#1f6feb";
    ctx.beginPath(); ctx.arc(X(p.z_um), Y(p.score), r, 0, 2 * Math.PI); ctx.fill();
    if (isZoom) { ctx.fillStyle = "#6b7785"; ctx.font = "10px system-ui"; ctx.fillText(String(p.order), X(p.z_um) + 4, Y(p.score) - 4); }
  });
  ctx.restore();
}

function ticks(lo, hi, n) {
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= step0) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
  return out;
}
function niceNum(v) { const a = Math.abs(v); return a >= 1e4 || (a > 0 && a < 1e-2) ? v.toExponential(1) : String(+v.toFixed(2)); }

function jobPoints(job) {
  const c = job && job.result && job.result.curve;
  return Array.isArray(c) ? c : [];
}
function verdict(job) {
  const r = job.result || {};
  if (job.state === "succeeded") {
    return [`Succeeded: z = ${fmt(r.best_z_um)} µm, confidence ${fmt(r.confidence, 3)}` +
      (r.fit ? `, fitted peak ${fmt(r.fit.z_um)} µm (${r.fit.kind})` : ""), "ok"];
  }
  if (TERMINAL.has(job.state)) {
    const why = job.error || r.reason || "no reason given";
    const code = job.error_code || r.reason_code;
    const where = isFinite(r.final_z_um) && r.final_z_um !== null ? ` Stage at z = ${fmt(r.final_z_um)} µm.` : "";
    return [`${job.state[0].toUpperCase() + job.state.slice(1)}${code ? " (" + code + ")" : ""}: ${why}.${where}`, outcomeClass(job.state)];
  }
  return [`${job.state}…`, ""];
}
function curveOpts(job, extra) {
  const r = job.result || {};
  const best = r.success ? r.best_z_um : null;
  // A failure marks every candidate plane; a success the other planes it chose against.
  const others = candidatePlanes(r).filter((z) => best === null || Math.abs(z - best) > 0.5);
  return Object.assign({ fit: r.fit, bestZ: best, startZ: (job.progress || {}).start_z_um,
    candidates: best === null ? others : (r.details && r.details.rivals ? others : []),
    candidateLabel: best === null ? "candidate" : "other plane" }, extra || {});
}
function jobFacts(job) {
  const r = job.result || {}, q = job.request || {}, t = r.timing || {};
  return [["job", job.id], ["state", job.state, outcomeClass(job.state)],
    ["strategy / scorer", `${q.strategy} / ${q.scorer}`], ["range, tolerance", `${fmt(q.range_um)} µm, ${fmt(q.tolerance_um)} µm`],
    ["frames", r.frames !== undefined && r.frames !== null ? r.frames : (job.progress || {}).frames],
    ["hardware time", t.hardware_s !== undefined ? fmt(t.hardware_s) + " s" : "–"],
    ["chosen z", r.success ? fmt(r.best_z_um) + " µm" : "–"], ["confidence", fmt(r.confidence, 3)],
    ["fitted peak", r.fit ? `${fmt(r.fit.z_um)} µm (${r.fit.kind}, r² ${fmt(r.fit.r2, 3)})` : "–"],
    ["reason code", job.error_code || r.reason_code || "–"], ["started", when(job.started_at)]];
}

// ---------- Now ----------
async function pollNow() {
  try {
    const [st, sc] = await Promise.all([api("/v1/status"), api("/v1/microscope")]);
    state.status = st; state.scope = sc;
    $("conn").textContent = `daemon ${st.version} · ${st.ready ? "ready" : "not ready"}`;
    const lim = sc.z_limits_um || {};
    facts($("scope"), [["driver", `${sc.driver} (${sc.name || ""})`], ["z now", fmt(sc.z_um) + " µm"],
      ["Z limits", `${fmt(lim.min_um)} … ${fmt(lim.max_um)} µm`], ["camera", sc.camera ? `${sc.camera.name} ${sc.camera.width_px}×${sc.camera.height_px}` : "–"],
      ["ready", sc.ready ? "yes" : ("no" + (sc.error ? ": " + sc.error : "")), sc.ready ? "ok" : "bad"]]);
    facts($("service"), [["scorer", st.scorer], ["strategy", st.strategy], ["queue", `${st.queue_depth} / ${st.queue_max}`],
      ["running job", st.current_job || "none"], ["uptime", fmt(st.uptime_s, 0) + " s"]]);
    updateAct(st);
    if (st.current_job && st.current_job !== state.watching) watch(st.current_job);
    else if (!st.current_job && !state.watching) await showLatest();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("conn").textContent = "daemon unreachable: " + e.message;
  }
}

async function showLatest() {
  const list = await api("/v1/jobs?limit=1");
  if (!list.items.length) { state.shownJob = "none"; drawCurve($("now-curve"), [], { empty: "no job yet: start one under Act" }); return; }
  if (state.shownJob === list.items[0].id && state.job && TERMINAL.has(state.job.state)) return;
  const job = await api("/v1/jobs/" + list.items[0].id);
  state.shownJob = job.id;
  renderNowJob(job);
}

function renderNowJob(job) {
  state.job = job;
  $("job-title").textContent = `Job ${job.id.slice(0, 8)} · ${job.state}`;
  const [text, cls] = verdict(job);
  $("job-verdict").textContent = text; $("job-verdict").className = cls;
  const c = $("now-curve");
  c.dataset.job = job.id; c.dataset.state = job.state;
  c.dataset.final = TERMINAL.has(job.state) ? "1" : "";  // the result is drawn
  drawCurve(c, jobPoints(job), curveOpts(job));
  facts($("job-facts"), jobFacts(job));
  $("now-cancel").hidden = TERMINAL.has(job.state);
}

function stopWatching() {
  if (state.watchAbort) state.watchAbort.abort();
  state.watchAbort = null; state.watching = null;
}

// Follow a job's events: redraw the curve at every measurement, read the result at the end.
async function watch(jobId) {
  stopWatching();
  const ctrl = new AbortController();
  state.watchAbort = ctrl; state.watching = jobId; state.shownJob = jobId; state.points = [];
  const c = $("now-curve");
  c.dataset.job = jobId; c.dataset.state = "running"; c.dataset.final = "";
  $("job-title").textContent = `Job ${jobId.slice(0, 8)} · running`;
  $("job-verdict").textContent = "measuring…"; $("job-verdict").className = "";
  $("now-cancel").hidden = false;
  facts($("job-facts"), [["job", jobId]]);
  let lastId = 0, ended = false;
  drawCurve(c, [], { empty: "waiting for the first frame…" });
  for (let attempt = 0; attempt < 5 && !ended && !ctrl.signal.aborted; attempt++) {
    try {
      for await (const ev of sse(`/v1/jobs/${jobId}/events`, ctrl.signal, lastId)) {
        lastId = +ev.id || lastId;
        const d = JSON.parse(ev.data);
        if (ev.event === "measurement") {
          state.points.push({ z_um: d.z_um, score: d.score });
          drawCurve(c, state.points, { live: true });
          $("job-verdict").textContent = `measuring… ${state.points.length} frames, last z = ${fmt(d.z_um)} µm`;
        } else if (ev.event === "state") {
          c.dataset.state = d.state;
          $("job-title").textContent = `Job ${jobId.slice(0, 8)} · ${d.state}`;
          if (TERMINAL.has(d.state)) ended = true;
        }
      }
      ended = true;
    } catch (e) {
      if (ctrl.signal.aborted || e instanceof Unauthorized) return;
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  if (ctrl.signal.aborted) return;
  try { renderNowJob(await api("/v1/jobs/" + jobId)); } catch (e) { /* shown on the next poll */ }
  if (state.watching === jobId) { state.watchAbort = null; state.watching = null; }
}

// ---------- History ----------
async function showHistory() {
  const tbody = $("history-table").querySelector("tbody");
  const list = await api("/v1/jobs?limit=25");
  tbody.replaceChildren();
  for (const j of list.items) {
    const r = j.result || {}, t = r.timing || {};
    const canvas = el("canvas", { width: "160", height: "36", class: "spark" });
    const tr = el("tr", { class: "clickable", "data-job": j.id, onclick: () => { location.hash = "#job/" + j.id; } },
      el("td", {}, when(j.started_at || j.created_at)), el("td", { class: outcomeClass(j.state) }, j.state),
      el("td", {}, j.error_code || r.reason_code || ""), el("td", {}, r.frames !== undefined && r.frames !== null ? r.frames : (j.progress || {}).frames || 0),
      el("td", {}, fmt(t.hardware_s)), el("td", {}, r.success ? fmt(r.best_z_um) : "–"), el("td", {}, canvas));
    tbody.append(tr);
  }
  // The list leaves curves out: read each job for its small curve, a few at a time.
  for (const tr of [...tbody.children]) {
    if (state.view !== "history") return;
    try {
      const job = await api("/v1/jobs/" + tr.dataset.job);
      drawCurve(tr.querySelector("canvas"), jobPoints(job), curveOpts(job, { small: true, startZ: null }));
    } catch (e) { if (e instanceof Unauthorized) return; }
  }
}

async function showJob(id) {
  const job = await api("/v1/jobs/" + encodeURIComponent(id));
  $("jv-title").textContent = `Job ${job.id}`;
  const [text, cls] = verdict(job);
  $("jv-verdict").textContent = text; $("jv-verdict").className = cls;
  const c = $("jv-curve"); c.dataset.job = job.id;
  let pts = jobPoints(job);
  if (!pts.length) { // still running or no result: the measurements so far, from the events
    pts = [];
    const ctrl = new AbortController();
    setTimeout(() => ctrl.abort(), 3000);
    try {
      for await (const ev of sse(`/v1/jobs/${job.id}/events`, ctrl.signal)) {
        if (ev.event === "measurement") { const d = JSON.parse(ev.data); pts.push({ z_um: d.z_um, score: d.score, t_s: d.t_s }); }
      }
    } catch (e) { /* a running job's stream is cut after 3 s: what came is shown */ }
  }
  drawCurve(c, pts, curveOpts(job));
  facts($("jv-facts"), jobFacts(job));
  const tbody = $("jv-frames").querySelector("tbody");
  tbody.replaceChildren(...pts.map((p, i) => el("tr", {}, el("td", {}, i + 1), el("td", {}, fmt(p.z_um, 3)),
    el("td", {}, p.score === null ? "unusable" : Number(p.score).toPrecision(5)), el("td", {}, fmt(p.t_s, 3)))));
}

// ---------- Focus maps ----------
async function showMaps(openId) {
  const ul = $("maps-list");
  let items = [];
  try {
    const list = await api("/v1/focus-maps");
    items = Array.isArray(list) ? list : (list.items || []);
    $("maps-note").textContent = items.length ? "Pick a map." : "No focus maps yet (POST /v1/focus-maps builds one).";
  } catch (e) {
    if (e instanceof Unauthorized) return;
    $("maps-note").textContent = e.status === 404 || e.status === 405
      ? "This daemon cannot list its focus maps; open one by its id: #map/<id>."
      : "Could not list focus maps: " + e.message;
  }
  ul.replaceChildren(...items.map((m) => el("li", { "data-map": m.id, onclick: () => { location.hash = "#map/" + m.id; } },
    `${m.id.slice(0, 8)} · ${m.state} · ${m.source || ""}` + (m.surface ? ` · ${m.surface.kind}, ${m.n_points} points` : ""))));
  const pick = openId || (items.find((m) => m.state === "ready") || {}).id;
  if (pick) await showMap(pick);
  else $("map-detail").hidden = true;
}

async function showMap(id) {
  state.mapId = id;
  for (const li of $("maps-list").children) li.classList.toggle("current", li.dataset.map === id);
  const map = await api("/v1/focus-maps/" + encodeURIComponent(id));
  state.map = map; state.mapClick = null;
  $("map-detail").hidden = false;
  $("map-title").textContent = `Focus map ${map.id.slice(0, 8)} · ${map.state}`;
  const s = map.surface;
  $("map-facts").textContent = s
    ? `${s.kind} surface through ${map.n_used} of ${map.n_points} points · fit RMS ${fmt(s.rms_um, 3)} µm · leave-one-out RMS ${fmt(s.loo_rms_um, 3)} µm · ${map.n_outliers} outliers, ${map.n_failed} failed`
    : `${map.error || map.fit_error || "not fitted yet"}`;
  const cancel = $("map-cancel");
  cancel.hidden = map.state !== "building";
  cancel.onclick = async () => {
    try { await api("/v1/focus-maps/" + encodeURIComponent(id), { method: "DELETE" }); await showMap(id); }
    catch (e) { if (!(e instanceof Unauthorized)) $("map-facts").textContent = "Cancel failed: " + e.message; }
  };
  state.mapGrid = null;
  if (map.state === "ready") state.mapGrid = await api(`/v1/focus-maps/${encodeURIComponent(id)}/z-grid?nx=48&ny=40`);
  drawMap();
}

function heat(t) { // 0..1 -> a perceptual-ish blue→yellow ramp
  const stops = [[48, 18, 59], [65, 69, 171], [41, 140, 202], [34, 187, 160], [122, 210, 81], [240, 220, 50]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function drawMap() {
  const c = $("map-canvas"), ctx = c.getContext("2d"), W = c.width, H = c.height;
  const m = { l: 70, r: 90, t: 14, b: 44 };
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const g = state.mapGrid, map = state.map;
  const pts = (map && map.points) || [];
  c.dataset.points = String(pts.length);
  if (!g) { ctx.fillStyle = "#6b7785"; ctx.fillText("no surface to draw", W / 2 - 50, H / 2); return; }
  const xs = g.x_um, ys = g.y_um;
  const x0 = xs[0], x1 = xs[xs.length - 1], y0 = ys[0], y1 = ys[ys.length - 1];
  const X = (x) => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
  const Y = (y) => H - m.b - (y - y0) / (y1 - y0) * (H - m.t - m.b);
  const flat = g.z_um.flat().filter((v) => v !== null);
  if (!flat.length) { ctx.fillStyle = "#6b7785"; ctx.fillText("the surface predicts no z inside the Z limits here", 90, H / 2); return; }
  let zlo = Math.min(...flat), zhi = Math.max(...flat);
  if (zhi - zlo < 1e-9) { zlo -= 0.5; zhi += 0.5; }
  const cw = (W - m.l - m.r) / (xs.length - 1), ch = (H - m.t - m.b) / (ys.length - 1);
  g.z_um.forEach((row, j) => row.forEach((z, i) => {
    if (z === null) return;
    ctx.fillStyle = heat((z - zlo) / (zhi - zlo));
    ctx.fillRect(X(xs[i]) - cw / 2, Y(ys[j]) - ch / 2, cw + 1, ch + 1);
  }));
  ctx.clearRect(0, 0, m.l, H); ctx.clearRect(W - m.r, 0, m.r, H); ctx.clearRect(0, 0, W, m.t); ctx.clearRect(0, H - m.b, W, m.b);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, m.l, H); ctx.fillRect(W - m.r, 0, m.r, H); ctx.fillRect(0, 0, W, m.t); ctx.fillRect(0, H - m.b, W, m.b);
  ctx.fillStyle = "#6b7785"; ctx.font = "11px system-ui";
  for (const x of ticks(x0, x1, 5)) ctx.fillText(niceNum(x), X(x) - 12, H - m.b + 14);
  for (const y of ticks(y0, y1, 5)) ctx.fillText(niceNum(y), 6, Y(y) + 4);
  ctx.fillText("x (µm)", W / 2 - 40, H - 8); ctx.fillText("y (µm)", 6, m.t + 2);
  // colour bar
  for (let k = 0; k < 100; k++) { ctx.fillStyle = heat(k / 99); ctx.fillRect(W - m.r + 20, Y(y0) - (k + 1) / 100 * (Y(y0) - Y(y1)), 14, (Y(y0) - Y(y1)) / 100 + 1); }
  ctx.fillStyle = "#1d2733";
  ctx.fillText(fmt(zhi) + " µm", W - m.r + 38, Y(y1) + 8); ctx.fillText(fmt(zlo) + " µm", W - m.r + 38, Y(y0));
  ctx.fillText("focus z", W - m.r + 20, Y(y1) - 2 > 10 ? Y(y1) - 2 : 10);
  // points: filled = used (label: residual), hollow red = outlier or failed
  const maxRes = Math.max(1e-9, ...pts.map((p) => Math.abs(p.residual_um || 0)));
  ctx.font = "10px system-ui";
  for (const p of pts) {
    const px = X(p.x_um), py = Y(p.y_um), r = 4 + 5 * Math.abs(p.residual_um || 0) / maxRes;
    ctx.beginPath(); ctx.arc(px, py, r, 0, 2 * Math.PI);
    if (p.used) { ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = "#1d2733"; ctx.lineWidth = 1.5; ctx.stroke(); }
    else { ctx.strokeStyle = "#c62828"; ctx.lineWidth = 2; ctx.stroke(); }
    ctx.fillStyle = p.used ? "#1d2733" : "#c62828";
    const label = !p.success ? "failed" : (p.residual_um === null || p.residual_um === undefined ? "" : (p.residual_um >= 0 ? "+" : "") + fmt(p.residual_um) + (p.outlier ? " outlier" : ""));
    ctx.fillText(label, px + r + 2, py - 2);
  }
  if (state.mapClick) {
    const { x_um, y_um, z_um } = state.mapClick;
    ctx.strokeStyle = "#e8710a"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(X(x_um) - 7, Y(y_um)); ctx.lineTo(X(x_um) + 7, Y(y_um)); ctx.moveTo(X(x_um), Y(y_um) - 7); ctx.lineTo(X(x_um), Y(y_um) + 7); ctx.stroke();
    ctx.fillStyle = "#e8710a"; ctx.font = "12px system-ui"; ctx.fillText(fmt(z_um) + " µm", X(x_um) + 8, Y(y_um) + 14);
  }
  c.onclick = async (ev) => {
    const rect = c.getBoundingClientRect();
    const px = (ev.clientX - rect.left) * W / rect.width, py = (ev.clientY - rect.top) * H / rect.height;
    if (px < m.l || px > W - m.r || py < m.t || py > H - m.b) return;
    const x_um = x0 + (px - m.l) / (W - m.l - m.r) * (x1 - x0), y_um = y0 + (H - m.b - py) / (H - m.t - m.b) * (y1 - y0);
    try {
      const r = await api(`/v1/focus-maps/${encodeURIComponent(state.mapId)}/z?x_um=${x_um.toFixed(3)}&y_um=${y_um.toFixed(3)}`);
      state.mapClick = r;
      $("map-predict").textContent = `Predicted focus at x = ${fmt(r.x_um, 1)} µm, y = ${fmt(r.y_um, 1)} µm: z = ${fmt(r.z_um, 3)} µm (${r.kind}, leave-one-out RMS ${fmt(r.loo_rms_um, 3)} µm)`;
      drawMap();
    } catch (e) { $("map-predict").textContent = "Could not predict: " + e.message; }
  };
}

// ---------- Act ----------
function updateAct(st) {
  const running = st.current_job;
  $("act-running").textContent = running ? `job ${running}` : "none";
  $("act-cancel").disabled = !running;
  $("act-cancel").dataset.job = running || "";
}

async function cancelJob(id) {
  if (!id) return;
  try {
    const job = await api("/v1/jobs/" + encodeURIComponent(id), { method: "DELETE" });
    $("act-result").textContent = `Cancel requested for job ${id.slice(0, 8)}: ${job.state}${job.state === "cancelled" ? "" : " (the stage returns to where it started)"}`;
    $("act-result").className = "warn";
  } catch (e) { if (!(e instanceof Unauthorized)) { $("act-result").textContent = "Cancel failed: " + e.message; $("act-result").className = "bad"; } }
}

async function startFocus(ev) {
  ev.preventDefault();
  const body = {};
  const range = parseFloat($("f-range").value), tol = parseFloat($("f-tol").value), centre = parseFloat($("f-center").value);
  if (isFinite(range)) body.range_um = range;
  if (isFinite(tol)) body.tolerance_um = tol;
  if (isFinite(centre)) body.center_z_um = centre;
  $("start-focus").disabled = true;
  try {
    const job = await api("/v1/focus", { method: "POST", body });
    $("act-result").textContent = `Started job ${job.id.slice(0, 8)} (${job.state}).`;
    $("act-result").className = "ok";
    state.shownJob = null;
    watch(job.id);
    location.hash = "#now";
  } catch (e) {
    if (!(e instanceof Unauthorized)) { $("act-result").textContent = "Not started: " + e.message; $("act-result").className = "bad"; }
  } finally { $("start-focus").disabled = false; }
}

// ---------- views ----------
async function route() {
  if (!token() && state.needToken) { askToken(""); return; }
  const h = location.hash.replace(/^#/, "") || "now";
  const [name, arg] = h.split("/");
  const view = { now: "now", history: "history", job: "job", maps: "maps", map: "maps", act: "act" }[name] || "now";
  state.view = view;
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== view + "-view";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + (view === "job" ? "history" : view));
  try {
    if (view === "now") { if (state.job && !state.watching) renderNowJob(state.job); await pollNow(); }
    else if (view === "history") await showHistory();
    else if (view === "job") await showJob(decodeURIComponent(arg || ""));
    else if (view === "maps") await showMaps(arg ? decodeURIComponent(arg) : null);
    else if (view === "act") await pollNow();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("conn").textContent = "error: " + e.message;
  }
  document.body.dataset.view = view;
}

function start() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    state.needToken = false;
    route();
  });
  $("focus-form").addEventListener("submit", startFocus);
  $("act-cancel").addEventListener("click", () => cancelJob($("act-cancel").dataset.job));
  $("now-cancel").addEventListener("click", () => cancelJob(state.watching || (state.job && state.job.id)));
  window.addEventListener("hashchange", route);
  route();
  state.pollTimer = setInterval(() => { if (!state.needToken && (state.view === "now" || state.view === "act")) pollNow(); }, 1000);
}

document.addEventListener("DOMContentLoaded", start);
