// The clusters panel: the category's Laplacian spectrum, each cluster's prototype over the epochs,
// and the lineage of the clusters (which cluster became which) across training.

import { getJSON, url } from "../api.js";
import { lineageChart, spectrumChart } from "../charts.js";
import { h, replace } from "../dom.js";
import { clusterColor, css } from "../palette.js";
import { isSequenceRun, prototypePicture } from "../relevance.js";

const PROTOTYPE_COLUMNS = 8;

class Clusters {
  constructor(app) {
    this.app = app;
    this.lineage = null; // {key, data}: the lineage route's answer for the current category and clustering
    this.spectrum = h("div", { id: "spectrum", class: "spectrum-box" });
    this.prototypes = h("div", { id: "prototypes", class: "prototypes" });
    this.lineageBox = h("div", { id: "lineage", class: "lineage-box" });
    this.element = h("section", { class: "panel cluster-panel", "aria-label": "clusters" },
      h("h2", { text: "Spectrum" }), this.spectrum,
      h("h2", { text: "Cluster prototypes over epochs" }), this.prototypes,
      h("h2", { text: "Cluster lineage" }), this.lineageBox);
  }

  update(topic) {
    const app = this.app;
    const token = app.token;
    if (topic === "run") {
      this.lineage = null;
    } else if (topic === "epoch") {
      this.renderSpectrum();
      app.whenIdle(() => this.load(token)); // spans every epoch: after this epoch is on screen
    } else if (topic === "points") {
      this.renderSpectrum();
      this.load(token);
    } else if (topic === "images") {
      this.render();
    }
  }

  renderSpectrum() {
    const app = this.app;
    if (!app.points) {
      replace(this.spectrum, h("p", { class: "muted", text: app.pointsMessage() }));
      return;
    }
    const info = app.categoryInfo();
    if (!info) {
      replace(this.spectrum);
      return;
    }
    const k = info.eigengap_k;
    replace(this.spectrum,
      spectrumChart({ eigenvalues: info.eigenvalues, k, label: `Laplacian spectrum of ${info.category}` }),
      h("p", { class: "muted", text: `${info.n_samples} samples, ${info.n_neighbors} neighbours; the largest eigengap suggests ${k} clusters (gap ${info.eigengap === null ? "–" : info.eigengap.toFixed(3)}).` }));
  }

  async load(token) {
    const app = this.app;
    const s = app.state;
    if (!app.analysis || !s.clu || !app.categoryInfo()) {
      replace(this.lineageBox, h("p", { class: "muted", text: "No analysis for this epoch." }));
      replace(this.prototypes, h("p", { class: "muted", text: "No analysis for this epoch." }));
      return;
    }
    const params = { run: s.run, category: s.cat, clustering: s.clu };
    const analysedEpochs = app.info.epochs.filter((e) => e.analysis).map((e) => e.epoch).join(",");
    const key = JSON.stringify({ ...params, analysedEpochs });
    try {
      if (!this.lineage || this.lineage.key !== key) {
        const data = await getJSON("lineage", params);
        if (token !== app.token) return;
        this.lineage = { key, data };
      }
      this.render();
    } catch (error) {
      if (token === app.token) replace(this.lineageBox, h("p", { class: "error", text: error.message }));
    }
  }

  render() {
    const app = this.app;
    if (!this.lineage || !app.analysis) return;
    const data = this.lineage.data;
    const s = app.state;
    const current = data.epochs.find((e) => e.epoch === s.epoch);
    replace(this.lineageBox,
      h("div", { class: "scroll-x" }, lineageChart({
        epochs: data.epochs, current: s.epoch, colorOf: (cluster) => css(clusterColor(cluster)),
        onPick: async (epoch, cluster) => {
          await app.setEpoch(epoch);
          app.setSelection(new Set(), new Set([cluster]));
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
    const values = isSequenceRun(app); // a signal, table or text: drawn from values, not a picture
    for (const cluster of current.clusters) {
      const row = h("tr", {}, h("th", { scope: "row" },
        h("span", { class: "swatch", style: { background: css(clusterColor(cluster.cluster)) } }),
        h("span", { text: ` ${cluster.cluster}` }),
        cluster.flagged ? h("span", { class: "flag", text: " ⚑", title: cluster.flag_reason || "flagged" }) : null));
      for (const epoch of columns) {
        const other = (byEpoch.get(epoch)?.clusters || []).find((c) => c.track === cluster.track);
        const version = app.info.epochs.find((e) => e.epoch === epoch)?.version;
        const params = { run: s.run, epoch, category: s.cat, clustering: s.clu, cluster: other?.cluster, cmap: s.cmap, v: version };
        const title = other ? `epoch ${epoch}, cluster ${other.cluster} (${other.size} samples, ${other.event})` : "";
        let picture = h("span", { class: "muted", text: "–" });
        if (other && values) picture = prototypePicture(app, params, title);
        else if (other) {
          picture = h("img", { src: url("prototype", params), alt: `prototype of cluster ${other.cluster} in epoch ${epoch}`,
            title, width: 48, height: 48, loading: "lazy", fetchpriority: "low" });
        }
        row.append(h("td", { class: epoch === s.epoch ? "current" : "" }, picture));
      }
      body.append(row);
    }
    table.append(body);
    replace(this.prototypes, h("div", { class: "scroll-x" }, table));
  }
}

export default {
  id: "clusters",
  slot: "main",
  params: {},
  create: (app) => new Clusters(app),
};
