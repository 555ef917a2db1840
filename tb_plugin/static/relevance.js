// Relevance of the runs that are not images, drawn as people expect each modality:
//   signal   the input as a line over time steps coloured by their relevance (SVG);
//   tabular  one bar per named feature, to the right for relevance for the class, left against;
//   tokens   the text, each token highlighted by its relevance.
// The colours come from the server (/relevance, /trajectory): each value's colour in the chosen colour
// map of lrp_lightning.image, scaled per sample and epoch as the heatmap PNGs are. Hovering a time step,
// feature or token shows its value in the readout (and in the element's title). Used by the gallery
// (compact cards), the timeline (the open sample in detail, and over the epochs), the clusters panel (a
// cluster's prototype: a line, bars, or its most relevant tokens with their share of the relevance) and the
// findings panel (a finding's members' mean, drawn the same way).

import { getJSON } from "./api.js";
import { h, replace, svg } from "./dom.js";

export const NONIMAGE = ["signal", "tabular", "tokens"];
const NONFINITE = "#ffeb3b"; // NaN or infinite relevance: yellow, in no colour map
const DETAIL_WIDTH = 720;
const DETAIL_BINS = 2 * DETAIL_WIDTH;
const PROTOTYPE_TOKENS = 5; // the most relevant tokens a token cluster's prototype lists

/** Whether the open run's relevance is drawn from values (signals, tabular, tokens) instead of PNGs. */
export function isSequenceRun(app) {
  return Boolean(app.info && NONIMAGE.includes(app.info.modality));
}

/** A sample's relevance in one epoch ({relevance, colors, scale, input, labels, token_ids}); cached by the browser. */
export function fetchRelevance(app, id, epoch = app.state.epoch, bins = null) {
  const entry = app.info.epochs.find((e) => e.epoch === epoch);
  return getJSON("relevance", { run: app.state.run, epoch, sample: id, cmap: app.state.cmap, bins, v: entry ? entry.version : null });
}

/**
 * At most `bins` values of a signal for drawing: per equal run of time steps, the index of its value of largest
 * magnitude (a peak stays visible; not finite counts as largest). All indices when there are no more values than bins.
 */
function peakIndices(values, bins) {
  const count = values.length;
  if (count <= bins) return values.map((_, i) => i);
  const chosen = [];
  for (let b = 0; b < bins; b += 1) {
    const start = Math.floor((b * count) / bins);
    const stop = Math.floor(((b + 1) * count) / bins);
    let best = start;
    for (let i = start; i < stop; i += 1) {
      const size = values[i] === null ? Infinity : Math.abs(values[i]);
      const bestSize = values[best] === null ? Infinity : Math.abs(values[best]);
      if (size > bestSize) best = i;
    }
    chosen.push(best);
  }
  return chosen;
}

/** A sample's relevance in every epoch (/trajectory). */
export function fetchTrajectory(app, id) {
  // A long signal comes as its peaks, two per pixel of the detail's drawing.
  const bins = app.info.modality === "signal" ? DETAIL_BINS : null;
  return app.fetchCached("json", "trajectory", { run: app.state.run, sample: id, cmap: app.state.cmap, bins });
}

export function formatValue(value) {
  if (value === null || value === undefined) return "not finite";
  const text = Math.abs(value) >= 1000 || (value !== 0 && Math.abs(value) < 0.001) ? value.toExponential(2) : value.toFixed(3);
  return value > 0 ? `+${text}` : text;
}

function textColor(background) {
  if (!background) return "#000";
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(background.slice(i, i + 2), 16) / 255);
  return 0.299 * r + 0.587 * g + 0.114 * b > 0.55 ? "#000" : "#fff";
}

/** Name of the i-th value: a token, a feature, or the time steps it covers. */
export function itemName(app, data, i) {
  const modality = data.modality;
  if (modality === "tokens") {
    const text = data.labels ? data.labels[i] : `#${data.token_ids[i]}`;
    return `token ${JSON.stringify(text)} (position ${i})`;
  }
  if (modality === "tabular") return `feature ${featureName(data, i)}`;
  const shape = app.info.input_shape;
  const length = shape && shape.length ? shape[shape.length - 1] : data.relevance.length;
  const count = data.relevance.length;
  const first = Math.floor((i * length) / count);
  const last = Math.max(first, Math.floor(((i + 1) * length) / count) - 1);
  const binned = data.length !== undefined && data.length > count; // each value: the peak of its steps
  return first === last ? `time step ${first}` : `time steps ${first}–${last}${binned ? " (largest value)" : ""}`;
}

