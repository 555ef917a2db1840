// Small SVG charts: a value over epochs, the Laplacian spectrum with its eigengap, and the cluster
// lineage across epochs. Text goes into SVG elements through textContent.

import { svg } from "./dom.js";

function extent(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const value of values) {
    if (value === null || !Number.isFinite(value)) continue;
    low = Math.min(low, value);
    high = Math.max(high, value);
  }
  if (low === Infinity) return [0, 1];
  if (low === high) return [low - 1, high + 1];
  return [low, high];
}

function format(value) {
  if (value === null || !Number.isFinite(value)) return "–";
  return Math.abs(value) >= 100 || Number.isInteger(value) ? String(Math.round(value * 100) / 100) : value.toFixed(3);
}

/**
 * A line over epochs with one marker per point (green: correct prediction, red: wrong).
 * @param {{xs: number[], ys: (number|null)[], good?: boolean[], current?: number, label: string,
 *          onPick?: (x: number) => void}} options
 */
export function lineChart({ xs, ys, good, current, label, onPick, marks = [] }) {
  const width = 560;
  const height = 170;
  const margin = { left: 48, right: 12, top: 22, bottom: 30 };
  const [x0, x1] = xs.length > 1 ? extent(xs) : [xs[0] - 1, xs[0] + 1];
  const [y0, y1] = extent(ys);
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - margin.top - margin.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
  root.append(svg("line", { x1: margin.left, y1: height - margin.bottom, x2: width - margin.right, y2: height - margin.bottom, class: "axis" }));
  root.append(svg("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: height - margin.bottom, class: "axis" }));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    root.append(svg("text", { x: margin.left - 6, y: sy(y) + 4, class: "tick", "text-anchor": "end", text: format(y) }));
  }
  const step = Math.max(1, Math.ceil(xs.length / 10));
  xs.forEach((x, i) => {
    if (i % step === 0 || i === xs.length - 1) {
      root.append(svg("text", { x: sx(x), y: height - margin.bottom + 14, class: "tick", "text-anchor": "middle", text: String(x) }));
    }
  });
  root.append(svg("text", { x: (margin.left + width - margin.right) / 2, y: height - 3, class: "axis-label", "text-anchor": "middle", text: "epoch" }));
  root.append(svg("text", { x: margin.left + 6, y: 11, class: "axis-label", text: label }));
  if (current !== undefined && current !== null && current >= x0 && current <= x1) {
    root.append(svg("line", { x1: sx(current), x2: sx(current), y1: margin.top, y2: height - margin.bottom, class: "current" }));
  }
  // marks on the epoch axis, e.g. where a revision started: {x, text}
  for (const mark of marks) {
    if (mark.x < x0 || mark.x > x1) continue;
    const line = svg("line", { x1: sx(mark.x), x2: sx(mark.x), y1: margin.top, y2: height - margin.bottom, class: "mark" });
    line.append(svg("title", { text: mark.text }));
    root.append(line, svg("text", { x: sx(mark.x) + 3, y: margin.top + 9, class: "mark-label", text: mark.short || mark.text }));
  }
  const points = xs.map((x, i) => [x, ys[i]]).filter(([, y]) => y !== null && Number.isFinite(y));
  if (points.length > 1) {
    root.append(svg("polyline", { points: points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), class: "line" }));
  }
  xs.forEach((x, i) => {
    const y = ys[i];
    if (y === null || !Number.isFinite(y)) return;
    const ok = good ? good[i] : true;
    const dot = svg("circle", { cx: sx(x), cy: sy(y), r: 4, class: ok ? "dot good" : "dot bad",
      tabindex: onPick ? 0 : null,
      onclick: onPick ? () => onPick(x) : null,
      onkeydown: onPick ? (event) => { if (event.key === "Enter") onPick(x); } : null });
    dot.append(svg("title", { text: `epoch ${x}: ${label} ${format(y)}${good ? (ok ? " (correct)" : " (misclassified)") : ""}` }));
    root.append(dot);
  });
  return root;
}

