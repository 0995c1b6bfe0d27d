"use strict";
// The console's pages. Data: the admin API and /apis/tidal.dev/v1/console/ (the session cookie
// authenticates; mutating calls carry this page's Origin and a JSON body, as the admin guard asks).
const API = "/apis/tidal.dev/v1";
const KNATIVE = "/apis/serving.knative.dev/v1";
const main = document.getElementById("main");

class ApiError extends Error {}

async function api(method, path, body) {
  const options = {method, headers: {}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) { location.assign("/console/login"); throw new ApiError("logged out"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(data.message || `${method} ${path}: ${response.status}`);
  return data;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function ms(seconds) { return seconds === null || seconds === undefined ? "–" : `${Math.round(seconds * 1000)} ms`; }

function confirmDialog(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
    dialog.showModal();
  });
}

let events = null;
function subscribe(query, onEvent) {
  if (events) events.close();
  const live = document.getElementById("live");
  events = new EventSource(`${API}/console/events${query}`);
  events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  events.onmessage = (message) => onEvent(JSON.parse(message.data));
}

// Revision colours stay the same across the page's bars and legends.
const revisionColors = {};
function revisionColor(name) {
  if (!(name in revisionColors)) revisionColors[name] = COLORS[Object.keys(revisionColors).length % COLORS.length];
  return revisionColors[name];
}

function splitBar(traffic) {
  const bar = el("div", {class: "split", title: traffic.map((t) => `${t.revisionName} ${t.percent}%`).join(", ")});
  const legend = el("div", {class: "legend"});
  for (const t of traffic) {
    if (!t.percent) continue;
    const part = el("span", {"data-revision": t.revisionName});
    part.style.width = `${t.percent}%`;
    part.style.background = revisionColor(t.revisionName);
    bar.append(part);
    const sw = el("span", {class: "swatch"});
    sw.style.background = revisionColor(t.revisionName);
    legend.append(el("span", {}, sw, `${t.revisionName} ${t.percent}%${t.tag ? ` (${t.tag})` : ""}`));
  }
  return el("div", {}, bar, legend);
}

// -- Services --------------------------------------------------------------------------------

function servicesPage() {
  document.title = "Services · tidal";
  const body = el("tbody", {id: "services-body"});
  main.append(
    el("h1", {text: "Services"}),
    el("table", {id: "services"},
      el("thead", {}, el("tr", {},
        ...["Name", "Ready", "Traffic", "Req/s", "Concurrency", "p95", "Cold starts 1h",
          "Replicas ready/desired/planned", "Autoscaler", "Last decision"].map((h, i) =>
          el("th", {text: h, class: i >= 3 && i <= 7 ? "num" : ""})))),
      body),
    el("p", {class: "muted small", text: "Rates: mean of the last 10 s. p95: the last minute of the gateway's latency histogram. Updates every second."}));
  const render = (rows) => {
    body.textContent = "";
    if (!rows.length) body.append(el("tr", {}, el("td", {colspan: 10, class: "muted", text: "No services yet: tidal apply -f service.yaml"})));
    for (const r of rows) {
      body.append(el("tr", {"data-service": r.name},
        el("td", {}, el("a", {href: `/console/services/${r.namespace}/${r.name}`, text: r.name}),
          el("div", {class: "muted small", text: r.url})),
        el("td", {}, el("span", {class: `badge ${r.ready}`, text: r.ready}), r.reason ? el("div", {class: "small error", text: r.reason}) : null),
        el("td", {}, splitBar(r.traffic)),
        el("td", {class: "num", "data-field": "rps", text: fmtNum(r.rps)}),
        el("td", {class: "num", text: fmtNum(r.concurrency)}),
        el("td", {class: "num", text: ms(r.p95)}),
        el("td", {class: "num", text: fmtNum(r.coldStartsHour)}),
        el("td", {class: "num", text: `${r.replicas} / ${r.desired} / ${r.planned === null ? "–" : r.planned}`}),
        el("td", {}, el("div", {text: r.class.split(".")[0]}), el("div", {class: "muted small", text: r.mode + (r.panic ? " · panic" : "")})),
        el("td", {class: "small", text: r.decision || "–"})));
    }
  };
  api("GET", `${API}/console/services`).then((d) => render(d.items));
  subscribe("", (event) => render(event.services));
}

// -- A service --------------------------------------------------------------------------------

async function servicePage(ns, name) {
  document.title = `${name} · tidal`;
  const header = el("div", {class: "card", id: "service-header"});
  const toolbar = el("div", {class: "toolbar"}, el("span", {class: "muted", text: "Window:"}));
  const charts = el("div", {class: "grid"});
  const rpsBox = el("div", {class: "card", id: "chart-rps"});
  const concBox = el("div", {class: "card", id: "chart-concurrency"});
  const replicasBox = el("div", {class: "card", id: "chart-replicas"});
  const coldBox = el("div", {class: "card", id: "chart-cold"});
  charts.append(rpsBox, concBox, replicasBox, coldBox);
  const forecastBox = el("div", {class: "grid"});
  const revisionsBox = el("div", {class: "card", id: "revisions"});
  const trafficBox = el("div", {class: "card", id: "traffic"});
  main.append(el("h1", {}, el("a", {href: "/console/", text: "Services"}), ` / ${name}`), header, toolbar, charts,
    el("h2", {text: "Forecast and plan"}), forecastBox, el("h2", {text: "Revisions"}), revisionsBox,
    el("h2", {text: "Traffic"}), trafficBox);

  let window_ = "hour";
  let data = null;
  const draw = () => {
    if (!data) return;
    const step = window_ === "hour";
    timeChart(rpsBox, {title: "Requests/s", t: data.t, series: [{name: "requests/s", values: data.rps}]});
    timeChart(concBox, {title: "Concurrency", t: data.t, series: [{name: "in flight", values: data.concurrency, color: "#e8710a"}]});
    timeChart(replicasBox, {title: "Replicas", t: data.t, series: [
      {name: "ready", values: data.ready, step, color: "#1a7f37"},
      ...(data.desired ? [{name: "desired", values: data.desired, step, color: "#0b5cab", dash: "4 3"}] : []),
      ...(data.planned ? [{name: "planned", values: data.planned, step, color: "#a142f4", dash: "2 2"}] : []),
    ]});
    timeChart(coldBox, {title: "Cold starts", t: data.t, series: [{name: "cold starts", values: data.cold, bars: true, color: "#c62828"}]});
  };
  const load = async () => { data = await api("GET", `${API}/console/services/${ns}/${name}/series?window=${window_}`); draw(); };
  for (const w of ["hour", "day", "week"]) {
    toolbar.append(el("button", {text: `last ${w}`, "data-window": w, class: w === window_ ? "on" : "", onclick: (e) => {
      window_ = w;
      toolbar.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === e.target));
      load();
    }}));
  }

  const renderHeader = (r) => {
    header.textContent = "";
    header.append(...[
      el("div", {}, el("span", {class: `badge ${r.ready}`, text: r.ready}), " ", el("a", {href: r.url, text: r.url}),
        ...r.domains.flatMap((d) => [" · ", el("a", {href: d, text: d, "data-domain": d})])),
      r.reason ? el("div", {class: "error small", text: r.reason}) : null,
      el("div", {class: "small"},
        `${fmtNum(r.rps)} req/s · ${fmtNum(r.concurrency)} in flight · p95 ${ms(r.p95)} · ${r.replicas} ready / ${r.desired} desired / ${r.planned === null ? "–" : r.planned} planned · ${r.class} (${r.mode})`),
      el("div", {class: "muted small", text: `last decision: ${r.decision || "–"}`}),
      splitBar(r.traffic)].filter((c) => c !== null));
  };
  const renderRevisions = (revisions) => {
    revisionsBox.textContent = "";
    revisionsBox.append(el("table", {},
      el("thead", {}, el("tr", {}, ...["Revision", "Ready", "Replicas", "Pending", "Autoscaler", "Failure"].map((h) => el("th", {text: h})))),
      el("tbody", {}, ...revisions.map((r) => el("tr", {"data-revision": r.name},
        el("td", {text: r.name}), el("td", {}, el("span", {class: `badge ${r.ready}`, text: r.ready})),
        el("td", {text: `${r.actual} / ${r.desired}`}), el("td", {class: "small", text: r.pending.join("; ") || "–"}),
        el("td", {class: "small", text: r.decision || "–"}), el("td", {class: "small error", text: r.reason}))))));
  };

  const detail = await api("GET", `${API}/console/services/${ns}/${name}`);
  renderHeader(detail.service);
  renderRevisions(detail.revisions);
  renderTraffic(trafficBox, ns, name, detail);
  await load();
  loadForecast(forecastBox, ns, name);
  subscribe(`?service=${encodeURIComponent(`${ns}/${name}`)}`, (event) => {
    const row = event.services.find((r) => r.namespace === ns && r.name === name);
    if (row) renderHeader(row);
    if (event.revisions) renderRevisions(event.revisions);
    if (window_ !== "hour" || !data || !event.point) return;
    const p = event.point;
    for (let i = 0; i < p.t.length; i++) {
      if (data.t.length && p.t[i] <= data.t[data.t.length - 1]) continue;
      for (const k of ["t", "rps", "concurrency", "ready", "desired", "planned", "cold"]) data[k].push(p[k][i]);
    }
    draw();
  });
}