function featureName(data, i) {
  return data.labels && data.labels.length === data.relevance.length ? data.labels[i] : `feature ${i}`;
}

// ------------------------------------------------------------------------------ tokens

function tokenStrip(app, data, { plain, compact, onHover }) {
  const strip = h("div", { class: compact ? "tokens compact" : "tokens", role: "list", "aria-label": "tokens by relevance" });
  const count = Math.min(data.relevance.length, data.labels ? data.labels.length : data.token_ids.length);
  for (let i = 0; i < count; i += 1) {
    const color = plain ? null : data.colors[i] ?? NONFINITE;
    const value = data.relevance[i];
    const token = h("span", {
      class: "token", role: "listitem",
      text: data.labels ? data.labels[i] : `#${data.token_ids[i]}`,
      title: `${itemName(app, data, i)}: relevance ${formatValue(value)}`,
      dataset: { index: String(i), value: value === null ? "nan" : String(value) },
    });
    if (color) {
      token.classList.add("highlighted");
      token.style.backgroundColor = color;
      token.style.color = textColor(color);
    }
    if (onHover) token.addEventListener("mouseenter", () => onHover(i));
    strip.append(token);
  }
  return strip;
}

// ------------------------------------------------------------------------------ signals

function signalPlot(app, data, { plain, width, height, onHover }) {
  const count = data.relevance.length;
  const plot = svg("svg", { class: "signal", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${count} time steps coloured by relevance` });
  if (!plain) {
    // One rectangle per time step, or per run of steps where there are more steps than pixels.
    const band = svg("g", { class: "signal-band" });
    const shown = peakIndices(data.relevance, Math.max(1, Math.floor(width)));
    const step = width / shown.length;
    shown.forEach((i, k) => {
      band.append(svg("rect", { x: (k * step).toFixed(2), y: 0, width: (step + 0.4).toFixed(2), height,
        fill: data.colors[i] ?? NONFINITE, "data-index": i }));
    });
    plot.append(band);
  }
  // The line: the input where the run stored it, else the relevance itself around a middle line.
  const values = data.input ?? data.relevance.map((v) => (data.scale ? 0.5 + (v ?? 0) / (2 * data.scale) : 0.5));
  const pad = 3;
  const points = values.map((v, j) => `${(((j + 0.5) / values.length) * width).toFixed(2)},${(pad + (1 - v) * (height - 2 * pad)).toFixed(2)}`);
  plot.append(svg("polyline", { class: data.input ? "signal-line" : "signal-line relevance-line", points: points.join(" ") }));
  if (onHover) {
    const cursor = svg("line", { class: "signal-cursor hidden", x1: 0, x2: 0, y1: 0, y2: height });
    plot.append(cursor);
    // Moves the cursor to time step (or run of steps) i; the keyboard uses it too (sampleDetail).
    plot.pointAt = (i) => {
      const x = ((i + 0.5) / count) * width;
      cursor.setAttribute("x1", x.toFixed(2));
      cursor.setAttribute("x2", x.toFixed(2));
      cursor.classList.remove("hidden");
    };
    plot.addEventListener("mousemove", (event) => {
      const box = plot.getBoundingClientRect();
      const i = Math.min(count - 1, Math.max(0, Math.floor(((event.clientX - box.left) / box.width) * count)));
      plot.pointAt(i);
      onHover(i);
    });
    plot.addEventListener("mouseleave", () => cursor.classList.add("hidden"));
  }
  return plot;
}

// ------------------------------------------------------------------------------ tabular

function featureBars(app, data, { compact, width, height, onHover }) {
  const scale = data.scale || 1;
  if (compact) {
    // A small bar chart: one bar per feature, up for the class, down against.
    const count = data.relevance.length;
    const chart = svg("svg", { class: "bars compact", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `relevance of ${count} features` });
    const slot = width / Math.max(count, 1);
    const middle = height / 2;
    data.relevance.forEach((value, i) => {
      const size = (Math.abs(value ?? 0) / scale) * (middle - 2);
      const bar = svg("rect", { class: "bar", x: (i * slot + slot * 0.15).toFixed(2), width: (slot * 0.7).toFixed(2),
        y: ((value ?? 0) >= 0 ? middle - size : middle).toFixed(2), height: Math.max(size, 0.5).toFixed(2),
        fill: data.colors[i] ?? NONFINITE, "data-feature": featureName(data, i) });
      bar.append(svg("title", { text: `${featureName(data, i)}: relevance ${formatValue(value)}` }));
      chart.append(bar);
    });
    chart.append(svg("line", { class: "bars-axis", x1: 0, x2: width, y1: middle, y2: middle }));
    return chart;
  }
  // One row per feature: its name, a bar from the middle (right: for the class, left: against), its value.
  const rows = h("div", { class: "feature-bars", role: "list", "aria-label": "relevance per feature" });
  data.relevance.forEach((value, i) => {
    const share = (Math.abs(value ?? 0) / scale) * 50;
    const bar = h("span", { class: (value ?? 0) >= 0 ? "feature-bar positive" : "feature-bar negative" });
    bar.style.width = `${share.toFixed(2)}%`;
    bar.style.backgroundColor = data.colors[i] ?? NONFINITE;
    const row = h("div", { class: "feature-row", role: "listitem", title: `${itemName(app, data, i)}: relevance ${formatValue(value)}`,
      dataset: { feature: featureName(data, i), index: String(i) } },
    h("span", { class: "feature-name", text: featureName(data, i) }),
    h("span", { class: "feature-track" }, bar),
    h("span", { class: "feature-value", text: formatValue(value) }));
    if (onHover) row.addEventListener("mouseenter", () => onHover(i));
    rows.append(row);
  });
  return rows;
}

// ------------------------------------------------------------------------------ entry points

/**
 * The drawing of one sample's relevance.
 * @param {Object} data a /relevance answer (or one epoch of a /trajectory answer)
 * @param {Object} options {compact, plain (no colours: the input only), width, height, onHover(i)}
 */
export function drawRelevance(app, data, options = {}) {
  const { width = 192, height = 96 } = options;
  if (data.modality === "tokens") return tokenStrip(app, data, options);
  if (data.modality === "tabular") return featureBars(app, data, { ...options, width, height });
  return signalPlot(app, data, { ...options, width, height });
}

/** One epoch of a /trajectory answer in the shape of a /relevance answer. */
export function epochOf(trajectory, index) {
  return {
    modality: trajectory.modality, input: trajectory.input, labels: trajectory.labels, token_ids: trajectory.token_ids,
    length: trajectory.length,
    epoch: trajectory.epochs[index], relevance: trajectory.relevance[index], colors: trajectory.colors[index],
    scale: trajectory.scale[index],
  };
}

// ------------------------------------------------------------------------------ cluster prototypes

function percentShare(value) {
  if (value === null || value === undefined) return "not finite";
  const text = `${(Math.abs(value) * 100).toFixed(Math.abs(value) < 0.095 ? 1 : 0)}%`;
  return value < 0 ? `−${text}` : text;
}

/**
 * A token cluster's prototype as text people read: its most relevant tokens (by the members' mean share of
 * their relevance, for the class when positive, against it when negative), each highlighted in its colour.
 */
function tokenShares(data) {
  const order = data.relevance.map((v, i) => i).filter((i) => data.relevance[i] !== 0)
    .sort((a, b) => Math.abs(data.relevance[b] ?? Infinity) - Math.abs(data.relevance[a] ?? Infinity));
  const list = h("ol", { class: "token-shares", "aria-label": "the most relevant tokens with their share of the relevance" });
  for (const i of order.slice(0, PROTOTYPE_TOKENS)) {
    const color = data.colors[i] ?? NONFINITE;
    const value = data.relevance[i];
    const token = h("span", { class: "token highlighted", text: data.labels[i] });
    token.style.backgroundColor = color;
    token.style.color = textColor(color);
    list.append(h("li", { dataset: { token: data.labels[i], share: value === null ? "nan" : String(value) },
      title: `${data.labels[i] === "other tokens" ? "all other tokens" : `token ${JSON.stringify(data.labels[i])}`}: ${percentShare(value)} of the members' relevance on average` },
    token, h("span", { class: "share", text: percentShare(value) })));
  }
  if (!order.length) list.append(h("li", { class: "muted", text: "no relevance" }));
  return list;
}

