"use strict";
// Small SVG charts drawn in the browser: time series lines/steps/bars with an optional band, and
// horizontal bars. No library: every chart is a few SVG elements.
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#0b5cab", "#e8710a", "#1a7f37", "#a142f4", "#c62828", "#12a4af", "#795548"];

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
  return 10 * p;
}

function fmtTime(t, span) {
  const d = new Date(t * 1000);
  const hm = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
  if (span > 2 * 86400) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
  if (span < 600) return d.toLocaleTimeString([], {hour12: false});
  return hm;
}

function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return (+v.toFixed(2)).toString();
}

// A time chart. spec: {title, t: [epoch s], series: [{name, values, color, step, bars, dash}],
// band: {lower, upper, name}, yLabel, now}
function timeChart(container, spec) {
  container.textContent = "";
  container.classList.add("chart");
  const h3 = document.createElement("h3");
  h3.textContent = spec.title;
  container.appendChild(h3);
  const W = 560, H = 200, L = 44, R = 10, T = 8, B = 22;
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title}, container);
  const t = spec.t || [];
  const t0 = spec.start !== undefined ? spec.start : (t.length ? t[0] : 0);
  const t1 = spec.end !== undefined ? spec.end : (t.length ? t[t.length - 1] : 1);
  const span = Math.max(t1 - t0, 1);
  let ymax = 0;
  for (const s of spec.series) for (const v of s.values) if (v !== null && v > ymax) ymax = v;
  if (spec.band) for (const v of spec.band.upper) if (v !== null && v > ymax) ymax = v;
  ymax = niceMax(ymax);
  const x = (tt) => L + (W - L - R) * (tt - t0) / span;
  const y = (v) => T + (H - T - B) * (1 - v / ymax);
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    svgEl("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline"}, svg);
    svgEl("text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, svg).textContent = fmtNum(v);
  }
  svgEl("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}, svg);
  for (let i = 0; i <= 4; i++) {
    const tt = t0 + span * i / 4;
    svgEl("text", {x: x(tt), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"}, svg)
      .textContent = fmtTime(tt, span);
  }
  if (spec.now !== undefined && spec.now > t0 && spec.now < t1) {
    svgEl("line", {x1: x(spec.now), x2: x(spec.now), y1: T, y2: H - B, stroke: "#9aa5b1", "stroke-dasharray": "3 3"}, svg);
  }
  if (spec.band && spec.band.t) {
    const bt = spec.band.t, up = spec.band.upper, lo = spec.band.lower;
    const top = [], bottom = [];
    for (let i = 0; i < bt.length; i++) {
      if (up[i] === null || lo[i] === null) continue;
      top.push(`${x(bt[i]).toFixed(1)},${y(up[i]).toFixed(1)}`);
      bottom.unshift(`${x(bt[i]).toFixed(1)},${y(lo[i]).toFixed(1)}`);
    }
    if (top.length) svgEl("polygon", {points: top.concat(bottom).join(" "), fill: "#0b5cab", "fill-opacity": 0.13}, svg);
  }
  spec.series.forEach((s, k) => {
    const color = s.color || COLORS[k % COLORS.length];
    const st = s.t || t;
    if (s.bars) {
      const w = Math.max(1, (W - L - R) / Math.max(st.length, 1) - 0.5);
      st.forEach((tt, i) => {
        const v = s.values[i];
        if (v) svgEl("rect", {x: x(tt), y: y(v), width: w, height: H - B - y(v), fill: color}, svg);
      });
      return;
    }
    let d = "", pen = false;
    st.forEach((tt, i) => {
      const v = s.values[i];
      if (v === null || v === undefined) { pen = false; return; }
      if (!pen) d += `M${x(tt).toFixed(1)},${y(v).toFixed(1)}`;
      else if (s.step) d += `H${x(tt).toFixed(1)}V${y(v).toFixed(1)}`;
      else d += `L${x(tt).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    // data-max / data-last: what the line shows, for people reading the DOM (and the tests)
    const shown = s.values.filter((v) => v !== null && v !== undefined);
    if (d) svgEl("path", {d, fill: "none", stroke: color, "stroke-width": s.width || 1.6,
      "stroke-dasharray": s.dash || "", "data-series": s.name,
      "data-max": Math.max(...shown), "data-last": shown[shown.length - 1]}, svg);
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  const items = spec.series.map((s, k) => [s.name, s.color || COLORS[k % COLORS.length]]);
  if (spec.band) items.push([spec.band.name || "band", "#9cc2ea"]);
  for (const [name, color] of items) {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = color;
    item.append(sw, name);
    legend.appendChild(item);
  }
  container.appendChild(legend);
}

// Horizontal bars: rows [{label, value}] with a value formatter.
function barChart(container, title, rows, format) {
  container.textContent = "";
  container.classList.add("chart");
  const h3 = document.createElement("h3");
  h3.textContent = title;
  container.appendChild(h3);
  const W = 560, row = 22, L = 150, R = 80;
  const H = Math.max(row * rows.length + 8, 30);
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title}, container);
  const max = Math.max(...rows.map((r) => r.value), 0) || 1;
  rows.forEach((r, i) => {
    const yy = 4 + i * row;
    svgEl("text", {x: L - 6, y: yy + 14, "text-anchor": "end"}, svg).textContent = r.label;
    svgEl("rect", {x: L, y: yy + 3, width: Math.max(1, (W - L - R) * r.value / max), height: row - 8,
      fill: COLORS[i % COLORS.length]}, svg);
    svgEl("text", {x: L + (W - L - R) * r.value / max + 6, y: yy + 14}, svg).textContent = format(r.value);
  });
  if (!rows.length) svgEl("text", {x: 10, y: 18}, svg).textContent = "nothing in this window";
}
