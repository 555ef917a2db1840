// The LRP tab's shell: the shared state and data, and the views that show them.
//
// The shell owns what every view shares: the state in the URL (run, epoch, category, embedding,
// clustering, colours, selection, the open sample), the run's info and the epoch's data (samples,
// analysis, embedded points, clusters), the toolbar, and loading. Each view (views/*.js, listed in
// views/index.js) builds its own panel and is told what changed through update(topic, changes); see
// views/index.js for the contract and docs/recipes/plugin_view.md for adding one.

import { RequestError, getColumns, getJSON, selection, url } from "./api.js";
import { h, replace } from "./dom.js";
import { META_PREFIX } from "./format.js";
import {
  encodeIds, listenToHashChanges, listenToHost, param, pick, readChangedState, readState, resetPerRun, stateTexts, writeState,
} from "./state.js";
import { COLOR_BY, Toolbar } from "./toolbar.js";

const REFRESH_MS = 15000;
const MAX_HASH_IDS = 2000;
// Probe metadata columns (LRPCallback(probe_metadata=...)) colour the scatter as `meta:<name>`, when their
// values fall into a few categories: booleans, and strings or numbers with at most MAX_CATEGORIES values.
const MAX_CATEGORIES = 20;
const SLOTS = ["top", "main", "bottom"];