/**
 * A signal, tabular or token cluster's prototype in one epoch (/prototype_values), or a finding's members' mean
 * (/finding_values, with `route`): a placeholder now, then a relevance line over the time steps, one bar per
 * feature, or the most relevant tokens with their share of the relevance.
 */
export function prototypePicture(app, params, title, route = "prototype_values") {
  const modality = app.info.modality;
  const dataset = { epoch: String(params.epoch) };
  if (params.cluster !== undefined) dataset.cluster = String(params.cluster);
  if (params.finding !== undefined) dataset.finding = params.finding;
  const holder = h("span", { class: `prototype-values ${modality}`, title, dataset });
  const run = app.state.run;
  getJSON(route, params).then((data) => {
    if (run !== app.state.run) return;
    replace(holder, modality === "tokens" ? tokenShares(data)
      : drawRelevance(app, data, { compact: true, width: 96, height: 36 }));
    holder.dataset.ready = "true";
  }).catch((error) => {
    replace(holder, h("span", { class: "error", text: error.message }));
    holder.dataset.ready = "error";
  });
  return holder;
}

/** A gallery card's picture: a placeholder now, the drawing when the values are here. */
export function galleryPicture(app, id, kind, size) {
  const holder = h("span", { class: `sequence-card ${app.info.modality}`, dataset: { sample: String(id) } });
  holder.style.width = `${2 * size}px`;
  // Text takes the lines it needs (up to the card's size); drawings take the whole card.
  if (app.info.modality === "tokens") holder.style.maxHeight = `${size}px`;
  else holder.style.height = `${size}px`;
  const run = app.state.run;
  fetchRelevance(app, id, app.state.epoch, app.info.modality === "signal" ? 2 * size : null).then((data) => {
    if (run !== app.state.run) return;
    replace(holder, drawRelevance(app, data, { compact: true, plain: kind === "input", width: 2 * size, height: size }));
    holder.dataset.ready = "true";
  }).catch((error) => {
    replace(holder, h("span", { class: "error", text: error.message }));
    holder.dataset.ready = "error";
  });
  return holder;
}