async function loadForecast(box, ns, name) {
  box.textContent = "";
  const planBox = el("div", {class: "card", id: "chart-plan"});
  const demandBox = el("div", {class: "card", id: "chart-forecast"});
  box.append(demandBox, planBox);
  let f;
  try { f = await api("GET", `${API}/namespaces/${ns}/services/${name}/forecast`); }
  catch (e) { demandBox.append(el("p", {class: "muted", text: `no forecast: ${e.message}`})); return; }
  const now = Date.now() / 1000;
  const day = 1440;
  const rt = f.recent.demand.map((_, i) => f.recent.start + 60 * i).slice(-day);
  const pt = f.replicas.map((_, i) => f.start + 60 * i).slice(0, day);
  timeChart(demandBox, {title: `Demand and forecast (${f.method}, q${f.quantile ?? ""})`, start: now - 86400, end: now + 86400, now,
    t: rt, series: [
      {name: "actual demand", values: f.recent.demand.slice(-day), color: "#1d2733"},
      {name: "forecast", t: pt, values: f.demand.slice(0, day), color: "#0b5cab", dash: "4 3"}],
    band: {t: pt, lower: f.demand.slice(0, day).map((v) => v === null ? null : Math.max(0, v)), upper: f.upper.slice(0, day), name: "forecast upper"}});
  const readyT = f.recent.readyReplicas.map((_, i) => f.recent.start + 60 * i).slice(-day);
  timeChart(planBox, {title: "24-hour plan vs actual replicas", start: now - 86400, end: now + 86400, now, t: readyT, series: [
    {name: "actual ready", values: f.recent.readyReplicas.slice(-day), step: true, color: "#1a7f37"},
    {name: "plan", t: pt, values: f.replicas.slice(0, day), step: true, color: "#a142f4"}]});
  planBox.append(el("p", {class: "muted small", text: `${f.mode} (${f.modeUsed || "–"}): ${f.reason}. ${f.forecastReason || ""}`}));
}

