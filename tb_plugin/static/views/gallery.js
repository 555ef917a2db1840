// The gallery: a page of the current samples (the selection, else the category) as inputs, heatmaps
// or overlays, with the CSV / JSON export of their ids. Signal, tabular and token runs show each
// sample drawn from its relevance values instead (relevance.js): "Input" leaves out the colours.

import { download, field, h, replace, select } from "../dom.js";
import { META_PREFIX, csvCell } from "../format.js";
import { galleryPicture, isSequenceRun } from "../relevance.js";
import { importSelection } from "../importing.js";
import { param } from "../state.js";

const KINDS = [
  { value: "input", label: "Input" },
  { value: "heatmap", label: "Heatmap" },
  { value: "overlay", label: "Overlay" },
];
const PAGE_SIZES = [24, 48, 96, 192];
const IMAGE_SIZES = [64, 96, 128, 192];

class Gallery {
  constructor(app) {
    this.app = app;
    const s = app.state;
    const kinds = h("div", { class: "segmented", role: "radiogroup", "aria-label": "gallery images" });
    this.kindInputs = KINDS.map((kind) => {
      const input = h("input", { type: "radio", name: "view", value: kind.value, id: `view-${kind.value}`,
        checked: s.view === kind.value, onchange: () => app.update({ view: kind.value }, "images") });
      kinds.append(h("label", { class: "segment" }, input, h("span", { text: kind.label })));
      return input;
    });
    const pixelated = h("input", { id: "pixelated", type: "checkbox", checked: s.px,
      onchange: (event) => app.update({ px: event.target.checked }, "sampling") });
    const size = select(IMAGE_SIZES.map((v) => ({ value: v, label: `${v}px` })), s.size,
      { id: "image-size", onchange: (event) => app.update({ size: Number(event.target.value) }, "sampling") });
    const wrongOnly = h("input", { id: "wrong-only", type: "checkbox", checked: s.wrong,
      onchange: (event) => app.update({ wrong: event.target.checked, page: 0 }, "gallery") });
    const pageSize = select(PAGE_SIZES.map((v) => ({ value: v, label: String(v) })), s.psize,
      { id: "page-size", onchange: (event) => app.update({ psize: Number(event.target.value), page: 0 }, "gallery") });
    this.controls = { pixelated, size, wrongOnly, pageSize };
    this.pageLabel = h("span", { id: "page-label", class: "muted" });
    this.prevPage = h("button", { id: "prev-page", type: "button", text: "◀ Prev", onclick: () => this.turnPage(-1) });
    this.nextPage = h("button", { id: "next-page", type: "button", text: "Next ▶", onclick: () => this.turnPage(1) });
    this.title = h("h2", { id: "gallery-title", text: "Samples" });
    this.grid = h("div", { id: "gallery", class: "gallery" });
    this.element = h("section", { class: "panel gallery-panel", "aria-label": "gallery" },
      h("div", { class: "panel-head wrap" },
        this.title, kinds,
        h("label", { class: "check" }, pixelated, h("span", { text: "Pixelated" })),
        field("Size", size),
        h("label", { class: "check" }, wrongOnly, h("span", { text: "Misclassified only" })),
        field("Per page", pageSize),
        this.prevPage, this.pageLabel, this.nextPage,
        h("span", { class: "spacer" }),
        h("button", { id: "export-csv", type: "button", text: "Export CSV", onclick: () => this.exportIds("csv") }),
        h("button", { id: "export-json", type: "button", text: "Export JSON", onclick: () => this.exportIds("json") }),
        h("label", { class: "button import", title: "select the samples of an exported selection or finding (CSV or JSON)" },
          h("span", { text: "Import…" }),
          h("input", { id: "import-selection", type: "file", accept: ".csv,.json,text/csv,application/json", class: "visually-hidden",
            onchange: (event) => {
              const file = event.target.files[0];
              event.target.value = "";
              if (file) importSelection(this.app, file);
            } }))),
      this.grid);
  }

  update(topic, changes) {
    if (topic === "run") {
      // The controls show the state, which a pasted share link may have changed (App.followLink).
      const s = this.app.state;
      const c = this.controls;
      c.pixelated.checked = s.px;
      c.size.value = String(s.size);
      c.wrongOnly.checked = s.wrong;
      c.pageSize.value = String(s.psize);
      c.pixelated.parentElement.classList.toggle("hidden", isSequenceRun(this.app)); // drawings, not pixels
      this.setKind(s.view);
      // A run without thumbnails has heatmaps only; a token run always has its text; tabular runs show bars only.
      const modality = this.app.info.modality;
      const inputs = (this.app.info.thumbnails || modality === "tokens") && modality !== "tabular";
      this.kindInputs.forEach((input) => {
        input.disabled = input.value !== "heatmap" && !inputs;
      });
      if (!inputs && this.app.state.view !== "heatmap") this.setKind("heatmap");
      return;
    }
    // Another selection or category is another list of samples: back to its first page.
    if (topic === "selection" || (topic === "points" && "cat" in changes)) this.app.state.page = 0;
    if (["epoch", "points", "images", "sampling", "gallery", "selection"].includes(topic)) this.render();
  }