/**
 * The open sample in detail (the current epoch, with a readout of the hovered value) and its relevance
 * over the epochs, one row each (a click goes to that epoch). Replaces the timeline's picture strip.
 */
export function sampleDetail(app, id) {
  const holder = h("div", { class: "sequence-detail", dataset: { sample: String(id) } },
    h("p", { class: "muted", text: "Loading the relevance…" }));
  const run = app.state.run;
  fetchTrajectory(app, id).then((trajectory) => {
    if (run !== app.state.run || app.state.sample !== id) return;
    const s = app.state;
    const plain = s.view === "input";
    let index = trajectory.epochs.indexOf(s.epoch);
    if (index < 0) index = trajectory.epochs.length - 1;
    const current = epochOf(trajectory, index);
    const readout = h("div", { class: "relevance-readout", role: "status",
      text: "Hover a value, or focus the drawing and use the arrow keys, to read it." });
    let shown = -1;
    const show = (i) => {
      shown = i;
      readout.textContent = `${itemName(app, current, i)}: relevance ${formatValue(current.relevance[i])}`;
    };
    const drawing = drawRelevance(app, current, { plain, width: DETAIL_WIDTH, height: 160, onHover: show });
    // The keyboard reads the values one by one: ← →, Home, End.
    const stage = h("div", { class: "relevance-stage", tabindex: "0", role: "group",
      "aria-label": "relevance of each value; the arrow keys move from one to the next" }, drawing);
    stage.addEventListener("keydown", (event) => {
      const last = current.relevance.length - 1;
      const moves = { ArrowRight: shown + 1, ArrowLeft: shown - 1, Home: 0, End: last };
      if (!(event.key in moves) || last < 0) return;
      event.preventDefault();
      const i = Math.min(last, Math.max(0, moves[event.key]));
      show(i);
      if (drawing.pointAt) drawing.pointAt(i);
      stage.querySelectorAll(".keyed").forEach((e) => e.classList.remove("keyed"));
      const item = stage.querySelector(`[data-index="${i}"]:not(rect)`);
      if (item) item.classList.add("keyed");
    });
    const focus = h("div", { class: "sequence-focus" },
      h("div", { class: "panel-head" },
        h("h3", { text: `Epoch ${current.epoch}` }),
        h("span", { class: "muted", text: `colours scaled to ±${formatValue(current.scale).replace("+", "")}` })),
      stage,
      readout);
    const rows = trajectory.epochs.map((epoch, i) => h("button", {
      type: "button", class: `epoch-row${epoch === s.epoch ? " current" : ""}`, dataset: { epoch: String(epoch) },
      title: `Show epoch ${epoch}`, onclick: () => app.setEpoch(epoch),
    },
    h("span", { class: "epoch-row-label", text: `epoch ${epoch}` }),
    drawRelevance(app, epochOf(trajectory, i), { compact: true, plain, width: 480, height: 36 })));
    const problems = trajectory.unreadable.map((u) => h("p", { class: "error", text: `epoch ${u.epoch}: ${u.error}` }));
    replace(holder, focus, h("div", { class: "epoch-rows", "aria-label": "relevance over the epochs" }, rows), problems);
    holder.dataset.ready = "true";
  }).catch((error) => {
    replace(holder, h("p", { class: "error", text: error.message }));
    holder.dataset.ready = "error";
  });
  return holder;
}