function renderTraffic(box, ns, name, detail) {
  box.textContent = "";
  const current = {};
  for (const t of detail.service.traffic || []) current[t.revisionName] = (current[t.revisionName] || 0) + t.percent;
  const inputs = {};
  const message = el("p", {class: "small", id: "traffic-message"});
  const rows = detail.revisions.map((r) => {
    inputs[r.name] = el("input", {type: "number", min: 0, max: 100, value: current[r.name] || 0, "data-revision": r.name});
    return el("tr", {},
      el("td", {text: r.name}), el("td", {}, inputs[r.name], " %"),
      el("td", {}, el("button", {text: "Roll back to this", class: "danger", "data-rollback": r.name,
        onclick: () => shift({[r.name]: 100})})));
  });
  const shift = async (targets) => {
    const text = Object.entries(targets).filter(([, p]) => p > 0).map(([r, p]) => `${r} ${p}%`).join(", ");
    if (!(await confirmDialog(`Send ${text} of ${name}'s traffic? This applies the service, as tidal traffic does.`))) return;
    message.className = "small"; message.textContent = "applying…";
    try {
      await setTraffic(ns, name, targets);
      message.className = "small ok"; message.textContent = `traffic set: ${text}`;
      const fresh = await api("GET", `${API}/console/services/${ns}/${name}`);
      renderTraffic(box, ns, name, fresh);
      box.querySelector("#traffic-message").className = "small ok";
      box.querySelector("#traffic-message").textContent = `traffic set: ${text}`;
    } catch (e) { message.className = "small error"; message.textContent = e.message; }
  };
  box.append(
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {text: "Revision"}), el("th", {text: "Percent"}), el("th", {text: ""}))), el("tbody", {}, ...rows)),
    el("div", {class: "toolbar"}, el("button", {class: "primary", id: "traffic-apply", text: "Apply split", onclick: () => {
      const targets = {};
      for (const [r, input] of Object.entries(inputs)) if (+input.value > 0) targets[r] = +input.value;
      shift(targets);
    }})), message);
}

