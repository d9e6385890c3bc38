// A stacked bar chart drawn as inline SVG by our own code: one bar per day, one
// segment per fee kind. No library, no canvas: it scales with the page and each
// segment carries a <title> so hovering tells the exact amount.

import {h} from "./dom.js";
import {label, won, wonShort} from "./format.js";

const SVG = "http://www.w3.org/2000/svg";

/** The colour of each fee kind, shared by the chart and the tables' swatches. */
export const KIND_COLOURS = {
  tax: "#4e79a7",
  platform_fee: "#f28e2b",
  early_repayment_fee: "#e15759",
  deferred_fee: "#76b7b2",
  upfront_fee: "#59a14f",
  withdrawal_fee: "#b07aa1",
};

export function kindColour(kind) {
  return KIND_COLOURS[kind] ?? "#9c9c9c";
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) {
    el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** A "nice" axis maximum and step: 1, 2 or 5 times a power of ten. */
function niceScale(max, ticks = 4) {
  if (max <= 0) return {top: 1, step: 1};
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return {top: Math.ceil(max / step) * step, step};
}

/**
 * series: [{day: "2026-11-23", perKind: {tax: 1200, ...}}], oldest first.
 * kinds: the kinds to stack, bottom first.
 */
export function stackedBars(series, kinds, {width = 640, height = 240, onPick} = {}) {
  const left = 64;
  const right = 8;
  const bottom = 28;
  const top = 12;
  // Each day gets an equal slot; the bar takes part of it, never wider than 56.
  const slot = (width - left - right) / Math.max(series.length, 1);
  const barWidth = Math.min(56, slot * 0.62);
  const plotHeight = height - top - bottom;
  const totals = series.map((s) => kinds.reduce((sum, k) => sum + Number(s.perKind[k] ?? 0), 0));
  const {top: yMax, step} = niceScale(Math.max(0, ...totals));
  const y = (v) => top + plotHeight - (v / yMax) * plotHeight;

  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "settled amount per day and fee kind",
  });
  for (let v = 0; v <= yMax + step / 2; v += step) {
    root.appendChild(svg("line", {x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid-line"}));
    root.appendChild(svg("text", {x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end"}, wonShort(v)));
  }
  series.forEach((s, i) => {
    const x = left + i * slot + (slot - barWidth) / 2;
    const bar = svg("g", {class: "bar", "data-day": s.day});
    let base = 0;
    for (const kind of kinds) {
      const amount = Number(s.perKind[kind] ?? 0);
      if (amount <= 0) continue;
      const rect = svg("rect", {
        x,
        y: y(base + amount),
        width: barWidth,
        height: Math.max(1, y(base) - y(base + amount)),
        fill: kindColour(kind),
      });
      rect.appendChild(svg("title", {}, `${s.day} · ${label(kind)}: ${won(amount)}`));
      bar.appendChild(rect);
      base += amount;
    }
    bar.appendChild(svg("text", {x: x + barWidth / 2, y: height - 10, class: "axis", "text-anchor": "middle"}, s.day.slice(5)));
    if (onPick) bar.addEventListener("click", () => onPick(s.day));
    root.appendChild(bar);
  });
  if (series.length === 0) {
    root.appendChild(svg("text", {x: width / 2, y: height / 2, class: "axis", "text-anchor": "middle"}, "no settled days yet"));
  }
  return root;
}

/** The legend under a chart: a swatch and a name per kind. */
export function legend(kinds) {
  return h(
    "ul",
    {class: "legend"},
    kinds.map((kind) => h("li", {}, h("span", {class: "swatch", style: `background:${kindColour(kind)}`}), label(kind))),
  );
}
