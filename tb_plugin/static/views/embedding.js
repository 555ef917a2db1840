// The embedding: a scatter of the category's samples (spectral coordinates, t-SNE, UMAP), coloured
// by cluster, label, prediction, correctness or a probe metadata column; box and cluster selection,
// hover tooltip (a signal, tabular or token sample drawn as in the gallery), flagged clusters marked.

import { h, replace } from "../dom.js";
import { META_PREFIX, embeddingName, metaText, percent } from "../format.js";
import { CORRECT, NOISE, PALETTE, UNCLUSTERED, WRONG, clusterColor, css } from "../palette.js";
import { galleryPicture, isSequenceRun } from "../relevance.js";
import { Scatter } from "../scatter.js";

const MAX_TOOLTIP_METADATA = 6;

class Embedding {
  constructor(app) {
    this.app = app;
    this.hoverTimer = 0;
    this.scatter = new Scatter({
      onHover: (index, x, y) => this.showTooltip(index, x, y),
      onSelect: (indices, mode) => this.selectIndices(indices, mode),
      onToggle: (index) => this.toggleIndex(index),
      onActivate: (index) => app.openSample(Number(app.points.columns.sample_id[index])),
    });
    this.info = h("span", { id: "scatter-info", class: "muted" });
    this.message = h("div", { class: "message hidden" });
    this.legend = h("div", { id: "legend", class: "legend", role: "group", "aria-label": "clusters and colours" });
    this.caption = h("p", { id: "scatter-caption", class: "muted scatter-caption" });
    this.element = h("section", { class: "panel scatter-panel", "aria-label": "embedding" },
      h("div", { class: "panel-head" },
        h("h2", { text: "Embedding" }), this.info,
        h("span", { class: "spacer" }),
        h("button", { type: "button", text: "Reset zoom", onclick: () => this.scatter.resetView() }),
        h("button", { id: "clear-selection", type: "button", text: "Clear selection", onclick: () => app.clearSelection() })),
      this.message, this.scatter.element, this.caption, this.legend);
    this.tooltip = h("div", { id: "tooltip", class: "tooltip hidden", role: "tooltip" });
    this.floating = this.tooltip;
  }

  update(topic) {
    // Other points (another run, epoch, category or embedding): the hovered point is gone.
    if (topic === "run" || topic === "epoch" || topic === "points") this.hideTooltip();
    if (topic === "epoch") {
      this.render(true);
    } else if (topic === "points") {
      this.scatter.fitNextData(); // another category or embedding: zoom to it (an epoch keeps the zoom)
      this.render(true);
    } else if (topic === "colors") {
      this.render(false);
    } else if (topic === "selection") {
      this.applySelection();
    }
  }

  /** The metadata column the scatter is coloured by, or null. */
  colorColumn() {
    const by = this.app.state.color;
    if (!by.startsWith(META_PREFIX)) return null;
    return this.app.metadataColumns().find((m) => m.categories && META_PREFIX + m.name === by) || null;
  }

  /** Category index (into colorColumn().categories) of each point; categories.length for no value. */
  metadataCategoryOf(column) {
    const p = this.app.points;
    const index = new Map(column.categories.map((value, k) => [value, k]));
    const missing = column.categories.length;
    const result = new Uint16Array(p.count);
    for (let i = 0; i < p.count; i += 1) {
      const row = this.app.sampleRow(Number(p.columns.sample_id[i]));
      const value = row === undefined ? null : column.values[row];
      result[i] = value === null || value === undefined || !index.has(value) ? missing : index.get(value);
    }
    return result;
  }

