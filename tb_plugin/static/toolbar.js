// The tab's toolbar: run, epoch (slider and play), category, embedding, clustering, colours and the
// share link. Its choices are the shared state that every view reads (app.state).

import { field, h, select, setOptions } from "./dom.js";
import { META_PREFIX, embeddingName } from "./format.js";
import { pick, shareLink } from "./state.js";

export const COLOR_BY = [
  { value: "cluster", label: "cluster" },
  { value: "label", label: "label" },
  { value: "prediction", label: "prediction" },
  { value: "correct", label: "correctness" },
];
const PLAY_INTERVAL_MS = 900;

export class Toolbar {
  constructor(app) {
    this.app = app;
    this.player = null;
    const s = app.state;
    const update = (changes, topic) => app.update(changes, topic);
    this.controls = {
      run: select([], null, { id: "run", onchange: (event) => app.setRun(event.target.value) }),
      method: select([], null, { id: "method", "aria-label": "attribution method",
        onchange: (event) => app.setAttribution({ method: event.target.value }) }),
      analysis: select([], null, { id: "analysis", "aria-label": "named analysis",
        onchange: (event) => app.setAttribution({ ana: event.target.value === "default" ? "" : event.target.value }) }),
      epoch: h("input", { id: "epoch", type: "range", min: 0, max: 0, step: 1, value: 0,
        "aria-label": "epoch", oninput: (event) => app.setEpochIndex(Number(event.target.value)) }),
      play: h("button", { id: "play", type: "button", text: "▶ Play", title: "play through the epochs",
        onclick: () => this.togglePlay() }),
      epochLabel: h("output", { id: "epoch-label", class: "epoch-label", "aria-live": "polite" }),
      category: select([], s.cat, { id: "category", onchange: (event) => update(app.categoryChanges(event.target.value), "points") }),
      embedding: select([], s.emb, { id: "embedding", onchange: (event) => {
        app.embeddingChoice = event.target.value;
        update({ emb: event.target.value }, "points");
      } }),
      ex: select([], s.ex, { id: "dim-x", onchange: (event) => update({ ex: Number(event.target.value) }, "points") }),
      ey: select([], s.ey, { id: "dim-y", onchange: (event) => update({ ey: Number(event.target.value) }, "points") }),
      clustering: select([], s.clu, { id: "clustering", onchange: (event) => update({ clu: event.target.value, selc: new Set() }, "points") }),
      color: select(COLOR_BY, s.color, { id: "color-by", onchange: (event) => update({ color: event.target.value }, "colors") }),
      cmap: select([], s.cmap, { id: "cmap", onchange: (event) => update({ cmap: event.target.value }, "images") }),
      share: h("button", { id: "share", type: "button", text: "Copy link", title: "copy a link to this view",
        onclick: () => this.share() }),
    };
    const c = this.controls;
    this.dims = h("span", { class: "dims hidden" }, field("x", c.ex), field("y", c.ey));
    this.methodField = field("Method", c.method, { class: "field hidden" });
    this.analysisField = field("Analysis", c.analysis, { class: "field hidden" });
    this.element = h("header", { class: "toolbar" },
      field("Run", c.run),
      this.methodField,
      this.analysisField,
      h("div", { class: "field epoch-field" }, h("span", { class: "field-label", text: "Epoch" }), c.epoch, c.play, c.epochLabel),
      field("Category", c.category),
      field("Embedding", c.embedding), this.dims,
      field("Clustering", c.clustering),
      field("Colour by", c.color),
      field("Colour map", c.cmap),
      c.share);
  }

  get playing() {
    return this.player !== null;
  }

  renderRuns(runs) {
    setOptions(this.controls.run, runs.map((run) => ({
      value: run.run, label: run.error ? `${run.run} (unreadable)` : `${run.run} (${run.epochs} epochs)`, disabled: !!run.error })),
    this.app.state.run);
  }

  /** A run was opened: its name, its colour maps and its epochs. */
  showRun(info) {
    const s = this.app.state;
    this.controls.run.value = s.run;
    const methods = info.methods || [];
    setOptions(this.controls.method, methods.map((name) => ({ value: name })), s.method || methods[0]);
    this.methodField.classList.toggle("hidden", methods.length < 2);
    const analyses = info.analyses || ["default"];
    const shown = analyses.includes("default") ? analyses : ["default", ...analyses];
    setOptions(this.controls.analysis, shown.map((name) => ({ value: name })), s.ana || "default");
    this.analysisField.classList.toggle("hidden", shown.length < 2);
    setOptions(this.controls.cmap, info.colormaps.map((name) => ({ value: name })),
      info.colormaps.includes(s.cmap) ? s.cmap : info.default_cmap);
    s.cmap = this.controls.cmap.value;
    this.renderEpochSlider();
  }

  renderEpochSlider() {
    const epochs = this.app.info.epochs;
    const slider = this.controls.epoch;
    slider.max = String(Math.max(0, epochs.length - 1));
    slider.disabled = epochs.length < 2;
    this.controls.play.disabled = epochs.length < 2;
    const index = this.app.epochIndex();
    if (index >= 0) slider.value = String(index);
    this.renderEpochLabel();
  }

  /** The epoch at `index` is being opened. */
  showEpoch(index) {
    this.controls.epoch.value = String(index);
    this.renderEpochLabel();
  }

  renderEpochLabel() {
    const epochs = this.app.info.epochs;
    const index = this.app.epochIndex();
    const entry = epochs[index];
    this.controls.epochLabel.textContent = entry
      ? `epoch ${entry.epoch} · step ${entry.global_step} · ${index + 1}/${epochs.length}`
      : "no epoch";
    this.controls.epoch.setAttribute("aria-valuetext", entry ? `epoch ${entry.epoch}` : "no epoch");
  }