/** Smallest Laplacian eigenvalues, ascending, with the largest gap (after eigenvalue k) marked. */
export function spectrumChart({ eigenvalues, k, label }) {
  const width = 320;
  const height = 170;
  const margin = { left: 44, right: 10, top: 16, bottom: 30 };
  const values = eigenvalues.map((value) => (value === null ? NaN : value));
  const [y0, y1] = extent(values.concat([0]));
  const n = values.length;
  const sx = (i) => margin.left + ((i + 0.5) / Math.max(n, 1)) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - margin.top - margin.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart spectrum", role: "img", "aria-label": label });
  root.append(svg("line", { x1: margin.left, y1: height - margin.bottom, x2: width - margin.right, y2: height - margin.bottom, class: "axis" }));
  root.append(svg("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: height - margin.bottom, class: "axis" }));
  for (const y of [y0, y1]) root.append(svg("text", { x: margin.left - 5, y: sy(y) + 4, class: "tick", "text-anchor": "end", text: format(y) }));
  if (k > 0 && k < n) {
    const top = sy(values[k]);
    const bottom = sy(values[k - 1]);
    root.append(svg("rect", { x: sx(k - 1), y: top, width: sx(k) - sx(k - 1), height: Math.max(1, bottom - top), class: "gap" }));
    root.append(svg("text", { x: sx(k) + 8, y: Math.min(bottom, top + 14), class: "gap-label",
      "text-anchor": "start", text: `eigengap → k = ${k}` }));
  }
  values.forEach((value, i) => {
    if (!Number.isFinite(value)) return;
    const dot = svg("circle", { cx: sx(i), cy: sy(value), r: 3.5, class: i < k ? "dot before" : "dot" });
    dot.append(svg("title", { text: `λ${i + 1} = ${format(value)}` }));
    root.append(dot);
    if (n <= 16 || i % Math.ceil(n / 12) === 0) {
      root.append(svg("text", { x: sx(i), y: height - margin.bottom + 14, class: "tick", "text-anchor": "middle", text: String(i + 1) }));
    }
  });
  root.append(svg("text", { x: (margin.left + width - margin.right) / 2, y: height - 3, class: "axis-label", "text-anchor": "middle", text: "eigenvalue index" }));
  return root;
}

/**
 * Clusters per analysed epoch (columns), sized by members; lines join a cluster to the previous
 * epoch's clusters it came from. Flagged clusters have a red ring.
 */
export function lineageChart({ epochs, current, colorOf, onPick }) {
  const rows = Math.max(1, ...epochs.map((entry) => entry.clusters.length));
  const dx = Math.max(26, Math.min(70, 900 / Math.max(epochs.length, 1)));
  const dy = 30;
  const margin = { left: 24, right: 24, top: 16, bottom: 26 };
  const width = margin.left + margin.right + dx * Math.max(epochs.length - 1, 0);
  const height = margin.top + margin.bottom + dy * (rows - 1);
  const largest = Math.max(1, ...epochs.flatMap((entry) => entry.clusters.map((c) => c.size || 0)));
  const position = new Map();
  epochs.forEach((entry, column) => {
    entry.clusters.forEach((cluster, row) => {
      position.set(`${entry.epoch}:${cluster.cluster}`, [margin.left + column * dx, margin.top + row * dy]);
    });
  });
  const root = svg("svg", { viewBox: `0 0 ${Math.max(width, 60)} ${height}`, width: Math.max(width, 60), height,
    class: "chart lineage", role: "img", "aria-label": "cluster lineage across epochs" });
  epochs.forEach((entry, column) => {
    const x = margin.left + column * dx;
    if (entry.epoch === current) {
      root.append(svg("rect", { x: x - dx / 2, y: 0, width: dx, height, class: "current-column" }));
    }
    if (epochs.length <= 20 || column % Math.ceil(epochs.length / 20) === 0 || entry.epoch === current) {
      root.append(svg("text", { x, y: height - 6, class: "tick", "text-anchor": "middle", text: String(entry.epoch) }));
    }
  });
  epochs.forEach((entry, column) => {
    if (column === 0) return;
    const previous = epochs[column - 1].epoch;
    for (const cluster of entry.clusters) {
      const [x, y] = position.get(`${entry.epoch}:${cluster.cluster}`);
      for (const source of cluster.sources || []) {
        const from = position.get(`${previous}:${source}`);
        if (!from) continue;
        root.append(svg("line", { x1: from[0], y1: from[1], x2: x, y2: y, class: cluster.event === "continued" ? "edge" : "edge changed" }));
      }
    }
  });
  for (const entry of epochs) {
    for (const cluster of entry.clusters) {
      const [x, y] = position.get(`${entry.epoch}:${cluster.cluster}`);
      const radius = 3 + 8 * Math.sqrt((cluster.size || 0) / largest);
      const node = svg("circle", { cx: x, cy: y, r: radius, fill: colorOf(cluster.cluster),
        class: cluster.flagged ? "node flagged" : "node", tabindex: 0,
        onclick: () => onPick(entry.epoch, cluster.cluster),
        onkeydown: (event) => { if (event.key === "Enter") onPick(entry.epoch, cluster.cluster); } });
      const reason = cluster.flagged ? ` — flagged: ${cluster.flag_reason || "suspicious relevance"}` : "";
      node.append(svg("title", { text: `epoch ${entry.epoch}, cluster ${cluster.cluster} (${cluster.size} samples, ${cluster.event}${cluster.sources && cluster.sources.length ? ` from ${cluster.sources.join(", ")}` : ""})${reason}` }));
      root.append(node);
    }
  }
  return root;
}