  setKind(kind) {
    this.app.state.view = kind;
    this.kindInputs.forEach((input) => {
      input.checked = input.value === kind;
    });
  }

  /** The samples to show: the selection, else the embedded points, else the category's samples. */
  ids() {
    const app = this.app;
    const s = app.state;
    let ids;
    const selected = app.selectedIds();
    if (selected.size) {
      ids = [...selected].filter((id) => app.samples.byId.has(id)).sort((a, b) => a - b);
    } else if (app.points) {
      ids = Array.from(app.points.columns.sample_id, Number);
    } else {
      const c = app.samples.columns;
      const classIndex = s.cat.startsWith("class_") ? Number(s.cat.slice(6)) : null;
      ids = [];
      for (let i = 0; i < app.samples.count; i += 1) {
        if (classIndex === null || c.label[i] === classIndex) ids.push(Number(c.sample_id[i]));
      }
    }
    if (s.wrong) ids = ids.filter((id) => app.isWrong(id));
    return ids;
  }

  turnPage(step) {
    this.app.state.page = Math.max(0, this.app.state.page + step);
    this.render();
    this.app.saveState();
  }

  render() {
    const app = this.app;
    if (!app.samples) return;
    const s = app.state;
    const ids = this.ids();
    const pages = Math.max(1, Math.ceil(ids.length / s.psize));
    s.page = Math.min(Math.max(0, s.page), pages - 1);
    const shown = ids.slice(s.page * s.psize, (s.page + 1) * s.psize);
    const selected = app.selectedIds().size;
    this.title.textContent = selected ? `Selection (${ids.length})` : `Samples (${ids.length})`;
    this.pageLabel.textContent = `page ${s.page + 1} of ${pages}`;
    this.prevPage.disabled = s.page === 0;
    this.nextPage.disabled = s.page >= pages - 1;
    this.grid.classList.toggle("pixelated", s.px);
    this.grid.style.setProperty("--cell", `${s.size}px`);
    const sequences = isSequenceRun(app);
    this.grid.classList.toggle("sequences", sequences);
    const kind = s.view === "input" && !(app.info.thumbnails || app.info.modality === "tokens") ? "heatmap" : s.view;
    const cards = shown.map((id) => {
      const row = app.sampleRow(id);
      const label = app.samples.columns.label[row];
      const prediction = app.samples.columns.prediction[row];
      const wrong = label !== prediction;
      return h("button", {
        type: "button", class: wrong ? "card wrong" : "card", dataset: { sample: String(id) },
        title: `sample ${id}: label ${app.className(label)}, predicted ${app.className(prediction)}${wrong ? " (misclassified)" : ""}. Open its timeline.`,
        onclick: () => app.openSample(id),
      },
      sequences ? galleryPicture(app, id, kind, s.size)
        : h("img", { src: app.imageUrl(kind, id), alt: `${kind} of sample ${id}`, width: s.size, height: s.size, loading: "lazy", fetchpriority: "low" }),
      h("span", { class: "caption" },
        h("span", { class: "sample-id", text: `#${id}` }),
        h("span", { text: wrong ? `${app.className(label)} → ${app.className(prediction)}` : app.className(label) }),
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
    const app = this.app;
    const ids = this.ids();
    const p = app.points;
    const metadata = app.metadataColumns();
    const own = ["sample_id", "label", "prediction", "cluster", "epoch", "run"];
    const keys = metadata.map((m) => (own.includes(m.name) ? META_PREFIX + m.name : m.name));
    const rows = ids.map((id) => {
      const row = app.sampleRow(id);
      const point = p ? p.byId.get(id) : undefined;
      const result = {
        sample_id: id,
        label: row === undefined ? null : app.samples.columns.label[row],
        prediction: row === undefined ? null : app.samples.columns.prediction[row],
        cluster: point !== undefined && p.columns.cluster ? p.columns.cluster[point] : null,
      };
      metadata.forEach((m, i) => { result[keys[i]] = row === undefined ? null : (m.values[row] ?? null); });
      return result;
    });
    const s = app.state;
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
    app.setStatus(`Exported ${rows.length} sample ids (${format.toUpperCase()}).`, "info");
  }
}

export default {
  id: "gallery",
  slot: "bottom",
  params: {
    view: param.choice(KINDS, "heatmap"),
    px: param.flag(true),
    size: param.integer(96, IMAGE_SIZES),
    psize: param.integer(48, PAGE_SIZES),
    page: { ...param.integer(0), perRun: true },
    wrong: param.flag(false),
  },
  create: (app) => new Gallery(app),
};