  categories() {
    const app = this.app;
    if (app.analysis) {
      return app.analysis.categories.map((c) => ({
        value: c.category,
        label: c.category === "all" ? "all samples" : (c.class_name || c.category) + (c.status === "ok" ? "" : " (not analysed)"),
        disabled: c.status !== "ok",
      }));
    }
    const names = app.info.class_names || [];
    const labels = app.samples ? [...new Set(Array.from(app.samples.columns.label))].sort((a, b) => a - b) : [];
    const classes = names.length ? names.map((_, i) => i) : labels;
    return [{ value: "all", label: "all samples" }, ...classes.map((i) => ({ value: `class_${i}`, label: app.className(i) }))];
  }

  /** The category, embedding and clustering choices of this epoch's analysis; keeps the state valid. */
  renderSelectors() {
    const app = this.app;
    const s = app.state;
    const c = this.controls;
    const categories = this.categories();
    const usable = categories.filter((option) => !option.disabled);
    if (!usable.some((option) => option.value === s.cat)) s.cat = usable.length ? usable[0].value : "all";
    setOptions(c.category, categories, s.cat);
    const analysed = !!app.analysis;
    const colorOptions = [...COLOR_BY, ...app.metadataColumns().filter((m) => m.categories)
      .map((m) => ({ value: META_PREFIX + m.name, label: `${m.name} (metadata)` }))];
    s.color = pick(s.color, colorOptions, "cluster");
    setOptions(c.color, colorOptions, s.color);
    for (const control of [c.embedding, c.clustering, c.color]) control.disabled = !analysed;
    if (!analysed) {
      setOptions(c.embedding, [{ value: "", label: "–" }], "");
      setOptions(c.clustering, [{ value: "", label: "–" }], "");
      this.dims.classList.add("hidden");
      return;
    }
    const info = app.categoryInfo();
    this.chooseEmbedding(info);
    const available = info && info.embeddings ? info.embeddings : app.analysis.embeddings;
    setOptions(c.embedding, available.map((name) => ({ value: name, label: embeddingName(name) })), s.emb);
    const dims = info ? info.spectral_dims : 0;
    const dimOptions = Array.from({ length: dims }, (_, i) => ({ value: i, label: `λ${i + 1}` }));
    if (s.ex >= dims) s.ex = Math.min(1, Math.max(0, dims - 1));
    if (s.ey >= dims) s.ey = Math.min(2, Math.max(0, dims - 1));
    setOptions(c.ex, dimOptions, s.ex);
    setOptions(c.ey, dimOptions, s.ey);
    this.dims.classList.toggle("hidden", s.emb !== "spectral");
    const clusterings = info ? info.clusterings : [];
    if (!clusterings.includes(s.clu)) {
      s.clu = info && clusterings.includes(info.selected_clustering) ? info.selected_clustering : clusterings[0] ?? null;
    }
    setOptions(c.clustering, clusterings.length ? clusterings.map((name) => ({ value: name })) : [{ value: "", label: "–" }], s.clu ?? "");
    c.clustering.disabled = !clusterings.length;
  }

  /**
   * The embedding to show for this category: the one last chosen where the category has it, else
   * PCA (or its first). The analysis lays out t-SNE and UMAP only for some categories, so a choice
   * that this category lacks is kept for the next one, and app.embeddingFallback says what stands in.
   */
  chooseEmbedding(info) {
    const app = this.app;
    const s = app.state;
    const epoch = app.analysis.embeddings;
    const available = info && info.embeddings ? info.embeddings : epoch;
    const wanted = app.embeddingChoice ?? s.emb;
    app.embeddingFallback = null;
    if (available.includes(wanted)) {
      s.emb = wanted;
    } else if (epoch.includes(wanted)) { // laid out for other categories of this epoch, not this one
      s.emb = available.includes("pca") ? "pca" : available[0] ?? null;
      if (s.emb) app.embeddingFallback = { wanted, shown: s.emb };
    } else { // none chosen yet, or a name this epoch does not know (an old link): the first, as always
      s.emb = available[0] ?? null;
    }
    if (app.embeddingChoice === null || app.embeddingChoice === undefined) app.embeddingChoice = s.emb;
  }

  async share() {
    this.app.saveState();
    const link = shareLink();
    try {
      await navigator.clipboard.writeText(link);
      this.app.setStatus("Link to this view copied.", "info");
    } catch (error) {
      this.app.setStatus(`Link to this view: ${link}`, "info");
    }
  }

  togglePlay() {
    const app = this.app;
    if (this.player) {
      this.stopPlay();
      return;
    }
    this.controls.play.textContent = "⏸ Pause";
    this.controls.play.setAttribute("aria-pressed", "true");
    const step = async () => {
      const next = app.epochIndex() + 1;
      if (next >= app.info.epochs.length) {
        this.stopPlay();
        return;
      }
      await app.setEpochIndex(next);
      if (this.player) this.player = setTimeout(step, PLAY_INTERVAL_MS);
    };
    if (app.epochIndex() === app.info.epochs.length - 1) app.setEpochIndex(0);
    this.player = setTimeout(step, PLAY_INTERVAL_MS);
  }

  stopPlay() {
    if (this.player) clearTimeout(this.player);
    this.player = null;
    this.controls.play.textContent = "▶ Play";
    this.controls.play.setAttribute("aria-pressed", "false");
  }
}