  colorsFor() {
    const p = this.app.points;
    const n = p.count;
    const colors = new Uint16Array(n);
    const by = this.app.state.color;
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

  hideTooltip() {
    clearTimeout(this.hoverTimer);
    this.tooltip.classList.add("hidden");
  }

  /** What the scatter shows: which embedding of which samples, with the parameters that produced it. */
  captionText() {
    const app = this.app;
    const meta = app.points.meta;
    const info = app.categoryInfo();
    const config = (app.analysis && app.analysis.embedding_config) || {};
    const known = (value) => value !== null && value !== undefined;
    const category = meta.category === "all" ? "all samples" : (info && info.class_name) || meta.category;
    const samples = `the relevance maps of ${app.points.count.toLocaleString()} samples (${category}), epoch ${meta.epoch}`;
    let text;
    if (meta.embedding === "spectral") {
      const graph = info && known(info.n_neighbors) ? `the ${info.n_neighbors}-nearest-neighbour graph` : "the nearest-neighbour graph";
      text = `Spectral embedding: eigenvectors ${meta.x_dim + 1} and ${meta.y_dim + 1} of the Laplacian of ${graph} of ${samples}. ` +
        "The axes are the samples' coordinates in those eigenvectors.";
    } else if (meta.embedding === "tsne") {
      const params = known(config.perplexity) ? ` (perplexity ${config.perplexity})` : "";
      text = `t-SNE${params} of ${samples}. The axes have no unit: nearby points have similar relevance maps; distances between groups mean little.`;
    } else if (meta.embedding === "umap") {
      const parts = [];
      if (known(config.umap_n_neighbors)) parts.push(`${config.umap_n_neighbors} neighbours`);
      if (known(config.umap_min_dist)) parts.push(`minimum distance ${config.umap_min_dist}`);
      const params = parts.length ? ` (${parts.join(", ")})` : "";
      text = `UMAP${params} of ${samples}. The axes have no unit: nearby points have similar relevance maps.`;
    } else if (meta.embedding === "pca") {
      text = `PCA of ${samples}: the first two principal components (the axes are the samples' scores on them).`;
    } else {
      text = `${meta.embedding} of ${samples}.`;
    }
    return app.state.clu ? `${text} Clusters: ${app.state.clu}.` : text;
  }

  /** Why another embedding than the chosen one is shown (the category has no layout of it), or "". */
  fallbackText() {
    const app = this.app;
    const fallback = app.embeddingFallback;
    const meta = app.points.meta;
    if (!fallback || fallback.shown !== meta.embedding) return "";
    const info = app.categoryInfo();
    const category = (info && info.class_name) || meta.category;
    return `${embeddingName(fallback.wanted)} was not computed for ${category} in epoch ${meta.epoch} ` +
      "(the analysis lays out t-SNE and UMAP only for all samples and the categories with a flagged cluster); " +
      `showing ${embeddingName(fallback.shown)}.`;
  }

  render(newData = true) {
    const app = this.app;
    const p = app.points;
    if (!p) {
      this.message.textContent = app.pointsMessage();
      this.message.classList.remove("hidden");
      this.scatter.element.classList.add("hidden");
      this.caption.textContent = "";
      this.info.textContent = "";
      replace(this.legend);
      return;
    }
    this.message.classList.add("hidden");
    this.scatter.element.classList.remove("hidden");
    const note = this.fallbackText();
    replace(this.caption, note ? [h("span", { class: "caption-note", text: note }), " "] : [], this.captionText());
    const { colors, palette } = this.colorsFor();
    if (newData) {
      this.scatter.setData({ x: p.columns.x, y: p.columns.y, colors, palette, bounds: p.meta.bounds });
    } else {
      this.scatter.setColors(colors, palette);
    }
    this.applySelection();
    this.renderLegend();
    const markers = [];
    let emphasis = null;
    if (app.clusters && p.columns.cluster) {
      const flagged = new Set(app.clusters.clusters.filter((c) => c.flagged).map((c) => c.cluster));
      if (flagged.size) {
        emphasis = new Uint8Array(p.count);
        for (let i = 0; i < p.count; i += 1) emphasis[i] = flagged.has(p.columns.cluster[i]) ? 1 : 0;
      }
      for (const cluster of app.clusters.clusters.filter((c) => c.flagged)) {
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

  applySelection() {
    const app = this.app;
    const p = app.points;
    const ids = app.selectedIds();
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
      this.info.textContent = `${p.count.toLocaleString()} points${ids.size ? ` · ${count.toLocaleString()} selected` : ""}`;
    }
    for (const button of this.legend.querySelectorAll("button[data-cluster]")) {
      button.setAttribute("aria-pressed", String(app.state.selc.has(Number(button.dataset.cluster))));
    }
  }

  selectIndices(indices, mode) {
    const app = this.app;
    const ids = indices.map((i) => Number(app.points.columns.sample_id[i]));
    const selection = mode === "add" ? new Set(app.selectedIds()) : new Set();
    for (const id of ids) selection.add(id);
    app.setSelection(selection, new Set());
  }

  toggleIndex(index) {
    const app = this.app;
    const id = Number(app.points.columns.sample_id[index]);
    const selection = new Set(app.selectedIds());
    if (selection.has(id)) selection.delete(id);
    else selection.add(id);
    app.setSelection(selection, new Set());
  }

  toggleCluster(cluster, additive) {
    const selc = this.app.state.selc;
    const clusters = additive ? new Set(selc) : new Set(selc.has(cluster) && selc.size === 1 ? [] : [cluster]);
    if (additive) {
      if (clusters.has(cluster)) clusters.delete(cluster);
      else clusters.add(cluster);
    }
    this.app.setSelection(new Set(), clusters);
  }

  renderLegend() {
    const app = this.app;
    const p = app.points;
    const by = app.state.color;
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
            app.setSelection(ids, new Set());
          },
        }, h("span", { class: "swatch", style: { background: css(missing ? UNCLUSTERED : PALETTE[k % PALETTE.length]) } }),
        h("span", { text }), h("span", { class: "muted", text: String(counts[k]) })));
      }
    } else if (by === "cluster" && app.clusters) {
      for (const cluster of app.clusters.clusters) {
        const color = clusterColor(cluster.cluster);
        const button = h("button", {
          type: "button", class: cluster.flagged ? "chip flagged" : "chip", dataset: { cluster: String(cluster.cluster) },
          "aria-pressed": String(app.state.selc.has(cluster.cluster)),
          title: `cluster ${cluster.cluster}: ${cluster.size} samples, purity ${percent(cluster.purity)}, accuracy ${percent(cluster.accuracy)}, majority ${app.className(cluster.majority_label)}` +
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
        const label = typeof key === "number" ? app.className(key) : key;
        entries.push(h("button", {
          type: "button", class: "chip", title: `select the ${counts.get(key)} points: ${label}`,
          onclick: () => {
            const ids = new Set();
            for (let i = 0; i < p.count; i += 1) if (keyOf(i) === key) ids.add(Number(p.columns.sample_id[i]));
            app.setSelection(ids, new Set());
          },
        }, h("span", { class: "swatch", style: { background: css(color) } }), h("span", { text: label }),
        h("span", { class: "muted", text: String(counts.get(key)) })));
      }
    }
    replace(this.legend, entries);
  }

  showTooltip(index, clientX, clientY) {
    const app = this.app;
    if (index === null || !app.points) {
      this.hideTooltip();
      return;
    }
    clearTimeout(this.hoverTimer);
    const p = app.points;
    const id = Number(p.columns.sample_id[index]);
    const label = p.columns.label[index];
    const prediction = p.columns.prediction[index];
    const lines = [
      h("strong", { text: `sample ${id}` }),
      h("div", { text: `label: ${app.className(label)}` }),
      h("div", { class: label === prediction ? "" : "wrong-text", text: `predicted: ${app.className(prediction)}` }),
    ];
    if (p.columns.cluster) lines.push(h("div", { text: `cluster ${p.columns.cluster[index]}` }));
    for (const [name, value] of app.sampleMetadata(id).slice(0, MAX_TOOLTIP_METADATA)) {
      lines.push(h("div", { class: "muted", text: `${name}: ${metaText(value)}` }));
    }
    const images = h("div", { class: "tooltip-images" });
    replace(this.tooltip, images, h("div", { class: "tooltip-text" }, lines));
    this.tooltip.classList.remove("hidden");
    this.tooltip.classList.toggle("pixelated", app.state.px);
    const rect = app.root.getBoundingClientRect();
    const left = Math.min(clientX - rect.left + 16, rect.width - 260);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${clientY - rect.top + 16}px`;
    this.tooltip.dataset.sample = String(id);
    this.hoverTimer = setTimeout(() => {
      if (isSequenceRun(app)) {
        replace(images, galleryPicture(app, id, app.state.view, 96)); // a signal, bars or text, as in the gallery
        return;
      }
      const kinds = app.info.thumbnails ? ["input", "heatmap"] : ["heatmap"];
      replace(images, kinds.map((kind) => h("img", { src: app.imageUrl(kind, id), alt: `${kind} of sample ${id}`, width: 96, height: 96 })));
    }, 40);
  }
}

export default {
  id: "embedding",
  slot: "main",
  params: {},
  create: (app) => new Embedding(app),
};