// Read-modify-write of the Service, as `tidal traffic` does; the apply validates the split.
async function setTraffic(ns, name, targets) {
  const path = `${KNATIVE}/namespaces/${ns}/services/${name}`;
  for (let attempt = 0; ; attempt++) {
    const service = await api("GET", path);
    service.spec.traffic = Object.entries(targets).map(([revisionName, percent]) => ({revisionName, percent}));
    delete service.status;
    try { return await api("POST", `${API}/apply`, {items: [service]}); }
    catch (e) { if (!String(e.message).includes("was modified") || attempt === 2) throw e; }
  }
}

// -- Pools ------------------------------------------------------------------------------------

async function poolsPage() {
  document.title = "Pools · tidal";
  const box = el("div", {id: "pools"});
  const pendingBox = el("div", {class: "card", id: "pending"});
  main.append(el("h1", {text: "Pools"}), box, el("h2", {text: "Pending and provisioning replicas"}), pendingBox);
  const render = async () => {
    const [pools, replicas] = await Promise.all([api("GET", `${API}/pools`), api("GET", `${API}/replicas`)]);
    box.textContent = "";
    const holder = {};
    for (const r of replicas.items) for (const d of r.devices || []) holder[`${r.pool}/${d}`] = `${r.service} (${r.name})`;
    for (const p of pools.items) {
      const cap = p.capacity.replicas;
      const used = p.used.replicas;
      const bar = el("span", {class: "bar"}, el("span"));
      bar.firstChild.style.width = cap ? `${Math.min(100, 100 * used / cap)}%` : "0";
      const chips = el("div", {class: "chips"}, ...p.capacity.gpus.map((d) => el("span",
        {class: `chip ${holder[`${p.name}/${d}`] ? "held" : ""}`, text: `GPU ${d}: ${holder[`${p.name}/${d}`] || "free"}`})));
      const price = p.price.replicaSecond || p.price.gpuSecond
        ? `${p.price.replicaSecond}/replica-s, ${p.price.gpuSecond}/GPU-s` : "no price set";
      box.append(el("div", {class: "card", "data-pool": p.name},
        el("h2", {}, `${p.name} `, el("span", {class: "muted small", text: `${p.kind} · ${price} · startup delay ${p.startupDelaySeconds}s`})),
        el("div", {}, "replicas ", bar, ` ${used} of ${cap ?? "unbounded"}`),
        el("div", {class: "small muted", text: `cpu ${fmtNum(p.used.cpu)} of ${p.capacity.cpu ?? "unbounded"} · memory ${fmtNum(p.used.memory / 2 ** 30)} GiB of ${p.capacity.memory ? fmtNum(p.capacity.memory / 2 ** 30) + " GiB" : "unbounded"}`}),
        p.capacity.gpus.length ? chips : el("div", {class: "small muted", text: "no GPUs"}),
        el("div", {class: "small", text: `replicas here: ${p.replicas.join(", ") || "none"}`})));
    }
    const waiting = replicas.items.filter((r) => r.state === "Pending" || r.state === "Provisioning");
    pendingBox.textContent = "";
    pendingBox.append(waiting.length ? el("table", {},
      el("thead", {}, el("tr", {}, ...["Replica", "Service", "State", "Pool", "Why"].map((h) => el("th", {text: h})))),
      el("tbody", {}, ...waiting.map((r) => el("tr", {}, el("td", {text: r.name}), el("td", {text: r.service}),
        el("td", {text: r.state}), el("td", {text: r.pool || "–"}), el("td", {class: "small", text: r.reason || "provisioning on its pool"})))))
      : el("p", {class: "muted", text: "none: every replica the autoscalers want has a place"}));
  };
  await render();
  subscribe("", () => {});
  setInterval(render, 3000);
}

