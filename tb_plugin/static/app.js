// The LRP tab: selectors, embedding scatter, clusters, gallery and sample timeline.

import { RequestError, getColumns, getJSON, url } from "./api.js";
import { lineChart, lineageChart, spectrumChart } from "./charts.js";
import { download, field, h, replace, select, setOptions } from "./dom.js";
import { Scatter } from "./scatter.js";
import { decodeIds, encodeIds, initialState, listenToHost, shareLink, writeState } from "./state.js";

// Categorical colours (Tableau 20 order, dark shades first), grey for noise and unclustered points.
const PALETTE = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
  [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
  [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
  [219, 219, 141], [158, 218, 229],
];
const NOISE = [165, 165, 165];
const UNCLUSTERED = [215, 215, 215];
const CORRECT = [46, 125, 50];
const WRONG = [211, 47, 47];
const COLOR_BY = [
  { value: "cluster", label: "cluster" },
  { value: "label", label: "label" },
  { value: "prediction", label: "prediction" },
  { value: "correct", label: "correctness" },
];
// Probe metadata columns (LRPCallback(probe_metadata=...)) colour the scatter as `meta:<name>`, when their
// values fall into a few categories: booleans, and strings or numbers with at most MAX_CATEGORIES values.
const META_PREFIX = "meta:";
const MAX_CATEGORIES = 20;
const MAX_TOOLTIP_METADATA = 6;
const VIEWS = [
  { value: "input", label: "Input" },
  { value: "heatmap", label: "Heatmap" },
  { value: "overlay", label: "Overlay" },
];
const PAGE_SIZES = [24, 48, 96, 192];
const IMAGE_SIZES = [64, 96, 128, 192];
const PLAY_INTERVAL_MS = 900;
const REFRESH_MS = 15000;
const PROTOTYPE_COLUMNS = 8;
const MAX_HASH_IDS = 2000;

function css([r, g, b]) {
  return `rgb(${r}, ${g}, ${b})`;
}

function clusterColor(cluster) {
  if (cluster === -1) return NOISE;
  if (cluster < 0) return UNCLUSTERED;
  return PALETTE[cluster % PALETTE.length];
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function integer(text, fallback) {
  const value = Number.parseInt(text, 10);
  return Number.isFinite(value) && String(value) === String(text).trim() ? value : fallback;
}

function pick(value, options, fallback) {
  return options.some((option) => String(option.value ?? option) === String(value)) ? value : fallback;
}

/** A metadata value as text: null (NaN or missing) as a dash. */
function metaText(value) {
  if (value === null || value === undefined) return "–";
  // a measured number reads better with 4 significant digits; integers and text as they are
  if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(4)));
  return String(value);
}

/** A value as a CSV cell: empty for null, text otherwise, quoted when it holds a comma, quote or line break. */
function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  return String(a).localeCompare(String(b));
}

/**
 * The samples payload's metadata columns ({name: [value per row]}) with their colour categories:
 * [{name, values, categories}], categories being the sorted distinct values, or null when there are
 * too many (or none) to colour by.
 */
function prepareMetadata(columns) {
  const result = [];
  for (const [name, values] of Object.entries(columns || {})) {
    if (!Array.isArray(values)) continue;
    const distinct = new Set();
    let colourable = true;
    for (const value of values) {
      if (value === null || value === undefined) continue;
      if (!["boolean", "number", "string"].includes(typeof value)) colourable = false;
      distinct.add(value);
      if (distinct.size > MAX_CATEGORIES) colourable = false;
      if (!colourable) break;
    }
    const categories = colourable && distinct.size ? [...distinct].sort(compareValues) : null;
    result.push({ name, values, categories });
  }
  return result;
}

/** Index sample ids of a columns payload: Map id -> row. */
function indexIds(ids) {
  const map = new Map();
  for (let i = 0; i < ids.length; i += 1) map.set(Number(ids[i]), i);
  return map;
}

export class App {
  constructor(root) {
    this.root = root;
    const initial = initialState();
    this.state = {
      run: initial.run ?? null,
      epoch: initial.epoch === undefined ? null : integer(initial.epoch, null),
      cat: initial.cat ?? "all",
      emb: initial.emb ?? null,
      ex: integer(initial.ex ?? "", 1),
      ey: integer(initial.ey ?? "", 2),
      clu: initial.clu ?? null,
      // A metadata column is checked once the run's samples are loaded (renderSelectors).
      color: String(initial.color ?? "").startsWith(META_PREFIX) ? initial.color : pick(initial.color, COLOR_BY, "cluster"),
      cmap: initial.cmap ?? "bwr",
      view: pick(initial.view, VIEWS, "heatmap"),
      px: initial.px !== "0",
      size: integer(initial.size ?? "", 96),
      psize: integer(initial.psize ?? "", 48),
      page: integer(initial.page ?? "", 0),
      wrong: initial.wrong === "1",
      sel: new Set(decodeIds(initial.sel)),
      selc: new Set(decodeIds(initial.selc)),
      sample: initial.sample === undefined ? null : integer(initial.sample, null),
    };
    if (!IMAGE_SIZES.includes(this.state.size)) this.state.size = 96;
    if (!PAGE_SIZES.includes(this.state.psize)) this.state.psize = 48;
    this.info = null;
    this.runs = [];
    this.samples = null;
    this.analysis = null;
    this.points = null;
    this.clusters = null;
    this.lineage = null;
    this.token = 0;
    this.player = null;
    this.responses = new Map();
    this.hoverTimer = 0;
    this._build();
  }

  // ------------------------------------------------------------------------------ layout