// The shell's URL keys; the views' own keys go between the two groups (the URL's order).
const SHARED_PARAMS = {
  run: param.text(),
  method: param.text(), // the attribution method (runs with several); empty: the run's first
  ana: param.text(), // a named analysis (lrp-analyze --name); empty: the default one
  epoch: param.integer(null),
  cat: param.text("all"),
  emb: param.text(),
  ex: { read: param.integer(1).read, write: (value, state) => (state.emb === "spectral" ? value : null) },
  ey: { read: param.integer(2).read, write: (value, state) => (state.emb === "spectral" ? value : null) },
  clu: param.text(),
  // A metadata column is checked once the run's samples are loaded (Toolbar.renderSelectors).
  color: {
    read: (text) => (String(text ?? "").startsWith(META_PREFIX) ? text : pick(text, COLOR_BY, "cluster")),
    write: (value) => value,
  },
  cmap: param.text("bwr"),
};
const SELECTION_PARAMS = {
  // Chosen clusters win over chosen ids; a huge id list stays out of the URL.
  sel: { ...param.ids(), write: (ids, state) => (state.selc.size || ids.size > MAX_HASH_IDS ? "" : encodeIds(ids)), perRun: true },
  selc: { ...param.ids(), perRun: true },
  sample: { ...param.integer(null), perRun: true },
};

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
  /**
   * @param {HTMLElement} root the tab's element
   * @param {Array<Object>} views view definitions (views/index.js), in page order
   */
  constructor(root, views) {
    this.root = root;
    this.params = { ...SHARED_PARAMS };
    for (const view of views) {
      if (!SLOTS.includes(view.slot)) throw new Error(`view ${view.id}: slot must be one of ${SLOTS.join(", ")}, got ${view.slot}`);
      for (const [key, spec] of Object.entries(view.params || {})) {
        if (key in this.params || key in SELECTION_PARAMS) throw new Error(`view ${view.id}: URL key ${key} is taken; choose another`);
        this.params[key] = spec;
      }
    }
    Object.assign(this.params, SELECTION_PARAMS);
    this.state = readState(this.params);
    // The embedding last chosen (or linked); app.state.emb is the one shown, which differs where the
    // category has no layout of the chosen one (Toolbar.chooseEmbedding, then app.embeddingFallback).
    this.embeddingChoice = this.state.emb;
    this.embeddingFallback = null;
    this.info = null;
    this.runs = [];
    this.samples = null;
    this.analysis = null;
    this.points = null;
    this.clusters = null;
    this.token = 0;
    this.responses = new Map();
    this.toolbar = new Toolbar(this);
    this.status = h("div", { id: "status", class: "status", role: "status" });
    this.views = {};
    const slots = { top: [], main: [], bottom: [] };
    const floating = [];
    for (const view of views) {
      if (view.id in this.views) throw new Error(`view ${view.id} is listed twice`);
      const instance = view.create(this);
      instance.element.dataset.view = view.id;
      this.views[view.id] = instance;
      slots[view.slot].push(instance.element);
      if (instance.floating) floating.push(instance.floating);
    }
    replace(this.root, this.toolbar.element, this.status, slots.top, h("div", { class: "main" }, slots.main), slots.bottom, floating);
  }

  /** The embedding's scatter (for the browser tests and the developer console). */
  get scatter() {
    return this.views.embedding?.scatter;
  }

  /**
   * Tell every view what changed, in page order. A view that throws is reported (status line and
   * console) and the others still update.
   */
  notify(topic, changes = {}) {
    for (const [id, view] of Object.entries(this.views)) {
      if (!view.update) continue;
      const failed = (error) => {
        console.error(`LRP view ${id} failed on ${topic}:`, error);
        this.setStatus(`The ${id} view failed: ${error.message || error}`, "error");
      };
      try {
        const result = view.update(topic, changes);
        if (result && typeof result.catch === "function") result.catch(failed);
      } catch (error) {
        failed(error);
      }
    }
  }

  // ------------------------------------------------------------------------------ start and data

  /** @param {Promise} [style] the style sheet loading; waited for together with the run list. */
  async start(style = Promise.resolve()) {
    listenToHost(() => this.refresh());
    listenToHashChanges((fromHost) => this.followLink(fromHost));
    setInterval(() => this.refresh(), REFRESH_MS);
    try {
      // One round trip for the run list, the run to open (the URL's, else the first readable one), its
      // info and findings, and the opened epoch's analysis (the plugin's /first_view route).
      const [view] = await Promise.all([getJSON("first_view", { run: this.state.run || null, epoch: this.state.epoch }), style]);
      this.renderRuns(view.runs);
      if (view.run === null) {
        const problems = view.runs.filter((run) => run.error).map((run) => run.error);
        this.setStatus(problems.length ? problems.join("\n") : "No run with LRP data below the logdir yet. Train with LRPCallback.", "error");
        this.root.dataset.ready = "true";
        return;
      }
      await this.setRun(view.run, true, Promise.resolve(view.info), view);
    } catch (error) {
      this.fail(error);
      this.root.dataset.ready = "true";
    }
  }

  /** A share link pasted into the open tab (only the hash changed): open what it names, as a reload would. */
  async followLink(fromHost) {
    const next = readChangedState(this.params, fromHost);
    if (stateTexts(this.params, next) === stateTexts(this.params, this.state)) return; // our own URL
    const usable = this.runs.filter((run) => !run.error).map((run) => run.run);
    const run = usable.includes(next.run) ? next.run : this.state.run;
    Object.assign(this.state, next, { run: this.state.run });
    this.embeddingChoice = next.emb;
    await this.setRun(run, true);
  }

  renderRuns(runs) {
    this.runs = runs;
    this.toolbar.renderRuns(runs);
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
      this.toolbar.renderEpochSlider();
      if (atEnd && !this.toolbar.playing) await this.setEpochIndex(info.epochs.length - 1);
    } catch (error) {
      // A refresh failing (TensorBoard restarting, a run being deleted) is shown, never thrown.
      this.setStatus(`Refreshing the run failed: ${error.message}`, "error");
    }
  }

  /**
   * A route's answer, kept for the last 40 requests of this run (cleared when the run or its epochs change).
   * @param {"json"|"columns"} kind
   */
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

  /**
   * @param {Promise<Object>} [pending] the run's /run answer, already asked for
   * @param {Object} [view] the /first_view answer that `pending` came from: its analysis and findings are kept
   */
  async setRun(run, initial = false, pending = null, view = null) {
    this.toolbar.stopPlay();
    const token = ++this.token;
    this.setBusy(true);
    try {
      if (run !== this.state.run) Object.assign(selection, { method: null, analysis: null });
      let info = (pending && (await pending)) || (await getJSON("run", { run }));
      if (token !== this.token) return;
      const chosen = this.choose(info);
      if (chosen) info = await getJSON("run", { run }); // the chosen method's epochs and analyses
      if (token !== this.token) return;
      this.info = info;
      this.state.run = run;
      this.responses.clear();
      if (view && !chosen) {
        // The default method's and analysis's answers: the summary of the epoch that loadEpoch opens, the findings.
        if (view.analysis) this.responses.set(url("analysis", { run, epoch: view.epoch }), Promise.resolve(view.analysis));
        if (view.findings) this.responses.set(url("findings", { run }), Promise.resolve(view.findings));
      }
      if (!initial) resetPerRun(this.params, this.state);
      const opening = info.epochs.find((e) => e.epoch === this.state.epoch) || info.epochs[info.epochs.length - 1];
      // Asked for now, while the toolbar and the views are built; loadEpoch finds the request under way.
      if (opening) this.fetchCached("columns", "samples", { run, epoch: opening.epoch }).catch(() => {});
      this.toolbar.showRun(info);
      this.notify("run");
      if (!info.epochs.length) {
        this.setStatus(`Run ${run} has no complete epoch yet; it appears after the first validation epoch.`, "info");
        this.root.dataset.ready = "true";
        return;
      }
      let index = info.epochs.findIndex((e) => e.epoch === this.state.epoch);
      if (index < 0) index = info.epochs.length - 1;
      await this.loadEpoch(index, token);
      if (initial && this.state.sample !== null) this.notify("sample"); // a shared link's sample, scrolled to
    } catch (error) {
      this.fail(error);
    } finally {
      if (token === this.token) this.setBusy(false);
      this.root.dataset.ready = "true";
    }
  }

  /**
   * Take the state's method and analysis where the run has them (else its first method, the default
   * analysis) into the requests' selection; true when the selection differs from the run's defaults.
   */
  choose(info) {
    const methods = info.methods || [];
    const analyses = info.analyses || [];
    const method = methods.includes(this.state.method) ? this.state.method : methods[0] || "";
    const analysis = analyses.includes(this.state.ana) ? this.state.ana : "default";
    this.state.method = method === methods[0] ? "" : method;
    this.state.ana = analysis === "default" ? "" : analysis;
    selection.method = this.state.method || null;
    selection.analysis = this.state.ana || null;
    return selection.method !== null || selection.analysis !== null;
  }

  /** Show another attribution method or named analysis of the open run. */
  async setAttribution(changes) {
    Object.assign(this.state, changes);
    writeState(this.params, this.state);
    await this.setRun(this.state.run, true);
  }

  epochIndex() {
    return this.info ? this.info.epochs.findIndex((e) => e.epoch === this.state.epoch) : -1;
  }

  async setEpochIndex(index) {
    if (!this.info || index < 0 || index >= this.info.epochs.length) return;
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
    this.toolbar.showEpoch(index);
    this.setBusy(true);
    try {
      const [samples, analysis] = await Promise.all([
        this.fetchCached("columns", "samples", { run, epoch: entry.epoch }),
        entry.analysis ? this.fetchCached("json", "analysis", { run, epoch: entry.epoch }) : Promise.resolve(null),
      ]);
      if (token !== this.token) return;
      this.samples = { ...samples, byId: indexIds(samples.columns.sample_id), metadata: prepareMetadata(samples.meta.metadata) };
      this.analysis = analysis;
      this.toolbar.renderSelectors();
      await this.loadPoints(token);
      if (token !== this.token) return;
      this.setStatus("", "");
      this.notify("epoch");
      this.saveState();
      this.root.dataset.epoch = String(entry.epoch);
      this.root.dataset.epochSwitchMs = String(Math.round(performance.now() - started));
      if (this.toolbar.playing) this.prefetch(index + 1);
    } catch (error) {
      if (token === this.token) this.fail(error);
    } finally {
      if (token === this.token) this.setBusy(false);
    }
  }

  /** The points and clusters of the chosen category, embedding and clustering (null without analysis). */
  async loadPoints(token) {
    const s = this.state;
    const info = this.categoryInfo();
    if (!this.analysis || !info || info.status !== "ok" || !s.emb) {
      this.points = null;
      this.clusters = null;
      return;
    }
    const [points, clusters] = await Promise.all([
      this.fetchCached("columns", "embedding", this.embeddingParams(s.epoch)),
      s.clu ? this.fetchCached("json", "clusters", { run: s.run, epoch: s.epoch, category: s.cat, clustering: s.clu }) : null,
    ]);
    if (token !== this.token) return;
    this.points = { ...points, byId: indexIds(points.columns.sample_id) };
    this.clusters = clusters;
  }

  /** Why there are no points: the text that the embedding and the spectrum show instead. */
  pointsMessage() {
    const info = this.categoryInfo();
    const entry = this.info.epochs[this.epochIndex()];
    if (!this.analysis && entry && entry.analysis_error) {
      return `The analysis of epoch ${this.state.epoch} cannot be read: ${entry.analysis_error}`;
    }
    if (!this.analysis) {
      return `Epoch ${this.state.epoch} has no analysis yet: run \`lrp-analyze\` on this run (or let LRPCallback analyse) to see embeddings and clusters. The gallery shows the heatmaps meanwhile.`;
    }
    if (info && info.status !== "ok") return `Category ${this.state.cat} was not analysed: ${info.message || info.status}.`;
    return "No embedding in this analysis.";
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
      // Only an embedding that the next epoch laid out for this category: it may lay out another set.
      this.fetchCached("json", "analysis", { run, epoch: entry.epoch }).then((analysis) => {
        const info = analysis.categories.find((c) => c.category === this.state.cat);
        if (run === this.state.run && info && (info.embeddings || analysis.embeddings).includes(this.state.emb)) {
          return this.fetchCached("columns", "embedding", this.embeddingParams(entry.epoch));
        }
        return null;
      }).catch(() => {});
    }
  }

  categoryInfo() {
    return this.analysis ? this.analysis.categories.find((c) => c.category === this.state.cat) || null : null;
  }

  embeddingParams(epoch) {
    const s = this.state;
    return {
      run: s.run, epoch, category: s.cat, embedding: s.emb,
      x: s.emb === "spectral" ? s.ex : null, y: s.emb === "spectral" ? s.ey : null,
      clustering: s.clu,
    };
  }

  // ------------------------------------------------------------------------------ state

  /**
   * Change the shared state and tell the views. Topics: "points" (category, embedding or clustering:
   * the points are fetched again first), "colors", "images" (colour map, image kind), "sampling"
   * (image size, pixelation), "gallery", "selection", "sample" (views/index.js lists them all).
   */
  async update(changes, topic) {
    Object.assign(this.state, changes);
    if (topic === "points") await this.reloadPoints(changes);
    else this.notify(topic, changes);
    this.saveState();
  }

  async reloadPoints(changes) {
    this.toolbar.renderSelectors();
    const token = ++this.token;
    this.setBusy(true);
    try {
      await this.loadPoints(token);
      if (token !== this.token) return;
      this.notify("points", changes);
    } catch (error) {
      this.fail(error);
    } finally {
      if (token === this.token) this.setBusy(false);
    }
  }

  saveState() {
    writeState(this.params, this.state);
  }

  /**
   * The changes that open category `cat`: its own default clustering (the one its analysis selected),
   * and no selection, since cluster numbers and sample ids of another category mean nothing here.
   */
  categoryChanges(cat) {
    const info = this.analysis ? this.analysis.categories.find((c) => c.category === cat) : null;
    const clusterings = info ? info.clusterings : [];
    const clu = info && clusterings.includes(info.selected_clustering) ? info.selected_clustering : clusterings[0] ?? this.state.clu;
    return { cat, clu, sel: new Set(), selc: new Set() };
  }

  /** Select samples by id, or whole clusters (of the current clustering). */
  setSelection(ids, clusters) {
    return this.update({ sel: ids, selc: clusters }, "selection");
  }

  clearSelection() {
    return this.setSelection(new Set(), new Set());
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

  /** Open one sample's details (its timeline), or close them with null. */
  openSample(id) {
    return this.update({ sample: id }, "sample");
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

  isWrong(id) {
    const row = this.sampleRow(id);
    if (row === undefined) return false;
    return this.samples.columns.label[row] !== this.samples.columns.prediction[row];
  }

  /** URL of a sample's picture: "input", or "heatmap" / "overlay" in `epoch` with the chosen colour map. */
  imageUrl(kind, id, epoch = this.state.epoch) {
    if (kind === "input") return url("input", { run: this.state.run, sample: id });
    const entry = this.info.epochs.find((e) => e.epoch === epoch);
    return url("heatmap", { run: this.state.run, epoch, sample: id, cmap: this.state.cmap, kind, v: entry ? entry.version : null });
  }
}
