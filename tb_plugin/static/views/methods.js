// Methods side by side: the open sample's heatmap under every attribution method (rows) in every epoch
// (columns, at most MAX_COLUMNS spread over training, the current one included). Shown for runs with
// several methods (LRPCallback(composite=[...])); a click on a column opens that epoch.

import { url } from "../api.js";
import { h, replace } from "../dom.js";
import { isSequenceRun } from "../relevance.js";

const MAX_COLUMNS = 12;

/** Up to `count` epochs spread evenly over `epochs`, always with `current`. */
export function spreadEpochs(epochs, current, count = MAX_COLUMNS) {
  if (epochs.length <= count) return epochs.slice();
  const picked = new Set([current]);
  for (let i = 0; picked.size < count && i < count; i += 1) {
    picked.add(epochs[Math.round((i * (epochs.length - 1)) / (count - 1))]);
  }
  return epochs.filter((epoch) => picked.has(epoch));
}

class MethodsGrid {
  constructor(app) {
    this.app = app;
    this.element = h("section", { id: "methods-grid", class: "panel methods-grid hidden", "aria-label": "heatmaps of every method" });
  }

  update(topic) {
    if (["run", "sample", "epoch", "images"].includes(topic)) this.render();
  }

  render() {
    const app = this.app;
    const s = app.state;
    const methods = (app.info && app.info.methods) || [];
    if (s.sample === null || methods.length < 2 || !app.info.epochs.length || isSequenceRun(app)) {
      this.element.classList.add("hidden"); // nothing to compare: a note, kept hidden
      replace(this.element, h("p", { class: "muted", text: methods.length < 2 ? "This run has one attribution method." : "Open a sample to compare its methods." }));
      return;
    }
    const id = s.sample;
    const epochs = spreadEpochs(app.info.epochs.map((e) => e.epoch), s.epoch);
    const versions = new Map(app.info.epochs.map((e) => [e.epoch, e.version]));
    const header = h("tr", {}, h("th", { scope: "col", text: "method \\ epoch" }),
      epochs.map((epoch) => h("th", { scope: "col", class: epoch === s.epoch ? "current" : "" },
        h("button", { type: "button", text: String(epoch), title: `show epoch ${epoch}`, onclick: () => app.setEpoch(epoch) }))));
    const rows = methods.map((method, row) => h("tr", { dataset: { method } },
      h("th", { scope: "row", text: method }),
      epochs.map((epoch) => h("td", { class: epoch === s.epoch ? "current" : "" },
        h("img", {
          src: url("heatmap", { run: s.run, epoch, sample: id, cmap: s.cmap, kind: "heatmap",
            method: row === 0 ? null : method, v: versions.get(epoch) }),
          alt: `${method} heatmap of sample ${id} in epoch ${epoch}`, width: 56, height: 56, loading: "lazy",
          dataset: { epoch: String(epoch), method },
        })))));
    replace(this.element,
      h("div", { class: "panel-head" }, h("h2", { text: `Sample ${id}: ${methods.length} methods × ${epochs.length} epochs` })),
      h("table", { class: "methods-table" + (s.px ? " pixelated" : "") }, h("thead", {}, header), h("tbody", {}, rows)));
    this.element.classList.remove("hidden");
  }
}

export default {
  id: "methods",
  slot: "bottom",
  params: {},
  create: (app) => new MethodsGrid(app),
};