// -- Cost -------------------------------------------------------------------------------------

async function costPage() {
  document.title = "Cost · tidal";
  const windows = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400};
  let chosen = "24h";
  const toolbar = el("div", {class: "toolbar"}, el("span", {class: "muted", text: "Window:"}));
  const charts = el("div", {class: "grid"});
  const byService = el("div", {class: "card", id: "chart-cost-service"});
  const byPool = el("div", {class: "card", id: "chart-cost-pool"});
  charts.append(byService, byPool);
  const table = el("div", {class: "card", id: "cost-table"});
  main.append(el("h1", {text: "Cost"}), toolbar, charts, table);
  const render = async () => {
    const end = Date.now() / 1000;
    const [cost, pools] = await Promise.all([api("GET", `${API}/cost?start=${end - windows[chosen]}&end=${end}`), api("GET", `${API}/pools`)]);
    const priced = cost.items.some((i) => i.cost > 0);
    const key = priced ? "cost" : "replicaSeconds";
    const fmt = priced ? (v) => v.toFixed(4) : (v) => `${fmtNum(v)} replica-s`;
    const sum = (field) => {
      const out = {};
      for (const i of cost.items) out[i[field]] = (out[i[field]] || 0) + i[key];
      return Object.entries(out).map(([label, value]) => ({label, value})).sort((a, b) => b.value - a.value);
    };
    barChart(byService, `${priced ? "Cost" : "Replica-seconds"} per service, last ${chosen}`, sum("service"), fmt);
    barChart(byPool, `${priced ? "Cost" : "Replica-seconds"} per pool, last ${chosen}`, sum("pool"), fmt);
    const total = cost.items.reduce((a, i) => ({r: a.r + i.replicaSeconds, g: a.g + i.gpuSeconds, c: a.c + i.cost}), {r: 0, g: 0, c: 0});
    table.textContent = "";
    table.append(el("table", {},
      el("thead", {}, el("tr", {}, ...["Service", "Revision", "Pool", "Replica-seconds", "GPU-seconds", "Cost"].map((h, i) => el("th", {text: h, class: i > 2 ? "num" : ""})))),
      el("tbody", {}, ...cost.items.map((i) => el("tr", {}, el("td", {text: i.service}), el("td", {text: i.revision}), el("td", {text: i.pool}),
        el("td", {class: "num", text: i.replicaSeconds.toFixed(1)}), el("td", {class: "num", text: i.gpuSeconds.toFixed(1)}),
        el("td", {class: "num", text: i.cost.toFixed(4)}))),
        el("tr", {}, el("th", {text: "total", colspan: 3}), el("th", {class: "num", text: total.r.toFixed(1)}),
          el("th", {class: "num", text: total.g.toFixed(1)}), el("th", {class: "num", text: total.c.toFixed(4)})))));
    const unpriced = pools.items.filter((p) => !p.price.replicaSecond && !p.price.gpuSecond).map((p) => p.name);
    if (unpriced.length) table.append(el("p", {class: "muted small", text: `no price for pool(s) ${unpriced.join(", ")}: their replicas cost 0 (pools[].price in tidal.yaml).`}));
  };
  for (const w of Object.keys(windows)) {
    toolbar.append(el("button", {text: w, class: w === chosen ? "on" : "", onclick: (e) => {
      chosen = w;
      toolbar.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === e.target));
      render();
    }}));
  }
  await render();
  subscribe("", () => {});
  setInterval(render, 5000);
}

// -- Routing ----------------------------------------------------------------------------------

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/console/session", {method: "DELETE"});
  location.assign("/console/login");
});

(function route() {
  const path = location.pathname;
  const service = path.match(/^\/console\/services\/([^/]+)\/([^/]+)$/);
  const nav = service || path === "/console/" ? "services" : path.split("/")[2];
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
  if (service) servicePage(decodeURIComponent(service[1]), decodeURIComponent(service[2]));
  else if (path === "/console/pools") poolsPage();
  else if (path === "/console/cost") costPage();
  else servicesPage();
})();