  _build() {
    const s = this.state;
    this.controls = {
      run: select([], null, { id: "run", onchange: (event) => this.setRun(event.target.value) }),
      epoch: h("input", { id: "epoch", type: "range", min: 0, max: 0, step: 1, value: 0,
        "aria-label": "epoch", oninput: (event) => this.setEpochIndex(Number(event.target.value)) }),
      play: h("button", { id: "play", type: "button", text: "▶ Play", title: "play through the epochs",
        onclick: () => this.togglePlay() }),
      epochLabel: h("output", { id: "epoch-label", class: "epoch-label", "aria-live": "polite" }),
      category: select([], s.cat, { id: "category", onchange: (event) => this.update({ cat: event.target.value, page: 0 }, "scatter") }),
      embedding: select([], s.emb, { id: "embedding", onchange: (event) => this.update({ emb: event.target.value }, "scatter") }),
      ex: select([], s.ex, { id: "dim-x", onchange: (event) => this.update({ ex: Number(event.target.value) }, "scatter") }),
      ey: select([], s.ey, { id: "dim-y", onchange: (event) => this.update({ ey: Number(event.target.value) }, "scatter") }),
      clustering: select([], s.clu, { id: "clustering", onchange: (event) => this.update({ clu: event.target.value, selc: new Set() }, "scatter") }),
      color: select(COLOR_BY, s.color, { id: "color-by", onchange: (event) => this.update({ color: event.target.value }, "colors") }),
      cmap: select([], s.cmap, { id: "cmap", onchange: (event) => this.update({ cmap: event.target.value }, "images") }),
      share: h("button", { id: "share", type: "button", text: "Copy link", title: "copy a link to this view",
        onclick: () => this.share() }),
    };
    const c = this.controls;
    this.dims = h("span", { class: "dims hidden" }, field("x", c.ex), field("y", c.ey));
    this.status = h("div", { id: "status", class: "status", role: "status" });
    const header = h("header", { class: "toolbar" },
      field("Run", c.run),
      h("div", { class: "field epoch-field" }, h("span", { class: "field-label", text: "Epoch" }), c.epoch, c.play, c.epochLabel),
      field("Category", c.category),
      field("Embedding", c.embedding), this.dims,
      field("Clustering", c.clustering),
      field("Colour by", c.color),
      field("Colour map", c.cmap),
      c.share);

    // Embedding scatter and its legend / cluster quick-select.
    this.scatter = new Scatter({
      onHover: (index, x, y) => this.showTooltip(index, x, y),
      onSelect: (indices, mode) => this.selectIndices(indices, mode),
      onToggle: (index) => this.toggleIndex(index),
      onActivate: (index) => this.openTimeline(Number(this.points.columns.sample_id[index])),
    });
    this.scatterInfo = h("span", { id: "scatter-info", class: "muted" });
    this.scatterMessage = h("div", { class: "message hidden" });
    this.legend = h("div", { id: "legend", class: "legend", role: "group", "aria-label": "clusters and colours" });
    this.tooltip = h("div", { id: "tooltip", class: "tooltip hidden", role: "tooltip" });
    const scatterPanel = h("section", { class: "panel scatter-panel", "aria-label": "embedding" },
      h("div", { class: "panel-head" },
        h("h2", { text: "Embedding" }), this.scatterInfo,
        h("span", { class: "spacer" }),
        h("button", { type: "button", text: "Reset zoom", onclick: () => this.scatter.resetView() }),
        h("button", { id: "clear-selection", type: "button", text: "Clear selection", onclick: () => this.clearSelection() })),
      this.scatterMessage, this.scatter.element, this.legend);

    // Spectrum, prototypes over epochs and lineage.
    this.spectrum = h("div", { id: "spectrum", class: "spectrum-box" });
    this.prototypes = h("div", { id: "prototypes", class: "prototypes" });
    this.lineageBox = h("div", { id: "lineage", class: "lineage-box" });
    const clusterPanel = h("section", { class: "panel cluster-panel", "aria-label": "clusters" },
      h("h2", { text: "Spectrum" }), this.spectrum,
      h("h2", { text: "Cluster prototypes over epochs" }), this.prototypes,
      h("h2", { text: "Cluster lineage" }), this.lineageBox);

    // Timeline of one sample.
    this.timeline = h("section", { id: "timeline", class: "panel timeline hidden", "aria-label": "sample timeline" });

    // Gallery.
    const viewGroup = h("div", { class: "segmented", role: "radiogroup", "aria-label": "gallery images" });
    this.viewInputs = VIEWS.map((view) => {
      const input = h("input", { type: "radio", name: "view", value: view.value, id: `view-${view.value}`,
        checked: s.view === view.value, onchange: () => this.update({ view: view.value }, "images") });
      viewGroup.append(h("label", { class: "segment" }, input, h("span", { text: view.label })));
      return input;
    });
    this.pixelated = h("input", { id: "pixelated", type: "checkbox", checked: s.px,
      onchange: (event) => this.update({ px: event.target.checked }, "sampling") });
    this.sizeSelect = select(IMAGE_SIZES.map((v) => ({ value: v, label: `${v}px` })), s.size,
      { id: "image-size", onchange: (event) => this.update({ size: Number(event.target.value) }, "sampling") });
    this.wrongOnly = h("input", { id: "wrong-only", type: "checkbox", checked: s.wrong,
      onchange: (event) => this.update({ wrong: event.target.checked, page: 0 }, "gallery") });
    this.pageSize = select(PAGE_SIZES.map((v) => ({ value: v, label: String(v) })), s.psize,
      { id: "page-size", onchange: (event) => this.update({ psize: Number(event.target.value), page: 0 }, "gallery") });
    this.pageLabel = h("span", { id: "page-label", class: "muted" });
    this.prevPage = h("button", { id: "prev-page", type: "button", text: "◀ Prev", onclick: () => this.turnPage(-1) });
    this.nextPage = h("button", { id: "next-page", type: "button", text: "Next ▶", onclick: () => this.turnPage(1) });
    this.galleryTitle = h("h2", { id: "gallery-title", text: "Samples" });
    this.grid = h("div", { id: "gallery", class: "gallery" });
    const galleryPanel = h("section", { class: "panel gallery-panel", "aria-label": "gallery" },
      h("div", { class: "panel-head wrap" },
        this.galleryTitle, viewGroup,
        h("label", { class: "check" }, this.pixelated, h("span", { text: "Pixelated" })),
        field("Size", this.sizeSelect),
        h("label", { class: "check" }, this.wrongOnly, h("span", { text: "Misclassified only" })),
        field("Per page", this.pageSize),
        this.prevPage, this.pageLabel, this.nextPage,
        h("span", { class: "spacer" }),
        h("button", { id: "export-csv", type: "button", text: "Export CSV", onclick: () => this.exportIds("csv") }),
        h("button", { id: "export-json", type: "button", text: "Export JSON", onclick: () => this.exportIds("json") })),
      this.grid);

    replace(this.root,
      header, this.status,
      h("div", { class: "main" }, scatterPanel, clusterPanel),
      this.timeline, galleryPanel, this.tooltip);
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.state.sample !== null && !event.target.closest(".scatter")) this.closeTimeline();
    });
  }

  // ------------------------------------------------------------------------------ start and data

  /** @param {Promise} [style] the style sheet loading; waited for together with the run list. */
  async start(style = Promise.resolve()) {
    listenToHost(() => this.refresh());
    setInterval(() => this.refresh(), REFRESH_MS);
    try {
      // A run named in the URL is asked for at once, alongside the run list.
      const named = this.state.run ? getJSON("run", { run: this.state.run }).catch(() => null) : null;
      const [{ runs }] = await Promise.all([getJSON("runs"), style]);
      const usable = runs.filter((run) => !run.error);
      this.renderRuns(runs);
      if (!usable.length) {
        const problems = runs.filter((run) => run.error).map((run) => run.error);
        this.setStatus(problems.length ? problems.join("\n") : "No run with LRP data below the logdir yet. Train with LRPCallback.", "error");
        this.root.dataset.ready = "true";
        return;
      }
      const run = usable.some((r) => r.run === this.state.run) ? this.state.run : usable[0].run;
      await this.setRun(run, true, run === this.state.run ? named : null);
    } catch (error) {
      this.fail(error);
      this.root.dataset.ready = "true";
    }
  }

  renderRuns(runs) {
    this.runs = runs;
    setOptions(this.controls.run, runs.map((run) => ({
      value: run.run, label: run.error ? `${run.run} (unreadable)` : `${run.run} (${run.epochs} epochs)`, disabled: !!run.error })),
    this.state.run);
  }

  /** New runs and new epochs of a running training, without reloading the page. */
  async refresh() {
    try {
      const { runs } = await getJSON("runs");
      if (JSON.stringify(runs) !== JSON.stringify(this.runs)) this.renderRuns(runs);
      if (!this.state.run || !this.info) {
        const usable = runs.filter((run) => !run.error);
        if (usable.length) await this.setRun(usable[0].run, true);
        return;
      }
      if (!runs.some((run) => run.run === this.state.run && !run.error)) {
        this.setStatus(`Run ${this.state.run} is no longer readable below the logdir.`, "error");
        return;
      }
      const info = await getJSON("run", { run: this.state.run });
      const changed = JSON.stringify(info.epochs) !== JSON.stringify(this.info.epochs);
      if (!changed) return;
      const atEnd = this.epochIndex() === this.info.epochs.length - 1;
      this.info = info;
      this.responses.clear();
      this.renderEpochSlider();
      if (atEnd && !this.player) await this.setEpochIndex(info.epochs.length - 1);
    } catch (error) {
      // A refresh failing (TensorBoard restarting, a run being deleted) is shown, never thrown.
      this.setStatus(`Refreshing the run failed: ${error.message}`, "error");
    }
  }

  async fetchCached(kind, route, params) {
    const key = url(route, params);
    if (this.responses.has(key)) {
      const value = this.responses.get(key);
      this.responses.delete(key);
      this.responses.set(key, value);
      return value;
    }
    const promise = kind === "json" ? getJSON(route, params) : getColumns(route, params);
    this.responses.set(key, promise);
    promise.catch(() => this.responses.delete(key));
    while (this.responses.size > 40) this.responses.delete(this.responses.keys().next().value);
    return promise;
  }

  async setRun(run, initial = false, pending = null) {
    this.stopPlay();
    const token = ++this.token;
    this.setBusy(true);
    try {
      const info = (pending && (await pending)) || (await getJSON("run", { run }));
      if (token !== this.token) return;
      this.info = info;
      this.state.run = run;
      this.controls.run.value = run;
      this.responses.clear();
      this.lineage = null;
      if (!initial) Object.assign(this.state, { sel: new Set(), selc: new Set(), sample: null, page: 0 });
      setOptions(this.controls.cmap, info.colormaps.map((name) => ({ value: name })),
        info.colormaps.includes(this.state.cmap) ? this.state.cmap : info.default_cmap);
      this.state.cmap = this.controls.cmap.value;
      this.viewInputs.forEach((input) => {
        input.disabled = input.value !== "heatmap" && !info.thumbnails;
      });
      if (!info.thumbnails && this.state.view !== "heatmap") this.setView("heatmap");
      this.renderEpochSlider();
      if (!info.epochs.length) {
        this.setStatus(`Run ${run} has no complete epoch yet; it appears after the first validation epoch.`, "info");
        this.root.dataset.ready = "true";
        return;
      }
      let index = info.epochs.findIndex((e) => e.epoch === this.state.epoch);
      if (index < 0) index = info.epochs.length - 1;
      await this.loadEpoch(index, token);
      if (initial && this.state.sample !== null) this.openTimeline(this.state.sample);
    } catch (error) {
      this.fail(error);
    } finally {
      if (token === this.token) this.setBusy(false);
      this.root.dataset.ready = "true";
    }
  }

  epochIndex() {
    return this.info ? this.info.epochs.findIndex((e) => e.epoch === this.state.epoch) : -1;
  }

  renderEpochSlider() {
    const epochs = this.info.epochs;
    const slider = this.controls.epoch;
    slider.max = String(Math.max(0, epochs.length - 1));
    slider.disabled = epochs.length < 2;
    this.controls.play.disabled = epochs.length < 2;
    const index = this.epochIndex();
    if (index >= 0) slider.value = String(index);
    this.renderEpochLabel();
  }

  renderEpochLabel() {
    const epochs = this.info.epochs;
    const index = this.epochIndex();
    const entry = epochs[index];
    this.controls.epochLabel.textContent = entry
      ? `epoch ${entry.epoch} · step ${entry.global_step} · ${index + 1}/${epochs.length}`
      : "no epoch";
    this.controls.epoch.setAttribute("aria-valuetext", entry ? `epoch ${entry.epoch}` : "no epoch");
  }

  async setEpochIndex(index) {
    if (!this.info || index < 0 || index >= this.info.epochs.length) return;
    this.controls.epoch.value = String(index);
    const token = ++this.token;
    await this.loadEpoch(index, token);
  }

  async setEpoch(epoch) {
    const index = this.info.epochs.findIndex((e) => e.epoch === epoch);
    if (index >= 0) await this.setEpochIndex(index);
  }

  async loadEpoch(index, token) {
    const started = performance.now();
    const entry = this.info.epochs[index];
    const run = this.state.run;
    this.state.epoch = entry.epoch;
    this.controls.epoch.value = String(index);
    this.renderEpochLabel();
    this.setBusy(true);
    try {
      const [samples, analysis] = await Promise.all([
        this.fetchCached("columns", "samples", { run, epoch: entry.epoch }),
        entry.analysis ? this.fetchCached("json", "analysis", { run, epoch: entry.epoch }) : Promise.resolve(null),
      ]);
      if (token !== this.token) return;
      this.samples = { ...samples, byId: indexIds(samples.columns.sample_id), metadata: prepareMetadata(samples.meta.metadata) };
      this.analysis = analysis;
      this.renderSelectors();
      await this.loadScatter(token);
      if (token !== this.token) return;
      this.renderGallery();
      if (this.state.sample !== null) this.openTimeline(this.state.sample, false);
      this.setStatus("", "");
      this.saveState();
      this.root.dataset.epoch = String(entry.epoch);
      this.root.dataset.epochSwitchMs = String(Math.round(performance.now() - started));
      this.whenIdle(() => this.loadLineage(token)); // spans every epoch: after this epoch is on screen
      if (this.player) this.prefetch(index + 1);
    } catch (error) {
      if (token === this.token) this.fail(error);
    } finally {
      if (token === this.token) this.setBusy(false);
    }
  }

  whenIdle(callback) {
    if (window.requestIdleCallback) window.requestIdleCallback(callback, { timeout: 1500 });
    else setTimeout(callback, 200);
  }

  prefetch(index) {
    const entry = this.info.epochs[index];
    if (!entry) return;
    const run = this.state.run;
    this.fetchCached("columns", "samples", { run, epoch: entry.epoch }).catch(() => {});
    if (entry.analysis && this.analysis) {
      this.fetchCached("columns", "embedding", this.embeddingParams(entry.epoch)).catch(() => {});
    }
  }

  categories() {
    if (this.analysis) {
      return this.analysis.categories.map((c) => ({
        value: c.category,
        label: c.category === "all" ? "all samples" : (c.class_name || c.category) + (c.status === "ok" ? "" : " (not analysed)"),
        disabled: c.status !== "ok",
      }));
    }
    const names = this.info.class_names || [];
    const labels = this.samples ? [...new Set(Array.from(this.samples.columns.label))].sort((a, b) => a - b) : [];
    const classes = names.length ? names.map((_, i) => i) : labels;
    return [{ value: "all", label: "all samples" }, ...classes.map((i) => ({ value: `class_${i}`, label: this.className(i) }))];
  }

  categoryInfo() {
    return this.analysis ? this.analysis.categories.find((c) => c.category === this.state.cat) || null : null;
  }

  renderSelectors() {
    const c = this.controls;
    const categories = this.categories();
    const usable = categories.filter((option) => !option.disabled);
    if (!usable.some((option) => option.value === this.state.cat)) this.state.cat = usable.length ? usable[0].value : "all";
    setOptions(c.category, categories, this.state.cat);
    const analysed = !!this.analysis;
    const colorOptions = [...COLOR_BY, ...this.metadataColumns().filter((m) => m.categories)
      .map((m) => ({ value: META_PREFIX + m.name, label: `${m.name} (metadata)` }))];
    this.state.color = pick(this.state.color, colorOptions, "cluster");
    setOptions(c.color, colorOptions, this.state.color);
    for (const control of [c.embedding, c.clustering, c.color]) control.disabled = !analysed;
    if (!analysed) {
      setOptions(c.embedding, [{ value: "", label: "–" }], "");
      setOptions(c.clustering, [{ value: "", label: "–" }], "");
      this.dims.classList.add("hidden");
      return;
    }
    const embeddings = this.analysis.embeddings.map((name) => ({ value: name, label: name === "spectral" ? "spectral" : name.toUpperCase() }));
    if (!embeddings.some((e) => e.value === this.state.emb)) this.state.emb = embeddings.length ? embeddings[0].value : null;
    setOptions(c.embedding, embeddings, this.state.emb);
    const info = this.categoryInfo();
    const dims = info ? info.spectral_dims : 0;
    const dimOptions = Array.from({ length: dims }, (_, i) => ({ value: i, label: `λ${i + 1}` }));
    if (this.state.ex >= dims) this.state.ex = Math.min(1, Math.max(0, dims - 1));
    if (this.state.ey >= dims) this.state.ey = Math.min(2, Math.max(0, dims - 1));
    setOptions(c.ex, dimOptions, this.state.ex);
    setOptions(c.ey, dimOptions, this.state.ey);
    this.dims.classList.toggle("hidden", this.state.emb !== "spectral");
    const clusterings = info ? info.clusterings : [];
    if (!clusterings.includes(this.state.clu)) {
      this.state.clu = info && clusterings.includes(info.selected_clustering) ? info.selected_clustering : clusterings[0] ?? null;
    }
    setOptions(c.clustering, clusterings.length ? clusterings.map((name) => ({ value: name })) : [{ value: "", label: "–" }], this.state.clu ?? "");
    c.clustering.disabled = !clusterings.length;
  }

  embeddingParams(epoch) {
    const s = this.state;
    return {
      run: s.run, epoch, category: s.cat, embedding: s.emb,
      x: s.emb === "spectral" ? s.ex : null, y: s.emb === "spectral" ? s.ey : null,
      clustering: s.clu,
    };
  }

  async loadScatter(token = this.token) {
    const s = this.state;
    const info = this.categoryInfo();
    if (!this.analysis || !info || info.status !== "ok" || !s.emb) {
      this.points = null;
      this.clusters = null;
      this.renderScatter();
      return;
    }
    const [points, clusters] = await Promise.all([
      this.fetchCached("columns", "embedding", this.embeddingParams(s.epoch)),
      s.clu ? this.fetchCached("json", "clusters", { run: s.run, epoch: s.epoch, category: s.cat, clustering: s.clu }) : null,
    ]);
    if (token !== this.token) return;
    this.points = { ...points, byId: indexIds(points.columns.sample_id) };
    this.clusters = clusters;
    this.renderScatter();
  }

  async loadLineage(token) {
    const s = this.state;
    if (!this.analysis || !s.clu || !this.categoryInfo()) {
      replace(this.lineageBox, h("p", { class: "muted", text: "No analysis for this epoch." }));
      replace(this.prototypes, h("p", { class: "muted", text: "No analysis for this epoch." }));
      return;
    }
    const params = { run: s.run, category: s.cat, clustering: s.clu };
    const analysedEpochs = this.info.epochs.filter((e) => e.analysis).map((e) => e.epoch).join(",");
    const key = JSON.stringify({ ...params, analysedEpochs });
    try {
      if (!this.lineage || this.lineage.key !== key) {
        const data = await getJSON("lineage", params);
        if (token !== this.token) return;
        this.lineage = { key, data };
      }
      this.renderLineage();
    } catch (error) {
      if (token === this.token) replace(this.lineageBox, h("p", { class: "error", text: error.message }));
    }
  }

  // ------------------------------------------------------------------------------ state

  async update(changes, what) {
    Object.assign(this.state, changes);
    if (what === "scatter") {
      this.renderSelectors();
      const token = ++this.token;
      this.setBusy(true);
      try {
        this.scatter.fitNextData();
        await this.loadScatter(token);
        if (token !== this.token) return;
        this.renderGallery();
        this.loadLineage(token);
      } catch (error) {
        this.fail(error);
      } finally {
        if (token === this.token) this.setBusy(false);
      }
    } else if (what === "colors") {
      this.renderScatter(false);
    } else if (what === "images") {
      this.renderGallery();
      this.renderLineage();
      if (this.state.sample !== null) this.openTimeline(this.state.sample, false);
    } else if (what === "sampling" || what === "gallery") {
      this.renderGallery();
      if (what === "sampling" && this.state.sample !== null) this.openTimeline(this.state.sample, false);
    }
    this.saveState();
  }

  saveState() {
    const s = this.state;
    const sel = s.selc.size ? "" : s.sel.size <= MAX_HASH_IDS ? encodeIds(s.sel) : "";
    writeState({
      run: s.run, epoch: s.epoch, cat: s.cat, emb: s.emb, ex: s.emb === "spectral" ? s.ex : null,
      ey: s.emb === "spectral" ? s.ey : null, clu: s.clu, color: s.color, cmap: s.cmap, view: s.view,
      px: s.px ? null : "0", size: s.size === 96 ? null : s.size, psize: s.psize === 48 ? null : s.psize,
      page: s.page || null, wrong: s.wrong ? "1" : null, sel, selc: encodeIds(s.selc), sample: s.sample,
    });
  }

  setView(view) {
    this.state.view = view;
    this.viewInputs.forEach((input) => {
      input.checked = input.value === view;
    });
  }

  setBusy(busy) {
    this.root.dataset.loading = busy ? "true" : "false";
    this.root.classList.toggle("busy", busy);
  }

  setStatus(text, kind) {
    this.status.textContent = text;
    this.status.className = `status ${kind || ""}`;
  }

  fail(error) {
    const message = error instanceof RequestError ? error.message : `Unexpected error: ${error.message || error}`;
    this.setStatus(message, "error");
  }

  async share() {
    this.saveState();
    const link = shareLink();
    try {
      await navigator.clipboard.writeText(link);
      this.setStatus("Link to this view copied.", "info");
    } catch (error) {
      this.setStatus(`Link to this view: ${link}`, "info");
    }
  }

  togglePlay() {
    if (this.player) {
      this.stopPlay();
      return;
    }
    this.controls.play.textContent = "⏸ Pause";
    this.controls.play.setAttribute("aria-pressed", "true");
    const step = async () => {
      const next = this.epochIndex() + 1;
      if (next >= this.info.epochs.length) {
        this.stopPlay();
        return;
      }
      await this.setEpochIndex(next);
      if (this.player) this.player = setTimeout(step, PLAY_INTERVAL_MS);
    };
    if (this.epochIndex() === this.info.epochs.length - 1) this.setEpochIndex(0);
    this.player = setTimeout(step, PLAY_INTERVAL_MS);
  }

  stopPlay() {
    if (this.player) clearTimeout(this.player);
    this.player = null;
    this.controls.play.textContent = "▶ Play";
    this.controls.play.setAttribute("aria-pressed", "false");
  }

  // ------------------------------------------------------------------------------ names

  className(index) {
    const names = this.info && this.info.class_names;
    return names && names[index] !== undefined ? names[index] : `class ${index}`;
  }

  sampleRow(id) {
    return this.samples ? this.samples.byId.get(id) : undefined;
  }

  /** The run's probe metadata columns (none for a run without them). */
  metadataColumns() {
    return (this.samples && this.samples.metadata) || [];
  }

  /** A sample's metadata as [name, value] pairs; empty when the run has none or the sample is unknown. */
  sampleMetadata(id) {
    const row = this.sampleRow(id);
    if (row === undefined) return [];
    return this.metadataColumns().map((m) => [m.name, m.values[row] ?? null]);
  }

  /** The metadata column the scatter is coloured by, or null. */
  colorColumn() {
    const by = this.state.color;
    if (!by.startsWith(META_PREFIX)) return null;
    return this.metadataColumns().find((m) => m.categories && META_PREFIX + m.name === by) || null;
  }

  /** Category index (into colorColumn().categories) of each point; categories.length for no value. */
  metadataCategoryOf(column) {
    const p = this.points;
    const index = new Map(column.categories.map((value, k) => [value, k]));
    const missing = column.categories.length;
    const result = new Uint16Array(p.count);
    for (let i = 0; i < p.count; i += 1) {
      const row = this.sampleRow(Number(p.columns.sample_id[i]));
      const value = row === undefined ? null : column.values[row];
      result[i] = value === null || value === undefined || !index.has(value) ? missing : index.get(value);
    }
    return result;
  }

  isWrong(id) {
    const row = this.sampleRow(id);
    if (row === undefined) return false;
    return this.samples.columns.label[row] !== this.samples.columns.prediction[row];
  }

  imageUrl(kind, id, epoch = this.state.epoch) {
    if (kind === "input") return url("input", { run: this.state.run, sample: id });
    const entry = this.info.epochs.find((e) => e.epoch === epoch);
    return url("heatmap", { run: this.state.run, epoch, sample: id, cmap: this.state.cmap, kind, v: entry ? entry.version : null });
  }

  // ------------------------------------------------------------------------------ scatter

  colorsFor() {
    const p = this.points;
    const n = p.count;
    const colors = new Uint16Array(n);
    const by = this.state.color;
    const meta = this.colorColumn();
    if (meta) {
      const palette = [...meta.categories.map((_, k) => PALETTE[k % PALETTE.length]), UNCLUSTERED];
      return { colors: this.metadataCategoryOf(meta), palette };
    }
    if (by === "cluster" && p.columns.cluster) {
      const palette = [...PALETTE, NOISE, UNCLUSTERED];
      for (let i = 0; i < n; i += 1) {
        const cluster = p.columns.cluster[i];
        colors[i] = cluster === -1 ? PALETTE.length : cluster < 0 ? PALETTE.length + 1 : cluster % PALETTE.length;
      }
      return { colors, palette };
    }
    if (by === "correct" || (by === "cluster" && !p.columns.cluster)) {
      for (let i = 0; i < n; i += 1) colors[i] = p.columns.label[i] === p.columns.prediction[i] ? 0 : 1;
      return { colors, palette: [CORRECT, WRONG] };
    }
    const column = by === "label" ? p.columns.label : p.columns.prediction;
    for (let i = 0; i < n; i += 1) colors[i] = ((column[i] % PALETTE.length) + PALETTE.length) % PALETTE.length;
    return { colors, palette: PALETTE };
  }

  renderScatter(newData = true) {
    const p = this.points;
    if (!p) {
      const info = this.categoryInfo();
      let message;
      const entry = this.info.epochs[this.epochIndex()];
      if (!this.analysis && entry && entry.analysis_error) {
        message = `The analysis of epoch ${this.state.epoch} cannot be read: ${entry.analysis_error}`;
      } else if (!this.analysis) {
        message = `Epoch ${this.state.epoch} has no analysis yet: run \`lrp-analyze\` on this run (or let LRPCallback analyse) to see embeddings and clusters. The gallery shows the heatmaps meanwhile.`;
      } else if (info && info.status !== "ok") {
        message = `Category ${this.state.cat} was not analysed: ${info.message || info.status}.`;
      } else {
        message = "No embedding in this analysis.";
      }
      this.scatterMessage.textContent = message;
      this.scatterMessage.classList.remove("hidden");
      this.scatter.element.classList.add("hidden");
      this.scatterInfo.textContent = "";
      replace(this.legend);
      replace(this.spectrum, h("p", { class: "muted", text: message }));
      return;
    }
    this.scatterMessage.classList.add("hidden");
    this.scatter.element.classList.remove("hidden");
    const { colors, palette } = this.colorsFor();
    if (newData) {
      this.scatter.setData({ x: p.columns.x, y: p.columns.y, colors, palette, bounds: p.meta.bounds });
    } else {
      this.scatter.setColors(colors, palette);
    }
    this.applySelection();
    this.renderLegend();
    this.renderSpectrum();
    const markers = [];
    let emphasis = null;
    if (this.clusters && p.columns.cluster) {
      const flagged = new Set(this.clusters.clusters.filter((c) => c.flagged).map((c) => c.cluster));
      if (flagged.size) {
        emphasis = new Uint8Array(p.count);
        for (let i = 0; i < p.count; i += 1) emphasis[i] = flagged.has(p.columns.cluster[i]) ? 1 : 0;
      }
      for (const cluster of this.clusters.clusters.filter((c) => c.flagged)) {
        let sx = 0;
        let sy = 0;
        let count = 0;
        for (let i = 0; i < p.count; i += 1) {
          if (p.columns.cluster[i] === cluster.cluster && Number.isFinite(p.columns.x[i])) {
            sx += p.columns.x[i];
            sy += p.columns.y[i];
            count += 1;
          }
        }
        if (count) markers.push({ x: sx / count, y: sy / count, text: `⚑ ${cluster.cluster}: ${cluster.flag_region || "flagged"}` });
      }
    }
    this.scatter.setEmphasis(emphasis);
    this.scatter.setMarkers(markers);
  }

  /** Selected sample ids: the chosen clusters' members, or the ids chosen directly. */
  selectedIds() {
    const s = this.state;
    if (s.selc.size && this.points && this.points.columns.cluster) {
      const ids = new Set();
      const p = this.points;
      for (let i = 0; i < p.count; i += 1) if (s.selc.has(p.columns.cluster[i])) ids.add(Number(p.columns.sample_id[i]));
      return ids;
    }
    return s.sel;
  }

  applySelection() {
    const p = this.points;
    const ids = this.selectedIds();
    let mask = null;
    let count = 0;
    if (p && ids.size) {
      mask = new Uint8Array(p.count);
      for (let i = 0; i < p.count; i += 1) {
        if (ids.has(Number(p.columns.sample_id[i]))) {
          mask[i] = 1;
          count += 1;
        }
      }
    }
    if (p) {
      this.scatter.setSelection(mask);
      this.scatterInfo.textContent = `${p.count.toLocaleString()} points${ids.size ? ` · ${count.toLocaleString()} selected` : ""}`;
    }
    for (const button of this.legend.querySelectorAll("button[data-cluster]")) {
      button.setAttribute("aria-pressed", String(this.state.selc.has(Number(button.dataset.cluster))));
    }
  }

  selectIndices(indices, mode) {
    const ids = indices.map((i) => Number(this.points.columns.sample_id[i]));
    const selection = mode === "add" ? new Set(this.selectedIds()) : new Set();
    for (const id of ids) selection.add(id);
    this.setSelection(selection, new Set());
  }

  toggleIndex(index) {
    const id = Number(this.points.columns.sample_id[index]);
    const selection = new Set(this.selectedIds());
    if (selection.has(id)) selection.delete(id);
    else selection.add(id);
    this.setSelection(selection, new Set());
  }

  setSelection(ids, clusters) {
    this.state.sel = ids;
    this.state.selc = clusters;
    this.state.page = 0;
    this.applySelection();
    this.renderGallery();
    this.saveState();
  }

  clearSelection() {
    this.setSelection(new Set(), new Set());
  }

  toggleCluster(cluster, additive) {
    const clusters = additive ? new Set(this.state.selc) : new Set(this.state.selc.has(cluster) && this.state.selc.size === 1 ? [] : [cluster]);
    if (additive) {
      if (clusters.has(cluster)) clusters.delete(cluster);
      else clusters.add(cluster);
    }
    this.setSelection(new Set(), clusters);
  }

  renderLegend() {
    const p = this.points;
    const by = this.state.color;
    const entries = [];
    const column = this.colorColumn();
    if (column) {
      const categories = this.metadataCategoryOf(column);
      const counts = new Uint32Array(column.categories.length + 1);
      for (const k of categories) counts[k] += 1;
      const keys = [...column.categories.keys(), column.categories.length].filter((k) => counts[k] > 0);
      for (const k of keys) {
        const missing = k === column.categories.length;
        const text = missing ? "no value" : metaText(column.categories[k]);
        entries.push(h("button", {
          type: "button", class: "chip", dataset: { value: text },
          title: `select the ${counts[k]} points with ${column.name}: ${text}`,
          onclick: () => {
            const ids = new Set();
            for (let i = 0; i < p.count; i += 1) if (categories[i] === k) ids.add(Number(p.columns.sample_id[i]));
            this.setSelection(ids, new Set());
          },
        }, h("span", { class: "swatch", style: { background: css(missing ? UNCLUSTERED : PALETTE[k % PALETTE.length]) } }),
        h("span", { text }), h("span", { class: "muted", text: String(counts[k]) })));
      }
    } else if (by === "cluster" && this.clusters) {
      for (const cluster of this.clusters.clusters) {
        const color = clusterColor(cluster.cluster);
        const button = h("button", {
          type: "button", class: cluster.flagged ? "chip flagged" : "chip", dataset: { cluster: String(cluster.cluster) },
          "aria-pressed": String(this.state.selc.has(cluster.cluster)),
          title: `cluster ${cluster.cluster}: ${cluster.size} samples, purity ${percent(cluster.purity)}, accuracy ${percent(cluster.accuracy)}, majority ${this.className(cluster.majority_label)}` +
            (cluster.flagged ? `\nflagged: ${cluster.flag_reason || cluster.flag_region}` : "") + "\nclick: select; Shift/Ctrl-click: add",
          onclick: (event) => this.toggleCluster(cluster.cluster, event.shiftKey || event.ctrlKey || event.metaKey),
        },
        h("span", { class: "swatch", style: { background: css(color) } }),
        h("span", { text: `cluster ${cluster.cluster}` }),
        h("span", { class: "muted", text: `${cluster.size} · ${percent(cluster.purity)} pure` }),
        cluster.flagged ? h("span", { class: "flag", text: `⚑ ${cluster.flag_reason || cluster.flag_region || "flagged"}` }) : null);
        entries.push(button);
      }
    } else {
      const counts = new Map();
      const keyOf = (i) => (by === "correct" || (by === "cluster" && !p.columns.cluster)
        ? (p.columns.label[i] === p.columns.prediction[i] ? "correct" : "misclassified")
        : (by === "label" ? p.columns.label[i] : p.columns.prediction[i]));
      for (let i = 0; i < p.count; i += 1) {
        const key = keyOf(i);
        counts.set(key, (counts.get(key) || 0) + 1);
      }
      const keys = [...counts.keys()].sort((a, b) => (typeof a === "number" ? a - b : String(a).localeCompare(String(b))));
      for (const key of keys) {
        const color = key === "correct" ? CORRECT : key === "misclassified" ? WRONG : PALETTE[((key % PALETTE.length) + PALETTE.length) % PALETTE.length];
        const label = typeof key === "number" ? this.className(key) : key;
        entries.push(h("button", {
          type: "button", class: "chip", title: `select the ${counts.get(key)} points: ${label}`,
          onclick: () => {
            const ids = new Set();
            for (let i = 0; i < p.count; i += 1) if (keyOf(i) === key) ids.add(Number(p.columns.sample_id[i]));
            this.setSelection(ids, new Set());
          },
        }, h("span", { class: "swatch", style: { background: css(color) } }), h("span", { text: label }),
        h("span", { class: "muted", text: String(counts.get(key)) })));
      }
    }
    replace(this.legend, entries);
  }

  renderSpectrum() {
    const info = this.categoryInfo();
    if (!info) {
      replace(this.spectrum);
      return;
    }
    const k = info.eigengap_k;
    replace(this.spectrum,
      spectrumChart({ eigenvalues: info.eigenvalues, k, label: `Laplacian spectrum of ${info.category}` }),
      h("p", { class: "muted", text: `${info.n_samples} samples, ${info.n_neighbors} neighbours; the largest eigengap suggests ${k} clusters (gap ${info.eigengap === null ? "–" : info.eigengap.toFixed(3)}).` }));
  }

  // ------------------------------------------------------------------------------ hover

  showTooltip(index, clientX, clientY) {
    clearTimeout(this.hoverTimer);
    if (index === null || !this.points) {
      this.tooltip.classList.add("hidden");
      return;
    }
    const p = this.points;
    const id = Number(p.columns.sample_id[index]);
    const label = p.columns.label[index];
    const prediction = p.columns.prediction[index];
    const lines = [
      h("strong", { text: `sample ${id}` }),
      h("div", { text: `label: ${this.className(label)}` }),
      h("div", { class: label === prediction ? "" : "wrong-text", text: `predicted: ${this.className(prediction)}` }),
    ];
    if (p.columns.cluster) lines.push(h("div", { text: `cluster ${p.columns.cluster[index]}` }));
    for (const [name, value] of this.sampleMetadata(id).slice(0, MAX_TOOLTIP_METADATA)) {
      lines.push(h("div", { class: "muted", text: `${name}: ${metaText(value)}` }));
    }
    const images = h("div", { class: "tooltip-images" });
    replace(this.tooltip, images, h("div", { class: "tooltip-text" }, lines));
    this.tooltip.classList.remove("hidden");
    this.tooltip.classList.toggle("pixelated", this.state.px);
    const rect = this.root.getBoundingClientRect();
    const left = Math.min(clientX - rect.left + 16, rect.width - 260);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${clientY - rect.top + 16}px`;
    this.tooltip.dataset.sample = String(id);
    this.hoverTimer = setTimeout(() => {
      const kinds = this.info.thumbnails ? ["input", "heatmap"] : ["heatmap"];
      replace(images, kinds.map((kind) => h("img", { src: this.imageUrl(kind, id), alt: `${kind} of sample ${id}`, width: 96, height: 96 })));
    }, 40);
  }

  // ------------------------------------------------------------------------------ gallery

  galleryIds() {
    const s = this.state;
    let ids;
    const selected = this.selectedIds();
    if (selected.size) {
      ids = [...selected].filter((id) => this.samples.byId.has(id)).sort((a, b) => a - b);
    } else if (this.points) {
      ids = Array.from(this.points.columns.sample_id, Number);
    } else {
      const c = this.samples.columns;
      const classIndex = s.cat.startsWith("class_") ? Number(s.cat.slice(6)) : null;
      ids = [];
      for (let i = 0; i < this.samples.count; i += 1) {
        if (classIndex === null || c.label[i] === classIndex) ids.push(Number(c.sample_id[i]));
      }
    }
    if (s.wrong) ids = ids.filter((id) => this.isWrong(id));
    return ids;
  }

  turnPage(step) {
    this.state.page = Math.max(0, this.state.page + step);
    this.renderGallery();
    this.saveState();
  }

  renderGallery() {
    if (!this.samples) return;
    const s = this.state;
    const ids = this.galleryIds();
    const pages = Math.max(1, Math.ceil(ids.length / s.psize));
    s.page = Math.min(Math.max(0, s.page), pages - 1);
    const shown = ids.slice(s.page * s.psize, (s.page + 1) * s.psize);
    const selected = this.selectedIds().size;
    this.galleryTitle.textContent = selected ? `Selection (${ids.length})` : `Samples (${ids.length})`;
    this.pageLabel.textContent = `page ${s.page + 1} of ${pages}`;
    this.prevPage.disabled = s.page === 0;
    this.nextPage.disabled = s.page >= pages - 1;
    this.grid.classList.toggle("pixelated", s.px);
    this.grid.style.setProperty("--cell", `${s.size}px`);
    const view = s.view === "input" && !this.info.thumbnails ? "heatmap" : s.view;
    const cards = shown.map((id) => {
      const row = this.sampleRow(id);
      const label = this.samples.columns.label[row];
      const prediction = this.samples.columns.prediction[row];
      const wrong = label !== prediction;
      return h("button", {
        type: "button", class: wrong ? "card wrong" : "card", dataset: { sample: String(id) },
        title: `sample ${id}: label ${this.className(label)}, predicted ${this.className(prediction)}${wrong ? " (misclassified)" : ""}. Open its timeline.`,
        onclick: () => this.openTimeline(id),
      },
      h("img", { src: this.imageUrl(view, id), alt: `${view} of sample ${id}`, width: s.size, height: s.size, loading: "lazy", fetchpriority: "low" }),
      h("span", { class: "caption" },
        h("span", { class: "sample-id", text: `#${id}` }),
        h("span", { text: wrong ? `${this.className(label)} → ${this.className(prediction)}` : this.className(label) }),
        wrong ? h("span", { class: "mark", text: "✗", title: "misclassified" }) : null));
    });
    if (!cards.length) cards.push(h("p", { class: "muted", text: s.wrong ? "No misclassified sample here." : "No sample." }));
    replace(this.grid, cards);
  }

  /**
   * Export the gallery's samples (CSV or JSON). A run with probe metadata adds one column (CSV, after `run`)
   * or field (JSON, after `cluster`) per metadata column, in the details view's order, named as the column
   * (`meta:<name>` where that name is already one of the export's own); a run without metadata exports as before.
   */
  exportIds(format) {
    const ids = this.galleryIds();
    const p = this.points;
    const metadata = this.metadataColumns();
    const own = ["sample_id", "label", "prediction", "cluster", "epoch", "run"];
    const keys = metadata.map((m) => (own.includes(m.name) ? META_PREFIX + m.name : m.name));
    const rows = ids.map((id) => {
      const row = this.sampleRow(id);
      const point = p ? p.byId.get(id) : undefined;
      const result = {
        sample_id: id,
        label: row === undefined ? null : this.samples.columns.label[row],
        prediction: row === undefined ? null : this.samples.columns.prediction[row],
        cluster: point !== undefined && p.columns.cluster ? p.columns.cluster[point] : null,
      };
      metadata.forEach((m, i) => { result[keys[i]] = row === undefined ? null : (m.values[row] ?? null); });
      return result;
    });
    const s = this.state;
    const base = `lrp-${s.run.replace(/[^A-Za-z0-9_.-]+/g, "_")}-epoch${s.epoch}`;
    if (format === "json") {
      const data = { run: s.run, epoch: s.epoch, category: s.cat, clustering: s.clu, samples: rows };
      download(`${base}.json`, JSON.stringify(data, null, 2), "application/json");
    } else {
      const lines = [["sample_id,label,prediction,cluster,epoch,run", ...keys.map(csvCell)].join(",")];
      const quoted = `"${s.run.replace(/"/g, '""')}"`;
      for (const r of rows) {
        const cells = [r.sample_id, r.label ?? "", r.prediction ?? "", r.cluster ?? "", s.epoch, quoted];
        lines.push([...cells, ...keys.map((key) => csvCell(r[key]))].join(","));
      }
      download(`${base}.csv`, lines.join("\n") + "\n", "text/csv");
    }
    this.setStatus(`Exported ${rows.length} sample ids (${format.toUpperCase()}).`, "info");
  }

  // ------------------------------------------------------------------------------ timeline

  async openTimeline(id, scroll = true) {
    this.state.sample = id;
    this.saveState();
    const run = this.state.run;
    let data;
    try {
      data = await this.fetchCached("json", "timeline", { run, sample: id });
    } catch (error) {
      replace(this.timeline, h("p", { class: "error", text: error.message }));
      this.timeline.classList.remove("hidden");
      return;
    }
    if (this.state.sample !== id || this.state.run !== run) return;
    const kind = this.state.view === "overlay" ? "overlay" : "heatmap";
    const strip = h("div", { class: "strip" + (this.state.px ? " pixelated" : "") });
    data.epoch.forEach((epoch, i) => {
      const wrong = data.prediction[i] !== data.label;
      strip.append(h("button", {
        type: "button", class: `frame${epoch === this.state.epoch ? " current" : ""}${wrong ? " wrong" : ""}`,
        title: `epoch ${epoch}: predicted ${this.className(data.prediction[i])}, score ${data.score[i] === null ? "–" : data.score[i].toFixed(3)}. Show this epoch.`,
        onclick: () => this.setEpoch(epoch),
      },
      h("img", { src: this.imageUrl(kind, id, epoch), alt: `${kind} of sample ${id} in epoch ${epoch}`, width: 72, height: 72, loading: "lazy", fetchpriority: "low" }),
      h("span", { text: `${epoch}${wrong ? " ✗" : ""}` })));
    });
    const good = data.prediction.map((prediction) => prediction === data.label);
    const head = h("div", { class: "panel-head" },
      h("h2", { text: `Sample ${id} over ${data.epoch.length} epochs` }),
      h("span", { class: "muted", text: `label ${this.className(data.label)}` }),
      h("span", { class: "spacer" }),
      h("button", { id: "close-timeline", type: "button", text: "Close", onclick: () => this.closeTimeline() }));
    const input = this.info.thumbnails
      ? h("img", { class: "timeline-input", src: this.imageUrl("input", id), alt: `input of sample ${id}`, width: 96, height: 96 })
      : null;
    const metadata = this.sampleMetadata(id);
    const details = metadata.length
      ? h("div", { class: "sample-metadata", role: "list", "aria-label": `metadata of sample ${id}` },
        metadata.map(([name, value]) => h("div", { class: "metadata-row", role: "listitem", dataset: { name } },
          h("span", { class: "metadata-name", text: `${name}: ` }), h("span", { class: "metadata-value", text: metaText(value) }))))
      : null;
    replace(this.timeline, head, details,
      h("div", { class: "timeline-body" + (this.state.px ? " pixelated" : "") }, input, strip),
      h("div", { class: "charts" },
        lineChart({ xs: data.epoch, ys: data.score, good, current: this.state.epoch, label: "score", onPick: (epoch) => this.setEpoch(epoch) }),
        lineChart({ xs: data.epoch, ys: data.probability, good, current: this.state.epoch, label: "probability", onPick: (epoch) => this.setEpoch(epoch) })));
    this.timeline.classList.remove("hidden");
    this.timeline.dataset.sample = String(id);
    if (scroll) this.timeline.scrollIntoView({ block: "nearest" });
  }

  closeTimeline() {
    this.state.sample = null;
    this.timeline.classList.add("hidden");
    delete this.timeline.dataset.sample;
    this.saveState();
  }

  // ------------------------------------------------------------------------------ lineage

  renderLineage() {
    if (!this.lineage || !this.analysis) return;
    const data = this.lineage.data;
    const s = this.state;
    const current = data.epochs.find((e) => e.epoch === s.epoch);
    replace(this.lineageBox,
      h("div", { class: "scroll-x" }, lineageChart({
        epochs: data.epochs, current: s.epoch, colorOf: (cluster) => css(clusterColor(cluster)),
        onPick: async (epoch, cluster) => {
          await this.setEpoch(epoch);
          this.setSelection(new Set(), new Set([cluster]));
        },
      })),
      data.missing.length ? h("p", { class: "muted", text: `Not analysed: epochs ${data.missing.join(", ")}.` }) : null);
    // Prototypes: one row per cluster of this epoch (its track), columns spread over analysed epochs.
    const epochs = data.epochs.map((e) => e.epoch);
    let columns = epochs;
    if (epochs.length > PROTOTYPE_COLUMNS) {
      const picked = new Set([s.epoch]);
      for (let i = 0; i < PROTOTYPE_COLUMNS - 1; i += 1) picked.add(epochs[Math.round((i * (epochs.length - 1)) / (PROTOTYPE_COLUMNS - 2))]);
      columns = epochs.filter((e) => picked.has(e));
    }
    if (!current) {
      replace(this.prototypes, h("p", { class: "muted", text: "This epoch has no clusters in this clustering." }));
      return;
    }
    const table = h("table", { class: "prototype-table" + (s.px ? " pixelated" : "") });
    table.append(h("thead", {}, h("tr", {}, h("th", { text: "cluster" }),
      columns.map((epoch) => h("th", { class: epoch === s.epoch ? "current" : "", text: `ep ${epoch}` })))));
    const body = h("tbody");
    const byEpoch = new Map(data.epochs.map((entry) => [entry.epoch, entry]));
    for (const cluster of current.clusters) {
      const row = h("tr", {}, h("th", { scope: "row" },
        h("span", { class: "swatch", style: { background: css(clusterColor(cluster.cluster)) } }),
        h("span", { text: ` ${cluster.cluster}` }),
        cluster.flagged ? h("span", { class: "flag", text: " ⚑", title: cluster.flag_reason || "flagged" }) : null));
      for (const epoch of columns) {
        const other = (byEpoch.get(epoch)?.clusters || []).find((c) => c.track === cluster.track);
        const version = this.info.epochs.find((e) => e.epoch === epoch)?.version;
        row.append(h("td", { class: epoch === s.epoch ? "current" : "" }, other
          ? h("img", { src: url("prototype", { run: s.run, epoch, category: s.cat, clustering: s.clu, cluster: other.cluster, cmap: s.cmap, v: version }),
            alt: `prototype of cluster ${other.cluster} in epoch ${epoch}`, title: `epoch ${epoch}, cluster ${other.cluster} (${other.size} samples, ${other.event})`,
            width: 48, height: 48, loading: "lazy", fetchpriority: "low" })
          : h("span", { class: "muted", text: "–" })));
      }
      body.append(row);
    }
    table.append(body);
    replace(this.prototypes, h("div", { class: "scroll-x" }, table));
  }
}
